//! HTTPS for the ward LAN. An operator token sniffed on the ward's Wi-Fi could put anything on
//! the loudspeakers at once, so the API speaks TLS (rustls, ring) on `http.tls_listen` with the
//! admin's certificate, or one the station makes for itself at first start. A self-made
//! certificate is trusted by no browser; its SHA-256 fingerprint (`loa station`) is what an
//! operator checks once on the phone's warning page and pins.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::{TlsAcceptor, rustls};

use crate::config::TlsSource;

/// A self-made certificate and its key, in `data_dir`.
pub const SELF_SIGNED_CERT: &str = "tls-cert.pem";
pub const SELF_SIGNED_KEY: &str = "tls-key.pem";

/// The API's TLS: what accepts connections, and the certificate's fingerprint.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// SHA-256 of the certificate (DER), as browsers show it: `AB:CD:…`.
    pub fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
#[error("TLS: {}: {why}", path.display())]
pub struct TlsError {
    pub path: PathBuf,
    pub why: String,
}

fn error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError { path: path.to_owned(), why: why.to_string() }
}

/// Loads the certificate `source` names (making the station's own first if it is to be
/// self-signed and there is none yet).
pub fn load(source: &TlsSource, data_dir: &Path) -> Result<Tls, TlsError> {
    let (cert_path, key_path) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::SelfSigned => {
            make_self_signed(data_dir)?;
            (data_dir.join(SELF_SIGNED_CERT), data_dir.join(SELF_SIGNED_KEY))
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| error(&cert_path, format!("not a PEM certificate file ({e}); check http.tls_cert")))?;
    let Some(leaf) = certs.first() else {
        return Err(error(&cert_path, "holds no certificate; check http.tls_cert"));
    };
    let fingerprint = Sha256::digest(leaf.as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| error(&key_path, format!("not a PEM private key ({e}); check http.tls_key")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(&cert_path, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| error(&key_path, format!("the key does not go with the certificate, or is unusable ({e})")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), fingerprint })
}

/// Makes the station's own certificate (ECDSA P-256, valid 2025–2045, for `localhost`,
/// 127.0.0.1 and the box's host name) unless there is one. Two processes starting together
/// agree on one: the key is hard-linked into place first, and the loser uses the winner's pair.
fn make_self_signed(data_dir: &Path) -> Result<(), TlsError> {
    let (cert_path, key_path) = (data_dir.join(SELF_SIGNED_CERT), data_dir.join(SELF_SIGNED_KEY));
    if key_path.exists() {
        for _ in 0..50 {
            if cert_path.exists() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(20)); // the other maker's cert
        }
        return Err(error(&cert_path, "missing beside its key; remove both to make a new pair"));
    }
    let host = crate::ops::sys::host_name();
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(host.clone());
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| error(&cert_path, e))?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, format!("loa station {}", host.as_deref().unwrap_or("")).trim().to_owned());
    params.distinguished_name = name;
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let key = rcgen::KeyPair::generate().map_err(|e| error(&key_path, e))?;
    let cert = params.self_signed(&key).map_err(|e| error(&cert_path, e))?;
    if !place(data_dir, &key_path, key.serialize_pem().as_bytes(), 0o600)? {
        return make_self_signed(data_dir); // another process made the pair first
    }
    place(data_dir, &cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Writes `bytes` to `path` whole (private temporary file, synced, hard-linked into place);
/// false if a file was already there.
fn place(data_dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<bool, TlsError> {
    let io_error = |e: io::Error| error(path, e);
    let mut file = tempfile::Builder::new()
        .prefix(".tls-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(data_dir)
        .map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.as_file().sync_all().map_err(io_error)?;
    match fs::hard_link(file.path(), path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_error(e)),
    }
}

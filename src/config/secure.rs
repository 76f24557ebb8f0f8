//! The settings that decide who may read what crosses the network, shared by a station's
//! `station.toml` and the office's `district.toml` so both refuse the same mistakes: where a
//! server's certificate comes from (a key file others can read is refused), and the pinned
//! fingerprint of a peer's self-made certificate (required for an `https://` address).

use std::path::Path;

use toml::Spanned;

use super::source::Source;
use super::{ConfigError, TlsSource};

/// `tls = "self-signed"`, or `tls_cert` and `tls_key` (PEM files, relative to the config file),
/// or none of them, in `table`.
pub(crate) fn tls_source(
    src: &Source,
    table: &str,
    tls: &Option<Spanned<String>>,
    tls_cert: &Option<Spanned<String>>,
    tls_key: &Option<Spanned<String>>,
) -> Result<Option<TlsSource>, ConfigError> {
    let base = src.path.parent().unwrap_or(Path::new(""));
    match (tls, tls_cert, tls_key) {
        (None, None, None) => Ok(None),
        (Some(mode), None, None) if mode.get_ref() == "self-signed" => Ok(Some(TlsSource::SelfSigned)),
        (Some(mode), _, _) => Err(src.invalid(
            mode,
            &format!("{table}.tls"),
            format!(
                "\"{}\" is not a TLS setting; write tls = \"self-signed\" alone, or give tls_cert and tls_key \
                 (PEM files) without tls",
                mode.get_ref()
            ),
        )),
        (None, Some(cert), Some(key)) => {
            let key_path = base.join(key.get_ref());
            // A key others can read is no secret: refused, with the fix.
            if let Ok(meta) = std::fs::metadata(&key_path) {
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
                if mode & 0o077 != 0 {
                    return Err(src.invalid(
                        key,
                        &format!("{table}.tls_key"),
                        format!(
                            "{} can be read by other users (mode {:o}): run `chmod 600 {}` (owner: the loa user)",
                            key_path.display(),
                            mode & 0o777,
                            key_path.display()
                        ),
                    ));
                }
            }
            Ok(Some(TlsSource::Files { cert: base.join(cert.get_ref()), key: key_path }))
        }
        (None, Some(one), None) | (None, None, Some(one)) => Err(src.invalid(
            one,
            &format!("{table}.{}", if tls_cert.is_some() { "tls_cert" } else { "tls_key" }),
            "give both tls_cert and tls_key (PEM files), or tls = \"self-signed\"",
        )),
    }
}

/// The pinned SHA-256 fingerprint of the certificate at `url` (`table.tls_fingerprint`):
/// required for an `https://` address, refused for any other. `whose` says where the
/// fingerprint is printed, e.g. "`loa station` on the box".
pub(crate) fn pinned_fingerprint(
    src: &Source,
    table: &str,
    fingerprint: &Option<Spanned<String>>,
    url: Option<&Spanned<String>>,
    whose: &str,
) -> Result<Option<[u8; 32]>, ConfigError> {
    let key = format!("{table}.tls_fingerprint");
    let https = url.filter(|u| u.get_ref().trim().starts_with("https://"));
    match (fingerprint, https) {
        (Some(f), Some(_)) => parse_fingerprint(f.get_ref())
            .map(Some)
            .ok_or_else(|| src.invalid(f, &key, format!("give the SHA-256 fingerprint {whose} prints (AB:CD:…, 32 bytes)"))),
        (Some(f), None) => Err(src.invalid(f, &key, "a fingerprint is for an https:// url only")),
        (None, Some(url)) => Err(src.invalid(
            url,
            &key,
            format!("the certificate at an https:// address is its own: pin it with tls_fingerprint = \"AB:CD:…\" from {whose}"),
        )),
        (None, None) => Ok(None),
    }
}

/// A fingerprint as `loa station` prints it (`AB:CD:…`) or as plain hex.
fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex_digits: String = text.chars().filter(|c| *c != ':').collect();
    hex::decode(hex_digits.trim()).ok()?.try_into().ok()
}

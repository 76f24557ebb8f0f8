//! The process's TLS cryptography: ring, the one provider the server (`http::tls`) already
//! uses, installed once for every HTTPS client (the office's pulls, a station's pushes) before
//! the first is built.

/// Installs ring as the process's TLS provider, if none is yet.
pub fn install_provider() {
    // An error means one is installed already: ours, by an earlier call.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

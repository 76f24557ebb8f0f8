//! What the daemon asks of the operating system beyond files and sockets: one daemon per data
//! directory, systemd's notifications, and the few libc calls Rust's standard library lacks.
//! All of the crate's `unsafe` lives in `sys`; `tls` installs the TLS provider clients use.

pub mod lock;
pub mod supervisor;
pub mod sys;
pub mod tls;

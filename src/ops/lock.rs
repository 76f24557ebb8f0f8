//! One daemon per data directory. Two `loa run`s on one log would each air every slot and both
//! airings would count; so `loa run` (and the key commands, which change what signs the log)
//! hold an exclusive lock on `<data_dir>/loa.lock` for as long as they run, and a second one
//! stops at once naming the holder. CLI writers do not take it: the store's transactions keep
//! their events in one chain beside the daemon.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "loa.lock";

/// Held while the value lives; the kernel drops it when the process ends, however it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another loa ({holder}) is running on {}: one station, one daemon. Stop it first \
         (`systemctl stop loa`), or give this one its own station.data_dir",
        path.parent().unwrap_or(path).display()
    )]
    Held { path: PathBuf, holder: String },
    #[error("cannot lock {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl DataDirLock {
    /// Takes the lock without waiting; `what` says who holds it (e.g. "loa run").
    pub fn acquire(data_dir: &Path, what: &str) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io_error = |source| LockError::Io { path: path.clone(), source };
        let mut file =
            OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).map_err(io_error)?;
        if let Err(e) = crate::ops::sys::flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(io_error(e));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "pid unknown".to_owned(),
                text => text.to_owned(),
            };
            return Err(LockError::Held { path, holder });
        }
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        writeln!(file, "{what}, pid {}", std::process::id()).map_err(io_error)?;
        Ok(DataDirLock { _file: file })
    }
}

//! The station's signing key (`<data_dir>/station.key`) and the rule that it never changes
//! silently: a key is made only for an empty log; a key that is missing or does not sign the log
//! stops every command with what to restore; a planned change (`loa key rotate`) and a lost key
//! (`loa key replace --lost`) are events in the log itself, which `verify` follows or reports.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, SigningKey};

use super::SealedEvent;

pub const KEY_FILE: &str = "station.key";
/// A rotation's new key, written before the `key_rotated` event and renamed over `station.key`
/// after it; whichever step a crash interrupts, the next start finishes or drops it.
const NEXT_KEY_FILE: &str = "station.key.new";

/// What the log says about the key it is signed under, read before anything writes.
#[derive(Debug, Clone, Default)]
pub struct LogKeys {
    pub events: i64,
    /// The public key (hex) the latest `station_started`, `key_rotated` or `key_replaced` event
    /// puts in force; `None` when no event declares one yet.
    pub declared: Option<String>,
    /// The last event: with no declaration, its signature must verify with the key.
    pub tip: Option<SealedEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{} is missing, but the proof log already holds {events} events signed with it. loa will not \
         make a new key next to an existing log (nothing would verify any more). Restore station.key \
         from your backup into {} (owner loa, mode 0600) and start again. Only if the key is truly \
         lost: `loa key replace --lost` starts a new key and records the break in the log, which the \
         auditing office must then accept by name",
        path.display(), path.parent().unwrap_or(path).display()
    )]
    Missing { path: PathBuf, events: i64 },
    #[error(
        "{} (public key {found}) is not the key this proof log is signed with ({}): it belongs to \
         another station or another install. Restore this station's station.key from your backup; \
         only if it is truly lost, `loa key replace --lost`",
        path.display(), declared.as_deref().unwrap_or("the key of its last event")
    )]
    Mismatch { path: PathBuf, declared: Option<String>, found: String },
    #[error("{}: {reason}", path.display())]
    NothingToReplace { path: PathBuf, reason: &'static str },
    #[error("{} is not a station key (64 hex digits)", path.display())]
    Invalid { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// The station's Ed25519 key.
#[derive(Clone)]
pub struct StationKey {
    signing: SigningKey,
}

impl StationKey {
    pub fn from_seed(seed: [u8; 32]) -> StationKey {
        StationKey { signing: SigningKey::from_bytes(&seed) }
    }

    pub(super) fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    /// The key to write `log` with: loaded, or made when the log is empty; never a key the log
    /// was not signed with.
    pub fn for_log(data_dir: &Path, log: &LogKeys) -> Result<StationKey, KeyError> {
        finish_rotation(data_dir, log)?;
        let path = data_dir.join(KEY_FILE);
        match read(&path)? {
            None if log.events == 0 => write_new(data_dir, &path),
            None => Err(KeyError::Missing { path, events: log.events }),
            Some(key) if signs(&key, log) => Ok(key),
            Some(key) => Err(KeyError::Mismatch { path, declared: log.declared.clone(), found: key.public_key_hex() }),
        }
    }

    /// The key to continue `log` with when its own key is lost: a `station.key` that does not
    /// sign the log (left by an earlier attempt), or a new one. Refused when the key is not lost.
    pub fn for_lost_key(data_dir: &Path, log: &LogKeys) -> Result<StationKey, KeyError> {
        finish_rotation(data_dir, log)?;
        let path = data_dir.join(KEY_FILE);
        if log.events == 0 {
            let reason = "the proof log is empty: there is no key to replace (loa makes one on first use)";
            return Err(KeyError::NothingToReplace { path, reason });
        }
        match read(&path)? {
            Some(key) if signs(&key, log) => Err(KeyError::NothingToReplace {
                path,
                reason: "this key signs the proof log: it is not lost. To change it on purpose use `loa key rotate`",
            }),
            Some(key) => Ok(key),
            None => write_new(data_dir, &path),
        }
    }

    /// Makes the next key of a rotation and keeps it beside the current one until
    /// [`StationKey::finish_rotation`] (after the `key_rotated` event is written).
    pub fn begin_rotation(data_dir: &Path) -> Result<StationKey, KeyError> {
        let next = data_dir.join(NEXT_KEY_FILE);
        let _ = fs::remove_file(&next);
        write_new(data_dir, &next)
    }
}

/// Puts a rotation's new key in place once the log names it; drops it if the log does not
/// (the rotation never committed).
pub fn finish_rotation(data_dir: &Path, log: &LogKeys) -> Result<(), KeyError> {
    let next = data_dir.join(NEXT_KEY_FILE);
    let Some(key) = read(&next)? else { return Ok(()) };
    let io_error = |source| KeyError::Io { path: next.clone(), source };
    if log.declared.as_deref() == Some(key.public_key_hex().as_str()) {
        fs::rename(&next, data_dir.join(KEY_FILE)).map_err(io_error)?;
        fs::File::open(data_dir).and_then(|dir| dir.sync_all()).map_err(io_error)?;
    } else {
        fs::remove_file(&next).map_err(io_error)?;
    }
    Ok(())
}

/// Whether `key` is the key `log` is signed under now.
fn signs(key: &StationKey, log: &LogKeys) -> bool {
    let public = key.public_key_hex();
    match (&log.declared, &log.tip) {
        (Some(declared), _) => *declared == public,
        (None, Some(tip)) => {
            let signature = hex::decode(&tip.sig).ok().and_then(|b| <[u8; 64]>::try_from(b).ok());
            let digest = hex::decode(&tip.hash).unwrap_or_default();
            signature
                .is_some_and(|s| key.signing.verifying_key().verify_strict(&digest, &Signature::from_bytes(&s)).is_ok())
        }
        (None, None) => true,
    }
}

fn read(path: &Path) -> Result<Option<StationKey>, KeyError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Io { path: path.to_owned(), source }),
    };
    let seed = hex::decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
    seed.map(|seed| Some(StationKey::from_seed(seed))).ok_or_else(|| KeyError::Invalid { path: path.to_owned() })
}

/// Writes a fresh key to `path` (mode 0600, synced) unless a file is already there. Safe when
/// two processes start at once on an empty log: the key is written to a private temporary file
/// and hard-linked into place, which either wins whole or finds the other process's key there.
fn write_new(data_dir: &Path, path: &Path) -> Result<StationKey, KeyError> {
    let prefix = format!(".{}-", path.file_name().unwrap_or_default().to_string_lossy());
    let io_error = |source| KeyError::Io { path: path.to_owned(), source };
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| io_error(io::Error::other(format!("no randomness for a key: {e}"))))?;
    let mut candidate = tempfile::Builder::new()
        .prefix(&prefix)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(data_dir)
        .map_err(io_error)?;
    candidate.write_all(format!("{}\n", hex::encode(seed)).as_bytes()).map_err(io_error)?;
    candidate.as_file().sync_all().map_err(io_error)?;
    match fs::hard_link(candidate.path(), path) {
        Ok(()) => fs::File::open(data_dir).and_then(|dir| dir.sync_all()).map_err(io_error)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(e)),
    }
    read(path)?.ok_or_else(|| KeyError::Invalid { path: path.to_owned() })
}

/// A signing key that is not a station's (the office's `district.key`): loaded from
/// `data_dir/file`, or made there once (mode 0600, atomically) on first use.
pub fn load_or_create(data_dir: &Path, file: &str) -> Result<StationKey, KeyError> {
    let path = data_dir.join(file);
    match read(&path)? {
        Some(key) => Ok(key),
        None => write_new(data_dir, &path),
    }
}

//! The one gate every bulletin passes, whichever door it comes through (CLI or HTTP).
//!
//! Bytes stream into a staging file inside `<data_dir>` and are hashed on the way in; the file
//! is then decoded in full (`analysis`). Only a file that passed is fsynced and renamed to
//! `<data_dir>/clips/<sha256>.mp3` and recorded in the store. A staging file deletes itself when
//! dropped, so a rejected, failed or abandoned upload leaves nothing behind.
//!
//! Uploads never eat the last `clips.keep_free_mib` of the disk: the proof log must always be
//! able to record the next airing. The room is checked before staging (against the announced
//! size) and again every few MiB while bytes arrive (an upload may not announce its size).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::config::ClipLimits;
use crate::library::analysis::{self, AnalysisError, Rejection};
use crate::model::clip::{AudioFacts, ClipMeta, MetaError};
use crate::store::{Inserted, Store, StoreError};

const CLIPS_DIR: &str = "clips";
const STAGING_DIR: &str = "staging";
const STAGING_PREFIX: &str = "upload-";
/// A staging upload re-checks the free space each time this much more has arrived.
const ROOM_CHECK_EVERY: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AnalysisError> for IngestError {
    fn from(e: AnalysisError) -> Self {
        match e {
            AnalysisError::Rejected(r) => IngestError::Rejected(r),
            AnalysisError::Io(e) => IngestError::Io(e),
        }
    }
}

/// The content-addressed clip files under `<data_dir>`.
#[derive(Debug, Clone)]
pub struct Library {
    clips_dir: PathBuf,
    staging_dir: PathBuf,
    limits: ClipLimits,
}

/// An upload in progress: written to, hashed as it goes, deleted unless admitted.
pub struct Staged {
    file: NamedTempFile,
    hasher: Sha256,
    size: u64,
    room: Room,
    next_room_check: u64,
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size >= self.next_room_check {
            self.room.ensure(0)?;
            self.next_room_check = self.size + ROOM_CHECK_EVERY;
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Staged {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// All bytes are in: flush and name the content.
    pub fn finish(mut self) -> io::Result<Finished> {
        self.file.flush()?;
        Ok(Finished { sha256: hex::encode(self.hasher.finalize()), size: self.size, file: self.file })
    }
}

/// A complete upload, identified by its SHA-256, not yet checked.
pub struct Finished {
    file: NamedTempFile,
    pub sha256: String,
    pub size: u64,
}

/// The free-space reserve on the filesystem holding the library and the store.
#[derive(Debug, Clone)]
struct Room {
    dir: PathBuf,
    keep_free: u64,
}

impl Room {
    fn ensure(&self, incoming: u64) -> io::Result<()> {
        if self.keep_free == 0 {
            return Ok(()); // no reserve: only a real ENOSPC stops the upload
        }
        let free = crate::ops::sys::free_bytes(&self.dir)?;
        if free >= self.keep_free.saturating_add(incoming) {
            return Ok(());
        }
        let mib = |bytes: u64| bytes.div_ceil(1 << 20);
        Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "the station's disk has {} MiB free and keeps {} MiB (clips.keep_free_mib) for the proof log; \
                 this upload needs {} MiB more: retire old bulletins or free space, then upload again",
                free >> 20,
                mib(self.keep_free),
                mib(self.keep_free.saturating_add(incoming) - free),
            ),
        ))
    }
}

impl Library {
    pub fn open(data_dir: &Path, limits: ClipLimits) -> io::Result<Library> {
        let library = Library { clips_dir: data_dir.join(CLIPS_DIR), staging_dir: data_dir.join(STAGING_DIR), limits };
        fs::create_dir_all(&library.clips_dir)?;
        fs::create_dir_all(&library.staging_dir)?;
        Ok(library)
    }

    pub fn clip_path(&self, sha256: &str) -> PathBuf {
        self.clips_dir.join(format!("{sha256}.mp3"))
    }

    /// Whether `incoming` more bytes leave the configured reserve free (`ErrorKind::StorageFull`
    /// if not): asked before a download the library will take in.
    pub fn ensure_room(&self, incoming: u64) -> io::Result<()> {
        Room { dir: self.staging_dir.clone(), keep_free: self.limits.keep_free_bytes }.ensure(incoming)
    }

    /// Starts an upload of about `expected_bytes` (0 if unknown), refused with
    /// `ErrorKind::StorageFull` if it would leave less than the configured reserve free.
    pub fn stage(&self, expected_bytes: u64) -> io::Result<Staged> {
        let room = Room { dir: self.staging_dir.clone(), keep_free: self.limits.keep_free_bytes };
        room.ensure(expected_bytes)?;
        let file = tempfile::Builder::new().prefix(STAGING_PREFIX).tempfile_in(&self.staging_dir)?;
        Ok(Staged { file, hasher: Sha256::new(), size: 0, room, next_room_check: ROOM_CHECK_EVERY })
    }

    /// Removes staging files a crash left behind, untouched since `older_than` (an upload a
    /// running daemon is still receiving is newer and stays).
    pub fn remove_stale_staging(&self, older_than: DateTime<Utc>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.staging_dir)? {
            let entry = entry?;
            let modified: DateTime<Utc> = entry.metadata()?.modified()?.into();
            if entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) && modified < older_than {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Checks, measures and stores a staged upload, in one call (the CLI's way). A duplicate
    /// (same SHA-256) is reported as `Inserted::Existing` without decoding it again.
    pub fn admit(
        &self,
        staged: Staged,
        meta: &ClipMeta,
        store: &mut Store,
        now: DateTime<Utc>,
    ) -> Result<Inserted, IngestError> {
        meta.check()?;
        let finished = staged.finish()?;
        if let Some(existing) = store.clip_by_sha256(&finished.sha256)? {
            return Ok(Inserted::Existing(existing));
        }
        let audio = self.analyse(&finished)?;
        self.keep(finished, meta, &audio, store, now)
    }

    /// Copies the file at `path` into staging and admits it (a preload, an office's bulletin).
    pub fn admit_file(
        &self,
        path: &Path,
        meta: &ClipMeta,
        store: &mut Store,
        now: DateTime<Utc>,
    ) -> Result<Inserted, IngestError> {
        let mut input = fs::File::open(path)?;
        let mut staged = self.stage(input.metadata()?.len())?;
        io::copy(&mut input, &mut staged)?;
        self.admit(staged, meta, store, now)
    }

    /// Decodes the whole upload and measures it (seconds of CPU for a long clip: callers in
    /// async code run it on a blocking thread).
    pub fn analyse(&self, finished: &Finished) -> Result<AudioFacts, IngestError> {
        Ok(analysis::analyse(finished.file.path(), self.limits)?)
    }

    /// Makes a checked upload durable under its SHA-256 and records it (with its event).
    pub fn keep(
        &self,
        finished: Finished,
        meta: &ClipMeta,
        audio: &AudioFacts,
        store: &mut Store,
        now: DateTime<Utc>,
    ) -> Result<Inserted, IngestError> {
        finished.file.as_file().sync_all()?;
        let final_path = self.clip_path(&finished.sha256);
        finished.file.persist(&final_path).map_err(|e| e.error)?;
        fs::File::open(&self.clips_dir)?.sync_all()?;

        let inserted = store.insert_clip(&finished.sha256, finished.size, meta, audio, now);
        if inserted.is_err() && matches!(store.clip_by_sha256(&finished.sha256), Ok(None)) {
            let _ = fs::remove_file(&final_path); // nothing refers to it; don't leave it behind
        }
        Ok(inserted?)
    }
}

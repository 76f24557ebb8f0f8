//! The events about the log itself and its key: damage found by the self-check, a log behind
//! the office's receipt or tampered with, a key rotated or replaced.

use serde::Serialize;

use super::{Kind, fields, part};
use crate::proof::Fields;

/// The first thing wrong with the stored log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Damage {
    pub seq: i64,
    /// The `hash` stored with the event.
    pub stored_hash: String,
    /// The SHA-256 of the event's stored bytes.
    pub computed_hash: String,
    pub why: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "the proof log is damaged at seq {}: {}", self.seq, self.why)
    }
}

/// The station found its own log damaged (see `chain`): which event, both hashes, and why.
pub fn log_damaged(damage: &Damage) -> Fields {
    #[derive(Serialize)]
    struct Damaged<'a> {
        damaged_seq: i64,
        stored_hash: &'a str,
        computed_hash: &'a str,
        reason: &'a str,
    }
    let damaged = Damaged {
        damaged_seq: damage.seq,
        stored_hash: &damage.stored_hash,
        computed_hash: &damage.computed_hash,
        reason: &damage.why,
    };
    fields(Kind::LogDamaged, [part(&damaged)])
}

/// The station's log does not hold what the auditing office signed a receipt for: it ends
/// before `receipt_seq`, or holds another event there. The database was restored from an old
/// copy, or replaced; what aired between is missing from this log (the office holds it).
pub fn log_behind_receipt(office: &str, receipt_seq: i64, receipt_hash: &str, head_seq: i64) -> Fields {
    #[derive(Serialize)]
    struct Behind<'a> {
        office: &'a str,
        receipt_seq: i64,
        receipt_hash: &'a str,
        head_seq: i64,
    }
    fields(Kind::LogBehindReceipt, [part(&Behind { office, receipt_seq, receipt_hash, head_seq })])
}

/// The station's start found its log tampered with: the append-only triggers removed, or the
/// log no longer holding the event its last check ended at (`checked_seq`/`checked_hash`; the
/// tail was cut or rewritten). Now `head_seq` is the log's head.
pub fn log_tampered(reason: &str, checked: Option<(i64, &str)>, head_seq: i64) -> Fields {
    #[derive(Serialize)]
    struct Tampered<'a> {
        reason: &'a str,
        checked_seq: Option<i64>,
        checked_hash: Option<&'a str>,
        head_seq: i64,
    }
    let tampered = Tampered { reason, checked_seq: checked.map(|c| c.0), checked_hash: checked.map(|c| c.1), head_seq };
    fields(Kind::LogTampered, [part(&tampered)])
}

/// A planned change of key, signed by the old key (`public_key`) and naming the new one.
pub fn key_rotated(old: &str, new: &str) -> Fields {
    #[derive(Serialize)]
    struct Rotated<'a> {
        public_key: &'a str,
        new_public_key: &'a str,
    }
    fields(Kind::KeyRotated, [part(&Rotated { public_key: old, new_public_key: new })])
}

/// A new key for a log whose key was lost, signed by the new key (`public_key`). Nothing proves
/// the old key's holder agreed: verify stops here until the auditor accepts it by seq.
pub fn key_replaced(old: Option<&str>, new: &str) -> Fields {
    #[derive(Serialize)]
    struct Replaced<'a> {
        public_key: &'a str,
        old_public_key: Option<&'a str>,
        reason: &'a str,
    }
    let reason = "the previous station key was lost; this key was made to continue the log";
    fields(Kind::KeyReplaced, [part(&Replaced { public_key: new, old_public_key: old, reason })])
}

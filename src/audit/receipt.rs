//! The office's receipt, as the station keeps it: the latest signed statement that the auditing
//! office holds this log up to seq N with hash H. It lives outside the database
//! (`data_dir/receipt.json`), so restoring the database from an old copy does not take it back:
//! at start a log that ends before N, or holds another event at N, was restored or replaced, and
//! the station says so in its log (`log_behind_receipt`).
//!
//! A receipt is taken only from the office the station answers to (`[office] public_key`: it
//! must be signed by that key; without one pinned, none is taken), and only if it is about this
//! very log: its station id, and an event this station holds at its seq with its hash. Anyone
//! else's receipt would make the station show a false "the office holds N" and restart its
//! push from N.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use ed25519_dalek::VerifyingKey;

use crate::proof::{check_statement, parse_public_key};
use crate::store::{Store, StoreError};

pub const RECEIPT_FILE: &str = "receipt.json";

/// A receipt the station took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    pub office: String,
    pub office_key: String,
    pub head_seq: i64,
    pub head_hash: String,
    /// UTC ms the office signed it.
    pub at: i64,
    /// The signed line itself.
    #[serde(skip)]
    pub line: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("not a receipt: {0}")]
    Invalid(String),
    #[error(
        "this station has no office pinned, so it takes no receipt: add [office] public_key = \"…\" to its \
         config (office_key from `loa district status --json` on the office's machine)"
    )]
    NoOfficePinned,
    #[error("the receipt is signed by office key {0}, not by the office this station answers to ([office] public_key)")]
    OtherOffice(String),
    #[error("the receipt is for station {0}, not this one")]
    OtherStation(String),
    #[error("the receipt says the office holds seq {seq} with hash {hash}, but this station's log {found}")]
    NotThisLog { seq: i64, hash: String, found: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot keep the receipt in {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Reads a receipt line: well formed, signed by the key it names.
pub fn parse(line: &str) -> Result<(Receipt, String), ReceiptError> {
    let invalid = |why: &str| ReceiptError::Invalid(why.to_owned());
    let line = line.trim();
    let office_key = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("office_key")?.as_str().map(str::to_owned))
        .ok_or_else(|| invalid("no office_key"))?;
    let key = parse_public_key(&office_key).map_err(|e| invalid(&e))?;
    let fields = check_statement(line, &key).map_err(|e| invalid(&e))?;
    let text = |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let number = |name: &str| fields.get(name).and_then(serde_json::Value::as_i64);
    if text("kind").as_deref() != Some("receipt") {
        return Err(invalid("kind is not receipt"));
    }
    let station = text("station_id").ok_or_else(|| invalid("no station_id"))?;
    let receipt = Receipt {
        office: text("office").ok_or_else(|| invalid("no office"))?,
        office_key,
        head_seq: number("head_seq").filter(|s| *s >= 1).ok_or_else(|| invalid("no head_seq"))?,
        head_hash: text("head_hash").ok_or_else(|| invalid("no head_hash"))?,
        at: number("at").ok_or_else(|| invalid("no at"))?,
        line: line.to_owned(),
    };
    Ok((receipt, station))
}

/// Reads a receipt line signed by `office`, the pinned key.
fn from_office(line: &str, office: Option<&VerifyingKey>) -> Result<(Receipt, String), ReceiptError> {
    let office = office.ok_or(ReceiptError::NoOfficePinned)?;
    let (receipt, station) = parse(line)?;
    if receipt.office_key != hex::encode(office.to_bytes()) {
        return Err(ReceiptError::OtherOffice(receipt.office_key));
    }
    Ok((receipt, station))
}

/// Takes a receipt the office sent, if it is the pinned office's and about this log, and keeps
/// it (atomically).
pub fn take(
    data_dir: &Path,
    store: &Store,
    line: &str,
    office: Option<&VerifyingKey>,
) -> Result<Receipt, ReceiptError> {
    let (receipt, station) = from_office(line, office)?;
    if station != store.station_id() {
        return Err(ReceiptError::OtherStation(station));
    }
    match store.event_hash(receipt.head_seq)? {
        Some(hash) if hash == receipt.head_hash => {}
        found => {
            return Err(ReceiptError::NotThisLog {
                seq: receipt.head_seq,
                hash: receipt.head_hash,
                found: found.map_or("does not reach that seq".to_owned(), |h| format!("holds hash {h} there")),
            });
        }
    }
    // A receipt for less than the one kept says nothing new.
    if read(data_dir, Some(office.expect("from_office checked it")))
        .is_some_and(|kept| kept.head_seq > receipt.head_seq)
    {
        return Ok(receipt);
    }
    let path = data_dir.join(RECEIPT_FILE);
    let io = |source| ReceiptError::Io { path: path.clone(), source };
    let mut file = tempfile::NamedTempFile::new_in(data_dir).map_err(io)?;
    file.write_all(format!("{}\n", receipt.line).as_bytes()).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(&path).map_err(|e| io(e.error))?;
    Ok(receipt)
}

/// The receipt kept, if any and if it is the pinned office's (an unreadable one, or another
/// office's, is as good as none: it proves nothing).
pub fn read(data_dir: &Path, office: Option<&VerifyingKey>) -> Option<Receipt> {
    let text = std::fs::read_to_string(data_dir.join(RECEIPT_FILE)).ok()?;
    from_office(&text, office).ok().map(|(receipt, _)| receipt)
}

/// Whether this log still holds what the kept receipt says the office holds: `Some` with the
/// receipt when it does not (the database was restored from an old copy, or replaced).
pub fn log_behind(
    data_dir: &Path,
    store: &Store,
    office: Option<&VerifyingKey>,
) -> Result<Option<Receipt>, StoreError> {
    let Some(receipt) = read(data_dir, office) else { return Ok(None) };
    Ok((store.event_hash(receipt.head_seq)?.as_deref() != Some(receipt.head_hash.as_str())).then_some(receipt))
}

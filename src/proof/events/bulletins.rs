//! The station's record of the bulletins its office sends down (`proof::bulletin`): each
//! manifest taken (with the clip it became) or refused (with the reason), and each withdrawal
//! followed. The office proves a bulletin's reach from these and the airings of its clip.

use serde::Serialize;

use super::{Kind, fields, part};
use crate::proof::Fields;
use crate::proof::bulletin::{Manifest, Refusal};

/// A manifest verified and its audio taken into the library as `clip_id`.
pub fn bulletin_received(manifest: &Manifest, manifest_hash: &str, clip_id: i64) -> Fields {
    #[derive(Serialize)]
    struct Received<'a> {
        bulletin_id: i64,
        office: &'a str,
        manifest_hash: &'a str,
        clip_id: i64,
        clip_sha256: &'a str,
        priority: crate::model::clip::Priority,
        valid_from: String,
        valid_until: String,
        airings: u32,
    }
    let received = Received {
        bulletin_id: manifest.id,
        office: &manifest.office,
        manifest_hash,
        clip_id,
        clip_sha256: &manifest.sha256,
        priority: manifest.priority,
        valid_from: manifest.valid_from.to_string(),
        valid_until: manifest.valid_until.to_string(),
        airings: manifest.airings,
    };
    fields(Kind::BulletinReceived, [part(&received)])
}

/// A line of the office's feed refused: `bulletin_id` when it could be read, the hash of the
/// line as received, and why.
pub fn bulletin_refused(bulletin_id: Option<i64>, line_hash: &str, reason: Refusal, detail: &str) -> Fields {
    #[derive(Serialize)]
    struct Refused<'a> {
        bulletin_id: Option<i64>,
        manifest_hash: &'a str,
        reason: Refusal,
        detail: &'a str,
    }
    fields(Kind::BulletinRefused, [part(&Refused { bulletin_id, manifest_hash: line_hash, reason, detail })])
}

/// The office withdrew a bulletin: its clip (if it was taken) is retired and airs no more.
pub fn bulletin_withdrawn(bulletin_id: i64, clip_id: Option<i64>) -> Fields {
    #[derive(Serialize)]
    struct Withdrawn {
        bulletin_id: i64,
        clip_id: Option<i64>,
    }
    fields(Kind::BulletinWithdrawn, [part(&Withdrawn { bulletin_id, clip_id })])
}

//! Reading what the office serves, in bounds, before any of it is believed: a feed page's
//! bytes (capped, so an endless answer costs bounded memory), its unsigned seqs against the
//! signed lines, the id a refused line claims, and a downloaded file's size and SHA-256.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::model::protocol::FeedPage;
use crate::proof::office_head::OfficeHead;

/// What the page's unsigned numbers may say, judged against the signed lines before the
/// cursor moves: seqs rise, and a bulletin's seq is its signed `id` (its place in the office's
/// log). A page that breaks either was altered on the way: not read at all.
pub fn check_page(page: &FeedPage, after: i64) -> Result<(), String> {
    let mut last = after;
    for notice in page.notices.iter().filter(|n| n.seq > after) {
        if notice.seq <= last {
            return Err(format!("the office's feed is out of order at seq {}: not read", notice.seq));
        }
        last = notice.seq;
        // (A line that is not a statement at all is refused on its own, below.)
        let Ok((body, _, _)) = crate::proof::split_line(&notice.line) else { continue };
        let signed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        // (An id the log cannot hold is refused on its own, below, as malformed.)
        let id = claimed_id(&notice.line);
        if signed["kind"] == "bulletin" && id.is_some_and(|id| id != notice.seq) {
            return Err(format!(
                "the office's feed gives seq {} to bulletin {}: altered on the way, not read",
                notice.seq, signed["id"]
            ));
        }
    }
    Ok(())
}

/// The office head to keep after `page`: the page's own (`proof::office_head`) when it is
/// signed with the pinned key and not below the one `kept`, else the kept one. A notice whose
/// seq is beyond the page's signed head means the page was altered on the way: not read. A
/// head that does not verify is not kept and bounds nothing (an office older than the
/// statement sends none); each line is still judged by its own signature.
pub fn higher_head(
    page: &FeedPage,
    kept: Option<&str>,
    office_key: &ed25519_dalek::VerifyingKey,
) -> Result<Option<String>, String> {
    let Some(line) = &page.office_head else { return Ok(kept.map(str::to_owned)) };
    let head = match OfficeHead::check(line, office_key) {
        Ok(head) => head,
        Err(why) => {
            tracing::warn!("the office's head on the feed page does not verify with the pinned key ({why}): not kept");
            return Ok(kept.map(str::to_owned));
        }
    };
    if let Some(beyond) = page.notices.iter().find(|n| n.seq > head.seq) {
        return Err(format!(
            "the office's feed gives seq {} beyond the office's signed head {}: altered on the way, not read",
            beyond.seq, head.seq
        ));
    }
    let kept_seq = kept.and_then(|k| OfficeHead::check(k, office_key).ok()).map(|k| k.seq);
    Ok(Some(if kept_seq.is_some_and(|k| k > head.seq) { kept.unwrap_or_default() } else { line }.to_owned()))
}

/// A response's body, read chunk by chunk up to `limit` bytes: beyond it the answer is refused,
/// so an endless body costs at most `limit` of memory.
pub async fn bounded_body(mut response: reqwest::Response, limit: usize) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("the office's feed was cut: {e}"))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the office's feed page is longer than {limit} bytes: not read"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the office's feed page is not UTF-8".to_owned())
}

/// The `id` a refused line claims (it may be a forgery: only recorded as claimed), when it is
/// one the log can hold (an integer from 1 to 2^53 - 1); else none (the refusal's `detail`
/// and `manifest_hash` still say which line it was).
pub fn claimed_id(line: &str) -> Option<i64> {
    let (body, _, _) = crate::proof::split_line(line).ok()?;
    let id = serde_json::from_str::<serde_json::Value>(&body).ok()?["id"].as_i64()?;
    (1..=crate::proof::schema::MAX_SAFE_INTEGER).contains(&id).then_some(id)
}

pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let (mut hasher, mut bytes, mut buffer) = (Sha256::new(), 0u64, vec![0u8; 64 * 1024]);
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((bytes, hex::encode(hasher.finalize())));
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
}

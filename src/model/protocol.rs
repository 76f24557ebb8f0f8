//! What a station and its office say to each other over HTTP, written once and used by both
//! sides: the paths each calls on the other, the headers that carry proof, and how a bearer token
//! is read. The bodies are specified beside their code: events and their schema in `proof`
//! (`schema`, `export`'s page), the head statement in `proof::head`, the receipt in
//! `district::receipt`, the error body in ARCHITECTURE.md. (The station's own route attributes
//! repeat the paths for its OpenAPI document; tests/it/tidy.rs keeps them equal to these.)

/// The station's events: `GET ?after_seq=N&limit=M&format=json&challenge=HEX64`.
pub const AIRTIME: &str = "/api/v1/airtime";
/// The office's receipt, posted back to the station after a clean pull.
pub const RECEIPT: &str = "/api/v1/receipt";
/// A station's new events, pushed to the office (`loa district serve`).
pub const PUSH: &str = "/api/v1/push";
/// What the office holds of each station.
pub const STATUS: &str = "/api/v1/status";
/// The office's bulletins for the calling station (its push token): `GET ?after=N&wait=SECONDS`
/// answers a [`FeedPage`], waiting up to `wait` (at most [`MAX_FEED_WAIT`]) for one.
pub const BULLETINS: &str = "/api/v1/bulletins";
/// A bulletin's audio, from the office's disk (`Range` for a resumed download).
pub const BULLETIN_AUDIO: &str = "/api/v1/bulletins/{id}/audio";
/// The longest a feed request waits for something new, in seconds.
pub const MAX_FEED_WAIT: u64 = 60;
/// The office fills a feed page with lines up to this many bytes (at least one line, whatever
/// its size); the station reads no page longer than [`MAX_FEED_PAGE_BYTES`].
pub const FEED_PAGE_FILL: usize = 256 * 1024;
/// The most a station reads of one feed page: a body beyond it (a proxy's endless answer) is
/// the feed failing, not memory spent.
pub const MAX_FEED_PAGE_BYTES: usize = 1024 * 1024;

/// One answer of the office's feed: the signed lines (`proof::bulletin`) after the cursor, in
/// order, and the cursor to ask after next.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeedPage {
    pub notices: Vec<FeedNotice>,
    pub next_after: i64,
    /// The office's head when it made the page (`proof::office_head`, signed): no notice's
    /// seq may exceed it. Absent from an office older than the statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office_head: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeedNotice {
    /// Its place in the office's log.
    pub seq: i64,
    /// The signed manifest or withdrawal, byte for byte.
    pub line: String,
}

/// On every airtime answer: the station's head as `SEQ:HASH`.
pub const HEAD_HEADER: &str = "loa-head";
/// On a push: the station's head signed over the challenge of the office's last answer.
pub const STATEMENT_HEADER: &str = "loa-head-statement";
/// On a feed request and a push: the highest office head the station has seen (its signed line).
pub const OFFICE_HEAD_HEADER: &str = "loa-office-head";
/// On a push: the office's last receipt the station keeps (its signed line), so an office that
/// holds less of the station's log than it once receipted knows it forgot, not the station.
pub const RECEIPT_HEADER: &str = "loa-receipt";

/// The token in an `Authorization` header's value `Bearer <token>` (the scheme's name in any
/// case, RFC 9110 §11.1).
pub fn bearer(value: &str) -> Option<&str> {
    credential(value, "bearer")
}

/// The credential in an `Authorization` header's value `<scheme> <credential>`.
pub fn credential<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (named, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (named.eq_ignore_ascii_case(scheme) && !credential.is_empty()).then_some(credential)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bearer_token_is_read_in_any_case_of_the_scheme_and_nothing_else_is() {
        assert_eq!(super::bearer("Bearer loa_abc"), Some("loa_abc"));
        assert_eq!(super::bearer("bearer  loa_abc "), Some("loa_abc"));
        assert_eq!(super::bearer("Basic loa_abc"), None);
        assert_eq!(super::bearer("Bearer "), None);
        assert_eq!(super::bearer("loa_abc"), None);
    }
}

//! API tokens: made once, shown once, kept only as SHA-256, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Role("a role") {
        Operator = "operator",
        District = "district",
    }
}

/// An API token as stored: never the secret itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Token {
    pub id: i64,
    pub role: Role,
    pub label: String,
    #[serde(skip)]
    pub token_sha256: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

const PREFIX: &str = "loa_";

/// A new random token: `loa_` and 64 hex digits (256 bits).
pub fn generate() -> std::io::Result<String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(format!("no randomness for a token: {e}")))?;
    Ok(format!("{PREFIX}{}", hex::encode(secret)))
}

/// Letters and digits an operator cannot confuse when typing from a terminal (no 0/O, 1/I/L).
const CODE_ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// A one-time pairing code, `ABCD-EFGH`: 8 characters of 31 (≈ 8·10¹¹), used once, for minutes.
pub fn pairing_code() -> std::io::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness for a code: {e}")))?;
    let letters: String = bytes.iter().map(|b| CODE_ALPHABET[usize::from(b % 31)] as char).collect();
    Ok(format!("{}-{}", &letters[..4], &letters[4..]))
}

/// A pairing code as typed (any case, with or without the dash or spaces), as it is hashed.
pub fn normalise_code(typed: &str) -> String {
    typed.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether two digests are equal, compared in constant time.
pub fn same_digest(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The active token `presented` is, if any. Every active token's digest is compared, each in
/// constant time, so the answer's timing says nothing about near misses.
pub fn find<'a>(tokens: &'a [Token], presented: &str) -> Option<&'a Token> {
    let wanted = digest(presented);
    let mut found = None;
    for token in tokens.iter().filter(|t| t.revoked_at.is_none()) {
        if same_digest(&token.token_sha256, &wanted) {
            found = Some(token);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: i64, secret: &str, revoked: bool) -> Token {
        Token {
            id,
            role: Role::Operator,
            label: "x".into(),
            token_sha256: digest(secret),
            created_at: String::new(),
            revoked_at: revoked.then(String::new),
        }
    }

    #[test]
    fn only_active_exact_tokens_match() {
        let a = generate().unwrap();
        assert!(a.starts_with("loa_") && a.len() == 68);
        let tokens = [token(1, &a, false), token(2, "loa_revoked", true)];
        assert_eq!(find(&tokens, &a).map(|t| t.id), Some(1));
        assert_eq!(find(&tokens, "loa_revoked"), None);
        assert_eq!(find(&tokens, &a[..67]), None);
    }
}

//! API tokens: made once, shown once, kept only as SHA-256, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::Token;

const PREFIX: &str = "loa_";

/// A new random token: `loa_` and 64 hex digits (256 bits).
pub fn generate() -> std::io::Result<String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(format!("no randomness for a token: {e}")))?;
    Ok(format!("{PREFIX}{}", hex::encode(secret)))
}

pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The active token `presented` is, if any. Every active token's digest is compared, each in
/// constant time, so the answer's timing says nothing about near misses.
pub fn find<'a>(tokens: &'a [Token], presented: &str) -> Option<&'a Token> {
    let wanted = digest(presented);
    let mut found = None;
    for token in tokens.iter().filter(|t| t.revoked_at.is_none()) {
        if bool::from(token.token_sha256.as_bytes().ct_eq(wanted.as_bytes())) {
            found = Some(token);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

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

//! What a public key is where people write one (station.toml's `[office]`, district.toml's
//! `[[station]]`, `--public-key`) and where logs declare one: 32 bytes of an Ed25519 point, in hex.

use ed25519_dalek::VerifyingKey;

/// A public key from its hex, or why it is not one.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| "the public key must be 64 hex digits (see `loa station`)".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| {
        "these 64 hex digits are not an Ed25519 public key (a digit was mistyped?); copy it again from `loa station`"
            .to_owned()
    })
}

//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): the secret is
//! `whsec_` + base64 of the key bytes; a message is signed as
//! `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")), and the
//! `webhook-signature` header lists one such signature per active secret, space-separated.
//! Used by the delivery workers (sign) and `print-gateway webhooks listen` (verify).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
/// Key bytes of a generated secret (the spec asks for 24 to 64).
const KEY_BYTES: usize = 32;
/// How far a `webhook-timestamp` may be from the receiver's clock (the spec's advice: 5 min).
pub const TOLERANCE_SECS: i64 = 300;

/// A fresh signing secret, `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut key = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// Why a signing secret has no key bytes (never shows the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadSecret {
    #[error("the secret is not `whsec_` followed by base64")]
    NotBase64,
    #[error("the secret is empty")]
    Empty,
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = STANDARD.decode(encoded).map_err(|_| BadSecret::NotBase64)?;
    if key.is_empty() {
        return Err(BadSecret::Empty);
    }
    Ok(key)
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// One `v1,<base64>` signature.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(key, msg_id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// The `webhook-signature` header value: one signature per key, space-separated.
pub fn signature_header(keys: &[&[u8]], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| sign(key, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp is not a unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than {TOLERANCE_SECS} s away from now")]
    Stale,
    #[error("no v1 signature in webhook-signature matches")]
    NoMatch,
}

/// Checks a received message: the timestamp is recent and one `v1` signature matches
/// (compared in constant time).
pub fn verify(
    key: &[u8],
    msg_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    for candidate in signatures.split_whitespace() {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = STANDARD.decode(encoded) else {
            continue;
        };
        if mac(key, msg_id, ts, body).verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries.
    #[test]
    fn matches_the_reference_example() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verifies_its_own_signatures_and_refuses_others() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        let key = secret_key(&secret).unwrap();
        assert_eq!(key.len(), 32);
        let other = secret_key(&generate_secret()).unwrap();
        let header = signature_header(&[&other, &key], "evt_1", 1000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(verify(&key, "evt_1", "1000", &header, b"{}", 1010), Ok(()));
        assert_eq!(
            verify(&key, "evt_1", "1000", &header, b"{ }", 1010),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&key, "evt_2", "1000", &header, b"{}", 1010),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&key, "evt_1", "1000", &header, b"{}", 2000),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&key, "evt_1", "x", &header, b"{}", 1000),
            Err(VerifyError::BadTimestamp)
        );
    }
}

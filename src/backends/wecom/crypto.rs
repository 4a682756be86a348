//! WeCom cryptography (`wecom-cloud-printer-reference.md`):
//!
//! - downloaded files: AES-256-CBC, key = Base64-decode(`encoding_aeskey` + "="), IV = the
//!   key's first 16 bytes, PKCS#7 padding to a multiple of **32** bytes (not AES's 16);
//! - push messages: the standard WeCom envelope, base64(AES(16 random bytes ‖ message length
//!   as 4-byte big-endian ‖ message ‖ receive id)) with the callback EncodingAESKey;
//! - `msg_signature`: hex SHA-1 over the sorted strings (token, timestamp, nonce, encrypt).

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, KeyIvInit};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

type Decryptor = cbc::Decryptor<aes::Aes256>;

/// WeCom pads to a multiple of 32 bytes.
const PAD_BLOCK: usize = 32;

/// Why a WeCom key, ciphertext or signature was refused. Never carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the EncodingAESKey is not 43 base64 characters decoding to 32 bytes")]
    BadKey,
    #[error("the ciphertext is not valid base64")]
    BadBase64,
    #[error("the ciphertext length is not a multiple of the AES block size")]
    BadLength,
    #[error("the decrypted data has bad PKCS#7 padding (wrong key?)")]
    BadPadding,
    #[error("the decrypted message is malformed")]
    BadMessage,
}

/// An AES-256 key derived from an EncodingAESKey. `Debug` hides it.
#[derive(Clone)]
pub struct AesKey([u8; 32]);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey([redacted])")
    }
}

/// WeCom keys may end in a non-canonical base64 character: decode leniently.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl AesKey {
    /// Key = Base64-decode(`encoding_aes_key` + "="): 43 characters give 32 bytes.
    pub fn from_encoding_aes_key(encoding_aes_key: &str) -> Result<AesKey, CryptoError> {
        if encoding_aes_key.len() != 43 {
            return Err(CryptoError::BadKey);
        }
        let bytes = LENIENT
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::BadKey)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(AesKey)
            .map_err(|_| CryptoError::BadKey)
    }

    /// AES-256-CBC decryption with IV = key[..16], then PKCS#7 (block 32) unpadding.
    pub fn decrypt(&self, cipher: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if cipher.is_empty() || !cipher.len().is_multiple_of(16) {
            return Err(CryptoError::BadLength);
        }
        let decryptor =
            Decryptor::new_from_slices(&self.0, &self.0[..16]).map_err(|_| CryptoError::BadKey)?;
        let mut plain = decryptor
            .decrypt_padded_vec_mut::<NoPadding>(cipher)
            .map_err(|_| CryptoError::BadPadding)?;
        let n = usize::from(*plain.last().ok_or(CryptoError::BadPadding)?);
        if n == 0 || n > PAD_BLOCK || n > plain.len() {
            return Err(CryptoError::BadPadding);
        }
        // Every padding byte carries the pad length.
        if plain[plain.len() - n..]
            .iter()
            .any(|b| usize::from(*b) != n)
        {
            return Err(CryptoError::BadPadding);
        }
        plain.truncate(plain.len() - n);
        Ok(plain)
    }

    /// Opens a push message envelope into (message, receive id).
    pub fn decrypt_message(&self, encrypt_b64: &str) -> Result<(Vec<u8>, String), CryptoError> {
        let cipher = base64::engine::general_purpose::STANDARD
            .decode(encrypt_b64.trim())
            .map_err(|_| CryptoError::BadBase64)?;
        let plain = self.decrypt(&cipher)?;
        let len_bytes: [u8; 4] = plain
            .get(16..20)
            .and_then(|s| s.try_into().ok())
            .ok_or(CryptoError::BadMessage)?;
        let len =
            usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| CryptoError::BadMessage)?;
        let end = 20usize.checked_add(len).ok_or(CryptoError::BadMessage)?;
        let message = plain.get(20..end).ok_or(CryptoError::BadMessage)?.to_vec();
        let receive_id = String::from_utf8(plain.get(end..).unwrap_or_default().to_vec())
            .map_err(|_| CryptoError::BadMessage)?;
        Ok((message, receive_id))
    }
}

/// `msg_signature`: hex SHA-1 over the lexicographically sorted strings, concatenated.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Checks a push's `msg_signature` in constant time.
pub fn signature_matches(
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
    given: &str,
) -> bool {
    let expected = msg_signature(token, timestamp, nonce, encrypt);
    let given = given.trim().to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vendor_sim::wecom::crypto as sim;

    fn key_pair() -> (String, AesKey, [u8; 32]) {
        let encoding = sim::new_encoding_aes_key();
        let ours = AesKey::from_encoding_aes_key(&encoding).unwrap();
        let theirs = sim::aes_key(&encoding).unwrap();
        (encoding, ours, theirs)
    }

    #[test]
    fn files_encrypted_as_wecom_does_decrypt_for_every_length_around_the_32_byte_padding() {
        let (_, ours, theirs) = key_pair();
        for len in [0, 1, 15, 16, 31, 32, 33, 64, 1000] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let cipher = sim::encrypt(&theirs, &plain);
            assert_eq!(ours.decrypt(&cipher).unwrap(), plain, "length {len}");
        }
    }

    #[test]
    fn a_wrong_key_is_refused_not_mistaken_for_data() {
        let (_, _, theirs) = key_pair();
        let (_, other, _) = key_pair();
        let cipher = sim::encrypt(&theirs, b"hello wecom, this is a print job");
        assert!(other.decrypt(&cipher).is_err());
    }

    #[test]
    fn keys_must_be_43_characters_of_base64() {
        assert_eq!(
            AesKey::from_encoding_aes_key("short").unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(
            AesKey::from_encoding_aes_key(&"!".repeat(43)).unwrap_err(),
            CryptoError::BadKey
        );
    }

    #[test]
    fn truncated_ciphertexts_are_refused() {
        let (_, ours, _) = key_pair();
        assert_eq!(ours.decrypt(&[]).unwrap_err(), CryptoError::BadLength);
        assert_eq!(ours.decrypt(&[0; 17]).unwrap_err(), CryptoError::BadLength);
    }

    #[test]
    fn push_envelopes_open_with_their_receive_id() {
        let (_, ours, theirs) = key_pair();
        let e = sim::encrypt_message(&theirs, "{\"event\":\"打印\"}".as_bytes(), "wwcorp");
        let (msg, receive_id) = ours.decrypt_message(&e).unwrap();
        assert_eq!(msg, "{\"event\":\"打印\"}".as_bytes());
        assert_eq!(receive_id, "wwcorp");
        assert_eq!(
            ours.decrypt_message("not base64!").unwrap_err(),
            CryptoError::BadBase64
        );
    }

    #[test]
    fn signatures_agree_with_wecoms_and_forgeries_fail() {
        let sig = sim::msg_signature("tok", "1700000000", "nonce", "ENC");
        assert_eq!(msg_signature("tok", "1700000000", "nonce", "ENC"), sig);
        assert!(signature_matches("tok", "1700000000", "nonce", "ENC", &sig));
        assert!(signature_matches(
            "tok",
            "1700000000",
            "nonce",
            "ENC",
            &sig.to_uppercase()
        ));
        assert!(!signature_matches(
            "tok",
            "1700000001",
            "nonce",
            "ENC",
            &sig
        ));
        assert!(!signature_matches("tok", "1700000000", "nonce", "ENC", ""));
    }
}

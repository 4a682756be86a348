//! WeCom cryptography (`wecom-cloud-printer-reference.md`): the download file cipher, the
//! push message cipher and `msg_signature`. Public so tests can decrypt what the simulator
//! sends exactly as a real client must.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rand::RngCore;
use sha1::{Digest, Sha1};

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// WeCom pads with PKCS#7 to a multiple of 32 bytes (not the AES block size of 16).
const PAD_BLOCK: usize = 32;

/// Why a WeCom ciphertext or key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("EncodingAESKey must be 43 base64 characters decoding to 32 bytes")]
    BadKey,
    #[error("ciphertext is not valid base64")]
    BadBase64,
    #[error("ciphertext length is not a multiple of the block size")]
    BadLength,
    #[error("bad PKCS#7 padding")]
    BadPadding,
    #[error("decrypted message is malformed")]
    BadMessage,
}

/// Base64 that tolerates the non-canonical last character WeCom keys may have.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The AES-256 key: Base64-decode(`encoding_aeskey` + "=").
pub fn aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    let bytes = LENIENT
        .decode(format!("{encoding_aes_key}="))
        .map_err(|_| CryptoError::BadKey)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| CryptoError::BadKey)
}

/// A fresh random EncodingAESKey (43 characters).
pub fn new_encoding_aes_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(key)
}

fn pad(mut data: Vec<u8>) -> Vec<u8> {
    let n = PAD_BLOCK - data.len() % PAD_BLOCK;
    // n is in 1..=32, so it fits a byte.
    let byte = u8::try_from(n).unwrap_or(32);
    data.extend(std::iter::repeat_n(byte, n));
    data
}

fn unpad(mut data: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
    let n = usize::from(*data.last().ok_or(CryptoError::BadPadding)?);
    if n == 0 || n > PAD_BLOCK || n > data.len() {
        return Err(CryptoError::BadPadding);
    }
    data.truncate(data.len() - n);
    Ok(data)
}

/// AES-256-CBC, IV = first 16 bytes of the key, PKCS#7 to a multiple of 32 bytes.
pub fn encrypt(key: &[u8; 32], plain: &[u8]) -> Vec<u8> {
    let padded = pad(plain.to_vec());
    match Encryptor::new_from_slices(key, &key[..16]) {
        Ok(enc) => enc.encrypt_padded_vec_mut::<NoPadding>(&padded),
        // Unreachable: the key is 32 bytes and the IV 16 by construction.
        Err(_) => Vec::new(),
    }
}

/// The inverse of [`encrypt`].
pub fn decrypt(key: &[u8; 32], cipher: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if cipher.is_empty() || !cipher.len().is_multiple_of(16) {
        return Err(CryptoError::BadLength);
    }
    let dec = Decryptor::new_from_slices(key, &key[..16]).map_err(|_| CryptoError::BadKey)?;
    let plain = dec
        .decrypt_padded_vec_mut::<NoPadding>(cipher)
        .map_err(|_| CryptoError::BadPadding)?;
    unpad(plain)
}

/// `msg_signature`: hex SHA-1 over the lexicographically sorted token, timestamp, nonce and
/// encrypt strings, concatenated.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The standard WeCom message envelope: base64(AES(random 16 bytes ‖ msg length as 4-byte
/// big-endian ‖ msg ‖ receive_id)).
pub fn encrypt_message(key: &[u8; 32], msg: &[u8], receive_id: &str) -> String {
    let mut plain = Vec::with_capacity(20 + msg.len() + receive_id.len());
    let mut random = [0u8; 16];
    rand::rng().fill_bytes(&mut random);
    plain.extend_from_slice(&random);
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(msg);
    plain.extend_from_slice(receive_id.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(encrypt(key, &plain))
}

/// Decrypts a message envelope into (msg, receive_id).
pub fn decrypt_message(
    key: &[u8; 32],
    encrypt_b64: &str,
) -> Result<(Vec<u8>, String), CryptoError> {
    let cipher = base64::engine::general_purpose::STANDARD
        .decode(encrypt_b64)
        .map_err(|_| CryptoError::BadBase64)?;
    let plain = decrypt(key, &cipher)?;
    let len_bytes: [u8; 4] = plain
        .get(16..20)
        .and_then(|s| s.try_into().ok())
        .ok_or(CryptoError::BadMessage)?;
    let len =
        usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| CryptoError::BadMessage)?;
    let msg = plain
        .get(20..20 + len)
        .ok_or(CryptoError::BadMessage)?
        .to_vec();
    let receive_id = String::from_utf8(plain.get(20 + len..).unwrap_or_default().to_vec())
        .map_err(|_| CryptoError::BadMessage)?;
    Ok((msg, receive_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_reaches_a_multiple_of_32_bytes() {
        let key = [7u8; 32];
        for len in [0, 1, 15, 16, 31, 32, 33, 100] {
            let plain = vec![0xAB; len];
            let c = encrypt(&key, &plain);
            assert_eq!(c.len() % 32, 0, "len {len}");
            assert!(c.len() > len);
            assert_eq!(decrypt(&key, &c), Ok(plain));
        }
    }

    #[test]
    fn the_key_is_the_base64_of_the_encoding_aes_key_plus_one_equals_sign() {
        let k = new_encoding_aes_key();
        assert_eq!(k.len(), 43);
        assert!(aes_key(&k).is_ok());
        assert_eq!(aes_key("short"), Err(CryptoError::BadKey));
    }

    #[test]
    fn messages_round_trip_with_their_receive_id() {
        let key = [3u8; 32];
        let e = encrypt_message(&key, b"{\"a\":1}", "wwcorp");
        assert_eq!(
            decrypt_message(&key, &e),
            Ok((b"{\"a\":1}".to_vec(), "wwcorp".to_owned()))
        );
    }

    #[test]
    fn signature_sorts_before_hashing() {
        assert_eq!(
            msg_signature("a", "b", "c", "d"),
            msg_signature("d", "c", "b", "a")
        );
    }
}

//! Per-job callback tokens: vendors that report results to a URL (Lianke) sign nothing, so
//! the gateway puts an HMAC of the job id in the URL it hands them and checks it on the
//! way back, in constant time. Several keys verify; the first one signs (rotation).

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct CallbackKeys {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for CallbackKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallbackKeys({} keys, redacted)", self.keys.len())
    }
}

impl CallbackKeys {
    /// From `CALLBACK_SECRETS` (comma-separated), or one random key when unset.
    pub fn from_config(secrets: Option<&str>) -> CallbackKeys {
        let keys: Vec<Vec<u8>> = secrets
            .map(|s| {
                s.split(',')
                    .map(|k| k.trim().as_bytes().to_vec())
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if keys.is_empty() {
            let mut key = vec![0u8; 32];
            rand::rng().fill_bytes(&mut key);
            CallbackKeys { keys: vec![key] }
        } else {
            CallbackKeys { keys }
        }
    }

    fn mac(key: &[u8], job_id: Uuid) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"print-gateway callback v1:");
        mac.update(job_id.as_bytes());
        mac
    }

    pub fn sign(&self, job_id: Uuid) -> String {
        hex::encode(Self::mac(&self.keys[0], job_id).finalize().into_bytes())
    }

    /// Constant-time check against every configured key.
    pub fn verify(&self, job_id: Uuid, token: &str) -> bool {
        let Ok(given) = hex::decode(token) else {
            return false;
        };
        self.keys
            .iter()
            .any(|key| Self::mac(key, job_id).verify_slice(&given).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_job_and_survive_rotation() {
        let old = CallbackKeys::from_config(Some("old-key-0123456789"));
        let rotated = CallbackKeys::from_config(Some("new-key-0123456789,old-key-0123456789"));
        let job = Uuid::now_v7();
        let token = old.sign(job);
        assert!(old.verify(job, &token));
        assert!(
            rotated.verify(job, &token),
            "old tokens still verify after rotation"
        );
        assert!(!old.verify(Uuid::now_v7(), &token));
        assert!(!old.verify(job, "zz"));
        assert!(!CallbackKeys::from_config(Some("other-key-0123456789")).verify(job, &token));
    }
}

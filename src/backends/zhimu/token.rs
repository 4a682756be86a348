//! The Zhimu app token (doc §3.1): `POST /openapi/getToken` with the AppID, a millisecond
//! timestamp, a random `oncestr` and a SHA-1 signature; the answer's `expiresIn` is in
//! milliseconds (one day). Every other call sends the token as `Api-Access-Token`.

use std::time::Duration;

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};

use super::wire::GetTokenRequest;

/// The app's credentials. `Debug` never shows the AppKey.
#[derive(Clone, Debug)]
pub struct AppCredentials {
    pub app_id: String,
    pub app_key: SecretString,
}

/// An `Api-Access-Token`. `Debug` never shows it.
pub use crate::backends::token_cache::AccessToken as AppToken;

/// The signature of doc §3.1.2: lower-case hex SHA-1 of appid, timestamp, oncestr and
/// appkey concatenated in that order, with no separators.
pub fn signature(app_id: &str, timestamp: &str, oncestr: &str, app_key: &str) -> String {
    let mut hasher = Sha1::new();
    for part in [app_id, timestamp, oncestr, app_key] {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// A signed token request for `now_ms` (milliseconds since the epoch).
pub fn token_request(credentials: &AppCredentials, now_ms: i64) -> GetTokenRequest {
    let oncestr = hex::encode(rand::rng().random::<[u8; 16]>());
    let timestamp = now_ms.to_string();
    let signature = signature(
        &credentials.app_id,
        &timestamp,
        &oncestr,
        credentials.app_key.expose_secret(),
    );
    GetTokenRequest {
        appid: credentials.app_id.clone(),
        timestamp,
        oncestr,
        signature,
    }
}

/// `expiresIn` is milliseconds (doc §3.1.3: 86,400,000 = one day). A missing or zero
/// lifetime is treated as one minute, so a token is still reused a little.
pub fn lifetime(expires_in_ms: Option<u64>) -> Duration {
    match expires_in_ms {
        Some(ms) if ms > 0 => Duration::from_millis(ms),
        _ => Duration::from_secs(60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of doc §3.1.2.
    #[test]
    fn the_documented_signature_example() {
        assert_eq!(
            signature(
                "f03e4012f1b7471f8ab9b3e9429ed67b",
                "1753366712000",
                "2154214",
                "cdd916a412844758a63672461c85f354"
            ),
            "aadc59381dc1ff8e55595be6b5707fc871dae6de"
        );
    }

    #[test]
    fn a_request_is_signed_with_its_own_timestamp_and_nonce() {
        let credentials = AppCredentials {
            app_id: "app".into(),
            app_key: "key".into(),
        };
        let a = token_request(&credentials, 1_753_366_712_000);
        let b = token_request(&credentials, 1_753_366_712_000);
        assert_eq!(a.timestamp, "1753366712000");
        assert_ne!(a.oncestr, b.oncestr, "a fresh nonce per request");
        assert_eq!(
            a.signature,
            signature("app", &a.timestamp, &a.oncestr, "key")
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let credentials = AppCredentials {
            app_id: "app".into(),
            app_key: "very-secret-key".into(),
        };
        let token = AppToken::new("very-secret-token".into());
        let shown = format!("{credentials:?} {token:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    #[test]
    fn expires_in_is_milliseconds() {
        assert_eq!(lifetime(Some(86_400_000)), Duration::from_secs(86_400));
        assert_eq!(lifetime(None), Duration::from_secs(60));
    }
}

//! WeCom tokens [95992] [96022]: one `model_access_token` (model id + secret + the newest
//! model ticket) and one `device_access_token` per device (device sn + secret), both living
//! 7200 s. Cached, refreshed ahead of expiry, refreshed once when WeCom rejects them
//! (40014/42001), and fetched by one caller at a time.
//!
//! The caching itself is the generic [`TokenCache`] shared with Zhimu; this module only
//! says which caches exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use secrecy::SecretString;

pub use crate::backends::token_cache::{AccessToken, TokenCache};

/// A fresh token is fetched this long before the old one lapses (capped at a fifth of the
/// token's lifetime by the cache).
pub const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// The token caches of one WeCom model and its devices, shared by every worker.
pub struct WecomTokens {
    pub model: TokenCache<AccessToken>,
    devices: Mutex<HashMap<String, Arc<TokenCache<AccessToken>>>>,
    /// The newest `model_ticket`: configured at start, replaced by `model_ticket` pushes.
    ticket: RwLock<Option<SecretString>>,
}

impl WecomTokens {
    pub fn new(ticket: Option<SecretString>) -> WecomTokens {
        WecomTokens {
            model: TokenCache::new(REFRESH_AHEAD).for_vendor(super::NAME),
            devices: Mutex::new(HashMap::new()),
            ticket: RwLock::new(ticket),
        }
    }

    /// The cache of one device's token.
    pub fn device(&self, device_sn: &str) -> Arc<TokenCache<AccessToken>> {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            devices.entry(device_sn.to_owned()).or_insert_with(|| {
                Arc::new(TokenCache::new(REFRESH_AHEAD).for_vendor(super::NAME))
            }),
        )
    }

    pub fn ticket(&self) -> Option<SecretString> {
        self.ticket
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the model ticket. A changed ticket does not invalidate the model token:
    /// tokens stay valid for their lifetime; the next fetch uses the new ticket.
    pub fn set_ticket(&self, ticket: SecretString) {
        *self.ticket.write().unwrap_or_else(|p| p.into_inner()) = Some(ticket);
    }
}

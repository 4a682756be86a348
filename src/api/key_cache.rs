//! Verified API keys, remembered for a few seconds so that authenticating a request costs
//! no database round trip: a [`ChangeCache`] on the `api_keys_changed` trigger, which
//! NOTIFYs every change that matters (revoke, delete, scopes, tenant, expiry).

use std::time::Duration;

use uuid::Uuid;

use crate::store::change_cache::ChangeCache;

/// The channel the `api_keys_changed` trigger signals on (payload: the key's id).
pub const CHANNEL: &str = "print_gateway_api_keys";

/// What a verified key grants.
#[derive(Debug, Clone)]
pub struct CachedKey {
    pub id: Uuid,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub name: String,
    pub prefix: String,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Verified keys by the hash of the secret.
pub type KeyCache = ChangeCache<CachedKey>;

/// A key cache keeping keys for `ttl`; zero disables it.
pub fn new(ttl: Duration) -> KeyCache {
    ChangeCache::new(ttl, CHANNEL, |key, payload| {
        // The trigger names the key by id; anything unreadable forgets every key.
        Uuid::parse_str(payload).map_or(true, |id| id == key.id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: Uuid) -> CachedKey {
        CachedKey {
            id,
            tenant: "t".into(),
            scopes: vec![crate::api::auth::JOBS_READ.into()],
            name: "k".into(),
            prefix: "pg_test".into(),
            expires_at: None,
        }
    }

    #[test]
    fn answers_only_while_listening_and_forgets_on_change() {
        let cache = new(Duration::from_secs(60));
        let id = Uuid::now_v7();
        cache.put(b"h".to_vec(), key(id), cache.generation());
        assert!(cache.get(b"h").is_none(), "not listening: nothing cached");

        cache.set_listening(true);
        cache.put(b"h".to_vec(), key(id), cache.generation());
        assert_eq!(cache.get(b"h").map(|k| k.id), Some(id));

        cache.invalidate(Some(&Uuid::now_v7().to_string()));
        assert!(
            cache.get(b"h").is_some(),
            "another key's change keeps this one"
        );
        cache.invalidate(Some(&id.to_string()));
        assert!(cache.get(b"h").is_none());

        // a look-up that raced with a change is not cached
        let before = cache.generation();
        cache.invalidate(Some(&id.to_string()));
        cache.put(b"h".to_vec(), key(id), before);
        assert!(cache.get(b"h").is_none());

        cache.put(b"h".to_vec(), key(id), cache.generation());
        cache.set_listening(false);
        assert!(cache.get(b"h").is_none(), "connection lost: cache off");
    }

    #[test]
    fn a_zero_ttl_disables_it() {
        let cache = new(Duration::ZERO);
        cache.set_listening(true);
        cache.put(b"h".to_vec(), key(Uuid::now_v7()), cache.generation());
        assert!(cache.get(b"h").is_none());
    }
}

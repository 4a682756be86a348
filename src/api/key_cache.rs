//! Verified API keys, remembered for a few seconds so that authenticating a request costs
//! no database round trip.
//!
//! Safe across replicas: a trigger on `api_keys` NOTIFYs every change that matters (revoke,
//! delete, scopes, tenant) and each replica forgets that key at once. The cache answers only
//! while its LISTEN connection is up (it starts empty on every (re)connect), and the TTL
//! bounds what a lost notification could leave. A key read from the database while a change
//! notification arrives is not cached (generation check).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The channel the `api_keys_changed` trigger signals on (payload: the key's id).
pub const CHANNEL: &str = "print_gateway_api_keys";

/// Entries kept at most; past it the cache starts over (keys are few in practice).
const MAX_ENTRIES: usize = 10_000;

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

pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<Vec<u8>, (CachedKey, Instant)>>,
    /// Bumped by every invalidation: a look-up that started before one is not cached.
    generation: AtomicU64,
    listening: AtomicBool,
}

impl KeyCache {
    /// A cache keeping keys for `ttl`; zero disables it.
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, (CachedKey, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active(&self) -> bool {
        !self.ttl.is_zero() && self.listening.load(Ordering::Acquire)
    }

    /// The generation to pass to [`KeyCache::put`] after a database look-up.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached grant of the key with this hash, if fresh.
    pub fn get(&self, hash: &[u8]) -> Option<CachedKey> {
        if !self.active() {
            return None;
        }
        let entries = self.entries();
        let (key, at) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| key.clone())
    }

    /// Remembers a key read from the database, unless something changed since `generation`.
    pub fn put(&self, hash: Vec<u8>, key: CachedKey, generation: u64) {
        if !self.active() {
            return;
        }
        let mut entries = self.entries();
        if self.generation() != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(hash, (key, Instant::now()));
    }

    /// Forgets one key (by id), or everything when `None`.
    pub fn invalidate(&self, id: Option<Uuid>) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        match id {
            Some(id) => entries.retain(|_, (key, _)| key.id != id),
            None => entries.clear(),
        }
    }

    fn set_listening(&self, on: bool) {
        // Forget everything before answering again: changes may have been missed.
        self.invalidate(None);
        self.listening.store(on, Ordering::Release);
    }

    /// Follows key changes until `shutdown`, reconnecting; the cache is off while not
    /// connected.
    pub async fn listen(&self, pool: &PgPool, shutdown: &CancellationToken) {
        if self.ttl.is_zero() {
            return;
        }
        while !shutdown.is_cancelled() {
            let mut listener = match PgListener::connect_with(pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot LISTEN for API key changes; keys are checked in the database meanwhile");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            if let Err(err) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %err, "LISTEN for API key changes failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            self.set_listening(true);
            loop {
                tokio::select! {
                    message = listener.recv() => match message {
                        Ok(note) => self.invalidate(Some(Uuid::parse_str(note.payload()).unwrap_or_default()).filter(|id| !id.is_nil())),
                        Err(err) => {
                            tracing::warn!(error = %err, "API key LISTEN connection lost; reconnecting");
                            break;
                        }
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
            self.set_listening(false);
        }
    }
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
        let cache = KeyCache::new(Duration::from_secs(60));
        let id = Uuid::now_v7();
        cache.put(b"h".to_vec(), key(id), cache.generation());
        assert!(cache.get(b"h").is_none(), "not listening: nothing cached");

        cache.set_listening(true);
        cache.put(b"h".to_vec(), key(id), cache.generation());
        assert_eq!(cache.get(b"h").map(|k| k.id), Some(id));

        cache.invalidate(Some(Uuid::now_v7()));
        assert!(
            cache.get(b"h").is_some(),
            "another key's change keeps this one"
        );
        cache.invalidate(Some(id));
        assert!(cache.get(b"h").is_none());

        // a look-up that raced with a change is not cached
        let before = cache.generation();
        cache.invalidate(Some(id));
        cache.put(b"h".to_vec(), key(id), before);
        assert!(cache.get(b"h").is_none());

        cache.put(b"h".to_vec(), key(id), cache.generation());
        cache.set_listening(false);
        assert!(cache.get(b"h").is_none(), "connection lost: cache off");
    }

    #[test]
    fn a_zero_ttl_disables_it() {
        let cache = KeyCache::new(Duration::ZERO);
        cache.set_listening(true);
        cache.put(b"h".to_vec(), key(Uuid::now_v7()), cache.generation());
        assert!(cache.get(b"h").is_none());
    }
}

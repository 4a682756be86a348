//! WeCom tokens [95992] [96022]: one `model_access_token` (model id + secret + the newest
//! model ticket) and one `device_access_token` per device (device sn + secret), both living
//! 7200 s. Cached, refreshed ahead of expiry, refreshed once when WeCom rejects them
//! (40014/42001), and fetched by one caller at a time.
//!
//! The caching itself is the generic [`TokenCache`]; this module only says which caches
//! exist. (Until the shared `backends::token_cache` lands on main, a minimal cache with the
//! same interface lives below; switching is a one-line `use`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use cache::TokenCache;

/// A fresh token is fetched this long before the old one lapses (capped at a fifth of the
/// token's lifetime by the cache).
pub const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// The token caches of one WeCom model and its devices, shared by every worker.
pub struct WecomTokens {
    pub model: TokenCache<String>,
    devices: Mutex<HashMap<String, Arc<TokenCache<String>>>>,
    /// The newest `model_ticket`: configured at start, replaced by `model_ticket` pushes.
    ticket: RwLock<Option<String>>,
}

impl WecomTokens {
    pub fn new(ticket: Option<String>) -> WecomTokens {
        WecomTokens {
            model: TokenCache::new(REFRESH_AHEAD),
            devices: Mutex::new(HashMap::new()),
            ticket: RwLock::new(ticket),
        }
    }

    /// The cache of one device's token.
    pub fn device(&self, device_sn: &str) -> Arc<TokenCache<String>> {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            devices
                .entry(device_sn.to_owned())
                .or_insert_with(|| Arc::new(TokenCache::new(REFRESH_AHEAD))),
        )
    }

    pub fn ticket(&self) -> Option<String> {
        self.ticket
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the model ticket. A changed ticket does not invalidate the model token:
    /// tokens stay valid for their lifetime; the next fetch uses the new ticket.
    pub fn set_ticket(&self, ticket: String) {
        *self.ticket.write().unwrap_or_else(|p| p.into_inner()) = Some(ticket);
    }
}

mod cache {
    use std::future::Future;
    use std::sync::RwLock;
    use std::time::Duration;

    use tokio::sync::Mutex;
    use tokio::time::Instant;

    #[derive(Debug, Clone)]
    struct Entry<T> {
        value: T,
        refresh_at: Instant,
    }

    /// A cached credential with its expiry: refresh ahead, single flight, and
    /// compare-and-invalidate on rejection (many calls rejected together refresh once).
    #[derive(Debug)]
    pub struct TokenCache<T> {
        entry: RwLock<Option<Entry<T>>>,
        refreshing: Mutex<()>,
        refresh_ahead: Duration,
    }

    impl<T: Clone + PartialEq> TokenCache<T> {
        pub fn new(refresh_ahead: Duration) -> TokenCache<T> {
            TokenCache {
                entry: RwLock::new(None),
                refreshing: Mutex::new(()),
                refresh_ahead,
            }
        }

        fn read(&self) -> Option<Entry<T>> {
            self.entry.read().unwrap_or_else(|p| p.into_inner()).clone()
        }

        fn write(&self, value: Option<Entry<T>>) {
            *self.entry.write().unwrap_or_else(|p| p.into_inner()) = value;
        }

        /// The cached value, or a fresh one from `fetch` (value, lifetime); one fetch at a
        /// time.
        pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<T, E>
        where
            F: FnOnce() -> Fut,
            Fut: Future<Output = Result<(T, Duration), E>>,
        {
            if let Some(entry) = self.read()
                && Instant::now() < entry.refresh_at
            {
                return Ok(entry.value);
            }
            let _guard = self.refreshing.lock().await;
            // Another caller may have refreshed while this one waited.
            if let Some(entry) = self.read()
                && Instant::now() < entry.refresh_at
            {
                return Ok(entry.value);
            }
            let started = Instant::now();
            let (value, lifetime) = fetch().await?;
            let expires_at = started + lifetime;
            self.write(Some(Entry {
                value: value.clone(),
                refresh_at: expires_at - self.refresh_ahead.min(lifetime / 5),
            }));
            Ok(value)
        }

        /// Drops `rejected` if it is still the cached value.
        pub fn invalidate(&self, rejected: &T) {
            if self.read().is_some_and(|e| e.value == *rejected) {
                self.write(None);
            }
        }

        pub fn clear(&self) {
            self.write(None);
        }

        /// Stores a value obtained another way (`get_device_secret` also returns a token).
        pub fn prime(&self, value: T, lifetime: Duration) {
            let expires_at = Instant::now() + lifetime;
            self.write(Some(Entry {
                value,
                refresh_at: expires_at - self.refresh_ahead.min(lifetime / 5),
            }));
        }
    }

    #[cfg(test)]
    mod tests {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};

        use super::*;

        #[tokio::test]
        async fn many_callers_cause_one_fetch_and_a_rejection_refreshes_once() {
            let cache = Arc::new(TokenCache::<u32>::new(Duration::from_secs(1)));
            let calls = Arc::new(AtomicU32::new(0));
            let fetch = |calls: Arc<AtomicU32>| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, ()>((
                    calls.fetch_add(1, Ordering::SeqCst) + 1,
                    Duration::from_secs(60),
                ))
            };
            let mut tasks = Vec::new();
            for _ in 0..20 {
                let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
                tasks.push(tokio::spawn(async move {
                    cache.get(|| fetch(calls)).await.unwrap()
                }));
            }
            for t in tasks {
                assert_eq!(t.await.unwrap(), 1);
            }
            // 20 calls rejected with token 1: one refresh.
            for _ in 0..20 {
                cache.invalidate(&1);
            }
            assert_eq!(cache.get(|| fetch(Arc::clone(&calls))).await.unwrap(), 2);
            cache.invalidate(&1);
            assert_eq!(cache.get(|| fetch(Arc::clone(&calls))).await.unwrap(), 2);
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        }

        #[tokio::test]
        async fn a_token_is_refreshed_ahead_of_its_expiry() {
            let cache = TokenCache::<u32>::new(Duration::from_secs(1));
            let calls = AtomicU32::new(0);
            let get = || async {
                cache
                    .get(|| async {
                        Ok::<_, ()>((
                            calls.fetch_add(1, Ordering::SeqCst) + 1,
                            Duration::from_millis(100),
                        ))
                    })
                    .await
                    .unwrap()
            };
            assert_eq!(get().await, 1);
            assert_eq!(get().await, 1);
            // refresh ahead is capped at a fifth of 100 ms: due after 80 ms
            tokio::time::sleep(Duration::from_millis(85)).await;
            assert_eq!(get().await, 2);
        }
    }
}

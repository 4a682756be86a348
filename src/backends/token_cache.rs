//! One cached vendor credential (Zhimu app token today, WeCom model/device tokens next),
//! shared by every worker of a process:
//!
//! - the value is kept until shortly before the lifetime the vendor gave it ends
//!   (*refresh ahead*), so a call never leaves with a token about to lapse;
//! - inside the refresh-ahead window one caller refreshes while the others keep using the
//!   still valid value; once it has lapsed, callers wait for the one refresh in progress
//!   (*single flight*: 50 workers finding it stale cause one fetch, not 50);
//! - a value the vendor rejected is dropped only if it is still the cached one
//!   ([`TokenCache::invalidate`]), so many calls rejected together refresh it once.
//!
//! The cache knows nothing of any vendor: the fetch is a closure handed to [`TokenCache::get`].

use std::future::Future;
use std::sync::RwLock;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    /// When the vendor stops accepting it.
    expires_at: Instant,
    /// From when on a caller should fetch a new one.
    refresh_at: Instant,
}

/// The longest lifetime believed (vendors document hours to a day).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// A vendor access token (Zhimu's app token, WeCom's model and device tokens). `Debug`
/// never shows it (`secrecy`); two tokens compare by value, so a rejected one can be
/// dropped from its cache without touching a newer one.
#[derive(Clone, Debug)]
pub struct AccessToken(secrecy::SecretString);

impl AccessToken {
    pub fn new(token: String) -> AccessToken {
        AccessToken(secrecy::SecretString::from(token))
    }

    /// The token's text, for the request that carries it.
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl PartialEq for AccessToken {
    fn eq(&self, other: &AccessToken) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for AccessToken {}

/// A cached credential of type `T` with its expiry.
#[derive(Debug)]
pub struct TokenCache<T> {
    entry: RwLock<Option<Entry<T>>>,
    /// Held by the one caller fetching a new value.
    refreshing: Mutex<()>,
    refresh_ahead: Duration,
    /// The vendor, for the token-refresh metric.
    vendor: &'static str,
}

impl<T: Clone + PartialEq> TokenCache<T> {
    /// `refresh_ahead`: how long before expiry a new value is fetched. It is capped at a
    /// fifth of each value's lifetime, so short-lived tokens are still used for most of it.
    pub fn new(refresh_ahead: Duration) -> TokenCache<T> {
        TokenCache {
            entry: RwLock::new(None),
            refreshing: Mutex::new(()),
            refresh_ahead,
            vendor: "unnamed",
        }
    }

    /// Names the vendor whose tokens this cache holds (for the refresh metric).
    pub fn for_vendor(mut self, vendor: &'static str) -> TokenCache<T> {
        self.vendor = vendor;
        self
    }

    fn read(&self) -> Option<Entry<T>> {
        match self.entry.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn write(&self, value: Option<Entry<T>>) {
        match self.entry.write() {
            Ok(mut guard) => *guard = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }

    /// The cached value, or a fresh one from `fetch` (which returns the value and its
    /// lifetime). At most one `fetch` runs at a time per cache.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Duration), E>>,
    {
        let now = Instant::now();
        match self.read() {
            Some(entry) if now < entry.refresh_at => return Ok(entry.value),
            // Still valid but due for renewal: renew unless another caller already is,
            // in which case the current value serves meanwhile.
            Some(entry) if now < entry.expires_at => match self.refreshing.try_lock() {
                Ok(_guard) => return self.fetch_and_store(fetch).await.or(Ok(entry.value)),
                Err(_) => return Ok(entry.value),
            },
            _ => {}
        }
        let _guard = self.refreshing.lock().await;
        // Someone else may have refreshed while this caller waited.
        if let Some(entry) = self.read()
            && Instant::now() < entry.expires_at
        {
            return Ok(entry.value);
        }
        self.fetch_and_store(fetch).await
    }

    async fn fetch_and_store<F, Fut, E>(&self, fetch: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Duration), E>>,
    {
        let started = Instant::now();
        let fetched = fetch().await;
        crate::observe::token_refresh(self.vendor, fetched.is_ok());
        let (value, lifetime) = fetched?;
        // The lifetime counts from when the vendor issued the value: measure from the
        // request, not the answer.
        self.write(Some(self.entry_for(value.clone(), started, lifetime)));
        Ok(value)
    }

    fn entry_for(&self, value: T, issued: Instant, lifetime: Duration) -> Entry<T> {
        // A vendor's lifetime is outside input: an absurd one must not overflow the clock.
        let lifetime = lifetime.min(MAX_LIFETIME);
        let expires_at = issued + lifetime;
        Entry {
            value,
            expires_at,
            refresh_at: expires_at - self.refresh_ahead.min(lifetime / 5),
        }
    }

    /// Lets `by` pass on the cache's clock: the cached value's refresh and expiry moments
    /// come `by` sooner. Tests use it to reach the end of a token's lifetime without
    /// waiting for it (the cache's decisions stay the ones real time would make).
    pub fn advance(&self, by: Duration) {
        if let Some(mut entry) = self.read() {
            let now = Instant::now();
            let sooner = |at: Instant| at.checked_sub(by).unwrap_or(now).min(at);
            entry.refresh_at = sooner(entry.refresh_at);
            entry.expires_at = sooner(entry.expires_at);
            self.write(Some(entry));
        }
    }

    /// Drops `rejected` if it is still the cached value (a vendor refused it). Calls that
    /// were rejected with an older value change nothing: a newer one is already cached.
    pub fn invalidate(&self, rejected: &T) {
        if self.read().is_some_and(|entry| entry.value == *rejected) {
            self.write(None);
        }
    }

    /// The one refresh a logical call makes after the vendor rejected its value: drops
    /// `rejected` (as [`TokenCache::invalidate`]) and answers true the first time, so the
    /// call retries once with a fresh value; false once `refreshed` (the call's own flag)
    /// is set, so a second rejection ends the call. Every vendor's token retry goes
    /// through here.
    pub fn refresh_once(&self, rejected: &T, refreshed: &mut bool) -> bool {
        if *refreshed {
            return false;
        }
        *refreshed = true;
        self.invalidate(rejected);
        true
    }

    /// Drops whatever is cached.
    pub fn clear(&self) {
        self.write(None);
    }

    /// Stores a value obtained another way (WeCom's `get_device_secret` also returns a
    /// device token), with its lifetime.
    pub fn prime(&self, value: T, lifetime: Duration) {
        self.write(Some(self.entry_for(value, Instant::now(), lifetime)));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn counting_fetch(
        calls: &Arc<AtomicU32>,
        lifetime: Duration,
        delay: Duration,
    ) -> impl Future<Output = Result<(u32, Duration), std::convert::Infallible>> + use<> {
        let calls = Arc::clone(calls);
        async move {
            tokio::time::sleep(delay).await;
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok((n, lifetime))
        }
    }

    #[tokio::test]
    async fn an_absurd_lifetime_does_not_overflow() {
        let cache = TokenCache::new(Duration::from_secs(1));
        let value = cache
            .get(|| async { Ok::<_, ()>(("t".to_owned(), Duration::MAX)) })
            .await
            .unwrap();
        assert_eq!(value, "t");
        cache.prime("u".to_owned(), Duration::from_secs(u64::MAX));
        let again = cache
            .get(|| async { Ok::<_, ()>(("v".to_owned(), Duration::from_secs(1))) })
            .await
            .unwrap();
        assert_eq!(again, "u", "the primed value is still good");
    }

    #[tokio::test]
    async fn a_value_is_fetched_once_and_reused_until_it_is_due() {
        let cache = TokenCache::new(Duration::from_secs(1));
        let calls = Arc::new(AtomicU32::new(0));
        for _ in 0..10 {
            let v = cache
                .get(|| counting_fetch(&calls, Duration::from_secs(60), Duration::ZERO))
                .await;
            assert_eq!(v, Ok(1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(1)));
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let cache = Arc::clone(&cache);
            let calls = Arc::clone(&calls);
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| {
                        counting_fetch(&calls, Duration::from_secs(60), Duration::from_millis(50))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_is_renewed_ahead_of_expiry_and_used_meanwhile() {
        let cache = TokenCache::new(Duration::from_secs(10));
        let calls = Arc::new(AtomicU32::new(0));
        let fetch = || counting_fetch(&calls, Duration::from_secs(100), Duration::ZERO);
        assert_eq!(cache.get(fetch).await, Ok(1));
        tokio::time::advance(Duration::from_secs(89)).await;
        assert_eq!(cache.get(fetch).await, Ok(1), "not yet due");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.get(fetch).await, Ok(2), "renewed 10 s ahead");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_margin_shrinks_for_short_lifetimes() {
        let cache = TokenCache::new(Duration::from_secs(300));
        let calls = Arc::new(AtomicU32::new(0));
        let fetch = || counting_fetch(&calls, Duration::from_secs(10), Duration::ZERO);
        assert_eq!(cache.get(fetch).await, Ok(1));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(
            cache.get(fetch).await,
            Ok(1),
            "a fifth of 10 s is the margin"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.get(fetch).await, Ok(2));
    }

    #[tokio::test]
    async fn a_failed_renewal_inside_the_window_keeps_the_valid_value() {
        let cache = TokenCache::new(Duration::from_secs(300));
        // Lifetime 100 ms, margin 20 ms.
        let first = cache
            .get(|| async { Ok::<_, std::convert::Infallible>((7u32, Duration::from_millis(100))) })
            .await;
        assert_eq!(first, Ok(7));
        tokio::time::sleep(Duration::from_millis(85)).await;
        let during = cache
            .get(|| async { Err::<(u32, Duration), _>("vendor down".to_owned()) })
            .await;
        assert_eq!(during, Ok(7));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let after = cache
            .get(|| async { Err::<(u32, Duration), _>("vendor down".to_owned()) })
            .await;
        assert_eq!(
            after,
            Err("vendor down".to_owned()),
            "expired: the error shows"
        );
    }

    #[tokio::test]
    async fn only_the_rejected_value_is_dropped() {
        let cache = TokenCache::new(Duration::from_secs(1));
        let calls = Arc::new(AtomicU32::new(0));
        let fetch = || counting_fetch(&calls, Duration::from_secs(60), Duration::ZERO);
        assert_eq!(cache.get(fetch).await, Ok(1));
        cache.invalidate(&1);
        assert_eq!(cache.get(fetch).await, Ok(2));
        // A late rejection of the old value leaves the new one alone.
        cache.invalidate(&1);
        assert_eq!(cache.get(fetch).await, Ok(2));
        cache.clear();
        assert_eq!(cache.get(fetch).await, Ok(3));
    }
}

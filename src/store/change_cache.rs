//! Rows remembered for a few seconds so that a hot read costs no database round trip,
//! kept true across replicas by Postgres: a trigger NOTIFYs every change that matters on
//! `channel` (payload: which row) and each replica forgets that row at once. The cache
//! answers only while its LISTEN connection is up (it starts empty on every (re)connect),
//! and the TTL bounds what a lost notification could leave. A row read from the database
//! while a change notification arrives is not cached (generation check).
//!
//! Used for verified API keys (`api::key_cache`) and for the printer settings the accept
//! path checks (`store::printers::PrinterCache`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::listen::Heard;

/// Entries kept at most; past it the cache starts over.
const MAX_ENTRIES: usize = 10_000;

pub struct ChangeCache<V> {
    ttl: Duration,
    /// The NOTIFY channel of the rows' trigger.
    channel: &'static str,
    /// Whether a change notification's payload concerns an entry (an empty payload
    /// concerns every entry).
    concerns: fn(&V, &str) -> bool,
    entries: Mutex<HashMap<Vec<u8>, (V, Instant)>>,
    /// Bumped by every invalidation: a look-up that started before one is not cached.
    generation: AtomicU64,
    listening: AtomicBool,
}

impl<V: Clone> ChangeCache<V> {
    /// A cache keeping rows for `ttl` (zero disables it), forgetting those a notification
    /// on `channel` `concerns`.
    pub fn new(
        ttl: Duration,
        channel: &'static str,
        concerns: fn(&V, &str) -> bool,
    ) -> ChangeCache<V> {
        ChangeCache {
            ttl,
            channel,
            concerns,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, (V, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active(&self) -> bool {
        !self.ttl.is_zero() && self.listening.load(Ordering::Acquire)
    }

    /// The generation to pass to [`ChangeCache::put`] after a database look-up.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached row under `key`, if fresh.
    pub fn get(&self, key: &[u8]) -> Option<V> {
        if !self.active() {
            return None;
        }
        let entries = self.entries();
        let (value, at) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Remembers a row read from the database, unless something changed since `generation`.
    pub fn put(&self, key: Vec<u8>, value: V, generation: u64) {
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
        entries.insert(key, (value, Instant::now()));
    }

    /// Forgets the rows a change named by `payload` concerns, or everything when `None`.
    pub fn invalidate(&self, payload: Option<&str>) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        match payload.filter(|p| !p.is_empty()) {
            Some(payload) => entries.retain(|_, (value, _)| !(self.concerns)(value, payload)),
            None => entries.clear(),
        }
    }

    pub(crate) fn set_listening(&self, on: bool) {
        // Forget everything before answering again: changes may have been missed.
        self.invalidate(None);
        self.listening.store(on, Ordering::Release);
    }

    /// Follows changes until `shutdown`, reconnecting; the cache is off while not connected.
    pub async fn listen(&self, pool: &PgPool, shutdown: &CancellationToken) {
        if self.ttl.is_zero() {
            return;
        }
        super::listen::follow(pool, self.channel, shutdown, |heard| match heard {
            Heard::Connected => self.set_listening(true),
            Heard::Notified(payload) => self.invalidate(Some(payload)),
            Heard::Lost => self.set_listening(false),
        })
        .await;
    }
}

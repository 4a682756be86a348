//! Wake-ups: the coalesced NOTIFY that tells other replicas a job is due or a callback
//! recorded, and the LISTEN loop that wakes the loops a notification is for (with a sweep
//! for the gaps). It owns no job state.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// What the announcer has to tell the other replicas: set by [`Engine::job_due`] and
/// [`Engine::callback_recorded`], taken by the announcer for its next NOTIFY. The payload
/// names the engine that sent it (its own listener ignores it: its loops were woken in
/// process already) and what became due: `<engine> jobs`, `<engine> callbacks`,
/// `<engine> jobs,callbacks`. Any other payload (the database's own `''` for a job made due
/// by a statement) wakes both kinds of loop.
pub(super) struct Announcement {
    engine: Uuid,
    jobs: AtomicBool,
    callbacks: AtomicBool,
    ready: Notify,
}

impl Default for Announcement {
    fn default() -> Announcement {
        Announcement {
            engine: Uuid::new_v4(),
            jobs: AtomicBool::new(false),
            callbacks: AtomicBool::new(false),
            ready: Notify::new(),
        }
    }
}

/// Which loops a notification wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wakes {
    pub(super) jobs: bool,
    pub(super) callbacks: bool,
}

impl Announcement {
    pub(super) fn jobs(&self) {
        self.jobs.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    pub(super) fn callbacks(&self) {
        self.callbacks.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// The payload of the next NOTIFY, taking what was set; `None` when nothing was.
    fn take(&self) -> Option<String> {
        let jobs = self.jobs.swap(false, Ordering::AcqRel);
        let callbacks = self.callbacks.swap(false, Ordering::AcqRel);
        let kinds = match (jobs, callbacks) {
            (true, true) => "jobs,callbacks",
            (true, false) => "jobs",
            (false, true) => "callbacks",
            (false, false) => return None,
        };
        Some(format!("{} {kinds}", self.engine))
    }

    /// What a heard payload wakes here.
    pub(super) fn wakes(&self, payload: &str) -> Wakes {
        let parsed = payload
            .split_once(' ')
            .and_then(|(engine, kinds)| Some((Uuid::parse_str(engine).ok()?, kinds)));
        match parsed {
            Some((engine, _)) if engine == self.engine => Wakes {
                jobs: false,
                callbacks: false,
            },
            Some((_, kinds)) => Wakes {
                jobs: kinds.split(',').any(|k| k == "jobs"),
                callbacks: kinds.split(',').any(|k| k == "callbacks"),
            },
            None => Wakes {
                jobs: true,
                callbacks: true,
            },
        }
    }
}

impl Engine {
    /// Starts the announcer of [`Engine::job_due`] (processes that accept jobs run it).
    pub fn spawn_announcer(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let engine = Arc::clone(self);
        tracker.spawn(async move { engine.announce_loop(shutdown).await });
    }

    /// The first due job or callback is announced at once; later ones within
    /// `ANNOUNCE_EVERY` share the next notification.
    pub(super) async fn announce_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.announce.ready.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            let Some(payload) = self.announce.take() else {
                continue;
            };
            if let Err(err) = store::jobs::notify_due(&self.pool, DUE_CHANNEL, &payload).await {
                tracing::warn!(error = %err, "could not notify other replicas of due jobs; their sweep will find them");
            }
            tokio::select! {
                _ = tokio::time::sleep(ANNOUNCE_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    pub(super) async fn listen_loop(self: Arc<Self>, shutdown: CancellationToken) {
        // A due job and a recorded callback share the channel (both coalesced by the
        // announcer); the payload says which loops to wake.
        store::listen::follow(&self.pool, DUE_CHANNEL, &shutdown, |heard| {
            if let store::listen::Heard::Notified(payload) = heard {
                let wakes = self.announce.wakes(payload);
                if wakes.jobs {
                    self.wake.notify_one();
                }
                if wakes.callbacks {
                    self.callbacks_wake.notify_one();
                }
            }
        })
        .await;
    }
}

/// Wakes one waiter of each of `wake` on every notification on `channel`, reconnecting when the
/// connection drops, until `shutdown`. Loops that use it keep a periodic sweep for the gaps.
pub async fn wake_on_notify(
    pool: &PgPool,
    channel: &str,
    wake: &[&Notify],
    shutdown: &CancellationToken,
) {
    store::listen::follow(pool, channel, shutdown, |heard| {
        if let store::listen::Heard::Notified(_) = heard {
            wake.iter().for_each(|w| w.notify_one());
        }
    })
    .await;
}

/// Width of one alarm bucket: moments closer than this share one wake-up.
const ALARM_BUCKET: Duration = Duration::from_millis(20);

/// Local alarms for jobs this process put off to a near moment (a busy device slot, a
/// retry in a few hundred milliseconds): a worker is woken then instead of at the next
/// sweep. Moments beyond the sweep interval are left to the sweep, so the set stays
/// bounded by `sweep_interval / ALARM_BUCKET` entries.
pub(super) struct Alarms {
    base: tokio::time::Instant,
    buckets: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    changed: Notify,
}

impl Alarms {
    pub(super) fn new() -> Alarms {
        Alarms {
            base: tokio::time::Instant::now(),
            buckets: Default::default(),
            changed: Notify::new(),
        }
    }

    fn instant_of(&self, bucket: u64) -> tokio::time::Instant {
        self.base + ALARM_BUCKET * u32::try_from(bucket).unwrap_or(u32::MAX)
    }
}

impl Engine {
    /// A job of this process became due at `at`: wakes a worker then (at once when `at`
    /// has passed). The sweep covers moments beyond its own interval.
    pub(super) fn wake_at(&self, at: DateTime<Utc>) {
        let Ok(wait) = (at - Utc::now()).to_std() else {
            self.wake.notify_one();
            return;
        };
        if wait >= self.settings.sweep_interval {
            return;
        }
        let alarms = &self.alarms;
        let now = tokio::time::Instant::now();
        let bucket = (now + wait - alarms.base)
            .as_millis()
            .div_ceil(ALARM_BUCKET.as_millis()) as u64;
        let mut buckets = alarms.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Moments a second past are dropped even where no alarm loop rings them (a process
        // without workers), so the set never outgrows `sweep_interval / ALARM_BUCKET`.
        let past = ((now - alarms.base).as_millis() / ALARM_BUCKET.as_millis()) as u64;
        if buckets.first().is_some_and(|first| *first + 50 < past) {
            *buckets = buckets.split_off(&past.saturating_sub(50));
        }
        let earliest = buckets.first().is_none_or(|first| bucket < *first);
        if buckets.insert(bucket) && earliest {
            alarms.changed.notify_one();
        }
    }

    /// Rings the alarms set by [`Engine::wake_at`] (processes that run workers run it).
    pub(super) async fn alarm_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let alarms = &self.alarms;
        loop {
            let next = alarms
                .buckets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .first()
                .copied();
            let Some(bucket) = next else {
                tokio::select! {
                    _ = alarms.changed.notified() => continue,
                    _ = shutdown.cancelled() => return,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(alarms.instant_of(bucket)) => {
                    alarms
                        .buckets
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|b| *b > bucket);
                    // One worker looks; a worker that finds work passes the baton on.
                    self.wake.notify_one();
                }
                _ = alarms.changed.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_wakes_the_loops_it_names_on_other_engines_only() {
        let here = Announcement::default();
        let there = Announcement::default();
        assert_eq!(here.take(), None, "nothing set, nothing to announce");

        here.callbacks();
        let payload = here.take().expect("a callback to announce");
        assert_eq!(here.take(), None, "taken once");
        let none = Wakes {
            jobs: false,
            callbacks: false,
        };
        assert_eq!(
            here.wakes(&payload),
            none,
            "its own loops were woken in process"
        );
        assert_eq!(
            there.wakes(&payload),
            Wakes {
                jobs: false,
                callbacks: true
            }
        );

        here.jobs();
        here.callbacks();
        let both = Wakes {
            jobs: true,
            callbacks: true,
        };
        assert_eq!(there.wakes(&here.take().unwrap()), both);
        here.jobs();
        assert_eq!(
            there.wakes(&here.take().unwrap()),
            Wakes {
                jobs: true,
                callbacks: false
            }
        );
        // the database's own notification for a job a statement made due
        assert_eq!(here.wakes(""), both);
        assert_eq!(here.wakes("not ours"), both);
    }
}

//! The one backoff policy: `base · 2^(attempt−1)`, capped at `max`. Every retry and
//! backoff computation of the gateway uses it: the engine's job retries (jittered), the
//! job-source bridge's push and report retries, a vendor client's busy retries, the
//! start-up wait for Postgres.
//!
//! It owns timing only; what to retry is each caller's decision.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max }
    }

    /// The delay before retry number `attempt` (1 = first retry): `base · 2^(attempt−1)`,
    /// capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// [`Backoff::delay`] drawn uniformly from its upper half, so that many callers failing
    /// together do not come back together.
    pub fn jittered(&self, attempt: u32) -> Duration {
        let ceiling = self.delay(attempt);
        let low = ceiling / 2;
        let spread = ceiling.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(rand::rng().random_range(0..=spread))
    }
}

/// The engine's job retries: jittered backoff and a budget of attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1 = first retry): [`Backoff::jittered`].
    pub fn delay(&self, attempt: u32) -> Duration {
        Backoff::new(self.base, self.max).jittered(attempt)
    }
}

/// A short pause of 100-300 ms, for a device that was busy a moment ago.
pub fn short_pause() -> Duration {
    Duration::from_millis(rand::rng().random_range(100..=300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_cap_and_stay_jittered() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_attempts: 10,
        };
        for _ in 0..50 {
            let first = policy.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.delay(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.delay(40);
            assert!(late >= Duration::from_secs(1) && late <= Duration::from_secs(2));
        }
    }

    #[test]
    fn plain_delays_double_then_cap() {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(8));
        let delays: Vec<u128> = (1..=7).map(|a| backoff.delay(a).as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(backoff.delay(0), Duration::from_millis(250));
    }
}

//! How often backends talk to their vendors: a process-wide rate bound on a kind of call,
//! and a polling cadence that slows down as a task ages. Vendor-neutral; each backend
//! configures its own numbers.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces calls at least `1/rate` apart across every caller of this process: a caller
/// waits for its turn. (Per process: with several replicas the bound is per replica.)
#[derive(Debug)]
pub struct RateLimiter {
    spacing: Duration,
    next_free: Mutex<Instant>,
}

impl RateLimiter {
    /// `per_second` calls per second at most (0 means no bound).
    pub fn per_second(per_second: u32) -> RateLimiter {
        let spacing = if per_second == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1) / per_second
        };
        RateLimiter {
            spacing,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Waits until this caller may make its call.
    pub async fn acquire(&self) {
        if self.spacing.is_zero() {
            return;
        }
        let slot = {
            let mut next = match self.next_free.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let slot = (*next).max(Instant::now());
            *next = slot + self.spacing;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// A polling cadence with backoff: a task is first polled `first` after the submit, then
/// every `every` while young, and less often as it ages (a quarter of its age), never
/// less often than every `max`. A task that prints in seconds is seen finishing promptly;
/// one stuck in a queue for an hour costs a poll every `max`, not every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollCadence {
    pub first: Duration,
    pub every: Duration,
    pub max: Duration,
}

impl PollCadence {
    /// The delay before the next poll of a task submitted `age` ago.
    pub fn next_after(&self, age: Duration) -> Duration {
        (age / 4).clamp(self.every, self.max.max(self.every))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_slow_down_with_age_within_bounds() {
        let cadence = PollCadence {
            first: Duration::from_secs(2),
            every: Duration::from_secs(3),
            max: Duration::from_secs(30),
        };
        assert_eq!(
            cadence.next_after(Duration::from_secs(1)),
            Duration::from_secs(3)
        );
        assert_eq!(
            cadence.next_after(Duration::from_secs(40)),
            Duration::from_secs(10)
        );
        assert_eq!(
            cadence.next_after(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_across_callers() {
        let limiter = std::sync::Arc::new(RateLimiter::per_second(10));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let limiter = std::sync::Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                limiter.acquire().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap() - start);
        }
        times.sort();
        // 20 calls at 10/s: the last one 1.9 s after the first.
        assert!(times[19] >= Duration::from_millis(1900), "{times:?}");
        assert!(times[0] < Duration::from_millis(1));
    }

    #[tokio::test]
    async fn zero_means_unbounded() {
        let limiter = RateLimiter::per_second(0);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}

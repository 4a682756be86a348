//! Per-key rate limits (`governor`, GCRA): each API key may send RATE_LIMIT_RPS requests a
//! second with bursts of RATE_LIMIT_BURST. Over it: 429 problem+json with `Retry-After` and
//! `RateLimit-*` headers. Requests without a key (health, callbacks) are not limited here.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};

use super::error::problem_response;

type KeyHash = [u8; 32];

/// The limiter shared by every request of a process, keyed by the hash of the API key.
pub type KeyLimiter =
    RateLimiter<KeyHash, DefaultKeyedStateStore<KeyHash>, DefaultClock, StateInformationMiddleware>;

/// Past this many remembered keys, those back at full capacity are forgotten.
const MAX_TRACKED_KEYS: usize = 100_000;

/// The limiter for `rps` a second with bursts of `burst`; `None` when `rps` is 0 (off).
pub fn limiter(rps: u32, burst: u32) -> Option<Arc<KeyLimiter>> {
    let rps = NonZeroU32::new(rps)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rps);
    Some(Arc::new(
        RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst))
            .with_middleware::<StateInformationMiddleware>(),
    ))
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

fn number(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

/// The middleware: counts the request against its key's budget.
pub async fn limit(
    State(limiter): State<Option<Arc<KeyLimiter>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        return next.run(request).await;
    };
    let Some(key) = bearer(&request) else {
        return next.run(request).await;
    };
    let hash: KeyHash = Sha256::digest(key.as_bytes()).into();
    if limiter.len() > MAX_TRACKED_KEYS {
        limiter.retain_recent();
    }
    match limiter.check_key(&hash) {
        Ok(snapshot) => {
            let mut response = next.run(request).await;
            let headers = response.headers_mut();
            headers.insert(
                "ratelimit-limit",
                number(u64::from(snapshot.quota().burst_size().get())),
            );
            headers.insert(
                "ratelimit-remaining",
                number(u64::from(snapshot.remaining_burst_capacity())),
            );
            response
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(limiter.clock().now());
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = problem_response(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "This API key sent more requests than RATE_LIMIT_RPS/RATE_LIMIT_BURST allow; retry in {seconds} s (Retry-After)."
                ),
            );
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, number(seconds));
            headers.insert(
                "ratelimit-limit",
                number(u64::from(not_until.quota().burst_size().get())),
            );
            headers.insert("ratelimit-remaining", number(0));
            headers.insert("ratelimit-reset", number(seconds));
            response
        }
    }
}

//! A small Rust load generator for what wrk cannot do well: a fixed list of distinct POSTs
//! (callbacks, each with its own token) and a constant request rate (the soak).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One request: URL, JSON body, extra headers.
#[derive(Clone)]
pub struct Req {
    pub url: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct LoadResult {
    pub sent: usize,
    pub ok: usize,
    pub failed: usize,
    pub elapsed_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl LoadResult {
    pub fn per_sec(&self) -> f64 {
        self.sent as f64 / self.elapsed_s.max(1e-9)
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn send(client: &reqwest::Client, req: &Req) -> bool {
    let mut builder = client
        .post(&req.url)
        .header("content-type", "application/json")
        .body(req.body.clone());
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    match builder.send().await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            let _ = resp.bytes().await;
            ok
        }
        Err(_) => false,
    }
}

/// Sends every request once, `concurrency` at a time.
pub async fn all_once(reqs: Vec<Req>, concurrency: usize) -> LoadResult {
    let client = client();
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, reqs, next) = (client.clone(), Arc::clone(&reqs), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut ok = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = reqs.get(i) else { break };
                let t = Instant::now();
                if send(&client, req).await {
                    ok += 1;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            (lat, ok)
        }));
    }
    let mut lat = Vec::new();
    let mut ok = 0;
    for t in tasks {
        if let Ok((l, o)) = t.await {
            lat.extend(l);
            ok += o;
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    LoadResult {
        sent: lat.len(),
        ok,
        failed: lat.len() - ok,
        elapsed_s,
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
    }
}

/// Sends `make(i)` at `rate` per second for `duration` (open loop: a slow answer does not
/// slow the sender; at most `max_in_flight` outstanding).
pub async fn at_rate(
    make: impl Fn(usize) -> Req,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> LoadResult {
    let client = client();
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let ok = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0;
    while start.elapsed() < duration {
        tick.tick().await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (client, ok, req) = (client.clone(), Arc::clone(&ok), make(sent));
        sent += 1;
        tokio::spawn(async move {
            if send(&client, &req).await {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
    let _ = permits.acquire_many(max_in_flight as u32).await;
    let ok = ok.load(Ordering::Relaxed);
    LoadResult {
        sent,
        ok,
        failed: sent - ok,
        elapsed_s: start.elapsed().as_secs_f64(),
        p50_ms: 0.0,
        p99_ms: 0.0,
    }
}

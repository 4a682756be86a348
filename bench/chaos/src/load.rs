//! The client side: submits the planned jobs at a fixed rate over whichever replicas answer
//! (retrying with the same Idempotency-Key, as a careful client does), probes `/readyz`, and
//! records every HTTP status with its latency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::{Instant, sleep, sleep_until};

/// One job the harness will submit.
#[derive(Debug, Clone)]
pub struct Planned {
    pub n: usize,
    pub printer_id: String,
    pub idempotency_key: String,
    /// The document: HTML unique to this job, so the vendor's copy ties back to it (both
    /// backends send HTML byte for byte; plain text would be rewrapped for Lianke).
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    PostJobs,
    Readyz,
}

/// One HTTP exchange (or a failure to get an answer).
#[derive(Debug, Clone)]
pub struct Sample {
    pub route: Route,
    pub at: Instant,
    pub latency: Duration,
    /// `None`: no HTTP answer (connection refused/reset, client timeout).
    pub status: Option<u16>,
    pub retry_after: bool,
}

/// The replicas a client may talk to; a terminated one is taken out.
#[derive(Clone)]
pub struct Targets {
    urls: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicUsize>,
}

impl Targets {
    pub fn new(urls: Vec<String>) -> Self {
        Targets {
            urls: Arc::new(Mutex::new(urls)),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn remove(&self, url: &str) {
        self.urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|u| u != url);
    }

    pub fn all(&self) -> Vec<String> {
        self.urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Round robin over the replicas still in service.
    pub fn pick(&self) -> String {
        let urls = self.all();
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        urls.get(i % urls.len().max(1)).cloned().unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Recorder {
    samples: Mutex<Vec<Sample>>,
    /// Planned job number → the gateway's job id, from the first 200/202 answer.
    accepted: Mutex<BTreeMap<usize, String>>,
    /// Planned job number → the 4xx that refused it.
    refused: Mutex<BTreeMap<usize, u16>>,
    /// Answers to a replayed key that named another job id than the first answer.
    pub idempotency_mismatches: AtomicUsize,
}

impl Recorder {
    pub fn record(&self, s: Sample) {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(s);
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn accepted(&self) -> BTreeMap<usize, String> {
        self.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn refused(&self) -> BTreeMap<usize, u16> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How fast and how persistently jobs are submitted.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Jobs per second.
    pub rate: f64,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// A job not accepted this long after its first try is given up.
    pub give_up: Duration,
}

/// Submits every planned job, job `n` not before `start + n / rate`, with `concurrency`
/// requests in flight at most. A job is retried (same key) on no answer, 5xx or 429 until
/// it is accepted or refused, or `give_up` after its first try. Returns when all are done.
pub async fn submit_all(
    http: reqwest::Client,
    key: String,
    targets: Targets,
    plan: Arc<Vec<Planned>>,
    pace: Pace,
    recorder: Arc<Recorder>,
) {
    let Pace {
        rate,
        concurrency,
        give_up,
    } = pace;
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, key, targets, plan, recorder, next) = (
            http.clone(),
            key.clone(),
            targets.clone(),
            Arc::clone(&plan),
            Arc::clone(&recorder),
            Arc::clone(&next),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = plan.get(i) else { return };
                sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
                submit_one(&http, &key, &targets, job, give_up, &recorder).await;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

async fn submit_one(
    http: &reqwest::Client,
    key: &str,
    targets: &Targets,
    job: &Planned,
    give_up: Duration,
    recorder: &Recorder,
) {
    let body = json!({
        "printer_id": job.printer_id,
        "document": {"html": job.text},
        "metadata": {"chaos_job": job.n},
    });
    let first = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let url = format!("{}/v1/jobs", targets.pick());
        let at = Instant::now();
        let answer = http
            .post(&url)
            .bearer_auth(key)
            .header("Idempotency-Key", &job.idempotency_key)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        let latency = at.elapsed();
        let (status, retry_after, id) = match answer {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                (
                    Some(status),
                    retry_after,
                    v["id"].as_str().map(str::to_owned),
                )
            }
            Err(_) => (None, false, None),
        };
        recorder.record(Sample {
            route: Route::PostJobs,
            at,
            latency,
            status,
            retry_after,
        });
        match status {
            Some(200..=202) if id.is_some() => {
                let id = id.unwrap_or_default();
                let mut accepted = recorder
                    .accepted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(before) = accepted.get(&job.n) {
                    if *before != id {
                        recorder
                            .idempotency_mismatches
                            .fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    accepted.insert(job.n, id);
                }
                return;
            }
            Some(s) if (400..500).contains(&s) && s != 429 && s != 408 => {
                recorder
                    .refused
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(job.n, s);
                return;
            }
            _ => {}
        }
        if first.elapsed() > give_up {
            return;
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Asks every replica's `/readyz` every `every` until `stop` is set.
pub async fn probe_readyz(
    http: reqwest::Client,
    targets: Targets,
    every: Duration,
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
) {
    while !stop.load(Ordering::Relaxed) {
        let rounds = targets.all().into_iter().map(|base| {
            let http = http.clone();
            let recorder = Arc::clone(&recorder);
            async move {
                let at = Instant::now();
                let answer = http
                    .get(format!("{base}/readyz"))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                let (status, retry_after) = match answer {
                    Ok(r) => (
                        Some(r.status().as_u16()),
                        r.headers().contains_key("retry-after"),
                    ),
                    Err(_) => (None, false),
                };
                recorder.record(Sample {
                    route: Route::Readyz,
                    at,
                    latency: at.elapsed(),
                    status,
                    retry_after,
                });
            }
        });
        let probes = tokio::spawn(futures_join(rounds.collect()));
        sleep(every).await;
        // A slow probe keeps running; the next round starts on time.
        drop(probes);
    }
}

async fn futures_join<F: std::future::Future<Output = ()> + Send + 'static>(all: Vec<F>) {
    let handles: Vec<_> = all.into_iter().map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

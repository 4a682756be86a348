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

/// Sends every request once, `concurrency` at a time, each of `concurrency` keep-alive
/// connections writing prebuilt HTTP/1.1 requests and reading the answers itself. The
/// bench process's CPU per callback in the callbacks phase went from 63 µs (reqwest) to
/// 24–30 µs with it: the load generator shares the gateway's two cores, so it should take
/// as little as wrk would (wrk cannot send a fixed list of distinct requests once each).
pub async fn all_once(reqs: Vec<Req>, concurrency: usize) -> LoadResult {
    let wire: Vec<(String, Vec<u8>)> = reqs.iter().map(raw_request).collect();
    let reqs = Arc::new(wire);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (reqs, next) = (Arc::clone(&reqs), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut ok = 0;
            let mut conn: Option<Conn> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((addr, bytes)) = reqs.get(i) else {
                    break;
                };
                let t = Instant::now();
                let answered = match conn.as_mut() {
                    Some(c) if &c.addr == addr => c.exchange(bytes).await,
                    _ => match Conn::open(addr).await {
                        Ok(c) => conn.insert(c).exchange(bytes).await,
                        Err(e) => Err(e),
                    },
                };
                match answered {
                    Ok(status) if (200..300).contains(&status) => ok += 1,
                    Ok(_) => {}
                    // a broken connection is opened anew for the next request
                    Err(_) => conn = None,
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

/// `req` as HTTP/1.1 bytes, with the `host:port` to send it to (`http://` URLs only).
fn raw_request(req: &Req) -> (String, Vec<u8>) {
    let rest = req.url.strip_prefix("http://").unwrap_or(&req.url);
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        req.body.len()
    );
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(req.body.as_bytes());
    (addr.to_owned(), bytes)
}

/// One keep-alive HTTP/1.1 connection of [`all_once`].
struct Conn {
    addr: String,
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> std::io::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            addr: addr.to_owned(),
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes one request and reads its answer (status line, headers, a `content-length`
    /// body); returns the status.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<u16> {
        use tokio::io::AsyncWriteExt;
        let broken =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let timeout = Duration::from_secs(30);
        tokio::time::timeout(timeout, self.stream.write_all(request))
            .await
            .map_err(|_| broken("write timed out"))??;
        self.buf.clear();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) =
                resp.parse(&self.buf).map_err(|_| broken("not HTTP"))?
            {
                let status = resp.code.unwrap_or(0);
                let length: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .ok_or_else(|| broken("no content-length"))?;
                while self.buf.len() < head + length {
                    self.read_more(timeout).await?;
                }
                return Ok(status);
            }
            self.read_more(timeout).await?;
        }
    }

    async fn read_more(&mut self, timeout: Duration) -> std::io::Result<()> {
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
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

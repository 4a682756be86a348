//! The API's accept loop, HTTP and HTTPS alike: what a slow or hostile client can hold is
//! bounded before any handler runs.
//!
//! - a client has `HEADER_READ_TIMEOUT_MS` to send each request's head (a half-sent request
//!   line is disconnected; so is a connection idle that long between requests);
//! - `TLS_HANDSHAKE_TIMEOUT_MS` to finish a TLS handshake;
//! - at most `MAX_CONNECTIONS` connections are served at once (more wait in the backlog);
//! - HTTP/2 (offered over TLS by ALPN) allows `HTTP2_MAX_CONCURRENT_STREAMS` streams per
//!   connection, bounded header lists and reset-stream floods.
//!
//! Request bodies are bounded by the router (`MAX_BODY_BYTES`, and per webhook route).
//!
//! `GET /healthz` (liveness: the process answers) is answered here, before the router and
//! its middleware: an orchestrator's probe every few seconds needs no trace span, metric or
//! rate limit, and a liveness answer must not depend on them. It keeps the request id
//! (echoed, or a new one) like every other answer.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How connections are served (from `Config`).
#[derive(Debug, Clone)]
pub struct ServeLimits {
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
}

/// The largest HTTP/2 header list a client may send (HTTP/1 heads are bounded by hyper's
/// read buffer, ~400 KiB).
const HTTP2_MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// Streams a client may open and reset before the connection is closed (CVE-2023-44487).
const HTTP2_MAX_PENDING_RESETS: usize = 20;
/// How long in-flight requests get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `stop` fires, then lets open requests finish
/// (up to 10 s). With `tls`, each connection is a TLS one, HTTP/2 when ALPN says so.
pub async fn run(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ServeLimits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, _peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let limits = limits.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let service = TowerToHyperService::new(Liveness {
                inner: router
                    .map_request(|request: Request<Incoming>| request.map(axum::body::Body::new)),
            });
            match tls {
                None => {
                    let conn = http1(&limits).serve_connection(TokioIo::new(tcp), service);
                    let _ = watcher.watch(conn).await;
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        limits.tls_handshake_timeout,
                        acceptor.accept(tcp),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    };
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let io = TokioIo::new(stream);
                    if h2 {
                        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .timer(TokioTimer::new())
                            .max_concurrent_streams(limits.http2_max_concurrent_streams)
                            .max_header_list_size(HTTP2_MAX_HEADER_LIST_BYTES)
                            .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_RESETS)
                            .keep_alive_interval(Some(limits.header_read_timeout))
                            .keep_alive_timeout(limits.header_read_timeout)
                            .serve_connection(io, service);
                        let _ = watcher.watch(conn).await;
                    } else {
                        let conn = http1(&limits).serve_connection(io, service);
                        let _ = watcher.watch(conn).await;
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after the shutdown drain time; dropped");
    }
}

fn http1(limits: &ServeLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
}

/// Answers `GET /healthz` itself and hands every other request to `inner` (the router).
#[derive(Clone)]
struct Liveness<S> {
    inner: S,
}

/// The liveness answer (the same body as the documented `/healthz` route).
const ALIVE: &str = "{\"status\":\"ok\"}";

impl<S> tower::Service<Request<Incoming>> for Liveness<S>
where
    S: tower::Service<Request<Incoming>, Response = axum::response::Response, Error = Infallible>,
{
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = futures::future::Either<Ready<Result<Self::Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        if request.method() == axum::http::Method::GET && request.uri().path() == "/healthz" {
            return futures::future::Either::Left(ready(Ok(alive(&request))));
        }
        futures::future::Either::Right(self.inner.call(request))
    }
}

fn alive(request: &Request<Incoming>) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let id = request
        .headers()
        .get("x-request-id")
        .cloned()
        .unwrap_or_else(|| {
            let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
            let mut buf = uuid::Uuid::encode_buffer();
            HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
                .unwrap_or_else(|_| HeaderValue::from_static("-"))
        });
    let mut response = axum::response::Response::new(axum::body::Body::from(ALIVE));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-request-id", id);
    response
}

//! `print-gateway webhooks listen`: a local receiver for developers (like `stripe listen`)
//! that checks each delivery's Standard Webhooks signature and prints the event.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use crate::webhook_signature;

/// Why `webhooks listen` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("--secret: {0} (copy it from the endpoint's create answer)")]
    Secret(webhook_signature::BadSecret),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Serve(std::io::Error),
}

struct Receiver {
    key: Vec<u8>,
    quiet: bool,
}

/// Serves on `addr` until Ctrl-C: every POST (any path) is verified with `secret`; a
/// valid one is printed to stdout and answered 204, an invalid one is reported on stderr
/// and answered 400.
pub async fn listen(addr: SocketAddr, secret: &str, quiet: bool) -> Result<(), ListenError> {
    let key = webhook_signature::secret_key(secret).map_err(ListenError::Secret)?;
    let receiver = Arc::new(Receiver { key, quiet });
    let app = Router::new()
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(ListenError::Serve)?;
    eprintln!("listening on http://{local}/ — verifying signatures; Ctrl-C stops");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(ListenError::Serve)
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let id = header("webhook-id");
    let verified = webhook_signature::verify(
        &receiver.key,
        id,
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        chrono::Utc::now().timestamp(),
    );
    if let Err(err) = verified {
        eprintln!("rejected {id:?}: {err}");
        return StatusCode::BAD_REQUEST;
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let kind = event["type"].as_str().unwrap_or("?");
    let mut out = std::io::stdout().lock();
    let written = if receiver.quiet {
        writeln!(out, "{id} {kind}")
    } else {
        let pretty = serde_json::to_string_pretty(&event).unwrap_or_default();
        writeln!(out, "✔ {id} {kind} (signature verified)\n{pretty}")
    };
    // A closed stdout (e.g. `| head`) is the reader's choice, not the sender's fault.
    let _ = written.and_then(|()| out.flush());
    StatusCode::NO_CONTENT
}

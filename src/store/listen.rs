//! Following a Postgres NOTIFY channel: connect, LISTEN, hand every notification to the
//! caller, reconnect when the connection drops, until shutdown. Every LISTEN in the
//! gateway (engine wake-ups, the webhook outbox, job sources, the change caches) runs on
//! this loop; each decides what a notification, a connect and a lost connection mean.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// What happened on the followed channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// LISTEN is in place: from now on no notification is missed.
    Connected,
    /// A notification, with its payload.
    Notified(&'a str),
    /// The connection is gone (or shutdown came): notifications may be missed until the
    /// next `Connected`.
    Lost,
}

/// Follows `channel` until `shutdown`, calling `heard` for each event; reconnects after
/// 1 s when LISTEN fails and 5 s when no connection can be had.
pub async fn follow(
    pool: &PgPool,
    channel: &str,
    shutdown: &CancellationToken,
    mut heard: impl FnMut(Heard<'_>),
) {
    while !shutdown.is_cancelled() {
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, channel, "cannot LISTEN; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        if let Err(err) = listener.listen(channel).await {
            tracing::warn!(error = %err, channel, "LISTEN failed");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        heard(Heard::Connected);
        loop {
            tokio::select! {
                message = listener.recv() => match message {
                    Ok(note) => heard(Heard::Notified(note.payload())),
                    Err(err) => {
                        tracing::warn!(error = %err, channel, "LISTEN connection lost; reconnecting");
                        break;
                    }
                },
                _ = shutdown.cancelled() => break,
            }
        }
        heard(Heard::Lost);
    }
}

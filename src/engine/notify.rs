//! Wake-ups: the coalesced NOTIFY that tells other replicas a job is due, and the
//! LISTEN loop that wakes a worker on every notification (with a sweep for the gaps).
//! It owns no job state.

use super::*;

impl Engine {
    /// Starts the announcer of [`Engine::job_due`] (processes that accept jobs run it).
    pub fn spawn_announcer(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let engine = Arc::clone(self);
        tracker.spawn(async move { engine.announce_loop(shutdown).await });
    }

    /// The first due job is announced at once; later ones within `ANNOUNCE_EVERY` share
    /// the next notification.
    pub(super) async fn announce_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.announce.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(err) = store::jobs::notify_due(&self.pool, DUE_CHANNEL).await {
                tracing::warn!(error = %err, "could not notify other replicas of due jobs; their sweep will find them");
            }
            tokio::select! {
                _ = tokio::time::sleep(ANNOUNCE_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    pub(super) async fn listen_loop(self: Arc<Self>, shutdown: CancellationToken) {
        wake_on_notify(&self.pool, DUE_CHANNEL, &self.wake, &shutdown).await;
    }
}

/// Wakes one waiter of `wake` on every notification on `channel`, reconnecting when the
/// connection drops, until `shutdown`. Loops that use it keep a periodic sweep for the gaps.
pub async fn wake_on_notify(
    pool: &PgPool,
    channel: &str,
    wake: &Notify,
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, channel, "cannot LISTEN; relying on the sweep");
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
        loop {
            tokio::select! {
                message = listener.recv() => match message {
                    Ok(_) => wake.notify_one(),
                    Err(err) => {
                        tracing::warn!(error = %err, channel, "LISTEN connection lost; reconnecting");
                        break;
                    }
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

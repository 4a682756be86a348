//! The purge: applies the retention settings in small batches, from the worker processes
//! every PURGE_INTERVAL_SECS and from `print-gateway purge`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::document_store::DocumentStore;
use crate::store::{self, StoreResult, retention::Counts};

/// The cutoffs of one purge run: what finished (or, for idempotency keys, was created)
/// before these instants goes.
#[derive(Debug, Clone, Copy)]
pub struct Cutoffs {
    pub jobs: DateTime<Utc>,
    pub events: DateTime<Utc>,
    pub documents: DateTime<Utc>,
    pub idempotency_keys: DateTime<Utc>,
    /// Outbox events (with their deliveries) created before this go, once delivered.
    pub webhooks: DateTime<Utc>,
}

impl Cutoffs {
    pub fn at(now: DateTime<Utc>, config: &RetentionConfig) -> Cutoffs {
        let days = |d: u32| now - chrono::Duration::days(i64::from(d));
        Cutoffs {
            jobs: days(config.retention_jobs_days),
            events: days(config.events_days()),
            documents: days(config.retention_documents_days),
            idempotency_keys: now
                - chrono::Duration::hours(i64::from(config.idempotency_key_ttl_hours)),
            webhooks: days(config.retention_webhooks_days),
        }
    }
}

/// What a purge would remove (dry run).
pub async fn preview(pool: &PgPool, cutoffs: Cutoffs) -> StoreResult<Counts> {
    let mut counts = store::retention::count(
        pool,
        cutoffs.jobs,
        cutoffs.events,
        cutoffs.documents,
        cutoffs.idempotency_keys,
    )
    .await?;
    (counts.webhook_events, counts.webhook_deliveries) =
        store::retention::count_webhooks(pool, cutoffs.webhooks).await?;
    Ok(counts)
}

/// Removes what the cutoffs say, batch by batch, until nothing is left; returns the
/// counts (documents of deleted jobs are not counted separately).
///
/// Objects of the document store are deleted after the rows naming them are committed.
pub async fn purge(
    pool: &PgPool,
    documents: &DocumentStore,
    cutoffs: Cutoffs,
    batch: u32,
) -> StoreResult<Counts> {
    let batch = i64::from(batch);
    let full = |n: u64| n as i64 >= batch;
    let mut counts = Counts::default();
    loop {
        let (jobs, _, objects) =
            store::retention::delete_finished_jobs(pool, cutoffs.jobs, batch).await?;
        documents.delete(&objects).await;
        counts.jobs += jobs;
        if !full(jobs) {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let events = store::retention::delete_events(pool, cutoffs.events, batch).await?;
        counts.events += events;
        if !full(events) {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let (docs, objects) =
            store::retention::drop_document_content(pool, cutoffs.documents, batch).await?;
        documents.delete(&objects).await;
        counts.document_contents += docs;
        if !full(docs) {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let keys = store::retention::expire_idempotency_keys(pool, cutoffs.idempotency_keys, batch)
            .await?;
        counts.idempotency_keys += keys;
        if !full(keys) {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let (events, deliveries) =
            store::retention::delete_webhook_events(pool, cutoffs.webhooks, batch).await?;
        counts.webhook_events += events;
        counts.webhook_deliveries += deliveries;
        if !full(events) {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(counts)
}

/// Runs the purge every `purge_interval_secs` until `stop` (nothing when it is 0).
pub async fn run_worker(
    pool: PgPool,
    documents: DocumentStore,
    config: RetentionConfig,
    stop: CancellationToken,
) {
    if config.purge_interval_secs == 0 {
        return;
    }
    let every = Duration::from_secs(config.purge_interval_secs);
    loop {
        let cutoffs = Cutoffs::at(Utc::now(), &config);
        tokio::select! {
            _ = stop.cancelled() => return,
            result = purge(&pool, &documents, cutoffs, config.purge_batch_size) => match result {
                Ok(counts) if counts != Counts::default() => tracing::info!(
                    jobs = counts.jobs,
                    events = counts.events,
                    document_contents = counts.document_contents,
                    idempotency_keys = counts.idempotency_keys,
                    webhook_events = counts.webhook_events,
                    webhook_deliveries = counts.webhook_deliveries,
                    "purged data past its retention"
                ),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "purge failed; trying again next round"),
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

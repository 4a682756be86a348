//! Retention: a purge removes what is past the line and nothing else; `unconfirmed`,
//! `pending` and `processing` jobs are never purged, however old.

use crate::common;

use chrono::{Duration, Utc};
use common::scripted::ScriptedBackend;
use common::{TestApp, spawn_app};
use print_gateway::backends::BackendRegistry;
use print_gateway::document_store::DocumentStore;
use print_gateway::retention::{self, Cutoffs};
use print_gateway::store::retention::Counts;
use serde_json::json;
use uuid::Uuid;

/// A job with an idempotency key, then forced into `state`, finished/created `age` ago.
async fn job(app: &TestApp, name: &str, state: &str, age: Duration) -> Uuid {
    let response = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.key)
        .header("Idempotency-Key", name)
        .json(&json!({"printer_id": "office", "document": {"text": name}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let body: serde_json::Value = response.json().await.expect("job");
    let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let at = Utc::now() - age;
    let finished = matches!(state, "completed" | "failed" | "canceled");
    sqlx::query(
        "UPDATE jobs SET state = $2, created_at = $3, due_at = NULL,
             completed_at = CASE WHEN $4 THEN $3 END WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(at)
    .bind(finished)
    .execute(&app.pool)
    .await
    .expect("age the job");
    id
}

async fn exists(app: &TestApp, id: Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1)")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn events(app: &TestApp, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM job_events WHERE job_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn has_content(app: &TestApp, id: Uuid) -> bool {
    sqlx::query_scalar(
        "SELECT d.content IS NOT NULL FROM jobs j JOIN documents d ON d.id = j.document_id WHERE j.id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn idempotency_key(app: &TestApp, id: Uuid) -> Option<String> {
    sqlx::query_scalar("SELECT idempotency_key FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_purge_removes_what_retention_says_and_nothing_else() {
    let app = spawn_app(BackendRegistry::new().with(ScriptedBackend::new())).await;
    app.create_printer("office", "scripted").await;
    let day = Duration::days(1);
    // Past every line (jobs: 30 days).
    let old_completed = job(&app, "old-completed", "completed", day * 40).await;
    let old_failed = job(&app, "old-failed", "failed", day * 40).await;
    let old_canceled = job(&app, "old-canceled", "canceled", day * 31).await;
    // Never purged, however old.
    let old_unconfirmed = job(&app, "old-unconfirmed", "unconfirmed", day * 400).await;
    let old_pending = job(&app, "old-pending", "pending", day * 400).await;
    let old_processing = job(&app, "old-processing", "processing", day * 400).await;
    // Kept as jobs, but past the events (20 days) and documents (7 days) lines.
    let events_gone = job(&app, "events-gone", "completed", day * 25).await;
    let document_gone = job(&app, "document-gone", "completed", day * 10).await;
    // Inside every line, except the idempotency key (a day).
    let recent = job(&app, "recent", "completed", Duration::hours(30)).await;
    let fresh = job(&app, "fresh", "completed", Duration::hours(1)).await;

    let now = Utc::now();
    let cutoffs = Cutoffs {
        jobs: now - day * 30,
        events: now - day * 20,
        documents: now - day * 7,
        idempotency_keys: now - day,
        webhooks: now - day * 30,
    };
    let expected = Counts {
        jobs: 3,
        events: 1,            // events-gone's one event (the jobs' own go with them)
        document_contents: 2, // events-gone, document-gone
        idempotency_keys: 6,  // every kept job older than a day
        ..Counts::default()
    };
    // A callback still recorded for a purged job (its job ended by a poll meanwhile) goes
    // with the job.
    sqlx::query(
        "INSERT INTO callback_inbox (job_id, backend, task_id, progress, vendor_status, body, ends_task, confirm)
         VALUES ($1, 'scripted', 't', '{}', 'done', '{}', true, false)",
    )
    .bind(old_completed)
    .execute(&app.pool)
    .await
    .unwrap();
    let preview = retention::preview(&app.pool, cutoffs).await.unwrap();
    assert_eq!(preview, expected);
    // A dry run changes nothing.
    assert!(exists(&app, old_completed).await);
    assert!(has_content(&app, document_gone).await);

    // Batches of 1: the loop goes on until nothing is left.
    let done = retention::purge(&app.pool, &DocumentStore::postgres(), cutoffs, 1)
        .await
        .unwrap();
    assert_eq!(done, expected);

    for gone in [old_completed, old_failed, old_canceled] {
        assert!(!exists(&app, gone).await, "{gone} should be purged");
        assert_eq!(events(&app, gone).await, 0);
        let recorded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM callback_inbox WHERE job_id = $1")
                .bind(gone)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(recorded, 0, "{gone}'s recorded callback should be purged");
    }
    for kept in [
        old_unconfirmed,
        old_pending,
        old_processing,
        events_gone,
        document_gone,
        recent,
        fresh,
    ] {
        assert!(exists(&app, kept).await, "{kept} must stay");
    }
    for live in [old_unconfirmed, old_pending, old_processing] {
        assert_eq!(events(&app, live).await, 1, "live jobs keep their history");
        assert!(
            has_content(&app, live).await,
            "live jobs keep their document"
        );
    }
    assert_eq!(events(&app, events_gone).await, 0);
    assert_eq!(events(&app, document_gone).await, 1);
    assert!(!has_content(&app, events_gone).await);
    assert!(!has_content(&app, document_gone).await);
    assert!(has_content(&app, recent).await);
    assert_eq!(idempotency_key(&app, recent).await, None);
    assert_eq!(idempotency_key(&app, fresh).await.as_deref(), Some("fresh"));
    // Documents of purged jobs are gone too: only the kept jobs' documents remain.
    let documents: i64 = sqlx::query_scalar("SELECT count(*) FROM documents")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(documents, 7);

    // The job stays readable through the API after its document bytes went.
    let view = app.job(&document_gone.to_string()).await;
    assert_eq!(view["state"], "completed");

    // `print-gateway purge --dry-run` counts with the configured lines (jobs: 8 days takes
    // events-gone and document-gone) and deletes nothing.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_print-gateway"))
        .args(["purge", "--dry-run"])
        .env_clear()
        .env("DATABASE_URL", &app.database_url)
        .env("RETENTION_JOBS_DAYS", "8")
        .env("RETENTION_DOCUMENTS_DAYS", "1")
        .output()
        .await
        .expect("run purge --dry-run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("would remove: 2 finished jobs"),
        "{stdout}"
    );
    assert!(exists(&app, events_gone).await);

    // A second run finds nothing.
    let again = retention::purge(&app.pool, &DocumentStore::postgres(), cutoffs, 100)
        .await
        .unwrap();
    assert_eq!(again, Counts::default());
}

#[test]
fn the_cli_dry_run_reports_and_refuses_inconsistent_settings() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_print-gateway"))
        .args(["purge", "--dry-run"])
        .env_clear()
        .env("RETENTION_JOBS_DAYS", "10")
        .env("RETENTION_DOCUMENTS_DAYS", "20")
        .output()
        .expect("run purge");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RETENTION_DOCUMENTS_DAYS"), "{stderr}");
}

/// An outbox event for one endpoint (or, with `None`, for a tenant without endpoints),
/// created `age` ago; its delivery (if any) put in `state` with one attempt logged.
async fn outbox_event(app: &TestApp, endpoint: Option<Uuid>, age: Duration, state: &str) -> i64 {
    let at = Utc::now() - age;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO outbox_events (tenant, type, sequence, snapshot, endpoint_id, created_at)
         VALUES ($1, 'ping', 1, '{}', $2, $3) RETURNING id",
    )
    .bind(if endpoint.is_some() { "acme" } else { "nobody" })
    .bind(endpoint)
    .bind(at)
    .fetch_one(&app.pool)
    .await
    .expect("event");
    let delivery: Option<i64> = sqlx::query_scalar(
        "UPDATE webhook_deliveries SET state = $2, created_at = $3,
             next_attempt_at = CASE WHEN $2 = 'pending' THEN now() END
         WHERE event_id = $1 RETURNING id",
    )
    .bind(id)
    .bind(state)
    .bind(at)
    .fetch_optional(&app.pool)
    .await
    .expect("delivery");
    if let Some(delivery) = delivery {
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, status, latency_ms) VALUES ($1, 500, 3)",
        )
        .bind(delivery)
        .execute(&app.pool)
        .await
        .expect("attempt");
    }
    id
}

async fn outbox_ids(app: &TestApp) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM outbox_events ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_webhook_outbox_is_purged_past_its_line_unless_a_delivery_waits() {
    use print_gateway::secrets_at_rest::Keyring;
    use print_gateway::store::webhooks::{EndpointFields, insert_endpoint};
    let app = spawn_app(BackendRegistry::new().with(ScriptedBackend::new())).await;
    let fields = |enabled| EndpointFields {
        url: "https://hooks.example.com/print".into(),
        description: None,
        event_types: Vec::new(),
        enabled,
    };
    let none = Keyring::none();
    let enabled = insert_endpoint(&app.pool, &none, "acme", &fields(true), "whsec_AAAA")
        .await
        .unwrap()
        .id;
    let disabled = insert_endpoint(&app.pool, &none, "acme", &fields(false), "whsec_BBBB")
        .await
        .unwrap()
        .id;
    let day = Duration::days(1);
    // Past the line (30 days): delivered, failed, waiting on a disabled endpoint, or
    // with no endpoint at all -> gone with their deliveries and attempts.
    let delivered = outbox_event(&app, Some(enabled), day * 40, "delivered").await;
    let failed = outbox_event(&app, Some(enabled), day * 31, "failed").await;
    let stuck = outbox_event(&app, Some(disabled), day * 40, "pending").await;
    let undelivered = outbox_event(&app, None, day * 45, "pending").await;
    // Kept: still waiting on an enabled endpoint however old, or inside the line.
    let waiting = outbox_event(&app, Some(enabled), day * 400, "pending").await;
    let recent = outbox_event(&app, Some(enabled), day * 29, "delivered").await;
    let fresh = outbox_event(&app, None, Duration::hours(1), "pending").await;
    assert_eq!(count(&app, "webhook_deliveries").await, 5);
    assert_eq!(count(&app, "webhook_attempts").await, 5);

    let now = Utc::now();
    let cutoffs = Cutoffs {
        jobs: now - day * 30,
        events: now - day * 30,
        documents: now - day * 7,
        idempotency_keys: now - day,
        webhooks: now - day * 30,
    };
    let expected = Counts {
        webhook_events: 4,
        webhook_deliveries: 3,
        ..Counts::default()
    };
    assert_eq!(
        retention::preview(&app.pool, cutoffs).await.unwrap(),
        expected
    );
    assert_eq!(outbox_ids(&app).await.len(), 7, "a dry run changes nothing");

    // `purge --dry-run` reports them with the configured line.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_print-gateway"))
        .args(["purge", "--dry-run"])
        .env_clear()
        .env("DATABASE_URL", &app.database_url)
        .env("RETENTION_WEBHOOKS_DAYS", "30")
        .output()
        .await
        .expect("run purge --dry-run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("4 webhook events (with 3 deliveries)"),
        "{stdout}"
    );

    // Batches of 1: the loop goes on until nothing is left.
    assert_eq!(
        retention::purge(&app.pool, &DocumentStore::postgres(), cutoffs, 1)
            .await
            .unwrap(),
        expected
    );
    let mut kept = vec![waiting, recent, fresh];
    kept.sort();
    assert_eq!(outbox_ids(&app).await, kept);
    for gone in [delivered, failed, stuck, undelivered] {
        assert!(!kept.contains(&gone));
    }
    // The kept events keep their deliveries and attempts; the others' went with them.
    assert_eq!(count(&app, "webhook_deliveries").await, 2);
    assert_eq!(count(&app, "webhook_attempts").await, 2);
    assert_eq!(
        retention::purge(&app.pool, &DocumentStore::postgres(), cutoffs, 100)
            .await
            .unwrap(),
        Counts::default()
    );
}

//! Retention: a purge removes what is past the line and nothing else; `unconfirmed`,
//! `pending` and `processing` jobs are never purged, however old.

use crate::common;

use chrono::{Duration, Utc};
use common::scripted::ScriptedBackend;
use common::{TestApp, spawn_app};
use print_gateway::backends::BackendRegistry;
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
    };
    let expected = Counts {
        jobs: 3,
        events: 1,            // events-gone's one event (the jobs' own go with them)
        document_contents: 2, // events-gone, document-gone
        idempotency_keys: 6,  // every kept job older than a day
    };
    let preview = retention::preview(&app.pool, cutoffs).await.unwrap();
    assert_eq!(preview, expected);
    // A dry run changes nothing.
    assert!(exists(&app, old_completed).await);
    assert!(has_content(&app, document_gone).await);

    // Batches of 1: the loop goes on until nothing is left.
    let done = retention::purge(&app.pool, cutoffs, 1).await.unwrap();
    assert_eq!(done, expected);

    for gone in [old_completed, old_failed, old_canceled] {
        assert!(!exists(&app, gone).await, "{gone} should be purged");
        assert_eq!(events(&app, gone).await, 0);
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
    let again = retention::purge(&app.pool, cutoffs, 100).await.unwrap();
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

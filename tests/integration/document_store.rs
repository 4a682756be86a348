//! Documents outside Postgres: with DOCUMENT_STORE_URL=file:///DIR the bytes of an accepted
//! job are written to the object store (not to `documents.content`), the job prints from
//! them through the Lianke simulator (the bytes the vendor got are the same), and the purge
//! deletes the object with the document's bytes.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::spawn_app_with;
use print_gateway::app::{Role, lianke_settings};
use print_gateway::backends::BackendRegistry;
use print_gateway::backends::lianke::LiankeBackend;
use print_gateway::config::Config;
use print_gateway::document_store::DocumentStore;
use print_gateway::retention::{self, Cutoffs};
use serde_json::json;
use sha2::{Digest, Sha256};
use vendor_sim::{DEFAULT_LIANKE_API_KEY, LedgerFilter, LiankeDeviceSpec, Sim, SimConfig, Vendor};

const DEVICE: &str = "lk-objects-1";
const DEVICE_KEY: &str = "lk-objects-key";
const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n% stored outside Postgres\n%%EOF\n";

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_job_prints_from_the_object_store_and_the_purge_removes_the_object() {
    let dir = TempDir(
        std::env::temp_dir().join(format!("pgw-objects-{}", uuid::Uuid::new_v4().simple())),
    );
    let url = format!("file://{}", dir.0.display());
    let sim = Sim::start(SimConfig::default()).await.expect("simulator");
    sim.add_lianke_device(LiankeDeviceSpec::new(DEVICE, DEVICE_KEY));
    let sim_url = sim.base_url();
    let store_url = url.clone();
    let configure = move |c: &mut Config| {
        c.lianke.lianke_base_url = sim_url.clone();
        c.lianke.lianke_api_key = Some(DEFAULT_LIANKE_API_KEY.into());
        c.public_base_url = None;
        c.lianke.lianke_poll_interval_ms = 10;
        c.retention.document_store_url = Some(store_url.clone());
    };
    let mut probe = common::test_config("postgres://unused/unused");
    configure(&mut probe);
    let backend = LiankeBackend::new(DEFAULT_LIANKE_API_KEY.into(), lianke_settings(&probe))
        .expect("lianke backend");
    let app = spawn_app_with(
        BackendRegistry::new().with(Arc::new(backend)),
        Role::Api,
        configure,
    )
    .await;
    app.create_printer_with(json!({
        "id": "lk-objects",
        "backend": "lianke",
        "locator": {"device_id": DEVICE, "device_port": 1, "printer_model": "HP LaserJet P1007"},
        "secrets": {"device_key": DEVICE_KEY},
    }))
    .await;

    let job = app
        .submit(json!({
            "printer_id": "lk-objects",
            "document": {"base64": base64::engine::general_purpose::STANDARD.encode(PDF), "filename": "scan"},
        }))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();

    // The row holds the key, the size and the hash; the bytes are in the directory.
    let (content, key, size): (Option<Vec<u8>>, Option<String>, i64) = sqlx::query_as(
        "SELECT d.content, d.object_key, d.size_bytes FROM jobs j JOIN documents d ON d.id = j.document_id
         WHERE j.id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(content, None, "no bytes in Postgres");
    let key = key.expect("an object key");
    assert_eq!(size, PDF.len() as i64);
    let objects = files_under(&dir.0);
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(std::fs::read(&objects[0]).unwrap(), PDF);
    assert!(objects[0].ends_with(&key), "{:?} vs {key}", objects[0]);

    // It prints from the object: the vendor gets the same bytes.
    let done = app
        .drive_until(&id, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(done["state"], "completed");
    let submits = sim
        .ledger_filtered(&LedgerFilter::vendor(Vendor::Lianke).endpoint("POST", "/api/print/job"));
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].files[0].size, PDF.len());
    assert_eq!(submits[0].files[0].sha256, hex::encode(Sha256::digest(PDF)));

    // An idempotent replay stores no second object.
    for _ in 0..2 {
        let response = app
            .client
            .post(app.url("/v1/jobs"))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "once")
            .json(&json!({"printer_id": "lk-objects", "document": {"base64": base64::engine::general_purpose::STANDARD.encode(PDF)}}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    assert_eq!(files_under(&dir.0).len(), 2);

    // Past the documents line, the purge drops the bytes: the object goes, the job stays.
    sqlx::query("UPDATE jobs SET completed_at = now() - interval '10 days' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let day = chrono::Duration::days(1);
    let cutoffs = Cutoffs {
        jobs: now - day * 30,
        events: now - day * 30,
        documents: now - day * 7,
        idempotency_keys: now - day * 30,
        webhooks: now - day * 30,
    };
    let documents = DocumentStore::from_url(Some(&url)).unwrap();
    let counts = retention::preview(&app.pool, cutoffs).await.unwrap();
    assert_eq!(counts.document_contents, 1);
    let counts = retention::purge(&app.pool, &documents, cutoffs, 10)
        .await
        .unwrap();
    assert_eq!(counts.document_contents, 1);
    let left = files_under(&dir.0);
    assert_eq!(left.len(), 1, "only the other job's object stays: {left:?}");
    assert!(!left[0].ends_with(&key));
    let key_now: Option<String> = sqlx::query_scalar(
        "SELECT d.object_key FROM jobs j JOIN documents d ON d.id = j.document_id WHERE j.id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(key_now, None);
    assert_eq!(app.job(&id).await["state"], "completed");

    // Past the jobs line, the job and its document go, and the other object with them.
    sqlx::query("UPDATE jobs SET completed_at = now() - interval '40 days', state = 'completed'")
        .execute(&app.pool)
        .await
        .unwrap();
    let counts = retention::purge(&app.pool, &documents, cutoffs, 10)
        .await
        .unwrap();
    assert_eq!(counts.jobs, 2);
    assert!(files_under(&dir.0).is_empty());
    app.shutdown().await;
}

#[test]
fn document_store_urls_are_checked() {
    assert!(!DocumentStore::from_url(None).unwrap().is_external());
    for bad in ["ftp://x/y", "not a url", "file://relative"] {
        let err = DocumentStore::from_url(Some(bad)).unwrap_err().to_string();
        assert!(err.starts_with("DOCUMENT_STORE_URL"), "{err}");
    }
}

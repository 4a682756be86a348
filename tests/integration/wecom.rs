//! WeCom printers end to end: the gateway pulls (and is pushed) WeCom users' jobs from the
//! simulator, prints them on the bound printer and reports the outcome back — over real HTTP
//! and a real Postgres. The target printer here is the scripted backend (a real `Backend`
//! that counts every submit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::wecom_world::*;
use crate::common::{self, spawn_app_with};
use print_gateway::app::{Role, lianke_settings};
use print_gateway::backends::lianke::LiankeBackend;
use print_gateway::backends::{BackendRegistry, TaskProgress};
use print_gateway::config::Config;
use print_gateway::domain::{ErrorCode, JobError};
use print_gateway::store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vendor_sim::wecom::crypto as sim_crypto;
use vendor_sim::{
    DEFAULT_LIANKE_API_KEY, FaultAction, FaultRule, LedgerFilter, LiankeDeviceSpec, Sim, SimConfig,
    Vendor, WecomDeviceSpec, WecomJobSeed, WecomModelSpec, WecomPushConfig, WecomSetting,
};

#[tokio::test]
async fn four_hundred_fifty_jobs_of_three_users_import_exactly_once_across_cursor_pages() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    w.add_wecom_printer(&["alice", "bob", "carol"], true).await;
    let mut seeded = Vec::new();
    for i in 0..450 {
        let user = ["alice", "bob", "carol"][i % 3];
        seeded.push(w.seed(user, &format!("doc-{i}.pdf"), &pdf(i)));
    }

    let started = Instant::now();
    let summary = w.bridge().sync_now().await.expect("sync");
    println!(
        "450 jobs listed, downloaded, decrypted and imported in {:?}",
        started.elapsed()
    );
    assert_eq!(summary.imported, 450, "{summary:?}");
    assert!(summary.errors.is_empty(), "{summary:?}");
    // 450 jobs in pages of at most 200 need the cursor: at least 3 pages per listing.
    let with_cursor = w
        .sim
        .ledger_filtered(&LedgerFilter::vendor(Vendor::Wecom).endpoint("POST", LIST))
        .into_iter()
        .filter(|e| e.field("cursor").is_some())
        .count();
    assert!(
        with_cursor >= 2,
        "cursor pages were followed ({with_cursor})"
    );
    assert_eq!(w.count(DOWNLOAD_URL), 450, "each document downloaded once");

    let again = w.bridge().sync_now().await.expect("second sync");
    assert_eq!(again.imported, 0, "{again:?}");
    assert_eq!(w.count(DOWNLOAD_URL), 450, "nothing downloaded again");

    let imported: i64 = sqlx::query_scalar("SELECT count(DISTINCT jobid) FROM wecom_jobs")
        .fetch_one(&w.app.pool)
        .await
        .unwrap();
    assert_eq!(imported, 450);
    let jobs = w.wecom_jobs("").await;
    assert_eq!(
        jobs.len(),
        450,
        "GET /v1/jobs?source=wecom shows every import"
    );
    let mut ids: Vec<&str> = jobs
        .iter()
        .map(|j| j["metadata"]["wecom"]["jobid"].as_str().expect("jobid"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 450);
    for jobid in &seeded {
        assert!(
            ids.binary_search(&jobid.as_str()).is_ok(),
            "{jobid} imported"
        );
    }
    assert!(
        jobs.iter()
            .all(|j| j["printer_id"] == TARGET && j["source"] == "wecom")
    );

    // Another tenant sees none of them.
    let other = w.app.key_for("other", &["jobs:read"]).await;
    let page: Value = w
        .app
        .get_as(&other, "/v1/jobs?source=wecom")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn the_download_decrypts_to_the_seeded_bytes_and_settings_become_options() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    w.add_wecom_printer(&["alice"], true).await;
    // 1000 bytes + header: not a multiple of 32, so WeCom's 32-byte padding is exercised.
    let content = pdf(1000);
    let mut seed = WecomJobSeed::new(SN, "alice", "合同.pdf", &content);
    seed.setting_list = vec![
        WecomSetting {
            key: "纸张大小".into(),
            value: vec!["A3".into()],
        },
        WecomSetting {
            key: "单双面".into(),
            value: vec!["双面".into()],
        },
        WecomSetting {
            key: "份数".into(),
            value: vec!["3".into()],
        },
        WecomSetting {
            key: "颜色".into(),
            value: vec!["黑白".into()],
        },
        WecomSetting {
            key: "装订".into(),
            value: vec!["左侧".into()],
        },
    ];
    let jobid = w.sim.seed_wecom_job(seed).unwrap();
    w.bridge().sync_now().await.unwrap();

    let job_id = w.job_of(&jobid).await.expect("imported");
    let row = store::jobs::get_any(&w.app.pool, job_id)
        .await
        .unwrap()
        .unwrap();
    let stored = store::documents::content(&w.app.pool, row.document_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.as_ref(), content.as_slice());

    let job = w.app.job(&job_id.to_string()).await;
    assert_eq!(job["state"], "pending");
    assert_eq!(job["document"]["type"], "pdf");
    assert_eq!(job["document"]["filename"], "合同.pdf");
    assert_eq!(job["document"]["size_bytes"], content.len());
    assert_eq!(
        job["options"],
        json!({"copies": 3, "paper": "A3", "color": "monochrome", "sides": "two_sided_long_edge"})
    );
    let meta = &job["metadata"]["wecom"];
    assert_eq!(meta["jobid"], jobid.as_str());
    assert_eq!(meta["open_userid"], "alice");
    assert_eq!(meta["device_sn"], SN);
    assert_eq!(meta["doc_name"], "合同.pdf");
    assert_eq!(meta["doc_size"], content.len());
    assert_eq!(meta["setting_list"].as_array().unwrap().len(), 5);
    assert_eq!(meta["unmapped_settings"], json!(["装订=左侧"]));
    let events = w.app.events(&job_id.to_string()).await;
    assert_eq!(events[0]["source"], "wecom");
    assert!(events.iter().any(|e| e["kind"] == "imported_from_wecom"));
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn each_job_prints_once_on_the_target_and_its_outcome_is_reported_once_with_the_right_code() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    w.add_wecom_printer(&["alice"], true).await;
    let printed = w.seed("alice", "ok.pdf", &pdf(10));
    let jammed = w.seed("alice", "jam.pdf", &pdf(20));
    let unreadable = w.seed("alice", "mystery.xyz", &[0u8, 1, 2, 3, 0xFF, 0xFE]);
    w.bridge().sync_now().await.unwrap();

    let jammed_job = w.job_of(&jammed).await.unwrap();
    w.target.report(
        &format!("task-{jammed_job}"),
        [TaskProgress::Failed {
            error: JobError {
                code: ErrorCode::PrintFailed,
                message: "打印机缺纸".into(),
                vendor_code: None,
                vendor_message: None,
            },
        }],
    );
    w.print_everything().await;

    let printed_job = w.job_of(&printed).await.unwrap();
    let unreadable_job = w.job_of(&unreadable).await.unwrap();
    assert_eq!(w.target.submits_of(printed_job), 1);
    assert_eq!(w.target.submits_of(jammed_job), 1);
    assert_eq!(w.target.submits_of(unreadable_job), 0, "nothing to print");
    assert_eq!(
        w.app.job(&printed_job.to_string()).await["state"],
        "completed"
    );
    assert_eq!(w.app.job(&jammed_job.to_string()).await["state"], "failed");
    let unreadable_view = w.app.job(&unreadable_job.to_string()).await;
    assert_eq!(unreadable_view["state"], "failed");
    assert_eq!(unreadable_view["error"]["code"], "document_unavailable");

    // Reported once each, with WeCom's report numbering (2 ok, 1 failed) and our codes.
    let ok = w.sim.wecom_job(&printed).unwrap();
    assert_eq!(
        (ok.reports, ok.status),
        (1, 1),
        "job list status 1 = printed"
    );
    let jam = w.sim.wecom_job(&jammed).unwrap();
    assert_eq!((jam.reports, jam.status, jam.errcode), (1, 2, 2003));
    assert_eq!(jam.errmsg, "打印机缺纸");
    let bad = w.sim.wecom_job(&unreadable).unwrap();
    assert_eq!((bad.reports, bad.status, bad.errcode), (1, 2, 2001));
    let report = w.sim.ledger_filtered(
        &LedgerFilter::vendor(Vendor::Wecom)
            .endpoint("POST", REPORT)
            .field("jobid", &printed),
    );
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].field("status"), Some("2"));

    // Nothing is reported twice.
    w.bridge().report_now().await.unwrap();
    w.bridge().sync_now().await.unwrap();
    w.bridge().report_now().await.unwrap();
    for jobid in [&printed, &jammed, &unreadable] {
        assert_eq!(w.count_for(REPORT, jobid), 1, "{jobid}");
    }
    let events = w.app.events(&jammed_job.to_string()).await;
    let reported = events
        .iter()
        .find(|e| e["kind"] == "reported_to_wecom")
        .expect("the report is part of the job's events");
    assert_eq!(reported["vendor_payload"]["request"]["status"], 1);
    assert_eq!(reported["vendor_payload"]["request"]["errcode"], 2003);
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_report_is_retried_until_wecom_accepts_it() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    w.add_wecom_printer(&["alice"], true).await;
    let jobid = w.seed("alice", "ok.pdf", &pdf(10));
    w.bridge().sync_now().await.unwrap();
    w.sim.add_fault(
        FaultRule::new(FaultAction::HttpStatus { status: 502 })
            .vendor(Vendor::Wecom)
            .endpoint("POST", REPORT)
            .times(2),
    );
    w.print_everything().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.sim.wecom_job(&jobid).unwrap().reports == 0 {
        assert!(Instant::now() < deadline, "the report never got through");
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.bridge().report_now().await.unwrap();
    }
    assert_eq!(
        w.count_for(REPORT, &jobid),
        3,
        "two refusals, then accepted"
    );
    assert_eq!(w.sim.wecom_job(&jobid).unwrap().reports, 1);
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn a_push_imports_the_job_with_polling_disabled() {
    let w = world(Role::All, Push::On, |_| {}).await;
    w.add_wecom_printer(&[], true).await;
    let started = Instant::now();
    let jobid = w.seed("dave", "push.pdf", &pdf(64));
    let job_id = loop {
        if let Some(id) = w.job_of(&jobid).await {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the pushed job was not imported"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // How fast a push lands is measured in bench/, not asserted here.
    println!("push → imported in {:?}", started.elapsed());
    // No pull happened: the only list call is the look-up of the pushed jobid.
    let status_listings = w.sim.ledger_count(
        &LedgerFilter::vendor(Vendor::Wecom)
            .endpoint("POST", LIST)
            .field("status", "0"),
    );
    assert_eq!(status_listings, 0);
    // The running workers print it and report it.
    let done = w
        .app
        .drive_until(&job_id.to_string(), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["metadata"]["wecom"]["open_userid"], "dave");
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.sim.wecom_job(&jobid).unwrap().reports == 0 {
        assert!(Instant::now() < deadline, "not reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w.target.submits_of(job_id), 1);
    // The push was answered on its first delivery.
    assert!(
        w.sim
            .callbacks()
            .iter()
            .all(|c| c.attempt == 1 && c.http_status == Some(200))
    );
    // The user is now known: later pulls include them.
    let summary = w.bridge().sync_now().await.unwrap();
    assert!(
        summary.list_calls >= 1 && summary.imported == 0,
        "{summary:?}"
    );
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn a_forged_push_is_refused_and_changes_nothing() {
    let w = world(Role::Api, Push::On, |_| {}).await;
    w.add_wecom_printer(&[], true).await;
    let jobid = w
        .sim
        .seed_wecom_job({
            let mut s = WecomJobSeed::new(SN, "eve", "x.pdf", &pdf(5));
            s.push = false;
            s
        })
        .unwrap();
    let message = json!({
        "base_info": {"req_id": "forged-1", "create_time": 1, "model_id": MODEL, "device_sn": SN},
        "event": "printer_job_submit", "open_userid": "eve", "jobid": jobid
    });
    let wrong_token = w.post_push(&message, "not-the-token", &w.aes_key).await;
    common::assert_problem(wrong_token, StatusCode::UNAUTHORIZED, "invalid_signature").await;
    let wrong_key = w
        .post_push(
            &message,
            CALLBACK_TOKEN,
            &sim_crypto::new_encoding_aes_key(),
        )
        .await;
    common::assert_problem(wrong_key, StatusCode::BAD_REQUEST, "invalid_wecom_message").await;
    let unsigned = w
        .app
        .client
        .post(w.app.url("/webhooks/wecom"))
        .json(&json!({"encrypt": "abc"}))
        .send()
        .await
        .unwrap();
    common::assert_problem(unsigned, StatusCode::UNAUTHORIZED, "invalid_signature").await;
    assert_eq!(w.inbox_rows().await, 0);
    assert_eq!(w.bridge().run_inbox_now().await.unwrap(), 0);
    assert!(w.job_of(&jobid).await.is_none());
    assert_eq!(w.count(DOWNLOAD_URL), 0);
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

/// Saving the callback URL in WeCom: a GET with a signed, encrypted `echostr` is answered
/// with the plain echostr; a wrong signature is 401 and a missing echostr 400.
#[tokio::test]
async fn url_verification_answers_the_decrypted_echostr_and_checks_the_signature() {
    let w = world(Role::Api, Push::On, |_| {}).await;
    let key = sim_crypto::aes_key(&w.aes_key).expect("key");
    let echostr = sim_crypto::encrypt_message(&key, b"echo-4711", MODEL);
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = sim_crypto::msg_signature(CALLBACK_TOKEN, &timestamp, "n2", &echostr);
    let get = |signature: String, echostr: Option<String>| {
        let mut query = vec![
            ("msg_signature", signature),
            ("timestamp", timestamp.clone()),
            ("nonce", "n2".to_owned()),
        ];
        if let Some(e) = echostr {
            query.push(("echostr", e));
        }
        w.app
            .client
            .get(w.app.url("/webhooks/wecom"))
            .query(&query)
            .send()
    };
    let answer = get(signature.clone(), Some(echostr.clone())).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "echo-4711");

    let forged = sim_crypto::msg_signature("another-token", &timestamp, "n2", &echostr);
    let refused = get(forged, Some(echostr)).await.unwrap();
    common::assert_problem(refused, StatusCode::UNAUTHORIZED, "invalid_signature").await;

    let missing = get(signature, None).await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_push_is_ignored() {
    let w = world(Role::Api, Push::On, |_| {}).await;
    w.add_wecom_printer(&[], true).await;
    let jobid = w
        .sim
        .seed_wecom_job({
            let mut s = WecomJobSeed::new(SN, "frank", "x.pdf", &pdf(5));
            s.push = false;
            s
        })
        .unwrap();
    let message = json!({
        "base_info": {"req_id": "req-42", "create_time": 1, "model_id": MODEL, "device_sn": SN},
        "event": "printer_job_submit", "open_userid": "frank", "jobid": jobid
    });
    for _ in 0..3 {
        let answer = w.post_push(&message, CALLBACK_TOKEN, &w.aes_key).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.text().await.unwrap(), "success");
    }
    assert_eq!(w.inbox_rows().await, 1);
    assert_eq!(w.bridge().run_inbox_now().await.unwrap(), 1);
    // Delivered again after it was handled: still ignored.
    w.post_push(&message, CALLBACK_TOKEN, &w.aes_key).await;
    assert_eq!(w.bridge().run_inbox_now().await.unwrap(), 0);
    assert!(w.job_of(&jobid).await.is_some());
    assert_eq!(w.count_for(DOWNLOAD_URL, &jobid), 1);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&w.app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1);
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn a_wecom_job_deleted_before_printing_is_canceled_and_not_printed() {
    let w = world(Role::Api, Push::On, |_| {}).await;
    w.add_wecom_printer(&["gina"], true).await;
    let kept = w.seed("gina", "keep.pdf", &pdf(5));
    let deleted = w.seed("gina", "oops.pdf", &pdf(6));
    w.pushes_delivered(2).await;
    assert_eq!(w.bridge().run_inbox_now().await.unwrap(), 2);
    let deleted_job = w.job_of(&deleted).await.expect("imported by push");

    w.sim.delete_wecom_job(&deleted).unwrap();
    w.pushes_delivered(3).await;
    w.bridge().run_inbox_now().await.unwrap();
    let view = w.app.job(&deleted_job.to_string()).await;
    assert_eq!(view["state"], "canceled");
    assert_eq!(view["state_reason"], "deleted_at_wecom");

    w.print_everything().await;
    assert_eq!(w.target.submits_of(deleted_job), 0, "never printed");
    assert_eq!(
        w.count_for(REPORT, &deleted),
        0,
        "nothing to report for a deleted job"
    );
    let kept_job = w.job_of(&kept).await.unwrap();
    assert_eq!(w.target.submits_of(kept_job), 1);
    assert_eq!(w.count_for(REPORT, &kept), 1);
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn without_pushes_the_batch_status_look_up_cancels_a_deleted_job() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    w.add_wecom_printer(&["hana"], true).await;
    let deleted = w.seed("hana", "a.pdf", &pdf(5));
    let kept = w.seed("hana", "b.pdf", &pdf(6));
    w.bridge().sync_now().await.unwrap();
    w.sim.delete_wecom_job(&deleted).unwrap();
    let summary = w.bridge().sync_now().await.unwrap();
    assert_eq!(summary.canceled, 1, "{summary:?}");
    let batch = w
        .sim
        .ledger_filtered(&LedgerFilter::vendor(Vendor::Wecom).endpoint("POST", LIST))
        .into_iter()
        .filter(|e| e.fields.keys().any(|k| k.starts_with("jobid_list")))
        .count();
    assert!(batch >= 1, "the known jobs were looked up by jobid_list");
    let deleted_job = w.job_of(&deleted).await.unwrap();
    assert_eq!(
        w.app.job(&deleted_job.to_string()).await["state"],
        "canceled"
    );
    w.print_everything().await;
    assert_eq!(w.target.submits_of(deleted_job), 0);
    assert_eq!(w.count_for(REPORT, &deleted), 0);
    assert_eq!(w.count_for(REPORT, &kept), 1);
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn expired_tokens_are_refreshed_transparently_once_per_expiry() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    w.add_wecom_printer(&["ivan"], true).await;
    w.seed("ivan", "1.pdf", &pdf(1));
    let model = "/cgi-bin/openhw/get_model_token";
    let device = "/cgi-bin/openhw/get_device_token";
    assert_eq!(w.bridge().sync_now().await.unwrap().imported, 1);
    let issued = |w: &World| (w.tokens_issued(model), w.tokens_issued(device));
    assert_eq!(issued(&w), (1, 1));

    for expiry in 2..=3 {
        w.sim.expire_wecom_tokens();
        w.seed("ivan", &format!("{expiry}.pdf"), &pdf(expiry));
        let summary = w.bridge().sync_now().await.unwrap();
        assert_eq!(summary.imported, 1, "{summary:?}");
        assert!(summary.errors.is_empty(), "{summary:?}");
        assert_eq!(
            issued(&w),
            (expiry, expiry),
            "one refresh of each token per expiry"
        );
    }
    // The report path refreshes the same way.
    w.sim.expire_wecom_tokens();
    w.print_everything().await;
    assert_eq!(issued(&w), (4, 4));
    let accepted = w
        .sim
        .ledger_filtered(&LedgerFilter::vendor(Vendor::Wecom).endpoint("POST", REPORT))
        .iter()
        .filter(|e| e.vendor_code == Some(0))
        .count();
    assert_eq!(
        accepted, 3,
        "every job reported once, after one refused attempt"
    );
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn busy_answers_are_retried_and_rate_limits_pause_every_call() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    w.add_wecom_printer(&["jo"], true).await;
    w.seed("jo", "1.pdf", &pdf(1));
    w.sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: -1,
            msg: None,
        })
        .vendor(Vendor::Wecom)
        .endpoint("POST", LIST)
        .times(3),
    );
    let summary = w.bridge().sync_now().await.unwrap();
    assert_eq!(
        summary.imported, 1,
        "three -1 answers are retried: {summary:?}"
    );
    assert_eq!(w.count(LIST), 4, "3 busy answers, then the listing");

    w.seed("jo", "2.pdf", &pdf(2));
    w.sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: 45009,
            msg: None,
        })
        .vendor(Vendor::Wecom)
        .endpoint("POST", LIST)
        .times(1),
    );
    let before = w.count(LIST);
    let limited = w.bridge().sync_now().await.unwrap();
    assert_eq!(limited.imported, 0);
    assert_eq!(limited.errors.len(), 1, "{limited:?}");
    assert!(limited.errors[0].contains("45009"), "{limited:?}");
    // Paused: the next sync does not call WeCom at all.
    let paused = w.bridge().sync_now().await.unwrap();
    assert_eq!(paused.imported, 0);
    assert_eq!(w.count(LIST), before + 1, "no call while paused");
    // The pause ends by itself (WECOM_RATE_LIMIT_PAUSE_SECS): sync until it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let summary = w.bridge().sync_now().await.unwrap();
        if summary.imported == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pause never ended: {summary:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn a_bind_event_gives_the_printer_its_device_secret() {
    let w = world(Role::Api, Push::On, |_| {}).await;
    let printer = w.add_wecom_printer(&["kim"], false).await;
    assert_eq!(printer["secrets_set"], json!([]));
    w.sim
        .seed_wecom_job({
            let mut s = WecomJobSeed::new(SN, "kim", "x.pdf", &pdf(3));
            s.push = false;
            s
        })
        .unwrap();
    assert_eq!(
        w.bridge().sync_now().await.unwrap().imported,
        0,
        "no secret yet"
    );

    w.sim.wecom_auth_code(SN).unwrap();
    w.pushes_delivered(1).await;
    w.bridge().run_inbox_now().await.unwrap();
    let printer: Value = w
        .app
        .get(&format!("/v1/printers/{WECOM_PRINTER}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(printer["secrets_set"], json!(["device_secret"]));
    assert!(!printer.to_string().contains(DEVICE_SECRET));
    assert_eq!(w.bridge().sync_now().await.unwrap().imported, 1);
    // The payload holding the auth_code is not kept.
    let payloads: i64 =
        sqlx::query_scalar("SELECT count(*) FROM wecom_inbox WHERE payload IS NOT NULL")
            .fetch_one(&w.app.pool)
            .await
            .unwrap();
    assert_eq!(payloads, 0);
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn a_wecom_printer_needs_a_target_that_prints_and_takes_no_jobs_itself() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    let missing = w
        .app
        .post(
            "/v1/printers",
            &json!({"id": "w-missing", "backend": "wecom",
                    "locator": {"device_sn": SN, "target_printer_id": "nowhere"},
                    "secrets": {"device_secret": "x"}}),
        )
        .await;
    let body = common::assert_problem(
        missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_printer_config",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("nowhere"));
    let no_secret = w
        .app
        .post(
            "/v1/printers",
            &json!({"id": "w-nosecret", "backend": "wecom",
                    "locator": {"device_sn": SN, "target_printer_id": TARGET}}),
        )
        .await;
    let body = common::assert_problem(
        no_secret,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_printer_config",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("device_secret"));

    let printer = w.add_wecom_printer(&["lee"], true).await;
    assert_eq!(printer["secrets_set"], json!(["device_secret"]));
    assert!(!printer.to_string().contains(DEVICE_SECRET));
    let chained = w
        .app
        .post(
            "/v1/printers",
            &json!({"id": "w-chained", "backend": "wecom",
                    "locator": {"device_sn": "other", "target_printer_id": WECOM_PRINTER},
                    "secrets": {"device_secret": "x"}}),
        )
        .await;
    common::assert_problem(
        chained,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_printer_config",
    )
    .await;
    let submit = w
        .app
        .post(
            "/v1/jobs",
            &json!({"printer_id": WECOM_PRINTER, "document": {"text": "hello"}}),
        )
        .await;
    common::assert_problem(
        submit,
        StatusCode::UNPROCESSABLE_ENTITY,
        "printer_takes_no_jobs",
    )
    .await;
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn pushes_are_refused_when_not_configured() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    let answer = w
        .app
        .client
        .post(
            w.app
                .url("/webhooks/wecom?msg_signature=a&timestamp=1&nonce=n"),
        )
        .json(&json!({"encrypt": "abc"}))
        .send()
        .await
        .unwrap();
    common::assert_problem(answer, StatusCode::NOT_FOUND, "wecom_push_not_configured").await;
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

const LIANKE_BOX: &str = "lk-wecom-1";
const LIANKE_KEY: &str = "lk-wecom-key";

/// The whole path with real workers: WeCom users' jobs (pushed, and pulled as the backstop
/// every second — both racing) print on a Lianke printer of the simulator and are reported.
#[tokio::test]
async fn wecom_jobs_print_once_each_on_a_lianke_printer_and_are_reported_once() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    sim.add_wecom_model(WecomModelSpec {
        model_id: MODEL.into(),
        model_secret: MODEL_SECRET.into(),
        model_ticket: TICKET.into(),
    });
    sim.add_wecom_device(WecomDeviceSpec {
        model_id: MODEL.into(),
        device_sn: SN.into(),
        device_secret: DEVICE_SECRET.into(),
    });
    sim.add_lianke_device(LiankeDeviceSpec::new(LIANKE_BOX, LIANKE_KEY));
    let aes_key = sim_crypto::new_encoding_aes_key();
    let sim_url = sim.base_url();
    let configure = |c: &mut Config| {
        wecom_config(c, &sim, Push::On, &aes_key);
        c.wecom.wecom_sync_interval_secs = 1;
        c.lianke.lianke_base_url = sim_url.clone();
        c.lianke.lianke_api_key = Some(DEFAULT_LIANKE_API_KEY.into());
        c.lianke.lianke_poll_interval_ms = 20;
        c.public_base_url = None;
    };
    let mut probe = common::test_config("postgres://unused/unused");
    configure(&mut probe);
    let lianke = LiankeBackend::new(DEFAULT_LIANKE_API_KEY.into(), lianke_settings(&probe))
        .expect("lianke backend");
    let app = spawn_app_with(
        BackendRegistry::new().with(Arc::new(lianke)),
        Role::All,
        configure,
    )
    .await;
    sim.set_wecom_push(Some(WecomPushConfig {
        url: app.url("/webhooks/wecom"),
        token: CALLBACK_TOKEN.into(),
        encoding_aes_key: aes_key.clone(),
        receive_id: MODEL.into(),
    }));
    app.create_printer_with(json!({
        "id": "demo-lianke",
        "backend": "lianke",
        "locator": {"device_id": LIANKE_BOX, "device_port": 1, "printer_model": "HP LaserJet P1007"},
        "secrets": {"device_key": LIANKE_KEY},
    }))
    .await;
    app.create_printer_with(json!({
        "id": WECOM_PRINTER,
        "backend": "wecom",
        "locator": {"device_sn": SN, "open_userids": ["mia", "noah"], "target_printer_id": "demo-lianke"},
        "secrets": {"device_secret": DEVICE_SECRET},
    }))
    .await;

    let mut seeded = Vec::new();
    for i in 0..20 {
        let content = format!("%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n% job {i}\n%%EOF\n");
        let mut seed = WecomJobSeed::new(
            SN,
            ["mia", "noah"][i % 2],
            &format!("w{i}.pdf"),
            content.as_bytes(),
        );
        // Every fourth job is never pushed: the pull must find it.
        seed.push = i % 4 != 0;
        let jobid = sim.seed_wecom_job(seed).expect("seeded");
        seeded.push((jobid, hex::encode(Sha256::digest(content.as_bytes()))));
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    while seeded
        .iter()
        .any(|(jobid, _)| sim.wecom_job(jobid).is_none_or(|j| j.reports == 0))
    {
        assert!(
            Instant::now() < deadline,
            "not every job was printed and reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jobs: Value = app
        .get("/v1/jobs?source=wecom&state=completed&limit=50")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["items"].as_array().unwrap().len(), 20);
    // Stop the gateway (it drains its workers) before counting: a stray duplicate submit
    // or report could only come from work still running, and none is left.
    app.shutdown().await;

    let submits = sim.ledger_filtered(
        &LedgerFilter::vendor(Vendor::Lianke)
            .endpoint("POST", "/api/print/job")
            .field("deviceId", LIANKE_BOX),
    );
    assert_eq!(
        submits.len(),
        20,
        "the target printer receives each document once"
    );
    let mut printed: Vec<&str> = submits
        .iter()
        .flat_map(|e| e.files.iter().map(|f| f.sha256.as_str()))
        .collect();
    printed.sort_unstable();
    for (jobid, digest) in &seeded {
        assert!(
            printed.binary_search(&digest.as_str()).is_ok(),
            "{jobid}: the decrypted document reached Lianke"
        );
        let job = sim.wecom_job(jobid).expect("job");
        assert_eq!(
            (job.reports, job.status),
            (1, 1),
            "{jobid}: reported once, as printed"
        );
        let reports = sim.ledger_filtered(
            &LedgerFilter::vendor(Vendor::Wecom)
                .endpoint("POST", REPORT)
                .field("jobid", jobid),
        );
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].field("status"), Some("2"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_job_wecom_will_not_hand_over_does_not_hold_up_the_others() {
    let w = world(Role::Api, Push::Off, |_| {}).await;
    w.add_wecom_printer(&["frank"], true).await;
    w.seed("frank", "one.pdf", &pdf(32));
    w.seed("frank", "two.pdf", &pdf(48));
    // The first job's download URL request fails.
    w.sim.add_fault(
        FaultRule::new(FaultAction::HttpStatus { status: 503 })
            .vendor(Vendor::Wecom)
            .endpoint("POST", DOWNLOAD_URL)
            .times(1),
    );
    let first = w
        .bridge()
        .sync_now()
        .await
        .expect("the sync itself goes on");
    assert_eq!(first.imported, 1, "{first:?}");
    assert_eq!(first.errors.len(), 1, "{first:?}");
    let second = w.bridge().sync_now().await.expect("sync");
    assert_eq!(
        second.imported, 1,
        "the skipped job comes in next round: {second:?}"
    );
}

/// Issue 18: a U+0000 in a push (here in its `req_id`, which is only stored) is stored
/// escaped as `\u0000`, the push is answered `success`, and its job is still imported.
#[tokio::test]
async fn a_push_with_a_nul_character_is_stored_escaped_and_still_imports_its_job() {
    let w = world(Role::Api, Push::On, |_| {}).await;
    w.add_wecom_printer(&[], true).await;
    let jobid = w
        .sim
        .seed_wecom_job({
            let mut s = WecomJobSeed::new(SN, "ivan", "x.pdf", &pdf(5));
            s.push = false;
            s
        })
        .unwrap();
    let message = json!({
        "base_info": {"req_id": "req-\u{0}-1", "create_time": 1, "model_id": MODEL, "device_sn": SN},
        "event": "printer_job_submit", "open_userid": "ivan", "jobid": jobid
    });
    let answer = w.post_push(&message, CALLBACK_TOKEN, &w.aes_key).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "success");
    let (req_id, stored): (String, String) =
        sqlx::query_as("SELECT req_id, payload->'base_info'->>'req_id' FROM wecom_inbox")
            .fetch_one(&w.app.pool)
            .await
            .unwrap();
    assert_eq!(req_id, "req-\\u0000-1");
    assert_eq!(stored, "req-\\u0000-1");
    assert_eq!(w.bridge().run_inbox_now().await.unwrap(), 1);
    assert!(
        w.job_of(&jobid).await.is_some(),
        "the push imported its job"
    );
    w.app.shutdown().await;
    w.sim.shutdown().await;
}

//! Fault scripts, callback mischief, the ledger under concurrency and the HTTP control API.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use vendor_sim::{
    CallbackFault, CallbackMischief, FaultAction, FaultRule, LedgerFilter, SimConfig, Vendor,
};

fn submits() -> LedgerFilter {
    LedgerFilter::vendor(Vendor::Lianke).endpoint("POST", "/api/print/job")
}

#[tokio::test]
async fn ledger_counts_match_concurrent_calls_and_never_hold_secrets() {
    let sim = sim().await;
    let calls = (0..40).map(|i| {
        let sim = &sim;
        async move { lianke_submit(sim, job_form(format!("doc {i}").as_bytes(), &[])).await }
    });
    let replies = futures::future::join_all(calls).await;
    assert!(replies.iter().all(|r| r["code"] == 200));
    let entries = sim.ledger_filtered(&submits());
    assert_eq!(entries.len(), 40);
    let mut seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), 40, "distinct, increasing seq");
    let mut digests: Vec<&str> = entries.iter().map(|e| e.files[0].sha256.as_str()).collect();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 40, "each document recorded once");
    assert_eq!(sim.ledger_count(&submits().field("deviceId", DEVICE)), 40);
    let dump = serde_json::to_string(&sim.ledger()).expect("serialises");
    assert!(!dump.contains(DEVICE_KEY), "deviceKey masked");
    assert!(
        !dump.contains(vendor_sim::DEFAULT_LIANKE_API_KEY),
        "ApiKey masked"
    );
}

#[tokio::test]
async fn scripted_error_codes_apply_to_the_next_n_calls_only() {
    let sim = sim().await;
    sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: 5002,
            msg: None,
        })
        .vendor(Vendor::Lianke)
        .endpoint("POST", "/api/print/job")
        .times(2),
    );
    let codes = [
        lianke_submit(&sim, job_form(b"1", &[])).await["code"].clone(),
        lianke_submit(&sim, job_form(b"2", &[])).await["code"].clone(),
        lianke_submit(&sim, job_form(b"3", &[])).await["code"].clone(),
    ];
    assert_eq!(codes, [json!(5002), json!(5002), json!(200)]);
    let entries = sim.ledger_filtered(&submits());
    assert_eq!(
        entries.iter().map(|e| e.faulted).collect::<Vec<_>>(),
        vec![true, true, false]
    );
    assert_eq!(entries[0].vendor_code, Some(5002));
    assert_eq!(sim.lianke_tasks().len(), 1, "faulted calls created no task");

    // WeCom: -1 then the envelope shape is {errcode, errmsg}.
    sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: 45009,
            msg: None,
        })
        .vendor(Vendor::Wecom)
        .times(1),
    );
    let v: Value = client()
        .post(format!("{}/cgi-bin/openhw/get_model_token", sim.base_url()))
        .json(&json!({}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 45009);
    assert!(v["errmsg"].is_string());
}

#[tokio::test]
async fn latency_hangs_http_errors_and_error_rates() {
    let sim = sim().await;
    let path = "/api/print/printer_enum";
    sim.add_fault(
        FaultRule::new(FaultAction::Latency {
            fixed_ms: 120,
            jitter_ms: 30,
        })
        .endpoint("GET", path)
        .times(1),
    );
    let t = Instant::now();
    assert_eq!(lianke_get(&sim, path).await["code"], 200);
    assert!(t.elapsed() >= Duration::from_millis(120));

    sim.add_fault(
        FaultRule::new(FaultAction::Hang)
            .endpoint("GET", path)
            .times(1),
    );
    let timed_out = client()
        .get(format!("{}{path}", sim.base_url()))
        .header("ApiKey", vendor_sim::DEFAULT_LIANKE_API_KEY)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(timed_out.is_err_and(|e| e.is_timeout()));

    sim.add_fault(
        FaultRule::new(FaultAction::HttpStatus { status: 503 })
            .endpoint("GET", path)
            .times(1),
    );
    let resp = client()
        .get(format!("{}{path}", sim.base_url()))
        .header("ApiKey", vendor_sim::DEFAULT_LIANKE_API_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 503);

    let id = sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: 10009,
            msg: None,
        })
        .endpoint("GET", path)
        .probability(0.5),
    );
    let mut errors = 0;
    for _ in 0..60 {
        if lianke_get(&sim, path).await["code"] == 10009 {
            errors += 1;
        }
    }
    assert!((10..=50).contains(&errors), "about half fail: {errors}");
    assert!(sim.remove_fault(id));
    assert_eq!(lianke_get(&sim, path).await["code"], 200);
}

async fn submit_with_callback(sim: &vendor_sim::Sim, url: &str) -> String {
    lianke_submit(sim, job_form(b"x", &[("callbackUrl", url)])).await["data"]["task_id"]
        .as_str()
        .expect("id")
        .to_owned()
}

#[tokio::test]
async fn callbacks_can_be_dropped_duplicated_or_delivered_out_of_order() {
    let sim = sim().await;
    let rx = receiver(vec![]).await;

    sim.add_callback_fault(CallbackFault {
        vendor: Some(Vendor::Lianke),
        mischief: CallbackMischief::Drop,
        times: 1,
    });
    let dropped = submit_with_callback(&sim, &rx.url).await;
    wait_terminal(&sim, &dropped).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(rx.hits().is_empty());
    assert!(
        sim.callbacks()
            .iter()
            .any(|a| a.error.as_deref() == Some("dropped by fault"))
    );

    sim.add_callback_fault(CallbackFault {
        vendor: None,
        mischief: CallbackMischief::Duplicate,
        times: 1,
    });
    submit_with_callback(&sim, &rx.url).await;
    assert_eq!(rx.wait_for(2, Duration::from_secs(2)).await.len(), 2);

    sim.add_callback_fault(CallbackFault {
        vendor: None,
        mischief: CallbackMischief::Delay { delay_ms: 300 },
        times: 1,
    });
    let late = submit_with_callback(&sim, &rx.url).await;
    wait_terminal(&sim, &late).await;
    let early = submit_with_callback(&sim, &rx.url).await;
    let hits = rx.wait_for(4, Duration::from_secs(3)).await;
    let order: Vec<String> = hits[2..]
        .iter()
        .map(|h| {
            serde_json::from_slice::<Value>(&h.body).expect("json")["task_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        order,
        vec![early, late],
        "the delayed callback arrives last"
    );
}

#[tokio::test]
async fn the_http_control_api_registers_scripts_and_reports() {
    let sim = vendor_sim::Sim::start(SimConfig::default())
        .await
        .expect("starts");
    let base = sim.base_url();
    let c = client();
    let ok = c
        .post(format!("{base}/_sim/lianke/devices"))
        .json(&json!({"deviceId": DEVICE, "deviceKey": DEVICE_KEY}))
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status().as_u16(), 200);
    c.post(format!("{base}/_sim/faults"))
        .json(
            &json!({"vendor": "lianke", "endpoint": "/api/print/job", "method": "POST",
                      "action": {"kind": "vendor_error", "code": 11203}, "times": 1}),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(
        lianke_submit(&sim, job_form(b"x", &[])).await["code"],
        11203
    );
    assert_eq!(lianke_submit(&sim, job_form(b"x", &[])).await["code"], 200);

    let count: Value = c
        .get(format!(
            "{base}/_sim/ledger/count?vendor=lianke&endpoint=/api/print/job&field.deviceId={DEVICE}"
        ))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(count["count"], 2);
    let entries: Value = c
        .get(format!("{base}/_sim/ledger?vendor=lianke"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(entries.as_array().map(Vec::len), Some(2));
    assert_eq!(entries[0]["files"][0]["field"], "jobFile");

    let seeded: Value = c
        .post(format!("{base}/_sim/wecom/models"))
        .json(&json!({"model_id": "m", "model_secret": "s", "model_ticket": "t"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(seeded["ok"], true);
    c.post(format!("{base}/_sim/wecom/devices"))
        .json(&json!({"model_id": "m", "device_sn": "sn", "device_secret": "ds"}))
        .send()
        .await
        .expect("sent");
    let job: Value = c
        .post(format!("{base}/_sim/wecom/jobs"))
        .json(&json!({"device_sn": "sn", "open_userid": "u", "doc_name": "a.txt", "content": "aGVsbG8="}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let jobid = job["jobid"].as_str().expect("jobid");
    let view: Value = c
        .get(format!("{base}/_sim/wecom/jobs/{jobid}"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(view["doc_size"], 5);

    c.post(format!("{base}/_sim/reset"))
        .send()
        .await
        .expect("sent");
    assert!(sim.ledger().is_empty());
    assert_eq!(
        lianke_submit(&sim, job_form(b"x", &[])).await["code"],
        404,
        "device registrations reset too"
    );
}

#[tokio::test]
async fn a_status_after_the_effect_creates_the_task_but_answers_the_status() {
    let sim = sim().await;
    sim.add_fault(
        FaultRule::new(FaultAction::HttpStatusAfter { status: 502 })
            .endpoint("POST", "/api/print/job")
            .times(1),
    );
    let resp = client()
        .post(format!("{}/api/print/job", sim.base_url()))
        .header("ApiKey", vendor_sim::DEFAULT_LIANKE_API_KEY)
        .multipart(job_form(b"proxy error after the task", &[]))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 502);
    assert!(resp.bytes().await.expect("body").is_empty());
    assert_eq!(sim.lianke_tasks().len(), 1, "the task exists all the same");
    let entry = &sim.ledger_filtered(&submits())[0];
    assert!(entry.faulted);
    assert_eq!(entry.http_status, Some(502));
    // The next call is answered normally.
    assert_eq!(
        lianke_submit(&sim, job_form(b"next", &[])).await["code"],
        200
    );
    assert_eq!(sim.lianke_tasks().len(), 2);
}

/// Which of `n` calls a 30% error rate hits, with a simulator seeded with `seed`.
async fn faulted_calls(seed: u64, n: usize) -> Vec<bool> {
    let sim = start(SimConfig {
        fault_seed: Some(seed),
        ..SimConfig::default()
    })
    .await;
    let path = "/api/print/printer_enum";
    sim.add_fault(
        FaultRule::new(FaultAction::HttpStatus { status: 502 })
            .endpoint("GET", path)
            .probability(0.3),
    );
    for _ in 0..n {
        let _ = client()
            .get(format!("{}{path}", sim.base_url()))
            .header("ApiKey", vendor_sim::DEFAULT_LIANKE_API_KEY)
            .send()
            .await
            .expect("sent");
    }
    sim.ledger().iter().map(|e| e.faulted).collect()
}

#[tokio::test]
async fn a_fault_seed_replays_the_same_faults() {
    let first = faulted_calls(7, 40).await;
    assert_eq!(first, faulted_calls(7, 40).await, "same seed, same faults");
    let hits = first.iter().filter(|f| **f).count();
    assert!((2..=30).contains(&hits), "about 30% faulted: {hits}");
    let mut differs = false;
    for seed in 8..12 {
        differs |= faulted_calls(seed, 40).await != first;
    }
    assert!(differs, "other seeds give other faults");
}

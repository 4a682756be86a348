//! Lianke conformance: form-data submit, the task lifecycle, every documented error code,
//! callbacks with their 0/5/10 s retry schedule (scaled down).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use vendor_sim::{
    DEFAULT_LIANKE_API_KEY, LIANKE_CALLBACK_SCHEDULE, LedgerFilter, LiankeOutcome, SimConfig,
    Vendor, scaled,
};

#[tokio::test]
async fn a_file_job_runs_ready_to_success_with_the_documented_task_result() {
    let sim = sim().await;
    sim.set_lianke_paused(DEVICE, true);
    let file = b"%PDF-1.4 fake document".to_vec();
    let reply = lianke_submit(
        &sim,
        job_form(&file, &[("dmCopies", "2"), ("jpScale", "fit")]),
    )
    .await;
    assert_eq!(reply["code"], 200);
    assert_eq!(reply["msg"], "success");
    let task_id = reply["data"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();
    assert_eq!(task_id.len(), 36, "a uuid like the doc's example");

    let queued = task_state(&sim, &task_id).await;
    assert_eq!(queued["data"]["task_state"], "READY");
    assert!(queued["data"].get("task_result").is_none());

    sim.set_lianke_paused(DEVICE, false);
    let done = wait_terminal(&sim, &task_id).await;
    let data = &done["data"];
    assert_eq!(done["code"], 200);
    assert_eq!(data["task_state"], "SUCCESS");
    assert_eq!(data["task_result"]["code"], 200);
    assert_eq!(data["task_result"]["msg"], "success");
    assert_eq!(data["task_result"]["data"]["file_total"], file.len());
    assert_eq!(data["task_result"]["data"]["send_total"], file.len());
    assert_eq!(data["task_result"]["data"]["total_page"], 1);
    assert!(data["task_done_timestamp"].as_i64().is_some());
    assert!(
        data["task_done_time"]
            .as_str()
            .is_some_and(|t| t.ends_with(" GMT"))
    );

    let view = sim.lianke_task(&task_id).expect("task known");
    assert_eq!(view.fields.get("dmCopies").map(String::as_str), Some("2"));
    let submits = sim
        .ledger_filtered(&LedgerFilter::vendor(Vendor::Lianke).endpoint("POST", "/api/print/job"));
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].files.len(), 1);
    assert_eq!(submits[0].files[0].size, file.len());
    assert_eq!(submits[0].field("deviceId"), Some(DEVICE));
    assert_ne!(
        submits[0].field("deviceKey"),
        Some(DEVICE_KEY),
        "secret masked"
    );
    assert_eq!(submits[0].vendor_code, Some(200));
}

#[tokio::test]
async fn url_jobs_need_url_file_ext_and_json_bodies_are_refused() {
    let sim = sim().await;
    let url_form = |ext: Option<&str>| {
        let mut f = reqwest::multipart::Form::new()
            .text("deviceId", DEVICE)
            .text("deviceKey", DEVICE_KEY)
            .text("jobFile", "https://example.com/a.pdf")
            .text("dmPaperSize", "9")
            .text("jpAutoScale", "4");
        if let Some(e) = ext {
            f = f.text("urlFileExt", e.to_owned());
        }
        f
    };
    assert_eq!(lianke_submit(&sim, url_form(None)).await["code"], 400);
    assert_eq!(
        lianke_submit(&sim, url_form(Some(".pdf"))).await["code"],
        200
    );

    let json_submit = lianke_post_json(
        &sim,
        "/api/print/job",
        json!({"deviceId": DEVICE, "deviceKey": DEVICE_KEY, "jobFile": "https://e.com/a.pdf"}),
    )
    .await;
    assert_eq!(json_submit["code"], 400);

    let bad_value = lianke_submit(&sim, job_form(b"x", &[("dmColor", "7")])).await;
    assert_eq!(bad_value["code"], 400);
    let no_paper = reqwest::multipart::Form::new()
        .text("deviceId", DEVICE)
        .text("deviceKey", DEVICE_KEY)
        .part(
            "jobFile",
            reqwest::multipart::Part::bytes(vec![1]).file_name("a.png"),
        )
        .text("jpAutoScale", "4");
    assert_eq!(lianke_submit(&sim, no_paper).await["code"], 400);
}

#[tokio::test]
async fn api_key_and_device_key_are_checked() {
    let sim = sim().await;
    let no_key: Value = client()
        .get(format!("{}/api/print/printer_enum", sim.base_url()))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(no_key["code"], 403);
    let wrong_device_key = lianke_get(
        &sim,
        &format!("/api/external_api/printer_list?deviceId={DEVICE}&deviceKey=nope&printerType=1"),
    )
    .await;
    assert_eq!(wrong_device_key["code"], 404);
    assert_eq!(wrong_device_key["msg"], "设备id或密码错误");
}

#[tokio::test]
async fn device_status_codes_5001_5002_5011_and_497() {
    let sim = sim().await;
    sim.set_lianke_online(DEVICE, Some(false));
    assert_eq!(lianke_submit(&sim, job_form(b"x", &[])).await["code"], 5002);
    // reportDeviceStatus=0 lets the task in; it waits in READY while the box is offline.
    let accepted = lianke_submit(&sim, job_form(b"x", &[("reportDeviceStatus", "0")])).await;
    assert_eq!(accepted["code"], 200);
    sim.set_lianke_online(DEVICE, None);
    assert_eq!(lianke_submit(&sim, job_form(b"x", &[])).await["code"], 5001);
    sim.set_lianke_online(DEVICE, Some(true));

    let port2 = job_form(b"x", &[("reportPrinterStatus", "1")]).text("devicePort", "2");
    assert_eq!(lianke_submit(&sim, port2).await["code"], 5011);
    let status = lianke_get(
        &sim,
        &format!("/api/device/printer_status?deviceId={DEVICE}&deviceKey={DEVICE_KEY}&usbPort=2"),
    )
    .await;
    assert_eq!(status["code"], 497);

    let ok = lianke_get(
        &sim,
        &format!("/api/device/printer_status?deviceId={DEVICE}&deviceKey={DEVICE_KEY}&usbPort=1"),
    )
    .await;
    assert_eq!(ok["code"], 200);
    for k in [
        "headOpened",
        "paperJam",
        "outOfPaper",
        "outOfInk",
        "pause",
        "printing",
    ] {
        assert!(ok["data"][k].is_boolean(), "{k}");
    }
}

#[tokio::test]
async fn concurrent_printer_status_on_one_device_answers_10009() {
    let sim = sim().await;
    let path =
        format!("/api/device/printer_status?deviceId={DEVICE}&deviceKey={DEVICE_KEY}&usbPort=1");
    let (a, b) = tokio::join!(lianke_get(&sim, &path), lianke_get(&sim, &path));
    let mut codes = vec![a["code"].as_i64(), b["code"].as_i64()];
    codes.sort();
    assert_eq!(codes, vec![Some(200), Some(10009)]);
}

#[tokio::test]
async fn consecutive_failures_trip_11203_until_the_limit_is_reset() {
    let sim = sim().await;
    let fail = LiankeOutcome::PrintError {
        code: 503,
        msg: "设备连接异常，请检查设备网络".into(),
    };
    sim.script_lianke_outcomes(
        DEVICE,
        vec![
            fail.clone(),
            LiankeOutcome::Failure {
                code: 500,
                msg: "x".into(),
            },
        ],
    );
    for _ in 0..2 {
        let r = lianke_submit(&sim, job_form(b"x", &[("errLimitNum", "2")])).await;
        let id = r["data"]["task_id"].as_str().expect("id").to_owned();
        let done = wait_terminal(&sim, &id).await;
        assert_ne!(done["data"]["task_result"]["code"], 200);
    }
    let blocked = lianke_submit(&sim, job_form(b"x", &[("errLimitNum", "2")])).await;
    assert_eq!(blocked["code"], 11203);
    assert!(
        blocked["msg"]
            .as_str()
            .is_some_and(|m| m.contains("大于2次"))
    );

    let body = json!({"deviceId": DEVICE, "deviceKey": DEVICE_KEY, "devicePort": "1"});
    let reset = lianke_post_json(&sim, "/api/print/reset_printing_error_limit", body.clone()).await;
    assert_eq!(reset["code"], 200);
    let again = lianke_post_json(&sim, "/api/print/reset_printing_error_limit", body).await;
    assert_eq!(again["code"], 11201);
    assert_eq!(
        lianke_submit(&sim, job_form(b"x", &[("errLimitNum", "2")])).await["code"],
        200
    );
}

#[tokio::test]
async fn delete_marks_set_revoke_then_revoked_and_flush_empties_the_queue() {
    let sim = start(SimConfig {
        lianke_stage_delay: Duration::from_millis(150),
        ..SimConfig::default()
    })
    .await;
    sim.set_lianke_paused(DEVICE, true);
    let id = lianke_submit(&sim, job_form(b"x", &[])).await["data"]["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let del: Value = client()
        .delete(format!(
            "{}/api/print/job?deviceId={DEVICE}&deviceKey={DEVICE_KEY}&devicePort=1&task_id={id}",
            sim.base_url()
        ))
        .header("ApiKey", DEFAULT_LIANKE_API_KEY)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(del, json!({"code": 200, "msg": "success"}));
    assert_eq!(
        task_state(&sim, &id).await["data"]["task_state"],
        "SET_REVOKE"
    );
    assert_eq!(
        wait_terminal(&sim, &id).await["data"]["task_state"],
        "REVOKED"
    );

    for _ in 0..3 {
        lianke_submit(&sim, job_form(b"x", &[])).await;
    }
    let flushed = lianke_post_json(
        &sim,
        "/api/print/flush_jobs",
        json!({"deviceId": DEVICE, "deviceKey": DEVICE_KEY, "devicePort": 1}),
    )
    .await;
    assert_eq!(flushed["code"], 200);
    assert_eq!(flushed["data"]["queue_num"], 3);
}

#[tokio::test]
async fn a_callback_is_retried_at_0_5_10_scaled_until_the_receiver_answers_200() {
    // 0/5/10 s scaled by 0.02 → 0/100/200 ms.
    let sim = start(SimConfig {
        lianke_callback_schedule: scaled(&LIANKE_CALLBACK_SCHEDULE, 0.02),
        ..SimConfig::default()
    })
    .await;
    let rx = receiver(vec![500, 500]).await;
    let url = format!("{}?token=abc", rx.url);
    let id = lianke_submit(&sim, job_form(b"x", &[("callbackUrl", url.as_str())])).await["data"]["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let hits = rx.wait_for(3, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits_after = rx.hits();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits_after.len(), 3, "no delivery after the 200");
    let gap1 = hits[1].at - hits[0].at;
    let gap2 = hits[2].at - hits[1].at;
    assert!(
        gap1 >= Duration::from_millis(90) && gap1 < Duration::from_millis(190),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(90) && gap2 < Duration::from_millis(190),
        "{gap2:?}"
    );
    assert_eq!(hits[0].query, "token=abc", "query parameters kept");
    let body: Value = serde_json::from_slice(&hits[2].body).expect("json body");
    assert_eq!(body["task_id"], id.as_str());
    assert_eq!(body["device_id"], DEVICE);
    assert_eq!(body["task_state"], "SUCCESS");
    assert_eq!(body["task_result"], json!({"code": 200, "msg": "success"}));
    for k in ["create_time", "finish_time"] {
        assert_eq!(
            body[k].as_str().map(str::len),
            Some(19),
            "{k} like 2022-03-01 17:15:02"
        );
    }
    let attempts = sim.callbacks();
    assert_eq!(
        attempts.iter().map(|a| a.http_status).collect::<Vec<_>>(),
        vec![Some(500), Some(500), Some(200)]
    );
}

#[tokio::test]
async fn http_callback_urls_are_refused_unless_allowed() {
    let sim = start(SimConfig {
        allow_http_callbacks: false,
        ..SimConfig::default()
    })
    .await;
    let r = lianke_submit(
        &sim,
        job_form(b"x", &[("callbackUrl", "http://127.0.0.1:1/hook")]),
    )
    .await;
    assert_eq!(r["code"], 400);
    let r = lianke_submit(
        &sim,
        job_form(b"x", &[("callbackUrl", "https://127.0.0.1:1/hook")]),
    )
    .await;
    assert_eq!(r["code"], 200);
}

#[tokio::test]
async fn information_endpoints_answer_the_documented_shapes() {
    let sim = sim().await;
    let list = lianke_get(
        &sim,
        &format!(
            "/api/external_api/printer_list?deviceId={DEVICE}&deviceKey={DEVICE_KEY}&printerType=1"
        ),
    )
    .await;
    assert_eq!(list["data"]["total"], 1);
    let row = &list["data"]["row"][0];
    for k in [
        "driver_name",
        "printer_name",
        "port",
        "isPrinter",
        "driver_type",
        "support_status",
        "printer_state",
    ] {
        assert!(!row[k].is_null(), "{k}");
    }
    let model = row["driver_name"].as_str().expect("model").to_owned();
    let params = lianke_get(
        &sim,
        &format!("/api/print/printer_params?printerModel={model}"),
    )
    .await;
    assert_eq!(params["data"]["Capabilities"]["Papers"]["A4"], 9);
    assert_eq!(params["data"]["DevMode"]["PaperSize"], 9);
    let papers = lianke_get(
        &sim,
        &format!("/api/print/paper_dimension_list?printerModel={model}"),
    )
    .await;
    assert_eq!(papers["data"]["A4"]["physical_width"], 2100);
    let info = lianke_get(
        &sim,
        &format!("/api/device/device_info?deviceId={DEVICE}&deviceKey={DEVICE_KEY}"),
    )
    .await;
    assert_eq!(info["data"]["info"]["online"], 1);
    let models = lianke_get(&sim, "/api/print/printer_enum").await;
    assert!(models["data"].as_array().is_some_and(|a| a.len() > 10));
    let search =
        lianke_post_json(&sim, "/api/print/printer_enum", json!({"query": "HP 1020"})).await;
    assert!(
        search["data"]
            .as_array()
            .is_some_and(|a| a.iter().any(|m| m == "HP LaserJet 1020"))
    );

    let id = lianke_submit(&sim, job_form(b"x", &[])).await["data"]["task_id"].clone();
    let tasks = lianke_post_json(
        &sim,
        "/api/print/query_device_task",
        json!({"deviceId": DEVICE, "deviceKey": DEVICE_KEY}),
    )
    .await;
    assert_eq!(tasks["data"]["task_list"][0]["task_id"], id);
    assert_eq!(tasks["data"]["task_list"][0]["job_id"], "");
}

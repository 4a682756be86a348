//! WeCom conformance: tokens (no errcode on success), cursor pages, jobid_list, retention,
//! AES download round trip with Range, status reports, signed and encrypted pushes.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{client, receiver};
use serde_json::{Value, json};
use vendor_sim::wecom::crypto;
use vendor_sim::{Sim, SimConfig, WecomDeviceSpec, WecomJobSeed, WecomModelSpec, WecomPushConfig};

const MODEL: &str = "model-1";
const SN: &str = "printer-sn-1";

async fn sim_with(config: SimConfig) -> Sim {
    let sim = Sim::start(config).await.expect("starts");
    sim.add_wecom_model(WecomModelSpec {
        model_id: MODEL.into(),
        model_secret: "msecret".into(),
        model_ticket: "ticket-1".into(),
    });
    sim.add_wecom_device(WecomDeviceSpec {
        model_id: MODEL.into(),
        device_sn: SN.into(),
        device_secret: "dsecret".into(),
    });
    sim
}

async fn call(sim: &Sim, path: &str, body: Value) -> Value {
    client()
        .post(format!("{}/cgi-bin/openhw/{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

async fn model_token(sim: &Sim) -> String {
    let v = call(
        sim,
        "get_model_token",
        json!({"model_id": MODEL, "model_secret": "msecret", "model_ticket": "ticket-1"}),
    )
    .await;
    assert!(
        v.get("errcode").is_none(),
        "token calls omit errcode on success: {v}"
    );
    assert!(v["expires_in"].is_u64());
    v["model_access_token"].as_str().expect("token").to_owned()
}

async fn device_token(sim: &Sim) -> String {
    let mt = model_token(sim).await;
    let v = call(
        sim,
        &format!("get_device_token?model_access_token={mt}"),
        json!({"device_sn": SN, "device_secret": "dsecret"}),
    )
    .await;
    assert!(v.get("errcode").is_none(), "{v}");
    v["device_access_token"].as_str().expect("token").to_owned()
}

fn seed(sim: &Sim, doc: &str, content: &[u8]) -> String {
    let mut s = WecomJobSeed::new(SN, "zhangsan", doc, content);
    s.push = false;
    sim.seed_wecom_job(s).expect("seeded")
}

#[tokio::test]
async fn tokens_and_their_errors() {
    let sim = sim_with(SimConfig::default()).await;
    let wrong = call(
        &sim,
        "get_model_token",
        json!({"model_id": MODEL, "model_secret": "x", "model_ticket": "ticket-1"}),
    )
    .await;
    assert_eq!(wrong["errcode"], 40001);
    let raw = call(
        &sim,
        "get_model_token",
        json!({"model_id": MODEL, "model_secret": "msecret", "model_ticket": "ticket-1"}),
    )
    .await;
    assert_eq!(raw["expires_in"], 7200, "documented lifetime");
    let mt = model_token(&sim).await;
    let bad = call(
        &sim,
        "get_device_token?model_access_token=nope",
        json!({"device_sn": SN, "device_secret": "dsecret"}),
    )
    .await;
    assert_eq!(bad["errcode"], 40014);

    let code = sim.wecom_auth_code(SN).expect("code");
    let secret = call(
        &sim,
        &format!("get_device_secret?model_access_token={mt}"),
        json!({"auth_code": code}),
    )
    .await;
    assert!(secret.get("errcode").is_none());
    assert_eq!(secret["device_secret"], "dsecret");
    assert!(secret["device_access_token"].is_string());
    let reused = call(
        &sim,
        &format!("get_device_secret?model_access_token={mt}"),
        json!({"auth_code": code}),
    )
    .await;
    assert_eq!(reused["errcode"], 40029, "auth_code is single use");

    let dt = device_token(&sim).await;
    let list = call(
        &sim,
        &format!("device/get_printer_job_list?device_access_token={dt}"),
        json!({"open_userid": "zhangsan"}),
    )
    .await;
    assert_eq!(
        (list["errcode"].clone(), list["errmsg"].clone()),
        (json!(0), json!("ok"))
    );
    sim.expire_wecom_tokens();
    let expired = call(
        &sim,
        &format!("device/get_printer_job_list?device_access_token={dt}"),
        json!({"open_userid": "zhangsan"}),
    )
    .await;
    assert_eq!(expired["errcode"], 42001);
    let missing = call(
        &sim,
        "device/get_printer_job_list",
        json!({"open_userid": "zhangsan"}),
    )
    .await;
    assert_eq!(missing["errcode"], 41001);
}

#[tokio::test]
async fn short_token_ttls_expire() {
    let sim = sim_with(SimConfig {
        wecom_token_ttl: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let mt = model_token(&sim).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let v = call(
        &sim,
        &format!("get_device_token?model_access_token={mt}"),
        json!({"device_sn": SN, "device_secret": "dsecret"}),
    )
    .await;
    assert_eq!(v["errcode"], 42001);
}

#[tokio::test]
async fn four_hundred_fifty_jobs_come_back_in_cursor_pages() {
    let sim = sim_with(SimConfig::default()).await;
    let seeded: Vec<String> = (0..450)
        .map(|i| seed(&sim, &format!("doc{i}.pdf"), b"x"))
        .collect();
    let dt = device_token(&sim).await;
    let path = format!("device/get_printer_job_list?device_access_token={dt}");

    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut body = json!({"open_userid": "zhangsan", "status": 0, "limit": 200});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let v = call(&sim, &path, body).await;
        assert_eq!(v["errcode"], 0);
        let page = v["printer_job_list"].as_array().expect("list").clone();
        pages.push(page.len());
        got.extend(
            page.iter()
                .map(|j| j["jobid"].as_str().unwrap_or_default().to_owned()),
        );
        match v.get("next_cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, vec![200, 200, 50]);
    assert_eq!(got, seeded, "every job once, in submit order");

    let default = call(&sim, &path, json!({"open_userid": "zhangsan"})).await;
    assert_eq!(
        default["printer_job_list"].as_array().map(Vec::len),
        Some(100)
    );
    let capped = call(
        &sim,
        &path,
        json!({"open_userid": "zhangsan", "limit": 500}),
    )
    .await;
    assert_eq!(
        capped["printer_job_list"].as_array().map(Vec::len),
        Some(200)
    );
    let first = &default["printer_job_list"][0];
    for k in [
        "open_userid",
        "createtime",
        "submitted",
        "status",
        "errcode",
        "errmsg",
        "doc_name",
        "doc_size",
        "jobid",
        "setting_list",
    ] {
        assert!(first.get(k).is_some(), "{k}");
    }
    assert_eq!(
        first["setting_list"][0],
        json!({"key": "纸张大小", "value": ["A4"]})
    );
    let no_user = call(&sim, &path, json!({"status": 0})).await;
    assert_eq!(no_user["errcode"], 40058);
}

#[tokio::test]
async fn reports_filters_jobid_list_time_window_and_retention() {
    let sim = sim_with(SimConfig::default()).await;
    let a = seed(&sim, "a.pdf", b"a");
    let b = seed(&sim, "b.pdf", b"b");
    let c = seed(&sim, "c.pdf", b"c");
    let mut old = WecomJobSeed::new(SN, "lisi", "old.pdf", b"o");
    old.createtime = Some(chrono::Utc::now().timestamp() - 8 * 86_400);
    old.push = false;
    let old = sim.seed_wecom_job(old).expect("seeded");
    let dt = device_token(&sim).await;
    let q = |p: &str| format!("device/{p}?device_access_token={dt}");

    assert_eq!(
        call(
            &sim,
            &q("report_printer_job_status"),
            json!({"jobid": a, "status": 2})
        )
        .await["errcode"],
        0
    );
    let no_msg = call(
        &sim,
        &q("report_printer_job_status"),
        json!({"jobid": b, "status": 1}),
    )
    .await;
    assert_eq!(
        no_msg["errcode"], 40058,
        "errcode and errmsg required when failed"
    );
    let failed = call(
        &sim,
        &q("report_printer_job_status"),
        json!({"jobid": b, "status": 1, "errcode": 1, "errmsg": "打印机缺纸"}),
    )
    .await;
    assert_eq!(failed["errcode"], 0);
    assert_eq!(
        sim.wecom_job(&b).map(|j| (j.status, j.errmsg)),
        Some((2, "打印机缺纸".to_owned()))
    );

    let ids = |v: &Value| -> Vec<String> {
        v["printer_job_list"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|j| j["jobid"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let list_path = q("get_printer_job_list");
    let list = |body: Value| call(&sim, &list_path, body);
    assert_eq!(
        ids(&list(json!({"open_userid": "u", "status": 0})).await),
        vec![c.clone()]
    );
    assert_eq!(
        ids(&list(json!({"open_userid": "u", "status": 1})).await),
        vec![a.clone()]
    );
    assert_eq!(
        ids(&list(json!({"open_userid": "u", "status": 2})).await),
        vec![b.clone()]
    );
    assert_eq!(
        ids(&list(json!({"open_userid": "u"})).await),
        vec![a.clone(), b.clone(), c.clone()],
        "old job beyond 7 days is gone"
    );

    // jobid_list overrides status, limit and the time window.
    let by_id = list(json!({"open_userid": "u", "status": 0, "limit": 1, "begin_time": 1, "end_time": 2, "jobid_list": [a, b, old]})).await;
    assert_eq!(ids(&by_id), vec![a.clone(), b.clone()]);
    assert!(by_id.get("next_cursor").is_none());
    let too_many: Vec<String> = (0..201).map(|i| format!("j{i}")).collect();
    assert_eq!(
        list(json!({"open_userid": "u", "jobid_list": too_many})).await["errcode"],
        40058
    );

    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        ids(&list(json!({"open_userid": "u", "begin_time": now - 60, "end_time": now + 60})).await)
            .len(),
        3
    );
    assert!(ids(&list(json!({"open_userid": "u", "begin_time": now + 60})).await).is_empty());
}

#[tokio::test]
async fn an_encrypted_download_decrypts_to_the_original_bytes_and_supports_range() {
    let sim = sim_with(SimConfig {
        wecom_download_ttl: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .await;
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let jobid = seed(&sim, "big.pdf", &content);
    let dt = device_token(&sim).await;
    let v = call(
        &sim,
        &format!("device/get_printer_job_download_url?device_access_token={dt}"),
        json!({"jobid": jobid}),
    )
    .await;
    assert_eq!(v["errcode"], 0);
    let url = v["download_url"].as_str().expect("url").to_owned();
    let aeskey = v["encoding_aeskey"].as_str().expect("key").to_owned();
    assert_eq!(aeskey.len(), 43);

    let cipher = client()
        .get(&url)
        .send()
        .await
        .expect("sent")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(cipher.len() % 32, 0, "PKCS#7 to a multiple of 32 bytes");
    // The documented rule, written out independently of the simulator's helpers.
    let key = base64::engine::general_purpose::STANDARD
        .decode(format!("{aeskey}="))
        .expect("key decodes");
    assert_eq!(key.len(), 32);
    let key: [u8; 32] = key.try_into().expect("32 bytes");
    assert_eq!(crypto::decrypt(&key, &cipher).expect("decrypts"), content);

    let part = client()
        .get(&url)
        .header("Range", "bytes=32-63")
        .send()
        .await
        .expect("sent");
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 32-63/{}", cipher.len()).as_str()
    );
    assert_eq!(part.bytes().await.expect("bytes").as_ref(), &cipher[32..64]);

    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        client()
            .get(&url)
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16(),
        403,
        "URL expired"
    );
    let unknown = call(
        &sim,
        &format!("device/get_printer_job_download_url?device_access_token={dt}"),
        json!({"jobid": "nope"}),
    )
    .await;
    assert_eq!(unknown["errcode"], 40058);
}

#[tokio::test]
async fn pushes_are_signed_and_encrypted_and_carry_a_req_id() {
    let sim = sim_with(SimConfig::default()).await;
    let rx = receiver(vec![]).await;
    let aes = crypto::new_encoding_aes_key();
    sim.set_wecom_push(Some(WecomPushConfig {
        url: rx.url.clone(),
        token: "push-token".into(),
        encoding_aes_key: aes.clone(),
        receive_id: "wwcorp".into(),
    }));
    let jobid = sim
        .seed_wecom_job(WecomJobSeed::new(SN, "zhangsan", "a.pdf", b"hello"))
        .expect("seeded");
    sim.delete_wecom_job(&jobid).expect("deleted");
    let hits = rx.wait_for(2, Duration::from_secs(3)).await;
    assert_eq!(hits.len(), 2);
    let key = crypto::aes_key(&aes).expect("key");
    let mut events = Vec::new();
    for hit in &hits {
        let q: std::collections::HashMap<String, String> = hit
            .query
            .split('&')
            .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        let body: Value = serde_json::from_slice(&hit.body).expect("json");
        assert_eq!(body["tousername"], "wwcorp");
        let encrypt = body["encrypt"].as_str().expect("encrypt");
        assert_eq!(
            q["msg_signature"],
            crypto::msg_signature("push-token", &q["timestamp"], &q["nonce"], encrypt)
        );
        let (msg, receive_id) = crypto::decrypt_message(&key, encrypt).expect("decrypts");
        assert_eq!(receive_id, "wwcorp");
        let msg: Value = serde_json::from_slice(&msg).expect("json message");
        assert!(
            msg["base_info"]["req_id"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );
        assert_eq!(msg["jobid"], jobid.as_str());
        events.push(msg["event"].as_str().unwrap_or_default().to_owned());
    }
    events.sort();
    assert_eq!(events, vec!["printer_job_del", "printer_job_submit"]);
    let dt = device_token(&sim).await;
    let v = call(
        &sim,
        &format!("device/get_printer_job_list?device_access_token={dt}"),
        json!({"open_userid": "zhangsan"}),
    )
    .await;
    assert_eq!(
        v["printer_job_list"],
        json!([]),
        "a deleted job is no longer listed"
    );
}

//! Zhimu conformance: the signed app token, token expiry, shared printers, newPrintTask
//! media combinations and the task status lifecycle.

mod common;

use std::time::Duration;

use common::client;
use serde_json::{Value, json};
use vendor_sim::{Sim, SimConfig, ZhimuAppSpec, ZhimuOutcome, ZhimuShareSpec, zhimu_signature};

// The doc's own example (§3.1.2).
const APPID: &str = "f03e4012f1b7471f8ab9b3e9429ed67b";
const APPKEY: &str = "cdd916a412844758a63672461c85f354";
const SN: &str = "pkDgrqeA";
const PRINTER: &str = "佳能复合机";

async fn sim_with(config: SimConfig) -> Sim {
    let sim = Sim::start(config).await.expect("starts");
    sim.add_zhimu_app(ZhimuAppSpec {
        appid: APPID.into(),
        appkey: APPKEY.into(),
    });
    sim.add_zhimu_share(ZhimuShareSpec::new("830487711", "1930", SN, PRINTER));
    sim
}

async fn post(sim: &Sim, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = client()
        .post(format!("{}{path}", sim.base_url()))
        .json(&body);
    if let Some(t) = token {
        req = req.header("Api-Access-Token", t);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn token(sim: &Sim) -> String {
    let body = json!({
        "appid": APPID,
        "timestamp": "1753366712000",
        "oncestr": "2154214",
        "signature": "aadc59381dc1ff8e55595be6b5707fc871dae6de"
    });
    let (_, v) = post(sim, "/openapi/getToken", None, body).await;
    assert_eq!(v["success"], true, "{v}");
    v["data"]["token"].as_str().expect("token").to_owned()
}

async fn bound(sim: &Sim) -> String {
    let t = token(sim).await;
    let (_, v) = post(
        sim,
        "/openapi/control/addSharePrinter",
        Some(&t),
        json!({"shareTicket": "830487711", "password": "1930"}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    t
}

fn task(source: &str, format: &str, content: &str) -> Value {
    json!({"command": "newPrintTask", "data": {"task": {
        "name": "Task001", "deviceName": PRINTER, "deviceType": "printer", "controlSn": SN,
        "mediaSource": source, "mediaFormat": format, "content": content,
        "javascript": true, "printBackground": null, "headers": null,
        "config": {"color": "COLOR", "side": "ONESIDE", "paperConfig": {"width": 105, "height": 156}}
    }}})
}

#[tokio::test]
async fn the_documented_signature_example_gets_a_token_and_a_wrong_one_is_refused() {
    let sim = sim_with(SimConfig::default()).await;
    assert_eq!(
        zhimu_signature(APPID, "1753366712000", "2154214", APPKEY),
        "aadc59381dc1ff8e55595be6b5707fc871dae6de"
    );
    let body = json!({"appid": APPID, "timestamp": "1753366712000", "oncestr": "2154214",
                      "signature": "aadc59381dc1ff8e55595be6b5707fc871dae6de"});
    let (_, ok) = post(&sim, "/openapi/getToken", None, body).await;
    assert_eq!(ok["success"], true);
    assert_eq!(ok["data"]["expiresIn"], 86_400_000);
    assert!(ok["data"]["token"].as_str().is_some_and(|t| !t.is_empty()));

    let bad = json!({"appid": APPID, "timestamp": "1753366712001", "oncestr": "2154214",
                     "signature": "aadc59381dc1ff8e55595be6b5707fc871dae6de"});
    let (_, refused) = post(&sim, "/openapi/getToken", None, bad).await;
    assert_eq!(refused["success"], false);
    assert!(refused["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn missing_and_expired_tokens_are_rejected() {
    let sim = sim_with(SimConfig {
        zhimu_token_ttl: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let (status, v) = post(&sim, "/openapi/control/queryPrinters", None, json!({})).await;
    assert_eq!((status, v["success"].clone()), (401, json!(false)));
    let t = token(&sim).await;
    let (status, _) = post(&sim, "/openapi/control/queryPrinters", Some(&t), json!({})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, v) = post(&sim, "/openapi/control/queryPrinters", Some(&t), json!({})).await;
    assert_eq!((status, v["success"].clone()), (401, json!(false)));
    let t2 = token(&sim).await;
    sim.expire_zhimu_tokens();
    let (status, _) = post(&sim, "/openapi/control/queryPrinters", Some(&t2), json!({})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn share_bind_query_detail_and_revoke() {
    let sim = sim_with(SimConfig::default()).await;
    let t = token(&sim).await;
    let (_, wrong) = post(
        &sim,
        "/openapi/control/addSharePrinter",
        Some(&t),
        json!({"shareTicket": "830487711", "password": "0000"}),
    )
    .await;
    assert_eq!(wrong["success"], false);
    let (_, added) = post(
        &sim,
        "/openapi/control/addSharePrinter",
        Some(&t),
        json!({"shareTicket": "830487711", "password": "1930"}),
    )
    .await;
    assert_eq!(
        added["data"],
        json!({"sn": SN, "printerName": PRINTER, "deviceType": "printer", "printerAlias": format!("{PRINTER}-{SN}")})
    );
    let (_, list) = post(&sim, "/openapi/control/queryPrinters", Some(&t), json!({})).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    let ident = json!({"printerName": PRINTER, "shareSn": SN, "deviceType": "printer"});
    let (_, detail) = post(
        &sim,
        "/openapi/control/queryPrinterDetail",
        Some(&t),
        ident.clone(),
    )
    .await;
    let caps_text = detail["data"]
        .as_str()
        .expect("capabilities are a JSON string");
    let caps: Value = serde_json::from_str(caps_text).expect("string holds JSON");
    assert_eq!(caps["defaultPaper"]["name"], "A4");
    assert_eq!(
        caps["supportedSides"],
        json!(["ONESIDE", "DUPLEX", "TUMBLE"])
    );
    let (_, revoked) = post(
        &sim,
        "/openapi/control/revokeSharePrinter",
        Some(&t),
        ident.clone(),
    )
    .await;
    assert_eq!(revoked, json!({"success": true}));
    let (_, list) = post(&sim, "/openapi/control/queryPrinters", Some(&t), json!({})).await;
    assert_eq!(list["data"], json!([]));
    let (_, gone) = post(&sim, "/openapi/control/queryPrinterDetail", Some(&t), ident).await;
    assert_eq!(gone["success"], false);
}

#[tokio::test]
async fn every_documented_media_combination_is_accepted_and_others_refused() {
    let sim = sim_with(SimConfig::default()).await;
    let t = bound(&sim).await;
    let combos = [
        ("STRING", "HTML", "<p>hi</p>"),
        ("URL", "HTML", "https://e.com/a.html"),
        ("URL", "PNG", "https://e.com/a.png"),
        ("BASE64", "PNG", "iVBORw0KGgo="),
        ("URL", "JPG", "https://e.com/a.jpg"),
        ("BASE64", "JPG", "/9j/4AAQ"),
        ("URL", "BMP", "https://e.com/a.bmp"),
        ("BASE64", "BMP", "Qk0="),
        ("URL", "WORD", "https://e.com/a.docx"),
        ("BASE64", "WORD", "UEsDBA=="),
        ("URL", "EXCEL", "https://e.com/a.xlsx"),
        ("BASE64", "EXCEL", "UEsDBA=="),
        ("URL", "PPT", "https://e.com/a.pptx"),
        ("BASE64", "PPT", "UEsDBA=="),
        ("STRING", "TEXT", "hello"),
    ];
    for (source, format, content) in combos {
        let (_, v) = post(&sim, "/openapi", Some(&t), task(source, format, content)).await;
        assert_eq!(v["success"], true, "{format}+{source}: {v}");
        assert!(
            v["data"]["taskId"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("{SN}-")))
        );
    }
    for (source, format, content) in [
        ("URL", "PDF", "https://e.com/a.pdf"),
        ("STRING", "PNG", "abc"),
        ("BASE64", "TEXT", "aGk="),
        ("BASE64", "PNG", "not base64!"),
    ] {
        let (_, v) = post(&sim, "/openapi", Some(&t), task(source, format, content)).await;
        assert_eq!(v["success"], false, "{format}+{source} must be refused");
    }
    let mut other = task("URL", "PNG", "https://e.com/a.png");
    other["command"] = json!("deleteTask");
    assert_eq!(
        post(&sim, "/openapi", Some(&t), other).await.1["success"],
        false
    );
}

async fn wait_status(sim: &Sim, t: &str, id: &str) -> Value {
    for _ in 0..500 {
        let (_, v) = post(
            sim,
            "/openapi/task/get",
            Some(t),
            json!({"taskId": id, "controlSn": SN}),
        )
        .await;
        if ["FINISHED", "ERROR", "CANCELED"]
            .contains(&v["data"]["taskStatus"].as_str().unwrap_or_default())
        {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("task {id} never ended");
}

#[tokio::test]
async fn tasks_go_submitted_to_finished_error_or_canceled() {
    // Stages slow enough that a cancel right after submit lands before PRINTING ends.
    let sim = sim_with(SimConfig {
        zhimu_stage_delay: Duration::from_millis(40),
        ..SimConfig::default()
    })
    .await;
    let t = bound(&sim).await;
    sim.script_zhimu_outcomes(
        SN,
        PRINTER,
        vec![
            ZhimuOutcome::Finished,
            ZhimuOutcome::Error {
                detail: "PAPER_EMPTY".into(),
            },
        ],
    );
    let submit = |sim: &Sim| {
        let t = t.clone();
        let base = sim.base_url();
        async move {
            let v: Value = client()
                .post(format!("{base}/openapi"))
                .header("Api-Access-Token", t)
                .json(&task("URL", "PNG", "https://e.com/a.png"))
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            v["data"]["taskId"].as_str().expect("taskId").to_owned()
        }
    };
    let first = submit(&sim).await;
    let (_, early) = post(
        &sim,
        "/openapi/task/get",
        Some(&t),
        json!({"taskId": first, "controlSn": SN}),
    )
    .await;
    assert!(
        ["SUBMITTED", "QUEUED", "PRINTING", "FINISHED"]
            .contains(&early["data"]["taskStatus"].as_str().unwrap_or_default())
    );
    let done = wait_status(&sim, &t, &first).await;
    let d = &done["data"];
    assert_eq!(d["taskStatus"], "FINISHED");
    assert_eq!(d["taskName"], "Task001");
    assert_eq!(d["mediaSource"], "URL");
    assert_eq!(d["mediaFormat"], "PNG");
    assert_eq!(d["taskType"], "PRINT");
    assert_eq!(d["unimsn"], SN);
    assert_eq!(d["config"]["paperConfig"]["width"], 105.0);
    assert_eq!(d["config"]["color"], "COLOR");
    assert!(d["config"].get("watermark").is_some());

    let second = submit(&sim).await;
    let err = wait_status(&sim, &t, &second).await;
    assert_eq!(err["data"]["taskStatus"], "ERROR");

    sim.set_zhimu_online(SN, PRINTER, false);
    let (_, offline) = post(
        &sim,
        "/openapi",
        Some(&t),
        task("URL", "PNG", "https://e.com/a.png"),
    )
    .await;
    assert_eq!(offline["success"], false);
    sim.set_zhimu_online(SN, PRINTER, true);
    let third = submit(&sim).await;
    assert!(sim.cancel_zhimu_task(&third));
    assert_eq!(
        wait_status(&sim, &t, &third).await["data"]["taskStatus"],
        "CANCELED"
    );

    let (_, unknown) = post(
        &sim,
        "/openapi/task/get",
        Some(&t),
        json!({"taskId": "nope", "controlSn": SN}),
    )
    .await;
    assert_eq!(unknown["success"], false);
}

#[tokio::test]
async fn tasks_record_the_digest_of_their_content_and_are_listed() {
    let sim = sim_with(SimConfig::default()).await;
    let t = bound(&sim).await;
    let mut ids = Vec::new();
    for text in ["first document", "second document"] {
        let (_, v) = post(&sim, "/openapi", Some(&t), task("STRING", "TEXT", text)).await;
        assert_eq!(v["success"], true, "{v}");
        ids.push(v["data"]["taskId"].as_str().expect("taskId").to_owned());
    }
    let listed = sim.zhimu_tasks();
    assert_eq!(
        listed.iter().map(|t| t.task_id.clone()).collect::<Vec<_>>(),
        ids
    );
    let digest = |s: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()));
    assert_eq!(listed[0].content_sha256, digest("first document"));
    assert_eq!(listed[1].content_sha256, digest("second document"));
    let over_http: Value = reqwest::get(format!("{}/_sim/zhimu/tasks", sim.base_url()))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(over_http.as_array().map(Vec::len), Some(2));
    assert_eq!(
        over_http[1]["content_sha256"],
        json!(digest("second document"))
    );
}

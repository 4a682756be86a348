//! Issue 18: hostile input costs nothing. Scope before schema on every route, webhook bodies
//! read only after authentication and only up to their route's limit, slow clients
//! disconnected, caller fields bounded (and the bounds in the served schema). Real HTTP (raw
//! TCP where the byte count matters), real Postgres.

use crate::common;

use std::time::Duration;

use common::scripted::ScriptedBackend;
use common::{TestApp, assert_problem, spawn_app_with};
use print_gateway::app::Role;
use print_gateway::backends::BackendRegistry;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vendor_sim::wecom::crypto as sim_crypto;

const TEN_MB: usize = 10 * 1024 * 1024;
const LIANKE_LIMIT: usize = 8 * 1024;
const WECOM_LIMIT: usize = 64 * 1024;
/// A guard against a hung test, not a timing assertion.
const GUARD: Duration = Duration::from_secs(30);

async fn app_with(tweak: impl FnOnce(&mut print_gateway::config::Config)) -> TestApp {
    let registry = BackendRegistry::new().with(ScriptedBackend::named("scripted"));
    spawn_app_with(registry, Role::Api, |c| {
        c.wecom.wecom_callback_token = Some(SecretString::from("push-token"));
        c.wecom.wecom_callback_aes_key =
            Some(SecretString::from(sim_crypto::new_encoding_aes_key()));
        tweak(c);
    })
    .await
}

fn host_port(app: &TestApp) -> String {
    app.base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Sends `head` (and then `body`, if any) on a fresh connection and returns the answer's
/// status and body. The body bytes are the most the server can have read.
async fn raw_request(app: &TestApp, head: &str, body: Option<&[u8]>) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(host_port(app)).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write head");
        if let Some(body) = body {
            stream.write_all(body).await.expect("write body");
        }
        stream.flush().await.expect("flush");
        // The answer; the server closes the connection after it (its body was not read).
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = find(&answer, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if answer.len() >= end + 4 + length {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    };
    tokio::time::timeout(GUARD, exchange)
        .await
        .expect("the server answered")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn post_head(path: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n{extra}\r\n"
    )
}

/// One chunk of `n` bytes of a chunked body, the body left unfinished.
fn one_chunk(n: usize) -> Vec<u8> {
    let mut chunk = format!("{n:x}\r\n").into_bytes();
    chunk.extend(std::iter::repeat_n(b'x', n));
    chunk.extend_from_slice(b"\r\n");
    chunk
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_lianke_callback_body_is_read_only_after_its_token_and_only_up_to_8_kib() {
    let app = app_with(|_| {}).await;
    let job = uuid::Uuid::now_v7();
    let length = format!("Content-Length: {TEN_MB}\r\n");
    // No token, a wrong token: refused before a single body byte was sent.
    for query in ["", "?token=deadbeef"] {
        let (status, body) = raw_request(
            &app,
            &post_head(&format!("/webhooks/lianke/{job}{query}"), &length),
            None,
        )
        .await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(code_of(&body), "unauthorized");
    }
    // The job's own token: a declared 10 MB is refused unread…
    let token = app
        .app
        .as_ref()
        .expect("running")
        .engine()
        .callback_keys()
        .sign(job);
    let path = format!("/webhooks/lianke/{job}?token={token}");
    let (status, body) = raw_request(&app, &post_head(&path, &length), None).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(code_of(&body), "payload_too_large");
    // …and an undeclared (chunked) one as soon as it passes the limit: one byte over it was
    // all that was sent.
    let (status, body) = raw_request(
        &app,
        &post_head(&path, "Transfer-Encoding: chunked\r\n"),
        Some(&one_chunk(LIANKE_LIMIT + 1)),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    // Within the limit the body is read (and this job is unknown).
    let response = app
        .client
        .post(app.url(&path))
        .json(&json!({"device_id": "d", "task_id": "t", "task_state": "SUCCESS"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "unknown_job").await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_wecom_push_body_is_read_only_with_its_signature_and_only_up_to_64_kib() {
    let app = app_with(|_| {}).await;
    let length = format!("Content-Length: {TEN_MB}\r\n");
    let (status, body) = raw_request(&app, &post_head("/webhooks/wecom", &length), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code_of(&body), "invalid_signature");
    let signed = "/webhooks/wecom?msg_signature=abc&timestamp=1&nonce=n";
    let (status, body) = raw_request(&app, &post_head(signed, &length), None).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = raw_request(
        &app,
        &post_head(signed, "Transfer-Encoding: chunked\r\n"),
        Some(&one_chunk(WECOM_LIMIT + 1)),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    // Within the limit the body is read and its signature checked.
    let response = app
        .client
        .post(app.url(signed))
        .json(&json!({"tousername": "m", "encrypt": "abc"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_signature").await;
    app.shutdown().await;
}

/// Every route behind a key answers a key without the route's scope 403, whatever is wrong
/// with its path, query or body: the schema is not revealed to it.
#[tokio::test]
async fn every_scoped_route_answers_403_before_validating_the_request() {
    let app = app_with(|_| {}).await;
    let no_scopes = app.key_for("acme", &[]).await;
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if !secured || path == "/v1/whoami" {
                continue;
            }
            // Malformed path parameters, query and body.
            let url = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let url = app.url(&format!(
                "{url}?limit=many&verify=perhaps&cursor=%%&device_type="
            ));
            let request = match method.as_str() {
                "get" => app.client.get(&url),
                "post" => app.client.post(&url),
                "patch" => app.client.patch(&url),
                "put" => app.client.put(&url),
                "delete" => app.client.delete(&url),
                other => panic!("method {other}"),
            };
            let response = request
                .bearer_auth(&no_scopes)
                .header("content-type", "application/json")
                .body("{\"printer_id\": [")
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or_default();
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body:#}");
            assert_eq!(body["code"], "forbidden", "{method} {path}");
            checked.push(format!("{method} {path}"));
        }
    }
    assert!(checked.len() >= 30, "{checked:?}");
    assert!(checked.contains(&"post /v1/printers".to_owned()));
    assert!(checked.contains(&"patch /v1/printers/{id}".to_owned()));
    app.shutdown().await;
}

#[tokio::test]
async fn a_half_sent_request_line_is_closed_after_the_header_timeout() {
    let app = app_with(|c| c.header_read_timeout_ms = 200).await;
    let closed = async {
        let mut stream = TcpStream::connect(host_port(&app)).await.expect("connect");
        stream.write_all(b"GET /heal").await.expect("write");
        let mut rest = Vec::new();
        // Returns once the server closes the connection.
        let _ = stream.read_to_end(&mut rest).await;
        rest
    };
    let rest = tokio::time::timeout(GUARD, closed)
        .await
        .expect("the server closed the slow connection");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // Whole requests are still served.
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test]
async fn caller_fields_are_bounded_and_quoted_only_truncated() {
    let app = app_with(|_| {}).await;
    app.create_printer("office", "scripted").await;
    let wrapper = r#"{"a":""}"#.len();
    let at_limit = "x".repeat(16 * 1024 - wrapper);
    let accepted = app
        .post(
            "/v1/jobs",
            &json!({"printer_id": "office", "document": {"text": "hi"}, "metadata": {"a": at_limit}}),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let over = "x".repeat(16 * 1024 + 1 - wrapper);
    let refused = app
        .post(
            "/v1/jobs",
            &json!({"printer_id": "office", "document": {"text": "hi"}, "metadata": {"a": over}}),
        )
        .await;
    let problem = assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(problem["detail"].as_str().unwrap().contains("metadata"));
    let mut deep = json!("leaf");
    for _ in 0..20 {
        deep = json!({ "d": deep });
    }
    let refused = app
        .post(
            "/v1/jobs",
            &json!({"printer_id": "office", "document": {"text": "hi"}, "metadata": deep}),
        )
        .await;
    assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    let long_id = "p".repeat(10_000);
    let refused = app
        .post(
            "/v1/jobs",
            &json!({"printer_id": long_id, "document": {"text": "hi"}}),
        )
        .await;
    let problem = assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(problem["detail"].as_str().unwrap().len() < 300, "{problem}");
    let missing = app.get(&format!("/v1/printers/{long_id}")).await;
    let problem = assert_problem(missing, StatusCode::NOT_FOUND, "not_found").await;
    assert!(problem["detail"].as_str().unwrap().len() < 300, "{problem}");
    let zero = app
        .post(
            "/v1/jobs",
            &json!({"printer_id": "office", "document": {"text": "hi"}, "options": {"copies": 0}}),
        )
        .await;
    assert_eq!(zero.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The bounds are in the served schema.
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &spec["components"]["schemas"];
    assert_eq!(
        schemas["CreateJob"]["properties"]["printer_id"]["maxLength"],
        64
    );
    assert_eq!(
        schemas["CreateJob"]["properties"]["metadata"]["maxProperties"],
        64
    );
    assert_eq!(schemas["JobOptions"]["properties"]["copies"]["minimum"], 1);
    assert_eq!(
        schemas["CreatePrinter"]["properties"]["id"]["maxLength"],
        64
    );
    app.shutdown().await;
}

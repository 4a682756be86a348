//! Printers owned by tenants (and shared), API keys over HTTP (name, expiry, last use),
//! whoami, per-key rate limits and the `Idempotent-Replayed` header.

use crate::common;

use std::time::Duration;

use common::scripted::ScriptedBackend;
use common::{TestApp, assert_problem, spawn_app, spawn_app_with};
use print_gateway::app::Role;
use print_gateway::backends::BackendRegistry;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn app() -> TestApp {
    spawn_app(BackendRegistry::new().with(ScriptedBackend::new())).await
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    key: &str,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn another_tenants_printer_is_404_until_shared_and_only_its_owner_changes_it() {
    let app = app().await;
    // `acme` (the harness key) owns `office`.
    let created = app.create_printer("office", "scripted").await;
    assert_eq!(created["owner_tenant"], "acme");
    let globex = app
        .key_for("globex", &["jobs:write", "jobs:read", "printers:admin"])
        .await;
    use reqwest::Method;

    // Unshared: globex cannot see, change, delete, use or print on it.
    for (method, path, body) in [
        (Method::GET, "/v1/printers/office", None),
        (Method::GET, "/v1/printers/office/capabilities", None),
        (Method::GET, "/v1/printers/office/status", None),
        (
            Method::PATCH,
            "/v1/printers/office",
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, "/v1/printers/office", None),
        (Method::POST, "/v1/printers/office/flush-queue", None),
    ] {
        let response = send(&app, method.clone(), &globex, path, body).await;
        assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let listed: Value = app
        .get_as(&globex, "/v1/printers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]));
    let job = json!({"printer_id": "office", "document": {"text": "hi"}});
    let refused = app.post_as(&globex, "/v1/jobs", &job).await;
    assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "unknown_printer").await;
    // Its id stays taken, without saying by whom.
    let taken = app
        .post_as(
            &globex,
            "/v1/printers",
            &json!({"id": "office", "backend": "scripted", "locator": {"device": "x"}}),
        )
        .await;
    assert_problem(taken, StatusCode::CONFLICT, "printer_exists").await;

    // Shared with globex: it can see it and print on it, but not change it.
    let shared: Value = app
        .patch(
            "/v1/printers/office",
            &json!({"shared_with": ["globex", "globex", " initech "]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shared["shared_with"], json!(["globex", "initech"]));
    let seen: Value = app
        .get_as(&globex, "/v1/printers/office")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["owner_tenant"], "acme");
    assert!(
        seen.get("shared_with").is_none(),
        "only the owner sees the share list: {seen:#}"
    );
    let listed: Value = app
        .get_as(&globex, "/v1/printers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], "office");
    let accepted = app.post_as(&globex, "/v1/jobs", &job).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["printer_id"], "office");
    let patch = send(
        &app,
        Method::PATCH,
        &globex,
        "/v1/printers/office",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_problem(patch, StatusCode::FORBIDDEN, "not_printer_owner").await;
    // The job is globex's, not acme's.
    let acme_view = app
        .get(&format!("/v1/jobs/{}", accepted["id"].as_str().unwrap()))
        .await;
    assert_eq!(acme_view.status(), StatusCode::NOT_FOUND);

    // Unshared again: globex is out.
    app.patch("/v1/printers/office", &json!({"shared_with": []}))
        .await;
    let refused = app.post_as(&globex, "/v1/jobs", &job).await;
    assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "unknown_printer").await;

    // globex registers its own printer; acme does not see it.
    let own = app
        .post_as(
            &globex,
            "/v1/printers",
            &json!({"id": "globex-hq", "backend": "scripted", "locator": {"device": "g"}}),
        )
        .await;
    assert_eq!(own.status(), StatusCode::CREATED);
    let acme_list: Value = app.get("/v1/printers").await.json().await.unwrap();
    let ids: Vec<&str> = acme_list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["office"]);
}

#[tokio::test]
async fn admin_keys_manage_keys_over_http_and_the_secret_is_shown_once() {
    let app = app().await;
    let admin = app.key_for("ops", &["admin"]).await;
    // Not an admin: 403.
    let denied = app.get("/v1/api-keys").await;
    assert_problem(denied, StatusCode::FORBIDDEN, "forbidden").await;

    let created = app
        .post_as(
            &admin,
            "/v1/api-keys",
            &json!({"tenant": "billing", "name": "billing-app", "scopes": ["jobs:read"],
                    "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "active");
    assert_eq!(created["last_used_at"], Value::Null);

    // whoami tells the new key who it is.
    let me: Value = app.get_as(&key, "/v1/whoami").await.json().await.unwrap();
    assert_eq!(me["tenant"], "billing");
    assert_eq!(me["key_name"], "billing-app");
    assert_eq!(me["scopes"], json!(["jobs:read"]));
    assert_eq!(me["key_id"], id.as_str());
    assert_eq!(me["expires_at"], "2099-01-01T00:00:00Z");

    // The list shows it with its last use, never a secret.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let listed: Value = app
            .get_as(&admin, "/v1/api-keys?tenant=billing")
            .await
            .json()
            .await
            .unwrap();
        if !listed["items"][0]["last_used_at"].is_null() {
            break listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last use never recorded: {listed:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["name"], "billing-app");
    assert!(!listed.to_string().contains(&key));
    assert!(listed["items"][0].get("key").is_none());

    // Bad input names the field.
    for (body, word) in [
        (json!({"name": "x", "scopes": ["root"]}), "root"),
        (json!({"name": "", "scopes": ["jobs:read"]}), "name"),
        (
            json!({"name": "x", "scopes": ["jobs:read"], "expires_at": "2000-01-01T00:00:00Z"}),
            "expires_at",
        ),
    ] {
        let problem = assert_problem(
            app.post_as(&admin, "/v1/api-keys", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains(word),
            "{problem:#}"
        );
    }

    // Revoked: 401 at once; revoking again is 404.
    let revoked = send(
        &app,
        reqwest::Method::DELETE,
        &admin,
        &format!("/v1/api-keys/{id}"),
        None,
    )
    .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let gone = app.get_as(&key, "/v1/whoami").await;
    assert_problem(gone, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let again = send(
        &app,
        reqwest::Method::DELETE,
        &admin,
        &format!("/v1/api-keys/{id}"),
        None,
    )
    .await;
    assert_problem(again, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_expired_key_is_401_with_a_sentence_saying_so() {
    let app = app().await;
    let key = app.key_for("acme", &["jobs:read"]).await;
    assert_eq!(
        app.get_as(&key, "/v1/whoami").await.status(),
        StatusCode::OK
    );
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE key_hash = $1")
        .bind(print_gateway::store::api_keys::hash_key(&key))
        .execute(&app.pool)
        .await
        .unwrap();
    // The new expiry reaches the (300 s) key cache through NOTIFY, in milliseconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        let response = app.get_as(&key, "/v1/jobs").await;
        if response.status() == StatusCode::UNAUTHORIZED || std::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let problem = assert_problem(refused, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("expired at"),
        "{problem:#}"
    );
}

#[tokio::test]
async fn a_burst_over_the_limit_is_429_with_retry_after_and_other_keys_go_on() {
    let app = spawn_app_with(
        BackendRegistry::new().with(ScriptedBackend::new()),
        Role::Api,
        |c| {
            c.rate_limit_rps = 1;
            c.rate_limit_burst = 3;
        },
    )
    .await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let response = app.get("/v1/whoami").await;
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
        assert_eq!(response.headers()["ratelimit-limit"], "3");
    }
    // The burst of 3 passes (a refill during the loop may let one more through).
    assert!(
        statuses.len() >= 4 && statuses[..3].iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let limited = limited.expect("a 429 within 6 requests at 1 rps, burst 3");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    assert_eq!(limited.headers()["ratelimit-limit"], "3");
    assert!(limited.headers().contains_key("ratelimit-reset"));
    assert_problem(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Per key: another key still has its whole burst; calls without a key are not limited.
    let other = app.key_for("acme", &["jobs:read"]).await;
    assert_eq!(
        app.get_as(&other, "/v1/whoami").await.status(),
        StatusCode::OK
    );
    for _ in 0..5 {
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_replay_says_it_is_one() {
    let app = app().await;
    app.create_printer("office", "scripted").await;
    let post = || {
        app.client
            .post(app.url("/v1/jobs"))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "invoice-77")
            .json(&json!({"printer_id": "office", "document": {"text": "hi"}}))
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let replay = post().await.unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);
}

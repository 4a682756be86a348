//! The command line as a person meets it: pipes, `--help`, host names, start-up waits.

use crate::common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_print-gateway");

fn help(args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run print-gateway --help");
    assert!(output.status.success(), "{args:?} --help failed");
    String::from_utf8(output.stdout).expect("utf-8 help")
}

#[test]
fn a_closed_pipe_ends_openapi_quietly() {
    let mut child = Command::new(BIN)
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start print-gateway openapi");
    // `| head -c 10`: read a little, then close the pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).expect("the spec starts");
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    assert_eq!(&first[..1], b"{");
    assert!(status.success(), "exit status {status}, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.is_empty(),
        "nothing to say about a closed pipe: {stderr}"
    );
}

#[test]
fn each_command_shows_only_its_own_options() {
    let serve = help(&["serve"]);
    assert!(serve.contains("LIANKE_API_KEY") && serve.contains("--role"));
    assert!(serve.contains("DB_WAIT_MAX_SECS"));
    let demo = help(&["demo"]);
    assert!(demo.contains("--simulator-url") && demo.contains("BIND_ADDR"));
    for command in [
        &["migrate"][..],
        &["api-keys", "create"],
        &["api-keys", "list"],
        &["openapi"],
    ] {
        let text = help(command);
        for server_only in ["LIANKE_API_KEY", "WORKER_CONCURRENCY", "BIND_ADDR"] {
            assert!(
                !text.contains(server_only),
                "{command:?} --help shows {server_only}:\n{text}"
            );
        }
        assert!(text.lines().count() < 30, "{command:?} --help:\n{text}");
    }
    assert!(help(&["api-keys", "create"]).contains("--tenant"));
    assert!(help(&["migrate"]).contains("DATABASE_URL"));
}

#[test]
fn bind_addr_takes_a_host_name_and_a_bad_one_is_named() {
    // A bad value is refused by the parser with the variable named, before anything runs.
    let output = Command::new(BIN)
        .args(["serve"])
        .env_clear()
        .env("BIND_ADDR", "localhost")
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("BIND_ADDR") && stderr.contains("HOST:PORT"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_waits_for_postgres_and_starts_when_it_comes() {
    // A port where nothing listens yet.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let (database_url, _pool) = common::fresh_database().await;
    let real: url_parts::Target = url_parts::target(&database_url);
    let waiting_url = database_url.replacen(&real.host_port, &format!("127.0.0.1:{port}"), 1);
    let mut config = common::test_config(&waiting_url);
    config.db_wait_max_secs = 120;
    let (tx, mut retries) = tokio::sync::mpsc::unbounded_channel();
    let connecting = tokio::spawn(async move {
        print_gateway::store::connect_waiting(
            secrecy::ExposeSecret::expose_secret(&config.database_url),
            2,
            Duration::from_secs(10),
            Duration::from_secs(config.db_wait_max_secs),
            |notice| {
                let _ = tx.send((notice.attempt, notice.next_try_in));
            },
        )
        .await
    });
    // It fails at least once (nothing listens)…
    let (attempt, delay) = retries.recv().await.expect("a retry notice");
    assert_eq!(attempt, 1);
    assert!(delay > Duration::ZERO);
    // …then Postgres "comes up" on that port: a forwarder to the real server.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the port");
    let upstream = real.host_port.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let pool = tokio::time::timeout(Duration::from_secs(60), connecting)
        .await
        .expect("connected within a minute")
        .expect("task")
        .expect("connected once Postgres answered");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .expect("query");
    assert_eq!(one, 1);
}

#[tokio::test]
async fn a_wrong_password_is_not_waited_for_and_the_ceiling_holds() {
    // Nothing listens and no wait allowed: one try, a clear error.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let mut retried = 0;
    let result = print_gateway::store::connect_waiting(
        &format!("postgres://postgres@127.0.0.1:{port}/x"),
        1,
        Duration::from_secs(1),
        Duration::ZERO,
        |_| retried += 1,
    )
    .await;
    assert!(result.is_err());
    assert_eq!(retried, 0);
    // The migrate command gives up after DB_WAIT_MAX_SECS with the URL named.
    let output = tokio::process::Command::new(BIN)
        .arg("migrate")
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("postgres://postgres:hunter2@127.0.0.1:{port}/x"),
        )
        .env("DB_WAIT_MAX_SECS", "1")
        .output()
        .await
        .expect("run migrate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("retrying"), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

mod url_parts {
    pub struct Target {
        pub host_port: String,
    }

    /// The `host:port` of a postgres URL (the tests' server).
    pub fn target(url: &str) -> Target {
        let parsed = reqwest::Url::parse(url).expect("a URL");
        Target {
            host_port: format!(
                "{}:{}",
                parsed.host_str().expect("host"),
                parsed.port().unwrap_or(5432)
            ),
        }
    }
}

/// `api-keys create` prints the key alone on stdout (scripts capture it with `$(...)`), and
/// that key works at once, for its tenant and scopes.
#[tokio::test]
async fn api_keys_create_prints_the_key_alone_and_it_works() {
    let app = common::spawn_app(print_gateway::backends::BackendRegistry::new()).await;
    let output = tokio::process::Command::new(BIN)
        .args([
            "api-keys",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "jobs:read,jobs:write",
        ])
        .args(["--name", "nightly-export"])
        .env_clear()
        .env("DATABASE_URL", &app.database_url)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run api-keys create");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    assert!(stdout.ends_with('\n'));
    let key = stdout.trim_end_matches('\n');
    assert!(
        !key.is_empty() && !key.contains(char::is_whitespace),
        "{key:?}"
    );

    let whoami = app.get_as(key, "/v1/whoami").await;
    assert_eq!(whoami.status(), reqwest::StatusCode::OK);
    let whoami: serde_json::Value = whoami.json().await.unwrap();
    assert_eq!(whoami["tenant"], "acme");
    assert_eq!(whoami["key_name"], "nightly-export", "{whoami}");
    assert_eq!(
        whoami["scopes"],
        serde_json::json!(["jobs:read", "jobs:write"])
    );
}

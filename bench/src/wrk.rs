//! Runs `wrk` with a generated Lua script whose `done` hook prints one JSON line.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// One wrk run's summary.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_us: u64,
    /// Non-2xx/3xx answers.
    pub errors_status: u64,
    pub errors_socket: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub mean_us: f64,
}

impl WrkResult {
    /// Successful (2xx/3xx) answers per second.
    pub fn ok_per_sec(&self) -> f64 {
        let ok = self
            .requests
            .saturating_sub(self.errors_status + self.errors_socket);
        ok as f64 / (self.duration_us as f64 / 1e6)
    }
    pub fn p50_ms(&self) -> f64 {
        self.p50_us as f64 / 1000.0
    }
    pub fn p99_ms(&self) -> f64 {
        self.p99_us as f64 / 1000.0
    }
}

const DONE: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%d,"errors_status":%d,"errors_socket":%d,"p50_us":%d,"p99_us":%d,"mean_us":%f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"#;

/// Lua string literal.
fn lua_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One request of a script: method, path, headers, body.
pub type ScriptReq = (String, String, Vec<(String, String)>, Option<String>);

/// A script sending `requests` in turn.
pub fn script(requests: &[ScriptReq]) -> String {
    let mut lua = String::from("local reqs = {}\ninit = function(args)\n");
    for (method, path, headers, body) in requests {
        let headers: Vec<String> = headers
            .iter()
            .map(|(k, v)| format!("[{}] = {}", lua_str(k), lua_str(v)))
            .collect();
        let body = body.as_deref().map(lua_str).unwrap_or_else(|| "nil".into());
        lua.push_str(&format!(
            "  table.insert(reqs, wrk.format({}, {}, {{{}}}, {}))\n",
            lua_str(method),
            lua_str(path),
            headers.join(", "),
            body
        ));
    }
    lua.push_str(
        "end\nlocal i = 0\nrequest = function()\n  i = i + 1\n  if i > #reqs then i = 1 end\n  return reqs[i]\nend\n",
    );
    lua.push_str(DONE);
    lua
}

/// Runs wrk against `base_url` with `connections` connections for `duration`.
pub fn run(
    work_dir: &Path,
    name: &str,
    base_url: &str,
    lua: &str,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    let script_path = work_dir.join(format!("{name}.lua"));
    std::fs::write(&script_path, lua)?;
    let threads = connections.clamp(1, 2);
    let output = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&script_path)
        .arg(base_url)
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    std::fs::write(work_dir.join(format!("{name}.wrk.txt")), stdout.as_bytes())?;
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("BENCHJSON ")) else {
        bail!(
            "wrk printed no summary for {name}: {}\n{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    Ok(serde_json::from_str(line)?)
}

//! The processes under test: a throwaway PostgreSQL cluster of our own (so stopping it never
//! touches a shared server), the vendor simulator and gateway replicas.

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::time::{Instant, sleep};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The newest installed server's binaries.
fn pg_bin() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .max_by_key(|p| {
            // Numeric order: 9 < 15.
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        })
}

/// A PostgreSQL cluster in `dir`, listening on 127.0.0.1:`port` only.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    /// Stops a cluster an interrupted run left running in `dir`, if any.
    pub fn stop_stale(dir: &Path) {
        if !dir.join("postmaster.pid").exists() {
            return;
        }
        let Some(bin) = pg_bin() else { return };
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
            c
        } else {
            Command::new(bin.join("pg_ctl"))
        };
        let _ = cmd
            .arg("-D")
            .arg(dir)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    /// `initdb` a fresh cluster in `dir` (anything there is removed first) and start it.
    pub fn create(dir: &Path, port: u16) -> Result<Postgres> {
        let bin = pg_bin().context(
            "PostgreSQL server binaries are needed: no /usr/lib/postgresql/*/bin/pg_ctl",
        )?;
        let as_postgres = is_root();
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir)?;
        let pg = Postgres {
            bin,
            data: dir.to_path_buf(),
            port,
            as_postgres,
        };
        if as_postgres {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            if !Command::new("id")
                .arg("postgres")
                .output()?
                .status
                .success()
            {
                pg.run(
                    Command::new("useradd").args(["--system", "--shell", "/bin/sh", "postgres"]),
                )?;
            }
            pg.run(Command::new("chown").arg("postgres").arg(dir))?;
        }
        let initdb = pg.bin.join("initdb");
        pg.run(pg.as_owner(&initdb).args(["-D"]).arg(&pg.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        ]))?;
        pg.start()?;
        Ok(pg)
    }

    fn as_owner(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run(&self, cmd: &mut Command) -> Result<()> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {cmd:?}"))?;
        if !out.status.success() {
            bail!(
                "{cmd:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let options = format!(
            "-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port
        );
        let log = self.data.join("server.log");
        self.run(
            self.as_owner(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options])
                .args(args),
        )
    }

    pub fn start(&self) -> Result<()> {
        self.pg_ctl(&["start"])
    }

    /// Fast shutdown: open connections are cut, as in a crash or failover.
    pub fn stop(&self) -> Result<()> {
        self.pg_ctl(&["-m", "fast", "stop"])
    }

    pub fn restart(&self) -> Result<()> {
        self.pg_ctl(&["-m", "fast", "restart"])
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

/// The vendor simulator, as its own process.
pub struct Simulator {
    child: Child,
    pub url: String,
}

impl Simulator {
    pub async fn start(bin: &Path, log: &Path, fault_seed: u64, stage_ms: u64) -> Result<Self> {
        let stage = stage_ms.to_string();
        let mut child = tokio::process::Command::new(bin)
            .args(["--bind", "127.0.0.1:0", "--allow-http-callbacks"])
            .args(["--lianke-stage-ms", &stage, "--zhimu-stage-ms", &stage])
            .args(["--callback-time-scale", "0.1"])
            .args(["--fault-seed", &fault_seed.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(log)?))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("VENDOR_SIM_URL=") {
                    return Some(url.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .context("the simulator did not print VENDOR_SIM_URL")?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Simulator { child, url })
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// One gateway replica (`print-gateway serve`) on a fixed address, restartable.
pub struct Gateway {
    pub name: String,
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    pub addr: SocketAddr,
    child: Option<Child>,
    pub starts: u32,
}

impl Gateway {
    pub fn new(
        name: &str,
        bin: &Path,
        env: Vec<(String, String)>,
        log: PathBuf,
        addr: SocketAddr,
    ) -> Gateway {
        Gateway {
            name: name.to_owned(),
            bin: bin.to_path_buf(),
            env,
            log,
            addr,
            child: None,
            starts: 0,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The settings, for another replica of the same deployment.
    pub fn env_for_copy(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    /// Starts `serve` (output appended to the replica's log).
    pub fn spawn(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = tokio::process::Command::new(&self.bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BIND_ADDR", self.addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until `/healthz` answers 200, or fails after `limit` (or when the process
    /// exits).
    pub async fn wait_healthy(&mut self, http: &reqwest::Client, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let url = format!("{}/healthz", self.base_url());
        loop {
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if !self.running() {
                bail!(
                    "gateway {} exited before it served (see {})",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!("gateway {} not healthy after {limit:?}", self.name);
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, no warning.
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGTERM, then waits up to `limit` for the exit; returns how long it took and the
    /// exit status (SIGKILL after `limit`).
    pub async fn terminate(&mut self, limit: Duration) -> Option<(Duration, String)> {
        let mut c = self.child.take()?;
        let pid = c.id()?;
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        match tokio::time::timeout(limit, c.wait()).await {
            Ok(Ok(status)) => Some((started.elapsed(), status.to_string())),
            _ => {
                let _ = c.kill().await;
                Some((
                    started.elapsed(),
                    "killed after the SIGTERM limit".to_owned(),
                ))
            }
        }
    }
}

/// Runs a gateway command to completion (`migrate`, `api-keys create`); returns stdout.
pub fn gateway_command(bin: &Path, env: &[(String, String)], args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "print-gateway {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

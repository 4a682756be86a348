//! Judges a run: every accepted job's end state in the gateway against the vendor tasks the
//! simulator really created and printed (its ledger is the ground truth).
//!
//! A vendor task's owner is found from evidence the gateway cannot fake: the document it
//! carries (each planned job prints a unique text; Lianke records the file's SHA-256, Zhimu the
//! content's) and, failing that, the job id the gateway wrote into it (Lianke's per-job
//! `callbackUrl`, Zhimu's task `name`). When both exist and disagree, that is a violation of
//! its own: the gateway sent one job's document under another job's name.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::load::{Planned, Route, Sample};

/// A stretch of time in which the database was away.
pub struct Window {
    pub name: String,
    pub from: Instant,
    pub to: Instant,
}

impl Window {
    /// Whether a request was in flight at some moment of the window.
    fn overlaps(&self, s: &Sample) -> bool {
        s.at <= self.to && s.at + s.latency >= self.from
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Violation,
    Info,
}

pub struct Row {
    pub label: String,
    pub value: String,
    pub kind: Kind,
    pub count: usize,
}

impl Row {
    pub fn info(label: &str, value: impl Into<String>) -> Row {
        Row {
            label: label.to_owned(),
            value: value.into(),
            kind: Kind::Info,
            count: 0,
        }
    }

    pub fn violation(label: &str, count: usize, note: impl Into<String>) -> Row {
        let note = note.into();
        Row {
            label: label.to_owned(),
            value: if note.is_empty() {
                count.to_string()
            } else {
                format!("{count} ({note})")
            },
            kind: Kind::Violation,
            count,
        }
    }
}

pub struct Report {
    pub title: String,
    pub rows: Vec<Row>,
    /// Job ids behind each violation (first few), for digging into the logs.
    pub examples: Vec<String>,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.kind == Kind::Violation)
            .map(|r| r.count)
            .sum()
    }

    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(10);
        let mut out = format!("== {}\n", self.title);
        for r in &self.rows {
            let mark = match (r.kind, r.count) {
                (Kind::Info, _) => "  ",
                (Kind::Violation, 0) => "ok",
                (Kind::Violation, _) => "!!",
            };
            let pad = width - r.label.chars().count();
            out.push_str(&format!(
                "{mark} {}{} | {}\n",
                r.label,
                " ".repeat(pad),
                r.value
            ));
        }
        let v = self.violations();
        out.push_str(&format!(
            "=> {}\n",
            if v == 0 {
                "no violations".to_owned()
            } else {
                format!("{v} VIOLATIONS")
            }
        ));
        for e in &self.examples {
            out.push_str(&format!("   e.g. {e}\n"));
        }
        out
    }
}

pub struct Evidence<'a> {
    pub title: String,
    pub plan: &'a [Planned],
    pub accepted: BTreeMap<usize, String>,
    pub refused: BTreeMap<usize, u16>,
    pub idempotency_mismatches: usize,
    pub samples: Vec<Sample>,
    pub windows: Vec<Window>,
    /// The gateway's jobs (API representation).
    pub jobs: Vec<Value>,
    /// `GET /_sim/lianke/tasks`.
    pub lianke_tasks: Value,
    /// `GET /_sim/zhimu/tasks`.
    pub zhimu_tasks: Value,
    /// Submit requests the simulator received: (Lianke, Zhimu).
    pub submits: (u64, u64),
    pub drained: Option<Duration>,
    pub drain_limit: Duration,
    pub extra: Vec<Row>,
}

/// A task at the simulator and what it tells about its owner.
struct Task {
    id: String,
    /// Tied to its job by the document it carries (not only by the gateway's reference).
    by_document: bool,
    owner: Option<String>,
    conflict: bool,
    printed: bool,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The job id in a Lianke callback URL: `…/webhooks/lianke/{job_id}?token=…`.
fn job_in_callback(url: &str) -> Option<String> {
    let tail = url.split("/webhooks/lianke/").nth(1)?;
    let id = tail.split(['?', '/']).next()?;
    (!id.is_empty()).then(|| id.to_owned())
}

fn tasks(e: &Evidence<'_>, by_digest: &HashMap<String, String>) -> Vec<Task> {
    let mut out = Vec::new();
    let owner = |doc: Option<String>, named: Option<String>| {
        let conflict = matches!((&doc, &named), (Some(a), Some(b)) if a != b);
        (doc.or(named), conflict)
    };
    for t in e.lianke_tasks.as_array().into_iter().flatten() {
        let doc = t["file"]["sha256"]
            .as_str()
            .and_then(|d| by_digest.get(d).cloned());
        let named = t["callback_url"].as_str().and_then(job_in_callback);
        let by_document = doc.is_some();
        let (owner, conflict) = owner(doc, named);
        out.push(Task {
            id: t["task_id"].as_str().unwrap_or_default().to_owned(),
            by_document,
            owner,
            conflict,
            printed: t["state"] == "SUCCESS" && t["result"][0].as_i64() == Some(200),
        });
    }
    for t in e.zhimu_tasks.as_array().into_iter().flatten() {
        let doc = t["content_sha256"]
            .as_str()
            .and_then(|d| by_digest.get(d).cloned());
        let named = t["name"]
            .as_str()
            .filter(|n| uuid::Uuid::parse_str(n).is_ok())
            .map(str::to_owned);
        let by_document = doc.is_some();
        let (owner, conflict) = owner(doc, named);
        out.push(Task {
            id: t["task_id"].as_str().unwrap_or_default().to_owned(),
            by_document,
            owner,
            conflict,
            printed: t["status"] == "FINISHED",
        });
    }
    out
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn histogram<'a>(samples: impl Iterator<Item = &'a Sample>) -> String {
    let mut h: BTreeMap<String, usize> = BTreeMap::new();
    for s in samples {
        let key = s.status.map_or("no answer".to_owned(), |c| c.to_string());
        *h.entry(key).or_default() += 1;
    }
    if h.is_empty() {
        return "none".into();
    }
    h.iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn judge(e: Evidence<'_>) -> Report {
    let mut examples: Vec<String> = Vec::new();
    let mut example = |what: &str, id: &str, detail: String| {
        if examples.len() < 12 {
            examples.push(format!("{what}: job {id} {detail}"));
        }
    };
    // Planned document digest → the gateway's job id for it.
    let by_digest: HashMap<String, String> = e
        .plan
        .iter()
        .filter_map(|p| {
            e.accepted
                .get(&p.n)
                .map(|id| (sha256_hex(p.text.as_bytes()), id.clone()))
        })
        .collect();
    let tasks = tasks(&e, &by_digest);
    let mut own: HashMap<&str, Vec<&Task>> = HashMap::new();
    for t in &tasks {
        if let Some(o) = &t.owner {
            own.entry(o.as_str()).or_default().push(t);
        }
    }
    let task_by_id: HashMap<&str, &Task> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let jobs: HashMap<&str, &Value> = e
        .jobs
        .iter()
        .filter_map(|j| j["id"].as_str().map(|id| (id, j)))
        .collect();

    let mut unknown = 0;
    let mut unsettled = 0;
    let mut duplicates = 0;
    let mut extra_tasks = 0;
    let mut misattributed = 0;
    let mut completed_without = 0;
    let mut failed_printed = 0;
    let mut unconfirmed = 0;
    let mut unconfirmed_printed = 0;
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut failure_codes: BTreeMap<String, usize> = BTreeMap::new();
    for id in e.accepted.values() {
        let Some(job) = jobs.get(id.as_str()) else {
            unknown += 1;
            example("lost (unknown to the gateway)", id, String::new());
            continue;
        };
        let state = job["state"].as_str().unwrap_or("?");
        let task = job["vendor_task_id"].as_str();
        let detail = || {
            let owned: Vec<String> = own
                .get(id.as_str())
                .into_iter()
                .flatten()
                .map(|t| format!("{}{}", t.id, if t.printed { " (printed)" } else { "" }))
                .collect();
            format!(
                "on {}, {state}, holds task {}; its own tasks at the vendor: [{}]",
                job["printer_id"].as_str().unwrap_or("?"),
                task.unwrap_or("none"),
                owned.join(", ")
            )
        };
        *states.entry(state.to_owned()).or_default() += 1;
        let mine = own.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let printed = mine.iter().any(|t| t.printed);
        if mine.len() > 1 {
            duplicates += 1;
            extra_tasks += mine.len() - 1;
            example("duplicate vendor submits", id, detail());
        }
        if let Some(t) = task.and_then(|t| task_by_id.get(t))
            && t.owner.as_deref().is_some_and(|o| o != id)
        {
            misattributed += 1;
            example("task of another job", id, detail());
        }
        match state {
            "completed" => {
                let own_printed = task
                    .and_then(|t| task_by_id.get(t))
                    .is_some_and(|t| t.printed && t.owner.as_deref() == Some(id.as_str()));
                if !own_printed {
                    completed_without += 1;
                    example("completed without a printed task of its own", id, detail());
                }
            }
            "failed" => {
                let code = job["error"]["code"].as_str().unwrap_or("?").to_owned();
                *failure_codes.entry(code).or_default() += 1;
                if printed {
                    failed_printed += 1;
                    example("failed but printed", id, detail());
                }
            }
            "unconfirmed" => {
                unconfirmed += 1;
                if printed {
                    unconfirmed_printed += 1;
                }
            }
            "canceled" => {}
            _ => {
                unsettled += 1;
                example("not settled after the drain", id, detail());
            }
        }
    }
    let conflicts = tasks.iter().filter(|t| t.conflict).count();
    let orphans = tasks
        .iter()
        .filter(|t| {
            t.owner
                .as_deref()
                .is_none_or(|o| !e.accepted.values().any(|a| a == o))
        })
        .count();
    let never_accepted = e.plan.len() - e.accepted.len() - e.refused.len();

    let post = |s: &&Sample| s.route == Route::PostJobs;
    let ready = |s: &&Sample| s.route == Route::Readyz;
    let bad_5xx = |s: &&Sample| s.status.is_some_and(|c| c >= 500 && c != 503);
    let in_windows = |s: &&Sample| e.windows.iter().any(|w| w.overlaps(s));
    let all_bad = e.samples.iter().filter(bad_5xx).count();
    let outage_bad = e.samples.iter().filter(bad_5xx).filter(in_windows).count();
    let bad_kinds = histogram(e.samples.iter().filter(bad_5xx));

    let mut rows = vec![Row::info(
        "jobs accepted (202/200)",
        format!("{} of {} planned", e.accepted.len(), e.plan.len()),
    )];
    rows.push(Row::violation(
        "valid jobs refused (4xx) or never accepted",
        e.refused.len() + never_accepted,
        format!(
            "{} refused{}, {} never accepted within 180 s",
            e.refused.len(),
            histogram_codes(e.refused.values()),
            never_accepted
        ),
    ));
    rows.push(Row::violation(
        "idempotent replays naming another job",
        e.idempotency_mismatches,
        "",
    ));
    rows.push(Row::violation(
        "lost: accepted, unknown to the gateway",
        unknown,
        "",
    ));
    rows.push(Row::violation(
        "lost: not final nor unconfirmed after the drain",
        unsettled,
        "",
    ));
    rows.push(Row::violation(
        "duplicate vendor submits (jobs with > 1 task)",
        duplicates,
        format!("{extra_tasks} extra tasks"),
    ));
    rows.push(Row::violation(
        "jobs whose task belongs to another job",
        misattributed,
        "",
    ));
    rows.push(Row::violation(
        "completed without a printed task of their own",
        completed_without,
        "",
    ));
    rows.push(Row::violation("failed but printed", failed_printed, ""));
    rows.push(Row::violation(
        "tasks whose document and job reference disagree",
        conflicts,
        "",
    ));
    rows.push(Row::info(
        "left unconfirmed",
        format!("{unconfirmed} (of which printed at the vendor: {unconfirmed_printed})"),
    ));
    rows.push(Row::violation(
        "5xx other than 503 (POST /v1/jobs, /readyz)",
        all_bad,
        if all_bad == 0 {
            String::new()
        } else {
            format!("{bad_kinds}; {outage_bad} in flight during an outage")
        },
    ));
    for w in &e.windows {
        let inside: Vec<&Sample> = e.samples.iter().filter(|s| w.overlaps(s)).collect();
        let posts: Vec<&Sample> = inside.iter().copied().filter(post).collect();
        let readies: Vec<&Sample> = inside.iter().copied().filter(ready).collect();
        let lat = |v: &[&Sample]| {
            let l: Vec<Duration> = v.iter().map(|s| s.latency).collect();
            format!(
                "p50 {:.2} s, max {:.2} s",
                percentile(l.clone(), 0.5).as_secs_f64(),
                percentile(l, 1.0).as_secs_f64()
            )
        };
        rows.push(Row::info(
            &format!("{}: POST /v1/jobs", w.name),
            format!("{} — {}", histogram(posts.iter().copied()), lat(&posts)),
        ));
        rows.push(Row::info(
            &format!("{}: /readyz", w.name),
            format!("{} — {}", histogram(readies.iter().copied()), lat(&readies)),
        ));
        let no_retry_after = posts
            .iter()
            .filter(|s| s.status == Some(503) && !s.retry_after)
            .count();
        rows.push(Row::violation(
            &format!("{}: 503 without Retry-After", w.name),
            no_retry_after,
            "",
        ));
        let slow_posts = posts
            .iter()
            .filter(|s| s.latency > Duration::from_secs(2))
            .count();
        let slow_ready = readies
            .iter()
            .filter(|s| s.latency > Duration::from_secs(1))
            .count();
        rows.push(Row::violation(
            &format!("{}: answers slower than 2 s (POST) / 1 s (/readyz)", w.name),
            slow_posts + slow_ready,
            format!("{slow_posts} POST, {slow_ready} /readyz"),
        ));
    }
    rows.extend(e.extra);
    rows.push(Row::info(
        "end states",
        states
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    if !failure_codes.is_empty() {
        rows.push(Row::info(
            "failure codes",
            failure_codes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    rows.push(Row::info(
        "vendor submits received / tasks created",
        format!(
            "Lianke {} / {}, Zhimu {} / {} (tied to a job by their document: {}; of no accepted job: {orphans})",
            e.submits.0,
            e.lianke_tasks.as_array().map_or(0, Vec::len),
            e.submits.1,
            e.zhimu_tasks.as_array().map_or(0, Vec::len),
            tasks.iter().filter(|t| t.by_document).count(),
        ),
    ));
    rows.push(Row::info(
        "drain time (faults off → all settled)",
        match e.drained {
            Some(d) => format!("{:.1} s", d.as_secs_f64()),
            None => format!("not settled within {} s", e.drain_limit.as_secs()),
        },
    ));
    Report {
        title: e.title,
        rows,
        examples,
    }
}

fn histogram_codes<'a>(codes: impl Iterator<Item = &'a u16>) -> String {
    let mut h: BTreeMap<u16, usize> = BTreeMap::new();
    for c in codes {
        *h.entry(*c).or_default() += 1;
    }
    if h.is_empty() {
        return String::new();
    }
    format!(
        " [{}]",
        h.iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_is_read_from_a_lianke_callback_url() {
        assert_eq!(
            job_in_callback("http://127.0.0.1:1/webhooks/lianke/0193-ab?token=x").as_deref(),
            Some("0193-ab")
        );
        assert_eq!(job_in_callback("http://127.0.0.1:1/other"), None);
    }

    fn plan(n: usize) -> Planned {
        Planned {
            n,
            printer_id: "p".into(),
            idempotency_key: format!("k{n}"),
            text: format!("doc {n}"),
        }
    }

    fn evidence<'a>(plan: &'a [Planned], jobs: Value, lianke: Value) -> Evidence<'a> {
        Evidence {
            title: "t".into(),
            plan,
            accepted: plan.iter().map(|p| (p.n, format!("job-{}", p.n))).collect(),
            refused: BTreeMap::new(),
            idempotency_mismatches: 0,
            samples: Vec::new(),
            windows: Vec::new(),
            jobs: jobs.as_array().cloned().unwrap_or_default(),
            lianke_tasks: lianke,
            zhimu_tasks: Value::Array(Vec::new()),
            submits: (0, 0),
            drained: Some(Duration::from_secs(1)),
            drain_limit: Duration::from_secs(1),
            extra: Vec::new(),
        }
    }

    fn task(id: &str, doc: &str, owner: &str, printed: bool) -> Value {
        serde_json::json!({
            "task_id": id,
            "file": {"sha256": sha256_hex(doc.as_bytes())},
            "callback_url": format!("http://x/webhooks/lianke/{owner}?token=t"),
            "state": if printed { "SUCCESS" } else { "FAILURE" },
            "result": [if printed { 200 } else { 500 }, "m"],
        })
    }

    fn count(r: &Report, label: &str) -> usize {
        r.rows
            .iter()
            .find(|row| row.label == label)
            .map_or(usize::MAX, |row| row.count)
    }

    #[test]
    fn a_clean_run_has_no_violations() {
        let plan = [plan(0), plan(1)];
        let jobs = serde_json::json!([
            {"id": "job-0", "state": "completed", "vendor_task_id": "t0"},
            {"id": "job-1", "state": "failed", "vendor_task_id": "t1", "error": {"code": "vendor_rejected"}},
        ]);
        let lianke = serde_json::json!([
            task("t0", "doc 0", "job-0", true),
            task("t1", "doc 1", "job-1", false),
        ]);
        let r = judge(evidence(&plan, jobs, lianke));
        assert_eq!(r.violations(), 0, "{}", r.render());
    }

    #[test]
    fn a_swapped_task_a_false_failure_a_duplicate_and_a_lost_job_are_each_counted() {
        let plan = [plan(0), plan(1), plan(2), plan(3)];
        let jobs = serde_json::json!([
            // job-0 completed with job-1's task; job-1 failed though its task printed.
            {"id": "job-0", "state": "completed", "vendor_task_id": "t1"},
            {"id": "job-1", "state": "failed", "vendor_task_id": null, "error": {"code": "dispatch_unconfirmed"}},
            // job-2 was submitted twice.
            {"id": "job-2", "state": "completed", "vendor_task_id": "t2b"},
            // job-3 is missing.
        ]);
        let lianke = serde_json::json!([
            task("t0", "doc 0", "job-0", false),
            task("t1", "doc 1", "job-1", true),
            task("t2a", "doc 2", "job-2", true),
            task("t2b", "doc 2", "job-2", true),
        ]);
        let r = judge(evidence(&plan, jobs, lianke));
        assert_eq!(count(&r, "jobs whose task belongs to another job"), 1);
        assert_eq!(
            count(&r, "completed without a printed task of their own"),
            1
        );
        assert_eq!(count(&r, "failed but printed"), 1);
        assert_eq!(
            count(&r, "duplicate vendor submits (jobs with > 1 task)"),
            1
        );
        assert_eq!(count(&r, "lost: accepted, unknown to the gateway"), 1);
        assert_eq!(r.violations(), 5);
    }

    #[test]
    fn the_document_outranks_the_name_and_a_disagreement_is_a_violation() {
        let plan = [plan(0), plan(1)];
        let jobs = serde_json::json!([
            {"id": "job-0", "state": "completed", "vendor_task_id": "t0"},
            {"id": "job-1", "state": "unconfirmed"},
        ]);
        // Task t0 carries job 1's document under job 0's callback URL.
        let lianke = serde_json::json!([task("t0", "doc 1", "job-0", true)]);
        let r = judge(evidence(&plan, jobs, lianke));
        assert_eq!(
            count(&r, "tasks whose document and job reference disagree"),
            1
        );
        assert_eq!(count(&r, "jobs whose task belongs to another job"), 1);
        assert_eq!(
            count(&r, "completed without a printed task of their own"),
            1
        );
    }
}

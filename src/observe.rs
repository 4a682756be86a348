//! What operators see, named in one place: every Prometheus family (names, units, labels)
//! and the WARN lines for job failures, unconfirmed submits, breaker changes and printers
//! going offline or online. Callers report facts here; no other module names a metric.
//!
//! Label values are always from small fixed sets (routes are templates, error codes are
//! the neutral catalog, backends are the registry's names); per-printer series exist only
//! while the printer count is at most `METRICS_PRINTER_LABELS_MAX`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use uuid::Uuid;

use crate::domain::{JobError, JobState};

pub const HTTP_REQUESTS: &str = "print_gateway_http_requests_total";
pub const HTTP_DURATION: &str = "print_gateway_http_request_duration_seconds";
pub const JOBS_ACCEPTED: &str = "print_gateway_jobs_accepted_total";
pub const JOBS_ENDED: &str = "print_gateway_jobs_ended_total";
pub const JOB_DURATION: &str = "print_gateway_job_duration_seconds";
pub const JOB_TRANSITIONS: &str = "print_gateway_job_transitions_total";
pub const JOBS: &str = "print_gateway_jobs";
pub const JOB_OLDEST_AGE: &str = "print_gateway_job_oldest_age_seconds";
pub const JOBS_UNCONFIRMED: &str = "print_gateway_jobs_unconfirmed";
pub const VENDOR_CALLS: &str = "print_gateway_vendor_calls_total";
pub const VENDOR_DURATION: &str = "print_gateway_vendor_call_duration_seconds";
pub const SUBMITS: &str = "print_gateway_submits_total";
pub const TOKEN_REFRESHES: &str = "print_gateway_token_refreshes_total";
pub const CALLBACKS: &str = "print_gateway_callbacks_total";
/// Bytes of vendor webhook bodies read (only after the request was authenticated).
pub const WEBHOOK_BODY_BYTES: &str = "print_gateway_webhook_body_bytes_read_total";
pub const BREAKER_CHANGES: &str = "print_gateway_breaker_transitions_total";
pub const PRINTER_BREAKER: &str = "print_gateway_printer_breaker_state";
pub const PRINTER_ONLINE: &str = "print_gateway_printer_online";
pub const PRINTERS_BY_CIRCUIT: &str = "print_gateway_printers_by_circuit";
pub const PRINTERS_BY_ONLINE: &str = "print_gateway_printers_by_online";
pub const DB_POOL_CONNECTIONS: &str = "print_gateway_db_pool_connections";
pub const DB_POOL_MAX: &str = "print_gateway_db_pool_max_connections";
pub const DB_UP: &str = "print_gateway_db_up";
/// Pool jobs given to a member, by pool, member and why (`member_chosen`, `failover`).
pub const POOL_ROUTES: &str = "print_gateway_pool_routes_total";
/// Pages the gateway rendered for printers that cannot take the document's type.
pub const PAGES_RENDERED: &str = "print_gateway_pages_rendered_total";

/// Histogram buckets, in seconds, per family suffix.
pub const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
pub const VENDOR_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
];
pub const JOB_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 21600.0,
    86400.0,
];

/// Registers help texts and units (once per process).
pub fn describe() {
    describe_counter!(
        POOL_ROUTES,
        "Pool jobs given to a member printer, by pool, member and kind (member_chosen when accepted or re-routed, failover when moved off a member that failed)"
    );
    describe_counter!(
        PAGES_RENDERED,
        "Pages rendered (PDF to PNG) for printers that cannot take PDF, by backend"
    );
    describe_counter!(
        WEBHOOK_BODY_BYTES,
        Unit::Bytes,
        "Bytes of vendor webhook bodies read, by vendor (read only after the URL or signature parameters were checked)"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route template, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency by route template, method and status"
    );
    describe_counter!(
        JOBS_ACCEPTED,
        "Jobs accepted, by backend and source (api, wecom)"
    );
    describe_counter!(
        JOBS_ENDED,
        "Jobs that reached a terminal state, by backend, state and neutral error code"
    );
    describe_histogram!(
        JOB_DURATION,
        Unit::Seconds,
        "Time from accept to a terminal state, by backend and state"
    );
    describe_counter!(JOB_TRANSITIONS, "Job state changes, by target state");
    describe_gauge!(
        JOBS,
        "Live jobs by state (pending, processing, unconfirmed)"
    );
    describe_gauge!(
        JOB_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest live job per state (pending: since accept; processing: since dispatch; unconfirmed: since the submit)"
    );
    describe_gauge!(
        JOBS_UNCONFIRMED,
        "Jobs whose submit outcome is unknown and waits for evidence or an operator"
    );
    describe_counter!(
        VENDOR_CALLS,
        "Vendor calls by vendor, endpoint and outcome class (ok, vendor_error, outcome_unknown, transport_error, abandoned)"
    );
    describe_histogram!(
        VENDOR_DURATION,
        Unit::Seconds,
        "Vendor call latency by vendor, endpoint and outcome class"
    );
    describe_counter!(
        SUBMITS,
        "Submits by backend and outcome (accepted, error, unknown)"
    );
    describe_counter!(
        TOKEN_REFRESHES,
        "Vendor token fetches by vendor and result (ok, error)"
    );
    describe_counter!(
        CALLBACKS,
        "Vendor callbacks received, by vendor and result (applied, recorded, duplicate, forged, unknown, invalid, not_ready)"
    );
    describe_counter!(
        BREAKER_CHANGES,
        "Circuit breaker changes by backend and new state (open, closed)"
    );
    describe_gauge!(
        PRINTER_BREAKER,
        "Circuit breaker per printer: 0 closed, 1 half-open, 2 open (only below METRICS_PRINTER_LABELS_MAX printers)"
    );
    describe_gauge!(
        PRINTER_ONLINE,
        "Printer online per the last status: 1 online, 0 offline (only below METRICS_PRINTER_LABELS_MAX printers; absent when unknown)"
    );
    describe_gauge!(PRINTERS_BY_CIRCUIT, "Printers by circuit state");
    describe_gauge!(
        PRINTERS_BY_ONLINE,
        "Printers by online state (true, false, unknown)"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections of this process by state (idle, in_use)"
    );
    describe_gauge!(
        DB_POOL_MAX,
        "Database pool size limit of this process (DATABASE_MAX_CONNECTIONS)"
    );
    describe_gauge!(
        DB_UP,
        "1 when the last metrics refresh could query the database, else 0"
    );
}

/// The HTTP method as a label from a fixed set.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

pub fn http_request(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    // The handles of each (route, method, status) are looked up once per thread: building
    // a labelled key and finding it in the registry costs more than the rest of a
    // `/healthz` request. The handles stay valid: the process installs its one global
    // recorder (`app::metrics_handle`) before the API serves.
    HTTP_HANDLES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((counter, histogram)) = cache
            .get(route)
            .and_then(|by_status| by_status.get(&(method, status)))
        {
            counter.increment(1);
            histogram.record(elapsed.as_secs_f64());
            return;
        }
        let status_label = status.to_string();
        let counter = counter!(HTTP_REQUESTS, "route" => route.to_owned(), "method" => method, "status" => status_label.clone());
        let histogram = histogram!(HTTP_DURATION, "route" => route.to_owned(), "method" => method, "status" => status_label);
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64());
        let by_status = cache.entry(route.to_owned()).or_default();
        // Bounded: routes are templates and statuses few; a thread never holds more than
        // every route × method × status the API can answer.
        by_status.insert((method, status), (counter, histogram));
    });
}

type HttpHandles = std::collections::HashMap<
    String,
    std::collections::HashMap<(&'static str, u16), (metrics::Counter, metrics::Histogram)>,
>;

thread_local! {
    static HTTP_HANDLES: std::cell::RefCell<HttpHandles> = std::cell::RefCell::new(HttpHandles::new());
}

pub fn pool_routed(pool: &str, member: &str, kind: &str) {
    counter!(POOL_ROUTES, "pool" => pool.to_owned(), "member" => member.to_owned(), "kind" => kind.to_owned())
        .increment(1);
}

pub fn pages_rendered(backend: &str, pages: usize) {
    counter!(PAGES_RENDERED, "backend" => backend.to_owned()).increment(pages as u64);
}

pub fn job_accepted(backend: &str, source: &str) {
    counter!(JOBS_ACCEPTED, "backend" => backend.to_owned(), "source" => source.to_owned())
        .increment(1);
}

/// A job changed state (the store's one state-change function reports every change once).
pub struct JobChange<'a> {
    pub job_id: Uuid,
    pub printer_id: &'a str,
    pub backend: &'a str,
    pub from: JobState,
    pub to: JobState,
    pub error: Option<&'a JobError>,
    pub created_at: DateTime<Utc>,
}

pub fn job_changed(c: &JobChange<'_>) {
    if c.from == c.to {
        return;
    }
    counter!(JOB_TRANSITIONS, "to" => c.to.as_str()).increment(1);
    let code = c.error.map_or("none", |e| e.code.as_str());
    let vendor_code = c
        .error
        .and_then(|e| e.vendor_code.as_deref())
        .unwrap_or("-");
    if c.to.is_terminal() {
        counter!(JOBS_ENDED, "backend" => c.backend.to_owned(), "state" => c.to.as_str(), "error_code" => code)
            .increment(1);
        let took = (Utc::now() - c.created_at).to_std().unwrap_or_default();
        histogram!(JOB_DURATION, "backend" => c.backend.to_owned(), "state" => c.to.as_str())
            .record(took.as_secs_f64());
    }
    match c.to {
        JobState::Failed => tracing::warn!(
            job_id = %c.job_id, printer_id = %c.printer_id, backend = %c.backend,
            code, vendor_code, from = c.from.as_str(),
            "job failed"
        ),
        JobState::Unconfirmed => tracing::warn!(
            job_id = %c.job_id, printer_id = %c.printer_id, backend = %c.backend,
            code, vendor_code,
            "job unconfirmed: the submit's outcome is unknown; it will not be sent again"
        ),
        _ => {}
    }
}

/// Where a printer's circuit breaker went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerChange {
    Opened {
        until: Option<DateTime<Utc>>,
        failures: i32,
    },
    Closed,
}

pub fn breaker_changed(
    printer_id: &str,
    backend: &str,
    change: BreakerChange,
    error: Option<(&str, Option<&str>)>,
) {
    let (code, vendor_code) = error.map_or(("none", "-"), |(c, v)| (c, v.unwrap_or("-")));
    match change {
        BreakerChange::Opened { until, failures } => {
            counter!(BREAKER_CHANGES, "backend" => backend.to_owned(), "to" => "open").increment(1);
            let reopen_at = until.map(|t| t.to_rfc3339()).unwrap_or_default();
            tracing::warn!(
                printer_id, backend, code, vendor_code, failures, %reopen_at,
                "circuit breaker opened"
            );
        }
        BreakerChange::Closed => {
            counter!(BREAKER_CHANGES, "backend" => backend.to_owned(), "to" => "closed")
                .increment(1);
            tracing::warn!(
                printer_id,
                backend,
                code,
                vendor_code,
                "circuit breaker closed"
            );
        }
    }
}

pub fn online_changed(printer_id: &str, backend: &str, online: bool) {
    if online {
        tracing::warn!(printer_id, backend, online, "printer back online");
    } else {
        tracing::warn!(printer_id, backend, online, "printer offline");
    }
}

/// One vendor call: its outcome class is bounded, and what an operator alerts on.
pub fn vendor_call(
    vendor: &'static str,
    endpoint: &'static str,
    outcome: &'static str,
    elapsed: Duration,
) {
    counter!(VENDOR_CALLS, "vendor" => vendor, "endpoint" => endpoint, "outcome" => outcome)
        .increment(1);
    histogram!(VENDOR_DURATION, "vendor" => vendor, "endpoint" => endpoint, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

pub fn submit(backend: &'static str, outcome: &'static str) {
    counter!(SUBMITS, "backend" => backend, "outcome" => outcome).increment(1);
}

pub fn token_refresh(vendor: &'static str, ok: bool) {
    counter!(TOKEN_REFRESHES, "vendor" => vendor, "result" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// The answer the gateway gave a callback: its ack status, or the problem code it refused with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackAnswer<'a> {
    Acked(&'a str),
    Refused(&'a str),
}

/// What became of a callback, from the answer the gateway gave it.
pub fn callback_result(answer: CallbackAnswer<'_>) -> &'static str {
    use CallbackAnswer::{Acked, Refused};
    match answer {
        Acked("applied") => "applied",
        Acked("duplicate") => "duplicate",
        Acked("recorded") => "recorded",
        Acked(_) => "applied",
        Refused("unauthorized" | "callback_mismatch" | "invalid_signature") => "forged",
        Refused("unknown_job" | "not_found") => "unknown",
        Refused("callback_not_ready") => "not_ready",
        Refused(_) => "invalid",
    }
}

/// Bytes read from one vendor webhook body.
pub fn webhook_body_bytes(vendor: &'static str, bytes: usize) {
    counter!(WEBHOOK_BODY_BYTES, "vendor" => vendor).increment(bytes as u64);
}

pub fn callback(vendor: &'static str, result: &'static str) {
    counter!(CALLBACKS, "vendor" => vendor, "result" => result).increment(1);
}

/// Live jobs of one state: count and the age of the oldest.
pub fn live_jobs(state: JobState, count: i64, oldest_age: Option<f64>) {
    gauge!(JOBS, "state" => state.as_str()).set(count as f64);
    gauge!(JOB_OLDEST_AGE, "state" => state.as_str()).set(oldest_age.unwrap_or(0.0).max(0.0));
    if state == JobState::Unconfirmed {
        gauge!(JOBS_UNCONFIRMED).set(count as f64);
    }
}

/// One printer's breaker and online state (only called below the label limit).
pub fn printer_state(printer_id: &str, backend: &str, circuit: u8, online: Option<bool>) {
    gauge!(PRINTER_BREAKER, "printer" => printer_id.to_owned(), "backend" => backend.to_owned())
        .set(f64::from(circuit));
    if let Some(online) = online {
        gauge!(PRINTER_ONLINE, "printer" => printer_id.to_owned(), "backend" => backend.to_owned())
            .set(if online { 1.0 } else { 0.0 });
    }
}

pub fn printers_by_circuit(circuit: &'static str, count: i64) {
    gauge!(PRINTERS_BY_CIRCUIT, "circuit" => circuit).set(count as f64);
}

pub fn printers_by_online(online: &'static str, count: i64) {
    gauge!(PRINTERS_BY_ONLINE, "online" => online).set(count as f64);
}

pub fn db_pool(size: u32, idle: usize, max: u32) {
    let idle = idle as f64;
    gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle);
    gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set((f64::from(size) - idle).max(0.0));
    gauge!(DB_POOL_MAX).set(f64::from(max));
}

pub fn db_up(up: bool) {
    gauge!(DB_UP).set(if up { 1.0 } else { 0.0 });
}

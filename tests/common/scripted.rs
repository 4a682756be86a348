//! A backend defined in the tests: it does what each test scripts and counts every call,
//! standing in for a vendor where the engine itself is under test.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use print_gateway::backends::{
    Accepted, Backend, CancelOutcome, CapabilitiesReport, InvalidPrinterConfig, Lookup, LookupKind,
    PollPlan, PrintTarget, PrinterContext, PrinterSetup, PrinterStatus, SubmitRequest,
    TaskProgress, TaskReport, UnsupportedOption, VendorError,
};
use print_gateway::domain::capabilities::PaperSize;
use print_gateway::domain::options::{ColorMode, Orientation, Sides};
use print_gateway::domain::{Capabilities, Decision, ErrorCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// What one submit does.
#[derive(Debug, Clone)]
pub enum Step {
    Accept,
    /// Fails with this error; the vendor keeps nothing.
    Fail(VendorError),
    /// The vendor takes the job but the answer is lost (timeout after sending).
    AcceptButLoseAnswer,
    /// The request is lost on the way; the vendor has nothing, the outcome looks unknown.
    LoseRequest,
    /// Waits, then does the inner step.
    Slow(Duration, Box<Step>),
}

pub fn transient() -> VendorError {
    VendorError::new(
        ErrorCode::VendorUnavailable,
        Decision::Retry,
        "vendor answered 503",
    )
    .with_vendor("503", "busy")
}

pub fn permanent() -> VendorError {
    VendorError::new(
        ErrorCode::PrinterAuthFailed,
        Decision::Fail,
        "the vendor refused the device key",
    )
    .with_vendor("404", "wrong id or key")
}

pub fn offline() -> VendorError {
    VendorError::new(
        ErrorCode::DeviceOffline,
        Decision::WaitForDevice,
        "the device is offline",
    )
    .with_vendor("5002", "offline")
}

#[derive(Default)]
struct State {
    steps: HashMap<String, VecDeque<Step>>,
    default_step: HashMap<String, Step>,
    /// task id → job id, the vendor's own record.
    tasks: HashMap<String, Uuid>,
    submits_per_job: HashMap<Uuid, u32>,
    submits_per_printer: HashMap<String, u32>,
    status_calls: u32,
    lookups: u32,
    cancels: u32,
    /// What task_status reports, per task; default: completed.
    reports: HashMap<String, VecDeque<TaskProgress>>,
    in_flight: HashMap<String, u32>,
    max_in_flight_seen: HashMap<String, u32>,
    /// What printer_status says about `online`, per printer; default: online.
    online: HashMap<String, Option<bool>>,
    /// How long printer_status takes, and how many were asked.
    printer_status_pause: Duration,
    printer_status_calls: u32,
}

pub struct ScriptedBackend {
    name: &'static str,
    state: Mutex<State>,
    pub supports_cancel: bool,
    pub poll: PollPlan,
}

impl ScriptedBackend {
    pub fn new() -> Arc<ScriptedBackend> {
        ScriptedBackend::named("scripted")
    }

    pub fn named(name: &'static str) -> Arc<ScriptedBackend> {
        Arc::new(ScriptedBackend {
            name,
            state: Mutex::new(State::default()),
            supports_cancel: true,
            poll: PollPlan {
                first_after: Duration::ZERO,
                every: Duration::from_millis(30),
            },
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the vendor's status call says about `printer` from now on.
    pub fn set_online(&self, printer: &str, online: Option<bool>) {
        self.lock().online.insert(printer.to_owned(), online);
    }

    /// How long each printer status call takes from now on.
    pub fn set_printer_status_pause(&self, pause: Duration) {
        self.lock().printer_status_pause = pause;
    }

    /// Printer status calls begun so far.
    pub fn printer_status_calls(&self) -> u32 {
        self.lock().printer_status_calls
    }

    /// Queues steps for the next submits to `printer`.
    pub fn script(&self, printer: &str, steps: impl IntoIterator<Item = Step>) {
        self.lock()
            .steps
            .entry(printer.to_owned())
            .or_default()
            .extend(steps);
    }

    /// What submits to `printer` do once the queue is empty (default: accept).
    pub fn always(&self, printer: &str, step: Step) {
        self.lock().default_step.insert(printer.to_owned(), step);
    }

    /// Queues what the next status polls of tasks on the vendor report (default: completed).
    pub fn report(&self, task_id: &str, progress: impl IntoIterator<Item = TaskProgress>) {
        self.lock()
            .reports
            .entry(task_id.to_owned())
            .or_default()
            .extend(progress);
    }

    pub fn submits_of(&self, job: Uuid) -> u32 {
        self.lock().submits_per_job.get(&job).copied().unwrap_or(0)
    }

    pub fn submits_per_job(&self) -> HashMap<Uuid, u32> {
        self.lock().submits_per_job.clone()
    }

    pub fn submits_to(&self, printer: &str) -> u32 {
        self.lock()
            .submits_per_printer
            .get(printer)
            .copied()
            .unwrap_or(0)
    }

    pub fn lookups(&self) -> u32 {
        self.lock().lookups
    }

    pub fn cancels(&self) -> u32 {
        self.lock().cancels
    }

    pub fn max_in_flight_seen(&self, device: &str) -> u32 {
        self.lock()
            .max_in_flight_seen
            .get(device)
            .copied()
            .unwrap_or(0)
    }

    fn device(printer: &PrinterContext) -> String {
        printer
            .locator
            .get("device")
            .and_then(Value::as_str)
            .unwrap_or(printer.id.as_str())
            .to_owned()
    }

    async fn run(
        &self,
        step: Step,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Accepted, VendorError> {
        let mut step = step;
        while let Step::Slow(pause, inner) = step {
            tokio::time::sleep(pause).await;
            step = *inner;
        }
        let task_id = format!("task-{}", job.job_id);
        match step {
            Step::Accept => {
                self.lock().tasks.insert(task_id.clone(), job.job_id);
                Ok(Accepted {
                    vendor_task_id: task_id.clone(),
                    raw: Some(json!({"task_id": task_id, "printer": printer.id.as_str()})),
                })
            }
            Step::AcceptButLoseAnswer => {
                self.lock().tasks.insert(task_id, job.job_id);
                Err(VendorError::new(
                    ErrorCode::VendorTimeout,
                    Decision::Retry,
                    "timed out after sending",
                )
                .outcome_unknown())
            }
            Step::LoseRequest => Err(VendorError::new(
                ErrorCode::VendorTimeout,
                Decision::Retry,
                "timed out after sending",
            )
            .outcome_unknown()),
            Step::Fail(err) => Err(err),
            Step::Slow(..) => unreachable!("unwrapped above"),
        }
    }
}

#[async_trait]
impl Backend for ScriptedBackend {
    fn name(&self) -> &'static str {
        self.name
    }

    fn setup_printer(
        &self,
        locator: &Value,
        _secrets: &Value,
    ) -> Result<PrinterSetup, InvalidPrinterConfig> {
        if locator.get("reject").is_some() {
            return Err("the scripted backend refuses this locator".into());
        }
        Ok(PrinterSetup {
            device: locator
                .get("device")
                .and_then(Value::as_str)
                .unwrap_or("default-device")
                .to_owned(),
            max_in_flight: locator
                .get("max_in_flight")
                .and_then(Value::as_u64)
                .unwrap_or(4) as u32,
        })
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["device_key"]
    }

    fn check_vendor_options(
        &self,
        options: &serde_json::Map<String, Value>,
    ) -> Result<(), UnsupportedOption> {
        match options.keys().find(|k| k.as_str() != "quality") {
            Some(key) => {
                Err(format!("vendor option `{key}` is not accepted by the scripted backend").into())
            }
            None => Ok(()),
        }
    }

    async fn printer_status(&self, printer: &PrinterContext) -> Result<PrinterStatus, VendorError> {
        let (online, pause) = {
            let mut state = self.lock();
            state.printer_status_calls += 1;
            let online = state
                .online
                .get(printer.id.as_str())
                .copied()
                .unwrap_or(Some(true));
            (online, state.printer_status_pause)
        };
        tokio::time::sleep(pause).await;
        Ok(PrinterStatus {
            online,
            ready: Some(true),
            conditions: vec![],
            vendor_status: Some("idle".into()),
        })
    }
}

#[async_trait]
impl PrintTarget for ScriptedBackend {
    fn poll_plan(&self) -> PollPlan {
        self.poll
    }

    fn supports_cancel(&self) -> bool {
        self.supports_cancel
    }

    async fn submit(
        &self,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Accepted, VendorError> {
        let device = Self::device(printer);
        tracing::info!(?printer, job_id = %job.job_id, "scripted submit");
        let step = {
            let mut state = self.lock();
            *state.submits_per_job.entry(job.job_id).or_default() += 1;
            *state
                .submits_per_printer
                .entry(printer.id.to_string())
                .or_default() += 1;
            let now = {
                let n = state.in_flight.entry(device.clone()).or_default();
                *n += 1;
                *n
            };
            let seen = state.max_in_flight_seen.entry(device.clone()).or_default();
            *seen = (*seen).max(now);
            let queued = state
                .steps
                .get_mut(printer.id.as_str())
                .and_then(VecDeque::pop_front);
            queued
                .or_else(|| state.default_step.get(printer.id.as_str()).cloned())
                .unwrap_or(Step::Accept)
        };
        let outcome = self.run(step, printer, job).await;
        if let Some(n) = self.lock().in_flight.get_mut(&device) {
            *n -= 1;
        }
        outcome
    }

    async fn task_status(
        &self,
        _printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<TaskReport, VendorError> {
        let mut state = self.lock();
        state.status_calls += 1;
        let progress = state
            .reports
            .get_mut(vendor_task_id)
            .and_then(VecDeque::pop_front)
            .unwrap_or(TaskProgress::Completed);
        let vendor_status = match &progress {
            TaskProgress::Processing { reason } => reason.to_uppercase(),
            TaskProgress::Completed => "DONE".into(),
            TaskProgress::Failed { .. } => "FAILED".into(),
            TaskProgress::Canceled => "CANCELED".into(),
        };
        Ok(TaskReport {
            progress,
            vendor_status,
            raw: Some(json!({"task": vendor_task_id})),
        })
    }

    /// The scripted vendor finds tasks by the job's id: a lookup unique to the job.
    fn lookup_kind(&self) -> LookupKind {
        LookupKind::Unique {
            horizon: Duration::from_secs(24 * 3600),
        }
    }

    async fn find_task(
        &self,
        _printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Lookup, VendorError> {
        let mut state = self.lock();
        state.lookups += 1;
        let found = state
            .tasks
            .iter()
            .find(|(_, j)| **j == job.job_id)
            .map(|(t, _)| t.clone());
        Ok(match found {
            Some(task) => Lookup::Found {
                vendor_task_id: task.clone(),
                report: TaskReport {
                    progress: TaskProgress::Processing {
                        reason: "printing".into(),
                    },
                    vendor_status: "PRINTING".into(),
                    raw: Some(json!({"task": task})),
                },
            },
            None => Lookup::NotFound,
        })
    }

    async fn cancel(
        &self,
        _printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<CancelOutcome, VendorError> {
        self.lock().cancels += 1;
        Ok(CancelOutcome::Canceled {
            raw: Some(json!({"canceled": vendor_task_id})),
        })
    }

    async fn capabilities(
        &self,
        _printer: &PrinterContext,
    ) -> Result<CapabilitiesReport, VendorError> {
        Ok(CapabilitiesReport {
            capabilities: Capabilities {
                papers: vec![PaperSize {
                    id: "9".into(),
                    name: "A4".into(),
                    width_mm: Some(210.0),
                    height_mm: Some(297.0),
                }],
                color_modes: vec![ColorMode::Monochrome],
                sides: vec![Sides::OneSided, Sides::TwoSidedLongEdge],
                copies_max: 10,
                orientations: vec![Orientation::Portrait, Orientation::Landscape],
                trays: vec!["Tray 1".into()],
                media_types: vec![],
                custom_paper: false,
                ..Default::default()
            },
            raw: json!({"fixture": true}),
        })
    }
}

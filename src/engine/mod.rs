//! The dispatch engine: one claimer per process takes due jobs in batches under leases
//! (`claim`) and hands each to a worker task, which calls the job's print target and moves
//! the job through the one-way state machine. Every decision about an error comes
//! from the error's [`Decision`]. One module per loop — `dispatch`, `poll`, `cancel`,
//! `reconcile` — on the shared lease code of `lease`; `notify` wakes the claimer,
//! `gate` guards every non-worker vendor call on a device, `status` checks printers,
//! `outbox` delivers webhooks, `callbacks` confirms and applies recorded vendor callbacks.
//! This file holds the engine, its settings and `handle`, which routes a claimed job to its
//! loop.
//!
//! It knows vendors only through [`PrintTarget`]; it must not answer HTTP or call the
//! service layer.

mod callbacks;
mod cancel;
mod claim;
mod dispatch;
pub mod gate;
mod lease;
mod notify;
pub mod outbox;
pub mod pages;
mod poll;
mod reconcile;
pub mod route;
pub mod status;

pub use notify::wake_on_notify;
pub use poll::apply_task_report;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::backends::{
    BackendRegistry, CancelOutcome, DocumentPayload, Lookup, LookupKind, PrintTarget,
    PrinterContext, Secrets, SubmitRequest, TaskProgress, TaskReport, VendorError,
};
use crate::callback_token::CallbackKeys;
use crate::config::Config;
use crate::document_store::DocumentStore;
use crate::domain::backoff::{RetryPolicy, short_pause};
use crate::domain::{
    Decision, DocumentKind, DocumentType, ErrorCode, EventSource, JobError, JobState, PrinterId,
    Transition,
};
use crate::secrets_at_rest::Keyring;
use crate::store::jobs::{AttributionRefused, JobRow, JobUpdate};
use crate::store::printers::{BreakerEffect, Failure, PrinterRow};
use crate::store::{self, StoreError};

/// The channel the `jobs_due_notify` trigger signals on.
pub const DUE_CHANNEL: &str = "print_gateway_jobs_due";

/// At most one NOTIFY for accepted jobs per this interval, however many are accepted.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(10);

/// Engine settings, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub workers: u32,
    pub lease: Duration,
    pub vendor_timeout: Duration,
    pub sweep_interval: Duration,
    pub retry: RetryPolicy,
    pub device_wait_retry: Duration,
    pub device_wait_max: Duration,
    pub breaker_threshold: i32,
    pub breaker_cooldown: Duration,
    pub reconcile_every: Duration,
    pub unconfirmed_give_up: Duration,
    /// How long new submits to a device wait while another submit's outcome is unknown.
    pub device_hold: Duration,
    pub public_base_url: Option<String>,
    /// How long the accept path may remember a printer's settings.
    pub printer_cache: Duration,
    /// Documents converted at once, and the limits of one conversion.
    pub render_concurrency: u32,
    pub render: pages::RenderLimits,
}

impl EngineSettings {
    pub fn from_config(config: &Config) -> EngineSettings {
        EngineSettings {
            workers: config.worker_concurrency,
            lease: config.lease(),
            vendor_timeout: config.vendor_timeout(),
            sweep_interval: Duration::from_millis(config.sweep_interval_ms),
            retry: RetryPolicy {
                base: Duration::from_millis(config.retry_base_ms),
                max: Duration::from_millis(config.retry_max_ms),
                max_attempts: config.retry_max_attempts,
            },
            device_wait_retry: Duration::from_secs(config.device_wait_retry_secs),
            device_wait_max: Duration::from_secs(config.device_wait_max_secs),
            breaker_threshold: config.breaker_threshold as i32,
            breaker_cooldown: Duration::from_secs(config.breaker_cooldown_secs),
            reconcile_every: Duration::from_secs(config.reconcile_every_secs),
            unconfirmed_give_up: Duration::from_secs(config.unconfirmed_give_up_secs),
            device_hold: Duration::from_secs(config.device_hold_after_unknown_secs)
                .max(config.vendor_timeout() + HOLD_MARGIN * 2 + Duration::from_secs(1)),
            public_base_url: config.public_base().map(str::to_owned),
            printer_cache: Duration::from_secs(config.printer_cache_secs),
            render_concurrency: config.render.render_concurrency,
            render: pages::RenderLimits::from_config(&config.render),
        }
    }
}

/// What can stop the engine handling a job; the job is looked at again when its lease
/// expires (a vendor's answer is never an `EngineError`: it is recorded on the job).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database failed or answered something unreadable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A job names a printer that no longer exists.
    #[error("job {job} names printer `{printer}`, which does not exist")]
    PrinterGone { job: Uuid, printer: String },
    /// A job the vendor accepted has no task id recorded.
    #[error("processing job {0} has no vendor task id")]
    NoVendorTask(Uuid),
    /// A job's document bytes cannot be found where they were stored.
    #[error("job {0} lost its document")]
    DocumentGone(Uuid),
}

impl From<sqlx::Error> for EngineError {
    fn from(err: sqlx::Error) -> Self {
        EngineError::Store(StoreError::Db(err))
    }
}

type EngineResult<T> = Result<T, EngineError>;

/// Lianke stamps task times in whole seconds; windows and holds allow this much either way.
const HOLD_MARGIN: Duration = Duration::from_secs(2);

/// The longest pause between two lookups of an unconfirmed job.
const RECONCILE_MAX_INTERVAL: Duration = Duration::from_secs(3600);

pub struct Engine {
    pool: PgPool,
    backends: BackendRegistry,
    settings: EngineSettings,
    callback_keys: CallbackKeys,
    /// Opens printer secrets for a vendor call (sealed at rest).
    keyring: Arc<Keyring>,
    /// Where document bytes live (Postgres or an object store).
    documents: DocumentStore,
    wake: Notify,
    /// Set when a callback was recorded here: wakes an inbox loop.
    callbacks_wake: Notify,
    /// What became due here (jobs, callbacks) for the announcer to tell the other
    /// replicas, coalesced.
    announce: notify::Announcement,
    /// Jobs this process put off to a near moment, so a worker wakes for them then.
    alarms: notify::Alarms,
    /// Converts documents a printer cannot take (bounded: see `pages`).
    renderer: pages::Renderer,
    /// The printer of every job a worker of this process holds (see [`claim::InFlight`]).
    in_flight: claim::InFlight,
    /// Printer settings the accept path checks (see [`store::printers::PrinterCache`]).
    printer_cache: store::printers::PrinterCache,
    /// Stores accepted jobs, concurrent ones together (see [`store::jobs::AcceptWriter`]).
    accept_writer: store::jobs::AcceptWriter,
    /// Records vendor callbacks, concurrent ones together (see
    /// [`store::callbacks::CallbackRecorder`]).
    callback_recorder: store::callbacks::CallbackRecorder,
    /// Writes the engine's job updates, concurrent ones together (see
    /// [`store::jobs::ApplyWriter`]).
    apply_writer: store::jobs::ApplyWriter,
    /// Callbacks recorded here for this process's inbox loops (see [`callbacks::Handoff`]).
    handoff: callbacks::Handoff,
}

fn after(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Why a printer row cannot be handed to its backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnusablePrinter {
    #[error(transparent)]
    Id(#[from] crate::domain::printer::InvalidPrinterId),
    #[error(transparent)]
    Secret(#[from] crate::secrets_at_rest::UnreadableSecret),
}

/// Builds the backend's view of a printer row, its secrets opened in memory for the call.
pub fn printer_context(
    row: &PrinterRow,
    keyring: &Keyring,
) -> Result<PrinterContext, UnusablePrinter> {
    Ok(PrinterContext {
        id: PrinterId::parse(&row.id)?,
        locator: row.locator.clone(),
        secrets: Secrets::new(keyring.open_printer_secrets(&row.id, &row.secrets)?),
        capabilities: row.capabilities.as_ref().map(|c| c.0.clone()),
    })
}

impl Engine {
    pub fn new(
        pool: PgPool,
        backends: BackendRegistry,
        settings: EngineSettings,
        callback_keys: CallbackKeys,
        keyring: Arc<Keyring>,
        documents: DocumentStore,
    ) -> Arc<Engine> {
        let renderer = pages::Renderer::new(settings.render_concurrency, settings.render);
        let printer_cache = store::printers::cache(settings.printer_cache);
        let accept_writer = store::jobs::accept_writer(pool.clone());
        let callback_recorder = store::callbacks::callback_recorder(pool.clone());
        let apply_writer = store::jobs::apply_writer(pool.clone());
        Arc::new(Engine {
            renderer,
            pool,
            backends,
            settings,
            callback_keys,
            keyring,
            documents,
            wake: Notify::new(),
            callbacks_wake: Notify::new(),
            announce: notify::Announcement::default(),
            alarms: notify::Alarms::new(),
            in_flight: claim::InFlight::default(),
            printer_cache,
            accept_writer,
            callback_recorder,
            apply_writer,
            handoff: callbacks::Handoff::default(),
        })
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The bounded document renderer (conversions, previews).
    pub fn renderer(&self) -> &pages::Renderer {
        &self.renderer
    }

    /// Printer settings remembered for accepting jobs; processes that accept jobs run its
    /// [`listen`](store::change_cache::ChangeCache::listen).
    pub fn printer_cache(&self) -> &store::printers::PrinterCache {
        &self.printer_cache
    }

    /// Where the accept path stores its jobs.
    pub fn accept_writer(&self) -> &store::jobs::AcceptWriter {
        &self.accept_writer
    }

    /// Where the callback webhooks record what vendors report.
    pub fn callback_recorder(&self) -> &store::callbacks::CallbackRecorder {
        &self.callback_recorder
    }

    /// The registry of configured backends.
    pub fn backends(&self) -> &BackendRegistry {
        &self.backends
    }

    /// Where document bytes live.
    pub fn documents(&self) -> &DocumentStore {
        &self.documents
    }

    /// The keys that seal and open printer and webhook secrets at rest.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The keys that sign and verify callback URLs (the webhook checks tokens with them).
    pub fn callback_keys(&self) -> &CallbackKeys {
        &self.callback_keys
    }

    /// Starts the claimer (which runs up to `workers` jobs at once), the callback inbox
    /// loops, the LISTEN task, the alarms and the sweeper on `tracker`; they stop when
    /// `shutdown` fires, each job in hand finished (or given back) first.
    pub fn spawn(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let engine = Arc::clone(self);
        let stop = shutdown.clone();
        let jobs = tracker.clone();
        tracker.spawn(async move { engine.claim_loop(jobs, stop).await });
        let engine = Arc::clone(self);
        let stop = shutdown.clone();
        tracker.spawn(async move { engine.listen_loop(stop).await });
        let engine = Arc::clone(self);
        let stop = shutdown.clone();
        tracker.spawn(async move { engine.alarm_loop(stop).await });
        self.take_callback_handoffs();
        for _ in 0..callbacks::LOOPS {
            let engine = Arc::clone(self);
            let stop = shutdown.clone();
            tracker.spawn(async move { engine.callback_loop(stop).await });
        }
        let engine = Arc::clone(self);
        tracker.spawn(async move { engine.sweep_loop(shutdown).await });
    }

    /// A job became due now (the API accepted it): wakes an idle worker of this process at
    /// once and, coalesced, the workers of every replica through one NOTIFY. Accepts carry
    /// no `pg_notify` of their own (it would serialise their commits); the sweep is the
    /// backstop if a notification is lost.
    pub fn job_due(&self) {
        self.wake.notify_one();
        self.announce.jobs();
    }

    /// Writes a job's update (the one guarded state-machine write) and, when it leaves the
    /// job due soon, sets an alarm so that a worker here takes it up then rather than at
    /// the next sweep.
    async fn save(&self, id: Uuid, update: &JobUpdate) -> EngineResult<Option<JobRow>> {
        let row = self
            .apply_writer
            .write((id, update.clone(), tracing::Span::current()))
            .await?;
        if let (Some(_), Some(at)) = (&row, update.due_at) {
            self.wake_at(at);
        }
        Ok(row)
    }

    async fn sweep_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.wake.notify_one(),
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn handle(&self, job: JobRow, token: Uuid, pre: Prefetched) -> EngineResult<()> {
        let state = job.state;
        // A pool job is routed before each submit (never after one started).
        let mut printer_id = job.printer_id.clone();
        if state == JobState::Pending
            && let Some(pool_id) = job.pool_id.as_deref()
            && job.submit_started_at.is_none()
            && !job.cancel_requested
            && job.expires_at.is_none_or(|t| t > Utc::now())
        {
            match self.route_pending(&job, pool_id, token).await? {
                Some(id) => printer_id = id,
                None => return Ok(()),
            }
        }
        let job = if printer_id != job.printer_id {
            JobRow { printer_id, ..job }
        } else {
            job
        };
        let printer = match pre.printer.filter(|p| p.id == job.printer_id) {
            Some(printer) => Some(printer),
            None => store::printers::get(&self.pool, &job.printer_id).await?,
        };
        let Some(printer) = printer else {
            return Err(EngineError::PrinterGone {
                job: job.id,
                printer: job.printer_id.clone(),
            });
        };
        // claim_due only hands out jobs of configured backends; if the registry lost one
        // meanwhile, leave the job to a replica that has it.
        let Some(backend) = self.backends.target(&printer.backend).cloned() else {
            tracing::warn!(job_id = %job.id, backend = %printer.backend, "no such backend here; job left for another replica");
            return self
                .release(&job, token, after(self.settings.sweep_interval * 10))
                .await;
        };
        let mut context = match printer_context(&printer, &self.keyring) {
            Ok(context) => context,
            Err(detail) => {
                let error = JobError {
                    code: ErrorCode::BackendUnavailable,
                    message: format!("printer `{}` cannot be used: {detail}", printer.id),
                    vendor_code: None,
                    vendor_message: None,
                };
                return self
                    .fail_now(&job, state, token, error, EventSource::Dispatcher)
                    .await;
            }
        };
        if state == JobState::Pending
            && !self
                .strict_options_checked(&job, &printer, backend.as_ref(), &mut context, token)
                .await?
        {
            return Ok(());
        }
        let document = pre.document.filter(|d| d.id == job.document_id);
        let work = Work {
            document: document.as_ref(),
            job: &job,
            printer: &printer,
            backend: backend.as_ref(),
            context: &context,
            token,
        };
        match state {
            JobState::Pending => self.dispatch(&work).await,
            // A vendor without a cancel call (Zhimu) keeps being polled; the API refuses
            // such cancels, but one may have been asked while the submit was in flight.
            JobState::Processing
                if job.cancel_requested
                    && backend.supports_cancel()
                    && job.state_reason.as_deref() != Some(REASON_CANCELING) =>
            {
                self.cancel_at_vendor(&work).await
            }
            // Past its deadline and still not printed: take it back from the vendor.
            JobState::Processing
                if job.expires_at.is_some_and(|t| t <= Utc::now())
                    && !job.cancel_requested
                    && backend.supports_cancel() =>
            {
                let update = JobUpdate::stay(
                    JobState::Processing,
                    EventSource::Dispatcher,
                    "cancel_requested",
                )
                .reason("expired")
                .message(
                    "the job was not printed before its expires_at; canceling it at the vendor",
                )
                .request_cancel()
                .due(Utc::now())
                .leased(token);
                self.save(job.id, &update).await?;
                Ok(())
            }
            JobState::Processing => self.poll(&work).await,
            JobState::Unconfirmed => self.reconcile(&work).await,
            JobState::Completed | JobState::Failed | JobState::Canceled => Ok(()),
        }
    }
}

/// The reason shown while a vendor works on a cancel.
pub const REASON_CANCELING: &str = "canceling";

/// The engine's transitions are fixed pairs known to be legal; the table in
/// [`JobState::can_move_to`] is still the judge.
fn transition(from: JobState, to: JobState) -> Transition {
    Transition::new(from, to)
        .unwrap_or_else(|err| unreachable!("engine transition table out of date: {err}"))
}

/// A processing job's vendor task id; its absence means the row is corrupt.
fn vendor_task_of(job: &JobRow) -> EngineResult<String> {
    job.vendor_task_id
        .clone()
        .ok_or(EngineError::NoVendorTask(job.id))
}

/// What the claimer read for a job in one statement per batch, so that its worker need
/// not read it again (each is re-read when missing or not the job's any more: a pool job
/// routed to another printer).
#[derive(Default)]
struct Prefetched {
    printer: Option<PrinterRow>,
    document: Option<store::documents::DocumentRow>,
}

struct Work<'a> {
    job: &'a JobRow,
    /// The job's document row when the claimer read it.
    document: Option<&'a store::documents::DocumentRow>,
    printer: &'a PrinterRow,
    backend: &'a dyn PrintTarget,
    context: &'a PrinterContext,
    token: Uuid,
}

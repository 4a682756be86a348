//! The dispatch engine: workers claim due jobs under leases, call the job's backend, and
//! move the job through the one-way state machine. The same workers poll vendors for
//! status and reconcile unconfirmed submits; every decision about an error comes from the
//! error's [`Decision`].

pub mod outbox;
pub mod retry;
pub mod status;
pub mod wecom;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::backends::{
    Backend, BackendRegistry, CancelOutcome, DocumentPayload, Lookup, LookupKind, PrinterContext,
    Secrets, SubmitRequest, TaskProgress, TaskReport, VendorError,
};
use crate::callback_token::CallbackKeys;
use crate::config::Config;
use crate::document_store::DocumentStore;
use crate::domain::{
    Decision, DocumentKind, DocumentType, ErrorCode, EventSource, JobError, JobState, PrinterId,
    Transition,
};
use crate::secrets_at_rest::Keyring;
use crate::store::jobs::{AttributionRefused, JobRow, JobUpdate};
use crate::store::printers::{BreakerEffect, Failure, PrinterRow};
use crate::store::{self, StoreError};
use retry::{RetryPolicy, short_pause};

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
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// Set when jobs became due here; the announcer tells the other replicas (coalesced).
    announce: Notify,
}

fn after(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Builds the backend's view of a printer row, its secrets opened in memory for the call.
pub fn printer_context(row: &PrinterRow, keyring: &Keyring) -> Result<PrinterContext, String> {
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
        Arc::new(Engine {
            pool,
            backends,
            settings,
            callback_keys,
            keyring,
            documents,
            wake: Notify::new(),
            announce: Notify::new(),
        })
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
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

    /// Starts the workers, the LISTEN task and the sweeper on `tracker`; they stop when
    /// `shutdown` fires, each finishing (or giving back) the job it holds.
    pub fn spawn(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        for _ in 0..self.settings.workers {
            let engine = Arc::clone(self);
            let shutdown = shutdown.clone();
            tracker.spawn(async move { engine.worker_loop(shutdown).await });
        }
        let engine = Arc::clone(self);
        let stop = shutdown.clone();
        tracker.spawn(async move { engine.listen_loop(stop).await });
        let engine = Arc::clone(self);
        tracker.spawn(async move { engine.sweep_loop(shutdown).await });
    }

    /// A job became due now (the API accepted it): wakes an idle worker of this process at
    /// once and, coalesced, the workers of every replica through one NOTIFY. Accepts carry
    /// no `pg_notify` of their own (it would serialise their commits); the sweep is the
    /// backstop if a notification is lost.
    pub fn job_due(&self) {
        self.wake.notify_one();
        self.announce.notify_one();
    }

    /// Starts the announcer of [`Engine::job_due`] (processes that accept jobs run it).
    pub fn spawn_announcer(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let engine = Arc::clone(self);
        tracker.spawn(async move { engine.announce_loop(shutdown).await });
    }

    /// The first due job is announced at once; later ones within `ANNOUNCE_EVERY` share
    /// the next notification.
    async fn announce_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.announce.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(err) = store::jobs::notify_due(&self.pool, DUE_CHANNEL).await {
                tracing::warn!(error = %err, "could not notify other replicas of due jobs; their sweep will find them");
            }
            tokio::select! {
                _ = tokio::time::sleep(ANNOUNCE_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn worker_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let token = Uuid::new_v4();
        while !shutdown.is_cancelled() {
            match self.run_one(token).await {
                // Found work: pass the baton so another idle worker looks too.
                Ok(true) => self.wake.notify_one(),
                Ok(false) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "dispatch worker error");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
    }

    async fn listen_loop(self: Arc<Self>, shutdown: CancellationToken) {
        wake_on_notify(&self.pool, DUE_CHANNEL, &self.wake, &shutdown).await;
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

    /// Claims and handles one due job. True when there was one.
    pub async fn run_one(&self, token: Uuid) -> EngineResult<bool> {
        let claimed = store::jobs::claim_due(
            &self.pool,
            token,
            1,
            self.settings.lease,
            &self.backends.names(),
        )
        .await?;
        let Some(job) = claimed.into_iter().next() else {
            return Ok(false);
        };
        let id = job.id;
        let span = tracing::info_span!("job", job_id = %id);
        if let Err(err) = self.handle(job, token).instrument(span).await {
            tracing::error!(job_id = %id, error = %err, "handling a job failed; it will be retried when its lease expires");
        }
        Ok(true)
    }

    /// Handles everything due now, one job at a time, until nothing is due: the
    /// deterministic driver for tests and tools.
    pub async fn run_due_now(&self) -> EngineResult<usize> {
        let token = Uuid::new_v4();
        let mut handled = 0;
        while self.run_one(token).await? {
            handled += 1;
        }
        Ok(handled)
    }

    async fn handle(&self, job: JobRow, token: Uuid) -> EngineResult<()> {
        let state = job.job_state()?;
        let Some(printer) = store::printers::get(&self.pool, &job.printer_id).await? else {
            return Err(
                StoreError::Corrupt(format!("job {} names a missing printer", job.id)).into(),
            );
        };
        // claim_due only hands out jobs of configured backends; if the registry lost one
        // meanwhile, leave the job to a replica that has it.
        let Some(backend) = self.backends.get(&printer.backend).cloned() else {
            tracing::warn!(job_id = %job.id, backend = %printer.backend, "no such backend here; job left for another replica");
            return self
                .release(&job, token, after(self.settings.sweep_interval * 10))
                .await;
        };
        let context = match printer_context(&printer, &self.keyring) {
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
        let work = Work {
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
                store::jobs::apply_on(&self.pool, job.id, &update).await?;
                Ok(())
            }
            JobState::Processing => self.poll(&work).await,
            JobState::Unconfirmed => self.reconcile(&work).await,
            JobState::Completed | JobState::Failed | JobState::Canceled => Ok(()),
        }
    }

    async fn fail_now(
        &self,
        job: &JobRow,
        from: JobState,
        token: Uuid,
        error: JobError,
        source: EventSource,
    ) -> EngineResult<()> {
        if let Ok(t) = Transition::new(from, JobState::Failed) {
            let update = JobUpdate::transition(t, source)
                .reason(error.code.as_str())
                .message(error.message.clone())
                .error(error)
                .settle_submit()
                .leased(token);
            store::jobs::apply_on(&self.pool, job.id, &update).await?;
        }
        Ok(())
    }

    async fn release(&self, job: &JobRow, token: Uuid, due: DateTime<Utc>) -> EngineResult<()> {
        store::jobs::release(&self.pool, job.id, token, due).await?;
        Ok(())
    }

    fn submit_request(
        &self,
        w: &Work<'_>,
        bytes: Option<bytes::Bytes>,
        doc: &store::documents::DocumentRow,
    ) -> SubmitRequest {
        let callback_url = match (&self.settings.public_base_url, w.backend.wants_callback()) {
            (Some(base), true) => Some(format!(
                "{base}/webhooks/{}/{}?token={}",
                w.backend.name(),
                w.job.id,
                self.callback_keys.sign(w.job.id)
            )),
            _ => None,
        };
        SubmitRequest {
            job_id: w.job.id,
            document: DocumentPayload {
                kind: DocumentKind::parse(&doc.kind).unwrap_or(DocumentKind::Upload),
                doc_type: doc
                    .doc_type
                    .as_deref()
                    .and_then(|ext| DocumentType::from_extension(&format!("x.{ext}"))),
                content_type: doc.content_type.clone(),
                filename: doc.filename.clone(),
                url: doc.url.clone(),
                bytes,
            },
            options: w.job.options.0.clone(),
            callback_url,
            created_at: w.job.created_at,
            submit_started_at: w.job.submit_started_at,
            taken_task_ids: Vec::new(),
        }
    }

    async fn load_submit_request(&self, w: &Work<'_>) -> EngineResult<Option<SubmitRequest>> {
        let Some(doc) = store::documents::get(&self.pool, w.job.document_id).await? else {
            return Ok(None);
        };
        let bytes = if doc.url.is_some() {
            None
        } else {
            match store::documents::content_or_key(&self.pool, doc.id).await? {
                (Some(bytes), _) => Some(bytes),
                (None, Some(key)) => self.documents.get(&key).await?,
                (None, None) => None,
            }
        };
        Ok(Some(self.submit_request(w, bytes, &doc)))
    }

    /// A pending job: submit it, unless it must expire, was canceled, or its last submit
    /// was cut off by a crash.
    async fn dispatch(&self, w: &Work<'_>) -> EngineResult<()> {
        let job = w.job;
        let now = Utc::now();
        if job.cancel_requested && job.submit_started_at.is_none() {
            let update = JobUpdate::transition(
                transition(JobState::Pending, JobState::Canceled),
                EventSource::Dispatcher,
            )
            .reason("canceled")
            .leased(w.token);
            store::jobs::apply_on(&self.pool, job.id, &update).await?;
            return Ok(());
        }
        if job.submit_started_at.is_some() {
            // The previous holder of this job started a submit and vanished: the vendor may
            // have it. Never send it again; let the reconciler ask.
            let update = JobUpdate::transition(transition(JobState::Pending, JobState::Unconfirmed), EventSource::Dispatcher)
                .reason("submit_outcome_unknown")
                .message("the worker submitting this job stopped (it crashed, or lost the database) before the vendor's answer was recorded; whether the vendor has the job is unknown, so it is not sent again")
                .due(now)
                .leased(w.token);
            store::jobs::apply_on(&self.pool, job.id, &update).await?;
            return Ok(());
        }
        if job.expires_at.is_some_and(|t| t <= now) {
            let error = JobError {
                code: ErrorCode::Expired,
                message: "the job was not printed before its expires_at".into(),
                vendor_code: None,
                vendor_message: job.error.as_ref().and_then(|e| e.0.vendor_message.clone()),
            };
            return self
                .fail_now(
                    job,
                    JobState::Pending,
                    w.token,
                    error,
                    EventSource::Dispatcher,
                )
                .await;
        }
        if !w.printer.enabled {
            return self
                .release(job, w.token, after(self.settings.sweep_interval * 10))
                .await;
        }
        if w.printer.breaker_failures >= self.settings.breaker_threshold
            && !store::printers::take_breaker_trial(
                &self.pool,
                &w.printer.id,
                self.settings.breaker_threshold,
                self.settings.breaker_cooldown,
            )
            .await?
        {
            let due = w
                .printer
                .breaker_open_until
                .unwrap_or_else(|| after(self.settings.breaker_cooldown));
            return self
                .release(job, w.token, due.max(after(short_pause())))
                .await;
        }
        let Some(request) = self.load_submit_request(w).await? else {
            let error = JobError {
                code: ErrorCode::DocumentUnavailable,
                message: "the job's document is missing from the store".into(),
                vendor_code: None,
                vendor_message: None,
            };
            return self
                .fail_now(
                    job,
                    JobState::Pending,
                    w.token,
                    error,
                    EventSource::Dispatcher,
                )
                .await;
        };
        let Some(slot) = self.take_slot(w).await? else {
            return self.release(job, w.token, after(short_pause())).await;
        };
        if let Some(until) = self.device_held(w).await? {
            self.free_slot(w, slot).await;
            return self.wait_for_device_hold(w, until).await;
        }
        if !store::jobs::mark_submit_started(&self.pool, job.id, w.token).await? {
            self.free_slot(w, slot).await;
            return Ok(());
        }
        let mut outcome = self.call(w.backend.submit(w.context, &request)).await;
        if let Err(err) = &outcome
            && err.decision == Decision::RefreshTokenOnce
            && !err.outcome_unknown
        {
            // The vendor refused our token before taking the job: a fresh token, one retry.
            w.backend.invalidate_credentials(w.context).await;
            outcome = self
                .call(w.backend.submit(w.context, &request))
                .await
                .map_err(|mut err| {
                    if err.decision == Decision::RefreshTokenOnce {
                        err.decision = Decision::Fail;
                        err.code = ErrorCode::VendorAuthFailed;
                    }
                    err
                });
        }
        crate::observe::submit(
            w.backend.name(),
            match &outcome {
                Ok(_) => "accepted",
                Err(e) if e.outcome_unknown => "unknown",
                Err(_) => "error",
            },
        );

        // The outcome is recorded before the device slot is given back: the next job on
        // the device must see an unknown outcome (and wait) rather than slip in between.
        let recorded = self.record_submit_outcome(w, outcome).await;
        self.free_slot(w, slot).await;
        recorded
    }

    /// Records what a submit came back with (the device slot is still held).
    async fn record_submit_outcome(
        &self,
        w: &Work<'_>,
        outcome: Result<crate::backends::Accepted, VendorError>,
    ) -> EngineResult<()> {
        let job = w.job;
        let now = Utc::now();
        match outcome {
            Ok(accepted) => {
                // An accepted submit does not close the breaker: only a printed task does.
                // Lianke counts consecutive failed *tasks* toward its 30-failure suspension,
                // and each of those tasks was an accepted submit.
                let due = if job.cancel_requested {
                    now
                } else {
                    after(w.backend.poll_plan().first_after)
                };
                let update = JobUpdate::transition(
                    transition(JobState::Pending, JobState::Processing),
                    EventSource::Dispatcher,
                )
                .reason("submitted")
                .vendor_task(accepted.vendor_task_id)
                .payload(accepted.raw)
                .due(due)
                .settle_submit()
                .count_attempt();
                let task = update.vendor_task_id.clone().unwrap_or_default();
                match self
                    .apply_retrying(job.id, &update.clone().leased(w.token))
                    .await
                {
                    // A cancel arrived while the submit was in flight: send it right away.
                    Ok(Some(row)) if row.cancel_requested => {
                        store::jobs::make_due_now(&self.pool, row.id).await?
                    }
                    Ok(Some(_)) => {}
                    // The job moved while the submit was in flight (the lease ran out and
                    // another worker marked it unconfirmed, or a callback got there
                    // first): the answer is still the best evidence of its task.
                    Ok(None) => self.record_late_answer(job.id, &task, update).await?,
                    Err(err) => {
                        tracing::error!(job_id = %job.id, vendor_task_id = %task, error = %err,
                            "the vendor accepted the job but its answer could not be recorded; the job will be marked unconfirmed and needs the vendor's evidence or an operator");
                        return Err(err);
                    }
                }
                Ok(())
            }
            Err(err) => self.after_submit_error(w, err).await,
        }
    }

    /// Applies an update, retrying for a while when the database is unreachable (a submit's
    /// answer is worth waiting for: losing it turns a known task into an unknown outcome).
    async fn apply_retrying(&self, id: Uuid, update: &JobUpdate) -> EngineResult<Option<JobRow>> {
        let deadline = tokio::time::Instant::now() + self.settings.lease / 2;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match store::jobs::apply_on(&self.pool, id, update).await {
                Ok(row) => return Ok(row),
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err.into()),
                Err(err) => {
                    tracing::warn!(job_id = %id, error = %err, attempt, "recording a vendor answer failed; retrying");
                    tokio::time::sleep(
                        self.settings
                            .retry
                            .delay(attempt)
                            .min(Duration::from_secs(2)),
                    )
                    .await;
                }
            }
        }
    }

    /// The vendor answered a submit with `task`, but the job had moved meanwhile. When it
    /// is still waiting for evidence, the answer is that evidence.
    async fn record_late_answer(
        &self,
        id: Uuid,
        task: &str,
        accepted: JobUpdate,
    ) -> EngineResult<()> {
        let Some(now) = store::jobs::get_any(&self.pool, id).await? else {
            return Ok(());
        };
        let state = now.job_state()?;
        match (state, now.vendor_task_id.as_deref()) {
            (JobState::Pending, None) => {
                // Not reclaimed yet: the answer applies as it would have under the lease.
                if store::jobs::apply_on(&self.pool, id, &accepted)
                    .await?
                    .is_none()
                {
                    return Box::pin(self.record_late_answer(id, task, accepted)).await;
                }
            }
            (JobState::Unconfirmed, None) => {
                let confirm = JobUpdate::transition(
                    transition(JobState::Unconfirmed, JobState::Processing),
                    EventSource::Dispatcher,
                )
                .reason("submit_confirmed")
                .message(format!("the vendor's answer to the submit (task {task}) arrived after the job had been marked unconfirmed"))
                .vendor_task(task)
                .payload(accepted.vendor_payload.clone())
                .settle_submit()
                .due(Utc::now());
                if store::jobs::apply_on(&self.pool, id, &confirm)
                    .await?
                    .is_none()
                {
                    return Box::pin(self.record_late_answer(id, task, accepted)).await;
                }
            }
            (_, Some(known)) if known == task => {}
            (_, Some(known)) => {
                tracing::error!(job_id = %id, answer_task = %task, recorded_task = %known,
                    "the vendor's answer names another task than the one recorded for the job");
            }
            (_, None) => {
                tracing::warn!(job_id = %id, vendor_task_id = %task, state = %state,
                    "the vendor accepted a submit for a job that has already ended");
            }
        }
        Ok(())
    }

    /// When the device has another submit whose outcome is unknown, the moment new submits
    /// may go again. Only vendors whose lookup is by time need the hold.
    async fn device_held(&self, w: &Work<'_>) -> EngineResult<Option<DateTime<Utc>>> {
        if !matches!(w.backend.lookup_kind(), LookupKind::ByTime { .. }) {
            return Ok(None);
        }
        Ok(store::jobs::device_hold_until(
            &self.pool,
            &w.printer.device,
            w.job.id,
            self.settings.device_hold,
        )
        .await?)
    }

    async fn wait_for_device_hold(&self, w: &Work<'_>, until: DateTime<Utc>) -> EngineResult<()> {
        const REASON: &str = "device_held_unknown_outcome";
        let mut update = JobUpdate::stay(JobState::Pending, EventSource::Dispatcher, "device_held")
            .reason(REASON)
            .message(format!(
                "another submit to device {} has an unknown outcome; new submits wait until it is settled or until {} so that a lookup by time cannot confuse two jobs",
                w.printer.device,
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ))
            .due(until.max(after(short_pause())))
            .leased(w.token);
        if w.job.state_reason.as_deref() == Some(REASON) {
            update = update.silent();
        }
        store::jobs::apply_on(&self.pool, w.job.id, &update).await?;
        Ok(())
    }

    async fn after_submit_error(&self, w: &Work<'_>, err: VendorError) -> EngineResult<()> {
        let job = w.job;
        self.count_printer_failure(w.printer, &err).await?;
        if err.outcome_unknown {
            let update = JobUpdate::transition(
                transition(JobState::Pending, JobState::Unconfirmed),
                EventSource::Dispatcher,
            )
            .reason("submit_outcome_unknown")
            .message(err.message.clone())
            .error(err.to_job_error())
            .payload(err.raw.clone())
            .due(match w.backend.lookup_kind() {
                // Nothing to ask: the reconciler says so at once.
                LookupKind::None => Utc::now(),
                _ => after(self.settings.reconcile_every.min(Duration::from_secs(5))),
            })
            .count_attempt()
            .leased(w.token);
            store::jobs::apply_on(&self.pool, job.id, &update).await?;
            return Ok(());
        }
        let attempts = job.attempts as u32 + 1;
        let deadline_passed = |limit: DateTime<Utc>| Utc::now() >= limit;
        let retry_at = match err.decision {
            Decision::Fail | Decision::RefreshTokenOnce => None,
            Decision::Retry if attempts >= self.settings.retry.max_attempts => None,
            Decision::Retry => Some(after(self.settings.retry.delay(attempts))),
            Decision::RetrySoon if attempts >= self.settings.retry.max_attempts => None,
            Decision::RetrySoon => Some(after(short_pause() * 3)),
            Decision::WaitForDevice => {
                let waited_out = job.created_at
                    + chrono::Duration::from_std(self.settings.device_wait_max)
                        .unwrap_or(chrono::Duration::MAX);
                let limit = job.expires_at.map_or(waited_out, |e| e.min(waited_out));
                if deadline_passed(limit) {
                    None
                } else {
                    Some(after(self.settings.device_wait_retry).min(limit))
                }
            }
        };
        // Never wait past the job's deadline: it expires at its next look.
        let retry_at = retry_at.map(|due| job.expires_at.map_or(due, |deadline| due.min(deadline)));
        let counted = !matches!(err.decision, Decision::WaitForDevice);
        match retry_at {
            Some(due) => {
                let reason = if err.decision == Decision::WaitForDevice {
                    "waiting_for_device"
                } else {
                    "retry_scheduled"
                };
                let mut update = JobUpdate::stay(
                    JobState::Pending,
                    EventSource::Dispatcher,
                    "retry_scheduled",
                )
                .reason(reason)
                .message(err.message.clone())
                .error(err.to_job_error())
                .payload(err.raw.clone())
                .due(due)
                .settle_submit()
                .leased(w.token);
                if counted {
                    update = update.count_attempt();
                }
                // A cancel asked while the submit was in flight is honoured now, not after
                // the backoff.
                if let Some(row) = store::jobs::apply_on(&self.pool, job.id, &update).await?
                    && row.cancel_requested
                {
                    store::jobs::make_due_now(&self.pool, row.id).await?;
                }
            }
            None => {
                let mut error = err.to_job_error();
                if matches!(err.decision, Decision::Retry | Decision::RetrySoon) {
                    error.message = format!("gave up after {attempts} attempts: {}", error.message);
                    error.code = ErrorCode::RetriesExhausted;
                }
                let mut update = JobUpdate::transition(
                    transition(JobState::Pending, JobState::Failed),
                    EventSource::Dispatcher,
                )
                .reason(err.code.as_str())
                .message(error.message.clone())
                .error(error)
                .payload(err.raw.clone())
                .settle_submit()
                .leased(w.token);
                if counted {
                    update = update.count_attempt();
                }
                store::jobs::apply_on(&self.pool, job.id, &update).await?;
            }
        }
        Ok(())
    }

    /// Records a failed call in the printer's health; it counts toward the breaker only
    /// when it says something a pause could fix (an authentication failure does not).
    async fn count_printer_failure(
        &self,
        printer: &PrinterRow,
        err: &VendorError,
    ) -> EngineResult<()> {
        let (threshold, cooldown) = (
            self.settings.breaker_threshold,
            self.settings.breaker_cooldown,
        );
        let effect = if err.opens_breaker {
            BreakerEffect::Open {
                threshold,
                cooldown,
            }
        } else if err.counts_for_breaker {
            BreakerEffect::Count {
                threshold,
                cooldown,
            }
        } else if err.code.is_printer_health() {
            BreakerEffect::None
        } else {
            // The job's own fault (document, options): the printer is fine.
            return Ok(());
        };
        let error = err.to_job_error();
        store::printers::record_failure(&self.pool, &printer.id, Failure::of(&error), effect)
            .await?;
        Ok(())
    }

    /// A processing job without news: ask the vendor.
    async fn poll(&self, w: &Work<'_>) -> EngineResult<()> {
        let task_id = vendor_task_of(w.job)?;
        let Some(slot) = self.take_slot(w).await? else {
            return self.release(w.job, w.token, after(short_pause())).await;
        };
        let mut outcome = self.call(w.backend.task_status(w.context, &task_id)).await;
        if let Err(err) = &outcome
            && err.decision == Decision::RefreshTokenOnce
        {
            w.backend.invalidate_credentials(w.context).await;
            outcome = self.call(w.backend.task_status(w.context, &task_id)).await;
        }
        self.free_slot(w, slot).await;
        match outcome {
            Ok(report) => {
                self.apply_report(w.job, report, EventSource::Poller, Some(w.token), w.backend)
                    .await?;
            }
            Err(err) => {
                let due = after(
                    self.settings
                        .retry
                        .delay(1)
                        .max(w.backend.poll_plan().every),
                );
                let update =
                    JobUpdate::stay(JobState::Processing, EventSource::Poller, "poll_failed")
                        .message(err.message.clone())
                        .payload(err.raw.clone())
                        .due(due)
                        .leased(w.token)
                        .silent();
                store::jobs::apply_on(&self.pool, w.job.id, &update).await?;
            }
        }
        Ok(())
    }

    /// Applies what a vendor says about a task (from a poll, a callback or the reconciler)
    /// to a processing job. Returns the updated job, or `None` when the job had moved on.
    pub async fn apply_report(
        &self,
        job: &JobRow,
        report: TaskReport,
        source: EventSource,
        lease: Option<Uuid>,
        backend: &dyn Backend,
    ) -> EngineResult<Option<JobRow>> {
        let since_dispatch = (Utc::now() - job.dispatched_at.unwrap_or(job.created_at))
            .to_std()
            .unwrap_or_default();
        apply_task_report(
            &self.pool,
            job,
            report,
            source,
            lease,
            backend.poll_interval(since_dispatch),
            self.settings.breaker_threshold,
            self.settings.breaker_cooldown,
        )
        .await
    }

    async fn cancel_at_vendor(&self, w: &Work<'_>) -> EngineResult<()> {
        let task_id = vendor_task_of(w.job)?;
        let Some(slot) = self.take_slot(w).await? else {
            return self.release(w.job, w.token, after(short_pause())).await;
        };
        let outcome = self.call(w.backend.cancel(w.context, &task_id)).await;
        self.free_slot(w, slot).await;
        let update = match outcome {
            Ok(CancelOutcome::Canceled { raw }) => {
                let update = JobUpdate::transition(
                    transition(JobState::Processing, JobState::Canceled),
                    EventSource::Dispatcher,
                )
                .reason("canceled")
                .payload(raw);
                if w.job.expires_at.is_some_and(|t| t <= Utc::now()) {
                    update.error(JobError {
                        code: ErrorCode::Expired,
                        message: "the job was not printed before its expires_at and was canceled at the vendor".into(),
                        vendor_code: None,
                        vendor_message: None,
                    })
                } else {
                    update
                }
            }
            Ok(CancelOutcome::Requested { raw }) => {
                JobUpdate::stay(JobState::Processing, EventSource::Dispatcher, "cancel_sent")
                    .reason(REASON_CANCELING)
                    .payload(raw)
                    .due(after(w.backend.poll_plan().every))
            }
            Err(err) => JobUpdate::stay(
                JobState::Processing,
                EventSource::Dispatcher,
                "cancel_failed",
            )
            .reason("cancel_requested")
            .message(err.message.clone())
            .payload(err.raw.clone())
            .due(after(self.settings.retry.delay(1))),
        };
        store::jobs::apply_on(&self.pool, w.job.id, &update.leased(w.token)).await?;
        Ok(())
    }

    /// An unconfirmed job: ask the vendor whether the submit arrived, when it can say so
    /// for certain. Never resubmit, never guess, never fail it: without evidence it stays
    /// `unconfirmed` until an operator settles it (`POST /v1/jobs/{id}/resolve`).
    async fn reconcile(&self, w: &Work<'_>) -> EngineResult<()> {
        let job = w.job;
        let started = job.submit_started_at.unwrap_or(job.updated_at);
        let kind = w.backend.lookup_kind();
        let Some(horizon) = kind.horizon() else {
            return self
                .stay_unconfirmed(
                    w,
                    "awaiting_operator",
                    format!(
                        "the submit's answer was lost and {} offers no way to look the task up; only an operator can settle this job (POST /v1/jobs/{}/resolve)",
                        w.backend.name(),
                        job.id
                    ),
                    None,
                )
                .await;
        };
        let now = Utc::now();
        let age = (now - started).to_std().unwrap_or_default();
        let next = self.next_lookup(age, horizon);
        let reach = self.settings.vendor_timeout + HOLD_MARGIN + Duration::from_secs(1);
        let by_time = matches!(kind, LookupKind::ByTime { .. });

        if by_time {
            let mut conn = self.pool.acquire().await?;
            let others = store::jobs::ambiguous_neighbours(
                &mut conn,
                &w.printer.device,
                job.id,
                started,
                reach,
            )
            .await?;
            drop(conn);
            if !others.is_empty() {
                return self
                    .stay_unconfirmed(w, "ambiguous_at_vendor", ambiguity_message(&others), next)
                    .await;
            }
        }
        let Some(mut request) = self.load_submit_request(w).await? else {
            return Err(StoreError::Corrupt(format!("job {} lost its document", job.id)).into());
        };
        request.taken_task_ids = store::jobs::task_ids_of_device_neighbours(
            &self.pool,
            &w.printer.device,
            job.id,
            job.created_at,
        )
        .await?;
        let Some(slot) = self.take_slot(w).await? else {
            return self.release(job, w.token, after(short_pause())).await;
        };
        let outcome = self.call(w.backend.find_task(w.context, &request)).await;
        self.free_slot(w, slot).await;
        // A lookup by time is conclusive only once the submit's window has closed.
        let window_closed = age > reach;
        match outcome {
            Ok(Lookup::Found {
                vendor_task_id,
                report,
            }) => {
                let how = if by_time {
                    "the only task created on the device in the submit's time window, with no other submit of unknown outcome near it"
                } else {
                    "the vendor's lookup matched the job"
                };
                let confirm = JobUpdate::transition(
                    transition(JobState::Unconfirmed, JobState::Processing),
                    EventSource::Reconciler,
                )
                .reason("submit_confirmed")
                .message(format!("found task {vendor_task_id}: {how}"))
                .vendor_task(vendor_task_id.clone())
                .payload(report.raw.clone())
                .settle_submit()
                .due(Utc::now())
                .leased(w.token);
                // Under the device's lock: nobody else holds the task, and no other
                // unknown-outcome submit appeared near this one meanwhile.
                let attributed = store::jobs::attribute_found_task(
                    &self.pool,
                    job.id,
                    &w.printer.device,
                    started,
                    if by_time { reach } else { Duration::ZERO },
                    &confirm,
                )
                .await?;
                match attributed {
                    Ok(row) => {
                        self.apply_report(&row, report, EventSource::Reconciler, None, w.backend)
                            .await?;
                    }
                    Err(AttributionRefused::JobMoved) => {}
                    Err(AttributionRefused::TaskHeldBy(holder)) => {
                        tracing::warn!(job_id = %job.id, %vendor_task_id, %holder, "the vendor lookup offered another job's task; ignored");
                        self.stay_unconfirmed(
                            w,
                            "ambiguous_at_vendor",
                            format!("the only task found near the submit ({vendor_task_id}) belongs to job {holder}; this job's outcome is still unknown"),
                            next,
                        )
                        .await?;
                    }
                    Err(AttributionRefused::Ambiguous(others)) => {
                        self.stay_unconfirmed(
                            w,
                            "ambiguous_at_vendor",
                            ambiguity_message(&others),
                            next,
                        )
                        .await?;
                    }
                }
            }
            Ok(Lookup::NotFound) if job.cancel_requested && (window_closed || !by_time) => {
                let update = JobUpdate::transition(
                    transition(JobState::Unconfirmed, JobState::Canceled),
                    EventSource::Reconciler,
                )
                .reason("canceled")
                .message("the vendor has no record of the submit; canceled as asked")
                .leased(w.token);
                store::jobs::apply_on(&self.pool, job.id, &update).await?;
            }
            Ok(Lookup::NotFound) => {
                let (reason, message) = if age >= self.settings.unconfirmed_give_up {
                    (
                        "awaiting_operator",
                        format!(
                            "{} lists no task for this submit, so it was most likely not printed; the gateway does not guess: an operator settles it (POST /v1/jobs/{}/resolve)",
                            w.backend.name(),
                            job.id
                        ),
                    )
                } else {
                    (
                        "not_found_at_vendor",
                        format!(
                            "{} lists no task for this submit yet; asking again",
                            w.backend.name()
                        ),
                    )
                };
                self.stay_unconfirmed(w, reason, message, next).await?;
            }
            Err(err) => {
                let reason = if age >= self.settings.unconfirmed_give_up {
                    "awaiting_operator"
                } else {
                    "lookup_failed"
                };
                self.stay_unconfirmed(
                    w,
                    reason,
                    format!(
                        "the vendor could not be asked about the submit: {}",
                        err.message
                    ),
                    next,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// When to ask about an unconfirmed job next: every RECONCILE_EVERY_SECS at first, then
    /// less and less often, and not at all once the vendor can no longer answer.
    fn next_lookup(&self, age: Duration, horizon: Duration) -> Option<DateTime<Utc>> {
        if age >= horizon {
            return None;
        }
        let every = if age < self.settings.unconfirmed_give_up {
            self.settings.reconcile_every
        } else {
            (age / 4).clamp(self.settings.reconcile_every, RECONCILE_MAX_INTERVAL)
        };
        Some(after(every))
    }

    /// Keeps a job `unconfirmed` with what is known in its reason (an event when the reason
    /// changes), asking again at `next` or, when `None`, never: only an operator or a
    /// callback can settle it then.
    async fn stay_unconfirmed(
        &self,
        w: &Work<'_>,
        reason: &'static str,
        message: String,
        next: Option<DateTime<Utc>>,
    ) -> EngineResult<()> {
        let mut update =
            JobUpdate::stay(JobState::Unconfirmed, EventSource::Reconciler, "reconciled")
                .reason(reason)
                .message(message)
                .leased(w.token);
        update = match next {
            Some(at) => update.due(at),
            None => update.parked(),
        };
        if w.job.state_reason.as_deref() == Some(reason) {
            update = update.silent();
        }
        store::jobs::apply_on(&self.pool, w.job.id, &update).await?;
        Ok(())
    }

    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, VendorError>>,
    ) -> Result<T, VendorError> {
        match tokio::time::timeout(self.settings.vendor_timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(VendorError::new(
                ErrorCode::VendorTimeout,
                Decision::Retry,
                "the vendor did not answer in time",
            )
            .outcome_unknown()),
        }
    }

    async fn take_slot(&self, w: &Work<'_>) -> EngineResult<Option<i32>> {
        Ok(store::slots::acquire(
            &self.pool,
            &w.printer.device,
            w.printer.max_in_flight,
            w.job.id,
            self.settings.lease,
        )
        .await?)
    }

    async fn free_slot(&self, w: &Work<'_>, slot: i32) {
        if let Err(err) = store::slots::release(&self.pool, &w.printer.device, slot, w.job.id).await
        {
            tracing::warn!(error = %err, device = %w.printer.device, "could not free a device slot; it expires with its lease");
        }
        // Another job on this device may be waiting for the slot.
        self.wake.notify_one();
    }
}

/// Wakes one waiter of `wake` on every notification on `channel`, reconnecting when the
/// connection drops, until `shutdown`. Loops that use it keep a periodic sweep for the gaps.
pub async fn wake_on_notify(
    pool: &PgPool,
    channel: &str,
    wake: &Notify,
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, channel, "cannot LISTEN; relying on the sweep");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        if let Err(err) = listener.listen(channel).await {
            tracing::warn!(error = %err, channel, "LISTEN failed");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        loop {
            tokio::select! {
                message = listener.recv() => match message {
                    Ok(_) => wake.notify_one(),
                    Err(err) => {
                        tracing::warn!(error = %err, channel, "LISTEN connection lost; reconnecting");
                        break;
                    }
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Applies a vendor's task report to a processing job (shared by the poller, callbacks and
/// the reconciler).
#[expect(
    clippy::too_many_arguments,
    reason = "the engine and the webhook pass their own settings"
)]
pub async fn apply_task_report(
    pool: &PgPool,
    job: &JobRow,
    report: TaskReport,
    source: EventSource,
    lease: Option<Uuid>,
    poll_every: Duration,
    breaker_threshold: i32,
    breaker_cooldown: Duration,
) -> EngineResult<Option<JobRow>> {
    let from = job.job_state()?;
    if from != JobState::Processing {
        return Ok(None);
    }
    let mut update = match &report.progress {
        TaskProgress::Processing { reason } => {
            let changed = job.vendor_status.as_deref() != Some(report.vendor_status.as_str());
            let mut u = JobUpdate::stay(JobState::Processing, source, "vendor_progress")
                .vendor_status(Some(report.vendor_status.clone()))
                .due(after(poll_every));
            // Keep a cancel in progress visible; otherwise show the vendor's stage.
            if job.state_reason.as_deref() != Some(REASON_CANCELING) && !job.cancel_requested {
                u = u.reason(reason.clone());
            }
            if !changed {
                u = u.silent();
            }
            u
        }
        TaskProgress::Completed => JobUpdate::transition(
            transition(JobState::Processing, JobState::Completed),
            source,
        )
        .reason("printed"),
        TaskProgress::Failed { error } => {
            JobUpdate::transition(transition(JobState::Processing, JobState::Failed), source)
                .reason(error.code.as_str())
                .message(error.message.clone())
                .error(error.clone())
        }
        TaskProgress::Canceled => {
            JobUpdate::transition(transition(JobState::Processing, JobState::Canceled), source)
                .reason("canceled")
        }
    };
    update = update
        .vendor_status(Some(report.vendor_status.clone()))
        .payload(report.raw.clone());
    if let Some(token) = lease {
        update = update.leased(token);
    }
    if source == EventSource::Callback {
        update = update.from_callback();
    }
    let row = store::jobs::apply_on(pool, job.id, &update).await?;
    if row.is_some() {
        match &report.progress {
            TaskProgress::Completed => {
                store::printers::record_success(pool, &job.printer_id).await?
            }
            TaskProgress::Failed { error } => {
                store::printers::record_failure(
                    pool,
                    &job.printer_id,
                    Failure::of(error),
                    BreakerEffect::Count {
                        threshold: breaker_threshold,
                        cooldown: breaker_cooldown,
                    },
                )
                .await?;
            }
            _ => {}
        }
    }
    Ok(row)
}

fn ambiguity_message(others: &[Uuid]) -> String {
    let ids: Vec<String> = others.iter().map(Uuid::to_string).collect();
    format!(
        "other submits to this device with unknown outcomes overlap this one ({}); a lookup by time cannot tell their tasks apart, so the gateway waits for a callback or an operator",
        ids.join(", ")
    )
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
    job.vendor_task_id.clone().ok_or_else(|| {
        StoreError::Corrupt(format!("processing job {} has no vendor task id", job.id)).into()
    })
}

struct Work<'a> {
    job: &'a JobRow,
    printer: &'a PrinterRow,
    backend: &'a dyn Backend,
    context: &'a PrinterContext,
    token: Uuid,
}

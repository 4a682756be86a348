//! The job-source bridge: the gateway as the cloud of a job source's printers (WeCom). It
//! knows the source only through [`JobSource`]; every wire fact stays in the vendor's
//! module (`backends::wecom`).
//!
//! - **pull** ([`WecomBridge::sync_now`]): per source printer, under a lease row so one
//!   replica syncs a device at a time, list each user's unprinted jobs page by page, import
//!   every new job exactly once, then look up the known unfinished jobs in batches
//!   (deleted ones are canceled);
//! - **push** ([`WecomBridge::run_inbox_now`]): the webhook queues verified messages in
//!   `wecom_inbox`; here a submitted job becomes an import, a deleted one a cancel, a bind
//!   a device secret and a ticket the newest ticket;
//! - **import**: download → store document, job and `wecom_jobs` row in one transaction
//!   (through the service's accept); the job targets the bound printer and goes through the
//!   normal engine;
//! - **report** ([`WecomBridge::report_now`]): when an imported job finishes, a trigger marks
//!   its `wecom_jobs` row due (the outbox); the reporter tells the source, retrying until
//!   accepted.
//!
//! Loops run on the engine's `TaskTracker` and stop on the one shutdown token. It must not
//! speak a vendor's wire format.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::jobs::{CancelRequest, Canceled};
use super::{Service, ServiceError};
use crate::backends::source::{
    FetchError, JobSource, Push, Report, SourceDevice, SourceJob, SourcePrinter,
};
use crate::backends::{BackendRegistry, InvalidPrinterConfig, VendorError};
use crate::config::Config;
use crate::domain::backoff::Backoff;
use crate::domain::document::Sniffed;
use crate::domain::{
    Decision, DocumentKind, DocumentType, ErrorCode, JobError, JobOptions, JobState, OptionsMode,
    Transition,
};
use crate::store::documents::NewDocument;
use crate::store::jobs::{JobUpdate, NewJob};
use crate::store::printers::PrinterRow;
use crate::store::wecom::{NewWecomJob, PushRow, ReportRow};
use crate::store::{self, StoreError};

/// The channel the WeCom triggers signal on (inbox rows, due reports).
pub const WECOM_CHANNEL: &str = "print_gateway_wecom";

/// Push messages are given up after this many failed attempts.
const PUSH_MAX_ATTEMPTS: i32 = 10;

#[derive(Debug, Clone)]
pub struct WecomBridgeSettings {
    pub model_id: String,
    pub tenant: String,
    /// `None`: no periodic pull (push only).
    pub sync_interval: Option<Duration>,
    pub window_secs: i64,
    pub page_size: u32,
    pub lease: Duration,
    pub sweep: Duration,
    pub retry_base: Duration,
    pub report_retry_max: Duration,
}

impl WecomBridgeSettings {
    pub fn from_config(config: &Config) -> WecomBridgeSettings {
        WecomBridgeSettings {
            model_id: config.wecom.wecom_model_id.clone().unwrap_or_default(),
            tenant: config.wecom.wecom_tenant.clone(),
            sync_interval: (config.wecom.wecom_sync_interval_secs > 0)
                .then(|| Duration::from_secs(config.wecom.wecom_sync_interval_secs)),
            window_secs: i64::try_from(config.wecom.wecom_sync_window_secs).unwrap_or(i64::MAX),
            // the source caps it at its largest page
            page_size: u32::MAX,
            lease: config.lease(),
            sweep: Duration::from_millis(config.sweep_interval_ms).max(Duration::from_millis(100)),
            retry_base: Duration::from_millis(config.retry_base_ms),
            report_retry_max: Duration::from_secs(config.wecom.wecom_report_retry_max_secs),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("WeCom{}: {}", .0.vendor_code.as_ref().map(|c| format!(" errcode {c}")).unwrap_or_default(), .0.message)]
    Vendor(VendorError),
    #[error("{0}")]
    Setup(String),
}

/// Why a source printer's row cannot be used for a pull or a push.
#[derive(Debug, thiserror::Error)]
pub enum UnusableSource {
    #[error(transparent)]
    Config(#[from] InvalidPrinterConfig),
    #[error("printer `{printer}`: {reason}")]
    Secret {
        printer: String,
        reason: crate::secrets_at_rest::UnreadableSecret,
    },
}

impl From<ServiceError> for BridgeError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Store(err) => BridgeError::Store(err),
            other => BridgeError::Setup(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for BridgeError {
    fn from(err: sqlx::Error) -> Self {
        BridgeError::Store(StoreError::Db(err))
    }
}

type BridgeResult<T> = Result<T, BridgeError>;

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSummary {
    pub printers: usize,
    /// Jobs WeCom listed (a job listed for several users counts each time).
    pub listed: usize,
    pub imported: usize,
    pub already_known: usize,
    /// Listed, then gone before it could be downloaded.
    pub gone: usize,
    /// Known jobs canceled because WeCom no longer has them (or finished them elsewhere).
    pub canceled: usize,
    pub list_calls: usize,
    /// Printers whose sync failed, with why.
    pub errors: Vec<String>,
}

/// What importing one WeCom job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    Imported(Uuid),
    AlreadyKnown,
    Gone,
}

pub struct WecomBridge {
    service: Service,
    pool: PgPool,
    source: Arc<dyn JobSource>,
    backends: BackendRegistry,
    settings: WecomBridgeSettings,
    /// This replica, as a sync lease holder.
    owner: Uuid,
    wake: Notify,
}

/// A source printer ready to sync: its row, settings and credentials.
struct Source {
    row: PrinterRow,
    printer: SourcePrinter,
    device: SourceDevice,
}

fn after(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl WecomBridge {
    pub fn new(
        service: Service,
        source: Arc<dyn JobSource>,
        settings: WecomBridgeSettings,
    ) -> Arc<WecomBridge> {
        Arc::new(WecomBridge {
            pool: service.pool.clone(),
            backends: service.backends.clone(),
            service,
            source,
            settings,
            owner: Uuid::new_v4(),
            wake: Notify::new(),
        })
    }

    pub fn job_source(&self) -> &Arc<dyn JobSource> {
        &self.source
    }

    /// Starts the pull loop (when an interval is set), the inbox/report loop and its
    /// LISTEN task on `tracker`; all stop when `shutdown` fires.
    pub fn spawn(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        if let Some(every) = self.settings.sync_interval {
            let bridge = Arc::clone(self);
            let stop = shutdown.clone();
            tracker.spawn(async move { bridge.sync_loop(every, stop).await });
        }
        let bridge = Arc::clone(self);
        let stop = shutdown.clone();
        tracker.spawn(async move { bridge.listen_loop(stop).await });
        let bridge = Arc::clone(self);
        tracker.spawn(async move { bridge.work_loop(shutdown).await });
    }

    async fn sync_loop(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            match self.sync_now().await {
                Ok(summary) if summary.imported > 0 || !summary.errors.is_empty() => {
                    tracing::info!(imported = summary.imported, canceled = summary.canceled, errors = ?summary.errors, "WeCom sync");
                }
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "WeCom sync failed"),
            }
        }
    }

    async fn listen_loop(self: Arc<Self>, shutdown: CancellationToken) {
        crate::engine::wake_on_notify(&self.pool, WECOM_CHANNEL, &[&self.wake], &shutdown).await;
    }

    /// Handles pushes and reports whenever woken, and at least every sweep interval.
    async fn work_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(err) = self.run_inbox_now().await {
                tracing::error!(error = %err, "WeCom push handling failed");
            }
            if let Err(err) = self.report_now().await {
                tracing::error!(error = %err, "WeCom reporting failed");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.sweep) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Uses the newest pushed ticket (shared by the replicas through the database).
    async fn refresh_ticket(&self) -> BridgeResult<()> {
        if let Some(ticket) = store::wecom::model_ticket(
            &self.pool,
            &self.settings.model_id,
            self.source.ticket_lifetime(),
        )
        .await?
        {
            self.source.set_ticket(ticket.into());
        }
        Ok(())
    }

    async fn wecom_printers(&self) -> BridgeResult<Vec<PrinterRow>> {
        Ok(store::printers::list(&self.pool)
            .await?
            .into_iter()
            .filter(|p| p.backend == self.source.name() && p.enabled)
            .collect())
    }

    /// A printer's secrets, opened in memory (they are sealed at rest). A secret that cannot
    /// be opened (its key is not configured) is an error naming the printer.
    fn opened_secrets(&self, row: &PrinterRow) -> Result<Value, UnusableSource> {
        self.service
            .engine
            .keyring()
            .open_printer_secrets_json(&row.id, &row.secrets)
            .map_err(|reason| UnusableSource::Secret {
                printer: row.id.clone(),
                reason,
            })
    }

    fn source(&self, row: PrinterRow) -> Result<Option<Source>, UnusableSource> {
        let printer = self.source.printer(&row.locator)?;
        let secrets = self.opened_secrets(&row)?;
        let Some(device) = self.source.credentials(&printer.device, &secrets) else {
            return Ok(None);
        };
        Ok(Some(Source {
            row,
            printer,
            device,
        }))
    }

    /// Pulls every enabled WeCom printer once: the deterministic driver for tests and the
    /// body of the pull loop.
    pub async fn sync_now(&self) -> BridgeResult<SyncSummary> {
        self.refresh_ticket().await?;
        let mut summary = SyncSummary::default();
        for row in self.wecom_printers().await? {
            let id = row.id.clone();
            let source = match self.source(row) {
                Ok(Some(source)) => source,
                Ok(None) => {
                    tracing::debug!(printer_id = %id, "WeCom printer has no device secret yet (awaiting bind)");
                    continue;
                }
                Err(err) => {
                    summary.errors.push(format!("{id}: {err}"));
                    continue;
                }
            };
            if !store::wecom::claim_sync(&self.pool, &id, self.owner, self.settings.lease).await? {
                tracing::debug!(printer_id = %id, "another replica is syncing this WeCom printer");
                continue;
            }
            summary.printers += 1;
            let before = summary.imported;
            let outcome = self.sync_printer(&source, &mut summary).await;
            let error = match &outcome {
                Ok(()) => None,
                Err(err) => {
                    tracing::warn!(printer_id = %id, error = %err, "WeCom sync of a printer failed");
                    summary.errors.push(format!("{id}: {err}"));
                    Some(err.to_string())
                }
            };
            let imported = i32::try_from(summary.imported - before).unwrap_or(i32::MAX);
            store::wecom::finish_sync(&self.pool, &id, self.owner, imported, error.as_deref())
                .await?;
            if let Err(BridgeError::Store(err)) = outcome {
                return Err(err.into());
            }
        }
        Ok(summary)
    }

    async fn sync_printer(&self, source: &Source, summary: &mut SyncSummary) -> BridgeResult<()> {
        let target = self.target_of(source).await?;
        let mut users: Vec<String> = source.printer.users.clone();
        for user in store::wecom::users_seen(&self.pool, &source.row.id).await? {
            if !users.contains(&user) {
                users.push(user);
            }
        }
        let mut seen: HashSet<String> = HashSet::new();
        for user in &users {
            let mut pages = self.source.unprinted(
                &source.device,
                user,
                self.settings.window_secs,
                self.settings.page_size,
            );
            while let Some(page) = pages.next_page().await {
                summary.list_calls += 1;
                let page = page.map_err(BridgeError::Vendor)?;
                summary.listed += page.len();
                let ids: Vec<String> = page.iter().map(|j| j.id.clone()).collect();
                let known = store::wecom::known_jobids(&self.pool, &ids).await?;
                for job in &page {
                    if known.contains(&job.id) || !seen.insert(job.id.clone()) {
                        summary.already_known += 1;
                        continue;
                    }
                    match self.import(source, &target, job).await {
                        Ok(ImportOutcome::Imported(_)) => summary.imported += 1,
                        Ok(ImportOutcome::AlreadyKnown) => summary.already_known += 1,
                        Ok(ImportOutcome::Gone) => summary.gone += 1,
                        // One job WeCom will not hand over must not hold up the others; it
                        // is tried again next round. Limits and credentials stop the round.
                        Err(BridgeError::Vendor(err))
                            if !matches!(
                                err.code,
                                ErrorCode::VendorRateLimited | ErrorCode::VendorAuthFailed
                            ) && err.decision != Decision::RefreshTokenOnce =>
                        {
                            tracing::warn!(jobid = %job.id, error = %err, "source job not imported this round");
                            summary.errors.push(format!(
                                "{}: job {}: {}",
                                source.row.id, job.id, err.message
                            ));
                        }
                        Err(other) => return Err(other),
                    }
                }
                // A long listing keeps its lease.
                store::wecom::claim_sync(
                    &self.pool,
                    &source.row.id,
                    self.owner,
                    self.settings.lease,
                )
                .await?;
            }
        }
        summary.canceled += self.refresh_known(source, &seen, summary).await?;
        Ok(())
    }

    /// The batch status look-up of known, unfinished jobs (`jobid_list`, ≤ 200 per call):
    /// a job WeCom no longer has was deleted by its user (or expired) and is canceled.
    async fn refresh_known(
        &self,
        source: &Source,
        just_imported: &HashSet<String>,
        summary: &mut SyncSummary,
    ) -> BridgeResult<usize> {
        let live = store::wecom::live_jobs(&self.pool, &source.row.id).await?;
        let mut by_user: BTreeMap<String, Vec<(String, Uuid)>> = BTreeMap::new();
        for job in live
            .into_iter()
            .filter(|j| !just_imported.contains(&j.jobid))
        {
            by_user
                .entry(job.open_userid)
                .or_default()
                .push((job.jobid, job.job_id));
        }
        let mut canceled = 0;
        for (user, jobs) in by_user {
            let ids: Vec<String> = jobs.iter().map(|(id, _)| id.clone()).collect();
            let found = self
                .source
                .lookup(&source.device, &user, &ids)
                .await
                .map_err(BridgeError::Vendor)?;
            summary.list_calls += ids.len().div_ceil(self.source.lookup_batch());
            // What WeCom said of all of them, in two statements (not one per job).
            let gone: Vec<String> = jobs
                .iter()
                .filter(|(jobid, _)| !found.contains_key(jobid))
                .map(|(jobid, _)| jobid.clone())
                .collect();
            store::wecom::mark_all_deleted(&self.pool, &gone).await?;
            let (seen, statuses): (Vec<String>, Vec<i16>) = jobs
                .iter()
                .filter_map(|(jobid, _)| {
                    found.get(jobid).map(|job| (jobid.clone(), job.status_code))
                })
                .unzip();
            store::wecom::record_statuses(&self.pool, &seen, &statuses).await?;
            let reasons = self.source.reasons();
            for (jobid, job_id) in jobs {
                match found.get(&jobid) {
                    None => {
                        if self
                            .cancel_for_wecom(
                                job_id,
                                reasons.deleted,
                                "the WeCom user deleted the job",
                            )
                            .await?
                        {
                            canceled += 1;
                        }
                    }
                    Some(job) => {
                        match job.state {
                            Some(JobState::Pending) => {}
                            Some(_) => {
                                // WeCom shows it finished though the gateway did not print it:
                                // another cloud did. Do not print it twice.
                                if self
                                    .cancel_if_pending(
                                        job_id,
                                        reasons.finished,
                                        "WeCom already shows the job finished",
                                    )
                                    .await?
                                {
                                    canceled += 1;
                                }
                            }
                            None => tracing::warn!(
                                jobid,
                                status = job.status_code,
                                "unknown WeCom job status; left alone"
                            ),
                        }
                    }
                }
            }
        }
        Ok(canceled)
    }

    /// The printer a WeCom printer's jobs print on: it must exist and accept jobs.
    async fn target_of(&self, source: &Source) -> BridgeResult<PrinterRow> {
        let id = &source.printer.target_printer_id;
        let target = store::printers::get(&self.pool, id).await?.ok_or_else(|| {
            BridgeError::Setup(format!("the target printer `{id}` does not exist"))
        })?;
        match self.backends.get(&target.backend) {
            Some(backend) if backend.accepts_jobs() => Ok(target),
            Some(_) => Err(BridgeError::Setup(format!(
                "the target printer `{id}` cannot print ({} printers take no jobs)",
                target.backend
            ))),
            None => Err(BridgeError::Setup(format!(
                "the target printer `{id}` uses the `{}` backend, which is not configured",
                target.backend
            ))),
        }
    }

    /// Imports one WeCom job exactly once: download, decrypt, then document + job +
    /// `wecom_jobs` row in one transaction. A document the target cannot print is imported
    /// as a failed job, so WeCom hears why.
    async fn import(
        &self,
        source: &Source,
        target: &PrinterRow,
        job: &SourceJob,
    ) -> BridgeResult<ImportOutcome> {
        // Cheap check first: a push and a pull may race for the same job.
        if store::wecom::get_job(&self.pool, &job.id).await?.is_some() {
            return Ok(ImportOutcome::AlreadyKnown);
        }
        let (content, mut failure) = match self.source.download(&source.device, &job.id).await {
            Ok(bytes) => (bytes, None),
            Err(FetchError::Gone) => return Ok(ImportOutcome::Gone),
            Err(FetchError::Unusable(why)) => (
                Vec::new(),
                Some(JobError {
                    code: ErrorCode::DocumentUnavailable,
                    message: why,
                    vendor_code: None,
                    vendor_message: None,
                }),
            ),
            Err(FetchError::Vendor(err)) => return Err(BridgeError::Vendor(err)),
        };
        if let Some(size) = job.doc_size
            && failure.is_none()
            && size > 0
            && size != content.len() as u64
        {
            tracing::warn!(jobid = %job.id, doc_size = size, got = content.len(), "source document size differs from doc_size");
        }
        let doc_type = if failure.is_none() {
            let declared = DocumentType::from_extension(&job.doc_name);
            let sniffed = DocumentType::sniff(&content);
            let doc_type = match (declared, sniffed) {
                (Some(t), s) if t.matches(s) => Some(t),
                (None, Sniffed::Exactly(t)) => Some(t),
                _ => None,
            };
            let target_backend = self.backends.get(&target.backend);
            let refused = match (doc_type, target_backend) {
                (None, _) => Some(format!(
                    "the document `{}` is of a type the gateway cannot print",
                    job.doc_name
                )),
                // A PDF for a printer that takes images only is rendered at dispatch.
                (Some(t), Some(b)) => {
                    crate::engine::route::takes_document(b.as_ref(), DocumentKind::Upload, Some(t))
                        .err()
                        .map(String::from)
                }
                (Some(_), None) => None,
            };
            if let Some(why) = refused {
                failure = Some(JobError {
                    code: ErrorCode::DocumentUnavailable,
                    message: why,
                    vendor_code: None,
                    vendor_message: None,
                });
            }
            doc_type
        } else {
            None
        };

        let options = job.options.clone().with_defaults(&target.default_options.0);
        let (options, dropped) = match (&target.capabilities, options.validate()) {
            (_, Err(_)) => (JobOptions::default(), vec!["setting_list".to_owned()]),
            (Some(caps), Ok(())) => match caps.0.check(&options, OptionsMode::BestEffort) {
                Ok(checked) => (checked.applied, checked.dropped),
                Err(_) => (options, Vec::new()),
            },
            (None, Ok(())) => (options, Vec::new()),
        };

        let filename = if job.doc_name.trim().is_empty() {
            format!("{}.{}", job.id, doc_type.map_or("bin", |t| t.extension()))
        } else {
            job.doc_name.clone()
        };
        let document = NewDocument {
            kind: DocumentKind::Upload,
            doc_type,
            content_type: doc_type.map(|t| t.content_type().to_owned()),
            filename: Some(filename.clone()),
            url: None,
            content: Some(Bytes::from(content)),
        };
        let mut document_info = json!({
            "kind": DocumentKind::Upload,
            "filename": filename,
            "size_bytes": document.size(),
        });
        if let Some(t) = doc_type {
            document_info["type"] = json!(t);
            document_info["content_type"] = json!(t.content_type());
        }
        let mut facts = job.facts.clone();
        facts.insert("printer_id".into(), json!(source.row.id));
        let tenant = source
            .printer
            .tenant
            .clone()
            .unwrap_or_else(|| self.settings.tenant.clone());
        let new_job = NewJob {
            id: Uuid::now_v7(),
            tenant,
            printer_id: target.id.clone(),
            document_id: Uuid::nil(),
            document_info,
            source: self.source.event_source(),
            options,
            options_mode: OptionsMode::BestEffort,
            dropped_options: dropped,
            metadata: Some(json!({ self.source.name(): facts })),
            // Exactly-once comes from `wecom_jobs.jobid` (primary key, same transaction); an
            // idempotency key here could collide with one an API client of the tenant chose.
            idempotency_key: None,
            request_hash: None,
            expires_at: None,
            vendor_ids: Some(self.source.vendor_ids(&source.device, job)),
            backend: target.backend.clone(),
            pool_id: None,
            route_note: None,
        };

        let mut tx = self.pool.begin().await?;
        let Some(row) = Service::accept_job_in(
            &mut tx,
            new_job.clone(),
            &document,
            self.source.event_source(),
        )
        .await?
        else {
            tx.rollback().await?;
            return Ok(ImportOutcome::AlreadyKnown);
        };
        let record = NewWecomJob {
            jobid: job.id.clone(),
            printer_id: source.row.id.clone(),
            job_id: row.id,
            device_sn: source.device.device.clone(),
            open_userid: job.user.clone(),
            wecom_created_at: job.created_at,
            wecom_status: job.status_code,
        };
        if !store::wecom::insert_job(&mut tx, &record).await? {
            tx.rollback().await?;
            return Ok(ImportOutcome::AlreadyKnown);
        }
        let raw = Some(job.raw.clone());
        store::events::append(
            &mut *tx,
            row.id,
            self.source.event_source(),
            "imported_from_wecom",
            JobState::Pending,
            Some("imported from WeCom"),
            raw.as_ref(),
        )
        .await?;
        if let Some(error) = failure {
            let update = JobUpdate::transition(
                Transition::new(JobState::Pending, JobState::Failed)
                    .map_err(|e| BridgeError::Setup(e.to_string()))?,
                self.source.event_source(),
            )
            .reason(error.code.as_str())
            .message(error.message.clone())
            .error(error);
            store::jobs::apply(&mut tx, row.id, &update).await?;
        }
        tx.commit().await?;
        self.service.job_accepted(&new_job.backend, new_job.source);
        Ok(ImportOutcome::Imported(row.id))
    }

    /// Cancels a job its WeCom user deleted: a pending one at once, one at the printer's
    /// vendor through the engine's cancel (when the vendor can). A finished one stays.
    async fn cancel_for_wecom(
        &self,
        job_id: Uuid,
        reason: &'static str,
        message: &str,
    ) -> BridgeResult<bool> {
        let request = CancelRequest {
            source: self.source.event_source(),
            reason,
            message: Some(message.to_owned()),
        };
        match self.service.cancel_job(None, job_id, &request).await {
            Ok(Canceled::Now(_) | Canceled::Requested(_)) => Ok(true),
            Ok(Canceled::AlreadyRequested(_)) => Ok(false),
            Err(ServiceError::Store(err)) => Err(BridgeError::Store(err)),
            Err(ServiceError::Refused { code, .. }) => {
                if code == "cancel_not_supported" {
                    tracing::info!(%job_id, "WeCom job deleted while printing; the printer's vendor cannot cancel it");
                }
                Ok(false)
            }
            Err(_) => Ok(false),
        }
    }

    /// Cancels a job that has not been sent to its printer yet.
    async fn cancel_if_pending(
        &self,
        job_id: Uuid,
        reason: &'static str,
        message: &str,
    ) -> BridgeResult<bool> {
        let request = CancelRequest {
            source: self.source.event_source(),
            reason,
            message: Some(message.to_owned()),
        };
        Ok(self
            .service
            .cancel_if_pending(job_id, &request)
            .await?
            .is_some())
    }

    // ----- pushes

    /// Handles every queued push that is due: the deterministic driver for tests.
    pub async fn run_inbox_now(&self) -> BridgeResult<usize> {
        let mut handled = 0;
        loop {
            // One at a time: each claim's lease covers one WeCom call (with its retries), so
            // another replica never takes over a push still being handled.
            let batch = store::wecom::claim_pushes(&self.pool, 1, self.settings.lease).await?;
            if batch.is_empty() {
                return Ok(handled);
            }
            for push in batch {
                handled += 1;
                let req_id = push.req_id.clone();
                let attempts = push.attempts;
                match self.handle_push(push).await {
                    Ok(outcome) => {
                        store::wecom::finish_push(&self.pool, &req_id, outcome).await?;
                    }
                    Err(BridgeError::Vendor(err))
                        if err.decision != Decision::Fail && attempts < PUSH_MAX_ATTEMPTS =>
                    {
                        let due = match self.source.paused_until() {
                            Some(until) => {
                                after(until.saturating_duration_since(tokio::time::Instant::now()))
                            }
                            None => after(self.backoff(attempts, self.settings.report_retry_max)),
                        };
                        store::wecom::retry_push(&self.pool, &req_id, due, &err.to_string())
                            .await?;
                    }
                    Err(BridgeError::Store(err)) => return Err(err.into()),
                    Err(err) => {
                        tracing::warn!(req_id, error = %err, "WeCom push could not be handled");
                        store::wecom::finish_push(&self.pool, &req_id, "failed").await?;
                    }
                }
            }
        }
    }

    fn backoff(&self, attempts: i32, max: Duration) -> Duration {
        let attempt = u32::try_from(attempts.clamp(1, 20)).unwrap_or(1);
        Backoff::new(self.settings.retry_base, max).delay(attempt)
    }

    async fn sources_for_device(&self, device_sn: Option<&str>) -> BridgeResult<Vec<PrinterRow>> {
        let Some(sn) = device_sn else {
            return Ok(Vec::new());
        };
        Ok(self
            .wecom_printers()
            .await?
            .into_iter()
            .filter(|p| {
                self.source
                    .printer(&p.locator)
                    .is_ok_and(|l| l.device == sn)
            })
            .collect())
    }

    async fn handle_push(&self, push: PushRow) -> BridgeResult<&'static str> {
        match self.source.push(&push.event, push.payload.as_ref()) {
            Push::JobSubmitted => {
                let (Some(jobid), Some(user)) =
                    (push.jobid.as_deref(), push.open_userid.as_deref())
                else {
                    return Ok("malformed");
                };
                let mut outcome = "no_printer";
                for row in self.sources_for_device(push.device_sn.as_deref()).await? {
                    let Some(source) = self
                        .source(row)
                        .map_err(|err| BridgeError::Setup(err.to_string()))?
                    else {
                        outcome = "awaiting_bind";
                        continue;
                    };
                    let target = self.target_of(&source).await?;
                    let found = self
                        .source
                        .lookup(&source.device, user, &[jobid.to_owned()])
                        .await
                        .map_err(BridgeError::Vendor)?;
                    let Some(job) = found.get(jobid) else {
                        return Ok("gone");
                    };
                    return Ok(match self.import(&source, &target, job).await? {
                        ImportOutcome::Imported(_) => "imported",
                        ImportOutcome::AlreadyKnown => "already_known",
                        ImportOutcome::Gone => "gone",
                    });
                }
                Ok(outcome)
            }
            Push::JobDeleted => {
                let Some(jobid) = push.jobid.as_deref() else {
                    return Ok("malformed");
                };
                let Some(known) = store::wecom::get_job(&self.pool, jobid).await? else {
                    // Not imported: a pull will not list it any more either.
                    return Ok("not_imported");
                };
                store::wecom::mark_deleted(&self.pool, jobid).await?;
                let canceled = self
                    .cancel_for_wecom(
                        known.job_id,
                        self.source.reasons().deleted,
                        "the WeCom user deleted the job",
                    )
                    .await?;
                Ok(if canceled { "canceled" } else { "too_late" })
            }
            Push::Bind { code } => {
                let (Some(auth_code), Some(sn)) = (code.as_deref(), push.device_sn.as_deref())
                else {
                    return Ok("malformed");
                };
                let printers = self.sources_for_device(Some(sn)).await?;
                if printers.is_empty() {
                    tracing::warn!(
                        device_sn = sn,
                        "WeCom bind for a device no printer is registered for; bind again after registering it"
                    );
                    return Ok("no_printer");
                }
                let secret = self
                    .source
                    .bind(sn, auth_code)
                    .await
                    .map_err(BridgeError::Vendor)?;
                for printer in printers {
                    store::wecom::set_device_secret(
                        &self.pool,
                        self.service.engine.keyring(),
                        &printer.id,
                        secrecy::ExposeSecret::expose_secret(&secret),
                    )
                    .await?;
                    tracing::info!(printer_id = %printer.id, "WeCom device bound: device secret stored");
                }
                Ok("bound")
            }
            Push::Unbind => {
                tracing::warn!(device_sn = ?push.device_sn, "WeCom device unbound");
                Ok("noted")
            }
            Push::Ticket(ticket) => {
                let Some(ticket) = ticket.as_deref() else {
                    return Ok("malformed");
                };
                store::wecom::save_model_ticket(&self.pool, &self.settings.model_id, ticket)
                    .await?;
                self.source.set_ticket(ticket.into());
                Ok("saved")
            }
            Push::Unknown(event) => {
                tracing::info!(event, "unknown WeCom push event ignored");
                Ok("ignored")
            }
        }
    }

    // ----- reports

    /// Reports every finished job that is due: the deterministic driver for tests.
    pub async fn report_now(&self) -> BridgeResult<usize> {
        let mut handled = 0;
        loop {
            // One at a time, for the same reason as pushes: a report is never sent twice.
            let batch = store::wecom::claim_reports(&self.pool, 1, self.settings.lease).await?;
            if batch.is_empty() {
                return Ok(handled);
            }
            for row in batch {
                handled += 1;
                self.report(row).await?;
            }
        }
    }

    async fn report(&self, row: ReportRow) -> BridgeResult<()> {
        let state = row.state;
        let plan = self.source.report_for(
            &row.jobid,
            state,
            row.state_reason.as_deref(),
            row.error.as_ref().map(|e| &e.0),
            row.deleted_at.is_some(),
        );
        let (body, message) = match plan {
            Report::Skip(why) => {
                store::events::append(
                    &self.pool,
                    row.job_id,
                    self.source.event_source(),
                    "wecom_report_skipped",
                    state,
                    Some(why),
                    None,
                )
                .await?;
                store::wecom::finish_report(&self.pool, &row.jobid, "skipped").await?;
                return Ok(());
            }
            Report::Send { body, message } => (body, message),
        };
        let printer = store::printers::get(&self.pool, &row.printer_id).await?;
        let device = printer.and_then(|p| match self.opened_secrets(&p) {
            Ok(secrets) => self.source.credentials(&row.device_sn, &secrets),
            Err(detail) => {
                tracing::warn!(printer_id = %p.id, error = %detail, "WeCom device secret unreadable");
                None
            }
        });
        let Some(device) = device else {
            let due = after(self.settings.report_retry_max);
            store::wecom::retry_report(
                &self.pool,
                &row.jobid,
                due,
                "the WeCom printer has no device secret",
            )
            .await?;
            return Ok(());
        };
        let sent: Result<Value, VendorError> = self.source.report(&device, &body).await;
        match sent {
            Ok(reply) => {
                store::events::append(
                    &self.pool,
                    row.job_id,
                    self.source.event_source(),
                    "reported_to_wecom",
                    state,
                    Some(&message),
                    Some(&json!({"request": body, "reply": reply})),
                )
                .await?;
                store::wecom::finish_report(&self.pool, &row.jobid, "reported").await?;
            }
            Err(err) if self.source.report_refused_for_good(&err) => {
                // WeCom no longer knows the job (deleted, or past its 7 days): no retry can help.
                store::events::append(
                    &self.pool,
                    row.job_id,
                    self.source.event_source(),
                    "wecom_report_abandoned",
                    state,
                    Some(&format!("WeCom refused the report: {err}")),
                    err.raw.as_ref(),
                )
                .await?;
                store::wecom::finish_report(&self.pool, &row.jobid, "abandoned").await?;
            }
            Err(err) => {
                let wait = match self.source.paused_until() {
                    Some(until) => until.saturating_duration_since(tokio::time::Instant::now()),
                    None => self.backoff(row.report_attempts, self.settings.report_retry_max),
                };
                tracing::info!(jobid = %row.jobid, error = %err, retry_in = ?wait, "WeCom report failed; will retry");
                store::wecom::retry_report(&self.pool, &row.jobid, after(wait), &err.to_string())
                    .await?;
            }
        }
        Ok(())
    }
}

//! Accepting and canceling jobs, for every caller: the API, the job-source bridge, the demo.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Service, ServiceError, ServiceResult};
use crate::domain::{
    DocumentKind, DocumentType, EventSource, JobOptions, JobState, OptionsMode, Transition,
};
use crate::observe;
use crate::store;
use crate::store::StoreError;
use crate::store::documents::NewDocument;
use crate::store::jobs::{Acceptance, JobRow, JobUpdate, NewJob};

/// A job a caller asks the gateway to print, before it is checked.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub tenant: String,
    /// The printer, or (with `pool_id`) ignored: the pool's router chooses it.
    pub printer_id: String,
    /// A pool to print on instead of one printer.
    pub pool_id: Option<String>,
    pub options: JobOptions,
    pub options_mode: OptionsMode,
    pub metadata: Option<Value>,
    pub expires_at: Option<DateTime<Utc>>,
    pub document_kind: DocumentKind,
    pub doc_type: Option<DocumentType>,
    /// What the API shows of the document.
    pub document_info: Value,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    /// Who submits it: `api`, or a job source (`wecom`).
    pub source: EventSource,
    pub vendor_ids: Option<Value>,
}

/// Who cancels, and in which words.
#[derive(Debug, Clone)]
pub struct CancelRequest {
    pub source: EventSource,
    /// The state reason of a job canceled before it reached the vendor.
    pub reason: &'static str,
    /// Kept in the job's history, when given.
    pub message: Option<String>,
}

/// What a cancel did.
#[derive(Debug)]
pub enum Canceled {
    /// The job had not reached the vendor: it is `canceled` now.
    Now(JobRow),
    /// The job is at the vendor: the engine asks the vendor to cancel it.
    Requested(JobRow),
    /// A cancel was already requested.
    AlreadyRequested(JobRow),
}

impl Service {
    /// Checks a new job against its printer (exists, usable by the tenant, enabled, backend
    /// takes the document and options) and builds the row to insert.
    pub async fn prepare_job(&self, request: JobRequest) -> ServiceResult<NewJob> {
        let JobRequest {
            tenant,
            printer_id,
            pool_id,
            options,
            options_mode,
            metadata,
            expires_at,
            document_kind,
            doc_type,
            document_info,
            idempotency_key,
            request_hash,
            source,
            vendor_ids,
        } = request;
        let (printer_id, route_note) = match &pool_id {
            Some(pool_id) => {
                let routed = self
                    .route_new_job(
                        &tenant,
                        pool_id,
                        document_kind,
                        doc_type,
                        &options,
                        options_mode,
                    )
                    .await?;
                (routed.printer_id, Some(routed.why))
            }
            None => (printer_id, None),
        };
        let printer = store::printers::get_settings(
            &self.pool,
            self.engine.printer_cache(),
            &printer_id,
        )
        .await?
        // another tenant's printer, unless shared, is as unknown as a missing one
        .filter(|printer| printer.usable_by(&tenant))
        .ok_or_else(|| {
            ServiceError::invalid(
                "unknown_printer",
                format!(
                    "Printer `{printer_id}` does not exist; GET /v1/printers lists the printers."
                ),
            )
        })?;
        if !printer.enabled && pool_id.is_none() {
            return Err(ServiceError::conflict(
                "printer_disabled",
                format!(
                    "Printer `{}` is disabled; enable it or choose another printer.",
                    printer.id
                ),
            ));
        }
        let backend = self.backend(&printer.backend)?;
        if !backend.accepts_jobs() {
            let target = backend
                .prints_on(&printer.locator)
                .map(|t| format!(" Its jobs print on printer `{t}`; submit there."))
                .unwrap_or_default();
            return Err(ServiceError::invalid(
                "printer_takes_no_jobs",
                format!(
                    "Printer `{}` is a {} printer: it takes jobs only from {} users.{target}",
                    printer.id,
                    backend.name(),
                    backend.name()
                ),
            ));
        }
        // A PDF for a printer that takes images but not PDF is converted at dispatch.
        crate::engine::route::takes_document(backend.as_ref(), document_kind, doc_type)
            .map_err(|detail| ServiceError::invalid("unsupported_document_type", detail))?;
        if let Some(expires_at) = expires_at
            && expires_at <= Utc::now()
        {
            return Err(ServiceError::invalid(
                "invalid_field",
                "`expires_at` is in the past.",
            ));
        }
        options
            .validate()
            .map_err(|detail| ServiceError::invalid("invalid_option", detail.to_string()))?;
        let options: JobOptions = options
            .with_defaults(&printer.default_options.0)
            .normalised();
        backend
            .check_vendor_options(&options.vendor_options)
            .map_err(|detail| ServiceError::invalid("unsupported_option", detail))?;
        let (options, dropped) = match &printer.capabilities {
            Some(caps) => {
                let checked = caps.0.check(&options, options_mode).map_err(|problem| {
                    ServiceError::invalid(
                        "unsupported_option",
                        format!("Printer `{}` cannot honour {problem}. Send options_mode \"best_effort\" to drop what it cannot do.", printer.id),
                    )
                })?;
                (checked.applied, checked.dropped)
            }
            None => (options, Vec::new()),
        };
        Ok(NewJob {
            id: Uuid::now_v7(),
            tenant,
            printer_id: printer.id,
            document_id: Uuid::nil(),
            document_info,
            source,
            options,
            options_mode,
            dropped_options: dropped,
            metadata,
            idempotency_key,
            request_hash,
            expires_at,
            vendor_ids,
            backend: printer.backend,
            pool_id,
            route_note,
        })
    }

    /// Stores document, job and first event in one statement, then wakes the workers.
    /// `None` when the idempotency key was already used (nothing is stored then).
    pub async fn accept_job(
        &self,
        job: NewJob,
        document: NewDocument,
        source: EventSource,
    ) -> ServiceResult<Option<JobRow>> {
        // With an object store the bytes go there first; the row names them.
        let documents = self.engine.documents();
        let object_key = match &document.content {
            Some(bytes) if documents.is_external() => documents.put(bytes.clone()).await?,
            _ => None,
        };
        // what is needed after the job went to the writer
        let printer_id = job.printer_id.clone();
        let backend = job.backend.clone();
        let job_source = job.source;
        let routed = job.pool_id.clone().zip(job.route_note.clone());
        let row = self
            .engine
            .accept_writer()
            .write(Acceptance {
                job,
                document,
                object_key: object_key.clone(),
                source,
            })
            .await;
        if let (Ok(None) | Err(_), Some(key)) = (&row, &object_key) {
            // An idempotent replay (or a failed write) stored no row naming the object.
            documents.delete(std::slice::from_ref(key)).await;
        }
        let row = match row {
            // The printer was deleted after this replica remembered its settings (a lost
            // notification, or one still on its way).
            Err(StoreError::Db(err))
                if err
                    .as_database_error()
                    .is_some_and(|e| e.is_foreign_key_violation()) =>
            {
                self.engine.printer_cache().invalidate(Some(&printer_id));
                return Err(ServiceError::invalid(
                    "unknown_printer",
                    format!(
                        "Printer `{printer_id}` does not exist; GET /v1/printers lists the printers."
                    ),
                ));
            }
            row => row?,
        };
        if let Some(row) = &row {
            if let Some((pool_id, note)) = routed {
                store::events::append(
                    &self.pool,
                    row.id,
                    source,
                    "member_chosen",
                    JobState::Pending,
                    Some(&note),
                    None,
                )
                .await?;
                observe::pool_routed(&pool_id, &row.printer_id, "member_chosen");
            }
            self.job_accepted(&backend, job_source);
        }
        Ok(row)
    }

    /// Stores document and job inside the caller's transaction (which adds rows of its
    /// own, such as the source's record). `None` when the job's id or key is taken. Call
    /// [`Service::job_accepted`] after the commit.
    pub async fn accept_job_in(
        conn: &mut PgConnection,
        job: NewJob,
        document: &NewDocument,
        source: EventSource,
    ) -> ServiceResult<Option<JobRow>> {
        let document_id = store::documents::insert(conn, document).await?;
        let job = NewJob { document_id, ..job };
        Ok(store::jobs::insert(conn, &job, source).await?)
    }

    /// After a job was stored: count it and wake the workers.
    pub fn job_accepted(&self, backend: &str, source: EventSource) {
        self.engine.job_due();
        observe::job_accepted(backend, source.as_str());
    }

    /// Cancels a job: at once when it has not reached the vendor, else by asking the
    /// engine to cancel it at the vendor (when the vendor can). `tenant: None` reaches
    /// every tenant's jobs (a job source canceling what it imported).
    pub async fn cancel_job(
        &self,
        tenant: Option<&str>,
        id: Uuid,
        request: &CancelRequest,
    ) -> ServiceResult<Canceled> {
        // A job may move under us (the engine works concurrently): re-read and retry.
        for _ in 0..5 {
            let row = match tenant {
                Some(tenant) => store::jobs::get(&self.pool, tenant, id).await?,
                None => store::jobs::get_any(&self.pool, id).await?,
            }
            .ok_or_else(|| ServiceError::not_found(&format!("Job {id}")))?;
            let current = row.state;
            if current.is_terminal() {
                return Err(ServiceError::conflict(
                    "job_finished",
                    format!("Job {id} is already {current}; it cannot be canceled."),
                ));
            }
            if row.cancel_requested {
                return Ok(Canceled::AlreadyRequested(row));
            }
            if current == JobState::Pending
                && let Some(row) = self.cancel_if_pending(id, request).await?
            {
                return Ok(Canceled::Now(row));
            }
            if current == JobState::Processing {
                let printer = store::printers::get(&self.pool, &row.printer_id)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::Internal(format!("printer {} vanished", row.printer_id))
                    })?;
                let backend = self.target(&printer.backend)?;
                if !backend.supports_cancel() {
                    return Err(ServiceError::conflict(
                        "cancel_not_supported",
                        format!(
                            "Job {id} is already at the vendor ({}), which offers no way to cancel it.",
                            backend.name()
                        ),
                    ));
                }
            }
            let mut requested = JobUpdate::stay(current, request.source, "cancel_requested")
                .reason("cancel_requested")
                .request_cancel()
                .due(Utc::now());
            if let Some(message) = &request.message {
                requested = requested.message(message.clone());
            }
            if let Some(row) = store::jobs::apply_on(&self.pool, id, &requested).await? {
                return Ok(Canceled::Requested(row));
            }
        }
        Err(ServiceError::conflict(
            "job_busy",
            format!("Job {id} is changing state right now; try the cancel again."),
        ))
    }

    /// Cancels a job that has not been sent to its printer yet; `None` when it is not
    /// pending any more (or a submit has started).
    pub async fn cancel_if_pending(
        &self,
        id: Uuid,
        request: &CancelRequest,
    ) -> ServiceResult<Option<JobRow>> {
        let mut canceled = JobUpdate::transition(
            Transition::new(JobState::Pending, JobState::Canceled)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            request.source,
        )
        .reason(request.reason)
        .unless_submitting();
        if let Some(message) = &request.message {
            canceled = canceled.message(message.clone());
        }
        Ok(store::jobs::apply_on(&self.pool, id, &canceled).await?)
    }
}

impl Service {
    /// A small PNG of the first page of a PDF or image job (`max_side` pixels at most on
    /// its longer side), rendered like a conversion: off the async threads, bounded.
    pub async fn job_preview(
        &self,
        tenant: Option<&str>,
        id: Uuid,
        max_side: u32,
    ) -> ServiceResult<bytes::Bytes> {
        let job = store::jobs::get_visible(&self.pool, tenant, id)
            .await?
            .ok_or_else(|| ServiceError::not_found(&format!("Job {id}")))?;
        let doc = store::documents::get(&self.pool, job.document_id)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("job {id} has no document row")))?;
        let doc_type = doc
            .doc_type
            .as_deref()
            .and_then(|ext| DocumentType::from_extension(&format!("x.{ext}")))
            .filter(|t| crate::engine::pages::previewable(*t))
            .ok_or_else(|| {
                ServiceError::conflict(
                    "preview_unavailable",
                    format!(
                        "Job {id}'s document is not a PDF or an image; previews are made of those."
                    ),
                )
            })?;
        if doc.url.is_some() {
            return Err(ServiceError::conflict(
                "preview_unavailable",
                format!(
                    "Job {id}'s document is a URL the vendor fetches; the gateway has no copy to preview."
                ),
            ));
        }
        let bytes = match store::documents::content_or_key(&self.pool, doc.id).await? {
            (Some(bytes), _) => Some(bytes),
            (None, Some(key)) => self.engine.documents().get(&key).await?,
            (None, None) => None,
        }
        .ok_or_else(|| {
            ServiceError::conflict(
                "preview_unavailable",
                format!("Job {id}'s document bytes are no longer kept (RETENTION_DOCUMENTS_DAYS)."),
            )
        })?;
        self.engine
            .renderer()
            .preview(bytes, doc_type, max_side)
            .await
            .map_err(|err| ServiceError::invalid("document_unrenderable", err.0))
    }
}

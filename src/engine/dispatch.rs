//! Dispatch: sending a due job to its print target once (device holds, `submit_started_at`
//! before the request leaves, the answer recorded before the slot is freed) and what a
//! failed submit means for the job.

use super::*;
use crate::domain::OptionsMode;
use crate::store::jobs::SubmitStart;

impl Engine {
    /// Strict means checked: a pending `strict` job whose options name something the
    /// printer's capabilities decide (paper, colour, sides, orientation, tray, copies) is
    /// checked against them before any submit. When the API had no cached capabilities to
    /// check against, they are fetched now (and cached); when they cannot be fetched, or
    /// the printer does not list an option, the job fails with `unsupported_option` and is
    /// never sent. False when the job was failed here.
    pub(super) async fn strict_options_checked(
        &self,
        job: &JobRow,
        printer: &PrinterRow,
        backend: &dyn PrintTarget,
        context: &mut PrinterContext,
        token: Uuid,
    ) -> EngineResult<bool> {
        let options = &job.options.0;
        let decided_by_capabilities = options.paper.is_some()
            || options.color.is_some()
            || options.sides.is_some()
            || options.orientation.is_some()
            || options.tray.is_some()
            || options.copies.is_some_and(|c| c > 1);
        if job.options_mode != OptionsMode::Strict
            || !decided_by_capabilities
            || job.cancel_requested
            || job.submit_started_at.is_some()
        {
            return Ok(true);
        }
        if context.capabilities.is_none() {
            match super::status::fetch_capabilities(
                &self.pool,
                backend,
                context,
                self.settings.vendor_timeout,
            )
            .await?
            {
                Ok(report) => context.capabilities = Some(report.capabilities),
                Err(err) => {
                    let error = JobError {
                        code: ErrorCode::UnsupportedOption,
                        message: format!(
                            "strict options could not be checked: printer `{}` did not say what it supports ({}); the job was not sent (send options_mode \"best_effort\" to print without the check)",
                            printer.id, err.message
                        ),
                        vendor_code: err.vendor_code,
                        vendor_message: err.vendor_message,
                    };
                    self.fail_before_submit(job, token, error).await?;
                    return Ok(false);
                }
            }
        }
        let Some(caps) = &context.capabilities else {
            return Ok(true);
        };
        if let Err(problem) = caps.check(options, crate::domain::OptionsMode::Strict) {
            let error = JobError::ours(
                ErrorCode::UnsupportedOption,
                format!(
                    "printer `{}` cannot honour {problem}; the job was not sent",
                    printer.id
                ),
            );
            self.fail_before_submit(job, token, error).await?;
            return Ok(false);
        }
        Ok(true)
    }

    pub(super) fn submit_request(
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
                pages: Vec::new(),
            },
            options: w.job.options.0.clone(),
            callback_url,
            created_at: w.job.created_at,
            submit_started_at: w.job.submit_started_at,
            taken_task_ids: Vec::new(),
        }
    }

    pub(super) async fn load_submit_request(
        &self,
        w: &Work<'_>,
    ) -> EngineResult<Option<SubmitRequest>> {
        let read;
        let doc = match w.document {
            Some(doc) => doc,
            None => match store::documents::get(&self.pool, w.job.document_id).await? {
                Some(doc) => {
                    read = doc;
                    &read
                }
                None => return Ok(None),
            },
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
        Ok(Some(self.submit_request(w, bytes, doc)))
    }

    /// A pending job: submit it, unless it must expire, was canceled, or its last submit
    /// was cut off by a crash.
    pub(super) async fn dispatch(&self, w: &Work<'_>) -> EngineResult<()> {
        let job = w.job;
        let now = Utc::now();
        if job.cancel_requested && job.submit_started_at.is_none() {
            let update = JobUpdate::transition(
                transition(JobState::Pending, JobState::Canceled),
                EventSource::Dispatcher,
            )
            .reason("canceled")
            .leased(w.token);
            self.save(job.id, &update).await?;
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
            self.save(job.id, &update).await?;
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
        let Some(mut request) = self.load_submit_request(w).await? else {
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
        // Conversion happens before a device slot is taken: rendering may take a while.
        if !self.convert_for_printer(w, &mut request).await? {
            return Ok(());
        }
        let hold = matches!(w.backend.lookup_kind(), LookupKind::ByTime { .. })
            .then_some(self.settings.device_hold);
        let slot = match store::jobs::begin_submit(
            &self.pool,
            job.id,
            w.token,
            &w.printer.device,
            w.printer.max_in_flight,
            self.settings.lease,
            hold,
        )
        .await?
        {
            SubmitStart::Started { slot } => slot,
            SubmitStart::NoSlot => return self.release(job, w.token, after(short_pause())).await,
            SubmitStart::Held { until } => return self.wait_for_device_hold(w, until).await,
            SubmitStart::Refused { slot } => {
                self.free_slot(w, slot).await;
                return Ok(());
            }
        };
        // A rejected vendor token is refreshed inside the backend (`TokenCache::refresh_once`).
        let outcome = self.call(w.backend.submit(w.context, &request)).await;
        crate::observe::submit(
            w.backend.name(),
            match &outcome {
                Ok(_) => "accepted",
                Err(e) if e.outcome_unknown => "unknown",
                Err(_) => "error",
            },
        );

        // The outcome is recorded before the device slot is given back, or in the same
        // statement: the next job on the device must see an unknown outcome (and wait)
        // rather than slip in between.
        let recorded = self.record_submit_outcome(w, outcome, slot).await;
        if matches!(recorded, Ok(true)) {
            // Another job on this device may be waiting for the slot.
            self.wake.notify_one();
        } else {
            self.free_slot(w, slot).await;
        }
        recorded.map(|_| ())
    }

    /// When the printer cannot take the document's type but takes rendered pages (a PDF
    /// for Zhimu), renders the pages `page_ranges` selects at the printer's resolution,
    /// fitted to the paper asked for, and puts them in the request. A document that cannot
    /// be rendered fails the job with `document_unrenderable`: no vendor call is made.
    /// False when the job was failed here.
    pub(super) async fn convert_for_printer(
        &self,
        w: &Work<'_>,
        request: &mut SubmitRequest,
    ) -> EngineResult<bool> {
        let doc = &request.document;
        if w.backend.check_document(doc.kind, doc.doc_type).is_ok()
            || !route::converts(w.backend, doc.kind, doc.doc_type)
        {
            return Ok(true);
        }
        let Some(bytes) = doc.bytes.clone() else {
            return Ok(true);
        };
        let caps = w.context.capabilities.as_ref();
        let target = pages::PageTarget {
            dpi: caps.and_then(|c| {
                c.resolutions_dpi
                    .iter()
                    .filter_map(|r| r.split('x').next()?.trim().parse::<u32>().ok())
                    .filter(|dpi| (72..=600).contains(dpi))
                    .max()
            }),
            paper_mm: match &request.options.paper {
                Some(crate::domain::options::Paper::Custom {
                    width_mm,
                    height_mm,
                }) => Some((*width_mm, *height_mm)),
                Some(crate::domain::options::Paper::Named(name)) => caps
                    .and_then(|c| c.find_paper(name))
                    .and_then(|p| Some((p.width_mm?, p.height_mm?))),
                None => None,
            },
        };
        let ranges = request.options.page_ranges.clone();
        match self.renderer.pdf_pages(bytes, ranges, target).await {
            Ok(rendered) => {
                let count = rendered.pages.len();
                store::jobs::record_conversion(&self.pool, w.job.id, "pdf", count as i32).await?;
                crate::observe::pages_rendered(w.backend.name(), count);
                request.document.pages = rendered.pages;
                request.document.bytes = request.document.pages.first().cloned();
                request.document.doc_type = Some(DocumentType::Png);
                request.document.kind = DocumentKind::Base64;
                request.document.content_type = Some("image/png".into());
                // The pages are already the ones asked for.
                request.options.page_ranges = None;
                Ok(true)
            }
            Err(pages::Unrenderable(message)) => {
                let error = JobError::ours(
                    ErrorCode::DocumentUnrenderable,
                    format!(
                        "printer `{}` takes this document only as page images, and it could not be rendered: {message}",
                        w.printer.id
                    ),
                );
                self.fail_before_submit(w.job, w.token, error).await?;
                Ok(false)
            }
        }
    }

    /// Records what a submit came back with (the device slot is still held). True when
    /// the slot was freed in the same statement as the outcome (an accepted submit
    /// recorded under the lease); otherwise the caller frees it.
    pub(super) async fn record_submit_outcome(
        &self,
        w: &Work<'_>,
        outcome: Result<crate::backends::Accepted, VendorError>,
        slot: i32,
    ) -> EngineResult<bool> {
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
                let under_lease = update
                    .clone()
                    .leased(w.token)
                    .freeing_slot(&w.printer.device, slot);
                match self.apply_retrying(job.id, &under_lease).await {
                    // A cancel arrived while the submit was in flight: send it right away.
                    Ok(Some(row)) if row.cancel_requested => {
                        store::jobs::make_due_now(&self.pool, row.id).await?;
                        return Ok(true);
                    }
                    Ok(Some(_)) => return Ok(true),
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
                Ok(false)
            }
            Err(err) => self.after_submit_error(w, err).await.map(|()| false),
        }
    }

    /// The vendor answered a submit with `task`, but the job had moved meanwhile. When it
    /// is still waiting for evidence, the answer is that evidence.
    pub(super) async fn record_late_answer(
        &self,
        id: Uuid,
        task: &str,
        accepted: JobUpdate,
    ) -> EngineResult<()> {
        let Some(now) = store::jobs::get_any(&self.pool, id).await? else {
            return Ok(());
        };
        let state = now.state;
        match (state, now.vendor_task_id.as_deref()) {
            (JobState::Pending, None) => {
                // Not reclaimed yet: the answer applies as it would have under the lease.
                if self.save(id, &accepted).await?.is_none() {
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
                if self.save(id, &confirm).await?.is_none() {
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

    pub(super) async fn wait_for_device_hold(
        &self,
        w: &Work<'_>,
        until: DateTime<Utc>,
    ) -> EngineResult<()> {
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
        self.save(w.job.id, &update).await?;
        Ok(())
    }

    pub(super) async fn after_submit_error(
        &self,
        w: &Work<'_>,
        err: VendorError,
    ) -> EngineResult<()> {
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
            self.save(job.id, &update).await?;
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
        // A pool job that another member can take now goes there at once (it is still
        // pending and nothing reached the vendor: the router moves it).
        let retry_at = match retry_at {
            Some(due)
                if err.code.is_printer_health()
                    && job.pool_id.is_some()
                    && self.pool_has_alternative(job).await? =>
            {
                Some(Utc::now().min(due))
            }
            other => other,
        };
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
                if let Some(row) = self.save(job.id, &update).await?
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
                self.save(job.id, &update).await?;
            }
        }
        Ok(())
    }

    /// Records a failed call in the printer's health; it counts toward the breaker only
    /// when it says something a pause could fix (an authentication failure does not).
    pub(super) async fn count_printer_failure(
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
}

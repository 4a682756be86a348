//! Polling: asking the print target about a processing job, and applying a task report
//! (shared with callbacks and the reconciler).

use super::*;

impl Engine {
    /// A processing job without news: ask the vendor.
    pub(super) async fn poll(&self, w: &Work<'_>) -> EngineResult<()> {
        let task_id = vendor_task_of(w.job)?;
        let Some(slot) = self.take_slot(w).await? else {
            return self.release(w.job, w.token, after(short_pause())).await;
        };
        let outcome = self.call(w.backend.task_status(w.context, &task_id)).await;
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
                self.save(w.job.id, &update).await?;
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
        backend: &dyn PrintTarget,
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
    let Some(update) = report_update(job, &report, source, lease, poll_every) else {
        return Ok(None);
    };
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

/// The update a vendor's task report makes to a processing job (`None` for a job in another
/// state: a report only moves a processing job).
pub(super) fn report_update(
    job: &JobRow,
    report: &TaskReport,
    source: EventSource,
    lease: Option<Uuid>,
    poll_every: Duration,
) -> Option<JobUpdate> {
    let from = job.state;
    if from != JobState::Processing {
        return None;
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
    Some(update)
}

//! Reconcile: settling `unconfirmed` jobs only on evidence (a lookup that cannot be
//! confused with another job), with lookups that thin out as the job ages.

use super::*;

impl Engine {
    /// An unconfirmed job: ask the vendor whether the submit arrived, when it can say so
    /// for certain. Never resubmit, never guess, never fail it: without evidence it stays
    /// `unconfirmed` until an operator settles it (`POST /v1/jobs/{id}/resolve`).
    pub(super) async fn reconcile(&self, w: &Work<'_>) -> EngineResult<()> {
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
            return Err(EngineError::DocumentGone(job.id));
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
                self.save(job.id, &update).await?;
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
    pub(super) fn next_lookup(&self, age: Duration, horizon: Duration) -> Option<DateTime<Utc>> {
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
    pub(super) async fn stay_unconfirmed(
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
        self.save(w.job.id, &update).await?;
        Ok(())
    }
}

pub(super) fn ambiguity_message(others: &[Uuid]) -> String {
    let ids: Vec<String> = others.iter().map(Uuid::to_string).collect();
    format!(
        "other submits to this device with unknown outcomes overlap this one ({}); a lookup by time cannot tell their tasks apart, so the gateway waits for a callback or an operator",
        ids.join(", ")
    )
}

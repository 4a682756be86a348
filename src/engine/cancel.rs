//! Cancel: asking the print target to cancel a job whose cancel was requested.

use super::*;

impl Engine {
    pub(super) async fn cancel_at_vendor(&self, w: &Work<'_>) -> EngineResult<()> {
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
        self.save(w.job.id, &update.leased(w.token)).await?;
        Ok(())
    }
}

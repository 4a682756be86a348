//! The shared lease and claim code of every loop: claiming due jobs (`FOR UPDATE SKIP
//! LOCKED` under a lease), releasing them, failing them at once, retrying a guarded write,
//! the vendor-call timeout and the device slots around worker calls. The loops (dispatch,
//! poll, cancel, reconcile) use only these to hold a job.

use super::*;

impl Engine {
    /// Claims and handles one due job. True when there was one.
    pub async fn run_one(&self, token: Uuid) -> EngineResult<bool> {
        let claimed = store::jobs::claim_due(
            &self.pool,
            token,
            1,
            self.settings.lease,
            &self.backends.names(),
            &[],
        )
        .await?;
        let Some(job) = claimed.into_iter().next() else {
            return Ok(false);
        };
        let id = job.id;
        let span = tracing::info_span!("job", job_id = %id);
        if let Err(err) = self
            .handle(job, token, Prefetched::default())
            .instrument(span)
            .await
        {
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

    pub(super) async fn fail_now(
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
            self.save(job.id, &update).await?;
        }
        Ok(())
    }

    /// Fails a job the dispatcher found it must not send (nothing reached the vendor).
    pub(super) async fn fail_before_submit(
        &self,
        job: &JobRow,
        token: Uuid,
        error: JobError,
    ) -> EngineResult<()> {
        self.fail_now(
            job,
            JobState::Pending,
            token,
            error,
            EventSource::Dispatcher,
        )
        .await
    }

    pub(super) async fn release(
        &self,
        job: &JobRow,
        token: Uuid,
        due: DateTime<Utc>,
    ) -> EngineResult<()> {
        store::jobs::release(&self.pool, job.id, token, due).await?;
        self.wake_at(due);
        Ok(())
    }

    /// Applies an update, retrying for a while when the database is unreachable (a submit's
    /// answer is worth waiting for: losing it turns a known task into an unknown outcome).
    pub(super) async fn apply_retrying(
        &self,
        id: Uuid,
        update: &JobUpdate,
    ) -> EngineResult<Option<JobRow>> {
        let deadline = tokio::time::Instant::now() + self.settings.lease / 2;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.save(id, update).await {
                Ok(row) => return Ok(row),
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
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

    pub(super) async fn call<T>(
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

    pub(super) async fn take_slot(&self, w: &Work<'_>) -> EngineResult<Option<i32>> {
        Ok(store::slots::acquire(
            &self.pool,
            &w.printer.device,
            w.printer.max_in_flight,
            w.job.id,
            self.settings.lease,
        )
        .await?)
    }

    pub(super) async fn free_slot(&self, w: &Work<'_>, slot: i32) {
        if let Err(err) = store::slots::release(&self.pool, &w.printer.device, slot, w.job.id).await
        {
            tracing::warn!(error = %err, device = %w.printer.device, "could not free a device slot; it expires with its lease");
        }
        // Another job on this device may be waiting for the slot.
        self.wake.notify_one();
    }
}

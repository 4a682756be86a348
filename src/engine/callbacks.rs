//! Recorded vendor callbacks (the callback inbox, issue 17). The webhook answers a callback
//! as soon as it is recorded (`store::callbacks`); this loop takes recorded callbacks in
//! batches under a lease — those this process recorded already leased to itself from memory
//! ([`Handoff`]), the others by a claim — confirms those that must be with the vendor — for
//! each device one call for all of its callbacks (`PrintTarget::task_statuses`) —
//! applies what is known in one statement for the batch, updates each printer's health
//! once, and forgets them.
//!
//! A confirmation that fails leaves its callback for a later try (backoff): no outcome is
//! guessed. A crash before the apply leaves the callbacks to the next claim once their lease
//! runs out; a crash after it finds the jobs moved on, so nothing is applied twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use serde::Deserialize;

use super::*;
use crate::store::callbacks::{InboxLease, NewCallback, RecordedCallback, Retry};

/// Callbacks claimed at once.
const BATCH: i64 = 512;

/// Devices confirmed at once by one loop.
const CONFIRM_CONCURRENCY: usize = 64;

/// Inbox loops per process: one claims and applies while another waits on vendors.
pub(super) const LOOPS: usize = 2;

/// Most callbacks waiting in a process's [`Handoff`]; past it, callbacks are recorded
/// unleased and claimed as usual.
const HANDOFF_MAX: usize = 4 * BATCH as usize;

/// Callbacks this process's webhook recorded already leased (see
/// [`Engine::callback_lease`]): its inbox loops take them from memory, with no claim
/// statement and no wait for a NOTIFY. Each row is recorded under a lease of its own, as a
/// claim would have taken it: a crash leaves it to the next claim once the lease runs out,
/// another replica's claim never takes it meanwhile, and a callback that replaces it gets
/// another lease, so finishing the first cannot forget the second.
#[derive(Default)]
pub(super) struct Handoff {
    /// This process runs inbox loops (a worker or `all` replica).
    running: AtomicBool,
    waiting: std::sync::Mutex<VecDeque<RecordedCallback>>,
}

impl Handoff {
    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<RecordedCallback>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Up to `most` waiting callbacks, oldest first, one per job: of a job's callbacks,
    /// the last recorded (it replaced the others in the inbox).
    fn take(&self, most: usize) -> Vec<RecordedCallback> {
        let taken: Vec<RecordedCallback> = {
            let mut waiting = self.waiting();
            let n = waiting.len().min(most);
            waiting.drain(..n).collect()
        };
        let last: HashMap<Uuid, usize> = taken
            .iter()
            .enumerate()
            .map(|(i, c)| (c.job_id, i))
            .collect();
        taken
            .into_iter()
            .enumerate()
            .filter(|(i, c)| last.get(&c.job_id) == Some(i))
            .map(|(_, c)| c)
            .collect()
    }
}

/// A claimed callback's job, with what is known of its task.
struct Known<'a> {
    job: &'a JobRow,
    report: TaskReport,
}

/// One device's claimed callbacks to confirm, with their jobs.
type DeviceGroup<'a> = Vec<(&'a RecordedCallback, &'a JobRow)>;

/// What a confirmation made of a claimed callback.
enum Sorted<'a> {
    /// Try again at `due` (the confirmation failed, the device was busy).
    Later(Retry),
    Known(Known<'a>),
}

impl Engine {
    /// A callback was recorded: wakes an inbox loop of this process at once and, through
    /// the announcer's coalesced NOTIFY (at most one per few milliseconds, however many
    /// callbacks), those of the other replicas (an API-only replica runs no inbox loop).
    pub fn callback_recorded(&self, callback: &NewCallback) {
        if let Some(lease) = callback.lease {
            self.handoff.waiting().push_back(RecordedCallback {
                job_id: callback.job_id,
                task_id: callback.task_id.clone(),
                progress: callback.progress.clone(),
                vendor_status: callback.vendor_status.clone(),
                body: callback.body.clone(),
                confirm: callback.confirm,
                attempts: 1,
                lease_owner: lease.owner,
            });
            self.callbacks_wake.notify_one();
            return;
        }
        self.callbacks_wake.notify_one();
        self.announce.callbacks();
    }

    /// The lease a callback about to be recorded takes, when an inbox loop of this process
    /// will apply it (see [`Handoff`]); `None` leaves it for any replica's loop to claim.
    pub fn callback_lease(&self) -> Option<InboxLease> {
        (self.handoff.running.load(Ordering::Relaxed) && self.handoff.waiting().len() < HANDOFF_MAX)
            .then(|| InboxLease {
                owner: Uuid::new_v4(),
                lasts: self.settings.lease,
            })
    }

    /// This process runs inbox loops from now on: callbacks its webhook records are
    /// handed to them.
    pub(super) fn take_callback_handoffs(&self) {
        self.handoff.running.store(true, Ordering::Relaxed);
    }

    /// Applies every recorded callback due now, batch after batch, until none is due: the
    /// deterministic driver for tests and tools. Returns how many were claimed.
    pub async fn apply_callbacks_now(&self) -> EngineResult<usize> {
        let token = Uuid::new_v4();
        let mut claimed = 0;
        loop {
            let n = self.apply_recorded_callbacks(token).await?;
            if n == 0 {
                return Ok(claimed);
            }
            claimed += n;
        }
    }

    pub(super) async fn callback_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let token = Uuid::new_v4();
        let mut tick = tokio::time::interval(self.settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !shutdown.is_cancelled() {
            match self.apply_recorded_callbacks(token).await {
                // Found some: pass the baton so another loop looks too.
                Ok(n) if n > 0 => self.callbacks_wake.notify_one(),
                Ok(_) => {
                    tokio::select! {
                        _ = self.callbacks_wake.notified() => {}
                        _ = tick.tick() => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "applying recorded callbacks failed; they are tried again when their lease expires");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        self.give_back_handoffs().await;
    }

    /// On shutdown: no more callbacks are recorded leased to this process, and those
    /// waiting for its loops are given back for any replica to claim now rather than when
    /// their leases run out.
    async fn give_back_handoffs(&self) {
        self.handoff.running.store(false, Ordering::Relaxed);
        let waiting = self.handoff.take(usize::MAX);
        if waiting.is_empty() {
            return;
        }
        let now = Utc::now();
        let back: Vec<Retry> = waiting
            .iter()
            .map(|c| Retry {
                job_id: c.job_id,
                lease_owner: c.lease_owner,
                due_at: now,
                error: "the process that recorded it stopped before applying it".into(),
            })
            .collect();
        if let Err(err) = store::callbacks::retry_later(&self.pool, &back).await {
            tracing::warn!(error = %err, waiting = back.len(), "could not give back recorded callbacks on shutdown; they are claimed when their leases run out");
        }
    }

    /// Takes one batch of recorded callbacks — those handed over by this process's webhook
    /// first, else claimed — and settles it. Returns how many were taken.
    async fn apply_recorded_callbacks(&self, token: Uuid) -> EngineResult<usize> {
        let mut claimed = self.handoff.take(BATCH as usize);
        if claimed.is_empty() {
            claimed = store::callbacks::claim(
                &self.pool,
                token,
                BATCH,
                self.settings.lease,
                &self.backends.names(),
            )
            .await?;
        }
        if claimed.is_empty() {
            return Ok(0);
        }
        let owners: HashMap<Uuid, Uuid> =
            claimed.iter().map(|c| (c.job_id, c.lease_owner)).collect();
        let ids: Vec<Uuid> = claimed.iter().map(|c| c.job_id).collect();
        let jobs: HashMap<Uuid, JobRow> = store::jobs::get_many(&self.pool, &ids)
            .await?
            .into_iter()
            .map(|j| (j.id, j))
            .collect();
        let printers: HashMap<String, PrinterRow> = store::printers::get_many_for_task_calls(
            &self.pool,
            jobs.values().map(|j| j.printer_id.as_str()),
        )
        .await?;

        let mut done = Vec::new();
        let mut retries = Vec::new();
        let mut known = Vec::new();
        // Callbacks to confirm, by device: one vendor call for each device.
        let mut to_confirm: BTreeMap<&str, (&PrinterRow, DeviceGroup<'_>)> = BTreeMap::new();
        for callback in &claimed {
            let Some(job) = jobs.get(&callback.job_id) else {
                done.push(callback.job_id);
                continue;
            };
            // The job ended meanwhile (a poll, another callback): a duplicate.
            if job.state != JobState::Processing {
                done.push(job.id);
                continue;
            }
            if job.vendor_task_id.as_deref() != Some(callback.task_id.as_str()) {
                tracing::warn!(job_id = %job.id, task_id = %callback.task_id, "a recorded callback names a task the job no longer has; dropped");
                done.push(job.id);
                continue;
            }
            let Some(printer) = printers.get(&job.printer_id) else {
                retries.push(self.retry(callback, "the job's printer does not exist"));
                continue;
            };
            if callback.confirm {
                to_confirm
                    .entry(printer.device.as_str())
                    .or_insert_with(|| (printer, Vec::new()))
                    .1
                    .push((callback, job));
                continue;
            }
            match TaskProgress::deserialize(&callback.progress) {
                Ok(progress) => known.push(Known {
                    job,
                    report: TaskReport {
                        progress,
                        vendor_status: callback.vendor_status.clone(),
                        raw: Some(callback.body.clone()),
                    },
                }),
                Err(err) => retries.push(self.retry(
                    callback,
                    &format!("the recorded callback is unreadable: {err}"),
                )),
            }
        }

        // Built in a loop, not by a closure over the groups: a closure's borrowed
        // arguments do not satisfy the spawned loop's `Send` bound.
        let mut confirmations = Vec::with_capacity(to_confirm.len());
        for (printer, group) in to_confirm.into_values() {
            confirmations.push(self.confirm_on_device(printer, group));
        }
        let confirmed: Vec<Vec<Sorted<'_>>> = futures::stream::iter(confirmations)
            .buffer_unordered(CONFIRM_CONCURRENCY)
            .collect()
            .await;
        for sorted in confirmed.into_iter().flatten() {
            match sorted {
                Sorted::Later(retry) => retries.push(retry),
                Sorted::Known(k) => known.push(k),
            }
        }

        self.apply_known(&known, &printers).await?;
        done.extend(known.iter().map(|k| k.job.id));
        let done: Vec<(Uuid, Uuid)> = done
            .into_iter()
            .filter_map(|id| owners.get(&id).map(|owner| (id, *owner)))
            .collect();
        store::callbacks::finish(&self.pool, &done).await?;
        store::callbacks::retry_later(&self.pool, &retries).await?;
        Ok(claimed.len())
    }

    /// Asks the vendor about the tasks of one device's callbacks.
    ///
    /// Without a device slot, as the webhook confirmed before the inbox: Lianke allows one
    /// call at a time per device for its live status calls (10009, `printer_status`,
    /// `async_refresh_device_info`), not for task queries; and a slot would put the
    /// callbacks behind every submit to the box, and behind the slots a crashed replica
    /// left until their leases run out.
    async fn confirm_on_device<'a>(
        &self,
        printer: &PrinterRow,
        group: DeviceGroup<'a>,
    ) -> Vec<Sorted<'a>> {
        let all_later = |why: &str| {
            group
                .iter()
                .map(|(c, _)| Sorted::Later(self.retry(c, why)))
                .collect::<Vec<_>>()
        };
        let Some(backend) = self.backends.target(&printer.backend) else {
            return all_later("the printer's backend is not configured here");
        };
        let context = match printer_context(printer, &self.keyring) {
            Ok(context) => context,
            Err(err) => return all_later(&format!("the printer cannot be used: {err}")),
        };
        let task_ids: Vec<String> = group.iter().map(|(c, _)| c.task_id.clone()).collect();
        let answers = match tokio::time::timeout(
            self.settings.vendor_timeout,
            backend.task_statuses(&context, &task_ids),
        )
        .await
        {
            Ok(answers) => answers,
            Err(_) => task_ids
                .iter()
                .map(|_| {
                    Err(VendorError::new(
                        ErrorCode::VendorTimeout,
                        Decision::Retry,
                        "the vendor did not answer in time",
                    ))
                })
                .collect(),
        };
        group
            .into_iter()
            .zip(answers)
            .map(|((callback, job), answer)| match answer {
                Ok(confirmed) => {
                    let said = TaskProgress::deserialize(&callback.progress);
                    if said.as_ref().ok() != Some(&confirmed.progress) {
                        tracing::warn!(job_id = %job.id, body = %callback.vendor_status, vendor = %confirmed.vendor_status,
                            "a callback disagrees with the vendor's task state; using the vendor's");
                    }
                    Sorted::Known(Known {
                        job,
                        report: TaskReport {
                            raw: Some(serde_json::json!({
                                "callback": callback.body,
                                "confirmation": confirmed.raw,
                            })),
                            ..confirmed
                        },
                    })
                }
                Err(err) => {
                    tracing::warn!(job_id = %job.id, error = %err, attempt = callback.attempts, "could not confirm a callback with the vendor; trying again later");
                    Sorted::Later(self.retry(callback, &err.to_string()))
                }
            })
            .collect()
    }

    /// Applies what is known of a batch's tasks in one statement, then each printer's
    /// health once per run of successes (a failure still counts one by one, in order).
    async fn apply_known(
        &self,
        known: &[Known<'_>],
        printers: &HashMap<String, PrinterRow>,
    ) -> EngineResult<()> {
        let updates: Vec<(Uuid, JobUpdate)> = known
            .iter()
            .filter_map(|k| {
                let since_dispatch = (Utc::now() - k.job.dispatched_at.unwrap_or(k.job.created_at))
                    .to_std()
                    .unwrap_or_default();
                let poll_every = printers
                    .get(&k.job.printer_id)
                    .and_then(|p| self.backends.target(&p.backend))
                    .map_or(self.settings.sweep_interval, |b| {
                        b.poll_interval(since_dispatch)
                    });
                poll::report_update(k.job, &k.report, EventSource::Callback, None, poll_every)
                    .map(|u| (k.job.id, u))
            })
            .collect();
        let applied: std::collections::HashSet<Uuid> =
            store::jobs::apply_many(&self.pool, &updates)
                .await?
                .into_iter()
                .map(|j| j.id)
                .collect();
        // Each printer's outcomes in the batch's order (oldest callback first).
        let mut outcomes: BTreeMap<&str, Vec<&TaskProgress>> = BTreeMap::new();
        for k in known.iter().filter(|k| applied.contains(&k.job.id)) {
            if matches!(
                k.report.progress,
                TaskProgress::Completed | TaskProgress::Failed { .. }
            ) {
                outcomes
                    .entry(k.job.printer_id.as_str())
                    .or_default()
                    .push(&k.report.progress);
            }
        }
        let mut only_printed = Vec::new();
        for (printer, seq) in outcomes {
            if seq.iter().all(|p| matches!(p, TaskProgress::Completed)) {
                only_printed.push(printer.to_owned());
                continue;
            }
            // Mixed: in order, a run of successes recorded once (a success after a success
            // changes nothing).
            let mut last_was_success = false;
            for progress in seq {
                match progress {
                    TaskProgress::Completed if last_was_success => {}
                    TaskProgress::Completed => {
                        store::printers::record_success(&self.pool, printer).await?;
                        last_was_success = true;
                    }
                    TaskProgress::Failed { error } => {
                        store::printers::record_failure(
                            &self.pool,
                            printer,
                            Failure::of(error),
                            BreakerEffect::Count {
                                threshold: self.settings.breaker_threshold,
                                cooldown: self.settings.breaker_cooldown,
                            },
                        )
                        .await?;
                        last_was_success = false;
                    }
                    TaskProgress::Processing { .. } | TaskProgress::Canceled => {}
                }
            }
        }
        store::printers::record_successes(&self.pool, &only_printed).await?;
        Ok(())
    }

    /// A callback given back for a later try, after the retry policy's backoff.
    fn retry(&self, callback: &RecordedCallback, why: &str) -> Retry {
        Retry {
            job_id: callback.job_id,
            lease_owner: callback.lease_owner,
            due_at: after(self.settings.retry.delay(callback.attempts.max(1) as u32)),
            error: why.to_owned(),
        }
    }
}

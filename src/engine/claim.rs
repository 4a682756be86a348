//! The claimer: one loop per process claims due jobs in batches — as many as it has idle
//! workers, at most one per free device slot — and runs each in a worker task of its own.
//! One claim statement serves a batch, instead of every idle worker racing the others with
//! a claim of its own (which also handed out jobs of one device to several workers, all but
//! one then giving theirs back for want of a slot).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Semaphore;

use super::*;

/// The most jobs one claim statement takes.
const CLAIM_BATCH: usize = 64;

/// The printer of every job a worker of this process holds, counted per printer. A job may
/// not have taken its device slot yet; the claim counts these so that it does not hand a
/// second job of the same device to another worker meanwhile.
#[derive(Default)]
pub(super) struct InFlight(Mutex<HashMap<String, u32>>);

impl InFlight {
    fn add(&self, printer: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(printer.to_owned()).or_default() += 1;
    }

    fn remove(&self, printer: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(printer) {
            *n -= 1;
            if *n == 0 {
                map.remove(printer);
            }
        }
    }

    /// One entry per job in flight.
    fn printers(&self) -> Vec<String> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .flat_map(|(p, n)| std::iter::repeat_n(p.clone(), *n as usize))
            .collect()
    }
}

/// A job in a worker's hands: counted in [`InFlight`] until the worker lets go of it, even
/// by a panic.
struct Held {
    engine: Arc<Engine>,
    printer: String,
}

impl Held {
    fn new(engine: Arc<Engine>, printer: &str) -> Held {
        engine.in_flight.add(printer);
        Held {
            engine,
            printer: printer.to_owned(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.engine.in_flight.remove(&self.printer);
        // Its device may take the next job now.
        self.engine.wake.notify_one();
    }
}

impl Engine {
    /// The printers of a claimed batch, and the documents of its pending jobs, read in one
    /// statement each instead of one per job. A failed read is left to the workers (each
    /// reads what it misses, and reports the error).
    async fn prefetch(
        &self,
        claimed: &[JobRow],
    ) -> (
        HashMap<String, PrinterRow>,
        HashMap<Uuid, store::documents::DocumentRow>,
    ) {
        let printer_ids = claimed.iter().map(|j| j.printer_id.as_str());
        let document_ids: Vec<Uuid> = claimed
            .iter()
            .filter(|j| j.state == JobState::Pending)
            .map(|j| j.document_id)
            .collect();
        let (printers, documents) =
            tokio::join!(store::printers::get_many(&self.pool, printer_ids), async {
                if document_ids.is_empty() {
                    Ok(Vec::new())
                } else {
                    store::documents::get_many(&self.pool, &document_ids).await
                }
            });
        (
            printers.unwrap_or_default(),
            documents
                .unwrap_or_default()
                .into_iter()
                .map(|d| (d.id, d))
                .collect(),
        )
    }

    /// Claims due jobs for idle workers and runs each in a task on `jobs` until `shutdown`;
    /// jobs in hand are finished (their tasks are on the tracker the caller waits for).
    pub(super) async fn claim_loop(
        self: Arc<Self>,
        jobs: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let idle = Arc::new(Semaphore::new(self.settings.workers.max(1) as usize));
        loop {
            let first = tokio::select! {
                permit = Arc::clone(&idle).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = shutdown.cancelled() => return,
            };
            let mut permits = vec![first];
            while permits.len() < CLAIM_BATCH {
                match Arc::clone(&idle).try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            // A lease token per batch: a job claimed again after its lease ran out (its
            // first holder stuck) is told apart from its first holder's writes.
            let token = Uuid::new_v4();
            let asked = permits.len();
            let claimed = store::jobs::claim_due(
                &self.pool,
                token,
                asked as i64,
                self.settings.lease,
                &self.backends.names(),
                &self.in_flight.printers(),
            )
            .await;
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(err) => {
                    drop(permits);
                    tracing::error!(error = %err, "claiming due jobs failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            let found = claimed.len();
            let (printers, documents) = self.prefetch(&claimed).await;
            for job in claimed {
                let Some(permit) = permits.pop() else { break };
                let held = Held::new(Arc::clone(&self), &job.printer_id);
                let pre = Prefetched {
                    printer: printers.get(&job.printer_id).cloned(),
                    document: documents.get(&job.document_id).cloned(),
                };
                jobs.spawn(async move {
                    let id = job.id;
                    let span = tracing::info_span!("job", job_id = %id);
                    if let Err(err) = held.engine.handle(job, token, pre).instrument(span).await {
                        tracing::error!(job_id = %id, error = %err, "handling a job failed; it will be retried when its lease expires");
                    }
                    drop(permit);
                    drop(held);
                });
            }
            drop(permits);
            if found < asked {
                // Nothing more is due (or every device with due jobs is busy): wait for an
                // accept, a NOTIFY, a freed slot, an alarm or the sweep.
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

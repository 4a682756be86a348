//! Group writes: rows that concurrent requests want stored go to Postgres together, in one
//! statement and one commit, and each caller is answered once its own row is durable.
//!
//! Nothing waits for a batch to fill. A batch is whatever queued while the previous
//! statements ran (at most `max_batch` items, at most `max_in_flight` statements at once),
//! so a lone request is written at once, as it would be without the batcher, and a crowd
//! shares round trips, statement overhead and WAL flushes. The write function answers every
//! item on its own (a row, or that item's own error), so one bad item never fails the others.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};

type Queued<I, O> = (I, oneshot::Sender<O>);

/// A queue in front of one batch-writing function (see the module documentation).
pub struct Batcher<I, O> {
    queue: mpsc::Sender<Queued<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batcher's task on the current Tokio runtime. `write` gets the items of a
    /// batch, in the order they came, and must return one output per item, in that order.
    /// The task ends when the batcher is dropped.
    pub fn spawn<F, Fut>(max_batch: usize, max_in_flight: usize, write: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let max_batch = max_batch.max(1);
        let (queue, mut queued) = mpsc::channel::<Queued<I, O>>(max_batch * max_in_flight * 4);
        let write = Arc::new(write);
        let statements = Arc::new(Semaphore::new(max_in_flight.max(1)));
        tokio::spawn(async move {
            while let Some(first) = queued.recv().await {
                // Items that arrive while every statement is busy join this batch.
                let Ok(permit) = Arc::clone(&statements).acquire_owned().await else {
                    break;
                };
                let mut items = Vec::with_capacity(max_batch.min(queued.len() + 1));
                let mut replies = Vec::with_capacity(items.capacity());
                let (item, reply) = first;
                items.push(item);
                replies.push(reply);
                while items.len() < max_batch {
                    match queued.try_recv() {
                        Ok((item, reply)) => {
                            items.push(item);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                let write = Arc::clone(&write);
                tokio::spawn(async move {
                    let outputs = write(items).await;
                    debug_assert_eq!(outputs.len(), replies.len());
                    for (output, reply) in outputs.into_iter().zip(replies) {
                        // The caller may have gone (its client hung up): the row stays written.
                        let _ = reply.send(output);
                    }
                    drop(permit);
                });
            }
        });
        Batcher { queue }
    }

    /// Writes `item` with whatever else is queued and returns its output; `None` when the
    /// batch's write did not answer (it panicked, or the runtime is shutting down).
    pub async fn write(&self, item: I) -> Option<O> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).await.ok()?;
        answer.await.ok()
    }
}

/// A database writer on a [`Batcher`], started on first use (on the runtime of its first
/// caller, so it can be built anywhere). `write_batch` answers each item of a batch, on a
/// connection taken for the batch.
///
/// No caller waits for a connection longer than the pool's acquire timeout in all: a batch
/// gets what is left of it for its oldest item (time queued behind busy statements counts),
/// and a batch that gets no connection in that time is answered "unavailable" (503) at
/// once, nothing written.
pub struct StoreWriter<I, O> {
    pool: sqlx::PgPool,
    max_batch: usize,
    max_in_flight: usize,
    write_batch: WriteBatch<I, O>,
    batcher: std::sync::OnceLock<Batcher<(Instant, I), super::StoreResult<O>>>,
}

type WriteBatch<I, O> = fn(
    sqlx::PgPool,
    sqlx::pool::PoolConnection<sqlx::Postgres>,
    Vec<I>,
) -> futures::future::BoxFuture<'static, Vec<super::StoreResult<O>>>;

impl<I: Send + 'static, O: Send + 'static> StoreWriter<I, O> {
    pub fn new(
        pool: sqlx::PgPool,
        max_batch: usize,
        max_in_flight: usize,
        write_batch: WriteBatch<I, O>,
    ) -> Self {
        StoreWriter {
            pool,
            max_batch,
            max_in_flight,
            write_batch,
            batcher: std::sync::OnceLock::new(),
        }
    }

    /// Writes `item` with whatever else is being written now.
    pub async fn write(&self, item: I) -> super::StoreResult<O> {
        let batcher = self.batcher.get_or_init(|| {
            let (pool, write_batch) = (self.pool.clone(), self.write_batch);
            let acquire_timeout = pool.options().get_acquire_timeout();
            Batcher::spawn(
                self.max_batch,
                self.max_in_flight,
                move |queued: Vec<(Instant, I)>| {
                    let pool = pool.clone();
                    async move {
                        let oldest = queued.iter().map(|(at, _)| *at).min();
                        let waited = oldest.map_or(Duration::ZERO, |at| at.elapsed());
                        let budget = acquire_timeout.saturating_sub(waited);
                        let items: Vec<I> = queued.into_iter().map(|(_, item)| item).collect();
                        match tokio::time::timeout(budget, pool.acquire()).await {
                            Ok(Ok(conn)) => write_batch(pool, conn, items).await,
                            Ok(Err(err)) => unavailable_for_each(&err, items.len()),
                            Err(_) => unavailable_for_each(&sqlx::Error::PoolTimedOut, items.len()),
                        }
                    }
                },
            )
        });
        batcher
            .write((Instant::now(), item))
            .await
            // the writer's task is gone: the runtime is shutting down
            .unwrap_or(Err(super::StoreError::Db(sqlx::Error::PoolClosed)))
    }
}

/// A batch for a statement that may take each key (a job) once: the first item of each key
/// goes in the statement, a later item of the same key after it, on its own.
pub struct OncePerKey<I> {
    /// The first item of each key, in the order they came: the statement's items.
    pub first: Vec<I>,
    places: Vec<usize>,
    again: Vec<(usize, I)>,
}

impl<I> OncePerKey<I> {
    pub fn split<K: std::hash::Hash + Eq>(items: Vec<I>, key: impl Fn(&I) -> K) -> Self {
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let (first, again): (Vec<_>, Vec<_>) = items
            .into_iter()
            .enumerate()
            .partition(|(_, item)| seen.insert(key(item)));
        let (places, first) = first.into_iter().unzip();
        OncePerKey {
            first,
            places,
            again,
        }
    }

    /// Every item's answer, in the order the items came. `written` is what the statement
    /// for [`first`](Self::first) gave, one output per item in order; `one` writes an item
    /// on its own: each later item of a key, in order, and — when the statement failed for
    /// another reason than an unreachable database — each first item, so that each gets its
    /// own answer (an unreachable database fails them all at once).
    pub async fn answer<O>(
        self,
        written: super::StoreResult<Vec<O>>,
        one: impl Fn(I) -> futures::future::BoxFuture<'static, super::StoreResult<O>>,
    ) -> Vec<super::StoreResult<O>> {
        let OncePerKey {
            first,
            places,
            again,
        } = self;
        let mut answers: Vec<Option<super::StoreResult<O>>> =
            (0..places.len() + again.len()).map(|_| None).collect();
        let firsts: Vec<super::StoreResult<O>> = match written {
            Ok(outputs) => outputs.into_iter().map(Ok).collect(),
            Err(err) if first.len() == 1 => vec![Err(err)],
            Err(super::StoreError::Db(err)) if super::is_unavailable(&err) => {
                unavailable_for_each(&err, first.len())
            }
            Err(_) => futures::future::join_all(first.into_iter().map(&one)).await,
        };
        for (place, answer) in places.iter().zip(firsts) {
            answers[*place] = Some(answer);
        }
        for (place, item) in again {
            answers[place] = Some(one(item).await);
        }
        answers
            .into_iter()
            .map(|a| a.expect("every item of the batch was answered"))
            .collect()
    }
}

/// The answer for each of `n` items whose batch found the database unreachable (`err`):
/// the same error for each, still read as "unavailable" (`super::is_unavailable`), so
/// that every caller answers 503 without trying again on its own.
pub fn unavailable_for_each<T>(err: &sqlx::Error, n: usize) -> Vec<super::StoreResult<T>> {
    (0..n)
        .map(|_| {
            Err(super::StoreError::Db(sqlx::Error::Io(
                std::io::Error::other(err.to_string()),
            )))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn every_caller_gets_its_own_output_and_a_crowd_shares_batches() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let gate = Arc::new(tokio::sync::Notify::new());
        let opened = Arc::clone(&gate);
        let batcher = Arc::new(Batcher::spawn(8, 1, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            let opened = Arc::clone(&opened);
            async move {
                // The first batch waits until every caller has queued.
                if items == [0] {
                    opened.notified().await;
                }
                items.into_iter().map(|i| i * 10).collect::<Vec<_>>()
            }
        }));
        let first = tokio::spawn({
            let batcher = Arc::clone(&batcher);
            async move { batcher.write(0).await }
        });
        // wait until the first batch is being written
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (1..=20)
            .map(|i| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { (i, batcher.write(i).await) })
            })
            .collect();
        // every caller but at most one has queued (the batcher's task may hold one)
        while batcher.queue.max_capacity() - batcher.queue.capacity() < 19 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(first.await.unwrap(), Some(0));
        for task in rest {
            let (i, out) = task.await.unwrap();
            assert_eq!(out, Some(i * 10));
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 21);
        assert_eq!(sizes[0], 1, "a lone item is written at once");
        assert!(
            sizes[1..].iter().all(|&n| n <= 8),
            "no batch above max_batch: {sizes:?}"
        );
        assert!(
            sizes.len() <= 5 && sizes.iter().any(|&n| n > 1),
            "the 20 that queued behind the first shared batches: {sizes:?}"
        );
    }

    #[test]
    fn an_unreachable_database_is_still_unreachable_for_each_item() {
        let answers: Vec<super::super::StoreResult<()>> =
            unavailable_for_each(&sqlx::Error::PoolTimedOut, 3);
        assert_eq!(answers.len(), 3);
        for answer in answers {
            match answer {
                Err(super::super::StoreError::Db(err)) => {
                    assert!(super::super::is_unavailable(&err), "{err}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_write_that_panics_answers_none_and_the_batcher_goes_on() {
        let batcher = Batcher::spawn(4, 2, |items: Vec<u32>| async move {
            assert!(!items.contains(&13), "unlucky");
            items
        });
        assert_eq!(batcher.write(13).await, None);
        assert_eq!(batcher.write(7).await, Some(7));
    }
}

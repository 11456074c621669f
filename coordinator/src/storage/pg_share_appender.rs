//! Share appends on PostgreSQL, batched per coordinator: PostgreSQL's
//! group commit.
//!
//! Ledger positions must be dense and commit in order, so every append, from
//! every coordinator, locks the ledger head until its commit, and one append
//! per transaction would cap the whole pool near one share per commit
//! latency. Instead each [`super::PgStore`] hands its appends to one task
//! that takes whatever has queued (up to [`MAX_BATCH`]) and appends it in one
//! call of `pool_append_shares_of_templates` (one transaction, [`super::pg_schema`]):
//! while a batch commits, the next one gathers, so a lone share waits for
//! nothing and a busy pool pays one commit per batch.
//!
//! A caller's answer comes after its batch has committed, so an acknowledged
//! share is durable, as before. (The pool judges shares on tasks of their
//! own, so a client hanging up does not cancel its append.) A caller whose
//! future was dropped before its batch formed is left out of it; one dropped
//! later may be credited without an answer. A failed batch fails every share
//! in it: none is acknowledged, though a batch that committed just before
//! its connection failed may have written them, and a resubmission is then
//! answered as already credited.
//!
//! A batch waits at most [`BATCH_TIMEOUT`] (and the function at most 5 s for
//! the ledger head: a `lock_timeout`), so a stuck batch, say behind a
//! transaction whose client died or on a half-open connection, turns into
//! 503s the miners retry instead of stalling this coordinator's appends.
//! The task runs on the runtime the store was opened on and ends with the
//! store's last clone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::Json;

use super::pg_schema::pg_error;
use super::pg_store::big;
use super::{AppendOutcome, Credit, ShareRecord, StoreError};

/// The schema's function that appends a batch ([`super::pg_schema`], migration 4).
const APPEND_FUNCTION: &str = "pool_append_shares_of_templates";
/// The most shares one transaction appends.
pub(super) const MAX_BATCH: usize = 512;
/// The longest a batch may take, from asking for a connection to its
/// commit: above the function's 5 s `lock_timeout`, below the pool's
/// request timeout, so its callers get a 503 they can retry.
pub(super) const BATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One share waiting for its batch.
struct AppendRequest {
    key: Vec<u8>,
    share: ShareRecord,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The handle the store's clones share; the task ends when the last goes.
#[derive(Clone)]
pub(super) struct ShareAppender {
    requests: mpsc::Sender<AppendRequest>,
    /// Batches committed so far.
    committed: Arc<AtomicU64>,
}

impl ShareAppender {
    /// Starts the appending task on `pool` (on the current tokio runtime).
    pub(super) fn start(pool: Pool) -> Self {
        let (requests, inbox) = mpsc::channel(4 * MAX_BATCH);
        let committed = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(pool, inbox, committed.clone()));
        ShareAppender { requests, committed }
    }

    /// Batches committed since the store opened.
    pub(super) fn batches_committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Appends `share` under duplicate key `key`, answering once its batch
    /// has committed.
    pub(super) async fn append(&self, key: Vec<u8>, share: &ShareRecord) -> Result<AppendOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest { key, share: share.clone(), reply };
        self.requests.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the share appender stopped".into())
}

async fn run(pool: Pool, mut inbox: mpsc::Receiver<AppendRequest>, committed: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Nobody waits for these any more (a shutdown): leave them out.
        batch.retain(|request: &AppendRequest| !request.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        match append_batch(&pool, &batch).await {
            Ok(outcomes) => {
                committed.fetch_add(1, Ordering::Relaxed);
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Appends `batch` in one transaction; an outcome per request, in order.
async fn append_batch(pool: &Pool, batch: &[AppendRequest]) -> Result<Vec<AppendOutcome>, StoreError> {
    let started = tokio::time::Instant::now();
    let client = pool.get().await.map_err(|e| StoreError::Backend(format!("postgresql: {e}")))?;
    let rows = match tokio::time::timeout_at(started + BATCH_TIMEOUT, query_batch(&client, batch)).await {
        Ok(rows) => rows?,
        Err(_) => {
            // The connection may be stuck (half-open) or still running the
            // batch: never hand it out again.
            drop(Object::take(client));
            return Err(StoreError::Backend(format!(
                "postgresql: a batch of {} share appends took over {} s",
                batch.len(),
                BATCH_TIMEOUT.as_secs()
            )));
        }
    };
    let mut outcomes: Vec<Option<AppendOutcome>> = (0..batch.len()).map(|_| None).collect();
    for row in rows {
        // try_get: a row of an unexpected shape fails the batch; it must
        // not panic the one task every append of this store goes through.
        let ord: i32 = row.try_get(0).map_err(pg_error)?;
        let outcome: &str = row.try_get(1).map_err(pg_error)?;
        let position: Option<i64> = row.try_get(2).map_err(pg_error)?;
        let session_id: Option<String> = row.try_get(3).map_err(pg_error)?;
        let slot = usize::try_from(ord).ok().and_then(|i| i.checked_sub(1)).and_then(|i| outcomes.get_mut(i));
        let Some(slot) = slot.filter(|slot| slot.is_none()) else {
            return Err(StoreError::Backend(format!("{APPEND_FUNCTION} answered for share {ord} of {}", batch.len())));
        };
        *slot = Some(match (outcome, position, session_id) {
            ("appended", Some(position), Some(_)) => AppendOutcome::Appended(position as u64),
            ("duplicate", Some(position), Some(session_id)) => {
                AppendOutcome::Duplicate(Credit { position: position as u64, session_id })
            }
            ("template_gone", _, _) => AppendOutcome::TemplateGone,
            (outcome, ..) => {
                return Err(StoreError::Backend(format!("{APPEND_FUNCTION} answered {outcome:?} for share {ord}")))
            }
        });
    }
    // The transaction has committed: a share without an answer here would
    // be a bug in the function, reported rather than guessed at (and the
    // share answered already credited when it comes again).
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, outcome)| {
            outcome.ok_or_else(|| StoreError::Backend(format!("{APPEND_FUNCTION} gave no answer for share {}", i + 1)))
        })
        .collect()
}

async fn query_batch(client: &Object, batch: &[AppendRequest]) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT ord, outcome, credit_position, credit_session FROM {APPEND_FUNCTION}($1, $2, $3, $4, $5)"
        ))
        .await
        .map_err(pg_error)?;
    let keys: Vec<&[u8]> = batch.iter().map(|r| r.key.as_slice()).collect();
    let heights: Vec<i64> = batch.iter().map(|r| big(r.share.height)).collect();
    let sessions: Vec<&str> = batch.iter().map(|r| r.share.session_id.as_str()).collect();
    let records: Vec<Json<&ShareRecord>> = batch.iter().map(|r| Json(&r.share)).collect();
    let templates: Vec<&str> = batch.iter().map(|r| r.share.template_id.as_str()).collect();
    client.query(&statement, &[&keys, &heights, &sessions, &records, &templates]).await.map_err(pg_error)
}

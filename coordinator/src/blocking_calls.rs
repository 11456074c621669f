//! Calls run on tokio's blocking pool, counted until they let go of what
//! they hold. A call whose task was cut short (its request gone, its task
//! aborted at shutdown) still runs to its end, holding a database: a server
//! stopping waits until none is left, so the data directory can be opened
//! again once it returns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The count of calls running, shared by clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockingCalls(Arc<AtomicUsize>);

/// One running call's place in the count, given back on drop.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BlockingCalls {
    /// Runs `op(&held)` on a blocking thread, counted from before it is
    /// spawned until after `held` is dropped (so a count of 0 means no call
    /// holds it). An error: the call panicked.
    pub(crate) async fn run<H, T>(
        &self,
        held: H,
        op: impl FnOnce(&H) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError>
    where
        H: Send + 'static,
        T: Send + 'static,
    {
        self.0.fetch_add(1, Ordering::AcqRel);
        let counted = Counted(self.0.clone());
        tokio::task::spawn_blocking(move || {
            let result = op(&held);
            drop(held);
            drop(counted);
            result
        })
        .await
    }

    /// Calls still running.
    pub(crate) fn in_flight(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

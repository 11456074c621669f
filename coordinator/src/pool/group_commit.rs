//! Group commit: a share is acknowledged only once it is durable, and one
//! fsync makes every share written before it durable.
//!
//! Handlers write their share, take a ticket and await it; a committer
//! thread flushes the store whenever tickets are waiting and then publishes
//! the highest ticket the flush covered.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::storage::PoolStore;

pub struct GroupCommit {
    requested: Arc<(Mutex<u64>, Condvar)>,
    durable: watch::Receiver<u64>,
}

impl GroupCommit {
    pub fn start(store: Arc<dyn PoolStore>) -> Self {
        let requested = Arc::new((Mutex::new(0u64), Condvar::new()));
        let (durable_tx, durable) = watch::channel(0u64);
        let pending = requested.clone();
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || {
                let mut flushed = 0u64;
                loop {
                    let target = {
                        let (lock, ready) = &*pending;
                        let mut requested = lock.lock().expect("commit lock");
                        while *requested == flushed {
                            let (next, _) = ready.wait_timeout(requested, Duration::from_secs(1)).expect("commit lock");
                            requested = next;
                            if durable_tx.is_closed() {
                                return;
                            }
                        }
                        *requested
                    };
                    match store.flush() {
                        Ok(()) => {
                            flushed = target;
                            durable_tx.send_replace(flushed);
                        }
                        Err(err) => {
                            tracing::error!("flushing the share ledger failed (retrying): {err}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .expect("spawn the group-commit thread");
        GroupCommit { requested, durable }
    }

    /// Waits until everything written before this call is durable.
    pub async fn durable(&self) {
        let ticket = {
            let (lock, ready) = &*self.requested;
            let mut requested = lock.lock().expect("commit lock");
            *requested += 1;
            ready.notify_one();
            *requested
        };
        let mut durable = self.durable.clone();
        let _ = durable.wait_for(|flushed| *flushed >= ticket).await;
    }
}

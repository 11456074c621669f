//! Group commit: a share is acknowledged only once it is durable, and one
//! fsync makes every share written before it durable.
//!
//! Handlers write their share, take a ticket and await it; a committer
//! thread flushes the store whenever tickets are waiting and then publishes
//! the highest ticket the flush covered.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::storage::PoolStore;

pub struct GroupCommit {
    requested: Arc<(Mutex<Requests>, Condvar)>,
    durable: watch::Receiver<u64>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Requests {
    /// Tickets handed out so far.
    requested: u64,
    /// Set when the pool shuts down: flush what is pending and stop.
    stop: bool,
}

impl GroupCommit {
    pub fn start(store: Arc<dyn PoolStore>) -> Self {
        let requested = Arc::new((Mutex::new(Requests::default()), Condvar::new()));
        let (durable_tx, durable) = watch::channel(0u64);
        let pending = requested.clone();
        let thread = std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || {
                let mut flushed = 0u64;
                loop {
                    let target = {
                        let (lock, ready) = &*pending;
                        let mut requests = lock.lock().expect("commit lock");
                        while requests.requested == flushed {
                            if requests.stop {
                                return;
                            }
                            requests = ready.wait(requests).expect("commit lock");
                        }
                        requests.requested
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
        GroupCommit { requested, durable, thread: Some(thread) }
    }

    /// Waits until everything written before this call is durable.
    pub async fn durable(&self) {
        let ticket = {
            let (lock, ready) = &*self.requested;
            let mut requests = lock.lock().expect("commit lock");
            requests.requested += 1;
            ready.notify_one();
            requests.requested
        };
        let mut durable = self.durable.clone();
        let _ = durable.wait_for(|flushed| *flushed >= ticket).await;
    }
}

impl Drop for GroupCommit {
    /// Flushes what is pending, then stops the committer (releasing the store).
    fn drop(&mut self) {
        let (lock, ready) = &*self.requested;
        lock.lock().expect("commit lock").stop = true;
        ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

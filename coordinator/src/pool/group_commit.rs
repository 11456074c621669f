//! Group commit: a share is acknowledged only once it is durable, and one
//! fsync makes every share written before it durable.
//!
//! The share path (on a task of its own) writes its share and awaits
//! `GroupCommit::durable`, which takes a ticket; a committer
//! thread flushes the store whenever tickets are waiting and then publishes
//! the highest ticket the flush covered. A failed flush fails the tickets it
//! was for: their requests are answered with an error, never acknowledged
//! (what they wrote may still become durable with a later flush, which is
//! why a resubmitted share that was in fact credited is answered as such).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::storage::StoreError;

/// Where the committer stands: tickets up to `durable` are on disk; tickets
/// in `failed` (and not durable) were covered by a flush that failed.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    durable: u64,
    failed: u64,
}

pub(crate) struct GroupCommit {
    requested: Arc<(Mutex<Requests>, Condvar)>,
    progress: watch::Receiver<Progress>,
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
    /// Starts the committer over `flush` (the store's fsync).
    pub(crate) fn start(flush: impl Fn() -> Result<(), StoreError> + Send + 'static) -> Self {
        let requested = Arc::new((Mutex::new(Requests::default()), Condvar::new()));
        let (progress_tx, progress) = watch::channel(Progress::default());
        let pending = requested.clone();
        let thread = std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || {
                let mut done = 0u64;
                loop {
                    let target = {
                        let (lock, ready) = &*pending;
                        let mut requests = lock.lock().expect("commit lock");
                        while requests.requested == done {
                            if requests.stop {
                                return;
                            }
                            requests = ready.wait(requests).expect("commit lock");
                        }
                        requests.requested
                    };
                    match flush() {
                        Ok(()) => {
                            progress_tx.send_modify(|p| p.durable = target);
                        }
                        Err(err) => {
                            tracing::error!("flushing the pool's storage failed: {err}");
                            progress_tx.send_modify(|p| p.failed = target);
                            // Do not spin on a failing disk.
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    done = target;
                }
            })
            .expect("spawn the group-commit thread");
        GroupCommit { requested, progress, thread: Some(thread) }
    }

    /// Whether a flush has ever failed (the store refuses writes from then
    /// on: sled's errors stick until the database is reopened).
    pub(crate) fn has_failed(&self) -> bool {
        self.progress.borrow().failed > 0
    }

    /// Waits until everything written before this call is durable; an error
    /// when the flush that covered it failed (or the committer stopped).
    pub(crate) async fn durable(&self) -> Result<(), StoreError> {
        let ticket = {
            let (lock, ready) = &*self.requested;
            let mut requests = lock.lock().expect("commit lock");
            requests.requested += 1;
            ready.notify_one();
            requests.requested
        };
        let mut progress = self.progress.clone();
        let settled = progress
            .wait_for(|p| p.durable >= ticket || p.failed >= ticket)
            .await
            .map_err(|_| StoreError::Backend("the group-commit thread stopped".into()))?;
        if settled.durable >= ticket {
            Ok(())
        } else {
            Err(StoreError::FlushFailed)
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_failed_flush_is_never_acknowledged_and_a_later_one_is() {
        let failing = Arc::new(AtomicBool::new(true));
        let flushes = Arc::new(AtomicU32::new(0));
        let (f, n) = (failing.clone(), flushes.clone());
        let commits = GroupCommit::start(move || {
            n.fetch_add(1, Ordering::SeqCst);
            if f.load(Ordering::SeqCst) {
                Err(StoreError::Backend("disk full".into()))
            } else {
                Ok(())
            }
        });
        assert!(commits.durable().await.is_err(), "a failed flush must not acknowledge");
        failing.store(false, Ordering::SeqCst);
        commits.durable().await.expect("the disk is back");
        assert!(flushes.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn one_flush_covers_many_waiters() {
        let flushes = Arc::new(AtomicU32::new(0));
        let n = flushes.clone();
        let commits = Arc::new(GroupCommit::start(move || {
            n.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        }));
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let commits = commits.clone();
                tokio::spawn(async move { commits.durable().await })
            })
            .collect();
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        assert!(flushes.load(Ordering::SeqCst) < 50, "flushes were grouped");
    }
}

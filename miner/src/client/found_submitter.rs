//! Found nonces, from the devices to the pool or node: sent several at
//! once in the order found, and on a stop, the devices' last finds sent
//! within a grace before the process ends. Pool and solo mode share it;
//! what "send" means is theirs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use visionx::Found;

use super::work_dispatch::{FoundReceiver, Work, WorkDispatch};

/// How long a stopping miner keeps sending what it already found.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a stopping miner waits for the devices' running searches (a
/// GPU's queued steps and readback: well under a second).
pub(crate) const SEARCH_END_WAIT: Duration = Duration::from_secs(2);

/// Found nonces sent at once: a slow answer (or a pool silent until the
/// client's timeout) holds up this many at most, not every share behind it.
pub(crate) const SUBMITS_IN_FLIGHT: usize = 8;

/// Hands each found nonce to `submit`, in the order found and up to
/// [`SUBMITS_IN_FLIGHT`] at once, until `drain` is notified; then those
/// already found, and returns once every submission has ended (dropping
/// the returned future cancels those in flight).
pub(crate) async fn submit_found<F, Fut>(mut found: FoundReceiver, drain: Arc<Notify>, mut submit: F)
where
    F: FnMut(Arc<Work>, Found) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        while in_flight.len() >= SUBMITS_IN_FLIGHT {
            report_panic(in_flight.join_next().await);
        }
        tokio::select! {
            item = found.recv() => match item {
                Some((work, nonce)) => {
                    in_flight.spawn(submit(work, nonce));
                }
                None => break,
            },
            () = drain.notified() => found.close(),
            ended = in_flight.join_next(), if !in_flight.is_empty() => report_panic(ended),
        }
    }
    while let Some(ended) = in_flight.join_next().await {
        report_panic(Some(ended));
    }
}

/// A submission that panicked is a bug: said once, not lost silently.
fn report_panic(ended: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(err)) = ended {
        if err.is_panic() {
            tracing::error!("a share submission panicked: {err}");
        }
    }
}

/// Stops the devices, waits for their running searches to end (what those
/// find is reported then; [`SEARCH_END_WAIT`] at most), lets `submitter`
/// send what was found (within [`SHUTDOWN_GRACE`]), and aborts it past that.
pub(crate) async fn drain_found(dispatch: &WorkDispatch, drain: &Notify, mut submitter: tokio::task::JoinHandle<()>) {
    dispatch.stop();
    if !dispatch.searches_ended(SEARCH_END_WAIT).await {
        tracing::warn!("a device still searched {}s after the stop; not waiting for it", SEARCH_END_WAIT.as_secs());
    }
    drain.notify_one();
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut submitter).await.is_err() {
        tracing::warn!("stopping without an answer for some found shares ({}s passed)", SHUTDOWN_GRACE.as_secs());
        submitter.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use super::*;

    fn test_work() -> Arc<Work> {
        let params = visionx::Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 64, ..visionx::Params::CONSENSUS };
        Arc::new(Work {
            id: "j".into(),
            height: 1,
            input: Arc::new(visionx::PowInput::new([1; 32], 0, b"drain".to_vec(), params).unwrap()),
            target: visionx::Target(0),
            share_difficulty: 1,
            network_difficulty: 1,
            nonces: visionx::NonceRange::new(0, 100),
            pool: Some(0),
            received: Instant::now(),
        })
    }

    /// Found nonces queued behind a slow submission are all sent once the
    /// drain is asked for, and the drain then ends (the devices' senders may
    /// still be alive).
    #[tokio::test]
    async fn a_drain_sends_everything_found_then_ends() {
        use std::sync::atomic::AtomicU64;
        let (tx, rx) = super::super::work_dispatch::found_channel();
        let work = test_work();
        let found = |nonce| Found { nonce, digest: visionx::Digest([0; 32]) };
        let drain = Arc::new(Notify::new());
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (drain, sent) = (drain.clone(), sent.clone());
            submit_found(rx, drain, move |_, f| {
                let sent = sent.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    sent.fetch_add(f.nonce, Ordering::SeqCst);
                }
            })
        });
        for nonce in 1..=10 {
            tx.try_send((work.clone(), found(nonce))).unwrap();
        }
        drain.notify_one();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the drain ends").unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 55, "every nonce found before the drain was sent");
        assert!(tx.try_send((work, found(11))).is_err(), "nothing is taken after the drain");
    }

    /// A device still finishing its search when the miner stops (a GPU
    /// draining its queued steps) reports what it finds before the drain
    /// closes the channel: a block found then is sent, not dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_find_of_the_last_running_search_is_sent_on_stop() {
        use crate::backend::{BackendError, BackendKind, MiningBackend};
        use std::sync::atomic::AtomicU64;
        /// Takes 300 ms whatever the cancel says, then reports one find.
        struct Draining(Arc<std::sync::atomic::AtomicBool>);
        impl MiningBackend for Draining {
            fn name(&self) -> String {
                "draining".into()
            }
            fn kind(&self) -> BackendKind {
                BackendKind::Gpu
            }
            fn search(
                &mut self,
                job: &visionx::Job,
                _control: &Arc<visionx::SearchControl>,
                on_found: &(dyn Fn(Found) + Sync),
            ) -> Result<visionx::SearchEnd, BackendError> {
                self.0.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                on_found(Found { nonce: job.nonces.start + 7, digest: visionx::Digest([0; 32]) });
                Ok(visionx::SearchEnd::cancelled_after(job.nonces, 8))
            }
        }
        let (tx, rx) = super::super::work_dispatch::found_channel();
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dispatch = WorkDispatch::start(vec![Box::new(Draining(started.clone()))], tx);
        dispatch.set_work(Some(test_work()));
        while !started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drain = Arc::new(Notify::new());
        let sent = Arc::new(AtomicU64::new(0));
        let submitter = tokio::spawn({
            let (drain, sent) = (drain.clone(), sent.clone());
            submit_found(rx, drain, move |_, f| {
                let sent = sent.clone();
                async move {
                    sent.store(f.nonce, Ordering::SeqCst);
                }
            })
        });
        drain_found(&dispatch, &drain, submitter).await;
        assert_eq!(sent.load(Ordering::SeqCst), 7, "the running search's find was sent");
        assert_eq!(dispatch.found_dropped(), 0);
    }

    /// Shares are sent several at once, never more than the limit: a slow
    /// answer does not hold up every share behind it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn found_shares_are_sent_several_at_once_within_the_limit() {
        use std::sync::atomic::AtomicUsize;
        let (tx, rx) = super::super::work_dispatch::found_channel();
        let work = test_work();
        let (now, most, sent) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let drain = Arc::new(Notify::new());
        let task = tokio::spawn({
            let (drain, now, most, sent) = (drain.clone(), now.clone(), most.clone(), sent.clone());
            submit_found(rx, drain, move |_, _| {
                let (now, most, sent) = (now.clone(), most.clone(), sent.clone());
                async move {
                    most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        });
        for nonce in 0..30 {
            tx.try_send((work.clone(), Found { nonce, digest: visionx::Digest([0; 32]) })).unwrap();
        }
        drain.notify_one();
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("the drain ends").unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 30);
        let most = most.load(Ordering::SeqCst);
        assert!(most > 1 && most <= SUBMITS_IN_FLIGHT, "{most} at once");
    }
}

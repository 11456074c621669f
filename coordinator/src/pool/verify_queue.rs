//! Share verification off the async runtime: a fixed set of OS threads fed
//! by a bounded queue.
//!
//! Each thread takes up to a group's worth of queued shares at once (16 with
//! AVX-512, `CpuEngine::lanes`) and recomputes them together
//! (`FastEngine::hash_many`): one hash on its own is latency-bound at a
//! fraction of the interleaved rate, and a short queue still goes through at
//! the latency of one scalar hash. When the queue is
//! full, [`VerifyQueue::submit`] refuses at once and the HTTP layer answers
//! 503 with `Retry-After`, rather than queueing without limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use visionx::{CpuEngine, FastEngine};

use super::share_verifier::{verify_batch, ShareClaim, Verdict};

struct Task {
    claim: ShareClaim,
    reply: oneshot::Sender<(Verdict, Duration)>,
    enqueued: Instant,
}

/// How long a verifier with a SIMD engine waits for more shares to fill a
/// group: a small part of one scalar hash (several ms at consensus).
const GATHER_WINDOW: Duration = Duration::from_millis(1);

/// The queue is full: come back later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueFull;

pub(crate) struct VerifyQueue {
    sender: SyncSender<Task>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
}

impl VerifyQueue {
    /// Starts `threads` verifier threads on `engine` (`None`: the best this
    /// CPU runs) behind a queue of `capacity` shares; `hashes` counts every
    /// VisionX recomputation.
    pub(crate) fn start(threads: usize, engine: Option<CpuEngine>, capacity: usize, hashes: Arc<AtomicU64>) -> Self {
        let (sender, receiver) = mpsc::sync_channel::<Task>(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let depth = Arc::new(AtomicUsize::new(0));
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            let (depth, hashes) = (depth.clone(), hashes.clone());
            std::thread::Builder::new()
                .name(format!("share-verify-{i}"))
                .spawn(move || verifier_thread(engine, &receiver, &depth, &hashes))
                .expect("spawn a verifier thread");
        }
        VerifyQueue { sender, depth, capacity }
    }

    /// Queues a share; the verdict (and the time it waited plus took) comes
    /// back on the receiver.
    pub(crate) fn submit(&self, claim: ShareClaim) -> Result<oneshot::Receiver<(Verdict, Duration)>, QueueFull> {
        let (reply, verdict) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(Task { claim, reply, enqueued: Instant::now() }) {
            Ok(()) => Ok(verdict),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(QueueFull)
            }
        }
    }

    /// Shares queued or being verified now.
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

fn verifier_thread(
    engine: Option<CpuEngine>,
    receiver: &Mutex<Receiver<Task>>,
    depth: &AtomicUsize,
    hashes: &AtomicU64,
) {
    // The configuration checked the engine; should it not run, the best one does.
    let mut engine = engine.and_then(|e| FastEngine::with_engine(e).ok()).unwrap_or_default();
    let group = engine.engine().lanes();
    let simd = engine.engine() != CpuEngine::Scalar;
    loop {
        let batch: Vec<Task> = {
            let Ok(receiver) = receiver.lock() else { return };
            let Ok(first) = receiver.recv() else { return };
            let mut batch = vec![first];
            // Under load, shares arrive a few at a time: a short wait fills
            // a SIMD group, which verifies 16 in the time of about 8 alone.
            let deadline = Instant::now() + GATHER_WINDOW;
            while batch.len() < group {
                let task = match receiver.try_recv() {
                    Ok(task) => Ok(task),
                    Err(_) if simd => receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())),
                    Err(_) => break,
                };
                match task {
                    Ok(task) => batch.push(task),
                    Err(_) => break,
                }
            }
            batch
        };
        let claims: Vec<ShareClaim> = batch.iter().map(|t| t.claim.clone()).collect();
        let (verdicts, hashed) = verify_batch(&mut engine, &claims);
        hashes.fetch_add(hashed as u64, Ordering::Relaxed);
        for (task, verdict) in batch.into_iter().zip(verdicts) {
            depth.fetch_sub(1, Ordering::Relaxed);
            let _ = task.reply.send((verdict, task.enqueued.elapsed()));
        }
    }
}

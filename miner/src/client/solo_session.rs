//! The solo session: mine a node's template and submit the blocks found
//! (`vision-miner --solo NODE_URL`). A new template is fetched within a
//! second of a block landing elsewhere; node failures back off as in pool
//! mode, and a refusal ends the session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Notify;
use visionx::Found;

use super::miner_status::MinerStatus;
use super::node_client::{BlockTemplate, NodeClient, SubmitOutcome};
use super::pool_client::ApiFailure;
use super::session::{backoff, drain_found, submit_found, SessionEnd};
use super::work_dispatch::{Work, WorkDispatch};

/// Retries of a found block's submission after transient failures.
const MAX_BLOCK_SUBMIT_RETRIES: u32 = 8;

pub struct SoloSession {
    pub node: NodeClient,
    pub wallet: String,
}

/// Runs solo mode: mine the node's template, submit blocks, until the node
/// refuses the miner or `shutdown` (then a block already found is still
/// submitted, within `SHUTDOWN_GRACE`).
pub async fn run_solo(
    session: SoloSession,
    dispatch: Arc<WorkDispatch>,
    status: Arc<MinerStatus>,
    found: UnboundedReceiver<(Arc<Work>, Found)>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SessionEnd> {
    let drain = Arc::new(Notify::new());
    let templates: Arc<Mutex<Option<(String, BlockTemplate)>>> = Arc::new(Mutex::new(None));
    let block_found = Arc::new(Notify::new());
    let session = Arc::new(session);
    let submitter = {
        let blocks = Arc::new(BlockSubmitter {
            session: session.clone(),
            templates: templates.clone(),
            block_found: block_found.clone(),
            status: status.clone(),
            turn: Default::default(),
        });
        let drain = drain.clone();
        tokio::spawn(async move {
            submit_found(found, drain, |work, f| {
                let blocks = blocks.clone();
                async move { blocks.submit(&work, f).await }
            })
            .await;
        })
    };
    let result = tokio::select! {
        result = mine_templates(&session, &dispatch, &status, &templates, &block_found) => result,
        () = shutdown => Ok(()),
    };
    if result.is_ok() {
        tracing::info!("stopping: submitting any block already found");
        drain_found(&dispatch, &drain, submitter).await;
    } else {
        submitter.abort();
    }
    result
}

/// Submits found blocks: one at a time, and none for a template whose
/// block the node took (its other nonces could only be refused as
/// `stale_height`, and counted rejected).
struct BlockSubmitter {
    session: Arc<SoloSession>,
    templates: Arc<Mutex<Option<(String, BlockTemplate)>>>,
    block_found: Arc<Notify>,
    status: Arc<MinerStatus>,
    /// Held through a submission: the id of the last template whose block
    /// was accepted.
    turn: tokio::sync::Mutex<Option<String>>,
}

impl BlockSubmitter {
    /// Submits a found nonce if it is for the template mined now.
    async fn submit(&self, work: &Work, f: Found) {
        let mut accepted_for = self.turn.lock().await;
        if accepted_for.as_deref() == Some(work.id.as_str()) {
            return;
        }
        let template = self
            .templates
            .lock()
            .expect("template lock")
            .as_ref()
            .filter(|(id, _)| *id == work.id)
            .map(|(_, t)| t.clone());
        let Some(template) = template else { return };
        match submit_block(&self.session.node, &self.templates, &work.id, &template, f.nonce).await {
            Ok(answer) if answer.accepted => {
                tracing::info!(
                    "block {} accepted at height {}",
                    answer.hash.unwrap_or_default(),
                    template.header.height
                );
                *accepted_for = Some(work.id.clone());
                self.status.update(|c| {
                    c.blocks += 1;
                    c.accepted += 1;
                });
                self.block_found.notify_one();
            }
            Ok(answer) => {
                tracing::warn!("block rejected: {}", answer.reason.unwrap_or_default());
                self.status.update(|c| c.rejected += 1);
            }
            Err(failure) => tracing::warn!("could not submit a block: {failure}"),
        }
    }
}

/// Fetches the node's template, mines it, and fetches again within a second
/// of a block (ours or another's); ends only when the node refuses us.
async fn mine_templates(
    session: &SoloSession,
    dispatch: &WorkDispatch,
    status: &MinerStatus,
    templates: &Mutex<Option<(String, BlockTemplate)>>,
    block_found: &Notify,
) -> Result<(), SessionEnd> {
    status.connection(|c| {
        c.mode = "solo".into();
        c.url = session.node.url.clone();
    });
    let mut failures = 0u32;
    loop {
        match session.node.template(&session.wallet).await {
            Ok(template) => {
                failures = 0;
                let h = &template.header;
                let parent = h.parent_hash.get(..16).unwrap_or(&h.parent_hash);
                let id = format!("solo:{}:{parent}", h.height);
                let current = templates.lock().expect("template lock").as_ref().map(|(i, _)| i.clone());
                if current.as_deref() != Some(id.as_str()) {
                    match Work::from_template(&template, &id) {
                        Ok(work) => {
                            let (height, difficulty) = (template.header.height, template.header.difficulty);
                            tracing::info!("mining height {height} at difficulty {difficulty}");
                            status.connection(|c| {
                                c.connected = true;
                                c.last_error = None;
                                c.height = Some(height);
                                c.network_difficulty = Some(difficulty);
                                c.share_difficulty = Some(difficulty);
                                c.job_id = Some(id.clone());
                            });
                            *templates.lock().expect("template lock") = Some((id, template));
                            dispatch.set_work(Some(Arc::new(work)));
                        }
                        Err(message) => tracing::error!("unusable template: {message}"),
                    }
                }
                // New blocks elsewhere are picked up within a second.
                let _ = tokio::time::timeout(Duration::from_secs(1), block_found.notified()).await;
            }
            Err(failure) => {
                failures += 1;
                status.connection(|c| {
                    c.connected = false;
                    c.last_error = Some(failure.to_string());
                });
                let wait = match failure {
                    ApiFailure::RetryAfter { retry_after_secs, .. } => Duration::from_secs(retry_after_secs),
                    ApiFailure::Refused { reason, message } => {
                        return Err(SessionEnd::Refused(format!(
                            "the node refused this miner: {}: {reason}: {message}",
                            session.node.url
                        )));
                    }
                    _ => backoff(failures),
                };
                tracing::warn!("{}: {failure}; retrying in {:.1}s", session.node.url, wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Submits a found block, again after a transient failure (the node busy or
/// unreachable for a moment) for as long as its template is still the one
/// mined: a block is worth the retries. (One the node took before its
/// answer was lost comes back rejected as `stale_height`.)
async fn submit_block(
    node: &NodeClient,
    templates: &Mutex<Option<(String, BlockTemplate)>>,
    work_id: &str,
    template: &BlockTemplate,
    nonce: u64,
) -> Result<SubmitOutcome, ApiFailure> {
    let mut failures = 0u32;
    loop {
        match node.submit(template, nonce).await {
            Err(failure) if failure.is_transient() && failures < MAX_BLOCK_SUBMIT_RETRIES => {
                let current = templates.lock().expect("template lock").as_ref().is_some_and(|(id, _)| id == work_id);
                if !current {
                    return Err(failure);
                }
                failures += 1;
                let wait = match &failure {
                    ApiFailure::RetryAfter { retry_after_secs, .. } => Duration::from_secs(*retry_after_secs),
                    _ => backoff(failures),
                };
                tracing::warn!("could not submit a block ({failure}); retrying in {:.1}s", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
            answer => return answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use vision_protocol::HeaderFields;

    use super::*;

    /// Two nonces of one template found at once: the node is sent one block
    /// (the other could only come back `stale_height`, counted rejected).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_template_whose_block_was_taken_sends_no_second_block() {
        let submits = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/node/submit",
            axum::routing::post({
                let submits = submits.clone();
                move || {
                    let first = submits.fetch_add(1, Ordering::SeqCst) == 0;
                    async move {
                        // Slow: the second nonce is found while the first is sent.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        axum::Json(SubmitOutcome {
                            accepted: first,
                            hash: first.then(|| "ab".repeat(32)),
                            reason: (!first).then(|| "stale_height".into()),
                        })
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let template = BlockTemplate {
            header: HeaderFields {
                chain_id: "devnet".into(),
                height: 7,
                parent_hash: "00".repeat(32),
                timestamp: 1,
                difficulty: 1,
                tx_root: "00".repeat(32),
                miner: "land1solo".into(),
            },
            epoch: 0,
            epoch_seed: String::new(),
            pow_message: String::new(),
            params: visionx::Params::CONSENSUS,
            reward: 0,
        };
        let params = visionx::Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 64, ..visionx::Params::CONSENSUS };
        let work = Work {
            id: "solo:7:0000".into(),
            height: 7,
            input: Arc::new(visionx::PowInput::new([1; 32], 0, b"solo".to_vec(), params).unwrap()),
            target: visionx::Target(0),
            share_difficulty: 1,
            network_difficulty: 1,
            nonces: visionx::NonceRange::new(0, 100),
            pool: None,
            received: Instant::now(),
        };
        let blocks = BlockSubmitter {
            session: Arc::new(SoloSession { node: NodeClient::new(&url, None).unwrap(), wallet: "land1solo".into() }),
            templates: Arc::new(Mutex::new(Some((work.id.clone(), template)))),
            block_found: Default::default(),
            status: Arc::new(MinerStatus::new()),
            turn: Default::default(),
        };
        let found = |nonce| Found { nonce, digest: visionx::Digest([0; 32]) };
        tokio::join!(blocks.submit(&work, found(1)), blocks.submit(&work, found(2)));
        assert_eq!(submits.load(Ordering::SeqCst), 1, "one block sent");
        let counters = blocks.status.update(|c| c.clone());
        assert_eq!((counters.blocks, counters.accepted, counters.rejected), (1, 1, 0));
        server.abort();
    }
}

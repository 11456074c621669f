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
        let (templates, block_found, session, status, drain) =
            (templates.clone(), block_found.clone(), session.clone(), status.clone(), drain.clone());
        tokio::spawn(async move {
            submit_found(found, drain, |work, f| {
                let (templates, block_found, session, status) =
                    (templates.clone(), block_found.clone(), session.clone(), status.clone());
                async move { submit_found_block(&session, &templates, &block_found, &status, &work, f).await }
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

/// Submits a found nonce if it is for the template mined now.
async fn submit_found_block(
    session: &SoloSession,
    templates: &Mutex<Option<(String, BlockTemplate)>>,
    block_found: &Notify,
    status: &MinerStatus,
    work: &Work,
    f: Found,
) {
    let template =
        templates.lock().expect("template lock").as_ref().filter(|(id, _)| *id == work.id).map(|(_, t)| t.clone());
    let Some(template) = template else { return };
    match submit_block(&session.node, templates, &work.id, &template, f.nonce).await {
        Ok(answer) if answer.accepted => {
            tracing::info!("block {} accepted at height {}", answer.hash.unwrap_or_default(), template.header.height);
            status.update(|c| {
                c.blocks += 1;
                c.accepted += 1;
            });
            block_found.notify_one();
        }
        Ok(answer) => {
            tracing::warn!("block rejected: {}", answer.reason.unwrap_or_default());
            status.update(|c| c.rejected += 1);
        }
        Err(failure) => tracing::warn!("could not submit a block: {failure}"),
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

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
use super::node_client::{BlockTemplate, NodeClient};
use super::pool_client::ApiFailure;
use super::session::{backoff, SessionEnd};
use super::work_dispatch::{Work, WorkDispatch};

pub struct SoloSession {
    pub node: NodeClient,
    pub wallet: String,
}

/// Runs solo mode: mine the node's template, submit blocks.
pub async fn run_solo(
    session: SoloSession,
    dispatch: Arc<WorkDispatch>,
    status: Arc<MinerStatus>,
    mut found: UnboundedReceiver<(Arc<Work>, Found)>,
) -> Result<(), SessionEnd> {
    let templates: Arc<Mutex<Option<(String, BlockTemplate)>>> = Arc::new(Mutex::new(None));
    let block_found = Arc::new(Notify::new());
    let session = Arc::new(session);
    status.connection(|c| {
        c.mode = "solo".into();
        c.url = session.node.url.clone();
    });
    let submitter = {
        let (templates, block_found, session, status) =
            (templates.clone(), block_found.clone(), session.clone(), status.clone());
        tokio::spawn(async move {
            while let Some((work, f)) = found.recv().await {
                let template = templates
                    .lock()
                    .expect("template lock")
                    .as_ref()
                    .filter(|(id, _)| *id == work.id)
                    .map(|(_, t)| t.clone());
                let Some(template) = template else { continue };
                match session.node.submit(&template, f.nonce).await {
                    Ok(answer) if answer.accepted => {
                        tracing::info!(
                            "block {} accepted at height {}",
                            answer.hash.unwrap_or_default(),
                            template.header.height
                        );
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
        })
    };
    let mut failures = 0u32;
    loop {
        match session.node.template(&session.wallet).await {
            Ok(template) => {
                failures = 0;
                let h = &template.header;
                let id = format!("solo:{}:{}", h.height, &h.parent_hash[..16.min(h.parent_hash.len())]);
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
                        submitter.abort();
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

//! The solo session: mine a node's template and submit the blocks found
//! (`vision-miner --solo NODE_URL`). A new template is fetched within a
//! second of a block landing elsewhere; node failures back off as in pool
//! mode, and a refusal ends the session (of a template request, or of a
//! block submission for our credential, which is asked at the start, not
//! at the first block found). Blocks of one template are sent one at a
//! time until its height is taken, again after a transient failure for as
//! long as no other template has come; after a try whose answer was lost,
//! the node's block at that height is looked up by hash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use visionx::Found;

use super::found_submitter::{drain_found, submit_found};
use super::miner_status::MinerStatus;
use super::node_client::{BlockTemplate, NodeClient, SubmitOutcome};
use super::pool_client::{printable, ApiFailure};
use super::retry_policy::{backoff, retry_after, wait_before_retry};
use super::session::SessionEnd;
use super::work_dispatch::{FoundReceiver, Work, WorkDispatch};

/// A node silent this long: its template is likely behind the chain
/// (other nodes go on), so hashing stops until it answers again (blocks
/// already found are still sent: the node may come back on that template).
const SILENT_NODE_STOP: Duration = Duration::from_secs(300);

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
    found: FoundReceiver,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SessionEnd> {
    let drain = Arc::new(Notify::new());
    let templates: Arc<Mutex<Option<(String, BlockTemplate)>>> = Arc::new(Mutex::new(None));
    let block_found = Arc::new(Notify::new());
    let (refusal, mut refused) = tokio::sync::watch::channel(None);
    let session = Arc::new(session);
    let submitter = {
        let blocks = Arc::new(BlockSubmitter {
            session: session.clone(),
            templates: templates.clone(),
            block_found: block_found.clone(),
            status: status.clone(),
            turns: Default::default(),
            refusal,
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
        result = mine_templates(&session, &dispatch, &status, &templates, &block_found, SILENT_NODE_STOP) => result,
        Ok(message) = refused.wait_for(Option::is_some) => Err(SessionEnd::Refused(message.clone().unwrap_or_default())),
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

/// Submits found blocks: those of one template one at a time, and none
/// once its height is taken, by our block or another's (its other nonces
/// could only be refused as `stale_height`, and counted rejected). Blocks
/// of different templates never wait for each other.
struct BlockSubmitter {
    session: Arc<SoloSession>,
    templates: Arc<Mutex<Option<(String, BlockTemplate)>>>,
    block_found: Arc<Notify>,
    status: Arc<MinerStatus>,
    /// Template id -> its turn, holding whether its height is taken. Only
    /// the templates still mined or being submitted for are kept.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<bool>>>>,
    /// Set when the node refuses our block submissions themselves (no or
    /// a wrong `--node-token`): every block would be lost, so mining stops.
    refusal: tokio::sync::watch::Sender<Option<String>>,
}

impl BlockSubmitter {
    /// Submits a found nonce if it is for the template mined now.
    async fn submit(&self, work: &Work, f: Found) {
        let mined = self.templates.lock().expect("template lock").as_ref().map(|(id, _)| id.clone());
        let turn = {
            let mut turns = self.turns.lock().expect("turns lock");
            // A template no longer mined, with no submission under way, is done.
            turns.retain(|id, turn| Some(id) == mined.as_ref() || *id == work.id || Arc::strong_count(turn) > 1);
            turns.entry(work.id.clone()).or_default().clone()
        };
        let mut taken = turn.lock().await;
        if *taken {
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
        let height = template.header.height;
        let (answer, failed_before) =
            submit_block(&self.session.node, &self.templates, &work.id, &template, f.nonce).await;
        // A try that failed may have been taken, its answer lost: then it
        // comes back `stale_height` when sent again, or never gets through.
        // The node's block at that height says whose it is.
        let maybe_taken = match &answer {
            Ok(answer) => failed_before && !answer.accepted && answer.reason.as_deref() == Some("stale_height"),
            Err(failure) => failure.is_transient(),
        };
        let ours = if maybe_taken { self.ours_at(height, &f).await } else { Some(false) };
        let accepted = match (answer, ours) {
            (Ok(answer), _) if answer.accepted => Some(answer.hash.unwrap_or_default()),
            (_, Some(true)) => {
                tracing::info!("the node took block {height} before its answer was lost");
                Some(f.digest.to_hex())
            }
            (_, None) => {
                tracing::warn!("block {height} may have been taken: the node did not say (its answer was lost)");
                None
            }
            (Ok(answer), Some(false)) => {
                let reason = printable(&answer.reason.unwrap_or_default());
                tracing::warn!("block rejected: {reason}");
                self.status.update(|c| c.rejected += 1);
                if reason == "stale_height" {
                    // Another block holds the height: this template is done.
                    *taken = true;
                    self.block_found.notify_one();
                }
                None
            }
            (Err(failure), Some(false)) => {
                if refuses_every_block(&failure) {
                    let message = format!(
                        "the node refused this miner's block submission (check --node-token): {}: {failure}",
                        self.session.node.url
                    );
                    self.refusal.send_replace(Some(message));
                } else {
                    tracing::warn!("could not submit a block: {failure}");
                }
                None
            }
        };
        if let Some(hash) = accepted {
            tracing::info!("block {} accepted at height {height}", printable(&hash));
            *taken = true;
            self.status.update(|c| {
                c.blocks += 1;
                c.accepted += 1;
            });
            self.block_found.notify_one();
        }
    }

    /// Whether the chain's block at `height` is `found` (its hash is the
    /// digest); `None` when the node does not answer.
    async fn ours_at(&self, height: u64, found: &Found) -> Option<bool> {
        match self.session.node.block(height).await {
            Ok(block) => Some(block.hash == found.digest.to_hex()),
            Err(ApiFailure::Refused { .. }) => Some(false),
            Err(_) => None,
        }
    }
}

/// Whether a failed submission says the node takes no block from us at all:
/// our credential is missing or wrong, or its writes are off.
fn refuses_every_block(failure: &ApiFailure) -> bool {
    match failure {
        ApiFailure::Unauthorized => true,
        ApiFailure::Refused { reason, .. } => ["forbidden", "node_writes_disabled"].contains(&reason.as_str()),
        _ => false,
    }
}

/// How often the start's credential check asks again when the node says
/// to wait (it counts wrong tokens per address: a rig restarted in a loop
/// with a wrong one is told to wait, and must not take that for a yes).
const CREDENTIAL_CHECK_TRIES: u32 = 3;

/// Asks the node, before mining, whether it takes this miner's blocks: a
/// missing or wrong `--node-token` (or node writes off) ends the session
/// now, not when the first block is found (hours of mining on, and that
/// block lost). A node that does not answer, keeps saying to wait, or reads
/// the body before the credential is mined at, as before, and tells at the
/// first block.
async fn ensure_the_node_takes_our_blocks(node: &NodeClient) -> Result<(), SessionEnd> {
    for tries in 1..=CREDENTIAL_CHECK_TRIES {
        match node.check_submit_credential().await {
            Err(failure) if refuses_every_block(&failure) => {
                return Err(SessionEnd::Refused(format!(
                    "the node takes no block from this miner (check --node-token): {}: {failure}",
                    node.url
                )));
            }
            Err(ApiFailure::RetryAfter { retry_after_secs, .. }) if tries < CREDENTIAL_CHECK_TRIES => {
                tokio::time::sleep(retry_after(retry_after_secs)).await;
            }
            Err(failure) if failure.is_transient() => {
                tracing::warn!(
                    "{}: could not ask whether the node takes this miner's blocks ({failure}); mining on",
                    node.url
                );
                return Ok(());
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Fetches the node's template, mines it, and fetches again within a second
/// of a block (ours or another's); ends only when the node refuses us. A
/// node silent past `silent_stop` ([`SILENT_NODE_STOP`]) stops the devices
/// until it answers.
async fn mine_templates(
    session: &SoloSession,
    dispatch: &WorkDispatch,
    status: &MinerStatus,
    templates: &Mutex<Option<(String, BlockTemplate)>>,
    block_found: &Notify,
    silent_stop: Duration,
) -> Result<(), SessionEnd> {
    status.connection(|c| {
        c.mode = "solo".into();
        c.url = session.node.url.clone();
    });
    ensure_the_node_takes_our_blocks(&session.node).await?;
    let mut failures = 0u32;
    let mut answered = std::time::Instant::now();
    loop {
        match session.node.template(&session.wallet).await {
            Ok(template) => {
                let h = &template.header;
                let parent = h.parent_hash.get(..16).unwrap_or(&h.parent_hash);
                let id = format!("solo:{}:{parent}", h.height);
                let current = templates.lock().expect("template lock").as_ref().map(|(i, _)| i.clone());
                // (The same template after a silence that stopped the devices: mined again.)
                if current.as_deref() != Some(id.as_str()) || dispatch.current_work().is_none() {
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
                        Err(message) => {
                            // The chain moved on (another id) to a block this
                            // miner cannot mine: the last template's height is
                            // taken, so its work stops now (and its blocks are
                            // no longer sent, after a silence that had stopped
                            // the work already too).
                            if dispatch.current_work().is_some() {
                                dispatch.set_work(None);
                            }
                            *templates.lock().expect("template lock") = None;
                            // Said once per try, with a growing wait: not every second.
                            failures += 1;
                            let wait = backoff(failures);
                            let url = &session.node.url;
                            tracing::error!(
                                "{url}: unusable template: {message}; asking again in {:.1}s",
                                wait.as_secs_f64()
                            );
                            status.connection(|c| c.last_error = Some(format!("unusable template: {message}")));
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                }
                failures = 0;
                answered = std::time::Instant::now();
                // (Also when the template is the same: a failed ask before it
                // must not leave the status showing the node away.)
                status.connection(|c| {
                    c.connected = true;
                    c.last_error = None;
                });
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
                    ApiFailure::RetryAfter { retry_after_secs, .. } => retry_after(retry_after_secs),
                    ApiFailure::Refused { reason, message } => {
                        return Err(SessionEnd::Refused(format!(
                            "the node refused this miner: {}: {reason}: {message}",
                            session.node.url
                        )));
                    }
                    _ => backoff(failures),
                };
                tracing::warn!("{}: {failure}; retrying in {:.1}s", session.node.url, wait.as_secs_f64());
                if answered.elapsed() > silent_stop && dispatch.current_work().is_some() {
                    tracing::warn!(
                        "no template for {}s: stopping work on the last one until the node answers",
                        silent_stop.as_secs()
                    );
                    // (The template is kept: a block found on it is still
                    // sent, should the node come back on it.)
                    dispatch.set_work(None);
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Submits a found block, again after a transient failure (the node busy,
/// restarting or unreachable) for as long as its template is still the one
/// mined, however long the node is away: a block is worth the retries, and
/// only the node's next template says its height is taken. With the
/// answer, whether a try failed before it (the node may have taken that one).
async fn submit_block(
    node: &NodeClient,
    templates: &Mutex<Option<(String, BlockTemplate)>>,
    work_id: &str,
    template: &BlockTemplate,
    nonce: u64,
) -> (Result<SubmitOutcome, ApiFailure>, bool) {
    let mut failures = 0u32;
    loop {
        match node.submit(template, nonce).await {
            Err(failure) if failure.is_transient() => {
                let current = templates.lock().expect("template lock").as_ref().is_some_and(|(id, _)| id == work_id);
                if !current {
                    return (Err(failure), failures > 0);
                }
                failures += 1;
                let wait = wait_before_retry(&failure, failures);
                tracing::warn!("could not submit a block ({failure}); retrying in {:.1}s", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
            answer => return (answer, failures > 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Instant;

    use vision_protocol::HeaderFields;

    use super::*;

    /// What the fake node does with each submission, in turn.
    #[derive(Clone, Copy, Debug)]
    enum Answer {
        Accept,
        Reject(&'static str),
        /// Takes the block, then fails before answering (500).
        TakeAndFail,
        /// Fails (500) without taking it.
        Fail,
        /// Busy: 503, Retry-After 1 s, without taking it.
        Busy,
    }

    /// A template at `height` (its parent named after it) with `params`.
    fn template_at(height: u64, difficulty: u64, params: visionx::Params) -> BlockTemplate {
        BlockTemplate {
            header: HeaderFields {
                chain_id: "devnet".into(),
                height,
                parent_hash: format!("{height:064x}"),
                timestamp: 1,
                difficulty,
                tx_root: "00".repeat(32),
                miner: "land1solo".into(),
            },
            epoch: 0,
            epoch_seed: String::new(),
            pow_message: String::new(),
            params,
            reward: 0,
        }
    }

    /// Params small enough for a test's CPU.
    const SMALL: visionx::Params =
        visionx::Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 64, ..visionx::Params::CONSENSUS };

    /// A node on loopback serving `template` at `/node/template`: its URL,
    /// and the server to abort.
    async fn template_node<H, T>(template: H) -> (String, tokio::task::JoinHandle<()>)
    where
        H: axum::handler::Handler<T, ()>,
        T: 'static,
    {
        let app = axum::Router::new().route("/node/template", axum::routing::get(template));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        (url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
    }

    /// What `mine_templates` works with, for a node at a URL, with no device.
    struct Solo {
        session: SoloSession,
        dispatch: Arc<WorkDispatch>,
        _found: FoundReceiver,
        status: MinerStatus,
        templates: Mutex<Option<(String, BlockTemplate)>>,
        block_found: Notify,
        silent_stop: Duration,
    }

    impl Solo {
        fn at(url: &str) -> Solo {
            let (found, _found) = super::super::work_dispatch::found_channel();
            Solo {
                session: SoloSession { node: NodeClient::new(url, None).unwrap(), wallet: "land1solo".into() },
                dispatch: WorkDispatch::start(Vec::new(), found),
                _found,
                status: MinerStatus::new(),
                templates: Mutex::new(None),
                block_found: Notify::new(),
                silent_stop: SILENT_NODE_STOP,
            }
        }

        async fn mine_templates(&self) -> Result<(), SessionEnd> {
            let Solo { session, dispatch, status, templates, block_found, silent_stop, .. } = self;
            mine_templates(session, dispatch, status, templates, block_found, *silent_stop).await
        }
    }

    /// The digest the tests' miner finds with `nonce`.
    fn digest_of(nonce: u64) -> visionx::Digest {
        visionx::Digest([nonce as u8; 32])
    }

    /// A node on loopback answering submissions from `script` (slowly, so a
    /// second nonce is found while the first is sent), with its block at
    /// height 7 the first it took. Returns its URL and the submissions seen.
    async fn fake_node(script: &[Answer]) -> (String, Arc<Mutex<Vec<u64>>>) {
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (seen, taken) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(None::<u64>)));
        let submit = {
            let (seen, taken) = (seen.clone(), taken.clone());
            move |axum::Json(body): axum::Json<serde_json::Value>| {
                let nonce = body["nonce"].as_u64().unwrap();
                seen.lock().unwrap().push(nonce);
                let answer = script.lock().unwrap().pop_front().unwrap_or(Answer::Reject("stale_height"));
                if matches!(answer, Answer::Accept | Answer::TakeAndFail) {
                    taken.lock().unwrap().get_or_insert(nonce);
                }
                async move {
                    use axum::response::IntoResponse;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let outcome = |accepted: bool, reason: Option<&str>| SubmitOutcome {
                        accepted,
                        hash: accepted.then(|| "ab".repeat(32)),
                        reason: reason.map(str::to_string),
                    };
                    match answer {
                        Answer::Accept => axum::Json(outcome(true, None)).into_response(),
                        Answer::Reject(reason) => axum::Json(outcome(false, Some(reason))).into_response(),
                        Answer::TakeAndFail | Answer::Fail => {
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                        }
                        Answer::Busy => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "1")],
                            axum::Json(serde_json::json!({"error": "busy", "message": "try again"})),
                        )
                            .into_response(),
                    }
                }
            }
        };
        // Another miner's block when it took none.
        let block = move || {
            let taken = *taken.lock().unwrap();
            async move {
                axum::Json(vision_protocol::node::ChainBlock {
                    height: 7,
                    hash: taken.map_or("cd".repeat(32), |nonce| digest_of(nonce).to_hex()),
                    parent_hash: "00".repeat(32),
                    timestamp: 1,
                    difficulty: 1,
                    tx_root: "00".repeat(32),
                    miner: "land1solo".into(),
                    nonce: taken.unwrap_or(1),
                    reward: 1,
                })
            }
        };
        let app = axum::Router::new()
            .route("/node/submit", axum::routing::post(submit))
            .route("/node/block/7", axum::routing::get(block));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn submitter(url: &str) -> (BlockSubmitter, Work) {
        let template = template_at(7, 1, visionx::Params::CONSENSUS);
        let work = Work {
            id: "solo:7:0000".into(),
            height: 7,
            input: Arc::new(visionx::PowInput::new([1; 32], 0, b"solo".to_vec(), SMALL).unwrap()),
            target: visionx::Target(0),
            share_difficulty: 1,
            network_difficulty: 1,
            nonces: visionx::NonceRange::new(0, 100),
            pool: None,
            received: Instant::now(),
        };
        let blocks = BlockSubmitter {
            session: Arc::new(SoloSession { node: NodeClient::new(url, None).unwrap(), wallet: "land1solo".into() }),
            templates: Arc::new(Mutex::new(Some((work.id.clone(), template)))),
            block_found: Default::default(),
            status: Arc::new(MinerStatus::new()),
            turns: Default::default(),
            refusal: tokio::sync::watch::channel(None).0,
        };
        (blocks, work)
    }

    /// The node moves on to a template this miner cannot mine (params past
    /// the limits after an upgrade, say): the last template's work stops at
    /// once, not hashed on a height already taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_template_the_miner_cannot_mine_stops_the_last_ones_work() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let height = Arc::new(AtomicU64::new(7));
        let template = {
            let height = height.clone();
            move || {
                let height = height.load(Ordering::SeqCst);
                let params = match height {
                    7 => SMALL,
                    _ => visionx::Params { mix_iters: visionx::params::MAX_MIX_ITERS + 1, ..SMALL },
                };
                async move { axum::Json(template_at(height, 1_000_000, params)) }
            }
        };
        let (url, server) = template_node(template).await;
        let solo = Solo::at(&url);
        let (dispatch, templates) = (&solo.dispatch, &solo.templates);
        let mining = solo.mine_templates();
        let watching = async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while dispatch.current_work().is_none_or(|w| w.height != 7) {
                assert!(Instant::now() < deadline, "never mined height 7");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            height.store(8, Ordering::SeqCst);
            // (The node is asked again within a second.)
            while dispatch.current_work().is_some() {
                assert!(Instant::now() < deadline, "still mining height 7 after the node moved on");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            ended = mining => panic!("the session ended: {ended:?}"),
            () = watching => {}
        }
        assert!(templates.lock().unwrap().is_none());
        dispatch.stop();
        server.abort();
    }

    /// A node that failed one ask and then answers the same template again
    /// shows as connected at once, not only once the chain moves on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_answering_again_shows_connected_on_the_same_template() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let failing = Arc::new(AtomicBool::new(false));
        let template = {
            let failing = failing.clone();
            move || {
                let fail = failing.load(Ordering::SeqCst);
                async move {
                    use axum::response::IntoResponse;
                    if fail {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    axum::Json(template_at(7, 1_000_000, SMALL)).into_response()
                }
            }
        };
        let (url, server) = template_node(template).await;
        let solo = Solo::at(&url);
        let (dispatch, status) = (&solo.dispatch, &solo.status);
        let mining = solo.mine_templates();
        let connected = || status.connection(|c| c.connected && c.last_error.is_none());
        let watching = async {
            let deadline = Instant::now() + Duration::from_secs(10);
            for (fail, connected_then) in [(false, true), (true, false), (false, true)] {
                failing.store(fail, Ordering::SeqCst);
                while connected() != connected_then {
                    assert!(Instant::now() < deadline, "never shown connected: {connected_then}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        tokio::select! {
            ended = mining => panic!("the session ended: {ended:?}"),
            () = watching => {}
        }
        assert_eq!(dispatch.current_work().map(|w| w.height), Some(7), "the same template, mined on");
        dispatch.stop();
        server.abort();
    }

    /// A node silent past the silence cut (here 300 ms) stops the devices,
    /// keeping the template; the node answering again on it has it mined
    /// again; an unusable template after a silence clears it (its blocks
    /// are no longer sent).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_node_stops_the_devices_until_it_answers() {
        use std::sync::atomic::{AtomicU8, Ordering};
        // 0: the template; 1: failing; 2: an unusable template (tables past
        // the limits) at the same height.
        let answer = Arc::new(AtomicU8::new(0));
        let template = {
            let answer = answer.clone();
            move || {
                let answer = answer.load(Ordering::SeqCst);
                async move {
                    use axum::response::IntoResponse;
                    match answer {
                        0 => axum::Json(template_at(7, 1_000_000, SMALL)).into_response(),
                        1 => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                        _ => axum::Json(template_at(7, 1_000_000, visionx::Params { dataset_mb: 1 << 20, ..SMALL }))
                            .into_response(),
                    }
                }
            }
        };
        let (url, server) = template_node(template).await;
        let solo = Solo { silent_stop: Duration::from_millis(300), ..Solo::at(&url) };
        let (dispatch, templates) = (&solo.dispatch, &solo.templates);
        let mining = solo.mine_templates();
        let held = || templates.lock().unwrap().as_ref().map(|(_, t)| t.header.height);
        let watching = async {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mined = || dispatch.current_work().map(|w| w.height);
            let phases =
                [(0, Some(7), Some(7)), (1, None, Some(7)), (0, Some(7), Some(7)), (1, None, Some(7)), (2, None, None)];
            for (phase, (node, mined_then, held_then)) in phases.into_iter().enumerate() {
                answer.store(node, Ordering::SeqCst);
                while mined() != mined_then || held() != held_then {
                    assert!(Instant::now() < deadline, "phase {phase}: mined {:?}, held {:?}", mined(), held());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        tokio::select! {
            ended = mining => panic!("the session ended: {ended:?}"),
            () = watching => {}
        }
        dispatch.stop();
        server.abort();
    }

    /// The start's credential check: a node that says to wait (its count
    /// of wrong tokens from this address is full) is asked again, and its
    /// refusal then ends the session; an answer about the body is a yes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_credential_check_waits_out_a_rate_limit_before_its_answer() {
        use axum::http::StatusCode;
        let answer = |status: StatusCode, error: &str| {
            let body = axum::Json(serde_json::json!({"error": error, "message": "test"}));
            (status, [("retry-after", "1")], body)
        };
        let cases = [
            (
                vec![answer(StatusCode::TOO_MANY_REQUESTS, "rate_limited"), answer(StatusCode::FORBIDDEN, "forbidden")],
                false,
            ),
            (vec![answer(StatusCode::UNPROCESSABLE_ENTITY, "bad_json")], true),
            (vec![answer(StatusCode::TOO_MANY_REQUESTS, "rate_limited"); 3], true),
        ];
        for (script, mines) in cases {
            let asked = script.len();
            let script = Arc::new(Mutex::new(VecDeque::from(script)));
            let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let submit = {
                let (script, seen) = (script.clone(), seen.clone());
                move || {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let next = script.lock().unwrap().pop_front().expect("asked once too often");
                    async move { next }
                }
            };
            let app = axum::Router::new().route("/node/submit", axum::routing::post(submit));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            let checked = ensure_the_node_takes_our_blocks(&NodeClient::new(&url, Some("token".into())).unwrap()).await;
            assert_eq!(checked.is_ok(), mines, "{checked:?}");
            assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), asked);
            server.abort();
        }
    }

    /// Two nonces of one template found at once: a second block is sent
    /// only while the height is not taken (by our block, one whose answer
    /// was lost included, or another's), and what is counted is what the
    /// chain holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_of_one_template_take_turns_until_its_height_is_taken() {
        use Answer::*;
        // The node's script, the nonces it is sent, (blocks, rejected).
        type Case = (&'static [Answer], &'static [u64], (u64, u64));
        let table: &[Case] = &[
            (&[Accept], &[1], (1, 0)),
            (&[Reject("bad_pow"), Accept], &[1, 2], (1, 1)),
            // Taken, its answer lost: sent again, `stale_height`, and the
            // node's block at that height is ours.
            (&[TakeAndFail, Reject("stale_height")], &[1, 1], (1, 0)),
            // Failed, then `stale_height`: another miner's block (with the
            // same nonce) is there. Rejected once; the height is taken.
            (&[Fail, Reject("stale_height")], &[1, 1], (0, 1)),
            (&[Reject("stale_height")], &[1], (0, 1)),
            // A node away for longer than a pool's block gets tries (8
            // after the first): still sent while the template is current.
            (&[Busy, Busy, Busy, Busy, Busy, Busy, Busy, Busy, Busy, Accept], &[1; 10], (1, 0)),
        ];
        for (script, sent, (blocks, rejected)) in table {
            let (url, seen) = fake_node(script).await;
            let (submitter, work) = submitter(&url);
            let found = |nonce| Found { nonce, digest: digest_of(nonce) };
            tokio::join!(submitter.submit(&work, found(1)), submitter.submit(&work, found(2)));
            assert_eq!(seen.lock().unwrap().as_slice(), *sent, "{script:?}");
            let counters = submitter.status.update(|c| c.clone());
            assert_eq!((counters.blocks, counters.rejected), (*blocks, *rejected), "{script:?}");
        }
    }
}

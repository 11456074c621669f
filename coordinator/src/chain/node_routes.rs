//! The devnet's node API (`/node/*`), served by the coordinator itself so
//! other programs (solo miners, a second coordinator with `--upstream`) can
//! use the chain.
//!
//! Reads are public. Writes (`/node/submit`, `/node/transfer`) change chain
//! state and can spend the pool's funds, so they need a bearer credential:
//! the node token, or the admin token. Without either configured they are
//! off. The pool itself calls its embedded chain in-process, not through
//! these routes. Submissions hash on a small, bounded set of blocking
//! threads (503 when all are busy), never under the devnet's write lock.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::devnet::DevnetChain;
use super::{
    Balance, BlockSubmission, BlockTemplate, Chain, ChainBlock, ChainError, SubmitOutcome, TransferReceipt,
    TransferRequest,
};
use crate::api_error::{ApiError, AppJson, AppPath, AppQuery};
use crate::bearer_auth::CredentialGuesses;
use crate::client_source::TrustedProxies;

/// Submissions hashed at once through the node API.
const SUBMIT_HASHERS: usize = 2;
/// Balances read at once through the node API.
const BALANCE_SCANNERS: usize = 2;

#[derive(Clone)]
struct NodeApiState {
    devnet: Arc<DevnetChain>,
    /// Credentials accepted for writes (node token, admin token).
    write_tokens: Arc<[Arc<str>]>,
    /// Wrong credentials per source (shared with the admin routes).
    guesses: Arc<CredentialGuesses>,
    trusted_proxies: TrustedProxies,
    hashers: Arc<Semaphore>,
    scanners: Arc<Semaphore>,
}

/// The node routes. `write_tokens` are the credentials that may submit and
/// transfer; empty turns writes off. A source guessing wrong ones is held
/// (`guesses`, the clients named by `trusted_proxies`).
pub(crate) fn router(
    devnet: Arc<DevnetChain>,
    write_tokens: Vec<Arc<str>>,
    guesses: Arc<CredentialGuesses>,
    trusted_proxies: TrustedProxies,
) -> Router {
    let state = NodeApiState {
        devnet,
        write_tokens: write_tokens.into(),
        guesses,
        trusted_proxies,
        hashers: Arc::new(Semaphore::new(SUBMIT_HASHERS)),
        scanners: Arc::new(Semaphore::new(BALANCE_SCANNERS)),
    };
    Router::new()
        .route("/node/template", get(template))
        .route("/node/submit", post(submit))
        .route("/node/block/{height}", get(block))
        .route("/node/balance/{address}", get(balance))
        .route("/node/transfer", post(transfer).get(transfer_by_key))
        .route("/node/tip", get(tip))
        .with_state(state)
}

fn require_writer(state: &NodeApiState, source: Option<SocketAddr>, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.write_tokens.is_empty() {
        return Err(ApiError::not_found(
            "node_writes_disabled",
            "node writes are off: configure --node-token (or --admin-token)",
        ));
    }
    let source = source.map(|peer| state.trusted_proxies.source(peer.ip(), headers));
    let expected: Vec<&str> = state.write_tokens.iter().map(|t| &**t).collect();
    state.guesses.check(source, headers, &expected, "node token", state.guesses.now_ms())
}

/// A request that carries a node-write credential. Taken before the body:
/// without a credential the answer is the credential's (404 writes off, 401,
/// 403), whatever was sent, and no body is read for it.
struct NodeWriter;

impl axum::extract::FromRequestParts<NodeApiState> for NodeWriter {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &NodeApiState,
    ) -> Result<Self, Self::Rejection> {
        let source = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| *peer);
        require_writer(state, source, &parts.headers).map(|()| NodeWriter)
    }
}

#[derive(Debug, Deserialize)]
struct TemplateQuery {
    address: String,
}

async fn template(
    State(state): State<NodeApiState>,
    AppQuery(query): AppQuery<TemplateQuery>,
) -> Result<AppJson<BlockTemplate>, ApiError> {
    Ok(AppJson(state.devnet.template(&query.address)?))
}

async fn submit(
    State(state): State<NodeApiState>,
    _writer: NodeWriter,
    AppJson(block): AppJson<BlockSubmission>,
) -> Result<AppJson<SubmitOutcome>, ApiError> {
    let outcome = on_a_free_thread(&state.devnet, &state.hashers, "the node is verifying other blocks", move |d| {
        d.submit(&block)
    })
    .await?;
    Ok(AppJson(outcome))
}

/// Runs `call` on a blocking thread if one of `threads` is free, else 503
/// `busy`. The permit travels with the call: a caller hanging up frees
/// nothing early.
async fn on_a_free_thread<T: Send + 'static>(
    devnet: &Arc<DevnetChain>,
    threads: &Arc<Semaphore>,
    busy: &'static str,
    call: impl FnOnce(&DevnetChain) -> Result<T, ChainError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = threads.clone().try_acquire_owned().map_err(|_| ApiError::busy(busy, 1))?;
    let answer = devnet
        .on_blocking_thread(move |devnet| {
            let _permit = permit;
            call(devnet)
        })
        .await?;
    Ok(answer)
}

async fn block(
    State(state): State<NodeApiState>,
    AppPath(height): AppPath<String>,
) -> Result<AppJson<ChainBlock>, ApiError> {
    let height: u64 = height.parse().map_err(|_| ApiError::bad_request("bad_height", "height must be a u64"))?;
    Ok(AppJson(state.devnet.block(height)?))
}

async fn tip(State(state): State<NodeApiState>) -> Result<AppJson<ChainBlock>, ApiError> {
    let tip = state.devnet.tip()?.ok_or_else(|| ChainError::NotFound("the chain has no blocks yet".into()))?;
    Ok(AppJson(tip))
}

#[derive(Debug, Deserialize)]
struct TransferKeyQuery {
    idempotency_key: String,
}

/// `GET /node/transfer?idempotency_key=K`: the receipt of a transfer made
/// with that key, or 404.
async fn transfer_by_key(
    State(state): State<NodeApiState>,
    AppQuery(query): AppQuery<TransferKeyQuery>,
) -> Result<AppJson<TransferReceipt>, ApiError> {
    let receipt = state.devnet.transfer_by_key(&query.idempotency_key)?;
    Ok(AppJson(receipt.ok_or_else(|| ChainError::NotFound("no transfer with that idempotency key".into()))?))
}

/// A balance is a scan of the address's ledger entries (a pool's grows
/// with every block and payout): on a blocking thread, a few at once.
async fn balance(
    State(state): State<NodeApiState>,
    AppPath(address): AppPath<String>,
) -> Result<AppJson<Balance>, ApiError> {
    let balance = on_a_free_thread(&state.devnet, &state.scanners, "the node is reading other balances", move |d| {
        d.balance(&address)
    })
    .await?;
    Ok(AppJson(balance))
}

async fn transfer(
    State(state): State<NodeApiState>,
    _writer: NodeWriter,
    AppJson(request): AppJson<TransferRequest>,
) -> Result<AppJson<TransferReceipt>, ApiError> {
    Ok(AppJson(Chain::Devnet(state.devnet.clone()).transfer(request).await?))
}

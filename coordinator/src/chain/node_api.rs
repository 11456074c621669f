//! The devnet's node API (`/node/*`), served by the coordinator itself so
//! other programs (solo miners, a second coordinator with `--upstream`) can
//! use the chain.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::devnet::DevnetChain;
use super::{
    Balance, BlockSubmission, BlockTemplate, Chain, ChainBlock, SubmitOutcome, TransferReceipt, TransferRequest,
};
use crate::api_error::{ApiError, AppJson, AppQuery};

pub fn router(chain: Arc<DevnetChain>) -> Router {
    Router::new()
        .route("/node/template", get(template))
        .route("/node/submit", post(submit))
        .route("/node/block/{height}", get(block))
        .route("/node/balance/{address}", get(balance))
        .route("/node/transfer", post(transfer))
        .with_state(Chain::Devnet(chain))
}

#[derive(Debug, Deserialize)]
struct TemplateQuery {
    address: String,
}

async fn template(
    State(chain): State<Chain>,
    AppQuery(query): AppQuery<TemplateQuery>,
) -> Result<AppJson<BlockTemplate>, ApiError> {
    Ok(AppJson(chain.template(&query.address).await?))
}

async fn submit(
    State(chain): State<Chain>,
    AppJson(block): AppJson<BlockSubmission>,
) -> Result<AppJson<SubmitOutcome>, ApiError> {
    Ok(AppJson(chain.submit(block).await?))
}

async fn block(State(chain): State<Chain>, Path(height): Path<String>) -> Result<AppJson<ChainBlock>, ApiError> {
    let height: u64 = height.parse().map_err(|_| ApiError::bad_request("bad_height", "height must be a u64"))?;
    Ok(AppJson(chain.block(height).await?))
}

async fn balance(State(chain): State<Chain>, Path(address): Path<String>) -> Result<AppJson<Balance>, ApiError> {
    Ok(AppJson(chain.balance(&address).await?))
}

async fn transfer(
    State(chain): State<Chain>,
    AppJson(request): AppJson<TransferRequest>,
) -> Result<AppJson<TransferReceipt>, ApiError> {
    Ok(AppJson(chain.transfer(request).await?))
}

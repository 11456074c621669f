//! The node API for solo mining: templates and block submission.

use std::time::Duration;

use super::pool_client::{read_json, server_url, transport, ApiFailure};
use crate::MinerError;

pub use vision_protocol::node::{BlockTemplate, ChainBlock, SubmitOutcome};

#[derive(Debug, Clone)]
pub struct NodeClient {
    pub url: String,
    http: reqwest::Client,
    /// Bearer token for block submission, where the node wants one.
    token: Option<String>,
}

impl NodeClient {
    pub fn new(url: &str, token: Option<String>) -> Result<Self, MinerError> {
        let url = server_url(url, "node")?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            // A redirect could aim the miner's requests anywhere on its network.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MinerError::runtime(format!("cannot build an HTTP client: {e}")))?;
        Ok(NodeClient { url, http, token })
    }

    pub async fn template(&self, address: &str) -> Result<BlockTemplate, ApiFailure> {
        let response = self
            .http
            .get(format!("{}/node/template", self.url))
            .query(&[("address", address)])
            .send()
            .await
            .map_err(|e| transport(&self.url, &e))?;
        read_json(response).await
    }

    /// The chain's block at `height` (whose it is, after a lost answer).
    pub async fn block(&self, height: u64) -> Result<ChainBlock, ApiFailure> {
        let response = self
            .http
            .get(format!("{}/node/block/{height}", self.url))
            .send()
            .await
            .map_err(|e| transport(&self.url, &e))?;
        read_json(response).await
    }

    pub async fn submit(&self, template: &BlockTemplate, nonce: u64) -> Result<SubmitOutcome, ApiFailure> {
        self.post_submit(&template.solved(nonce)).await
    }

    /// Whether the node takes blocks from this miner, asked before any is
    /// found, with an empty submission: a node that reads the credential
    /// first (the coordinator's devnet does) refuses it for the credential
    /// (401, 403, 404 `node_writes_disabled`), else for its body (a 4xx),
    /// and takes nothing either way. The failure is the node's answer.
    pub async fn check_submit_credential(&self) -> Result<(), ApiFailure> {
        self.post_submit::<serde_json::Value>(&serde_json::json!({})).await.map(drop)
    }

    async fn post_submit<T: serde::de::DeserializeOwned>(&self, body: &impl serde::Serialize) -> Result<T, ApiFailure> {
        let mut request = self.http.post(format!("{}/node/submit", self.url)).json(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| transport(&self.url, &e))?;
        read_json(response).await
    }
}

//! The node API for solo mining: templates and block submission.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::pool_api::{read_json, transport, ApiFailure};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Template {
    pub chain_id: String,
    pub height: u64,
    pub parent_hash: String,
    pub timestamp: u64,
    pub difficulty: u64,
    pub tx_root: String,
    pub miner: String,
    pub epoch: u64,
    pub epoch_seed: String,
    pub pow_message: String,
    pub params: visionx::Params,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubmitAnswer {
    pub accepted: bool,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NodeApi {
    pub url: String,
    http: reqwest::Client,
    /// Bearer token for block submission, where the node wants one.
    token: Option<String>,
}

impl NodeApi {
    pub fn new(url: &str, token: Option<String>) -> Result<Self, String> {
        let url = url.trim_end_matches('/').to_string();
        reqwest::Url::parse(&url).map_err(|e| format!("{url:?} is not a node URL: {e}"))?;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!("{url:?} is not a node URL (expected http://host:port)"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(NodeApi { url, http, token })
    }

    pub async fn template(&self, address: &str) -> Result<Template, ApiFailure> {
        let response = self
            .http
            .get(format!("{}/node/template", self.url))
            .query(&[("address", address)])
            .send()
            .await
            .map_err(|e| transport(&self.url, &e))?;
        read_json(response).await
    }

    pub async fn submit(&self, template: &Template, nonce: u64) -> Result<SubmitAnswer, ApiFailure> {
        let body = serde_json::json!({
            "height": template.height, "parent_hash": template.parent_hash, "timestamp": template.timestamp,
            "difficulty": template.difficulty, "tx_root": template.tx_root, "miner": template.miner, "nonce": nonce,
        });
        let mut request = self.http.post(format!("{}/node/submit", self.url)).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| transport(&self.url, &e))?;
        read_json(response).await
    }
}

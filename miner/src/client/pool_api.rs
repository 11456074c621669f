//! The pool API as a miner speaks it (`docs/API.md`), with every failure
//! classified so the session knows whether to retry, back off, fail over,
//! re-register or give up.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

/// What went wrong talking to a pool or node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiFailure {
    /// Unreachable, timed out, or a 5xx: try again later or elsewhere.
    #[error("{0}")]
    Unavailable(String),
    /// 429/503 with a Retry-After the client must honour.
    #[error("{message} (retry in {retry_after_secs}s)")]
    RetryAfter { retry_after_secs: u64, message: String },
    /// The worker token is unknown (the pool lost its state): register again.
    #[error("the pool does not know this worker")]
    Unauthorized,
    /// Banned by the pool for this long.
    #[error("banned by the pool for {secs} more seconds")]
    Banned { secs: u64 },
    /// The pool refuses what we sent (bad wallet address, bad worker id...).
    #[error("the pool refused the request: {reason}: {message}")]
    Refused { reason: String, message: String },
}

impl ApiFailure {
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiFailure::Unavailable(_) | ApiFailure::RetryAfter { .. })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Registered {
    pub worker_token: String,
    pub pool_fee_bps: u32,
    pub foundation_fee_bps: u32,
    #[serde(default)]
    pub pool_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PoolJob {
    pub job_id: String,
    pub height: u64,
    pub epoch: u64,
    pub epoch_seed: String,
    pub pow_message: String,
    pub params: visionx::Params,
    pub network_difficulty: u64,
    pub share_difficulty: u64,
    pub nonce_start: u64,
    pub nonce_end: u64,
    #[serde(default)]
    pub block_time_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ShareAnswer {
    pub accepted: bool,
    #[serde(default)]
    pub is_block: bool,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub share_difficulty: Option<u64>,
}

/// Reads a response: the JSON body on success, a classified failure otherwise.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiFailure> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if status.is_success() {
        return response.json().await.map_err(|e| ApiFailure::Unavailable(format!("unreadable answer: {e}")));
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let reason = body["error"].as_str().unwrap_or("unknown").to_string();
    let message = body["message"].as_str().unwrap_or("").to_string();
    Err(match status.as_u16() {
        401 => ApiFailure::Unauthorized,
        403 if reason == "banned" => ApiFailure::Banned { secs: retry_after.unwrap_or(3600) },
        429 | 503 => ApiFailure::RetryAfter {
            retry_after_secs: retry_after.unwrap_or(5),
            message: format!("{reason}: {message}"),
        },
        // A request the pool timed out: it may have been processed (a share
        // then comes back `already_credited`), so it is worth sending again.
        408 | 500..=599 => ApiFailure::Unavailable(format!("{status}: {reason}: {message}")),
        _ => ApiFailure::Refused { reason, message },
    })
}

pub(crate) fn transport(url: &str, err: &reqwest::Error) -> ApiFailure {
    ApiFailure::Unavailable(format!(
        "{url}: {}",
        if err.is_timeout() { "timed out".to_string() } else { err.to_string() }
    ))
}

/// One pool's API.
#[derive(Debug, Clone)]
pub struct PoolApi {
    pub url: String,
    http: reqwest::Client,
}

impl PoolApi {
    pub fn new(url: &str) -> Result<Self, String> {
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Err(format!("{url:?} is not a pool URL (expected http://host:port)"));
        }
        reqwest::Url::parse(&url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(PoolApi { url, http })
    }

    pub async fn register(&self, worker_id: &str, wallet: &str, worker_name: &str) -> Result<Registered, ApiFailure> {
        let body = json!({
            "worker_id": worker_id,
            "wallet_address": wallet,
            "worker_name": worker_name,
            "version": concat!("vision-miner ", env!("CARGO_PKG_VERSION")),
        });
        let response = self
            .http
            .post(format!("{}/pool/register", self.url))
            .timeout(Duration::from_secs(15))
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(&self.url, &e))?;
        read_json(response).await
    }

    /// A job; with `wait`, long-polls for a newer one.
    pub async fn job(&self, token: &str, wait: Option<Duration>) -> Result<PoolJob, ApiFailure> {
        let mut request = self.http.get(format!("{}/pool/job", self.url)).bearer_auth(token);
        let mut timeout = Duration::from_secs(15);
        if let Some(wait) = wait {
            request = request.query(&[("wait", wait.as_secs())]);
            timeout += wait;
        }
        let response = request.timeout(timeout).send().await.map_err(|e| transport(&self.url, &e))?;
        read_json(response).await
    }

    pub async fn share(
        &self,
        token: &str,
        job_id: &str,
        nonce: u64,
        digest: &str,
        hashrate: f64,
    ) -> Result<ShareAnswer, ApiFailure> {
        let body = json!({ "job_id": job_id, "nonce": nonce, "digest": digest, "hashrate": hashrate });
        let response = self
            .http
            .post(format!("{}/pool/share", self.url))
            .bearer_auth(token)
            .timeout(Duration::from_secs(15))
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(&self.url, &e))?;
        read_json(response).await
    }
}

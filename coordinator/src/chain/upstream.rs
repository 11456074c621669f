//! A remote node API of the same shape as the devnet's (`--upstream URL`).

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{
    Balance, BlockSubmission, BlockTemplate, ChainBlock, ChainError, SubmitOutcome, TransferReceipt, TransferRequest,
};

#[derive(Clone)]
pub struct UpstreamNode {
    base: String,
    /// `base` as logs show it (`shown_url`: no user, password, path or query).
    shown: String,
    http: reqwest::Client,
    /// Bearer token for the node's write routes (submit, transfer).
    token: Option<String>,
}

/// The longest one request to the node may take, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A URL as logs and summaries show it: its scheme, host and port only (a
/// user, a password, a key in the path or the query stay out).
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => {
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if url.path().len() > 1 || url.query().is_some() { "/..." } else { "" };
            format!("{}://{}{port}{rest}", url.scheme(), url.host_str().unwrap_or("?"))
        }
        Err(_) => "(an unparsable URL)".to_string(),
    }
}

impl UpstreamNode {
    /// `url` is the node's base URL (`http://host:port` or `https://...`);
    /// `ca_pem` (PEM certificates) replaces the system's trust store for
    /// `https://`.
    pub fn new(url: &str, token: Option<String>, ca_pem: Option<&[u8]>) -> Result<Self, ChainError> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            // (Not repeated: it may carry a user and password.)
            return Err(ChainError::invalid("bad_upstream", format!("{} is not an http(s) URL", shown_url(url))));
        }
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ChainError::invalid("bad_upstream_ca", e.to_string()))?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| ChainError::Unavailable(e.to_string()))?;
        Ok(UpstreamNode { shown: shown_url(&base), base, http, token })
    }

    /// The node's URL as logs show it (scheme, host and port).
    pub fn url(&self) -> &str {
        &self.shown
    }

    async fn read<T: DeserializeOwned>(&self, response: reqwest::Response) -> Result<T, ChainError> {
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| ChainError::Unavailable(format!("bad node response: {e}")));
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["message"].as_str().unwrap_or("no message").to_string();
        // The node's own reasons that callers act on keep their name.
        let reason = match body["error"].as_str() {
            Some("refused_payee") => "refused_payee",
            Some("bad_address") => "bad_address",
            Some("no_key") => "no_key",
            Some("bad_idempotency_key") => "bad_idempotency_key",
            Some("bad_outputs") => "bad_outputs",
            _ => "upstream_rejected",
        };
        Err(match status.as_u16() {
            404 => ChainError::NotFound(message),
            409 => ChainError::Conflict(message),
            401 | 403 => {
                ChainError::invalid("upstream_unauthorized", format!("the node refused our credential: {message}"))
            }
            // Timed out or rate limited: the same request may pass later.
            408 | 429 => ChainError::Unavailable(format!("node answered {status}: {message}")),
            400..=499 => ChainError::invalid(reason, message),
            _ => ChainError::Unavailable(format!("node answered {status}: {message}")),
        })
    }

    /// A write request, with the node token when one is configured.
    fn write(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.post(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The error with its causes: reqwest's own message omits them, and the
    /// cause is what an operator needs (refused, timed out, a certificate
    /// the node's CA did not sign...).
    fn unavailable(&self, err: reqwest::Error) -> ChainError {
        // reqwest's own text names the URL (credentials and all): not here.
        let err = err.without_url();
        let mut message = format!("{}: {err}", self.shown);
        let mut cause = std::error::Error::source(&err);
        while let Some(inner) = cause {
            message.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        ChainError::Unavailable(message)
    }

    /// Sends `request` and reads its answer as `T` (or a classified error).
    async fn call<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ChainError> {
        let response = request.send().await.map_err(|e| self.unavailable(e))?;
        self.read(response).await
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    pub async fn template(&self, address: &str) -> Result<BlockTemplate, ChainError> {
        self.call(self.get("/node/template").query(&[("address", address)])).await
    }

    pub async fn submit(&self, block: &BlockSubmission) -> Result<SubmitOutcome, ChainError> {
        self.call(self.write("/node/submit").json(block)).await
    }

    pub async fn block(&self, height: u64) -> Result<ChainBlock, ChainError> {
        self.call(self.get(&format!("/node/block/{height}"))).await
    }

    pub async fn tip(&self) -> Result<Option<ChainBlock>, ChainError> {
        match self.call(self.get("/node/tip")).await {
            Ok(block) => Ok(Some(block)),
            Err(ChainError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub async fn transfer_by_key(&self, key: &str) -> Result<Option<TransferReceipt>, ChainError> {
        let request = self.get("/node/transfer").query(&[("idempotency_key", key)]);
        match self.call(request).await {
            Ok(receipt) => Ok(Some(receipt)),
            Err(ChainError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub async fn balance(&self, address: &str) -> Result<Balance, ChainError> {
        self.call(self.get(&format!("/node/balance/{address}"))).await
    }

    pub async fn transfer(&self, request: &TransferRequest) -> Result<TransferReceipt, ChainError> {
        self.call(self.write("/node/transfer").json(request)).await
    }
}

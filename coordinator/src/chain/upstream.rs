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
            let bytes = read_at_most(response, MAX_ANSWER_BYTES).await?;
            return serde_json::from_slice(&bytes)
                .map_err(|e| ChainError::Unavailable(format!("bad node response: {e}")));
        }
        // (An error's body unread, or too long, still leaves its status to act on.)
        let bytes = read_at_most(response, MAX_ANSWER_BYTES).await.unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = super::node_text(body["message"].as_str().unwrap_or("no message"));
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

/// The most of a node's answer read: a template, a block or a transfer
/// receipt is a few KiB; a node (or anyone between us on plain HTTP) that
/// streams more is refused, not buffered.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// `response`'s body, or `Unavailable` once it passes `limit` bytes.
async fn read_at_most(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ChainError> {
    let too_long = || ChainError::Unavailable(format!("the node's answer is over {limit} bytes"));
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ChainError::Unavailable(format!("reading the node's answer: {}", e.without_url())))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A node on loopback answering each request with `answer(path)`'s raw
    /// HTTP/1.1 bytes (written in 64 KiB pieces), then closing.
    async fn raw_node(answer: fn(&str) -> Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    for piece in answer(&path).chunks(64 * 1024) {
                        if stream.write_all(piece).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    fn chunked(status: &str, body: &[u8]) -> Vec<u8> {
        let mut raw =
            format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .into_bytes();
        for piece in body.chunks(64 * 1024) {
            raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            raw.extend_from_slice(piece);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        raw
    }

    /// A node's answer is read up to 4 MiB, whether it says its length or
    /// streams it; past that it is refused as unavailable, not buffered.
    /// An error's message is cut to 300 characters.
    #[tokio::test]
    async fn a_node_answer_past_its_bound_is_refused_not_buffered() {
        let url = raw_node(|path| match path {
            // A tip of 5 MiB, streamed with no length said.
            "/node/tip" => chunked("200 OK", &vec![b' '; 5 << 20]),
            // A block that says it is 10 MB long (and sends nothing).
            "/node/block/1" => b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_vec(),
            "/node/block/2" => {
                let message = "m".repeat(10_000);
                chunked("400 Bad Request", format!(r#"{{"error":"bad_height","message":"{message}"}}"#).as_bytes())
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        })
        .await;
        let node = UpstreamNode::new(&url, None, None).unwrap();
        for err in [node.tip().await.unwrap_err(), node.block(1).await.unwrap_err()] {
            assert!(matches!(&err, ChainError::Unavailable(m) if m.contains("over 4194304 bytes")), "{err:?}");
        }
        match node.block(2).await.unwrap_err() {
            ChainError::Invalid { message, .. } => assert_eq!(message.len(), super::super::MAX_NODE_TEXT_CHARS),
            other => panic!("{other:?}"),
        }
    }
}

//! The pool API as a miner speaks it (`docs/API.md`), with every failure
//! classified so the session knows whether to retry, back off, fail over,
//! re-register or give up.

use std::time::Duration;

use vision_protocol::pool::{RegisterRequest, ShareRequest};
use vision_protocol::ErrorBody;

use crate::MinerError;

/// How long a pool may take to answer (a long-poll adds its wait).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest `Retry-After` honoured: a pool (or a proxy in front of it)
/// asking for a day must not idle a rig for a day.
pub(crate) const MAX_RETRY_AFTER_SECS: u64 = 60;

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

pub use vision_protocol::pool::{JobResponse, RegisterResponse, ShareResponse};

/// The largest answer read from a pool or node: theirs are a few KiB, and a
/// broken or hostile one must not be able to fill the rig's memory.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The body of `response`, refused past [`MAX_ANSWER_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, ApiFailure> {
    let too_large = || ApiFailure::Unavailable(format!("an answer over {} KiB", MAX_ANSWER_BYTES / 1024));
    if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| ApiFailure::Unavailable(format!("unreadable answer: {e}")))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a response: the JSON body on success, a classified failure otherwise.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiFailure> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = read_body(response).await;
    if status.is_success() {
        return serde_json::from_slice(&body?).map_err(|e| ApiFailure::Unavailable(format!("unreadable answer: {e}")));
    }
    let body: Option<ErrorBody> = body.ok().and_then(|b| serde_json::from_slice(&b).ok());
    let (reason, message) = body.map_or_else(|| ("unknown".to_string(), String::new()), |b| (b.error, b.message));
    Err(match status.as_u16() {
        401 => ApiFailure::Unauthorized,
        403 if reason == "banned" => ApiFailure::Banned { secs: retry_after.unwrap_or(3600) },
        // (A ban keeps its length; only a wait is capped.)
        429 | 503 => ApiFailure::RetryAfter {
            retry_after_secs: retry_after.unwrap_or(5).min(MAX_RETRY_AFTER_SECS),
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
pub struct PoolClient {
    pub url: String,
    http: reqwest::Client,
}

/// Certificates trusted for `https://` pools in place of the system's
/// (`--pool-ca`: a pool behind a private CA).
pub type PoolCa = std::sync::Arc<[reqwest::Certificate]>;

/// Reads a `--pool-ca` file: PEM certificates, at least one.
pub fn read_pool_ca(path: &std::path::Path) -> Result<PoolCa, MinerError> {
    let invalid = |why: String| MinerError::bad_input(format!("--pool-ca {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs.into()),
        Ok(_) => Err(invalid("no certificate in it".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

impl PoolClient {
    /// `ca`, when given, replaces the system's trust store for `https://`.
    /// The URL is kept in its normal form (host in lower case, no default
    /// port, no trailing `/`), so one pool is one URL however it was typed.
    pub fn new(url: &str, ca: Option<&PoolCa>) -> Result<Self, MinerError> {
        let typed = url.trim();
        if !(typed.starts_with("http://") || typed.starts_with("https://")) || typed.trim_end_matches('/').len() < 10 {
            return Err(MinerError::bad_input(format!("{typed:?} is not a pool URL (expected http://host:port)")));
        }
        let parsed =
            reqwest::Url::parse(typed).map_err(|e| MinerError::bad_input(format!("{typed:?} is not a URL: {e}")))?;
        let url = parsed.as_str().trim_end_matches('/').to_string();
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(ca) = ca {
            builder = builder.tls_certs_only(ca.iter().cloned());
        }
        let http = builder.build().map_err(|e| MinerError::runtime(format!("cannot build an HTTP client: {e}")))?;
        Ok(PoolClient { url, http })
    }

    pub async fn register(
        &self,
        worker_id: &str,
        wallet: &str,
        worker_name: &str,
    ) -> Result<RegisterResponse, ApiFailure> {
        let body = RegisterRequest {
            worker_id: worker_id.into(),
            wallet_address: wallet.into(),
            worker_name: Some(worker_name.into()),
            version: Some(concat!("vision-miner ", env!("CARGO_PKG_VERSION")).into()),
        };
        self.call(self.http.post(format!("{}/pool/register", self.url)).json(&body), REQUEST_TIMEOUT).await
    }

    /// Sends `request` within `timeout` and reads its answer as `T` (or a
    /// classified failure).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, ApiFailure> {
        let response = request.timeout(timeout).send().await.map_err(|e| transport(&self.url, &e))?;
        read_json(response).await
    }

    /// A job; with `wait`, long-polls for a newer one.
    pub async fn job(&self, token: &str, wait: Option<Duration>) -> Result<JobResponse, ApiFailure> {
        let mut request = self.http.get(format!("{}/pool/job", self.url)).bearer_auth(token);
        let mut timeout = REQUEST_TIMEOUT;
        if let Some(wait) = wait {
            request = request.query(&[("wait", wait.as_secs())]);
            timeout += wait;
        }
        self.call(request, timeout).await
    }

    pub async fn share(
        &self,
        token: &str,
        job_id: &str,
        nonce: u64,
        digest: &str,
        hashrate: f64,
    ) -> Result<ShareResponse, ApiFailure> {
        let body = ShareRequest { job_id: job_id.into(), nonce, digest: digest.into(), hashrate: Some(hashrate) };
        self.call(self.http.post(format!("{}/pool/share", self.url)).bearer_auth(token).json(&body), REQUEST_TIMEOUT)
            .await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-request HTTP server on loopback: `status` and `body_len`
    /// spaces, chunked (no Content-Length) or not.
    async fn serve_once(status: &'static str, body_len: usize, chunked: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let body = vec![b' '; body_len];
            let head = if chunked {
                format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            } else {
                format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n")
            };
            let _ = socket.write_all(head.as_bytes()).await;
            if chunked {
                for part in body.chunks(64 * 1024) {
                    let _ = socket.write_all(format!("{:x}\r\n", part.len()).as_bytes()).await;
                    let _ = socket.write_all(part).await;
                    let _ = socket.write_all(b"\r\n").await;
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            } else {
                let _ = socket.write_all(&body).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn an_answer_past_a_mebibyte_is_refused_not_read() {
        for (status, chunked) in [("200 OK", false), ("200 OK", true), ("503 Service Unavailable", true)] {
            let url = serve_once(status, 3 << 20, chunked).await;
            let response = reqwest::get(&url).await.unwrap();
            let answer = read_json::<serde_json::Value>(response).await;
            match (status, answer) {
                ("200 OK", Err(ApiFailure::Unavailable(message))) => {
                    assert!(message.contains("over 1024 KiB"), "{message}")
                }
                // An error whose body is too large is still classified by its status.
                ("503 Service Unavailable", Err(ApiFailure::RetryAfter { .. })) => {}
                (status, other) => panic!("{status} chunked={chunked}: {other:?}"),
            }
        }
    }
}

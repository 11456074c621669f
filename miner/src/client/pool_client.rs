//! The pool API as a miner speaks it (`docs/API.md`), with every failure
//! classified so the session knows whether to retry, back off, fail over,
//! re-register or give up.

use std::time::Duration;

use vision_protocol::pool::{RegisterRequest, ShareRequest};
use vision_protocol::ErrorBody;

use crate::MinerError;

/// How long a pool may take to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long past its wait a long-poll may take: the pool answers when the
/// wait is up, so a pool that has not by then is hung (and the job loop's
/// retry, which does not wait, finds out within [`REQUEST_TIMEOUT`]).
const LONG_POLL_MARGIN: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured: a pool (or a proxy in front of it)
/// asking for a day must not idle a rig for a day.
pub(crate) const MAX_RETRY_AFTER_SECS: u64 = 60;

/// What went wrong talking to a pool or node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiFailure {
    /// Timed out, cut off, or a 5xx: try again later or elsewhere. A
    /// request that met this may have been processed, its answer lost.
    #[error("{0}")]
    Unavailable(String),
    /// No connection could be made (refused, no route, TLS handshake
    /// failed): nothing was sent, so nothing was processed. Otherwise as
    /// [`ApiFailure::Unavailable`].
    #[error("{0}")]
    Unreachable(String),
    /// 429/503 with a Retry-After the client must honour.
    #[error("{message} (retry in {retry_after_secs}s)")]
    RetryAfter {
        retry_after_secs: u64,
        message: String,
        /// A 503 `storage_unavailable` (the pool's store could not confirm
        /// a write), or a 503 without a pool's error body (a proxy's, maybe
        /// after passing the request on): the request may have been taken.
        /// The pool's other 503s (busy, stopped, no template...) and a 429
        /// refuse before taking anything.
        maybe_processed: bool,
    },
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
        matches!(self, ApiFailure::Unavailable(_) | ApiFailure::Unreachable(_) | ApiFailure::RetryAfter { .. })
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

/// The most of a pool's own words (an error's reason and message) kept:
/// they reach the status line, the log and the local page.
const MAX_POOL_TEXT_CHARS: usize = 200;

/// `text` as something safe to print: no control characters (a terminal
/// escape sequence from a hostile pool would rewrite the operator's
/// screen or clipboard), at most [`MAX_POOL_TEXT_CHARS`] characters.
pub(crate) fn printable(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(MAX_POOL_TEXT_CHARS).collect();
    if text.chars().filter(|c| !c.is_control()).nth(MAX_POOL_TEXT_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

/// Reads a response: the JSON body on success, a classified failure otherwise.
///
/// A refusal ([`ApiFailure::Refused`], which can end the miner) needs the
/// pool's own error body: a 4xx page from a proxy, a CDN's challenge or a
/// load balancer between deploys is only [`ApiFailure::Unavailable`], and
/// so is a redirect (never followed: it could point the miner's requests
/// at its own local API or anything else on the rig's network).
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiFailure> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(printable);
    let body = read_body(response).await;
    if status.is_success() {
        return serde_json::from_slice(&body?).map_err(|e| ApiFailure::Unavailable(format!("unreadable answer: {e}")));
    }
    if status.is_redirection() {
        let to = location.unwrap_or_else(|| "nowhere".into());
        return Err(ApiFailure::Unavailable(format!("{status}: redirected to {to} (redirects are not followed)")));
    }
    let body: Option<ErrorBody> = body.ok().and_then(|b| serde_json::from_slice(&b).ok());
    // The pool's reasons are snake_case words (`docs/API.md`); a proxy's
    // `{"error": "Not Found"}` is not one.
    let from_the_pool = body.as_ref().is_some_and(|b| {
        !b.error.is_empty() && b.error.len() <= 64 && b.error.bytes().all(|c| c.is_ascii_lowercase() || c == b'_')
    });
    let (reason, message) =
        body.map_or_else(|| ("unknown".to_string(), String::new()), |b| (printable(&b.error), printable(&b.message)));
    Err(match status.as_u16() {
        401 => ApiFailure::Unauthorized,
        403 if reason == "banned" => ApiFailure::Banned { secs: retry_after.unwrap_or(3600) },
        // (A ban keeps its length; only a wait is capped.)
        429 | 503 => ApiFailure::RetryAfter {
            retry_after_secs: retry_after.unwrap_or(5).min(MAX_RETRY_AFTER_SECS),
            message: format!("{reason}: {message}"),
            maybe_processed: status.as_u16() == 503 && (reason == "storage_unavailable" || !from_the_pool),
        },
        // A request the pool timed out: it may have been processed (a share
        // then comes back `already_credited`), so it is worth sending again.
        408 | 500..=599 => ApiFailure::Unavailable(format!("{status}: {reason}: {message}")),
        400..=499 if from_the_pool => ApiFailure::Refused { reason, message },
        _ => ApiFailure::Unavailable(format!("{status} without a pool's error body (a proxy in the way?)")),
    })
}

/// A request that got no answer. A failed connection sent nothing; any
/// other failure (a timeout, a connection cut) may follow a request the
/// server took.
pub(crate) fn transport(url: &str, err: &reqwest::Error) -> ApiFailure {
    let what = if err.is_timeout() { "timed out".to_string() } else { err.to_string() };
    if err.is_builder() {
        // Never sent, and never will be as it is (a token no header can
        // carry): not worth trying again.
        return ApiFailure::Refused { reason: "unsendable_request".into(), message: format!("{url}: {what}") };
    }
    if err.is_connect() {
        ApiFailure::Unreachable(format!("{url}: {what}"))
    } else {
        ApiFailure::Unavailable(format!("{url}: {what}"))
    }
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

/// `typed`, the URL of a pool or node (`what`), as requests are built on it:
/// http(s) with a host, no trailing `/`. Credentials are refused (they would
/// show on the status line and page), and so are a query or a fragment
/// (they would end up in the middle of every request's path).
pub(crate) fn server_url(typed: &str, what: &str) -> Result<String, MinerError> {
    let typed = typed.trim();
    let parsed =
        reqwest::Url::parse(typed).map_err(|e| MinerError::bad_input(format!("{typed:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(MinerError::bad_input(format!("{typed:?} is not a {what} URL (expected http://host:port)")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(MinerError::bad_input(format!("a {what} URL carries no user name or password")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(MinerError::bad_input(format!("{typed:?}: a {what} URL carries no query (?) or fragment (#)")));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

impl PoolClient {
    /// `ca`, when given, replaces the system's trust store for `https://`.
    /// The URL is kept in its normal form (host in lower case, no default
    /// port, no trailing `/`), so one pool is one URL however it was typed;
    /// one with a user name, password, query or fragment is refused.
    pub fn new(url: &str, ca: Option<&PoolCa>) -> Result<Self, MinerError> {
        let url = server_url(url, "pool")?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
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
            // (Never less than a plain request's: a short wait is no reason
            // to give a busy pool less time.)
            timeout = (wait + LONG_POLL_MARGIN).max(REQUEST_TIMEOUT);
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

    /// A request no header can carry (a token with a secret file's line
    /// break) fails before it is sent: refused, not worth trying again.
    #[tokio::test]
    async fn a_request_that_cannot_be_built_is_refused_not_retried() {
        let url = write_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        let err = reqwest::Client::new().get(&url).bearer_auth("token\n").send().await.unwrap_err();
        let failure = transport(&url, &err);
        assert!(!failure.is_transient(), "{failure:?}");
        assert!(
            matches!(&failure, ApiFailure::Refused { reason, .. } if reason == "unsendable_request"),
            "{failure:?}"
        );
    }

    /// A one-request HTTP server on loopback that reads the request and
    /// writes `answer`, whole.
    async fn write_once(answer: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(&answer).await;
        });
        url
    }

    /// Answers `status` and `body_len` spaces, chunked (no Content-Length) or not.
    async fn serve_once(status: &'static str, body_len: usize, chunked: bool) -> String {
        let body = vec![b' '; body_len];
        let mut answer = if chunked {
            format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        } else {
            format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n")
        }
        .into_bytes();
        if chunked {
            for part in body.chunks(64 * 1024) {
                answer.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                answer.extend_from_slice(part);
                answer.extend_from_slice(b"\r\n");
            }
            answer.extend_from_slice(b"0\r\n\r\n");
        } else {
            answer.extend_from_slice(&body);
        }
        write_once(answer).await
    }

    /// Answers `head` (status line and headers) and `body`.
    async fn answer_once(head: String, body: &str) -> String {
        let answer = format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        write_once(answer.into_bytes()).await
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        // Where a redirect would send the miner: it must never be asked.
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_url = format!("http://{}/pause", target.local_addr().unwrap());
        let url = answer_once(format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {target_url}"), "").await;
        let pool = PoolClient::new(&url, None).unwrap();
        match pool.share("t", "j", 1, "00", 1.0).await {
            Err(ApiFailure::Unavailable(message)) => assert!(message.contains("redirected to"), "{message}"),
            other => panic!("{other:?}"),
        }
        let asked = tokio::time::timeout(Duration::from_millis(300), target.accept()).await;
        assert!(asked.is_err(), "the redirect's target was asked");
    }

    /// A refused connection sent nothing; one cut after the request went
    /// out may have been processed. The session counts a re-found share
    /// as credited only after the second kind.
    #[tokio::test]
    async fn a_refused_connection_is_told_from_a_lost_answer() {
        // Port 1: privileged, so no test (nor anything unprivileged) listens there.
        match PoolClient::new("http://127.0.0.1:1", None).unwrap().share("t", "j", 1, "00", 1.0).await {
            Err(ApiFailure::Unreachable(_)) => {}
            other => panic!("a refused connection: {other:?}"),
        }
        // Reads the request, then hangs up without an answer.
        let cut_url = write_once(Vec::new()).await;
        match PoolClient::new(&cut_url, None).unwrap().share("t", "j", 1, "00", 1.0).await {
            Err(ApiFailure::Unavailable(_)) => {}
            other => panic!("an answer cut off: {other:?}"),
        }
    }

    /// Which answers to wait for may follow a share the pool took: a 503
    /// saying its store failed, or one that is not the pool's (a proxy's);
    /// not its other 503s, nor a 429.
    #[tokio::test]
    async fn a_503_after_the_pool_may_have_taken_the_share_is_told_from_one_before() {
        let cases = [
            ("HTTP/1.1 503 Service Unavailable", r#"{"error":"storage_unavailable","message":"flush"}"#, true),
            ("HTTP/1.1 503 Service Unavailable", "<html>upstream reset before response</html>", true),
            ("HTTP/1.1 503 Service Unavailable", r#"{"error":"busy","message":"verifiers full"}"#, false),
            ("HTTP/1.1 503 Service Unavailable", r#"{"error":"pool_stopped","message":"stopped"}"#, false),
            ("HTTP/1.1 429 Too Many Requests", r#"{"error":"rate_limited","message":"slow down"}"#, false),
        ];
        for (status, body, maybe) in cases {
            let url = answer_once(format!("{status}\r\nRetry-After: 1"), body).await;
            match PoolClient::new(&url, None).unwrap().share("t", "j", 1, "00", 1.0).await {
                Err(ApiFailure::RetryAfter { maybe_processed, .. }) => assert_eq!(maybe_processed, maybe, "{body}"),
                other => panic!("{status} {body}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn only_the_pools_own_refusal_is_a_refusal() {
        let cases = [
            // (status line, body, a refusal?)
            ("HTTP/1.1 400 Bad Request", r#"{"error":"bad_address","message":"not an address"}"#, true),
            ("HTTP/1.1 409 Conflict", r#"{"error":"worker_id_taken","message":"taken"}"#, true),
            ("HTTP/1.1 404 Not Found", "<html>not here (a balancer between deploys)</html>", false),
            ("HTTP/1.1 404 Not Found", r#"{"error":"Not Found","message":""}"#, false),
            ("HTTP/1.1 403 Forbidden", "<html>checking your browser</html>", false),
            ("HTTP/1.1 405 Method Not Allowed", "", false),
        ];
        for (status, body, refusal) in cases {
            let url = answer_once(status.to_string(), body).await;
            let answer = PoolClient::new(&url, None).unwrap().register("w", "land1q", "rig").await;
            match answer {
                Err(ApiFailure::Refused { .. }) if refusal => {}
                Err(ApiFailure::Unavailable(_)) if !refusal => {}
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_pools_words_are_printable_and_short() {
        let message = format!("\\u001b]52;c;aGk=\\u0007{}", "x".repeat(5000));
        let body = format!(r#"{{"error":"bad_field","message":"{message}"}}"#);
        let url = answer_once("HTTP/1.1 400 Bad Request".into(), &body).await;
        match PoolClient::new(&url, None).unwrap().register("w", "land1q", "rig").await {
            Err(ApiFailure::Refused { reason, message }) => {
                assert_eq!(reason, "bad_field");
                assert!(message.starts_with("]52;c;aGk=xxx"), "control characters dropped: {message:?}");
                assert_eq!(message.chars().count(), MAX_POOL_TEXT_CHARS + 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pool_urls_carry_no_credentials_query_or_fragment() {
        for url in ["http://user:pw@pool:7072", "http://user@pool:7072", "http://pool:7072/?k=1", "http://pool:7072/#x"]
        {
            assert!(PoolClient::new(url, None).is_err(), "{url}");
        }
        assert_eq!(PoolClient::new("HTTP://Pool.Example:80/", None).unwrap().url, "http://pool.example");
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

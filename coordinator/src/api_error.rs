//! The one place HTTP errors get a status and a machine-readable reason.
//!
//! Every handler returns `Result<_, ApiError>`; [`ApiError`]'s
//! `IntoResponse` writes `{"error": reason, "message": ...}` with the status,
//! plus `Retry-After` where the client should come back later. Server faults
//! are logged here and answered with an opaque 500.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::chain::ChainError;
use crate::pool::PoolError;
use crate::rewards::RewardError;
use crate::storage::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Machine-readable, stable: clients branch on it.
    pub reason: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, reason, message: message.into(), retry_after_secs: None }
    }

    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason, message)
    }

    /// A credential was given, and it is the wrong one.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// The request is understood but conflicts with the state it would change.
    pub fn conflict(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, reason, message)
    }

    /// All the capacity for this kind of work is taken: come back shortly.
    pub fn busy(message: impl Into<String>, secs: u64) -> Self {
        Self::retry_later(StatusCode::SERVICE_UNAVAILABLE, "busy", message, secs)
    }

    pub fn retry_later(status: StatusCode, reason: &'static str, message: impl Into<String>, secs: u64) -> Self {
        ApiError { retry_after_secs: Some(secs.max(1)), ..Self::new(status, reason, message) }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {err}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error (logged on the server)")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(vision_protocol::ErrorBody { error: self.reason.into(), message: self.message });
        let mut response = (self.status, body).into_response();
        if let Some(secs) = self.retry_after_secs {
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let reason = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "expected_json",
            _ => "bad_json",
        };
        ApiError::new(status, reason, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request("bad_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("bad_query", rejection.body_text())
    }
}

impl From<ChainError> for ApiError {
    fn from(err: ChainError) -> Self {
        match err {
            ChainError::Invalid { reason, message } => ApiError::bad_request(reason, message),
            ChainError::NotFound(message) => ApiError::not_found("not_found", message),
            ChainError::Conflict(message) => ApiError::conflict("conflict", message),
            ChainError::Unavailable(message) => {
                // The detail (the node's URL, which may carry credentials, and
                // its errors) is the operator's, not the client's.
                tracing::warn!("chain unavailable: {message}");
                let message = "the pool cannot reach its chain node; retry shortly";
                ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "chain_unavailable", message, 2)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // A rule of the books, or another coordinator first: the
            // client's request lost a race or broke a rule, nothing failed.
            StoreError::Refused(message) => {
                // A rule of the books held: worth the operator's eye.
                tracing::error!("storage refused an update: {message}");
                ApiError::conflict("refused", message)
            }
            StoreError::Conflict(message) => ApiError::conflict(
                "conflict",
                // (On PostgreSQL, a deadlock or serialization failure too.)
                format!("changed meanwhile (another coordinator or request acted at the same time; retry): {message}"),
            ),
            // The data directory failed: nothing was acknowledged, come back later.
            StoreError::Backend(_) | StoreError::Corrupt { .. } | StoreError::FlushFailed => {
                // A failed flush was logged by the committer, once for all
                // the requests it fails.
                if !matches!(err, StoreError::FlushFailed) {
                    tracing::error!("storage failure: {err}");
                }
                let message = "the pool's storage failed";
                ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", message, 5)
            }
        }
    }
}

impl From<RewardError> for ApiError {
    fn from(err: RewardError) -> Self {
        match err {
            RewardError::Store(err) => err.into(),
            RewardError::Chain(err) => err.into(),
            RewardError::RulesDiffer(message) => {
                ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "rules_differ", message, 30)
            }
        }
    }
}

/// The pool's one status table.
impl From<PoolError> for ApiError {
    fn from(err: PoolError) -> Self {
        let message = err.to_string();
        match err {
            PoolError::Stopped => ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "pool_stopped", message, 5),
            PoolError::Banned { secs } => ApiError::retry_later(StatusCode::FORBIDDEN, "banned", message, secs),
            PoolError::RateLimited { retry_after_secs, .. } => {
                ApiError::retry_later(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message, retry_after_secs)
            }
            PoolError::VerifyQueueFull | PoolError::Busy(_) => {
                ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "busy", message, 1)
            }
            PoolError::TemplateRefused(_) => {
                ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "bad_template", message, 5)
            }
            PoolError::NoTemplate => ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "no_template", message, 1),
            PoolError::NotReady(_) => ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message, 5),
            PoolError::JobLimit => ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "job_limit", message, 5),
            PoolError::Unauthorized(_) => ApiError::unauthorized(message),
            PoolError::BadField { reason, .. } => ApiError::bad_request(reason, message),
            PoolError::WorkerIdTaken => ApiError::new(StatusCode::CONFLICT, "worker_id_taken", message),
            PoolError::NotFound(_) => ApiError::not_found("not_found", message),
            PoolError::Chain(err) => err.into(),
            PoolError::Store(err) => err.into(),
            PoolError::Internal(_) => ApiError::internal(message),
        }
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s (same JSON shape as every other error).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `Path<T>` with [`ApiError`] rejections (a segment that is not UTF-8, say).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// `Query<T>` with [`ApiError`] rejections.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

/// The timeout layers answer 408 with an empty body: given the JSON shape
/// every other error has.
pub async fn explain_timeout(response: Response) -> Response {
    use axum::body::HttpBody;
    if response.status() == StatusCode::REQUEST_TIMEOUT && response.body().size_hint().exact() == Some(0) {
        let message = "the request ran over the server's time limit; send it again";
        return ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", message).into_response();
    }
    response
}

/// Unknown routes.
pub async fn route_not_found() -> ApiError {
    ApiError::not_found("no_such_route", "no such route; see docs/API.md")
}

/// Known routes with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each failure is told: a race or a broken rule is the client's
    /// answer (409), only a failed data directory or database is a 503.
    #[test]
    fn errors_get_their_status_and_reason() {
        let table: Vec<(ApiError, StatusCode, &str, Option<u64>)> = vec![
            (StoreError::Conflict("payout 7".into()).into(), StatusCode::CONFLICT, "conflict", None),
            (StoreError::Refused("below zero".into()).into(), StatusCode::CONFLICT, "refused", None),
            (
                StoreError::Backend("disk".into()).into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                Some(5),
            ),
            (StoreError::FlushFailed.into(), StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", Some(5)),
            (
                StoreError::Corrupt { tree: "shares", message: "x".into() }.into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                Some(5),
            ),
            (ChainError::Conflict("key".into()).into(), StatusCode::CONFLICT, "conflict", None),
            (
                ChainError::Unavailable("down".into()).into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "chain_unavailable",
                Some(2),
            ),
            (PoolError::Store(StoreError::Conflict("c".into())).into(), StatusCode::CONFLICT, "conflict", None),
            (PoolError::VerifyQueueFull.into(), StatusCode::SERVICE_UNAVAILABLE, "busy", Some(1)),
            (ApiError::busy("scanning", 1), StatusCode::SERVICE_UNAVAILABLE, "busy", Some(1)),
            (ApiError::forbidden("wrong token"), StatusCode::FORBIDDEN, "forbidden", None),
        ];
        for (error, status, reason, retry_after) in table {
            assert_eq!(
                (error.status, error.reason, error.retry_after_secs),
                (status, reason, retry_after),
                "{error:?}"
            );
        }
    }

    /// A request over its time limit gets a JSON reason like any error; a
    /// handler's own 408 (with a body) is left as it is.
    #[tokio::test]
    async fn a_timed_out_request_is_explained() {
        use std::time::Duration;
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route("/slow", axum::routing::get(|| tokio::time::sleep(Duration::from_secs(5))))
            .route(
                "/own",
                axum::routing::get(|| async { ApiError::new(StatusCode::REQUEST_TIMEOUT, "mine", "a handler's") }),
            )
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_millis(20),
            ))
            .layer(axum::middleware::map_response(explain_timeout));
        for (path, reason) in [("/slow", "timeout"), ("/own", "mine")] {
            let request = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"], reason, "{path}");
        }
    }
}

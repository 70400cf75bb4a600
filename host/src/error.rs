//! The one error type of the request path. Each error knows the status it
//! answers with, the OpenAI error `type` and `code` it renders, its log level,
//! and whether another channel may succeed where this attempt failed.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or incomplete client request (400).
    InvalidRequest,
    /// Missing, unknown or expired credentials (401).
    Unauthenticated,
    /// Credentials valid but not allowed to do this (403).
    Forbidden,
    /// The user's or token's quota cannot cover the call (403).
    InsufficientQuota,
    /// Unknown model or resource (404).
    NotFound,
    /// Body larger than the configured cap (413).
    PayloadTooLarge,
    /// A limit was hit (429).
    RateLimited,
    /// The route exists but the channel's adapter cannot serve it (501).
    Unsupported,
    /// The upstream failed, or its answer could not be used (status varies, 502 default).
    Upstream,
    /// The adapter trapped, ran out of time or memory (502).
    Adapter,
    /// No channel can serve the request right now (503).
    Unavailable,
    /// A bug or an infrastructure failure inside Transit (500).
    Internal,
}

#[derive(Debug, Clone)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub status: StatusCode,
    pub message: String,
    pub code: Option<String>,
    pub param: Option<String>,
    /// Another channel may succeed.
    pub retryable: bool,
    /// Seconds the client should wait (429, 503).
    pub retry_after: Option<u64>,
    /// Extra response headers (`x-ratelimit-*`).
    pub headers: Vec<(axum::http::HeaderName, HeaderValue)>,
}

pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let status = match kind {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden | ErrorKind::InsufficientQuota => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Upstream | ErrorKind::Adapter => StatusCode::BAD_GATEWAY,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            kind,
            status,
            message: message.into(),
            code: None,
            param: None,
            retryable: false,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message).with_code("invalid_api_key")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }

    /// The OpenAI error `type` string.
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::PayloadTooLarge => {
                "invalid_request_error"
            }
            ErrorKind::Unauthenticated => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::InsufficientQuota => "insufficient_quota",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Unsupported => "not_implemented",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::Adapter => "adapter_error",
            ErrorKind::Unavailable => "service_unavailable",
            ErrorKind::Internal => "server_error",
        }
    }

    /// Whether this error is worth an operator's attention in the logs.
    pub fn is_server_side(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Upstream | ErrorKind::Adapter | ErrorKind::Unavailable | ErrorKind::Internal
        )
    }

    /// The OpenAI-shaped body: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.error_type(),
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status,
            self.error_type(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = self.body();
        self.into_response_with(body)
    }
}

impl GatewayError {
    /// The response with `body` (an error in another API's envelope) in
    /// place of OpenAI's, keeping the status and headers.
    pub fn into_response_with(self, body: serde_json::Value) -> Response {
        if self.kind == ErrorKind::Internal {
            tracing::error!(error = %self.message, "internal error");
        }
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<sqlx::Error> for GatewayError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(format!("database: {e}"))
    }
}

impl From<anyhow::Error> for GatewayError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openai_shape() {
        let e = GatewayError::invalid("missing model").with_param("model");
        let b = e.body();
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["param"], "model");
        assert_eq!(b["error"]["message"], "missing model");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}

//! Bedrock's errors → [`AdapterError`].
//!
//! Bedrock Runtime answers a failure with `{"message": "…"}` (AWS's own
//! front door, for credential failures, sometimes `{"Message": "…"}`) and
//! names the error in the `x-amzn-ErrorType` header
//! (`ValidationException:http://internal.amazon.com/coral/…`), some answers
//! also in the body's `__type` (`com.amazon.coral.service#…`). The type
//! decides first:
//!
//! | type | status | becomes |
//! |---|---|---|
//! | `AccessDeniedException`, `UnrecognizedClientException`, `InvalidSignatureException`, `IncompleteSignatureException`, `MissingAuthenticationTokenException`, `ExpiredTokenException`, … | 403 (400) | `Auth` |
//! | `ThrottlingException`, `ModelNotReadyException`, `ServiceQuotaExceededException` | 429 (400) | `RateLimited` |
//! | `ValidationException` | 400 | `InvalidRequest` |
//! | `ResourceNotFoundException` | 404 | `Upstream` 404, retryable (another channel may have the model) |
//! | `ModelTimeoutException` | 408 | `Upstream` 408, retryable |
//! | `ModelErrorException` | 424 | `Upstream` 502, retryable |
//! | `InternalServerException`, `ServiceUnavailableException` | 500, 503 | `Upstream`, retryable |
//!
//! and an unnamed error goes by its status, as [`errors::from_response`]
//! does it.

use serde_json::Value;
use transit_adapter_sdk::errors::truncate;
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::{RateLimit, UpstreamError};

/// Error types that mean the channel's credentials (or their permissions)
/// are wrong.
const AUTH: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnauthorizedException",
];

/// Error types that mean "slow down".
const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "ModelNotReadyException",
    "ServiceQuotaExceededException",
    "TooManyRequestsException",
];

/// The error type: the header's, or the body's `__type` / `code`, without
/// the namespace (`…#Name`) or the URL suffix (`Name:http://…`).
fn error_type(response: &UpstreamResponse, body: Option<&Value>) -> Option<String> {
    let raw = response
        .header("x-amzn-errortype")
        .map(str::to_owned)
        .or_else(|| {
            body.and_then(|b| b.get("__type").or_else(|| b.get("code")))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })?;
    let name = raw.split(':').next().unwrap_or(&raw);
    let name = name.rsplit('#').next().unwrap_or(name).trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The message of an error body.
fn message_of(body: Option<&Value>) -> Option<String> {
    body.and_then(|b| b.get("message").or_else(|| b.get("Message")))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(truncate)
}

/// Classify a non-2xx answer.
pub fn classify(response: &UpstreamResponse) -> AdapterError {
    let body = serde_json::from_slice::<Value>(&response.body).ok();
    let kind = error_type(response, body.as_ref());
    let Some(message) = message_of(body.as_ref()) else {
        if kind.is_none() {
            return errors::from_response(response);
        }
        let message = format!(
            "Bedrock answered HTTP {} ({})",
            response.status,
            kind.as_deref().unwrap_or_default()
        );
        return by_type(response, kind, message);
    };
    by_type(response, kind, message)
}

fn by_type(response: &UpstreamResponse, kind: Option<String>, message: String) -> AdapterError {
    let status = response.status;
    let upstream = |status: u16, retryable: bool, message: String, code: Option<String>| {
        AdapterError::Upstream(UpstreamError {
            status,
            retryable,
            message,
            code,
        })
    };
    match kind.as_deref() {
        Some(k) if AUTH.contains(&k) => AdapterError::Auth(message),
        Some(k) if THROTTLED.contains(&k) => AdapterError::RateLimited(RateLimit {
            retry_after_ms: errors::retry_after_ms(response),
            message,
        }),
        Some("ValidationException") => AdapterError::InvalidRequest(message),
        Some("ResourceNotFoundException") => upstream(404, true, message, kind),
        Some("ModelTimeoutException") => upstream(408, true, message, kind),
        Some("ModelErrorException") => upstream(502, true, message, kind),
        Some("InternalServerException" | "ServiceUnavailableException") => {
            upstream(status.max(500), true, message, kind)
        }
        _ => match status {
            401 | 403 => AdapterError::Auth(message),
            429 => AdapterError::RateLimited(RateLimit {
                retry_after_ms: errors::retry_after_ms(response),
                message,
            }),
            400 => AdapterError::InvalidRequest(message),
            s => upstream(s, matches!(s, 404 | 408 | 409) || s >= 500, message, kind),
        },
    }
}

/// An exception frame in a ConverseStream (`:exception-type` as `name`, the
/// JSON `{"message"}` as `data`). The stream has begun, so it fails as it
/// stands; a throttle is still a rate limit.
pub fn stream_exception(name: &str, data: &[u8]) -> AdapterError {
    let body = serde_json::from_slice::<Value>(data).ok();
    let name = if name.is_empty() { "unknown" } else { name };
    let message = message_of(body.as_ref()).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(data);
        let text = text.trim();
        if text.is_empty() || text.starts_with('{') {
            format!("Bedrock ended the stream with `{name}`")
        } else {
            truncate(text)
        }
    });
    let status = match name {
        "throttlingException" | "ThrottlingException" => {
            return AdapterError::RateLimited(RateLimit {
                retry_after_ms: None,
                message,
            });
        }
        "validationException" | "ValidationException" => 400,
        "serviceUnavailableException" | "ServiceUnavailableException" => 503,
        "internalServerException" | "InternalServerException" => 500,
        _ => 502,
    };
    AdapterError::Upstream(UpstreamError {
        status,
        retryable: false,
        message,
        code: Some(name.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::response;

    fn with_type(status: u16, body: &[u8], kind: &str) -> UpstreamResponse {
        let mut r = response(status, body);
        r.headers.push(("x-amzn-ErrorType".into(), kind.into()));
        r
    }

    #[test]
    fn fixtures_are_classified() {
        let validation = with_type(
            400,
            include_bytes!("../fixtures/error_validation.json"),
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        );
        assert!(matches!(classify(&validation),
            AdapterError::InvalidRequest(m) if m.starts_with("A conversation must start with a user message")));
        let denied = with_type(
            403,
            include_bytes!("../fixtures/error_access_denied.json"),
            "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/",
        );
        assert!(
            matches!(classify(&denied), AdapterError::Auth(m) if m.starts_with("You don't have access"))
        );
        let unrecognized = with_type(
            403,
            include_bytes!("../fixtures/error_unrecognized_client.json"),
            "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/",
        );
        assert!(
            matches!(classify(&unrecognized), AdapterError::Auth(m) if m.contains("security token"))
        );
        let signature = with_type(
            403,
            include_bytes!("../fixtures/error_invalid_signature.json"),
            "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/",
        );
        assert!(
            matches!(classify(&signature), AdapterError::Auth(m) if m.starts_with("The request signature"))
        );
        let mut throttled = with_type(
            429,
            include_bytes!("../fixtures/error_throttling.json"),
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        );
        throttled.headers.push(("retry-after".into(), "2".into()));
        assert!(matches!(classify(&throttled),
            AdapterError::RateLimited(r) if r.retry_after_ms == Some(2000) && r.message.starts_with("Too many requests")));
    }

    #[test]
    fn types_from_the_body_and_status_fallbacks() {
        let r = response(
            403,
            br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","Message":"The security token included in the request is invalid."}"#,
        );
        assert!(
            matches!(classify(&r), AdapterError::Auth(m) if m.starts_with("The security token"))
        );
        let r = with_type(
            404,
            br#"{"message":"The provided model identifier is invalid."}"#,
            "ResourceNotFoundException",
        );
        assert!(
            matches!(classify(&r), AdapterError::Upstream(u) if u.status == 404 && u.retryable)
        );
        let r = with_type(424, br#"{"message":"Model error"}"#, "ModelErrorException");
        assert!(
            matches!(classify(&r), AdapterError::Upstream(u) if u.status == 502 && u.retryable)
        );
        let r = with_type(
            408,
            br#"{"message":"Model timed out"}"#,
            "ModelTimeoutException",
        );
        assert!(
            matches!(classify(&r), AdapterError::Upstream(u) if u.status == 408 && u.retryable)
        );
        let r = with_type(
            503,
            br#"{"message":"Service unavailable"}"#,
            "ServiceUnavailableException",
        );
        assert!(
            matches!(classify(&r), AdapterError::Upstream(u) if u.status == 503 && u.retryable)
        );
        let r = with_type(
            429,
            br#"{"message":"Model is getting ready"}"#,
            "ModelNotReadyException",
        );
        assert!(matches!(classify(&r), AdapterError::RateLimited(_)));
        let r = with_type(403, b"", "AccessDeniedException");
        assert!(
            matches!(classify(&r), AdapterError::Auth(m) if m.contains("AccessDeniedException"))
        );
        assert!(
            matches!(classify(&response(502, b"<html>bad gateway</html>")), AdapterError::Upstream(u) if u.retryable)
        );
        assert!(matches!(
            classify(&response(401, b"")),
            AdapterError::Auth(_)
        ));
        assert!(
            matches!(classify(&response(400, br#"{"message":"nope"}"#)), AdapterError::InvalidRequest(m) if m == "nope")
        );
        assert!(
            matches!(classify(&response(413, br#"{"message":"too big"}"#)), AdapterError::Upstream(u) if u.status == 413 && !u.retryable)
        );
    }
}

//! Tencent Cloud's error envelope → [`AdapterError`].
//!
//! API 3.0 answers failures with HTTP 200 and
//! `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`; the code
//! decides:
//! - `AuthFailure.*` (bad signature, unknown SecretId, expired signature,
//!   ...) and `UnauthorizedOperation*`: the channel's credential;
//! - `RequestLimitExceeded*` and `LimitExceeded*`: rate limits (Tencent
//!   gives no delay);
//! - `InvalidParameter*`, `InvalidParameterValue*`, `MissingParameter*`,
//!   `UnknownParameter*`: the client's request, 400;
//! - `InternalError*`, `ServiceUnavailable*`, `ResourceUnavailable*`,
//!   `FailedOperation.Engine*`: upstream failures another channel may not
//!   have;
//! - `FailedOperation.*` otherwise (service not activated, resource pack
//!   exhausted, account in arrears), `ResourceInsufficient*`,
//!   `ResourceNotFound*`, `InvalidAction`: the account behind this channel,
//!   so another channel may succeed.
//!
//! A stream reports a failure mid-way as `ErrorMsg {Msg, Code}` (4000: an
//! internal failure, 4001: the model timed out).
//!
//! A non-2xx status comes from something in front of API 3.0 (a proxy, a
//! load balancer): 401/403, 429 and 5xx are classified by the status,
//! anything else by the envelope's code when the body is one.

use serde_json::Value;
use transit_adapter_sdk::errors::truncate;
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::{RateLimit, UpstreamError};

/// The `Response.Error` object of a body, if it carries one.
pub fn in_body(value: &Value) -> Option<AdapterError> {
    let error = value
        .get("Response")
        .unwrap_or(value)
        .get("Error")
        .filter(|e| e.is_object())?;
    Some(from_error(error))
}

/// Classify one `Error {Code, Message}`.
pub fn from_error(error: &Value) -> AdapterError {
    let code = error.get("Code").and_then(Value::as_str).unwrap_or("");
    let message = error
        .get("Message")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map_or_else(|| format!("Tencent Cloud answered {code}"), truncate);
    classify(code, message)
}

fn classify(code: &str, message: String) -> AdapterError {
    let family = code.split('.').next().unwrap_or(code);
    let upstream = |status: u16, retryable: bool, message: String| {
        AdapterError::Upstream(UpstreamError {
            status,
            retryable,
            message,
            code: (!code.is_empty()).then(|| code.to_owned()),
        })
    };
    match family {
        "AuthFailure" | "UnauthorizedOperation" => AdapterError::Auth(message),
        "RequestLimitExceeded" | "LimitExceeded" => AdapterError::RateLimited(RateLimit {
            retry_after_ms: None,
            message,
        }),
        "InvalidParameter" | "InvalidParameterValue" | "MissingParameter" | "UnknownParameter" => {
            AdapterError::InvalidRequest(message)
        }
        "InternalError" | "ServiceUnavailable" | "ResourceUnavailable" => {
            upstream(503, true, message)
        }
        "FailedOperation" if code.starts_with("FailedOperation.Engine") => {
            upstream(503, true, message)
        }
        _ => upstream(502, true, message),
    }
}

/// A stream's `ErrorMsg {Msg, Code}`.
pub fn stream_error(error: &Value) -> AdapterError {
    let code = error.get("Code").and_then(Value::as_i64);
    let message = error
        .get("Msg")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map_or_else(|| "Hunyuan failed mid-stream".to_owned(), truncate);
    AdapterError::Upstream(UpstreamError {
        status: 502,
        // 4000 (internal) and 4001 (model timeout) may go better elsewhere.
        retryable: true,
        message,
        code: code.map(|c| c.to_string()),
    })
}

/// Classify a non-2xx answer. API 3.0 itself answers failures with HTTP
/// 200, so a non-2xx status comes from something in front of it (a proxy,
/// a gateway timeout): 401/403, 429 and 5xx are taken by their status,
/// with the envelope's message when there is one; other statuses by the
/// envelope's code when there is one.
pub fn classify_response(response: &UpstreamResponse) -> AdapterError {
    let enveloped = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| in_body(&v));
    let by_status = matches!(response.status, 401 | 403 | 429) || response.status >= 500;
    match enveloped {
        Some(e) if !by_status => e,
        Some(e) => {
            let message = match e {
                AdapterError::Auth(m) | AdapterError::InvalidRequest(m) => m,
                AdapterError::RateLimited(r) => r.message,
                AdapterError::Upstream(u) => u.message,
                AdapterError::Unsupported(m) | AdapterError::Internal(m) => m,
            };
            errors::from_response(&UpstreamResponse {
                status: response.status,
                headers: response.headers.clone(),
                body: serde_json::json!({ "message": message })
                    .to_string()
                    .into_bytes(),
            })
        }
        None => errors::from_response(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::response;

    const AUTH: &[u8] = include_bytes!("../fixtures/error_auth.json");
    const RATE: &[u8] = include_bytes!("../fixtures/error_rate_limited.json");
    const PARAM: &[u8] = include_bytes!("../fixtures/error_invalid_parameter.json");
    const ENGINE: &[u8] = include_bytes!("../fixtures/error_engine.json");
    const ARREARS: &[u8] = include_bytes!("../fixtures/error_arrears.json");

    fn of(body: &[u8]) -> AdapterError {
        in_body(&serde_json::from_slice(body).unwrap()).unwrap()
    }

    #[test]
    fn documented_error_bodies_are_classified() {
        assert!(
            matches!(of(AUTH), AdapterError::Auth(m) if m.contains("signature")),
            "{:?}",
            of(AUTH)
        );
        assert!(matches!(
            of(RATE),
            AdapterError::RateLimited(RateLimit { retry_after_ms: None, ref message }) if !message.is_empty()
        ));
        assert!(matches!(of(PARAM), AdapterError::InvalidRequest(_)));
        assert!(matches!(
            of(ENGINE),
            AdapterError::Upstream(UpstreamError { status: 503, retryable: true, ref code, .. })
                if code.as_deref() == Some("FailedOperation.EngineServerError")
        ));
        assert!(matches!(
            of(ARREARS),
            AdapterError::Upstream(UpstreamError {
                status: 502,
                retryable: true,
                ..
            })
        ));
    }

    #[test]
    fn other_families() {
        let e = |code: &str| classify(code, "m".into());
        assert!(matches!(
            e("UnauthorizedOperation.NoPermission"),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            e("MissingParameter"),
            AdapterError::InvalidRequest(_)
        ));
        assert!(matches!(
            e("UnknownParameter"),
            AdapterError::InvalidRequest(_)
        ));
        assert!(matches!(e("LimitExceeded"), AdapterError::RateLimited(_)));
        assert!(matches!(
            e("InternalError"),
            AdapterError::Upstream(UpstreamError {
                status: 503,
                retryable: true,
                ..
            })
        ));
    }

    #[test]
    fn non_2xx_answers() {
        assert!(matches!(
            classify_response(&response(200, AUTH)),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            classify_response(&response(504, b"<html>gateway timeout</html>")),
            AdapterError::Upstream(UpstreamError {
                status: 504,
                retryable: true,
                ..
            })
        ));
        assert!(matches!(
            classify_response(&response(401, b"")),
            AdapterError::Auth(_)
        ));
        // In front of API 3.0, the status decides; the message is kept.
        assert!(matches!(
            classify_response(&response(429, PARAM)),
            AdapterError::RateLimited(RateLimit { ref message, .. }) if message == "Messages 不能为空"
        ));
        assert!(matches!(
            classify_response(&response(503, PARAM)),
            AdapterError::Upstream(UpstreamError {
                status: 503,
                retryable: true,
                ..
            })
        ));
        assert!(matches!(
            classify_response(&response(401, PARAM)),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            classify_response(&response(400, PARAM)),
            AdapterError::InvalidRequest(_)
        ));
    }

    #[test]
    fn stream_errors() {
        let e = stream_error(&serde_json::json!({"Msg": "请求模型超时", "Code": 4001}));
        assert!(matches!(
            e,
            AdapterError::Upstream(UpstreamError { retryable: true, ref code, .. })
                if code.as_deref() == Some("4001")
        ));
    }
}

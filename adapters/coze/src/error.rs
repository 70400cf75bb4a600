//! Coze's error shapes → [`AdapterError`].
//!
//! Coze answers a rejected call with `{"code": N, "msg": "..."}` (HTTP 200
//! or 4xx), fails a streamed chat with a `conversation.chat.failed` event
//! whose `last_error` is `{code, msg}`, or sends an `error` event with
//! `{code, msg}`. The code decides:
//! - 4100 (invalid or expired token), 4101 (the token lacks the
//!   permission), 700012006 (invalid access token): the channel's
//!   credential;
//! - 4013 (too many requests) and 4028 (the account's quota is used up):
//!   rate limits, with `Retry-After` when given;
//! - 4000 (invalid parameters): the client's request, 400;
//! - 4200 (no such bot), 4015 (the bot is not published to the API
//!   channel): this channel's bot, so another channel may serve;
//! - 5000 and other codes: upstream failures.
//!
//! Without a code the HTTP status decides.

use serde_json::Value;
use transit_adapter_sdk::errors::truncate;
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::{RateLimit, UpstreamError};

/// `{code, msg}` with a non-zero code, as an error.
pub fn from_object(value: &Value, retry_after_ms: Option<u64>) -> Option<AdapterError> {
    let code = code_of(value.get("code")?)?;
    if code == 0 {
        return None;
    }
    let message = value
        .get("msg")
        .or_else(|| value.get("message"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map_or_else(|| format!("Coze answered code {code}"), truncate);
    Some(classify(code, message, retry_after_ms))
}

fn code_of(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

pub fn classify(code: i64, message: String, retry_after_ms: Option<u64>) -> AdapterError {
    let upstream = |status: u16, retryable: bool, message: String| {
        AdapterError::Upstream(UpstreamError {
            status,
            retryable,
            message,
            code: Some(code.to_string()),
        })
    };
    match code {
        4100 | 4101 | 700_012_006 => AdapterError::Auth(message),
        4013 | 4028 => AdapterError::RateLimited(RateLimit {
            retry_after_ms,
            message,
        }),
        4000 => AdapterError::InvalidRequest(message),
        4015 | 4200 => upstream(404, true, message),
        5000 => upstream(500, true, message),
        _ => upstream(502, true, message),
    }
}

/// Classify a non-2xx answer: 401/403, 429 and 5xx by their status (with
/// Coze's message), others by Coze's code when the body has one.
pub fn classify_response(response: &UpstreamResponse) -> AdapterError {
    let retry = errors::retry_after_ms(response);
    let coded = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| from_object(&v, retry));
    let by_status = matches!(response.status, 401 | 403 | 429) || response.status >= 500;
    match coded {
        Some(e) if !by_status => e,
        // `errors::from_response` reads Coze's `msg` itself.
        _ => errors::from_response(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::response;

    const AUTH: &[u8] = include_bytes!("../fixtures/error_auth.json");
    const RATE: &[u8] = include_bytes!("../fixtures/error_rate_limited.json");
    const BOT: &[u8] = include_bytes!("../fixtures/error_bot_not_found.json");
    const PARAM: &[u8] = include_bytes!("../fixtures/error_invalid_parameter.json");

    #[test]
    fn documented_error_bodies() {
        assert!(matches!(
            classify_response(&response(401, AUTH)),
            AdapterError::Auth(_)
        ));
        let mut limited = response(429, RATE);
        limited.headers.push(("retry-after".into(), "3".into()));
        assert!(matches!(
            classify_response(&limited),
            AdapterError::RateLimited(RateLimit {
                retry_after_ms: Some(3000),
                ..
            })
        ));
        assert!(matches!(
            classify_response(&response(200, BOT)),
            AdapterError::Upstream(UpstreamError { status: 404, retryable: true, ref code, .. })
                if code.as_deref() == Some("4200")
        ));
        assert!(matches!(
            classify_response(&response(400, PARAM)),
            AdapterError::InvalidRequest(_)
        ));
        // A status that speaks for itself wins over the code.
        assert!(matches!(
            classify_response(&response(429, PARAM)),
            AdapterError::RateLimited(RateLimit { ref message, .. }) if message.contains("bot_id")
        ));
        assert!(matches!(
            classify_response(&response(401, PARAM)),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            classify_response(&response(503, PARAM)),
            AdapterError::Upstream(UpstreamError {
                status: 503,
                retryable: true,
                ..
            })
        ));
    }

    #[test]
    fn without_a_code_the_status_decides() {
        assert!(matches!(
            classify_response(&response(503, b"upstream connect error")),
            AdapterError::Upstream(UpstreamError {
                status: 503,
                retryable: true,
                ..
            })
        ));
        assert!(from_object(&serde_json::json!({"code": 0, "msg": ""}), None).is_none());
        assert!(matches!(
            from_object(&serde_json::json!({"code": "5000", "msg": "busy"}), None),
            Some(AdapterError::Upstream(UpstreamError { status: 500, .. }))
        ));
    }
}

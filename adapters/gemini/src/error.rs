//! Gemini's error envelope → [`AdapterError`].
//!
//! Gemini answers `{"error": {"code", "message", "status", "details"}}`
//! (inside a one-element array when a stream was asked for without
//! `alt=sse`). The HTTP status decides first, the way the gateway expects:
//! 401/403 are credential failures, 429 (`RESOURCE_EXHAUSTED`) a rate limit
//! whose delay comes from the `RetryInfo` detail, 5xx may succeed on another
//! channel, and a 404 (a model this channel does not have) too. A 400 is
//! read further: an invalid key is a 400 with the reason `API_KEY_INVALID`,
//! which is a credential failure; `FAILED_PRECONDITION` for an unsupported
//! location is the gateway's own standing with Google, not the client's
//! fault and no better on another channel; anything else is the client's
//! request to fix.

use serde_json::Value;
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::{RateLimit, UpstreamError, json};

/// Credential reasons Gemini gives in an `ErrorInfo` detail.
const AUTH_REASONS: &[&str] = &[
    "API_KEY_INVALID",
    "API_KEY_EXPIRED",
    "API_KEY_SERVICE_BLOCKED",
    "API_KEY_HTTP_REFERRER_BLOCKED",
    "API_KEY_IP_ADDRESS_BLOCKED",
    "SERVICE_DISABLED",
    "CONSUMER_INVALID",
];

/// The pieces of an error object.
struct Parsed<'a> {
    message: String,
    status: Option<&'a str>,
    details: &'a [Value],
}

fn parse(error: &Value, http: u16) -> Parsed<'_> {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map_or_else(|| format!("Gemini answered HTTP {http}"), truncate);
    Parsed {
        message,
        status: error.get("status").and_then(Value::as_str),
        details: error
            .get("details")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default(),
    }
}

fn truncate(message: &str) -> String {
    const MAX: usize = 1024;
    if message.len() <= MAX {
        return message.to_owned();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// The detail of type `google.rpc.<kind>`.
fn detail<'a>(details: &'a [Value], kind: &str) -> Option<&'a Value> {
    details.iter().find(|d| {
        d.get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.rsplit('/').next() == Some(kind))
    })
}

/// `RetryInfo.retryDelay` ("12s", "0.5s", or `{seconds, nanos}`) in ms.
fn retry_delay_ms(details: &[Value]) -> Option<u64> {
    let delay = detail(details, "google.rpc.RetryInfo")?.get("retryDelay")?;
    let seconds = match delay {
        Value::String(s) => json::decimal(s.trim().strip_suffix('s')?)?,
        Value::Object(o) => {
            let whole = o
                .get("seconds")
                .and_then(|s| s.as_f64().or_else(|| json::decimal(s.as_str()?)))
                .unwrap_or(0.0);
            let nanos = o.get("nanos").and_then(Value::as_f64).unwrap_or(0.0);
            whole + nanos / 1e9
        }
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
}

/// The `error` object of a body, if it is Gemini's envelope.
fn envelope(body: &Value) -> Option<&Value> {
    let body = match body {
        Value::Array(items) => items.first()?,
        other => other,
    };
    body.get("error").filter(|e| e.is_object())
}

/// Classify a non-2xx answer.
pub fn classify(response: &UpstreamResponse) -> AdapterError {
    let value = serde_json::from_slice::<Value>(&response.body).ok();
    let Some(error) = value.as_ref().and_then(envelope) else {
        // Not Gemini's envelope (a proxy's page, an empty body).
        return errors::from_response(response);
    };
    let http = response.status;
    let Parsed {
        message,
        status,
        details,
    } = parse(error, http);
    let code = status.map(str::to_owned);
    let reason = detail(details, "google.rpc.ErrorInfo")
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str);
    let upstream = |status: u16, retryable: bool, message: String| {
        AdapterError::Upstream(UpstreamError {
            status,
            retryable,
            message,
            code: code.clone(),
        })
    };
    let rate_limited = |message: String| {
        AdapterError::RateLimited(RateLimit {
            retry_after_ms: retry_delay_ms(details).or_else(|| errors::retry_after_ms(response)),
            message,
        })
    };
    match http {
        401 | 403 => AdapterError::Auth(message),
        429 => rate_limited(message),
        404 | 408 | 409 => upstream(http, true, message),
        s if s >= 500 => upstream(s, true, message),
        _ if reason.is_some_and(|r| AUTH_REASONS.contains(&r))
            || matches!(status, Some("UNAUTHENTICATED" | "PERMISSION_DENIED")) =>
        {
            AdapterError::Auth(message)
        }
        _ if status == Some("RESOURCE_EXHAUSTED") => rate_limited(message),
        _ if status == Some("FAILED_PRECONDITION") && is_location(&message) => {
            upstream(502, false, message)
        }
        400 => AdapterError::InvalidRequest(message),
        other => upstream(other, false, message),
    }
}

/// "User location is not supported for the API use." and its kin.
fn is_location(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("location") || m.contains("country") || m.contains("region")
}

/// A 2xx body that is an error envelope anyway.
pub fn in_body(body: &Value) -> Option<AdapterError> {
    let error = envelope(body)?;
    let Parsed {
        message, status, ..
    } = parse(error, 502);
    Some(AdapterError::Upstream(UpstreamError {
        status: 502,
        retryable: true,
        message,
        code: status.map(str::to_owned),
    }))
}

/// An `error` object sent as a stream event: the stream has begun, so it
/// fails as it stands, with the status Gemini gave.
pub fn stream_error(error: &Value) -> AdapterError {
    let code = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(502);
    let Parsed {
        message, status, ..
    } = parse(error, code);
    AdapterError::Upstream(UpstreamError {
        status: code,
        retryable: false,
        message,
        code: status.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use crate::{CHAT, Gemini};
    use transit_adapter_sdk::prelude::*;
    use transit_adapter_sdk::testing::{call, response};

    const INVALID: &[u8] = include_bytes!("../fixtures/error.json");
    const API_KEY: &[u8] = include_bytes!("../fixtures/error_api_key.json");
    const RATE_LIMITED: &[u8] = include_bytes!("../fixtures/error_rate_limited.json");
    const LOCATION: &[u8] = include_bytes!("../fixtures/error_location.json");
    const OVERLOADED: &[u8] = include_bytes!("../fixtures/error_overloaded.json");

    fn mapped(status: u16, body: &[u8]) -> AdapterError {
        Gemini::map_error(
            &call(CHAT, "gemini-2.5-flash", false),
            &response(status, body),
        )
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            mapped(400, INVALID),
            AdapterError::InvalidRequest(m) if m == "* GenerateContentRequest.contents: contents is not specified"
        ));
        assert!(
            matches!(mapped(400, API_KEY), AdapterError::Auth(m) if m.contains("API key not valid"))
        );
        assert!(matches!(
            mapped(403, br#"{"error":{"code":403,"message":"Method doesn't allow unregistered callers","status":"PERMISSION_DENIED"}}"#),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            mapped(429, RATE_LIMITED),
            AdapterError::RateLimited(r) if r.retry_after_ms == Some(12_000) && r.message.starts_with("You exceeded")
        ));
        assert!(matches!(
            mapped(400, LOCATION),
            AdapterError::Upstream(u) if !u.retryable && u.code.as_deref() == Some("FAILED_PRECONDITION")
        ));
        assert!(matches!(
            mapped(400, br#"{"error":{"code":400,"message":"Precondition check failed.","status":"FAILED_PRECONDITION"}}"#),
            AdapterError::InvalidRequest(_)
        ));
        assert!(matches!(
            mapped(503, OVERLOADED),
            AdapterError::Upstream(u) if u.retryable && u.status == 503 && u.code.as_deref() == Some("UNAVAILABLE")
        ));
        assert!(matches!(
            mapped(404, br#"{"error":{"code":404,"message":"models/gemini-9 is not found for API version v1beta","status":"NOT_FOUND"}}"#),
            AdapterError::Upstream(u) if u.retryable && u.status == 404
        ));
    }

    /// The kit maps one body under every status: the status decides.
    #[test]
    fn the_status_comes_first() {
        assert!(matches!(mapped(401, INVALID), AdapterError::Auth(_)));
        assert!(matches!(mapped(429, INVALID), AdapterError::RateLimited(_)));
        assert!(matches!(mapped(500, API_KEY), AdapterError::Upstream(u) if u.retryable));
    }

    #[test]
    fn array_envelopes_retry_headers_and_foreign_bodies() {
        let wrapped = format!("[{}]", String::from_utf8_lossy(API_KEY));
        assert!(matches!(
            mapped(400, wrapped.as_bytes()),
            AdapterError::Auth(_)
        ));
        let mut r = response(
            429,
            br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        r.headers.push(("retry-after".into(), "3".into()));
        assert!(matches!(
            Gemini::map_error(&call(CHAT, "m", false), &r),
            AdapterError::RateLimited(l) if l.retry_after_ms == Some(3000)
        ));
        assert!(
            matches!(mapped(502, b"<html>bad gateway</html>"), AdapterError::Upstream(u) if u.retryable)
        );
        assert!(matches!(mapped(400, b""), AdapterError::Upstream(u) if !u.retryable));
        assert!(
            matches!(mapped(413, br#"{"error":{"code":413,"message":"too big","status":"INVALID_ARGUMENT"}}"#), AdapterError::Upstream(u) if u.status == 413 && !u.retryable)
        );
    }

    #[test]
    fn retry_delays_parse() {
        use serde_json::json;
        let d = |v| {
            super::retry_delay_ms(&[
                json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": v}),
            ])
        };
        assert_eq!(d(json!("12s")), Some(12_000));
        assert_eq!(d(json!("0.5s")), Some(500));
        assert_eq!(
            d(json!({"seconds": "2", "nanos": 500_000_000})),
            Some(2_500)
        );
        assert_eq!(d(json!("soon")), None);
    }
}

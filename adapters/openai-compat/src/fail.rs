//! Building [`AdapterError`]s from the providers' error bodies.

use serde_json::Value;
use transit_adapter_sdk::errors::truncate;
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::{RateLimit, UpstreamError};

use crate::Provider;

/// A JSON code as text: `"1211"`, `1211` and `"InvalidApiKey"` alike.
pub fn code_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string field, cut to a reasonable length.
pub fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(truncate)
}

/// The body as JSON, if it is.
pub fn body_json(response: &UpstreamResponse) -> Option<Value> {
    serde_json::from_slice(&response.body).ok()
}

/// A message for a response whose body names none.
pub fn fallback_message(response: &UpstreamResponse) -> String {
    let (message, _) = errors::error_message(&response.body);
    if message.is_empty() {
        format!("upstream answered HTTP {}", response.status)
    } else {
        message
    }
}

/// The channel's credentials (or account) were refused. The message is
/// logged, never shown to the client.
pub fn auth(provider: Provider, code: Option<&str>, message: &str) -> AdapterError {
    AdapterError::Auth(match code {
        Some(code) => format!(
            "{} refused the credentials ({code}): {message}",
            provider.name()
        ),
        None => format!("{} refused the credentials: {message}", provider.name()),
    })
}

/// A rate limit, honouring `retry-after-ms` / `retry-after`, or a "retry
/// after N seconds" hint in the message.
pub fn rate_limited(response: &UpstreamResponse, message: String) -> AdapterError {
    let retry_after_ms = errors::retry_after_ms(response).or_else(|| retry_hint(&message));
    AdapterError::RateLimited(RateLimit {
        retry_after_ms,
        message,
    })
}

/// "... retry after 6 seconds ..." → 6000.
fn retry_hint(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("retry after ")? + "retry after ".len();
    let digits: String = lower[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let secs: u64 = digits.parse().ok()?;
    lower[at + digits.len()..]
        .trim_start()
        .starts_with("second")
        .then_some(secs.saturating_mul(1000))
}

/// The provider account behind the channel is out of money: another channel
/// may serve the call, and the client is not told about the operator's bill.
pub fn balance(provider: Provider) -> AdapterError {
    AdapterError::Upstream(UpstreamError {
        status: 502,
        retryable: true,
        message: format!(
            "the {} account behind this channel has no balance left",
            provider.name()
        ),
        code: Some("upstream_insufficient_balance".to_owned()),
    })
}

/// The provider's content safety system refused the prompt or the answer.
pub fn content_filter(message: String) -> AdapterError {
    AdapterError::Upstream(UpstreamError {
        status: 400,
        retryable: false,
        message,
        code: Some("content_filter".to_owned()),
    })
}

/// An upstream failure with a status the client sees.
pub fn upstream(
    status: u16,
    retryable: bool,
    message: String,
    code: Option<String>,
) -> AdapterError {
    AdapterError::Upstream(UpstreamError {
        status,
        retryable,
        message,
        code,
    })
}

/// Classify by HTTP status: 401/403 credentials, 429 rate limit, 408/409
/// and 5xx retryable, other 4xx the client's; a 2xx that carried an error is
/// a retryable 502.
pub fn by_status(
    response: &UpstreamResponse,
    message: String,
    code: Option<String>,
) -> AdapterError {
    match response.status {
        401 | 403 => AdapterError::Auth(message),
        429 => rate_limited(response, message),
        status if status < 400 => upstream(502, true, message, code),
        status => upstream(
            status,
            matches!(status, 408 | 409) || status >= 500,
            message,
            code,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::response;

    #[test]
    fn retry_hints_are_read_from_messages() {
        assert_eq!(retry_hint("Please retry after 6 seconds. See"), Some(6000));
        assert_eq!(retry_hint("retry after 1 second"), Some(1000));
        assert_eq!(retry_hint("retry after a while"), None);
        assert_eq!(retry_hint("nothing"), None);
    }

    #[test]
    fn codes_of_either_type() {
        assert_eq!(code_text(Some(&Value::from(1211))), Some("1211".into()));
        assert_eq!(code_text(Some(&Value::from("x"))), Some("x".into()));
        assert_eq!(code_text(Some(&Value::from(""))), None);
        assert_eq!(code_text(None), None);
    }

    #[test]
    fn status_classes() {
        assert!(matches!(
            by_status(&response(403, b""), "m".into(), None),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            by_status(&response(200, b""), "m".into(), None),
            AdapterError::Upstream(UpstreamError {
                status: 502,
                retryable: true,
                ..
            })
        ));
        assert!(matches!(
            by_status(&response(400, b""), "m".into(), None),
            AdapterError::Upstream(UpstreamError {
                status: 400,
                retryable: false,
                ..
            })
        ));
        let long = "é".repeat(2000);
        assert!(text(Some(&Value::String(long))).unwrap().len() < 1100);
    }
}

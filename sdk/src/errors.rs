//! Building and classifying [`AdapterError`]s.

use crate::{AdapterError, RateLimit, UpstreamError, UpstreamResponse};

/// The longest upstream message passed on to clients, in bytes.
pub const MAX_MESSAGE: usize = 1024;

/// The client's request cannot be served as sent.
pub fn invalid_request(message: impl Into<String>) -> AdapterError {
    AdapterError::InvalidRequest(message.into())
}

/// The adapter does not implement what was asked.
pub fn unsupported(message: impl Into<String>) -> AdapterError {
    AdapterError::Unsupported(message.into())
}

/// The adapter does not serve the endpoint `call` asks for.
pub fn unsupported_endpoint(call: &crate::Call) -> AdapterError {
    AdapterError::Unsupported(format!(
        "the `{}` endpoint is not supported by channels of type `{}`",
        call.endpoint, call.channel.kind
    ))
}

/// The adapter failed: a bug, or an upstream answer it cannot read.
pub fn internal(message: impl Into<String>) -> AdapterError {
    AdapterError::Internal(message.into())
}

/// An upstream failure with the status the client should see.
pub fn upstream(status: u16, retryable: bool, message: impl Into<String>) -> AdapterError {
    AdapterError::Upstream(UpstreamError {
        status,
        retryable,
        message: message.into(),
        code: None,
    })
}

/// Classify a failed upstream response by its status code, reading the message
/// from the common error body shapes (`{"error":{"message":…}}`,
/// `{"error":"…"}`, `{"message":…}`, `{"detail":…}`).
///
/// 401/403 are credential failures; 429 is a rate limit (honouring
/// `retry-after-ms` and `retry-after` in seconds); 408, 409 and 5xx may
/// succeed on another channel; other 4xx are the client's to fix.
pub fn from_response(response: &UpstreamResponse) -> AdapterError {
    let (message, code) = error_message(&response.body);
    let message = if message.is_empty() {
        format!("upstream answered HTTP {}", response.status)
    } else {
        message
    };
    match response.status {
        401 | 403 => AdapterError::Auth(message),
        429 => AdapterError::RateLimited(RateLimit {
            retry_after_ms: retry_after_ms(response),
            message,
        }),
        status => AdapterError::Upstream(UpstreamError {
            status,
            retryable: matches!(status, 408 | 409) || status >= 500,
            message,
            code,
        }),
    }
}

/// The delay an upstream asked for, from `retry-after-ms` or `retry-after`.
pub fn retry_after_ms(response: &UpstreamResponse) -> Option<u64> {
    if let Some(ms) = response
        .header("retry-after-ms")
        .and_then(crate::json::decimal)
    {
        return Some(ms.max(0.0) as u64);
    }
    response
        .header("retry-after")
        .and_then(crate::json::decimal)
        .map(|secs| (secs.max(0.0) * 1000.0) as u64)
}

/// The message and code of an error body, in any of the common shapes. Falls
/// back to the body's text, cut to a reasonable length.
pub fn error_message(body: &[u8]) -> (String, Option<String>) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let err = value.get("error").unwrap_or(&value);
        let message = match err {
            serde_json::Value::String(s) => Some(s.clone()),
            other => ["message", "msg", "detail", "error_msg"]
                .iter()
                .find_map(|k| other.get(*k).and_then(|m| m.as_str()).map(str::to_owned)),
        };
        let code = ["code", "type", "status"].iter().find_map(|k| {
            err.get(*k).and_then(|c| match c {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        });
        if let Some(message) = message {
            return (truncate(&message), code);
        }
    }
    (truncate(String::from_utf8_lossy(body).trim()), None)
}

/// `s` cut to at most [`MAX_MESSAGE`] bytes (on a character boundary), with
/// `…` appended when anything was cut: for upstream messages passed on to
/// clients or logs.
pub fn truncate(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::response;

    #[test]
    fn truncate_cuts_on_a_character_boundary() {
        assert_eq!(truncate("short"), "short");
        let exact = "x".repeat(MAX_MESSAGE);
        assert_eq!(truncate(&exact), exact);
        let long = "y".repeat(MAX_MESSAGE + 1);
        assert_eq!(truncate(&long), format!("{}…", &long[..MAX_MESSAGE]));
        // A 3-byte character straddling the limit is left out whole.
        let straddling = format!("{}€tail", "z".repeat(MAX_MESSAGE - 1));
        assert_eq!(
            truncate(&straddling),
            format!("{}…", "z".repeat(MAX_MESSAGE - 1))
        );
    }

    #[test]
    fn openai_error_body_is_read() {
        let r = response(
            400,
            br#"{"error":{"message":"bad things","type":"invalid_request_error","code":"x"}}"#,
        );
        assert_eq!(
            from_response(&r),
            AdapterError::Upstream(UpstreamError {
                status: 400,
                retryable: false,
                message: "bad things".into(),
                code: Some("x".into())
            })
        );
    }

    #[test]
    fn status_classes() {
        assert!(matches!(
            from_response(&response(401, b"{}")),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            from_response(&response(503, b"down")),
            AdapterError::Upstream(UpstreamError { retryable: true, ref message, .. }) if message == "down"
        ));
        let mut limited = response(429, br#"{"error":"slow down"}"#);
        limited.headers.push(("Retry-After".into(), "2".into()));
        assert_eq!(
            from_response(&limited),
            AdapterError::RateLimited(RateLimit {
                retry_after_ms: Some(2000),
                message: "slow down".into()
            })
        );
        let mut limited = response(429, b"{}");
        limited
            .headers
            .push(("retry-after-ms".into(), " 1500.5".into()));
        assert_eq!(retry_after_ms(&limited), Some(1500));
        limited.headers = vec![("Retry-After".into(), "0.25".into())];
        assert_eq!(retry_after_ms(&limited), Some(250));
    }

    #[test]
    fn empty_and_binary_bodies_do_not_panic() {
        assert!(
            matches!(from_response(&response(500, b"")), AdapterError::Upstream(UpstreamError { ref message, .. }) if message.contains("500"))
        );
        let _ = from_response(&response(502, &[0xff, 0xfe, 0x00]));
        let long = vec![b'x'; 10_000];
        let (m, _) = error_message(&long);
        assert!(m.len() < 1100);
    }
}

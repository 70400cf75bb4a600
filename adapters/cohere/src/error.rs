//! Cohere's error bodies (`{"id": …, "message": …}`) → [`AdapterError`].
//!
//! 401 and Cohere's 498 (invalid token) are credential failures; 429 a rate
//! limit (with `retry-after` when sent); 402 (the account cannot pay) and
//! 404 (a model this channel does not serve) may succeed on another channel,
//! as may 5xx and 499; other 4xx (400, 422) are the client's to fix.

use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::{RateLimit, UpstreamError};

/// Classify a failed Cohere response.
pub fn classify(response: &UpstreamResponse) -> AdapterError {
    let (message, _) = errors::error_message(&response.body);
    let message = if message.is_empty() {
        format!("Cohere answered HTTP {}", response.status)
    } else {
        message
    };
    match response.status {
        401 | 403 | 498 => AdapterError::Auth(message),
        429 => AdapterError::RateLimited(RateLimit {
            retry_after_ms: errors::retry_after_ms(response),
            message,
        }),
        402 => AdapterError::Upstream(UpstreamError {
            status: 502,
            retryable: true,
            message,
            code: Some("payment_required".to_owned()),
        }),
        404 => AdapterError::Upstream(UpstreamError {
            status: 404,
            retryable: true,
            message,
            code: Some("not_found".to_owned()),
        }),
        status @ (400..=498) => AdapterError::Upstream(UpstreamError {
            status: if status == 422 { 400 } else { status },
            retryable: status == 408 || status == 409,
            message,
            code: None,
        }),
        status => AdapterError::Upstream(UpstreamError {
            status: if status >= 500 { status } else { 502 },
            retryable: true,
            message,
            code: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cohere;
    use transit_adapter_sdk::testing::{call, response};

    const AUTH: &[u8] = include_bytes!("../fixtures/error_auth.json");
    const RATE: &[u8] = include_bytes!("../fixtures/error_rate_limited.json");
    const BAD: &[u8] = include_bytes!("../fixtures/error_bad_request.json");
    const SERVER: &[u8] = include_bytes!("../fixtures/error_server.json");

    fn map(status: u16, body: &[u8]) -> AdapterError {
        Cohere::map_error(
            &call("chat.completions", "m", false),
            &response(status, body),
        )
    }

    #[test]
    fn documented_error_bodies() {
        assert_eq!(
            map(401, AUTH),
            AdapterError::Auth("invalid api token".into())
        );
        assert!(matches!(map(498, AUTH), AdapterError::Auth(_)));
        let mut limited = response(429, RATE);
        limited.headers.push(("Retry-After".into(), "7".into()));
        match Cohere::map_error(&call("chat.completions", "m", false), &limited) {
            AdapterError::RateLimited(r) => {
                assert_eq!(r.retry_after_ms, Some(7000));
                assert!(r.message.starts_with("You are using a Trial key"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map(429, RATE),
            AdapterError::RateLimited(RateLimit {
                retry_after_ms: None,
                ..
            })
        ));
        match map(400, BAD) {
            AdapterError::Upstream(e) => {
                assert_eq!(e.status, 400);
                assert!(!e.retryable);
                assert!(e.message.starts_with("invalid request: message must be"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map(422, BAD),
            AdapterError::Upstream(UpstreamError {
                status: 400,
                retryable: false,
                ..
            })
        ));
        match map(500, SERVER) {
            AdapterError::Upstream(e) => {
                assert_eq!(e.status, 500);
                assert!(e.retryable);
                assert!(e.message.starts_with("internal server error"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map(402, br#"{"message":"Please add a payment method"}"#),
            AdapterError::Upstream(UpstreamError {
                status: 502,
                retryable: true,
                ..
            })
        ));
        assert!(matches!(
            map(404, br#"{"message":"model 'x' not found"}"#),
            AdapterError::Upstream(UpstreamError {
                status: 404,
                retryable: true,
                ..
            })
        ));
        assert!(matches!(
            map(503, b""),
            AdapterError::Upstream(UpstreamError { retryable: true, ref message, .. }) if message.contains("503")
        ));
    }
}

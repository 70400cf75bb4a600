//! Baidu Qianfan (channel types `baidu`, `qianfan`, `ernie`; base URL
//! `https://qianfan.baidubce.com/v2`).
//!
//! - URLs: the v2 OpenAI-compatible API, `{base}/chat/completions` and
//!   `{base}/embeddings` (a base URL without a path gets `/v2`).
//! - Auth: the Qianfan API key (`bce-v3/ALTAK-…/…`) as a bearer token; the
//!   channel option `appid` is sent as the `appid` header. Legacy
//!   `access_token`s (from an AK/SK OAuth exchange) and AK/SK request
//!   signing are not supported: a key given as `access_token:…` is refused
//!   as a credential error rather than sent where it cannot work.
//! - Chat bodies pass through (tools, `response_format`, `stream_options`,
//!   Qianfan's own `web_search` and the like); `reasoning_content` (ERNIE X1,
//!   DeepSeek R1) passes back.
//! - Errors: v2 `{"error":{"code","message","type"},"id"}` —
//!   `invalid_iam_token` / `IAMCertificationFailed` / type `access_denied`
//!   → credentials; `rpm_rate_limit_exceeded` / `tpm_rate_limit_exceeded` /
//!   type `rate_limit_exceeded` → rate limit — and the legacy
//!   `{"error_code","error_msg"}` (also seen inside 200 answers): 4, 17,
//!   18, 19, 336501, 336502 → rate limit; 6, 13, 14, 110, 111 → credentials;
//!   336000, 336100 → retryable 5xx; other 336xxx → 400.

use serde_json::Value;
use transit_adapter_sdk::prelude::*;

use crate::{Provider, bearer, fail, has_path};

/// The URL of `path` under a Qianfan base URL.
pub fn url(base_url: &str, path: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if has_path(base) {
        format!("{base}/{path}")
    } else {
        format!("{base}/v2/{path}")
    }
}

/// Bearer key and the optional `appid` header.
pub fn headers(call: &Call) -> Result<Vec<(String, String)>, AdapterError> {
    let key = call.channel.api_key.trim();
    if key.starts_with("access_token:") {
        return Err(AdapterError::Auth(
            "legacy Qianfan access tokens are not supported: give the channel a v2 API key (bce-v3/...)"
                .into(),
        ));
    }
    let mut headers = vec![bearer(key)];
    if let Some(appid) = call
        .channel
        .option("appid")
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        headers.push(("appid".to_owned(), appid.to_owned()));
    }
    Ok(headers)
}

/// Classify a Qianfan error answer (v2 or legacy shape).
pub fn map_error(response: &UpstreamResponse) -> AdapterError {
    let body = fail::body_json(response);
    let error = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .filter(|e| e.is_object());
    if let Some(error) = error {
        let code = fail::code_text(error.get("code"));
        let kind = error
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let message =
            fail::text(error.get("message")).unwrap_or_else(|| fail::fallback_message(response));
        return match code.as_deref().unwrap_or_default() {
            "invalid_iam_token" | "IAMCertificationFailed" | "invalid_api_key" => {
                fail::auth(Provider::Baidu, code.as_deref(), &message)
            }
            _ if kind == "access_denied" => fail::auth(Provider::Baidu, code.as_deref(), &message),
            "rpm_rate_limit_exceeded" | "tpm_rate_limit_exceeded" => {
                fail::rate_limited(response, message)
            }
            _ if kind == "rate_limit_exceeded" => fail::rate_limited(response, message),
            _ => fail::by_status(response, message, code),
        };
    }
    let legacy = body
        .as_ref()
        .and_then(|b| b.get("error_code"))
        .and_then(Value::as_u64);
    let message = body
        .as_ref()
        .and_then(|b| fail::text(b.get("error_msg")))
        .unwrap_or_else(|| fail::fallback_message(response));
    let code = legacy.map(|c| c.to_string());
    match legacy {
        Some(4 | 17 | 18 | 19 | 336501 | 336502) => fail::rate_limited(response, message),
        Some(6 | 13 | 14 | 110 | 111) => fail::auth(Provider::Baidu, code.as_deref(), &message),
        Some(336000 | 336100) => fail::upstream(
            if response.status >= 500 {
                response.status
            } else {
                503
            },
            true,
            message,
            code,
        ),
        Some(336001..=336999) => fail::upstream(400, false, message, code),
        _ => fail::by_status(response, message, code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::{CompatStream, OpenAiCompat};
    use transit_adapter_sdk::testing::{response, sse_events};

    const REQUEST: &[u8] = include_bytes!("../fixtures/chat_request_tools.json");
    const KEY: &str = "bce-v3/ALTAK-abc123/0f1e2d3c4b5a";

    fn baidu_call(stream: bool) -> Call {
        let mut c = call(
            "qianfan",
            "chat.completions",
            "ernie-4.5-turbo-128k",
            stream,
        );
        c.channel.base_url = "https://qianfan.baidubce.com/v2".into();
        c.channel.api_key = KEY.into();
        c
    }

    #[test]
    fn requests_use_v2_with_bearer_and_appid() {
        let mut c = baidu_call(false);
        c.channel.options = vec![("appid".into(), "app-123".into())];
        let req = OpenAiCompat::prepare_request(&c, REQUEST).unwrap();
        assert_eq!(req.url, "https://qianfan.baidubce.com/v2/chat/completions");
        assert_eq!(
            header(&req, "authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(header(&req, "appid"), Some("app-123"));
        let sent = body(&req);
        assert_eq!(sent["model"], "ernie-4.5-turbo-128k");
        assert_eq!(sent["response_format"]["type"], "json_object");
        assert_eq!(
            url("https://qianfan.baidubce.com", "embeddings"),
            "https://qianfan.baidubce.com/v2/embeddings"
        );
        c.channel.api_key = "access_token:24.abc".into();
        assert!(matches!(
            OpenAiCompat::prepare_request(&c, REQUEST),
            Err(AdapterError::Auth(_))
        ));
    }

    #[test]
    fn responses_reasoning_and_streams() {
        let c = baidu_call(false);
        let fixture = include_bytes!("../fixtures/baidu/chat_response.json");
        let t = OpenAiCompat::parse_response(&c, &response(200, fixture)).unwrap();
        assert_eq!(t.body, fixture.to_vec());
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens),
            (4, 9, 2)
        );
        let t = OpenAiCompat::parse_response(
            &c,
            &response(
                200,
                include_bytes!("../fixtures/baidu/chat_response_reasoning.json"),
            ),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["reasoning_content"],
            "2 plus 2 is 4."
        );
        assert_eq!(t.usage.unwrap().reasoning_tokens, 14);
        let t = OpenAiCompat::parse_response(
            &c,
            &response(
                200,
                include_bytes!("../fixtures/baidu/chat_response_tools.json"),
            ),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"location\":\"Paris\"}"
        );

        let mut c = baidu_call(true);
        c.include_usage = true;
        let mut s = CompatStream::new(c);
        let batch = s
            .push(sse_events(include_str!(
                "../fixtures/baidu/chat_stream.sse"
            )))
            .unwrap();
        let chunks = chunks(&batch);
        assert_eq!(chunks.len(), 4);
        assert_eq!(delta_text(&chunks, "content"), "Hello there!");
        assert_eq!(chunks[3]["usage"]["total_tokens"], 8);
        assert_eq!(batch.usage, Some(Usage::tokens(5, 3)));
    }

    #[test]
    fn v2_and_legacy_errors_are_mapped() {
        let c = baidu_call(false);
        let map = |status: u16, body: &[u8]| OpenAiCompat::map_error(&c, &response(status, body));
        assert!(matches!(
            map(401, include_bytes!("../fixtures/baidu/error_v2_iam.json")),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            map(429, include_bytes!("../fixtures/baidu/error_v2_rpm.json")),
            AdapterError::RateLimited(_)
        ));
        assert!(matches!(
            map(400, include_bytes!("../fixtures/baidu/error_v2_param.json")),
            AdapterError::Upstream(e) if e.status == 400 && !e.retryable
        ));
        assert!(matches!(
            map(
                200,
                include_bytes!("../fixtures/baidu/error_legacy_336501.json")
            ),
            AdapterError::RateLimited(_)
        ));
        assert!(matches!(
            map(
                200,
                include_bytes!("../fixtures/baidu/error_legacy_18.json")
            ),
            AdapterError::RateLimited(_)
        ));
        assert!(matches!(
            map(
                200,
                include_bytes!("../fixtures/baidu/error_legacy_110.json")
            ),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            map(
                200,
                include_bytes!("../fixtures/baidu/error_legacy_111.json")
            ),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            map(200, include_bytes!("../fixtures/baidu/error_legacy_336100.json")),
            AdapterError::Upstream(e) if e.retryable && e.status == 503
        ));
        // A legacy error inside a 200 answer is not a success.
        assert!(matches!(
            OpenAiCompat::parse_response(
                &c,
                &response(
                    200,
                    include_bytes!("../fixtures/baidu/error_legacy_336501.json")
                )
            ),
            Err(AdapterError::RateLimited(_))
        ));
        let mut s = CompatStream::new(baidu_call(true));
        assert!(
            s.push(sse_events(
                "data: {\"error_code\":336501,\"error_msg\":\"Rpm limit exceeded\"}\n\n"
            ))
            .is_err()
        );
    }
}

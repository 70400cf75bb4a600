//! Cloudflare Workers AI (channel types `cloudflare`, `workers-ai`; base URL
//! `https://api.cloudflare.com/client/v4`).
//!
//! - URLs: the OpenAI-compatible endpoints under the account,
//!   `{base}/accounts/{account}/ai/v1/chat/completions` and `.../embeddings`.
//!   The account comes from the channel option `account_id`, or from a key
//!   given as `ACCOUNT_ID|TOKEN`. A base URL that already names the account
//!   (`…/accounts/{id}` or `…/accounts/{id}/ai/v1`) is used as it is; one
//!   without a path gets `/client/v4`.
//! - Auth: the API token as a bearer token.
//! - Chat: `max_completion_tokens` becomes `max_tokens`; the rest (tools,
//!   `response_format` JSON mode) passes through. A success answer wrapped in
//!   Cloudflare's `{"result": …, "success": true}` envelope is unwrapped.
//! - Errors: Cloudflare's envelope `{"success":false,"errors":[{"code",
//!   "message"}]}` (or Workers AI's `{"error":{...}}`): 10000 / 9109
//!   (authentication), 7003 (the account in the path is not one the token
//!   reaches), 3023 / 3041 / 5016 / 5018 (account not allowed) →
//!   credentials; 5007 / 3042 (no such model) → 404 `model_not_found`;
//!   3036 (daily free allocation used up) and 3040 (out of capacity) → rate
//!   limit; 3007 / 3008 → 408 retryable; 3006 → 413.

use serde_json::{Map, Value};
use transit_adapter_sdk::prelude::*;

use transit_adapter_sdk::url::segment;

use crate::{Provider, bearer, fail, has_path, max_tokens_from_completion};

/// `(account id, API token)` of a call.
fn credentials(call: &Call) -> (Option<String>, String) {
    let key = call.channel.api_key.trim();
    let (key_account, token) = match key.split_once('|') {
        Some((account, token)) => (Some(account.trim()), token.trim()),
        None => (None, key),
    };
    let account = call
        .channel
        .option("account_id")
        .or_else(|| call.channel.option("account"))
        .map(str::trim)
        .or(key_account)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    (account, token.to_owned())
}

/// The URL of `path` for a call.
pub fn url(call: &Call, path: &str) -> Result<String, AdapterError> {
    let base = call.channel.base_url.trim_end_matches('/');
    if base.contains("/accounts/") {
        let base = base.strip_suffix("/ai/v1").unwrap_or(base);
        return Ok(format!("{base}/ai/v1/{path}"));
    }
    let (account, _) = credentials(call);
    let account = account.ok_or_else(|| {
        AdapterError::Auth(
            "Cloudflare channels need the channel option account_id, or a key ACCOUNT_ID|TOKEN"
                .into(),
        )
    })?;
    let base = if has_path(base) {
        base.to_owned()
    } else {
        format!("{base}/client/v4")
    };
    Ok(format!(
        "{base}/accounts/{}/ai/v1/{path}",
        segment("Cloudflare account id", &account)?
    ))
}

/// The bearer token.
pub fn headers(call: &Call) -> Result<Vec<(String, String)>, AdapterError> {
    let (_, token) = credentials(call);
    if token.is_empty() {
        return Err(AdapterError::Auth(
            "the Cloudflare channel has no API token".into(),
        ));
    }
    Ok(vec![bearer(&token)])
}

/// Workers AI's chat rules.
pub fn adjust_chat(request: &mut Map<String, Value>) {
    max_tokens_from_completion(request);
}

/// The `result` of a successful answer wrapped in Cloudflare's envelope.
pub fn unwrap_envelope(value: &mut Value) -> Option<Value> {
    let object = value.as_object_mut()?;
    if object.contains_key("choices") || object.contains_key("data") {
        return None;
    }
    if object.get("success") != Some(&Value::Bool(true)) {
        return None;
    }
    object.remove("result").filter(Value::is_object)
}

/// Classify a Cloudflare error answer.
pub fn map_error(response: &UpstreamResponse) -> AdapterError {
    let body = fail::body_json(response);
    let first = body
        .as_ref()
        .and_then(|b| b.get("errors"))
        .and_then(Value::as_array)
        .and_then(|e| e.first());
    let (code, message) = match (first, body.as_ref().and_then(|b| b.get("error"))) {
        (Some(e), _) => (fail::code_text(e.get("code")), fail::text(e.get("message"))),
        (None, Some(Value::String(s))) => (None, fail::text(Some(&Value::String(s.clone())))),
        (None, Some(e)) => (fail::code_text(e.get("code")), fail::text(e.get("message"))),
        (None, None) => (None, None),
    };
    let message = message.unwrap_or_else(|| fail::fallback_message(response));
    let number = code.as_deref().and_then(|c| c.parse::<u32>().ok());
    match number {
        Some(10000 | 9109 | 7003 | 3023 | 3041 | 5016 | 5018) => {
            fail::auth(Provider::Cloudflare, code.as_deref(), &message)
        }
        Some(5007 | 3042) => {
            fail::upstream(404, false, message, Some("model_not_found".to_owned()))
        }
        Some(3036 | 3040) => fail::rate_limited(response, message),
        Some(3007 | 3008) => fail::upstream(408, true, message, code),
        Some(3006) => fail::upstream(413, false, message, code),
        _ if message.contains("daily free allocation") => fail::rate_limited(response, message),
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
    const ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";

    fn cf_call(stream: bool) -> Call {
        let mut c = call(
            "cloudflare",
            "chat.completions",
            "@cf/meta/llama-3.1-8b-instruct",
            stream,
        );
        c.channel.base_url = "https://api.cloudflare.com/client/v4".into();
        c.channel.api_key = format!("{ACCOUNT}|cf-token");
        c
    }

    #[test]
    fn account_comes_from_the_key_or_the_option() {
        let c = cf_call(false);
        let req = OpenAiCompat::prepare_request(&c, REQUEST).unwrap();
        assert_eq!(
            req.url,
            format!(
                "https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/v1/chat/completions"
            )
        );
        assert_eq!(header(&req, "authorization"), Some("Bearer cf-token"));
        let sent = body(&req);
        assert_eq!(sent["model"], "@cf/meta/llama-3.1-8b-instruct");
        assert_eq!(sent["max_tokens"], 512);
        assert_eq!(sent["tools"][0]["type"], "function");

        let mut c = cf_call(false);
        c.endpoint = "embeddings".into();
        c.channel.api_key = "cf-token".into();
        c.channel.options = vec![("account_id".into(), "acc-2".into())];
        c.channel.base_url = "https://api.cloudflare.com".into();
        let req = OpenAiCompat::prepare_request(&c, br#"{"model":"m","input":"hi"}"#).unwrap();
        assert_eq!(
            req.url,
            "https://api.cloudflare.com/client/v4/accounts/acc-2/ai/v1/embeddings"
        );
        assert_eq!(header(&req, "authorization"), Some("Bearer cf-token"));

        c.channel.base_url = "https://gw.example/client/v4/accounts/acc-3/ai/v1".into();
        let req = OpenAiCompat::prepare_request(&c, br#"{"model":"m","input":"hi"}"#).unwrap();
        assert_eq!(
            req.url,
            "https://gw.example/client/v4/accounts/acc-3/ai/v1/embeddings"
        );

        c.channel.base_url = "https://api.cloudflare.com/client/v4".into();
        c.channel.options.clear();
        assert!(matches!(
            OpenAiCompat::prepare_request(&c, br#"{"model":"m","input":"hi"}"#),
            Err(AdapterError::Auth(_))
        ));
    }

    #[test]
    fn responses_streams_and_envelopes() {
        let c = cf_call(false);
        let t = OpenAiCompat::parse_response(
            &c,
            &response(
                200,
                include_bytes!("../fixtures/cloudflare/chat_response.json"),
            ),
        )
        .unwrap();
        assert_eq!(t.usage, Some(Usage::tokens(14, 10)));
        let t = OpenAiCompat::parse_response(
            &c,
            &response(
                200,
                include_bytes!("../fixtures/cloudflare/chat_response_tools.json"),
            ),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let t = OpenAiCompat::parse_response(
            &c,
            &response(
                200,
                include_bytes!("../fixtures/cloudflare/enveloped_response.json"),
            ),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Hi!");
        assert_eq!(t.usage, Some(Usage::tokens(7, 2)));
        let mut e = cf_call(false);
        e.endpoint = "embeddings".into();
        let t = OpenAiCompat::parse_response(
            &e,
            &response(
                200,
                include_bytes!("../fixtures/cloudflare/embeddings_response.json"),
            ),
        )
        .unwrap();
        assert_eq!(t.usage, Some(Usage::tokens(5, 0)));

        let mut s = CompatStream::new(cf_call(true));
        let batch = s
            .push(sse_events(include_str!(
                "../fixtures/cloudflare/chat_stream.sse"
            )))
            .unwrap();
        let chunks = chunks(&batch);
        assert_eq!(chunks.len(), 3);
        assert_eq!(delta_text(&chunks, "content"), "Hello there!");
        assert_eq!(batch.usage, Some(Usage::tokens(12, 3)));
    }

    #[test]
    fn envelope_errors_are_mapped() {
        let c = cf_call(false);
        let map = |status: u16, body: &[u8]| OpenAiCompat::map_error(&c, &response(status, body));
        assert!(matches!(
            map(
                401,
                include_bytes!("../fixtures/cloudflare/error_auth.json")
            ),
            AdapterError::Auth(_)
        ));
        assert!(
            matches!(map(404, include_bytes!("../fixtures/cloudflare/error_route.json")), AdapterError::Auth(m) if m.contains("7003"))
        );
        assert!(matches!(
            map(400, include_bytes!("../fixtures/cloudflare/error_no_model.json")),
            AdapterError::Upstream(e) if e.status == 404 && e.code.as_deref() == Some("model_not_found")
        ));
        assert!(matches!(
            map(
                429,
                include_bytes!("../fixtures/cloudflare/error_capacity.json")
            ),
            AdapterError::RateLimited(_)
        ));
        assert!(matches!(
            map(
                429,
                include_bytes!("../fixtures/cloudflare/error_daily_limit.json")
            ),
            AdapterError::RateLimited(_)
        ));
        assert!(matches!(map(500, b"<html>oops</html>"), AdapterError::Upstream(e) if e.retryable));
        // `success: false` in a 200.
        assert!(matches!(
            OpenAiCompat::parse_response(
                &c,
                &response(
                    200,
                    include_bytes!("../fixtures/cloudflare/error_capacity.json")
                )
            ),
            Err(AdapterError::RateLimited(_))
        ));
    }
}

//! Zhipu AI / BigModel (channel types `zhipu`, `glm`; base URL
//! `https://open.bigmodel.cn/api/paas/v4`, or `https://api.z.ai/api/paas/v4`
//! for Z.ai).
//!
//! - URLs: `{base}/chat/completions`, `{base}/embeddings` (a base URL
//!   without a path gets `/api/paas/v4`).
//! - Auth: Zhipu keys have the form `{id}.{secret}`. Such a key is turned
//!   into a short-lived HS256 JWT per request — header
//!   `{"alg":"HS256","sign_type":"SIGN"}`, payload `{"api_key": id,
//!   "exp": ms, "timestamp": ms}` signed with the secret — sent as a bearer
//!   token; any other key goes as it is. The channel option `auth` forces
//!   one: `jwt`, or `key` (the key as the bearer token, which BigModel also
//!   accepts).
//! - Chat: `tool_choice` only supports `auto` upstream: `none` drops the
//!   tools, `required` or a named function falls back to `auto`.
//!   OpenAI's `reasoning_effort` becomes GLM-4.5's `thinking`
//!   (`none`/`minimal` disable it) unless the client sent `thinking`;
//!   `max_completion_tokens` becomes `max_tokens`; `stream_options` is not
//!   sent (usage comes in the last chunk anyway). `reasoning_content` passes
//!   through; finish reason `sensitive` becomes `content_filter`.
//! - Errors: `{"error":{"code":"1211","message":...}}`: 1000–1004 (token
//!   missing, invalid, expired) and account states 1110–1112, 1120, 1121,
//!   1220 → credentials; 1113 (arrears) → out of balance; 1211 → 404
//!   `model_not_found`; 1301 → `content_filter`; 1302/1303/1304/1305 → rate
//!   limit (429); 1210–1215, 1261 → 400; 500, 1230, 1234 → retryable 5xx.

use std::time::{SystemTime, UNIX_EPOCH};

// The tests decode the minted tokens with an independent base64.
#[cfg(test)]
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;
use serde_json::{Map, Value};
use transit_adapter_sdk::crypto::jwt_hs256;
use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

use crate::{Provider, bearer, fail, has_path, max_tokens_from_completion};

/// How long a minted token is valid, in milliseconds.
pub const TOKEN_TTL_MS: u64 = 5 * 60 * 1000;

/// The URL of `path` under a Zhipu base URL.
pub fn url(base_url: &str, path: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if has_path(base) {
        format!("{base}/{path}")
    } else {
        format!("{base}/api/paas/v4/{path}")
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    api_key: &'a str,
    exp: u64,
    timestamp: u64,
}

/// The JWT for key `id` with `secret`, minted at `now_ms`.
pub fn mint_token(id: &str, secret: &str, now_ms: u64) -> Result<String, AdapterError> {
    let claims = Claims {
        api_key: id,
        exp: now_ms.saturating_add(TOKEN_TTL_MS),
        timestamp: now_ms,
    };
    jwt_hs256(
        br#"{"alg":"HS256","sign_type":"SIGN"}"#,
        &json::to_vec(&claims)?,
        secret.as_bytes(),
    )
}

/// `id.secret`, if the key has that form.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.split_once('.')?;
    (!id.is_empty() && !secret.is_empty() && !secret.contains('.')).then_some((id, secret))
}

/// The bearer token of a call: a fresh JWT, or the key itself.
fn token(call: &Call) -> Result<String, AdapterError> {
    let key = call.channel.api_key.trim();
    let mode = call
        .channel
        .option("auth")
        .map(|m| m.trim().to_ascii_lowercase());
    let jwt = match mode.as_deref() {
        Some("key" | "bearer" | "api-key" | "api_key") => None,
        Some("jwt") => Some(split_key(key).ok_or_else(|| {
            AdapterError::Auth(
                "the channel option auth=jwt needs a Zhipu key of the form {id}.{secret}".into(),
            )
        })?),
        _ => split_key(key),
    };
    let Some((id, secret)) = jwt else {
        if key.is_empty() {
            return Err(AdapterError::Auth(
                "the Zhipu channel has an empty key".into(),
            ));
        }
        return Ok(key.to_owned());
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| errors::internal("the clock reads before 1970"))?
        .as_millis();
    mint_token(id, secret, u64::try_from(now_ms).unwrap_or(u64::MAX))
}

/// The bearer header.
pub fn headers(call: &Call) -> Result<Vec<(String, String)>, AdapterError> {
    Ok(vec![bearer(&token(call)?)])
}

/// Zhipu's chat rules (see the module docs).
pub fn adjust_chat(request: &mut Map<String, Value>) {
    max_tokens_from_completion(request);
    match request.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "auto" => {}
        Some(Value::String(s)) if s == "none" => {
            request.remove("tools");
            request.remove("tool_choice");
        }
        Some(other) => {
            transit_adapter_sdk::log(
                transit_adapter_sdk::LogLevel::Debug,
                &format!("zhipu supports only tool_choice auto; {other} sent as auto"),
            );
            request.remove("tool_choice");
        }
    }
    if let Some(effort) = request.remove("reasoning_effort")
        && !request.contains_key("thinking")
    {
        let kind = match effort.as_str() {
            Some("none" | "minimal") => "disabled",
            _ => "enabled",
        };
        request.insert("thinking".to_owned(), serde_json::json!({ "type": kind }));
    }
}

/// Classify a Zhipu error answer.
pub fn map_error(response: &UpstreamResponse) -> AdapterError {
    let body = fail::body_json(response);
    let error = body.as_ref().and_then(|b| b.get("error"));
    let code = fail::code_text(error.and_then(|e| e.get("code")));
    let message = fail::text(error.and_then(|e| e.get("message")))
        .unwrap_or_else(|| fail::fallback_message(response));
    let number = code.as_deref().and_then(|c| c.parse::<u32>().ok());
    match number {
        Some(1000..=1004 | 1110..=1112 | 1120 | 1121 | 1220) => {
            fail::auth(Provider::Zhipu, code.as_deref(), &message)
        }
        Some(1113) => fail::balance(Provider::Zhipu),
        Some(1211) => fail::upstream(404, false, message, Some("model_not_found".to_owned())),
        Some(1301) => fail::content_filter(message),
        Some(1302..=1305) => fail::rate_limited(response, message),
        Some(1210 | 1212..=1215 | 1261) => fail::upstream(400, false, message, code),
        Some(500 | 1230 | 1234) => fail::upstream(
            if response.status >= 500 {
                response.status
            } else {
                500
            },
            true,
            message,
            code,
        ),
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

    fn zhipu_call(stream: bool) -> Call {
        let mut c = call("zhipu", "chat.completions", "glm-4.5", stream);
        c.channel.base_url = "https://open.bigmodel.cn/api/paas/v4".into();
        c.channel.api_key = "zp-id.zp-secret".into();
        c
    }

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn token_matches_an_independent_hs256() {
        // Computed outside Rust (Python's hmac + hashlib) for these inputs.
        let token = mint_token("zp-id", "zp-secret", 1_700_000_000_000).unwrap();
        assert_eq!(
            token,
            "eyJhbGciOiJIUzI1NiIsInNpZ25fdHlwZSI6IlNJR04ifQ.eyJhcGlfa2V5IjoienAtaWQiLCJleHAiOjE3MDAwMDAzMDAwMDAsInRpbWVzdGFtcCI6MTcwMDAwMDAwMDAwMH0.qHELj87zACo9CvCtZtCp-RAH1UBvf24nBuwGN3R1f9g"
        );
    }

    #[test]
    fn requests_carry_a_fresh_jwt_or_the_plain_key() {
        let c = zhipu_call(false);
        let req = OpenAiCompat::prepare_request(&c, REQUEST).unwrap();
        assert_eq!(
            req.url,
            "https://open.bigmodel.cn/api/paas/v4/chat/completions"
        );
        let auth = header(&req, "authorization").unwrap();
        let token = auth.strip_prefix("Bearer ").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"alg": "HS256", "sign_type": "SIGN"})
        );
        let claims = decode(parts[1]);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let (exp, ts) = (
            claims["exp"].as_u64().unwrap(),
            claims["timestamp"].as_u64().unwrap(),
        );
        assert_eq!(claims["api_key"], "zp-id");
        assert!(ts <= now && now - ts < 60_000 && exp - ts == TOKEN_TTL_MS);
        assert!(!token.contains("zp-secret"));

        let mut plain = zhipu_call(false);
        plain.channel.options = vec![("auth".into(), "key".into())];
        let req = OpenAiCompat::prepare_request(&plain, REQUEST).unwrap();
        assert_eq!(
            header(&req, "authorization"),
            Some("Bearer zp-id.zp-secret")
        );
        plain.channel.api_key = "no-dot-key".into();
        plain.channel.options.clear();
        let req = OpenAiCompat::prepare_request(&plain, REQUEST).unwrap();
        assert_eq!(header(&req, "authorization"), Some("Bearer no-dot-key"));
        plain.channel.options = vec![("auth".into(), "jwt".into())];
        assert!(matches!(
            OpenAiCompat::prepare_request(&plain, REQUEST),
            Err(AdapterError::Auth(_))
        ));
    }

    #[test]
    fn base_without_path_gets_the_v4_path() {
        assert_eq!(
            url("https://open.bigmodel.cn", "embeddings"),
            "https://open.bigmodel.cn/api/paas/v4/embeddings"
        );
    }

    #[test]
    fn chat_body_follows_zhipu_rules() {
        let c = zhipu_call(false);
        let sent = body(&OpenAiCompat::prepare_request(&c, REQUEST).unwrap());
        assert_eq!(sent["model"], "glm-4.5");
        assert_eq!(sent["max_tokens"], 512);
        assert!(sent.get("max_completion_tokens").is_none());
        assert_eq!(sent["tool_choice"], "auto");
        assert_eq!(sent["response_format"]["type"], "json_object");

        let with = |extra: Value| {
            let mut req: Value = serde_json::from_slice(REQUEST).unwrap();
            for (k, v) in extra.as_object().unwrap() {
                req[k] = v.clone();
            }
            body(&OpenAiCompat::prepare_request(&c, &serde_json::to_vec(&req).unwrap()).unwrap())
        };
        let none = with(serde_json::json!({"tool_choice": "none"}));
        assert!(none.get("tools").is_none() && none.get("tool_choice").is_none());
        let named = with(
            serde_json::json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        );
        assert!(named.get("tool_choice").is_none());
        assert_eq!(named["tools"][0]["function"]["name"], "get_weather");
        let fast = with(serde_json::json!({"reasoning_effort": "none"}));
        assert_eq!(fast["thinking"], serde_json::json!({"type": "disabled"}));
        assert!(fast.get("reasoning_effort").is_none());
        let deep = with(serde_json::json!({"reasoning_effort": "high"}));
        assert_eq!(deep["thinking"]["type"], "enabled");
        let explicit =
            with(serde_json::json!({"reasoning_effort": "high", "thinking": {"type": "disabled"}}));
        assert_eq!(explicit["thinking"]["type"], "disabled");
    }

    #[test]
    fn responses_keep_reasoning_and_usage() {
        let c = zhipu_call(false);
        let t = OpenAiCompat::parse_response(
            &c,
            &response(200, include_bytes!("../fixtures/zhipu/chat_response.json")),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            v["choices"][0]["message"]["reasoning_content"],
            "The user greets me; a short friendly answer fits."
        );
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens),
            (9, 42, 4)
        );

        let t = OpenAiCompat::parse_response(
            &c,
            &response(
                200,
                include_bytes!("../fixtures/zhipu/chat_response_tools.json"),
            ),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
    }

    #[test]
    fn stream_moves_usage_into_its_own_chunk() {
        let transcript = include_str!("../fixtures/zhipu/chat_stream.sse");
        let mut quiet = CompatStream::new(zhipu_call(true));
        let batch = quiet.push(sse_events(transcript)).unwrap();
        let chunks = chunks(&batch);
        assert!(batch.done);
        assert_eq!(chunks.len(), 5);
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk" && c.get("usage").is_none())
        );
        assert_eq!(
            delta_text(&chunks, "reasoning_content"),
            "The user says hi."
        );
        assert_eq!(delta_text(&chunks, "content"), "Hello there!");
        let u = batch.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens),
            (8, 12, 2)
        );

        let mut c = zhipu_call(true);
        c.include_usage = true;
        let mut loud = CompatStream::new(c);
        let chunks = chunks_of(loud.push(sse_events(transcript)).unwrap());
        assert_eq!(chunks.len(), 6);
        let last = &chunks[5];
        assert_eq!(last["choices"], serde_json::json!([]));
        assert_eq!(last["usage"]["total_tokens"], 20);
        assert_eq!(last["id"], "20250731111000d1e2f3a4b5c6d7e8f");
        assert_eq!(last["model"], "glm-4.5");
    }

    fn chunks_of(batch: transit_adapter_sdk::ChunkBatch) -> Vec<Value> {
        chunks(&batch)
    }

    #[test]
    fn sensitive_stops_are_content_filter() {
        let mut s = CompatStream::new(zhipu_call(true));
        let batch = s
            .push(sse_events(include_str!(
                "../fixtures/zhipu/chat_stream_sensitive.sse"
            )))
            .unwrap();
        let chunks = chunks(&batch);
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn business_codes_are_mapped() {
        let c = zhipu_call(false);
        let map = |status: u16, body: &[u8]| OpenAiCompat::map_error(&c, &response(status, body));
        assert!(matches!(
            map(400, include_bytes!("../fixtures/zhipu/error_1211.json")),
            AdapterError::Upstream(e) if e.status == 404 && e.code.as_deref() == Some("model_not_found")
        ));
        assert!(matches!(
            map(429, include_bytes!("../fixtures/zhipu/error_1113.json")),
            AdapterError::Upstream(e) if e.retryable && e.code.as_deref() == Some("upstream_insufficient_balance")
        ));
        assert!(matches!(
            map(429, include_bytes!("../fixtures/zhipu/error_1302.json")),
            AdapterError::RateLimited(_)
        ));
        assert!(matches!(
            map(400, include_bytes!("../fixtures/zhipu/error_1301.json")),
            AdapterError::Upstream(e) if e.code.as_deref() == Some("content_filter")
        ));
        assert!(matches!(
            map(401, include_bytes!("../fixtures/zhipu/error_1002.json")),
            AdapterError::Auth(_)
        ));
        // An error in a 200 body is caught too.
        assert!(matches!(
            OpenAiCompat::parse_response(
                &c,
                &response(200, include_bytes!("../fixtures/zhipu/error_1302.json"))
            ),
            Err(AdapterError::RateLimited(_))
        ));
        let mut s = CompatStream::new(zhipu_call(true));
        assert!(matches!(
            s.push(sse_events(
                "data: {\"error\":{\"code\":\"1234\",\"message\":\"网络错误\"}}\n\n"
            )),
            Err(AdapterError::Upstream(e)) if !e.retryable
        ));
    }
}

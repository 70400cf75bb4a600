//! Alibaba Cloud Model Studio / DashScope (channel types `ali`, `dashscope`,
//! `qwen`; base URL `https://dashscope.aliyuncs.com`, or
//! `https://dashscope-intl.aliyuncs.com` outside China).
//!
//! - Chat and embeddings through the OpenAI-compatible mode:
//!   `{base}/compatible-mode/v1/chat/completions` and `.../embeddings`
//!   (a base URL that already ends in `/compatible-mode/v1` or `/api/v1` is
//!   accepted). Bearer key; the channel option `workspace` becomes
//!   `X-DashScope-WorkSpace`.
//! - Qwen3 thinking: `enable_thinking` passes through and
//!   `reasoning_content` comes back in messages and deltas. OpenAI's
//!   `reasoning_effort` becomes `enable_thinking` (`none`/`minimal` turn it
//!   off) when the client did not set it. The open Qwen3 models think by
//!   default but refuse thinking on non-streamed calls, so a non-streamed
//!   call to a `qwen3…` model (not a `…thinking…` one) that says nothing
//!   about thinking is sent with `enable_thinking: false`.
//!   `max_completion_tokens` becomes `max_tokens`.
//! - Rerank through the native API,
//!   `{base}/api/v1/services/rerank/text-rerank/text-rerank`: the client's
//!   Jina/Cohere-shaped `{model, query, documents, top_n, return_documents}`
//!   becomes `{model, input: {query, documents}, parameters: {top_n,
//!   return_documents, instruct}}`, and `{output: {results}, usage:
//!   {total_tokens}, request_id}` comes back as `{id, model, results,
//!   usage}`; billed by `total_tokens`.
//! - Errors: compatible mode answers `{"error":{"code","message","type"}}`,
//!   the native API `{"code","message","request_id"}`: `InvalidApiKey` /
//!   `invalid_api_key` and `AccessDenied*` → credentials; `Arrearage` →
//!   out of balance; `Throttling*` / `limit_requests` → rate limit;
//!   `DataInspectionFailed` / `data_inspection_failed` → `content_filter`;
//!   `ModelNotFound` / `model_not_found` → 404; `InternalError*` → 5xx
//!   retryable.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

use crate::{Provider, bearer, fail, max_tokens_from_completion};

/// The DashScope root of a base URL.
fn root(base_url: &str) -> &str {
    let base = base_url.trim_end_matches('/');
    ["/compatible-mode/v1", "/api/v1"]
        .iter()
        .find_map(|suffix| base.strip_suffix(suffix))
        .unwrap_or(base)
}

/// An OpenAI-compatible-mode URL.
pub fn compatible_url(base_url: &str, path: &str) -> String {
    format!("{}/compatible-mode/v1/{path}", root(base_url))
}

/// A native API URL.
pub fn native_url(base_url: &str, path: &str) -> String {
    format!("{}/api/v1/{path}", root(base_url))
}

/// Bearer key, and the workspace header when the channel names one.
pub fn headers(call: &Call) -> Vec<(String, String)> {
    let mut headers = vec![bearer(&call.channel.api_key)];
    if let Some(ws) = call
        .channel
        .option("workspace")
        .filter(|w| !w.trim().is_empty())
    {
        headers.push(("X-DashScope-WorkSpace".to_owned(), ws.trim().to_owned()));
    }
    headers
}

/// DashScope's chat rules (see the module docs).
pub fn adjust_chat(call: &Call, request: &mut Map<String, Value>) {
    max_tokens_from_completion(request);
    if let Some(effort) = request.remove("reasoning_effort")
        && !request.contains_key("enable_thinking")
    {
        let on = !matches!(effort.as_str(), Some("none" | "minimal"));
        request.insert("enable_thinking".to_owned(), Value::Bool(on));
    }
    let model = call.model.to_ascii_lowercase();
    if !call.stream
        && !request.contains_key("enable_thinking")
        && model.starts_with("qwen3")
        && !model.contains("thinking")
    {
        request.insert("enable_thinking".to_owned(), Value::Bool(false));
    }
}

/// The native rerank request.
pub fn prepare_rerank(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
    let request = json::parse_object(body)?;
    let query = json::string(&request, "query")
        .ok_or_else(|| errors::invalid_request("`query` must be a non-empty string"))?;
    let documents = match request.get("documents") {
        Some(Value::Array(d)) if !d.is_empty() => d,
        _ => {
            return Err(errors::invalid_request(
                "`documents` must be a non-empty array",
            ));
        }
    };
    let documents = documents
        .iter()
        .map(|d| match d {
            Value::String(s) => Ok(Value::String(s.clone())),
            Value::Object(o) => o
                .get("text")
                .and_then(Value::as_str)
                .map(|t| Value::String(t.to_owned()))
                .ok_or_else(|| errors::invalid_request("each document object needs `text`")),
            _ => Err(errors::invalid_request(
                "each document must be a string or an object with `text`",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut parameters = Map::new();
    for key in ["top_n", "return_documents", "instruct"] {
        if let Some(v) = request.get(key).filter(|v| !v.is_null()) {
            parameters.insert(key.to_owned(), v.clone());
        }
    }
    let native = json!({
        "model": call.model,
        "input": {"query": query, "documents": documents},
        "parameters": parameters,
    });
    let mut headers = headers(call);
    headers.extend(call.channel.option_headers());
    Ok(UpstreamRequest::post_json(
        native_url(
            &call.channel.base_url,
            "services/rerank/text-rerank/text-rerank",
        ),
        headers,
        json::to_vec(&native)?,
    ))
}

/// The native rerank answer, in the Jina/Cohere shape clients expect.
pub fn parse_rerank(call: &Call, response: &UpstreamResponse) -> Result<Translated, AdapterError> {
    let value = json::parse_upstream(&response.body)?;
    if Provider::Ali.is_error_body(&value) {
        return Err(map_error(response));
    }
    let results = value
        .get("output")
        .and_then(|o| o.get("results"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            errors::upstream(502, true, "DashScope's rerank answer has no output.results")
        })?;
    let total = value
        .get("usage")
        .and_then(|u| u.get("total_tokens"))
        .and_then(Value::as_u64);
    let mut out = json!({
        "id": value.get("request_id").cloned().unwrap_or(Value::Null),
        "model": call.model,
        "results": results,
    });
    if let Some(total) = total {
        out["usage"] = json!({ "total_tokens": total });
    }
    Ok(Translated {
        body: json::to_vec(&out)?,
        content_type: "application/json".to_owned(),
        usage: total.map(|t| Usage::tokens(t, 0)),
    })
}

/// Classify a DashScope error answer (compatible-mode or native shape).
pub fn map_error(response: &UpstreamResponse) -> AdapterError {
    let body = fail::body_json(response);
    let (code, message) = match body.as_ref() {
        Some(b) => match b.get("error").filter(|e| e.is_object()) {
            Some(e) => (
                fail::code_text(e.get("code")).or_else(|| fail::code_text(e.get("type"))),
                fail::text(e.get("message")),
            ),
            None => (fail::code_text(b.get("code")), fail::text(b.get("message"))),
        },
        None => (None, None),
    };
    let message = message.unwrap_or_else(|| fail::fallback_message(response));
    let c = code.as_deref().unwrap_or_default();
    match c {
        "InvalidApiKey" | "invalid_api_key" => fail::auth(Provider::Ali, code.as_deref(), &message),
        _ if c.starts_with("AccessDenied") || c == "access_denied" => {
            fail::auth(Provider::Ali, code.as_deref(), &message)
        }
        "Arrearage" | "insufficient_quota" => fail::balance(Provider::Ali),
        _ if c.starts_with("Throttling") || c == "limit_requests" || c == "rate_limit_exceeded" => {
            fail::rate_limited(response, message)
        }
        _ if c.starts_with("DataInspection") || c == "data_inspection_failed" => {
            fail::content_filter(message)
        }
        "ModelNotFound" | "model_not_found" => {
            fail::upstream(404, false, message, Some("model_not_found".to_owned()))
        }
        _ if c.starts_with("InternalError") => fail::upstream(
            if response.status >= 500 {
                response.status
            } else {
                500
            },
            true,
            message,
            code,
        ),
        "RequestTimeOut" => fail::upstream(408, true, message, code),
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

    fn ali_call(endpoint: &str, model: &str, stream: bool) -> Call {
        let mut c = call("qwen", endpoint, model, stream);
        c.channel.base_url = "https://dashscope.aliyuncs.com".into();
        c
    }

    #[test]
    fn chat_goes_to_compatible_mode() {
        let c = ali_call("chat.completions", "qwen-plus", false);
        let req = OpenAiCompat::prepare_request(&c, REQUEST).unwrap();
        assert_eq!(
            req.url,
            "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions"
        );
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
        let sent = body(&req);
        assert_eq!(sent["model"], "qwen-plus");
        assert_eq!(sent["max_tokens"], 512);
        assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
        assert!(sent.get("enable_thinking").is_none());

        let mut c = ali_call("embeddings", "text-embedding-v4", false);
        c.channel.base_url = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/".into();
        c.channel.options = vec![("workspace".into(), "ws_1".into())];
        let req = OpenAiCompat::prepare_request(&c, br#"{"model":"e","input":["a","b"]}"#).unwrap();
        assert_eq!(
            req.url,
            "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/embeddings"
        );
        assert_eq!(header(&req, "X-DashScope-WorkSpace"), Some("ws_1"));
    }

    #[test]
    fn thinking_rules() {
        let plain = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let sent = |model: &str, stream: bool, body: &[u8]| {
            self::body(
                &OpenAiCompat::prepare_request(&ali_call("chat.completions", model, stream), body)
                    .unwrap(),
            )
        };
        assert_eq!(sent("qwen3-32b", false, plain)["enable_thinking"], false);
        assert!(
            sent("qwen3-32b", true, plain)
                .get("enable_thinking")
                .is_none()
        );
        assert!(
            sent("qwen3-235b-a22b-thinking-2507", false, plain)
                .get("enable_thinking")
                .is_none()
        );
        let on = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"enable_thinking":true,"thinking_budget":50}"#;
        let v = sent("qwen3-32b", true, on);
        assert_eq!(
            (v["enable_thinking"].clone(), v["thinking_budget"].clone()),
            (json!(true), json!(50))
        );
        let effort = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low"}"#;
        let v = sent("qwen-plus", true, effort);
        assert_eq!(v["enable_thinking"], true);
        assert!(v.get("reasoning_effort").is_none());
    }

    #[test]
    fn responses_and_thinking_streams_translate() {
        let c = ali_call("chat.completions", "qwen-plus", false);
        let fixture = include_bytes!("../fixtures/ali/chat_response.json");
        let t = OpenAiCompat::parse_response(&c, &response(200, fixture)).unwrap();
        assert_eq!(t.body, fixture.to_vec());
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens),
            (3019, 104, 2048)
        );
        let t = OpenAiCompat::parse_response(
            &c,
            &response(
                200,
                include_bytes!("../fixtures/ali/chat_response_tools.json"),
            ),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );

        let mut c = ali_call("chat.completions", "qwen3-32b", true);
        c.include_usage = true;
        let mut s = CompatStream::new(c);
        let batch = s
            .push(sse_events(include_str!(
                "../fixtures/ali/chat_stream_thinking.sse"
            )))
            .unwrap();
        let chunks = chunks(&batch);
        assert!(batch.done);
        assert_eq!(
            delta_text(&chunks, "reasoning_content"),
            "The user says hi."
        );
        assert_eq!(delta_text(&chunks, "content"), "Hello there!");
        assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 40);
        let u = batch.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.reasoning_tokens),
            (10, 30, 22)
        );
    }

    #[test]
    fn rerank_goes_native_and_comes_back_in_the_client_shape() {
        let c = ali_call("rerank", "gte-rerank-v2", false);
        let req = OpenAiCompat::prepare_request(
            &c,
            include_bytes!("../fixtures/ali/rerank_request.json"),
        )
        .unwrap();
        assert_eq!(
            req.url,
            "https://dashscope.aliyuncs.com/api/v1/services/rerank/text-rerank/text-rerank"
        );
        let sent = body(&req);
        assert_eq!(sent["model"], "gte-rerank-v2");
        assert_eq!(sent["input"]["query"], "What is a text rerank model");
        assert_eq!(sent["input"]["documents"].as_array().unwrap().len(), 3);
        assert!(
            sent["input"]["documents"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_string)
        );
        assert_eq!(
            sent["parameters"],
            json!({"top_n": 2, "return_documents": true})
        );
        assert!(sent.get("query").is_none());

        let t = OpenAiCompat::parse_response(
            &c,
            &response(200, include_bytes!("../fixtures/ali/rerank_response.json")),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["results"][1]["index"], 2);
        assert!(
            v["results"][0]["document"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Text rerank models")
        );
        assert_eq!(v["usage"]["total_tokens"], 79);
        assert_eq!(v["id"], "85ba5752-1900-4a22-8ec5-bb7d3f9bb07e");
        assert_eq!(t.usage, Some(Usage::tokens(79, 0)));

        for bad in [
            &br#"{"query":"q","documents":[]}"#[..],
            br#"{"documents":["a"]}"#,
            br#"{"query":"q","documents":[1]}"#,
        ] {
            assert!(matches!(
                OpenAiCompat::prepare_request(&c, bad),
                Err(AdapterError::InvalidRequest(_))
            ));
        }
        assert!(
            OpenAiCompat::parse_response(&c, &response(200, br#"{"request_id":"x"}"#)).is_err()
        );
    }

    #[test]
    fn errors_in_both_shapes_are_mapped() {
        let c = ali_call("chat.completions", "qwen-plus", false);
        let map = |status: u16, body: &[u8]| OpenAiCompat::map_error(&c, &response(status, body));
        assert!(matches!(
            map(
                401,
                include_bytes!("../fixtures/ali/error_invalid_api_key.json")
            ),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            map(
                401,
                include_bytes!("../fixtures/ali/error_compat_invalid_api_key.json")
            ),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            map(400, include_bytes!("../fixtures/ali/error_arrearage.json")),
            AdapterError::Upstream(e) if e.retryable && e.code.as_deref() == Some("upstream_insufficient_balance")
        ));
        assert!(matches!(
            map(429, include_bytes!("../fixtures/ali/error_throttling.json")),
            AdapterError::RateLimited(_)
        ));
        assert!(matches!(
            map(
                429,
                include_bytes!("../fixtures/ali/error_native_throttling.json")
            ),
            AdapterError::RateLimited(_)
        ));
        assert!(matches!(
            map(400, include_bytes!("../fixtures/ali/error_data_inspection.json")),
            AdapterError::Upstream(e) if e.code.as_deref() == Some("content_filter")
        ));
        assert!(matches!(
            map(404, include_bytes!("../fixtures/ali/error_model_not_found.json")),
            AdapterError::Upstream(e) if e.status == 404 && !e.retryable
        ));
        // A native error body in a 200 rerank answer.
        let r = ali_call("rerank", "gte-rerank-v2", false);
        assert!(matches!(
            OpenAiCompat::parse_response(
                &r,
                &response(
                    200,
                    include_bytes!("../fixtures/ali/error_invalid_api_key.json")
                )
            ),
            Err(AdapterError::Auth(_))
        ));
    }
}

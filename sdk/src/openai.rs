//! OpenAI's chat wire format, and helpers for OpenAI-compatible upstreams.
//!
//! The structs keep every field they do not name in `extra`, so a request or
//! response that passes through an adapter loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    AdapterError, Call, ChunkBatch, Event, StreamTranslator, Translated, UpstreamRequest,
    UpstreamResponse, Usage, errors, json,
};

/// A chat completion request (`POST /v1/chat/completions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message. `content` is a string or a list of content parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// The message's text: the string content, or its text parts joined.
    pub fn text(&self) -> String {
        match &self.content {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: String,
}

fn function_type() -> String {
    "function".to_owned()
}

/// A chat completion response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageJson>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: Message,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// One `chat.completion.chunk` of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageJson>,
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// OpenAI's `usage` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageJson {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl From<&Usage> for UsageJson {
    fn from(u: &Usage) -> Self {
        Self {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.input_tokens + u.output_tokens,
            prompt_tokens_details: (u.cache_read_tokens > 0).then_some(PromptTokensDetails {
                cached_tokens: u.cache_read_tokens,
            }),
            completion_tokens_details: (u.reasoning_tokens > 0).then_some(
                CompletionTokensDetails {
                    reasoning_tokens: u.reasoning_tokens,
                },
            ),
        }
    }
}

/// Read OpenAI-style usage from a JSON value: `prompt_tokens` /
/// `completion_tokens` (or `input_tokens` / `output_tokens`), with cached and
/// reasoning token details. `None` if the value is null or has no counts.
pub fn usage_from_json(value: &Value) -> Option<Usage> {
    let obj = value.as_object()?;
    let num = |v: Option<&Value>| v.and_then(Value::as_u64);
    let input = num(obj.get("prompt_tokens")).or(num(obj.get("input_tokens")));
    let output = num(obj.get("completion_tokens")).or(num(obj.get("output_tokens")));
    if input.is_none() && output.is_none() {
        return None;
    }
    let detail = |outer: &str, alt: &str, inner: &str| {
        obj.get(outer)
            .or(obj.get(alt))
            .and_then(|d| d.get(inner))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let mut usage = Usage::tokens(input.unwrap_or(0), output.unwrap_or(0));
    usage.cache_read_tokens = detail(
        "prompt_tokens_details",
        "input_tokens_details",
        "cached_tokens",
    );
    usage.reasoning_tokens = detail(
        "completion_tokens_details",
        "output_tokens_details",
        "reasoning_tokens",
    );
    Some(usage)
}

/// The URL of an OpenAI-style endpoint under a channel's base URL.
///
/// A base URL without a path (`https://api.openai.com`) gets `/v1` added; one
/// with a path (`https://ark.cn-beijing.volces.com/api/v3`,
/// `https://api.openai.com/v1`) is used as it is. `path` is relative, e.g.
/// `chat/completions`.
pub fn endpoint_url(base_url: &str, path: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    if after_scheme.contains('/') {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    }
}

/// Headers for a bearer-authenticated JSON request, plus the channel options
/// `organization` / `project` (OpenAI) and any `header.NAME` option.
pub fn bearer_headers(call: &Call) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "authorization".to_owned(),
            format!("Bearer {}", call.channel.api_key),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    if let Some(org) = call.channel.option("organization") {
        headers.push(("openai-organization".to_owned(), org.to_owned()));
    }
    if let Some(project) = call.channel.option("project") {
        headers.push(("openai-project".to_owned(), project.to_owned()));
    }
    headers.extend(call.channel.option_headers());
    headers
}

/// Build a chat request for an OpenAI-compatible upstream: the body is the
/// client's, with `model` set to the upstream model and, on streams,
/// `stream_options.include_usage` forced on so the upstream reports usage.
///
/// The client's other fields pass through as they came, byte for byte and in
/// their order: the body is checked to be one JSON object, its fields are
/// found, and the new body is spliced from them. A long prompt is thus
/// scanned once, not parsed into strings and written out again.
pub fn prepare_chat(call: &Call, body: &[u8], url: &str) -> Result<UpstreamRequest, AdapterError> {
    let fields = json::raw_fields(body)?;
    let mut out = Vec::with_capacity(body.len() + call.model.len() + 64);
    out.push(b'{');
    let field = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
        if out.len() > 1 {
            out.push(b',');
        }
        // A name was a JSON string already, or is one of ours: writing it
        // cannot fail.
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        out.extend_from_slice(value);
    };
    let model = json::to_vec(&call.model)?;
    field(&mut out, "model", &model);
    // A name given twice counts once, last: as a parser that keeps one
    // value per name reads it.
    let mut seen = std::collections::BTreeSet::new();
    let last: Vec<bool> = fields
        .iter()
        .rev()
        .map(|(name, _)| seen.insert(name.as_ref()))
        .collect();
    for ((name, value), _) in fields
        .iter()
        .zip(last.iter().rev())
        .filter(|(_, last)| **last)
    {
        match name.as_ref() {
            "model" => {}
            "stream" | "stream_options" if call.stream => {}
            "stream_options" => {}
            _ => field(&mut out, name, value.get().as_bytes()),
        }
    }
    if call.stream {
        field(&mut out, "stream", b"true");
        // The client's own stream options stay, with usage asked for.
        let mut options = fields
            .iter()
            .rev()
            .find(|(name, _)| name == "stream_options")
            .and_then(|(_, value)| serde_json::from_str::<Map<String, Value>>(value.get()).ok())
            .unwrap_or_default();
        options.insert("include_usage".to_owned(), Value::Bool(true));
        field(&mut out, "stream_options", &json::to_vec(&options)?);
    }
    out.push(b'}');
    Ok(UpstreamRequest::post_json(
        url.to_owned(),
        bearer_headers(call),
        out,
    ))
}

/// Translate a non-streamed OpenAI-compatible response: the body passes
/// through untouched and the usage is read from it. A 2xx body that carries an
/// `error` object (some vendors do this) is an upstream error.
///
/// The body is checked and its fields found without parsing them: only the
/// `usage` object is read.
pub fn parse_chat(response: &UpstreamResponse) -> Result<Translated, AdapterError> {
    let fields = json::upstream_fields(&response.body)?;
    if let Some(err) = json::field(&fields, "error").filter(|e| e.get() != "null") {
        let (message, code) = errors::error_message(err.get().as_bytes());
        return Err(AdapterError::Upstream(crate::UpstreamError {
            status: 502,
            retryable: true,
            message,
            code,
        }));
    }
    let usage = json::field(&fields, "usage")
        .and_then(|u| serde_json::from_str::<Value>(u.get()).ok())
        .and_then(|u| usage_from_json(&u));
    Ok(Translated {
        body: response.body.clone(),
        content_type: "application/json".to_owned(),
        usage,
    })
}

/// One `chat.completion.chunk` (serialized) with a single choice, index 0,
/// carrying `delta` (`{"content": "…"}`, `{"role": "assistant", …}`, `{}`)
/// and `finish_reason` (`null` while the answer goes on).
pub fn chunk(
    id: &str,
    created: u64,
    model: &str,
    delta: Value,
    finish_reason: Option<&str>,
) -> Result<Vec<u8>, AdapterError> {
    json::to_vec(&serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }))
}

/// The usage-only `chat.completion.chunk` (serialized, `choices` empty) that
/// ends a stream when the client asked for `stream_options.include_usage`.
pub fn usage_chunk(
    id: &str,
    created: u64,
    model: &str,
    usage: &Usage,
) -> Result<Vec<u8>, AdapterError> {
    json::to_vec(&serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": UsageJson::from(usage),
    }))
}

/// Stream translator for upstreams that already speak OpenAI's SSE: chunks
/// pass through unchanged, usage is read from them, and the usage-only chunk
/// that Transit asked for is dropped if the client did not ask for it.
pub struct PassthroughStream {
    include_usage: bool,
}

impl StreamTranslator for PassthroughStream {
    fn new(call: Call) -> Self {
        Self {
            include_usage: call.include_usage,
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        for event in events {
            let data = trim_ascii(&event.data);
            if data.is_empty() {
                continue;
            }
            if data == b"[DONE]" {
                batch.done = true;
                continue;
            }
            let value: Value = match serde_json::from_slice(data) {
                Ok(v) => v,
                Err(e) => {
                    return Err(errors::upstream(
                        502,
                        false,
                        format!("upstream sent a stream event that is not JSON: {e}"),
                    ));
                }
            };
            if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
                let (message, code) =
                    errors::error_message(&serde_json::to_vec(err).unwrap_or_default());
                return Err(AdapterError::Upstream(crate::UpstreamError {
                    status: 502,
                    retryable: false,
                    message,
                    code,
                }));
            }
            let usage = value.get("usage").and_then(usage_from_json);
            let usage_only = usage.is_some()
                && value
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
            if usage.is_some() {
                batch.usage = usage;
            }
            if usage_only && !self.include_usage {
                continue;
            }
            batch.chunks.push(data.to_vec());
        }
        Ok(batch)
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{call, response, sse_events};

    #[test]
    fn endpoint_url_adds_v1_only_without_a_path() {
        assert_eq!(
            endpoint_url("https://api.openai.com", "chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            endpoint_url("https://api.openai.com/v1/", "chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            endpoint_url(
                "https://ark.cn-beijing.volces.com/api/v3",
                "chat/completions"
            ),
            "https://ark.cn-beijing.volces.com/api/v3/chat/completions"
        );
        assert_eq!(
            endpoint_url("http://127.0.0.1:11434", "embeddings"),
            "http://127.0.0.1:11434/v1/embeddings"
        );
    }

    #[test]
    fn usage_reads_details() {
        let v: Value = serde_json::from_str(
            r#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
                "prompt_tokens_details":{"cached_tokens":4},
                "completion_tokens_details":{"reasoning_tokens":2}}"#,
        )
        .unwrap();
        let u = usage_from_json(&v).unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.reasoning_tokens
            ),
            (10, 5, 4, 2)
        );
        assert_eq!(usage_from_json(&Value::Null), None);
        assert_eq!(usage_from_json(&serde_json::json!({})), None);
    }

    #[test]
    fn prepare_chat_sets_model_and_usage_option() {
        let c = call("chat.completions", "gpt-up", true);
        let req = prepare_chat(
            &c,
            br#"{"model":"alias","messages":[{"role":"user","content":"hi"}],"stream":true,"seed":7}"#,
            "http://u/v1/chat/completions",
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["model"], "gpt-up");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["seed"], 7, "unknown fields survive");
        assert!(
            req.headers
                .iter()
                .any(|(k, v)| k == "authorization" && v == "Bearer sk-test")
        );
    }

    #[test]
    fn prepare_chat_passes_the_clients_fields_as_written() {
        let c = call("chat.completions", "gpt-up", false);
        let body = br#"{ "seed" : 7, "model":"alias","messages":[{"role":"user","content":"caf\u00e9 \"q\""}],"stream":false,"stream_options":{"include_usage":true},"z\u0041":1.50}"#;
        let req = prepare_chat(&c, body, "u").unwrap();
        assert_eq!(
            String::from_utf8(req.body).unwrap(),
            r#"{"model":"gpt-up","seed":7,"messages":[{"role":"user","content":"caf\u00e9 \"q\""}],"stream":false,"zA":1.50}"#,
            "values byte for byte and in order; stream_options dropped off streams"
        );

        // On a stream, the client's stream options stay with usage forced on.
        let c = call("chat.completions", "gpt-up", true);
        let body = br#"{"stream_options":{"include_usage":false,"x":1},"model":"a","messages":[],"stream":true}"#;
        let req = prepare_chat(&c, body, "u").unwrap();
        let value: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"model": "gpt-up", "messages": [], "stream": true,
                "stream_options": {"include_usage": true, "x": 1}})
        );
        let req = prepare_chat(&c, br#"{"messages":[],"stream_options":null}"#, "u").unwrap();
        let value: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            value["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        assert_eq!(value["stream"], true);

        // A name given twice is sent once, with its last value.
        let c = call("chat.completions", "m", false);
        let req = prepare_chat(&c, br#"{"n":1,"messages":[],"n":2}"#, "u").unwrap();
        assert_eq!(req.body, br#"{"model":"m","messages":[],"n":2}"#.to_vec());
        let req = prepare_chat(&c, br#"{"n":1,"a":1,"n":2,"b":2,"a":3}"#, "u").unwrap();
        assert_eq!(req.body, br#"{"model":"m","n":2,"b":2,"a":3}"#.to_vec());
    }

    #[test]
    fn prepare_chat_rejects_non_objects() {
        let c = call("chat.completions", "m", false);
        assert!(matches!(
            prepare_chat(&c, b"[1,2]", "u"),
            Err(AdapterError::InvalidRequest(_))
        ));
        for bad in [
            &b"{"[..],
            b"",
            b"null",
            b"\"s\"",
            br#"{"a":1} x"#,
            br#"{"a":tru}"#,
            br#"{"a":"\x"}"#,
        ] {
            assert!(
                matches!(
                    prepare_chat(&c, bad, "u"),
                    Err(AdapterError::InvalidRequest(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn parse_chat_passes_body_and_reads_usage() {
        let body = br#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let t = parse_chat(&response(200, body)).unwrap();
        assert_eq!(t.body, body.to_vec());
        assert_eq!(t.usage, Some(Usage::tokens(3, 4)));
        assert!(matches!(
            parse_chat(&response(200, b"<html>")),
            Err(AdapterError::Upstream(_))
        ));
        assert!(matches!(
            parse_chat(&response(200, br#"{"error":{"message":"quota"}}"#)),
            Err(AdapterError::Upstream(_))
        ));
    }

    /// The fields are found without parsing the body: what a parse would
    /// have read must still be read, and what it would refuse refused.
    #[test]
    fn parse_chat_reads_what_a_parse_would() {
        let upstream = |body: &[u8]| match parse_chat(&response(200, body)) {
            Err(AdapterError::Upstream(u)) => u,
            other => panic!("expected an upstream error, got {other:?}"),
        };
        let e = upstream(br#" { "error" : { "message" : "quota \"x\"", "code": 429 } } "#);
        assert_eq!(e.message, r#"quota "x""#);
        assert_eq!(e.code.as_deref(), Some("429"));
        assert_eq!(e.status, 502);
        assert!(upstream(b"[1,2]").message.contains("not an object"));
        assert!(upstream(b"\"text\"").message.contains("not an object"));
        assert!(
            upstream(b"{\"a\":1} trailing")
                .message
                .contains("not valid JSON")
        );
        assert!(upstream(br#"{"a":tru}"#).message.contains("not valid JSON"));
        assert!(upstream(b"").message.contains("not valid JSON"));

        // A null error is no error; a name given twice counts with its last
        // value, as a parse keeps it.
        let body = br#"{"error": null, "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            "usage" : {"prompt_tokens": 5, "completion_tokens": 6, "prompt_tokens_details": {"cached_tokens": 2}}}"#;
        let t = parse_chat(&response(200, body)).unwrap();
        let mut expected = Usage::tokens(5, 6);
        expected.cache_read_tokens = 2;
        assert_eq!(t.usage, Some(expected));
        assert_eq!(t.body, body.to_vec());
        // No usage, or usage that is not an object: none.
        assert_eq!(parse_chat(&response(200, b"{}")).unwrap().usage, None);
        assert_eq!(
            parse_chat(&response(200, br#"{"usage":"n/a"}"#))
                .unwrap()
                .usage,
            None
        );
    }

    #[test]
    fn passthrough_stream_drops_unrequested_usage_chunk() {
        let transcript = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n\
data: [DONE]\n\n";
        let mut quiet = PassthroughStream::new(call("chat.completions", "m", true));
        let batch = quiet.push(sse_events(transcript)).unwrap();
        assert_eq!(batch.chunks.len(), 1);
        assert_eq!(batch.usage, Some(Usage::tokens(5, 1)));
        assert!(batch.done);

        let mut c = call("chat.completions", "m", true);
        c.include_usage = true;
        let mut loud = PassthroughStream::new(c);
        assert_eq!(loud.push(sse_events(transcript)).unwrap().chunks.len(), 2);
    }

    #[test]
    fn chunks_are_openai_chunks() {
        let text = chunk(
            "chatcmpl-1",
            7,
            "m",
            serde_json::json!({"content": "Hi"}),
            None,
        )
        .unwrap();
        let parsed: ChatChunk = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            parsed,
            ChatChunk {
                id: "chatcmpl-1".into(),
                object: "chat.completion.chunk".into(),
                created: 7,
                model: "m".into(),
                choices: vec![ChunkChoice {
                    index: 0,
                    delta: Delta {
                        content: Some("Hi".into()),
                        ..Delta::default()
                    },
                    finish_reason: None,
                }],
                usage: None,
            }
        );
        let value: Value = serde_json::from_slice(&text).unwrap();
        assert!(value["choices"][0]["finish_reason"].is_null());

        let stop = chunk("c", 1, "m", serde_json::json!({}), Some("stop")).unwrap();
        let value: Value = serde_json::from_slice(&stop).unwrap();
        assert_eq!(value["choices"][0]["finish_reason"], "stop");
        assert_eq!(value["choices"][0]["delta"], serde_json::json!({}));

        let mut usage = Usage::tokens(5, 2);
        usage.cache_read_tokens = 3;
        let last = usage_chunk("c", 1, "m", &usage).unwrap();
        let parsed: ChatChunk = serde_json::from_slice(&last).unwrap();
        assert!(parsed.choices.is_empty());
        assert_eq!(parsed.usage, Some(UsageJson::from(&usage)));
        assert_eq!(
            serde_json::from_slice::<Value>(&last).unwrap()["usage"]["total_tokens"],
            7
        );
    }

    #[test]
    fn passthrough_stream_reports_error_events() {
        let mut s = PassthroughStream::new(call("chat.completions", "m", true));
        let r = s.push(sse_events(
            "data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
        ));
        assert!(matches!(r, Err(AdapterError::Upstream(e)) if e.message == "overloaded"));
        assert!(s.push(sse_events("data: {not json\n\n")).is_err());
    }
}

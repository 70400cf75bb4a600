//! The Anthropic adapter: OpenAI chat completions served by Claude's
//! Messages API.
//!
//! Requests: system and developer messages are lifted into `system`;
//! `max_tokens` is always sent (the API requires it; default 4096); image
//! parts become `image` blocks (base64 data URLs or plain URLs); tool calls
//! and tool results become `tool_use` / `tool_result` blocks, consecutive
//! messages of one role are merged (the API wants them alternating);
//! `reasoning_effort` turns on extended thinking.
//!
//! Responses and streams come back as OpenAI objects: text, thinking as
//! `reasoning_content`, `tool_use` as `tool_calls`, stop reasons mapped, and
//! usage with cache reads and writes (`prompt_tokens` counts all input, as
//! OpenAI's does).
//!
//! Channel options: `anthropic-version` (default `2023-06-01`),
//! `anthropic-beta`.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;

pub struct Anthropic;

const DEFAULT_MAX_TOKENS: u64 = 4096;
/// The endpoint of clients that speak the Messages API themselves: their
/// body goes to Claude as sent (model mapped) and the answer comes back as
/// Claude sent it, usage read on the way.
const NATIVE: &str = "anthropic.messages";
const API_VERSION: &str = "2023-06-01";

impl Adapter for Anthropic {
    type Stream = MessagesStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new(
            "anthropic",
            env!("CARGO_PKG_VERSION"),
            &["chat.completions", NATIVE],
        )
        .with_description("Anthropic Messages API (Claude)")
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        let native = call.endpoint == NATIVE;
        if !native && call.endpoint != "chat.completions" {
            return Err(errors::unsupported(format!(
                "the anthropic adapter does not serve the {} endpoint",
                call.endpoint
            )));
        }
        let mut request = transit_adapter_sdk::json::parse_object(body)?;
        let body = if native {
            request.insert("model".to_owned(), Value::String(call.model.clone()));
            transit_adapter_sdk::json::to_vec(&request)?
        } else {
            let messages = to_messages(call, &request)?;
            transit_adapter_sdk::json::to_vec(&messages)?
        };
        // A native client's own version and betas win over the channel's.
        let client = |name: &str| if native { call.header(name) } else { None };
        let mut headers = vec![
            ("x-api-key".to_owned(), call.channel.api_key.clone()),
            (
                "anthropic-version".to_owned(),
                client("anthropic-version")
                    .or(call.channel.option("anthropic-version"))
                    .unwrap_or(API_VERSION)
                    .to_owned(),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        if let Some(beta) = client("anthropic-beta").or(call.channel.option("anthropic-beta")) {
            headers.push(("anthropic-beta".to_owned(), beta.to_owned()));
        }
        Ok(UpstreamRequest {
            method: "POST".to_owned(),
            url: openai::endpoint_url(&call.channel.base_url, "messages"),
            headers,
            body,
            framing: Framing::Sse,
            usage: None,
            answer: Answer::Adapter,
        })
    }

    fn parse_response(
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        let message = transit_adapter_sdk::json::parse_upstream(&response.body)?;
        if message.get("type").and_then(Value::as_str) == Some("error") {
            return Err(errors::from_response(&UpstreamResponse {
                status: 502,
                headers: Vec::new(),
                body: response.body.clone(),
            }));
        }
        let usage = usage_of(message.get("usage"), None);
        if call.endpoint == NATIVE {
            return Ok(Translated {
                body: response.body.clone(),
                content_type: "application/json".to_owned(),
                usage,
            });
        }
        let completion = to_completion(call, &message, usage.as_ref());
        Ok(Translated {
            body: transit_adapter_sdk::json::to_vec(&completion)?,
            content_type: "application/json".to_owned(),
            usage,
        })
    }
}

/// OpenAI chat request → Anthropic Messages request.
fn to_messages(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let source = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| errors::invalid_request("`messages` must be an array"))?;
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in source {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.push(text_of(m.get("content")));
                continue;
            }
            "assistant" => ("assistant", assistant_blocks(m)),
            "tool" | "function" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": id,
                    "content": text_of(m.get("content")),
                });
                ("user", vec![block])
            }
            _ => ("user", user_blocks(m.get("content"))?),
        };
        if blocks.is_empty() {
            continue;
        }
        // The API wants roles to alternate: merge a run of one role.
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    if messages.is_empty() {
        return Err(errors::invalid_request(
            "at least one user or assistant message is required",
        ));
    }
    let mut max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.get(*k).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut out = Map::new();
    out.insert("model".into(), Value::String(call.model.clone()));
    out.insert("messages".into(), Value::Array(messages));
    let system: Vec<String> = system.into_iter().filter(|s| !s.is_empty()).collect();
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n\n")));
    }
    if let Some(effort) = req.get("reasoning_effort").and_then(Value::as_str) {
        let budget = match effort {
            "low" | "minimal" => 1024,
            "high" => 8192,
            _ => 4096,
        };
        if max_tokens <= budget {
            max_tokens = budget + DEFAULT_MAX_TOKENS;
        }
        out.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    } else {
        for key in ["temperature", "top_p"] {
            if let Some(v) = req.get(key).filter(|v| v.is_number()) {
                out.insert(key.into(), v.clone());
            }
        }
    }
    out.insert("max_tokens".into(), json!(max_tokens));
    match req.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                json!({
                    "name": f.get("name").cloned().unwrap_or(Value::Null),
                    "description": f.get("description").cloned().unwrap_or(json!("")),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                })
            })
            .collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = req.get("tool_choice") {
        let mapped = match choice {
            Value::String(s) if s == "none" => Some(json!({"type": "none"})),
            Value::String(s) if s == "required" => Some(json!({"type": "any"})),
            Value::String(_) => Some(json!({"type": "auto"})),
            Value::Object(o) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .map(|name| json!({"type": "tool", "name": name})),
            _ => None,
        };
        if let Some(m) = mapped {
            out.insert("tool_choice".into(), m);
        }
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if call.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(out))
}

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn user_blocks(content: Option<&Value>) -> Result<Vec<Value>, AdapterError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({"type": "text", "text": s})]),
        Some(Value::Array(parts)) => parts.iter().map(user_part).collect(),
        Some(Value::Null) | None => Ok(Vec::new()),
        Some(_) => Err(errors::invalid_request(
            "message `content` must be a string or an array of parts",
        )),
    }
}

fn user_part(part: &Value) -> Result<Value, AdapterError> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            Ok(json!({"type": "text", "text": part.get("text").cloned().unwrap_or(json!(""))}))
        }
        Some("image_url") => {
            let url = part
                .get("image_url")
                .and_then(|i| i.get("url").or(Some(i)))
                .and_then(Value::as_str)
                .ok_or_else(|| errors::invalid_request("an image part has no url"))?;
            Ok(image_block(url))
        }
        other => Err(errors::invalid_request(format!(
            "content parts of type {} are not supported by Claude channels",
            other.unwrap_or("(none)")
        ))),
    }
}

fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
    {
        let media_type = meta.trim_end_matches(";base64");
        return json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

fn assistant_blocks(m: &Value) -> Vec<Value> {
    let mut blocks = Vec::new();
    let text = text_of(m.get("content"));
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").cloned().unwrap_or(Value::Null);
        let input = f
            .get("arguments")
            .and_then(Value::as_str)
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        blocks.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(json!("")),
            "name": f.get("name").cloned().unwrap_or(json!("")),
            "input": input,
        }));
    }
    blocks
}

/// Claude's stop reason → OpenAI's finish reason.
fn finish_reason(stop: Option<&str>) -> Option<&'static str> {
    Some(match stop? {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    })
}

/// Usage from `message.usage` (and a later `message_delta.usage`).
fn usage_of(start: Option<&Value>, delta: Option<&Value>) -> Option<Usage> {
    let start = start?;
    let n = |v: Option<&Value>, k: &str| v.and_then(|u| u.get(k)).and_then(Value::as_u64);
    let input = n(Some(start), "input_tokens").unwrap_or(0);
    let cache_read = n(Some(start), "cache_read_input_tokens").unwrap_or(0);
    let cache_write = n(Some(start), "cache_creation_input_tokens").unwrap_or(0);
    let output = n(delta, "output_tokens")
        .or(n(Some(start), "output_tokens"))
        .unwrap_or(0);
    let mut usage = Usage::tokens(input + cache_read + cache_write, output);
    usage.cache_read_tokens = cache_read;
    usage.cache_write_tokens = cache_write;
    Some(usage)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn to_completion(call: &Call, message: &Value, usage: Option<&Usage>) -> Value {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut tool_calls = Vec::new();
    for block in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                thinking.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""))
            }
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(json!("")),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(json!("")),
                    "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                },
            })),
            _ => {}
        }
    }
    let mut msg = json!({"role": "assistant", "content": text});
    if !thinking.is_empty() {
        msg["reasoning_content"] = Value::String(thinking);
    }
    if !tool_calls.is_empty() {
        msg["tool_calls"] = Value::Array(tool_calls);
    }
    let stop = message.get("stop_reason").and_then(Value::as_str);
    let mut out = json!({
        "id": message.get("id").cloned().unwrap_or(json!("")),
        "object": "chat.completion",
        "created": now(),
        "model": message.get("model").and_then(Value::as_str).unwrap_or(&call.model),
        "choices": [{"index": 0, "message": msg, "finish_reason": finish_reason(stop).unwrap_or("stop")}],
    });
    if let Some(u) = usage {
        out["usage"] = serde_json::to_value(openai::UsageJson::from(u)).unwrap_or(Value::Null);
    }
    out
}

/// Translates Claude's stream events (`message_start` … `message_stop`)
/// into `chat.completion.chunk`s.
pub struct MessagesStream {
    /// Events pass through untouched (a native Messages client).
    native: bool,
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    start_usage: Option<Value>,
    usage: Option<Usage>,
    /// Claude content-block index → OpenAI tool-call index.
    tool_index: Vec<(u64, u32)>,
}

impl MessagesStream {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Result<Vec<u8>, AdapterError> {
        openai::chunk(&self.id, self.created, &self.model, delta, finish)
    }
}

impl StreamTranslator for MessagesStream {
    fn new(call: Call) -> Self {
        Self {
            native: call.endpoint == NATIVE,
            include_usage: call.include_usage,
            id: String::new(),
            model: call.model,
            created: now(),
            start_usage: None,
            usage: None,
            tool_index: Vec::new(),
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        for event in events {
            let Ok(data) = serde_json::from_slice::<Value>(&event.data) else {
                return Err(errors::upstream(
                    502,
                    false,
                    "Claude sent a stream event that is not JSON",
                ));
            };
            let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
            if self.native && kind != "error" {
                match kind {
                    "message_start" => {
                        self.start_usage =
                            data.get("message").and_then(|m| m.get("usage")).cloned();
                        self.usage = usage_of(self.start_usage.as_ref(), None);
                        batch.usage = self.usage.clone();
                    }
                    "message_delta" => {
                        self.usage = usage_of(self.start_usage.as_ref(), data.get("usage"));
                        batch.usage = self.usage.clone();
                    }
                    "message_stop" => batch.done = true,
                    _ => {}
                }
                batch.chunks.push(event.data);
                continue;
            }
            match kind {
                "message_start" => {
                    let message = data.get("message").cloned().unwrap_or(Value::Null);
                    if let Some(id) = message.get("id").and_then(Value::as_str) {
                        self.id = id.to_owned();
                    }
                    if let Some(model) = message.get("model").and_then(Value::as_str) {
                        self.model = model.to_owned();
                    }
                    self.start_usage = message.get("usage").cloned();
                    self.usage = usage_of(self.start_usage.as_ref(), None);
                    batch.usage = self.usage.clone();
                    batch
                        .chunks
                        .push(self.chunk(json!({"role": "assistant", "content": ""}), None)?);
                }
                "content_block_start" => {
                    let block = data.get("content_block").cloned().unwrap_or(Value::Null);
                    if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let n = self.tool_index.len() as u32;
                        self.tool_index.push((index, n));
                        batch.chunks.push(self.chunk(
                            json!({"tool_calls": [{
                                "index": n,
                                "id": block.get("id").cloned().unwrap_or(json!("")),
                                "type": "function",
                                "function": {"name": block.get("name").cloned().unwrap_or(json!("")), "arguments": ""},
                            }]}),
                            None,
                        )?);
                    }
                }
                "content_block_delta" => {
                    let delta = data.get("delta").cloned().unwrap_or(Value::Null);
                    let piece = |k: &str| {
                        delta
                            .get(k)
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    };
                    let out = match delta.get("type").and_then(Value::as_str) {
                        Some("text_delta") => Some(json!({"content": piece("text")})),
                        Some("thinking_delta") => {
                            Some(json!({"reasoning_content": piece("thinking")}))
                        }
                        Some("input_json_delta") => {
                            let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                            self.tool_index.iter().find(|(b, _)| *b == index).map(|(_, n)| {
                                json!({"tool_calls": [{"index": n, "function": {"arguments": piece("partial_json")}}]})
                            })
                        }
                        _ => None,
                    };
                    if let Some(delta) = out {
                        batch.chunks.push(self.chunk(delta, None)?);
                    }
                }
                "message_delta" => {
                    self.usage = usage_of(self.start_usage.as_ref(), data.get("usage"));
                    batch.usage = self.usage.clone();
                    let stop = data
                        .get("delta")
                        .and_then(|d| d.get("stop_reason"))
                        .and_then(Value::as_str);
                    if let Some(reason) = finish_reason(stop) {
                        batch.chunks.push(self.chunk(json!({}), Some(reason))?);
                    }
                }
                "message_stop" => {
                    batch.done = true;
                    if self.include_usage
                        && let Some(u) = &self.usage
                    {
                        batch.chunks.push(openai::usage_chunk(
                            &self.id,
                            self.created,
                            &self.model,
                            u,
                        )?);
                    }
                }
                "error" => {
                    let (message, code) = errors::error_message(&event.data);
                    let overloaded = code.as_deref() == Some("overloaded_error");
                    return Err(AdapterError::Upstream(transit_adapter_sdk::UpstreamError {
                        status: if overloaded { 529 } else { 502 },
                        retryable: false,
                        message,
                        code,
                    }));
                }
                _ => {}
            }
        }
        Ok(batch)
    }
}

export_adapter!(Anthropic);

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, response, sse_events};

    const RESPONSE: &[u8] = include_bytes!("../fixtures/messages_response.json");
    const STREAM: &str = include_str!("../fixtures/messages_stream.sse");
    const OVERLOADED: &[u8] = include_bytes!("../fixtures/error_overloaded.json");

    fn prepared(stream: bool, body: Value) -> Value {
        let mut c = call("chat.completions", "claude-sonnet-4-20250514", stream);
        c.channel.base_url = "https://api.anthropic.com".into();
        let req = Anthropic::prepare_request(&c, body.to_string().as_bytes()).unwrap();
        assert_eq!(req.url, "https://api.anthropic.com/v1/messages");
        assert!(
            req.headers
                .iter()
                .any(|(k, v)| k == "x-api-key" && v == "sk-test")
        );
        assert!(
            req.headers
                .iter()
                .any(|(k, v)| k == "anthropic-version" && v == API_VERSION)
        );
        serde_json::from_slice(&req.body).unwrap()
    }

    #[test]
    fn system_is_lifted_and_max_tokens_always_sent() {
        let b = prepared(
            false,
            json!({"model": "x", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": [{"type": "text", "text": "again"}]}
            ], "stop": "END", "temperature": 0.3}),
        );
        assert_eq!(b["system"], "Be brief.");
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(b["model"], "claude-sonnet-4-20250514");
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert_eq!(b["temperature"], 0.3);
        // Consecutive user messages are merged into one turn.
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert_eq!(b["messages"][0]["content"][1]["text"], "again");
        assert!(b.get("stream").is_none());
    }

    #[test]
    fn tools_and_tool_results_translate_both_ways() {
        let b = prepared(
            true,
            json!({"model": "x", "max_tokens": 100, "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
            ], "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
               "tool_choice": "required"}),
        );
        assert_eq!(b["stream"], true);
        assert_eq!(b["max_tokens"], 100);
        assert_eq!(
            b["tools"][0]["input_schema"]["properties"]["location"]["type"],
            "string"
        );
        assert_eq!(b["tool_choice"]["type"], "any");
        assert_eq!(b["messages"][1]["content"][0]["type"], "tool_use");
        assert_eq!(b["messages"][1]["content"][0]["input"]["location"], "Paris");
        assert_eq!(b["messages"][2]["role"], "user");
        assert_eq!(b["messages"][2]["content"][0]["tool_use_id"], "call_1");
    }

    #[test]
    fn images_become_blocks() {
        let b = prepared(
            false,
            json!({"model": "x", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]}]}),
        );
        let c = &b["messages"][0]["content"];
        assert_eq!(c[0]["source"]["type"], "base64");
        assert_eq!(c[0]["source"]["media_type"], "image/png");
        assert_eq!(c[1]["source"]["url"], "https://example.com/cat.jpg");
    }

    #[test]
    fn reasoning_effort_enables_thinking() {
        let b = prepared(
            false,
            json!({"model": "x", "max_tokens": 500, "reasoning_effort": "low", "temperature": 1, "messages": [{"role": "user", "content": "think"}]}),
        );
        assert_eq!(b["thinking"]["budget_tokens"], 1024);
        assert!(b["max_tokens"].as_u64().unwrap() > 1024);
        assert!(
            b.get("temperature").is_none(),
            "thinking forbids temperature"
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let c = call("chat.completions", "m", false);
        assert!(matches!(
            Anthropic::prepare_request(&c, b"{}"),
            Err(AdapterError::InvalidRequest(_))
        ));
        assert!(matches!(
            Anthropic::prepare_request(&c, br#"{"messages":[{"role":"system","content":"only"}]}"#),
            Err(AdapterError::InvalidRequest(_))
        ));
        let c = call("embeddings", "m", false);
        assert!(matches!(
            Anthropic::prepare_request(&c, b"{}"),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn response_becomes_a_chat_completion() {
        let c = call("chat.completions", "m", false);
        let t = Anthropic::parse_response(&c, &response(200, RESPONSE)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "Hello! How can I help?");
        assert_eq!(m["reasoning_content"], "The user greets me.");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            "{\"location\":\"Paris\"}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let u = t.usage.unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens
            ),
            (3195, 503, 1000, 100)
        );
        assert_eq!(v["usage"]["prompt_tokens"], 3195);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
    }

    #[test]
    fn stream_transcript_translates() {
        let mut c = call("chat.completions", "m", true);
        c.include_usage = true;
        let mut s = MessagesStream::new(c);
        let mut chunks = Vec::new();
        let mut usage = None;
        let mut done = false;
        for event in sse_events(STREAM) {
            let b = s.push(vec![event]).unwrap();
            chunks.extend(b.chunks);
            usage = b.usage.or(usage);
            done |= b.done;
        }
        assert!(done);
        let chunks: Vec<Value> = chunks
            .iter()
            .map(|c| serde_json::from_slice(c).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello!");
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(args, "{\"location\": \"Paris\"}");
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
        );
        let last = chunks.last().unwrap();
        assert_eq!(last["usage"]["completion_tokens"], 15);
        let u = usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens),
            (35, 15, 10)
        );
        assert!(
            chunks
                .iter()
                .all(|c| c["id"] == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY")
        );
    }

    #[test]
    fn errors_are_classified() {
        let c = call("chat.completions", "m", false);
        let e = Anthropic::map_error(&c, &response(529, OVERLOADED));
        assert!(matches!(e, AdapterError::Upstream(u) if u.retryable && u.message == "Overloaded"));
        let e = Anthropic::map_error(&c, &response(401, br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#));
        assert!(matches!(e, AdapterError::Auth(_)));
        let mut s = MessagesStream::new(call("chat.completions", "m", true));
        let r = s.push(sse_events(&format!(
            "event: error\ndata: {}\n\n",
            String::from_utf8_lossy(OVERLOADED)
        )));
        assert!(matches!(r, Err(AdapterError::Upstream(u)) if u.status == 529));
    }
}

#[cfg(test)]
mod native_tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, response, sse_events};

    const RESPONSE: &[u8] = include_bytes!("../fixtures/messages_response.json");
    const STREAM: &str = include_str!("../fixtures/messages_stream.sse");

    /// A native Messages client: the body goes through with the model mapped
    /// and the client's version header; answers come back untouched.
    #[test]
    fn native_messages_pass_through_with_usage() {
        let mut c = call(NATIVE, "claude-mapped", true);
        c.headers = vec![
            ("anthropic-version".into(), "2024-01-01".into()),
            ("anthropic-beta".into(), "tools-2024".into()),
        ];
        let body = br#"{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let req = Anthropic::prepare_request(&c, body).unwrap();
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent["model"], "claude-mapped");
        assert_eq!(sent["messages"][0]["content"], "hi");
        assert!(
            req.headers
                .iter()
                .any(|(k, v)| k == "anthropic-version" && v == "2024-01-01")
        );
        assert!(
            req.headers
                .iter()
                .any(|(k, v)| k == "anthropic-beta" && v == "tools-2024")
        );

        let parsed = Anthropic::parse_response(&c, &response(200, RESPONSE)).unwrap();
        assert_eq!(parsed.body, RESPONSE);
        assert!(parsed.usage.is_some());

        let events = sse_events(STREAM);
        let count = events.len();
        let mut stream = MessagesStream::new(c);
        let batch = stream.push(events.clone()).unwrap();
        assert_eq!(batch.chunks.len(), count);
        assert_eq!(batch.chunks[0], events[0].data);
        assert!(batch.done);
        assert!(batch.usage.is_some_and(|u| u.output_tokens > 0));
    }
}

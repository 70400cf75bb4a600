//! Anthropic's Messages API (`POST /v1/messages`) served by a canonical chat
//! channel: the request becomes an OpenAI `chat.completions` request, the
//! `chat.completion` answer becomes a `message`, and a stream of
//! `chat.completion.chunk`s becomes Anthropic's event sequence:
//!
//! ```text
//! message_start → ping → (content_block_start → content_block_delta* → content_block_stop)*
//!               → message_delta → message_stop
//! ```
//!
//! What does not translate: Anthropic server tools and Anthropic-defined
//! client tools (`web_search_*`, `bash_*`, ...) are refused; thinking blocks
//! sent back in the history are dropped (the other vendor cannot verify
//! their signatures); thinking blocks in answers carry an empty signature;
//! `stop_reason` is never `stop_sequence`, as OpenAI reports a matched stop
//! sequence as a plain `stop`.

use serde_json::{Map, Value, json};

use super::SseEvent;
use crate::adapters::Usage;
use crate::billing::tokens;
use crate::error::{ErrorKind, GatewayError};

/// Tokens counted for an image when its size is unknown: Anthropic charges
/// about `width × height / 750`, which tops out near 1,600 for the largest
/// image it accepts without downscaling.
const IMAGE_TOKENS: u64 = 1_600;

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Translate an Anthropic Messages request into a canonical chat request for
/// `model`. `stream` asks for a streamed answer (with a final usage chunk).
///
/// Validated like Anthropic does: `model`, a positive integer `max_tokens`
/// and a non-empty `messages` array are required.
pub fn request_to_chat(body: &[u8], model: &str, stream: bool) -> Result<Vec<u8>, GatewayError> {
    let req = parse_object(body)?;
    require_model(&req)?;
    let max_tokens = require_max_tokens(&req)?;
    let messages = require_messages(&req)?;

    let mut out_messages = Vec::new();
    if let Some(system) = req.get("system").filter(|s| !s.is_null()) {
        let text = system_text(system)?;
        if !text.is_empty() {
            out_messages.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, message) in messages.iter().enumerate() {
        convert_message(i, message, &mut out_messages)?;
    }

    let mut chat = Map::new();
    chat.insert("model".into(), json!(model));
    chat.insert("messages".into(), Value::Array(out_messages));
    chat.insert("max_tokens".into(), json!(max_tokens));
    for (from, to) in [("temperature", "temperature"), ("top_p", "top_p")] {
        if let Some(v) = req.get(from).filter(|v| v.is_number()) {
            chat.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = req.get("stop_sequences").and_then(Value::as_array)
        && !stop.is_empty()
    {
        chat.insert("stop".into(), Value::Array(stop.clone()));
    }

    let tools = convert_tools(req.get("tools"))?;
    if !tools.is_empty() {
        chat.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = req.get("tool_choice").filter(|c| !c.is_null()) {
            let (choice, parallel) = convert_tool_choice(choice)?;
            chat.insert("tool_choice".into(), choice);
            if !parallel {
                chat.insert("parallel_tool_calls".into(), json!(false));
            }
        }
    }

    if let Some(effort) = req.get("thinking").and_then(reasoning_effort) {
        chat.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some(user) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        chat.insert("user".into(), json!(user));
    }
    if stream {
        chat.insert("stream".into(), json!(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(chat).to_string().into_bytes())
}

/// Approximate input tokens of a Messages request (`POST
/// /v1/messages/count_tokens`): system prompt, every text, tool call and
/// tool result, and the tool definitions, counted with the request model's
/// vocabulary (an approximation for non-OpenAI models), plus a flat
/// [`IMAGE_TOKENS`] per image or document.
///
/// Validated like Anthropic's endpoint: `model` and a non-empty `messages`
/// array are required; `max_tokens` is not.
pub fn count_tokens(body: &[u8]) -> Result<u64, GatewayError> {
    prompt_tokens(body, |model, text| (tokens::count(model, text), true)).map(|(n, _)| n)
}

/// [`count_tokens`] as the relay counts ahead of a call (see
/// [`tokens::Estimate`]): the tokens, and whether they were all counted.
pub fn estimate_tokens(body: &[u8]) -> Result<(u64, bool), GatewayError> {
    prompt_tokens(body, |model, text| {
        let mut estimate = tokens::Estimate::new(model);
        (estimate.text(text), estimate.is_exact())
    })
}

fn prompt_tokens(
    body: &[u8],
    count: impl FnOnce(&str, &str) -> (u64, bool),
) -> Result<(u64, bool), GatewayError> {
    let req = parse_object(body)?;
    let model = require_model(&req)?;
    let messages = require_messages(&req)?;

    let mut text = String::new();
    let mut media = 0u64;
    if let Some(system) = req.get("system") {
        collect_text(system, &mut text, &mut media);
    }
    for message in messages {
        if let Some(content) = message.get("content") {
            collect_text(content, &mut text, &mut media);
        }
    }
    if let Some(tools) = req.get("tools").filter(|t| !t.is_null()) {
        push_line(&mut text, &tools.to_string());
    }
    let (n, whole) = count(model, &text);
    Ok((n + media * IMAGE_TOKENS, whole))
}

fn push_line(buf: &mut String, s: &str) {
    if s.is_empty() {
        return;
    }
    if !buf.is_empty() {
        buf.push('\n');
    }
    buf.push_str(s);
}

/// Gather the countable text of a `system` value or a message `content`.
fn collect_text(content: &Value, buf: &mut String, media: &mut u64) {
    match content {
        Value::String(s) => push_line(buf, s),
        Value::Array(blocks) => {
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => push_line(buf, str_field(block, "text")),
                    Some("thinking") => push_line(buf, str_field(block, "thinking")),
                    Some("image") | Some("document") => *media += 1,
                    Some("tool_use") => {
                        push_line(buf, str_field(block, "name"));
                        if let Some(input) = block.get("input") {
                            push_line(buf, &input.to_string());
                        }
                    }
                    Some("tool_result") => {
                        if let Some(inner) = block.get("content") {
                            collect_text(inner, buf, media);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GatewayError::invalid(
            "The request body must be a JSON object",
        )),
        Err(e) => Err(GatewayError::invalid(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

fn require_model(req: &Map<String, Value>) -> Result<&str, GatewayError> {
    match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m),
        None | Some(Value::Null) => {
            Err(GatewayError::invalid("model: Field required").with_param("model"))
        }
        Some(_) => Err(
            GatewayError::invalid("model: Input should be a non-empty string").with_param("model"),
        ),
    }
}

fn require_max_tokens(req: &Map<String, Value>) -> Result<u64, GatewayError> {
    let value = match req.get("max_tokens") {
        None | Some(Value::Null) => {
            return Err(
                GatewayError::invalid("max_tokens: Field required").with_param("max_tokens")
            );
        }
        Some(v) => v,
    };
    let n = value.as_u64().or_else(|| {
        // 1024.0 is accepted as an integer, like Anthropic's lax validation does.
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    match n {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(
            GatewayError::invalid("max_tokens: Input should be a positive integer")
                .with_param("max_tokens"),
        ),
    }
}

fn require_messages(req: &Map<String, Value>) -> Result<&Vec<Value>, GatewayError> {
    match req.get("messages") {
        None | Some(Value::Null) => {
            Err(GatewayError::invalid("messages: Field required").with_param("messages"))
        }
        Some(Value::Array(m)) if !m.is_empty() => Ok(m),
        Some(Value::Array(_)) => Err(GatewayError::invalid(
            "messages: at least one message is required",
        )
        .with_param("messages")),
        Some(_) => Err(
            GatewayError::invalid("messages: Input should be a valid list").with_param("messages"),
        ),
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn block_type(block: &Value) -> &str {
    str_field(block, "type")
}

/// `system` is a string or an array of text blocks.
fn system_text(system: &Value) -> Result<String, GatewayError> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for (j, block) in blocks.iter().enumerate() {
                match block_type(block) {
                    "text" => texts.push(str_field(block, "text")),
                    other => {
                        return Err(GatewayError::invalid(format!(
                            "system.{j}: block type `{other}` is not allowed in the system prompt"
                        ))
                        .with_param("system"));
                    }
                }
            }
            Ok(texts.join("\n\n"))
        }
        _ => Err(GatewayError::invalid(
            "system: Input should be a string or a list of text blocks",
        )
        .with_param("system")),
    }
}

/// One Anthropic message → one or more chat messages.
fn convert_message(i: usize, message: &Value, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if role != "user" && role != "assistant" {
        return Err(GatewayError::invalid(format!(
            "messages.{i}.role: Input should be 'user' or 'assistant'"
        ))
        .with_param(format!("messages.{i}.role")));
    }
    let blocks = match message.get("content") {
        Some(Value::String(s)) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(GatewayError::invalid(format!(
                "messages.{i}.content: Input should be a string or a list of content blocks"
            ))
            .with_param(format!("messages.{i}.content")));
        }
    };
    if role == "user" {
        convert_user_blocks(i, blocks, out)
    } else {
        convert_assistant_blocks(i, blocks, out)
    }
}

fn unsupported_block(i: usize, j: usize, kind: &str) -> GatewayError {
    GatewayError::invalid(format!(
        "messages.{i}.content.{j}: content blocks of type `{kind}` cannot be sent to this model"
    ))
    .with_param(format!("messages.{i}.content.{j}.type"))
}

/// A user turn: tool results become `tool` messages (first, as OpenAI wants
/// them right after the assistant's calls), the rest one `user` message.
/// Images inside tool results go into that user message, as OpenAI's tool
/// messages hold text only.
fn convert_user_blocks(
    i: usize,
    blocks: &[Value],
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let mut parts = Vec::new();
    let mut tool_images = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block_type(block) {
            "text" => parts.push(json!({"type": "text", "text": str_field(block, "text")})),
            "image" => parts.push(image_part(i, j, block)?),
            "document" => parts.push(document_part(i, j, block)?),
            "tool_result" => {
                let Some(id) = block.get("tool_use_id").and_then(Value::as_str) else {
                    return Err(GatewayError::invalid(format!(
                        "messages.{i}.content.{j}.tool_use_id: Field required"
                    ))
                    .with_param(format!("messages.{i}.content.{j}.tool_use_id")));
                };
                let text = tool_result_content(i, j, block.get("content"), &mut tool_images)?;
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(i, j, other)),
        }
    }
    tool_images.extend(parts);
    let parts = tool_images;
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": simplify_parts(parts)}));
    }
    Ok(())
}

/// A lone text part is sent as a plain string (understood by every
/// OpenAI-compatible upstream); anything else as a list of parts.
fn simplify_parts(mut parts: Vec<Value>) -> Value {
    if parts.len() == 1 && parts[0].get("type").and_then(Value::as_str) == Some("text") {
        return parts.swap_remove(0)["text"].take();
    }
    Value::Array(parts)
}

/// The text of a `tool_result`'s content (a string or text and image
/// blocks); its images are moved to `images`.
fn tool_result_content(
    i: usize,
    j: usize,
    content: Option<&Value>,
    images: &mut Vec<Value>,
) -> Result<String, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for block in blocks {
                match block_type(block) {
                    "text" => texts.push(str_field(block, "text")),
                    "image" => images.push(image_part(i, j, block)?),
                    "document" => images.push(document_part(i, j, block)?),
                    other => return Err(unsupported_block(i, j, other)),
                }
            }
            Ok(texts.join("\n"))
        }
        Some(other) => Ok(other.to_string()),
    }
}

/// An `image` block → an OpenAI `image_url` part.
fn image_part(i: usize, j: usize, block: &Value) -> Result<Value, GatewayError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let url = match str_field(source, "type") {
        "base64" => format!(
            "data:{};base64,{}",
            str_field(source, "media_type"),
            str_field(source, "data")
        ),
        "url" => str_field(source, "url").to_owned(),
        other => {
            return Err(GatewayError::invalid(format!(
                "messages.{i}.content.{j}.source: image source `{other}` cannot be sent to this model"
            ))
            .with_param(format!("messages.{i}.content.{j}.source")));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A `document` block: a base64 PDF becomes an OpenAI `file` part, plain
/// text (or a list of text blocks) a text part.
fn document_part(i: usize, j: usize, block: &Value) -> Result<Value, GatewayError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    match str_field(source, "type") {
        "base64" => {
            let media_type = str_field(source, "media_type");
            let filename = block
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("document.pdf");
            Ok(json!({"type": "file", "file": {
                "filename": filename,
                "file_data": format!("data:{media_type};base64,{}", str_field(source, "data")),
            }}))
        }
        "text" => Ok(json!({"type": "text", "text": str_field(source, "data")})),
        "content" => {
            let mut texts = Vec::new();
            if let Some(blocks) = source.get("content").and_then(Value::as_array) {
                texts.extend(blocks.iter().map(|b| str_field(b, "text")));
            } else if let Some(s) = source.get("content").and_then(Value::as_str) {
                texts.push(s);
            }
            Ok(json!({"type": "text", "text": texts.join("\n")}))
        }
        other => Err(GatewayError::invalid(format!(
            "messages.{i}.content.{j}.source: document source `{other}` cannot be sent to this model"
        ))
        .with_param(format!("messages.{i}.content.{j}.source"))),
    }
}

/// An assistant turn: texts joined into `content`, `tool_use` blocks into
/// `tool_calls`. A turn holding only thinking is dropped.
fn convert_assistant_blocks(
    i: usize,
    blocks: &[Value],
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block_type(block) {
            "text" => texts.push(str_field(block, "text")),
            "tool_use" => {
                let input = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(v) => v.to_string(),
                };
                calls.push(json!({
                    "id": str_field(block, "id"),
                    "type": "function",
                    "function": {"name": str_field(block, "name"), "arguments": input},
                }));
            }
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(i, j, other)),
        }
    }
    if texts.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if texts.is_empty() {
        Value::Null
    } else {
        json!(texts.join("\n\n"))
    };
    message.insert("content".into(), content);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    out.push(Value::Object(message));
    Ok(())
}

/// Client tools → OpenAI function tools. Server tools and Anthropic-defined
/// tools (any `type` other than `custom`) have no counterpart.
fn convert_tools(tools: Option<&Value>) -> Result<Vec<Value>, GatewayError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(t)) => t,
        Some(_) => {
            return Err(
                GatewayError::invalid("tools: Input should be a valid list").with_param("tools")
            );
        }
    };
    let mut out = Vec::with_capacity(tools.len());
    for (k, tool) in tools.iter().enumerate() {
        if let Some(kind) = tool.get("type").and_then(Value::as_str)
            && kind != "custom"
        {
            return Err(GatewayError::invalid(format!(
                "tools.{k}: tool type `{kind}` is not supported by this model"
            ))
            .with_param(format!("tools.{k}.type")));
        }
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return Err(
                GatewayError::invalid(format!("tools.{k}.name: Field required"))
                    .with_param(format!("tools.{k}.name")),
            );
        };
        let parameters = tool
            .get("input_schema")
            .filter(|s| s.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        if let Some(description) = tool.get("description").and_then(Value::as_str) {
            function.insert("description".into(), json!(description));
        }
        function.insert("parameters".into(), parameters);
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// `tool_choice` → OpenAI's, and whether parallel tool calls stay allowed.
fn convert_tool_choice(choice: &Value) -> Result<(Value, bool), GatewayError> {
    let parallel = !choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let converted = match str_field(choice, "type") {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => match choice.get("name").and_then(Value::as_str) {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => {
                return Err(GatewayError::invalid("tool_choice.name: Field required")
                    .with_param("tool_choice.name"));
            }
        },
        other => {
            return Err(GatewayError::invalid(format!(
                "tool_choice.type: `{other}` is not one of 'auto', 'any', 'tool', 'none'"
            ))
            .with_param("tool_choice.type"));
        }
    };
    Ok((converted, parallel))
}

/// `thinking: {type: "enabled", budget_tokens}` → a reasoning effort by
/// budget: under 4,096 tokens low, under 16,384 medium, else high.
fn reasoning_effort(thinking: &Value) -> Option<&'static str> {
    if str_field(thinking, "type") != "enabled" {
        return None;
    }
    let budget = thinking
        .get("budget_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(match budget {
        0..4_096 => "low",
        4_096..16_384 => "medium",
        _ => "high",
    })
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

fn upstream_error(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::Upstream, message)
}

/// Token counts of an OpenAI `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ChatUsage {
    prompt: u64,
    completion: u64,
    /// Prompt tokens read from the provider's cache (part of `prompt`).
    cached: u64,
}

impl ChatUsage {
    fn from_json(usage: Option<&Value>) -> Option<Self> {
        let usage = usage?.as_object()?;
        let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let cached = usage
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens"))
            .or_else(|| usage.get("prompt_cache_hit_tokens"));
        Some(Self {
            prompt: n(usage.get("prompt_tokens")),
            completion: n(usage.get("completion_tokens")),
            cached: n(cached),
        })
    }

    /// Anthropic's usage: `input_tokens` counts only uncached input.
    fn to_anthropic(self) -> Value {
        json!({
            "input_tokens": self.prompt.saturating_sub(self.cached),
            "output_tokens": self.completion,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cached,
        })
    }
}

/// The gateway's usage record in Anthropic's terms (the record counts cache
/// reads and writes inside `input_tokens`; Anthropic does not).
fn usage_to_anthropic(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage
            .input_tokens
            .saturating_sub(usage.cache_read_tokens)
            .saturating_sub(usage.cache_write_tokens),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    })
}

/// The model's reasoning text, as DeepSeek-style `reasoning_content` or
/// OpenRouter/vLLM-style `reasoning`.
fn reasoning_of(message: &Value) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| message.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// A message's `content`: a string, or (some upstreams) a list of parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Tool call arguments as an object (Anthropic's `input` is always one).
fn parse_arguments(arguments: Option<&Value>) -> Value {
    match arguments {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({}),
        },
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    }
}

/// OpenAI's `finish_reason` → Anthropic's `stop_reason`.
fn stop_reason(finish_reason: Option<&str>, called_tools: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if called_tools => "tool_use",
        _ => "end_turn",
    }
}

fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

fn new_tool_id() -> String {
    format!("toolu_{}", uuid::Uuid::new_v4().simple())
}

/// Translate a canonical `chat.completion` into an Anthropic `message`
/// (the first choice; Anthropic has no `n`).
pub fn chat_to_response(chat: &[u8], model: &str) -> Result<Vec<u8>, GatewayError> {
    let chat: Value = serde_json::from_slice(chat)
        .map_err(|e| upstream_error(format!("the upstream answer is not valid JSON: {e}")))?;
    let choice = chat
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| upstream_error("the upstream answer has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);

    let mut content = Vec::new();
    if let Some(reasoning) = reasoning_of(message) {
        content.push(json!({"type": "thinking", "thinking": reasoning, "signature": ""}));
    }
    let text = content_text(message.get("content"));
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for call in calls {
        let function = call.get("function").unwrap_or(&Value::Null);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(new_tool_id, str::to_owned);
        content.push(json!({
            "type": "tool_use",
            "id": id,
            "name": str_field(function, "name"),
            "input": parse_arguments(function.get("arguments")),
        }));
    }

    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let usage = ChatUsage::from_json(chat.get("usage")).unwrap_or_default();
    let response = json!({
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish, !calls.is_empty()),
        "stop_sequence": null,
        "usage": usage.to_anthropic(),
    });
    Ok(response.to_string().into_bytes())
}

/// An error in Anthropic's envelope, typed by status as Anthropic does.
pub fn error_body(e: &GatewayError) -> Value {
    let kind = match e.status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": e.message}})
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// The content block currently open in the Anthropic stream.
#[derive(Debug, Clone, PartialEq)]
enum OpenBlock {
    Thinking,
    Text,
    /// A tool call: OpenAI's tool-call `index` and the call's id.
    Tool {
        openai_index: u64,
        id: String,
    },
}

/// Turns a stream of canonical `chat.completion.chunk`s into Anthropic's
/// Messages event stream.
///
/// Blocks are opened as content arrives and closed when another kind of
/// content starts: reasoning becomes a `thinking` block, text a `text` block
/// and each tool call a `tool_use` block fed by `input_json_delta`s. Tool
/// calls are expected one after another, as OpenAI streams them; argument
/// fragments of a call whose block was already closed are dropped.
#[derive(Debug)]
pub struct StreamConverter {
    model: String,
    id: String,
    started: bool,
    finished: bool,
    /// Index the next content block gets.
    next_index: u64,
    open: Option<OpenBlock>,
    /// OpenAI tool-call indexes that already had a block.
    tool_indexes: Vec<u64>,
    finish_reason: Option<String>,
    usage: Option<ChatUsage>,
}

/// An SSE event named after its `type`.
fn event(data: Value) -> SseEvent {
    SseEvent {
        name: data.get("type").and_then(Value::as_str).map(str::to_owned),
        data: data.to_string().into_bytes(),
    }
}

impl StreamConverter {
    /// A converter for one stream answering as `model`.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            id: new_message_id(),
            started: false,
            finished: false,
            next_index: 0,
            open: None,
            tool_indexes: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    /// One canonical chunk (the JSON of one `data:` line) → events. Chunks
    /// that are not JSON objects are ignored.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.finished {
            return events;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(chunk) else {
            return events;
        };
        if let Some(usage) = ChatUsage::from_json(chunk.get("usage")) {
            self.usage = Some(usage);
        }
        self.start(&mut events);

        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| {
                choices
                    .iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            });
        let Some(choice) = choice else {
            return events;
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(reasoning) = reasoning_of(delta) {
                if self.open != Some(OpenBlock::Thinking) {
                    self.open_block(
                        OpenBlock::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        &mut events,
                    );
                }
                self.delta(
                    json!({"type": "thinking_delta", "thinking": reasoning}),
                    &mut events,
                );
            }
            let text = content_text(delta.get("content"));
            if !text.is_empty() {
                if self.open != Some(OpenBlock::Text) {
                    self.open_block(
                        OpenBlock::Text,
                        json!({"type": "text", "text": ""}),
                        &mut events,
                    );
                }
                self.delta(json!({"type": "text_delta", "text": text}), &mut events);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.tool_call(position as u64, call, &mut events);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        events
    }

    /// The stream is over: close the open block, then `message_delta` with
    /// the stop reason and usage (`usage` if given, else what the chunks
    /// reported) and `message_stop`. Later calls return nothing.
    pub fn finish(&mut self, usage: Option<&Usage>) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.finished {
            return events;
        }
        self.start(&mut events);
        self.close_block(&mut events);
        self.finished = true;
        let usage = match (usage, self.usage) {
            (Some(usage), _) => usage_to_anthropic(usage),
            (None, Some(usage)) => usage.to_anthropic(),
            (None, None) => json!({"output_tokens": 0}),
        };
        let stop = stop_reason(self.finish_reason.as_deref(), !self.tool_indexes.is_empty());
        events.push(event(json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": usage,
        })));
        events.push(event(json!({"type": "message_stop"})));
        events
    }

    /// `message_start` and a `ping`, once.
    fn start(&mut self, events: &mut Vec<SseEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = self.usage.unwrap_or_default();
        events.push(event(json!({
            "type": "message_start",
            "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": usage.prompt.saturating_sub(usage.cached),
                    "output_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": usage.cached,
                },
            },
        })));
        events.push(event(json!({"type": "ping"})));
    }

    fn open_block(&mut self, block: OpenBlock, content_block: Value, events: &mut Vec<SseEvent>) {
        self.close_block(events);
        events.push(event(json!({
            "type": "content_block_start",
            "index": self.next_index,
            "content_block": content_block,
        })));
        self.next_index += 1;
        self.open = Some(block);
    }

    fn close_block(&mut self, events: &mut Vec<SseEvent>) {
        if self.open.take().is_some() {
            events.push(event(json!({
                "type": "content_block_stop",
                "index": self.next_index.saturating_sub(1),
            })));
        }
    }

    /// A delta for the open block.
    fn delta(&self, delta: Value, events: &mut Vec<SseEvent>) {
        events.push(event(json!({
            "type": "content_block_delta",
            "index": self.next_index.saturating_sub(1),
            "delta": delta,
        })));
    }

    /// One entry of a chunk's `delta.tool_calls`.
    fn tool_call(&mut self, position: u64, call: &Value, events: &mut Vec<SseEvent>) {
        if !call.is_object() {
            return;
        }
        let index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let function = call.get("function").unwrap_or(&Value::Null);
        let continues = match &self.open {
            Some(OpenBlock::Tool {
                openai_index,
                id: open_id,
            }) => *openai_index == index && id.is_none_or(|id| id == open_id),
            _ => false,
        };
        if !continues {
            let name = function.get("name").and_then(Value::as_str);
            if id.is_none() && (name.is_none() || self.tool_indexes.contains(&index)) {
                // A late fragment of a call whose block is closed, or a
                // fragment of a call that never started.
                return;
            }
            let id = id.map_or_else(new_tool_id, str::to_owned);
            self.open_block(
                OpenBlock::Tool {
                    openai_index: index,
                    id: id.clone(),
                },
                json!({
                    "type": "tool_use",
                    "id": id,
                    "name": name.unwrap_or_default(),
                    "input": {},
                }),
                events,
            );
            self.tool_indexes.push(index);
        }
        let arguments = str_field(function, "arguments");
        if !arguments.is_empty() {
            self.delta(
                json!({"type": "input_json_delta", "partial_json": arguments}),
                events,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn to_json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn chat(body: Value) -> Value {
        to_json(&request_to_chat(body.to_string().as_bytes(), "claude-x", false).unwrap())
    }

    fn chat_err(body: Value) -> GatewayError {
        request_to_chat(body.to_string().as_bytes(), "claude-x", false).unwrap_err()
    }

    fn names(events: &[SseEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| e.name.clone().unwrap_or_default())
            .collect()
    }

    fn datas(events: &[SseEvent]) -> Vec<Value> {
        events.iter().map(|e| to_json(&e.data)).collect()
    }

    fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: 0,
            units: Vec::new(),
        }
    }

    // --- requests -----------------------------------------------------------

    #[test]
    fn basic_request() {
        // The shape of the Messages API's first example.
        let out = chat(json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello, world"}]
        }));
        assert_eq!(
            out,
            json!({
                "model": "claude-x",
                "max_tokens": 1024,
                "messages": [{"role": "user", "content": "Hello, world"}]
            })
        );
    }

    #[test]
    fn sampling_stop_stream_and_system() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 512,
            "system": [
                {"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}
            ],
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["\n\nHuman:"],
            "metadata": {"user_id": "u-1"},
            "stream": true,
            "messages": [{"role": "user", "content": "Hi"}]
        });
        let out = to_json(&request_to_chat(body.to_string().as_bytes(), "m", true).unwrap());
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "You are terse.\n\nAnswer in French."})
        );
        assert_eq!(out["temperature"], 0.2);
        assert_eq!(out["top_p"], 0.9);
        assert!(out.get("top_k").is_none());
        assert_eq!(out["stop"], json!(["\n\nHuman:"]));
        assert_eq!(out["user"], "u-1");
        assert_eq!(out["stream"], true);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));

        let out = chat(json!({
            "model": "m", "max_tokens": 5, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}]
        }));
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert!(out.get("stream").is_none());
    }

    #[test]
    fn images_and_documents() {
        let out = chat(json!({
            "model": "m", "max_tokens": 100,
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                {"type": "document", "title": "report.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Plain doc"}},
                {"type": "text", "text": "Describe these."}
            ]}]
        }));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
                {"type": "text", "text": "Plain doc"},
                {"type": "text", "text": "Describe these."}
            ])
        );
        let e = chat_err(json!({
            "model": "m", "max_tokens": 100,
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
            ]}]
        }));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("messages.0.content.0.source"));
    }

    #[test]
    fn tool_use_round_trip() {
        // The shape of the tool-use guide's second request.
        let out = chat(json!({
            "model": "claude-opus-4-1",
            "max_tokens": 1024,
            "tools": [{
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "input_schema": {
                    "type": "object",
                    "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
                    "required": ["location"]
                }
            }],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "What's the weather like in San Francisco?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Let me check.", "signature": "sig"},
                    {"type": "text", "text": "<thinking>I need to use get_weather.</thinking>"},
                    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "celsius"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
                    {"type": "text", "text": "And tomorrow?"}
                ]}
            ]
        }));
        assert_eq!(
            out["tools"],
            json!([{"type": "function", "function": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object",
                    "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
                    "required": ["location"]
                }
            }}])
        );
        assert_eq!(out["tool_choice"], "auto");
        assert_eq!(out["parallel_tool_calls"], false);
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[1]["role"], "assistant");
        assert_eq!(
            messages[1]["content"],
            "<thinking>I need to use get_weather.</thinking>"
        );
        let call = &messages[1]["tool_calls"][0];
        assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "celsius"})
        );
        assert_eq!(
            messages[2],
            json!({"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"})
        );
        assert_eq!(
            messages[3],
            json!({"role": "user", "content": "And tomorrow?"})
        );
    }

    #[test]
    fn tool_results_with_blocks_and_images() {
        let out = chat(json!({
            "model": "m", "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "Look"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "shot", "input": {}},
                    {"type": "tool_use", "id": "t2", "name": "ls", "input": {"dir": "/"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [
                        {"type": "text", "text": "screenshot taken"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
                    ]},
                    {"type": "tool_result", "tool_use_id": "t2", "is_error": true, "content": [
                        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}
                    ]}
                ]}
            ]
        }));
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages[1]["content"], Value::Null);
        assert_eq!(messages[1]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            messages[2],
            json!({"role": "tool", "tool_call_id": "t1", "content": "screenshot taken"})
        );
        assert_eq!(
            messages[3],
            json!({"role": "tool", "tool_call_id": "t2", "content": "a\nb"})
        );
        assert_eq!(
            messages[4],
            json!({"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
            ]})
        );
        assert_eq!(messages.len(), 5);
    }

    #[test]
    fn tool_choice_variants() {
        let body = |choice: Value| {
            json!({
                "model": "m", "max_tokens": 10,
                "tools": [{"name": "f", "input_schema": {"type": "object"}}],
                "tool_choice": choice,
                "messages": [{"role": "user", "content": "x"}]
            })
        };
        assert_eq!(
            chat(body(json!({"type": "any"})))["tool_choice"],
            "required"
        );
        assert_eq!(chat(body(json!({"type": "none"})))["tool_choice"], "none");
        let out = chat(body(json!({"type": "tool", "name": "f"})));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        assert!(out.get("parallel_tool_calls").is_none());
        assert_eq!(
            chat_err(body(json!({"type": "sometimes"})))
                .param
                .as_deref(),
            Some("tool_choice.type")
        );
        // No tools: tool_choice is dropped (OpenAI refuses it alone).
        let out = chat(json!({
            "model": "m", "max_tokens": 10, "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": "x"}]
        }));
        assert!(out.get("tool_choice").is_none());
        assert!(out.get("tools").is_none());
    }

    #[test]
    fn server_tools_are_refused() {
        let e = chat_err(json!({
            "model": "m", "max_tokens": 10,
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
            "messages": [{"role": "user", "content": "x"}]
        }));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("tools.0.type"));
        // An explicit "custom" type is a client tool.
        let out = chat(json!({
            "model": "m", "max_tokens": 10,
            "tools": [{"type": "custom", "name": "f", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "x"}]
        }));
        assert_eq!(out["tools"][0]["function"]["name"], "f");
    }

    #[test]
    fn thinking_budget_to_effort() {
        let body = |thinking: Value| {
            json!({"model": "m", "max_tokens": 20000, "thinking": thinking,
                   "messages": [{"role": "user", "content": "x"}]})
        };
        let effort = |thinking: Value| chat(body(thinking))["reasoning_effort"].clone();
        assert_eq!(
            effort(json!({"type": "enabled", "budget_tokens": 1024})),
            "low"
        );
        assert_eq!(
            effort(json!({"type": "enabled", "budget_tokens": 10000})),
            "medium"
        );
        assert_eq!(
            effort(json!({"type": "enabled", "budget_tokens": 32000})),
            "high"
        );
        assert_eq!(effort(json!({"type": "disabled"})), Value::Null);
    }

    #[test]
    fn validation_errors() {
        let cases = [
            (
                json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
                "model",
            ),
            (
                json!({"model": "", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
                "model",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "max_tokens": -3, "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "max_tokens": "9", "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "max_tokens": 1.5, "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (json!({"model": "m", "max_tokens": 1}), "messages"),
            (
                json!({"model": "m", "max_tokens": 1, "messages": []}),
                "messages",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": {}}),
                "messages",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
                "messages.0.role",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user"}]}),
                "messages.0.content",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "content": "x"}]}]}),
                "messages.0.content.0.tool_use_id",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "container_upload", "file_id": "f"}]}]}),
                "messages.0.content.0.type",
            ),
        ];
        for (body, param) in cases {
            let e = chat_err(body.clone());
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        assert_eq!(
            chat_err(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})).message,
            "max_tokens: Field required"
        );
        // A whole float is an integer.
        let out = chat(
            json!({"model": "m", "max_tokens": 64.0, "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!(out["max_tokens"], 64);
    }

    #[test]
    fn invalid_json_is_invalid() {
        for body in [&b"{not json"[..], b"[1,2]", b""] {
            let e = request_to_chat(body, "m", false).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            let e = count_tokens(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    // --- responses ----------------------------------------------------------

    #[test]
    fn text_response() {
        let openai = json!({
            "id": "chatcmpl-123",
            "object": "chat.completion",
            "created": 1677652288,
            "model": "gpt-4o-mini",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, how may I assist you today?"},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
        });
        let out = to_json(&chat_to_response(openai.to_string().as_bytes(), "claude-x").unwrap());
        assert!(out["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(out["type"], "message");
        assert_eq!(out["role"], "assistant");
        assert_eq!(out["model"], "claude-x");
        assert_eq!(
            out["content"],
            json!([{"type": "text", "text": "Hello there, how may I assist you today?"}])
        );
        assert_eq!(out["stop_reason"], "end_turn");
        assert_eq!(out["stop_sequence"], Value::Null);
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 9, "output_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        );
    }

    #[test]
    fn tool_and_thinking_response_with_cache() {
        let openai = json!({
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "model": "deepseek-reasoner",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me look.",
                    "reasoning_content": "The user wants weather.",
                    "tool_calls": [
                        {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Boston, MA\"}"}},
                        {"id": "call_def456", "type": "function", "function": {"name": "broken", "arguments": "{\"loc"}}
                    ]
                },
                "finish_reason": "tool_calls"
            }],
            "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                      "prompt_tokens_details": {"cached_tokens": 1920}}
        });
        let out = to_json(&chat_to_response(openai.to_string().as_bytes(), "m").unwrap());
        assert_eq!(
            out["content"],
            json!([
                {"type": "thinking", "thinking": "The user wants weather.", "signature": ""},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "call_abc123", "name": "get_weather", "input": {"location": "Boston, MA"}},
                {"type": "tool_use", "id": "call_def456", "name": "broken", "input": {}}
            ])
        );
        assert_eq!(out["stop_reason"], "tool_use");
        assert_eq!(out["usage"]["input_tokens"], 86);
        assert_eq!(out["usage"]["cache_read_input_tokens"], 1920);
        assert_eq!(out["usage"]["output_tokens"], 300);
    }

    #[test]
    fn stop_reasons() {
        for (finish, expected) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("tool_calls", "tool_use"),
            ("content_filter", "refusal"),
        ] {
            let openai = json!({"choices": [{"message": {"role": "assistant", "content": "x"}, "finish_reason": finish}]});
            let out = to_json(&chat_to_response(openai.to_string().as_bytes(), "m").unwrap());
            assert_eq!(out["stop_reason"], expected, "{finish}");
        }
    }

    #[test]
    fn unusable_upstream_answers() {
        let e = chat_to_response(b"<html>", "m").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
        let e = chat_to_response(br#"{"choices": []}"#, "m").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
    }

    #[test]
    fn error_types_by_status() {
        let cases = [
            (GatewayError::invalid("bad"), "invalid_request_error"),
            (GatewayError::unauthenticated("who"), "authentication_error"),
            (GatewayError::forbidden("no"), "permission_error"),
            (
                GatewayError::new(ErrorKind::InsufficientQuota, "broke"),
                "permission_error",
            ),
            (GatewayError::not_found("gone"), "not_found_error"),
            (
                GatewayError::new(ErrorKind::PayloadTooLarge, "big"),
                "request_too_large",
            ),
            (
                GatewayError::new(ErrorKind::RateLimited, "slow"),
                "rate_limit_error",
            ),
            (GatewayError::internal("oops"), "api_error"),
            (
                GatewayError::new(ErrorKind::Upstream, "bad gw"),
                "api_error",
            ),
            (GatewayError::unavailable("busy"), "overloaded_error"),
            (
                GatewayError::new(ErrorKind::Upstream, "x")
                    .with_status(StatusCode::from_u16(529).unwrap()),
                "overloaded_error",
            ),
            (
                GatewayError::invalid("x").with_status(StatusCode::CONFLICT),
                "invalid_request_error",
            ),
        ];
        for (e, kind) in cases {
            let body = error_body(&e);
            assert_eq!(
                body,
                json!({"type": "error", "error": {"type": kind, "message": e.message}})
            );
        }
    }

    // --- count_tokens --------------------------------------------------------

    #[test]
    fn counts_tokens() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "system": "You are a scientist",
            "messages": [{"role": "user", "content": "Hello, Claude"}]
        });
        let n = count_tokens(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            n,
            tokens::count("claude-sonnet-4-5", "You are a scientist\nHello, Claude")
        );

        let with_tools = json!({
            "model": "claude-sonnet-4-5",
            "tools": [{"name": "get_weather", "description": "Get the weather", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Hello, Claude"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
                ]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "sunny"}]}]}
            ]
        });
        let n2 = count_tokens(with_tools.to_string().as_bytes()).unwrap();
        assert!(n2 > n + IMAGE_TOKENS, "{n2}");
        assert_eq!(
            estimate_tokens(with_tools.to_string().as_bytes()).unwrap(),
            (n2, true)
        );

        // Past what is counted ahead, an estimate, near the whole count.
        let long = json!({
            "model": "claude-sonnet-4-5",
            "messages": [{"role": "user", "content": "Hello, Claude. ".repeat(10_000)}]
        });
        let body = long.to_string();
        let whole = count_tokens(body.as_bytes()).unwrap();
        let (guess, exact) = estimate_tokens(body.as_bytes()).unwrap();
        assert!(
            !exact && guess.abs_diff(whole) * 100 <= whole,
            "{guess} {whole}"
        );
    }

    #[test]
    fn count_tokens_validation() {
        let e = count_tokens(br#"{"messages": [{"role": "user", "content": "x"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = count_tokens(br#"{"model": "m"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        // max_tokens is not required here.
        assert!(
            count_tokens(br#"{"model": "m", "messages": [{"role": "user", "content": "x"}]}"#)
                .is_ok()
        );
    }

    // --- streams ------------------------------------------------------------

    fn chunk(delta: Value, finish: Option<&str>) -> Vec<u8> {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        })
        .to_string()
        .into_bytes()
    }

    fn usage_chunk(prompt: u64, completion: u64, cached: u64) -> Vec<u8> {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached}}
        })
        .to_string()
        .into_bytes()
    }

    /// Every event's name is its data's `type`.
    fn assert_named(events: &[SseEvent]) {
        for e in events {
            let data = to_json(&e.data);
            assert_eq!(e.name.as_deref(), data["type"].as_str(), "{data}");
        }
    }

    #[test]
    fn text_stream_matches_anthropics_sequence() {
        let mut c = StreamConverter::new("claude-x");
        let mut events = Vec::new();
        events.extend(c.push(&chunk(json!({"role": "assistant", "content": ""}), None)));
        events.extend(c.push(&chunk(json!({"content": "Hello"}), None)));
        events.extend(c.push(&chunk(json!({"content": "!"}), None)));
        events.extend(c.push(&chunk(json!({}), Some("stop"))));
        events.extend(c.push(&usage_chunk(25, 15, 0)));
        events.extend(c.finish(None));
        assert_named(&events);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let d = datas(&events);
        let message = &d[0]["message"];
        assert!(message["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(message["type"], "message");
        assert_eq!(message["role"], "assistant");
        assert_eq!(message["model"], "claude-x");
        assert_eq!(message["content"], json!([]));
        assert_eq!(message["stop_reason"], Value::Null);
        assert_eq!(message["usage"]["input_tokens"], 0);
        assert_eq!(message["usage"]["output_tokens"], 0);
        assert_eq!(d[1], json!({"type": "ping"}));
        assert_eq!(
            d[2],
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            d[3],
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}})
        );
        assert_eq!(d[5], json!({"type": "content_block_stop", "index": 0}));
        assert_eq!(
            d[6],
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"input_tokens": 25, "output_tokens": 15, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
            })
        );
        assert_eq!(d[7], json!({"type": "message_stop"}));
        // finish is idempotent, and nothing follows it.
        assert!(c.finish(None).is_empty());
        assert!(c.push(&chunk(json!({"content": "late"}), None)).is_empty());
    }

    #[test]
    fn thinking_then_text_then_tools() {
        let mut c = StreamConverter::new("m");
        let mut events = Vec::new();
        events.extend(c.push(&chunk(
            json!({"role": "assistant", "reasoning_content": "Hmm"}),
            None,
        )));
        events.extend(c.push(&chunk(json!({"reasoning_content": ", weather."}), None)));
        events.extend(c.push(&chunk(json!({"content": "Checking."}), None)));
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        )));
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
            None,
        )));
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            None,
        )));
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}),
            None,
        )));
        events.extend(c.push(&chunk(json!({}), Some("tool_calls"))));
        events.extend(c.finish(Some(&usage(100, 40, 30, 10))));
        assert_named(&events);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let d = datas(&events);
        assert_eq!(
            d[2]["content_block"],
            json!({"type": "thinking", "thinking": "", "signature": ""})
        );
        assert_eq!(
            d[3]["delta"],
            json!({"type": "thinking_delta", "thinking": "Hmm"})
        );
        assert_eq!(d[6]["index"], 1);
        assert_eq!(d[6]["content_block"]["type"], "text");
        assert_eq!(
            d[9],
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}})
        );
        assert_eq!(
            d[10],
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}})
        );
        assert_eq!(d[11]["delta"]["partial_json"], "\"Paris\"}");
        assert_eq!(d[12], json!({"type": "content_block_stop", "index": 2}));
        assert_eq!(d[13]["index"], 3);
        assert_eq!(d[13]["content_block"]["id"], "call_2");
        assert_eq!(d[13]["content_block"]["name"], "get_time");
        assert_eq!(d[15], json!({"type": "content_block_stop", "index": 3}));
        assert_eq!(d[16]["delta"]["stop_reason"], "tool_use");
        // The record's input counts cache reads and writes; Anthropic's does not.
        assert_eq!(
            d[16]["usage"],
            json!({"input_tokens": 60, "output_tokens": 40, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 30})
        );
        // The partial JSON of each tool block reassembles into its input.
        let partial: String = d[10..12]
            .iter()
            .map(|e| e["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(to_json(partial.as_bytes()), json!({"location": "Paris"}));
    }

    #[test]
    fn tool_calls_without_indexes_and_late_fragments() {
        let mut c = StreamConverter::new("m");
        let mut events = Vec::new();
        // Two complete calls in one chunk, without `index` (some upstreams).
        events.extend(c.push(&chunk(
            json!({"tool_calls": [
                {"id": "a", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                {"id": "b", "function": {"name": "g", "arguments": "{}"}}
            ]}),
            None,
        )));
        // Two calls that all claim index 0 but carry distinct ids.
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "h", "arguments": "{}"}}]}),
            None,
        )));
        // A fragment for a call whose block is already closed is dropped.
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "oops"}}]}),
            None,
        )));
        events.extend(c.finish(None));
        let d = datas(&events);
        let starts: Vec<&Value> = d
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .map(|e| &e["content_block"]["id"])
            .collect();
        assert_eq!(starts, [&json!("a"), &json!("b"), &json!("c")]);
        assert!(!d.iter().any(|e| e["delta"]["partial_json"] == "oops"));
        let last = &d[d.len() - 2];
        assert_eq!(last["delta"]["stop_reason"], "tool_use");
        assert_eq!(last["usage"], json!({"output_tokens": 0}));
    }

    #[test]
    fn missing_tool_ids_are_generated() {
        let mut c = StreamConverter::new("m");
        let events = c.push(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}),
            None,
        ));
        let d = datas(&events);
        assert!(
            d[2]["content_block"]["id"]
                .as_str()
                .unwrap()
                .starts_with("toolu_")
        );
    }

    #[test]
    fn usage_from_chunks_and_length_stop() {
        let mut c = StreamConverter::new("m");
        let mut events = c.push(&chunk(json!({"content": "abc"}), Some("length")));
        events.extend(c.push(&usage_chunk(50, 7, 20)));
        events.extend(c.finish(None));
        let d = datas(&events);
        let delta = &d[d.len() - 2];
        assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
        assert_eq!(
            delta["usage"],
            json!({"input_tokens": 30, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 20})
        );
    }

    #[test]
    fn empty_and_garbage_streams() {
        let mut c = StreamConverter::new("m");
        for garbage in [&b"not json"[..], b"[DONE]", b"42", b"\"s\"", b"", b"[]"] {
            assert!(c.push(garbage).is_empty());
        }
        // Odd but valid JSON objects do not break anything either.
        let weird = [
            json!({"choices": "x"}),
            json!({"choices": [null, 3]}),
            json!({"choices": [{"delta": {"content": 5, "tool_calls": "x"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [null, {"index": "a", "function": 3}]}}]}),
            json!({"usage": "none"}),
        ];
        let mut events = Vec::new();
        for w in weird {
            events.extend(c.push(w.to_string().as_bytes()));
        }
        events.extend(c.finish(None));
        assert_named(&events);
        let kinds = names(&events);
        assert_eq!(kinds[0], "message_start");
        assert_eq!(kinds[kinds.len() - 1], "message_stop");
        // A stream with no chunk at all still has a complete envelope.
        let mut c = StreamConverter::new("m");
        let events = c.finish(None);
        assert_eq!(
            names(&events),
            ["message_start", "ping", "message_delta", "message_stop"]
        );
    }

    #[test]
    fn other_choices_are_ignored() {
        let mut c = StreamConverter::new("m");
        let body = json!({"choices": [{"index": 1, "delta": {"content": "second"}}]});
        let events = c.push(body.to_string().as_bytes());
        assert_eq!(names(&events), ["message_start", "ping"]);
    }
}

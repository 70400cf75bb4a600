//! Gemini's `generateContent`, `streamGenerateContent`, `countTokens` and
//! `embedContent` served by canonical channels: requests become OpenAI
//! `chat.completions` (or `embeddings`) requests, and the answers become
//! `GenerateContentResponse`s, whole or as a stream of them.
//!
//! Keys are read in REST's camelCase (what the `google-genai` SDKs send) or
//! in the protobuf snake_case some clients use. Gemini's OpenAPI-subset
//! schemas (`"type": "STRING"`) are lowered to JSON Schema.
//!
//! What does not translate: built-in tools (Google Search, code execution,
//! URL context, ...) are refused; thought parts sent back in the history are
//! dropped, and the model's reasoning is not returned as thought parts (only
//! counted in `thoughtsTokenCount`); `fileData` is accepted for images only.

use serde_json::{Map, Value, json};

use super::SseEvent;
use crate::adapters::Usage;
use crate::billing::tokens;
use crate::error::{ErrorKind, GatewayError};

/// Tokens Gemini bills per image (and counted here per media part).
const MEDIA_TOKENS: u64 = 258;

// ---------------------------------------------------------------------------
// Field access
// ---------------------------------------------------------------------------

/// `camelCase` → `snake_case`.
fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A field by its camelCase name or its snake_case spelling; `null` counts
/// as absent.
fn field<'a>(v: &'a Value, camel: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(camel)
        .filter(|v| !v.is_null())
        .or_else(|| obj.get(&snake(camel)).filter(|v| !v.is_null()))
}

fn str_of<'a>(v: &'a Value, camel: &str) -> Option<&'a str> {
    field(v, camel).and_then(Value::as_str)
}

fn parse_object(body: &[u8]) -> Result<Value, GatewayError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(GatewayError::invalid(
            "Invalid JSON payload received. The request body must be a JSON object.",
        )),
        Err(e) => Err(GatewayError::invalid(format!(
            "Invalid JSON payload received. {e}"
        ))),
    }
}

fn upstream_error(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::Upstream, message)
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Ids for tool calls, which Gemini's history usually leaves out: each
/// `functionCall` gets one (its own `id`, or `call_<n>`), and each
/// `functionResponse` takes the id of the earliest unanswered call of the
/// same name.
#[derive(Default)]
struct CallIds {
    next: usize,
    /// Calls without a response yet: (name, id).
    pending: Vec<(String, String)>,
}

impl CallIds {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("call_{}", self.next)
    }

    fn call(&mut self, name: &str, id: Option<&str>) -> String {
        let id = id.map_or_else(|| self.fresh(), str::to_owned);
        self.pending.push((name.to_owned(), id.clone()));
        id
    }

    fn response(&mut self, name: &str, id: Option<&str>) -> String {
        let position = id
            .and_then(|id| self.pending.iter().position(|(_, p)| p == id))
            .or_else(|| self.pending.iter().position(|(n, _)| n == name));
        match (position, id) {
            (Some(i), _) => self.pending.remove(i).1,
            (None, Some(id)) => id.to_owned(),
            (None, None) => self.fresh(),
        }
    }
}

/// Translate a Gemini `GenerateContentRequest` into a canonical chat request
/// for `model`. `stream` asks for a streamed answer (with a usage chunk).
/// `contents` is required and must not be empty.
pub fn request_to_chat(body: &[u8], model: &str, stream: bool) -> Result<Vec<u8>, GatewayError> {
    let req = parse_object(body)?;
    let contents = match field(&req, "contents") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        _ => {
            return Err(GatewayError::invalid(
                "* GenerateContentRequest.contents: contents is not specified",
            )
            .with_param("contents"));
        }
    };

    let mut messages = Vec::new();
    if let Some(system) = field(&req, "systemInstruction") {
        let text = system_text(system);
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let mut ids = CallIds::default();
    for (i, content) in contents.iter().enumerate() {
        convert_content(i, content, &mut ids, &mut messages)?;
    }

    let mut chat = Map::new();
    chat.insert("model".into(), json!(model));
    chat.insert("messages".into(), Value::Array(messages));

    let tools = convert_tools(field(&req, "tools"))?;
    if !tools.is_empty() {
        chat.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = field(&req, "toolConfig")
            .and_then(|c| field(c, "functionCallingConfig"))
            .and_then(tool_choice)
        {
            chat.insert("tool_choice".into(), choice);
        }
    }
    if let Some(config) = field(&req, "generationConfig") {
        convert_generation_config(config, &mut chat);
    }
    if stream {
        chat.insert("stream".into(), json!(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(chat).to_string().into_bytes())
}

/// The text of a `Content` (or, leniently, a plain string).
fn system_text(system: &Value) -> String {
    match system {
        Value::String(s) => s.clone(),
        _ => parts_of(system)
            .iter()
            .filter(|p| !is_thought(p))
            .filter_map(|p| str_of(p, "text"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn parts_of(content: &Value) -> &[Value] {
    field(content, "parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn is_thought(part: &Value) -> bool {
    field(part, "thought").and_then(Value::as_bool) == Some(true)
}

fn invalid_part(i: usize, j: usize, what: &str) -> GatewayError {
    GatewayError::invalid(format!("contents[{i}].parts[{j}]: {what}"))
        .with_param(format!("contents[{i}].parts[{j}]"))
}

/// One `Content` → chat messages: a model turn becomes one assistant message
/// (text and tool calls); a user turn becomes `tool` messages for its
/// function responses, then one user message for the rest.
fn convert_content(
    i: usize,
    content: &Value,
    ids: &mut CallIds,
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let role = str_of(content, "role").unwrap_or("user");
    let is_model = match role {
        "model" | "assistant" => true,
        "user" | "function" | "tool" | "" => false,
        _ => {
            return Err(GatewayError::invalid(format!(
                "contents[{i}].role: Please use a valid role: user, model."
            ))
            .with_param(format!("contents[{i}].role")));
        }
    };

    let mut texts = Vec::new();
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, part) in parts_of(content).iter().enumerate() {
        if is_thought(part) {
            continue;
        }
        if let Some(text) = str_of(part, "text") {
            if is_model {
                texts.push(text);
            } else {
                parts.push(json!({"type": "text", "text": text}));
            }
        } else if let Some(call) = field(part, "functionCall") {
            let name = str_of(call, "name").unwrap_or_default();
            let id = ids.call(name, str_of(call, "id"));
            let args = field(call, "args").cloned().unwrap_or_else(|| json!({}));
            calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": args.to_string()},
            }));
        } else if let Some(response) = field(part, "functionResponse") {
            let name = str_of(response, "name").unwrap_or_default();
            let id = ids.response(name, str_of(response, "id"));
            let content = match field(response, "response") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
        } else if let Some(data) = field(part, "inlineData") {
            if !is_model {
                parts.push(inline_data_part(data));
            }
        } else if let Some(file) = field(part, "fileData") {
            let mime = str_of(file, "mimeType").unwrap_or_default();
            let uri = str_of(file, "fileUri").unwrap_or_default();
            if !mime.starts_with("image/") && !mime.is_empty() {
                return Err(invalid_part(
                    i,
                    j,
                    &format!("fileData of type {mime} cannot be sent to this model"),
                ));
            }
            if !is_model {
                parts.push(json!({"type": "image_url", "image_url": {"url": uri}}));
            }
        }
        // Other parts (executableCode, codeExecutionResult, videoMetadata,
        // a lone thoughtSignature) carry nothing the chat shape can hold.
    }

    if is_model {
        if texts.is_empty() && calls.is_empty() {
            return Ok(());
        }
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        let text = texts.concat();
        message.insert(
            "content".into(),
            if text.is_empty() && !calls.is_empty() {
                Value::Null
            } else {
                json!(text)
            },
        );
        if !calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        out.push(Value::Object(message));
    } else if !parts.is_empty() {
        let content = if parts.len() == 1 && parts[0]["type"] == "text" {
            parts.swap_remove(0)["text"].take()
        } else {
            Value::Array(parts)
        };
        out.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

/// `inlineData` → an image part, an audio part (WAV and MP3, the formats
/// OpenAI takes) or a file part.
fn inline_data_part(data: &Value) -> Value {
    let mime = str_of(data, "mimeType").unwrap_or("application/octet-stream");
    let b64 = str_of(data, "data").unwrap_or_default();
    let audio_format = match mime {
        "audio/wav" | "audio/x-wav" | "audio/wave" => Some("wav"),
        "audio/mp3" | "audio/mpeg" => Some("mp3"),
        _ => None,
    };
    if mime.starts_with("image/") {
        json!({"type": "image_url", "image_url": {"url": format!("data:{mime};base64,{b64}")}})
    } else if let Some(format) = audio_format {
        json!({"type": "input_audio", "input_audio": {"data": b64, "format": format}})
    } else {
        let extension = mime.rsplit('/').next().unwrap_or("bin");
        json!({"type": "file", "file": {
            "filename": format!("file.{extension}"),
            "file_data": format!("data:{mime};base64,{b64}"),
        }})
    }
}

/// Gemini's OpenAPI-subset schema → JSON Schema: `type` values lowered
/// (`"STRING"` → `"string"`) at every level. Literal values (`enum`,
/// `default`, `example`, ...) are left alone, and property names are never
/// taken for keywords.
fn lower_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let converted = match key.as_str() {
                        "type" => match value {
                            Value::String(s) => Value::String(s.to_ascii_lowercase()),
                            Value::Array(types) => Value::Array(
                                types
                                    .iter()
                                    .map(|t| match t {
                                        Value::String(s) => Value::String(s.to_ascii_lowercase()),
                                        other => other.clone(),
                                    })
                                    .collect(),
                            ),
                            other => other.clone(),
                        },
                        "properties" | "$defs" | "definitions" | "patternProperties" => match value
                        {
                            Value::Object(props) => Value::Object(
                                props
                                    .iter()
                                    .map(|(name, s)| (name.clone(), lower_schema(s)))
                                    .collect(),
                            ),
                            other => other.clone(),
                        },
                        "enum" | "default" | "example" | "examples" | "const" | "required"
                        | "propertyOrdering" | "description" | "title" | "format" | "pattern" => {
                            value.clone()
                        }
                        _ => lower_schema(value),
                    };
                    (key.clone(), converted)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(lower_schema).collect()),
        other => other.clone(),
    }
}

/// `tools[].functionDeclarations` → OpenAI function tools. Built-in tools
/// have no counterpart on another vendor's model.
fn convert_tools(tools: Option<&Value>) -> Result<Vec<Value>, GatewayError> {
    let tools = match tools {
        None => return Ok(Vec::new()),
        Some(Value::Array(t)) => t,
        Some(_) => {
            return Err(
                GatewayError::invalid("tools: must be a list of Tool objects").with_param("tools"),
            );
        }
    };
    let mut out = Vec::new();
    for (k, tool) in tools.iter().enumerate() {
        let Some(obj) = tool.as_object() else {
            continue;
        };
        for (key, value) in obj {
            if value.is_null() {
                continue;
            }
            if key != "functionDeclarations" && key != "function_declarations" {
                return Err(GatewayError::invalid(format!(
                    "tools[{k}].{key}: this tool is not supported by this model"
                ))
                .with_param(format!("tools[{k}]")));
            }
            let declarations = value.as_array().map(Vec::as_slice).unwrap_or_default();
            for declaration in declarations {
                out.push(function_tool(declaration));
            }
        }
    }
    Ok(out)
}

fn function_tool(declaration: &Value) -> Value {
    let parameters = field(declaration, "parametersJsonSchema")
        .cloned()
        .or_else(|| field(declaration, "parameters").map(lower_schema))
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    let mut function = Map::new();
    function.insert(
        "name".into(),
        json!(str_of(declaration, "name").unwrap_or_default()),
    );
    if let Some(description) = str_of(declaration, "description") {
        function.insert("description".into(), json!(description));
    }
    function.insert("parameters".into(), parameters);
    json!({"type": "function", "function": function})
}

/// `functionCallingConfig` → `tool_choice`. `ANY` limited to one function
/// forces that function.
fn tool_choice(config: &Value) -> Option<Value> {
    match str_of(config, "mode")?.to_ascii_uppercase().as_str() {
        "AUTO" | "VALIDATED" => Some(json!("auto")),
        "NONE" => Some(json!("none")),
        "ANY" => {
            let allowed = field(config, "allowedFunctionNames")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match allowed {
                [Value::String(name)] => {
                    Some(json!({"type": "function", "function": {"name": name}}))
                }
                _ => Some(json!("required")),
            }
        }
        _ => None,
    }
}

/// `generationConfig` → sampling parameters, output limits, JSON mode and
/// reasoning effort.
fn convert_generation_config(config: &Value, chat: &mut Map<String, Value>) {
    for (from, to) in [
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("maxOutputTokens", "max_tokens"),
        ("candidateCount", "n"),
        ("presencePenalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty"),
        ("seed", "seed"),
    ] {
        if let Some(v) = field(config, from).filter(|v| v.is_number()) {
            chat.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = field(config, "stopSequences").and_then(Value::as_array)
        && !stop.is_empty()
    {
        chat.insert("stop".into(), Value::Array(stop.clone()));
    }

    if str_of(config, "responseMimeType") == Some("application/json") {
        let schema = field(config, "responseJsonSchema")
            .cloned()
            .or_else(|| field(config, "responseSchema").map(lower_schema));
        let format = match schema {
            Some(schema) => {
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}})
            }
            None => json!({"type": "json_object"}),
        };
        chat.insert("response_format".into(), format);
    }

    if let Some(thinking) = field(config, "thinkingConfig") {
        let level = str_of(thinking, "thinkingLevel").map(str::to_ascii_lowercase);
        let effort = match level.as_deref() {
            Some(l @ ("minimal" | "low" | "medium" | "high")) => Some(l.to_owned()),
            _ => match field(thinking, "thinkingBudget").and_then(Value::as_i64) {
                Some(b) if b > 0 && b < 4_096 => Some("low".to_owned()),
                Some(b) if (4_096..16_384).contains(&b) => Some("medium".to_owned()),
                Some(b) if b >= 16_384 => Some("high".to_owned()),
                _ => None,
            },
        };
        if let Some(effort) = effort {
            chat.insert("reasoning_effort".into(), json!(effort));
        }
    }
}

/// Approximate prompt tokens for `:countTokens`: the request holds
/// `contents` (or a whole `generateContentRequest`); texts, function calls
/// and responses, the system instruction and tool declarations are counted
/// with `model`'s vocabulary (an approximation for Gemini models), plus
/// [`MEDIA_TOKENS`] per media part.
pub fn count_tokens(body: &[u8], model: &str) -> Result<u64, GatewayError> {
    prompt_tokens(body, |text| (tokens::count(model, text), true)).map(|(n, _)| n)
}

/// [`count_tokens`] as the relay counts ahead of a call (see
/// [`tokens::Estimate`]): the tokens, and whether they were all counted.
pub fn estimate_tokens(body: &[u8], model: &str) -> Result<(u64, bool), GatewayError> {
    prompt_tokens(body, |text| {
        let mut estimate = tokens::Estimate::new(model);
        (estimate.text(text), estimate.is_exact())
    })
}

fn prompt_tokens(
    body: &[u8],
    count: impl FnOnce(&str) -> (u64, bool),
) -> Result<(u64, bool), GatewayError> {
    let req = parse_object(body)?;
    let source = field(&req, "generateContentRequest").unwrap_or(&req);
    let Some(contents) = field(source, "contents").and_then(Value::as_array) else {
        return Err(GatewayError::invalid(
            "* GenerateContentRequest.contents: contents is not specified",
        )
        .with_param("contents"));
    };

    let mut text = String::new();
    let mut media = 0u64;
    let mut push = |s: &str| {
        if !s.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(s);
        }
    };
    if let Some(system) = field(source, "systemInstruction") {
        push(&system_text(system));
    }
    for content in contents {
        for part in parts_of(content) {
            if let Some(t) = str_of(part, "text") {
                push(t);
            } else if let Some(call) = field(part, "functionCall") {
                push(str_of(call, "name").unwrap_or_default());
                if let Some(args) = field(call, "args") {
                    push(&args.to_string());
                }
            } else if let Some(response) = field(part, "functionResponse") {
                push(str_of(response, "name").unwrap_or_default());
                if let Some(r) = field(response, "response") {
                    push(&r.to_string());
                }
            } else if field(part, "inlineData").is_some() || field(part, "fileData").is_some() {
                media += 1;
            }
        }
    }
    if let Some(tools) = field(source, "tools") {
        push(&tools.to_string());
    }
    let (n, whole) = count(&text);
    Ok((n + media * MEDIA_TOKENS, whole))
}

/// `embedContent` (`{content: {parts: [{text}]}}`) → an OpenAI embeddings
/// request. A content's parts make one embedding, so their texts are joined.
pub fn embed_request_to_openai(body: &[u8], model: &str) -> Result<Vec<u8>, GatewayError> {
    let req = parse_object(body)?;
    let texts: Vec<&str> = field(&req, "content")
        .map(parts_of)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| str_of(p, "text"))
        .collect();
    if texts.is_empty() {
        return Err(GatewayError::invalid(
            "* EmbedContentRequest.content: content is not specified",
        )
        .with_param("content"));
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("input".into(), json!(texts.join("\n")));
    if let Some(dimensions) = field(&req, "outputDimensionality").and_then(Value::as_u64) {
        out.insert("dimensions".into(), json!(dimensions));
    }
    Ok(Value::Object(out).to_string().into_bytes())
}

/// An OpenAI embeddings response → `{"embedding": {"values": [...]}}`.
pub fn embeddings_to_response(openai: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let v: Value = serde_json::from_slice(openai)
        .map_err(|e| upstream_error(format!("the upstream answer is not valid JSON: {e}")))?;
    let values = v
        .get("data")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(|d| d.get("embedding"))
        .filter(|e| e.is_array())
        .ok_or_else(|| upstream_error("the upstream answer has no embedding"))?;
    Ok(json!({"embedding": {"values": values}})
        .to_string()
        .into_bytes())
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// Token counts of an OpenAI `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ChatUsage {
    prompt: u64,
    /// Output tokens, reasoning included (as OpenAI counts them).
    completion: u64,
    cached: u64,
    reasoning: u64,
}

impl ChatUsage {
    fn from_json(usage: Option<&Value>) -> Option<Self> {
        let usage = usage?.as_object()?;
        let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        Some(Self {
            prompt: n(usage.get("prompt_tokens")),
            completion: n(usage.get("completion_tokens")),
            cached: n(usage
                .get("prompt_tokens_details")
                .and_then(|d| d.get("cached_tokens"))),
            reasoning: n(usage
                .get("completion_tokens_details")
                .and_then(|d| d.get("reasoning_tokens"))),
        })
    }

    fn from_usage(usage: &Usage) -> Self {
        Self {
            prompt: usage.input_tokens,
            completion: usage.output_tokens,
            cached: usage.cache_read_tokens,
            reasoning: usage.reasoning_tokens,
        }
    }

    /// Gemini's `usageMetadata`: candidates exclude thoughts, which are
    /// counted apart; the prompt includes cached content.
    fn to_gemini(self) -> Value {
        let reasoning = self.reasoning.min(self.completion);
        let mut meta = Map::new();
        meta.insert("promptTokenCount".into(), json!(self.prompt));
        meta.insert(
            "candidatesTokenCount".into(),
            json!(self.completion - reasoning),
        );
        meta.insert(
            "totalTokenCount".into(),
            json!(self.prompt.saturating_add(self.completion)),
        );
        if self.cached > 0 {
            meta.insert("cachedContentTokenCount".into(), json!(self.cached));
        }
        if reasoning > 0 {
            meta.insert("thoughtsTokenCount".into(), json!(reasoning));
        }
        Value::Object(meta)
    }
}

/// OpenAI's `finish_reason` → Gemini's `finishReason` (function calls end
/// with `STOP` in Gemini).
fn finish_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("length") => "MAX_TOKENS",
        Some("content_filter") => "SAFETY",
        _ => "STOP",
    }
}

/// Tool call arguments as an object (Gemini's `args` is always one).
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

/// A candidate's `content`; never without parts, as clients index them.
fn model_content(mut parts: Vec<Value>) -> Value {
    if parts.is_empty() {
        parts.push(json!({"text": ""}));
    }
    json!({"role": "model", "parts": parts})
}

fn new_response_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Translate a canonical `chat.completion` into a `GenerateContentResponse`
/// (one candidate per choice).
pub fn chat_to_response(chat: &[u8], model: &str) -> Result<Vec<u8>, GatewayError> {
    let chat: Value = serde_json::from_slice(chat)
        .map_err(|e| upstream_error(format!("the upstream answer is not valid JSON: {e}")))?;
    let choices = chat
        .get("choices")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| upstream_error("the upstream answer has no choices"))?;

    let mut candidates = Vec::with_capacity(choices.len());
    for (position, choice) in choices.iter().enumerate() {
        let message = choice.get("message").unwrap_or(&Value::Null);
        let mut parts = Vec::new();
        let text = content_text(message.get("content"));
        if !text.is_empty() {
            parts.push(json!({"text": text}));
        }
        let calls = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for call in calls {
            let function = call.get("function").unwrap_or(&Value::Null);
            parts.push(json!({"functionCall": {
                "name": function.get("name").and_then(Value::as_str).unwrap_or_default(),
                "args": parse_arguments(function.get("arguments")),
            }}));
        }
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        candidates.push(json!({
            "content": model_content(parts),
            "finishReason": finish_reason(choice.get("finish_reason").and_then(Value::as_str)),
            "index": index,
        }));
    }

    let usage = ChatUsage::from_json(chat.get("usage")).unwrap_or_default();
    let response_id = chat
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map_or_else(new_response_id, str::to_owned);
    let response = json!({
        "candidates": candidates,
        "usageMetadata": usage.to_gemini(),
        "modelVersion": model,
        "responseId": response_id,
    });
    Ok(response.to_string().into_bytes())
}

/// An error in Google's envelope: `{"error": {"code", "message", "status"}}`.
pub fn error_body(e: &GatewayError) -> Value {
    let code = e.status.as_u16();
    let status = match code {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    };
    json!({"error": {"code": code, "message": e.message, "status": status}})
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// A tool call being assembled from argument fragments.
#[derive(Debug, Default)]
struct PendingCall {
    /// OpenAI's tool-call `index`.
    index: u64,
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Turns a stream of canonical `chat.completion.chunk`s into a stream of
/// `GenerateContentResponse`s (`alt=sse`).
///
/// Each chunk with text becomes one response; tool calls are assembled and
/// sent as whole `functionCall` parts once the upstream says it finished (or
/// at [`StreamConverter::finish`]); the last response carries
/// `finishReason` and `usageMetadata`.
#[derive(Debug)]
pub struct StreamConverter {
    model: String,
    response_id: Option<String>,
    calls: Vec<PendingCall>,
    finish_reason: Option<String>,
    usage: Option<ChatUsage>,
    finished: bool,
}

impl StreamConverter {
    /// A converter for one stream answering as `model`.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            response_id: None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            finished: false,
        }
    }

    /// One canonical chunk (the JSON of one `data:` line) → responses.
    /// Chunks that are not JSON objects are ignored.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        if self.finished {
            return Vec::new();
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(chunk) else {
            return Vec::new();
        };
        if self.response_id.is_none()
            && let Some(id) = chunk
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        {
            self.response_id = Some(id.to_owned());
        }
        if let Some(usage) = ChatUsage::from_json(chunk.get("usage")) {
            self.usage = Some(usage);
        }
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| {
                choices
                    .iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            });
        let Some(choice) = choice else {
            return Vec::new();
        };

        let mut parts = Vec::new();
        if let Some(delta) = choice.get("delta") {
            let text = content_text(delta.get("content"));
            if !text.is_empty() {
                parts.push(json!({"text": text}));
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.accumulate(position as u64, call);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
            parts.extend(self.take_calls());
        }
        if parts.is_empty() {
            return Vec::new();
        }
        vec![self.event(parts, None)]
    }

    /// The stream is over: any tool calls still being assembled, with
    /// `finishReason` and `usageMetadata` (`usage` if given, else what the
    /// chunks reported). Later calls return nothing.
    pub fn finish(&mut self, usage: Option<&Usage>) -> Vec<SseEvent> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let parts = self.take_calls();
        let usage = usage.map(ChatUsage::from_usage).or(self.usage);
        let last = self.event(parts, Some(usage.unwrap_or_default()));
        vec![last]
    }

    /// Fold one `delta.tool_calls` entry into the pending calls.
    fn accumulate(&mut self, position: u64, call: &Value) {
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
        let name = function.get("name").and_then(Value::as_str);
        let arguments = function
            .get("arguments")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // A fragment continues the latest call with its index, unless it
        // names a different call id.
        let existing = self.calls.iter_mut().rev().find(|c| c.index == index);
        match existing {
            Some(pending) if id.is_none_or(|id| pending.id.as_deref().is_none_or(|p| p == id)) => {
                if pending.id.is_none() {
                    pending.id = id.map(str::to_owned);
                }
                if pending.name.is_empty()
                    && let Some(name) = name
                {
                    pending.name = name.to_owned();
                }
                pending.arguments.push_str(arguments);
            }
            // A fragment of a call that never started is dropped.
            _ if id.is_none() && name.is_none() => {}
            _ => self.calls.push(PendingCall {
                index,
                id: id.map(str::to_owned),
                name: name.unwrap_or_default().to_owned(),
                arguments: arguments.to_owned(),
            }),
        }
    }

    /// The assembled calls as `functionCall` parts.
    fn take_calls(&mut self) -> Vec<Value> {
        self.calls
            .drain(..)
            .map(|call| {
                let args = parse_arguments(Some(&Value::String(call.arguments)));
                json!({"functionCall": {"name": call.name, "args": args}})
            })
            .collect()
    }

    /// One `GenerateContentResponse`; the last one (`usage` given) carries
    /// the finish reason and usage.
    fn event(&mut self, parts: Vec<Value>, usage: Option<ChatUsage>) -> SseEvent {
        let response_id = self.response_id.get_or_insert_with(new_response_id).clone();
        let mut candidate = Map::new();
        candidate.insert("content".into(), model_content(parts));
        if usage.is_some() {
            candidate.insert(
                "finishReason".into(),
                json!(finish_reason(self.finish_reason.as_deref())),
            );
        }
        candidate.insert("index".into(), json!(0));
        let mut response = Map::new();
        response.insert("candidates".into(), json!([candidate]));
        if let Some(usage) = usage {
            response.insert("usageMetadata".into(), usage.to_gemini());
        }
        response.insert("modelVersion".into(), json!(self.model));
        response.insert("responseId".into(), json!(response_id));
        SseEvent {
            name: None,
            data: Value::Object(response).to_string().into_bytes(),
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
        to_json(&request_to_chat(body.to_string().as_bytes(), "gemini-x", false).unwrap())
    }

    fn chat_err(body: Value) -> GatewayError {
        request_to_chat(body.to_string().as_bytes(), "gemini-x", false).unwrap_err()
    }

    fn datas(events: &[SseEvent]) -> Vec<Value> {
        events.iter().map(|e| to_json(&e.data)).collect()
    }

    // --- requests -----------------------------------------------------------

    #[test]
    fn basic_request() {
        // The quickstart's curl body.
        let out = chat(json!({
            "contents": [{"parts": [{"text": "Explain how AI works in a few words"}]}]
        }));
        assert_eq!(
            out,
            json!({
                "model": "gemini-x",
                "messages": [{"role": "user", "content": "Explain how AI works in a few words"}]
            })
        );
    }

    #[test]
    fn system_config_and_multi_turn() {
        let body = json!({
            "systemInstruction": {"parts": [{"text": "You are a cat."}, {"text": "Your name is Neko."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hello"}]},
                {"role": "model", "parts": [{"text": "Great to meet you."}, {"text": " Meow.", "thoughtSignature": "abc"}]},
                {"role": "model", "parts": [{"text": "secret", "thought": true}]},
                {"role": "user", "parts": [{"text": "I have two dogs"}]}
            ],
            "generationConfig": {
                "stopSequences": ["Title"],
                "temperature": 1.0,
                "topP": 0.8,
                "topK": 10,
                "maxOutputTokens": 800,
                "candidateCount": 2,
                "seed": 7,
                "presencePenalty": 0.5,
                "frequencyPenalty": 0.25
            }
        });
        let out = to_json(&request_to_chat(body.to_string().as_bytes(), "g", true).unwrap());
        assert_eq!(
            out["messages"],
            json!([
                {"role": "system", "content": "You are a cat.\nYour name is Neko."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Great to meet you. Meow."},
                {"role": "user", "content": "I have two dogs"}
            ])
        );
        assert_eq!(out["stop"], json!(["Title"]));
        assert_eq!(out["temperature"], 1.0);
        assert_eq!(out["top_p"], 0.8);
        assert!(out.get("top_k").is_none());
        assert_eq!(out["max_tokens"], 800);
        assert_eq!(out["n"], 2);
        assert_eq!(out["seed"], 7);
        assert_eq!(out["presence_penalty"], 0.5);
        assert_eq!(out["frequency_penalty"], 0.25);
        assert_eq!(out["stream"], true);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn snake_case_keys_are_accepted() {
        let out = chat(json!({
            "system_instruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [
                {"text": "What is this?"},
                {"inline_data": {"mime_type": "image/png", "data": "iVBOR"}}
            ]}],
            "generation_config": {"max_output_tokens": 50, "top_p": 0.5, "stop_sequences": ["x"]},
            "tools": [{"function_declarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}],
            "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["f"]}}
        }));
        assert_eq!(out["messages"][0]["content"], "Be brief.");
        assert_eq!(
            out["messages"][1]["content"],
            json!([
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
            ])
        );
        assert_eq!(out["max_tokens"], 50);
        assert_eq!(out["top_p"], 0.5);
        assert_eq!(out["stop"], json!(["x"]));
        assert_eq!(
            out["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
    }

    #[test]
    fn media_parts() {
        let out = chat(json!({"contents": [{"role": "user", "parts": [
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a.jpg"}}
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
                {"type": "file", "file": {"filename": "file.pdf", "file_data": "data:application/pdf;base64,JVBER"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}
            ])
        );
        let e = chat_err(json!({"contents": [{"role": "user", "parts": [
            {"text": "watch"},
            {"fileData": {"mimeType": "video/mp4", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}
        ]}]}));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("contents[0].parts[1]"));
    }

    #[test]
    fn function_calling_round_trip() {
        // The shape of the function-calling guide's second turn.
        let out = chat(json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Turn the lights down and what's the weather in Paris?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "set_light_values", "args": {"brightness": 25, "color_temp": "warm"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "set_light_values", "response": {"brightness": 25, "colorTemperature": "warm"}}}
                ]},
                {"role": "model", "parts": [{"functionCall": {"id": "own-id", "name": "get_weather", "args": {"city": "Rome"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"id": "own-id", "name": "get_weather", "response": {"output": "sunny"}}}]}
            ],
            "tools": [{"functionDeclarations": [{
                "name": "set_light_values",
                "description": "Sets the brightness and color temperature of a light.",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "brightness": {"type": "INTEGER", "description": "Light level from 0 to 100."},
                        "color_temp": {"type": "STRING", "enum": ["daylight", "cool", "warm"], "description": "Color temperature."}
                    },
                    "required": ["brightness", "color_temp"]
                }
            }, {
                "name": "get_weather",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}
            }]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}
        }));
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 6);
        let calls = messages[1]["tool_calls"].as_array().unwrap();
        assert_eq!(messages[1]["content"], Value::Null);
        assert_eq!(calls[0]["id"], "call_1");
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "set_light_values");
        assert_eq!(
            to_json(
                calls[0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
                    .as_bytes()
            ),
            json!({"brightness": 25, "color_temp": "warm"})
        );
        assert_eq!(calls[1]["id"], "call_2");
        // Responses answer the calls by name, whatever their order.
        assert_eq!(
            messages[2],
            json!({"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\":21}"})
        );
        assert_eq!(messages[3]["tool_call_id"], "call_1");
        assert_eq!(messages[4]["tool_calls"][0]["id"], "own-id");
        assert_eq!(messages[5]["tool_call_id"], "own-id");

        assert_eq!(out["tool_choice"], "auto");
        assert_eq!(
            out["tools"][0],
            json!({"type": "function", "function": {
                "name": "set_light_values",
                "description": "Sets the brightness and color temperature of a light.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "brightness": {"type": "integer", "description": "Light level from 0 to 100."},
                        "color_temp": {"type": "string", "enum": ["daylight", "cool", "warm"], "description": "Color temperature."}
                    },
                    "required": ["brightness", "color_temp"]
                }
            }})
        );
        assert_eq!(
            out["tools"][1]["function"]["parameters"],
            json!({"type": "object", "properties": {"city": {"type": "string"}}})
        );
    }

    #[test]
    fn schema_lowering_is_recursive_and_spares_literals() {
        let schema = json!({
            "type": "OBJECT",
            "properties": {
                "type": {"type": "STRING", "enum": ["A", "B"], "default": "A"},
                "enum": {"type": "ARRAY", "items": {"type": "NUMBER"}},
                "nested": {"anyOf": [{"type": "BOOLEAN"}, {"type": "NULL"}], "example": {"type": "KEEP"}}
            },
            "propertyOrdering": ["type", "enum"]
        });
        assert_eq!(
            lower_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["A", "B"], "default": "A"},
                    "enum": {"type": "array", "items": {"type": "number"}},
                    "nested": {"anyOf": [{"type": "boolean"}, {"type": "null"}], "example": {"type": "KEEP"}}
                },
                "propertyOrdering": ["type", "enum"]
            })
        );
    }

    #[test]
    fn tool_config_modes() {
        let body = |config: Value| {
            json!({
                "contents": [{"parts": [{"text": "x"}]}],
                "tools": [{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}],
                "toolConfig": {"functionCallingConfig": config}
            })
        };
        assert_eq!(
            chat(body(json!({"mode": "ANY"})))["tool_choice"],
            "required"
        );
        assert_eq!(
            chat(body(
                json!({"mode": "ANY", "allowedFunctionNames": ["f", "g"]})
            ))["tool_choice"],
            "required"
        );
        assert_eq!(chat(body(json!({"mode": "NONE"})))["tool_choice"], "none");
        assert_eq!(chat(body(json!({"mode": "AUTO"})))["tool_choice"], "auto");
        let out = chat(body(json!({"mode": "MODE_UNSPECIFIED"})));
        assert!(out.get("tool_choice").is_none());
        // A declaration without parameters gets an empty object schema.
        assert_eq!(
            out["tools"][0]["function"],
            json!({"name": "f", "parameters": {"type": "object", "properties": {}}})
        );
    }

    #[test]
    fn builtin_tools_are_refused() {
        let e = chat_err(json!({
            "contents": [{"parts": [{"text": "x"}]}],
            "tools": [{"googleSearch": {}}]
        }));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("tools[0]"));
    }

    #[test]
    fn json_mode_and_thinking() {
        let out = chat(json!({
            "contents": [{"parts": [{"text": "List cookies"}]}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": {"type": "ARRAY", "items": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}}},
                "thinkingConfig": {"thinkingBudget": 1024}
            }
        }));
        assert_eq!(
            out["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "response", "schema":
                {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}})
        );
        assert_eq!(out["reasoning_effort"], "low");
        let out = chat(json!({
            "contents": [{"parts": [{"text": "x"}]}],
            "generationConfig": {"responseMimeType": "application/json", "thinkingConfig": {"thinkingLevel": "HIGH"}}
        }));
        assert_eq!(out["response_format"], json!({"type": "json_object"}));
        assert_eq!(out["reasoning_effort"], "high");
        let out = chat(json!({
            "contents": [{"parts": [{"text": "x"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": -1}}
        }));
        assert!(out.get("reasoning_effort").is_none());
    }

    #[test]
    fn contents_are_required() {
        for body in [
            json!({}),
            json!({"contents": []}),
            json!({"contents": "hi"}),
            json!({"contents": null}),
        ] {
            let e = chat_err(body.clone());
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.param.as_deref(), Some("contents"), "{body}");
        }
        let e = chat_err(json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}));
        assert_eq!(e.param.as_deref(), Some("contents[0].role"));
        for body in [&b"{oops"[..], b"[]", b""] {
            let e = request_to_chat(body, "g", false).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    // --- responses ----------------------------------------------------------

    #[test]
    fn text_response() {
        let openai = json!({
            "id": "chatcmpl-123",
            "object": "chat.completion",
            "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
        });
        let out = to_json(&chat_to_response(openai.to_string().as_bytes(), "gemini-x").unwrap());
        assert_eq!(
            out,
            json!({
                "candidates": [{
                    "content": {"role": "model", "parts": [{"text": "Hello there"}]},
                    "finishReason": "STOP",
                    "index": 0
                }],
                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 12, "totalTokenCount": 21},
                "modelVersion": "gemini-x",
                "responseId": "chatcmpl-123"
            })
        );
    }

    #[test]
    fn function_call_response_with_reasoning_and_candidates() {
        let openai = json!({
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "bad", "arguments": "{"}}
                ]}, "finish_reason": "tool_calls"},
                {"index": 1, "message": {"role": "assistant", "content": "Cut"}, "finish_reason": "length"},
                {"index": 2, "message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter"}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                      "prompt_tokens_details": {"cached_tokens": 64},
                      "completion_tokens_details": {"reasoning_tokens": 30}}
        });
        let out = to_json(&chat_to_response(openai.to_string().as_bytes(), "g").unwrap());
        let c = &out["candidates"];
        assert_eq!(
            c[0]["content"]["parts"],
            json!([
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "bad", "args": {}}}
            ])
        );
        assert_eq!(c[0]["finishReason"], "STOP");
        assert_eq!(c[1]["finishReason"], "MAX_TOKENS");
        assert_eq!(c[1]["index"], 1);
        assert_eq!(c[2]["finishReason"], "SAFETY");
        assert_eq!(c[2]["content"]["parts"], json!([{"text": ""}]));
        assert_eq!(
            out["usageMetadata"],
            json!({"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 150,
                   "cachedContentTokenCount": 64, "thoughtsTokenCount": 30})
        );
        assert!(!out["responseId"].as_str().unwrap().is_empty());
    }

    #[test]
    fn unusable_upstream_answers() {
        assert_eq!(
            chat_to_response(b"nope", "g").unwrap_err().kind,
            ErrorKind::Upstream
        );
        assert_eq!(
            chat_to_response(br#"{"choices": []}"#, "g")
                .unwrap_err()
                .kind,
            ErrorKind::Upstream
        );
    }

    #[test]
    fn error_statuses() {
        let cases = [
            (GatewayError::invalid("bad"), 400, "INVALID_ARGUMENT"),
            (GatewayError::unauthenticated("who"), 401, "UNAUTHENTICATED"),
            (GatewayError::forbidden("no"), 403, "PERMISSION_DENIED"),
            (GatewayError::not_found("gone"), 404, "NOT_FOUND"),
            (
                GatewayError::new(ErrorKind::PayloadTooLarge, "big"),
                413,
                "INVALID_ARGUMENT",
            ),
            (
                GatewayError::new(ErrorKind::RateLimited, "slow"),
                429,
                "RESOURCE_EXHAUSTED",
            ),
            (GatewayError::internal("oops"), 500, "INTERNAL"),
            (
                GatewayError::new(ErrorKind::Unsupported, "nope"),
                501,
                "UNIMPLEMENTED",
            ),
            (
                GatewayError::new(ErrorKind::Upstream, "gw"),
                502,
                "UNAVAILABLE",
            ),
            (GatewayError::unavailable("busy"), 503, "UNAVAILABLE"),
            (
                GatewayError::new(ErrorKind::Upstream, "slow")
                    .with_status(StatusCode::GATEWAY_TIMEOUT),
                504,
                "DEADLINE_EXCEEDED",
            ),
        ];
        for (e, code, status) in cases {
            assert_eq!(
                error_body(&e),
                json!({"error": {"code": code, "message": e.message, "status": status}})
            );
        }
    }

    // --- countTokens and embeddings ---------------------------------------------

    #[test]
    fn counts_tokens() {
        let plain = json!({"contents": [{"parts": [{"text": "The quick brown fox jumps over the lazy dog."}]}]});
        let n = count_tokens(plain.to_string().as_bytes(), "gemini-2.5-flash").unwrap();
        assert_eq!(
            n,
            tokens::count(
                "gemini-2.5-flash",
                "The quick brown fox jumps over the lazy dog."
            )
        );
        let wrapped = json!({"generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "systemInstruction": {"parts": [{"text": "You are a cat."}]},
            "contents": [{"role": "user", "parts": [
                {"text": "The quick brown fox jumps over the lazy dog."},
                {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}
            ]}],
            "tools": [{"functionDeclarations": [{"name": "f"}]}]
        }});
        let m = count_tokens(wrapped.to_string().as_bytes(), "gemini-2.5-flash").unwrap();
        assert!(m > n + MEDIA_TOKENS, "{m}");
        assert_eq!(
            estimate_tokens(wrapped.to_string().as_bytes(), "gemini-2.5-flash").unwrap(),
            (m, true)
        );
        let long =
            json!({"contents": [{"parts": [{"text": "The quick brown fox. ".repeat(10_000)}]}]});
        let body = long.to_string();
        let whole = count_tokens(body.as_bytes(), "gemini-2.5-flash").unwrap();
        let (guess, exact) = estimate_tokens(body.as_bytes(), "gemini-2.5-flash").unwrap();
        assert!(
            !exact && guess.abs_diff(whole) * 100 <= whole,
            "{guess} {whole}"
        );
        let e = count_tokens(b"{}", "g").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("contents"));
        assert!(count_tokens(b"not json", "g").is_err());
        assert_eq!(count_tokens(br#"{"contents": []}"#, "g").unwrap(), 0);
    }

    #[test]
    fn embeddings() {
        let body = json!({
            "model": "models/text-embedding-004",
            "content": {"parts": [{"text": "What is the meaning of life?"}]},
            "taskType": "RETRIEVAL_QUERY",
            "outputDimensionality": 256
        });
        let out = to_json(&embed_request_to_openai(body.to_string().as_bytes(), "emb").unwrap());
        assert_eq!(
            out,
            json!({"model": "emb", "input": "What is the meaning of life?", "dimensions": 256})
        );
        let e = embed_request_to_openai(br#"{"content": {"parts": []}}"#, "emb").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("content"));
        assert!(embed_request_to_openai(b"x", "emb").is_err());

        let openai = json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0023064255, -0.009327292, -0.0028842222]}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 8, "total_tokens": 8}
        });
        let out = to_json(&embeddings_to_response(openai.to_string().as_bytes()).unwrap());
        assert_eq!(
            out,
            json!({"embedding": {"values": [0.0023064255, -0.009327292, -0.0028842222]}})
        );
        assert_eq!(
            embeddings_to_response(br#"{"data": []}"#).unwrap_err().kind,
            ErrorKind::Upstream
        );
    }

    // --- streams ------------------------------------------------------------

    fn chunk(delta: Value, finish: Option<&str>) -> Vec<u8> {
        json!({
            "id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn text_stream() {
        let mut c = StreamConverter::new("gemini-x");
        let mut events = Vec::new();
        events.extend(c.push(&chunk(json!({"role": "assistant", "content": ""}), None)));
        events.extend(c.push(&chunk(json!({"content": "Hello"}), None)));
        events.extend(c.push(&chunk(json!({"content": " world"}), None)));
        events.extend(c.push(&chunk(json!({}), Some("stop"))));
        events.extend(
            c.push(
                json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "choices": [],
                   "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}})
                .to_string()
                .as_bytes(),
            ),
        );
        events.extend(c.finish(None));
        assert!(events.iter().all(|e| e.name.is_none()));
        let d = datas(&events);
        assert_eq!(d.len(), 3);
        assert_eq!(
            d[0],
            json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}, "index": 0}],
                "modelVersion": "gemini-x",
                "responseId": "chatcmpl-9"
            })
        );
        assert_eq!(
            d[1]["candidates"][0]["content"]["parts"][0]["text"],
            " world"
        );
        assert_eq!(
            d[2],
            json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
                "modelVersion": "gemini-x",
                "responseId": "chatcmpl-9"
            })
        );
        assert!(c.finish(None).is_empty());
        assert!(c.push(&chunk(json!({"content": "late"}), None)).is_empty());
    }

    #[test]
    fn tool_calls_are_assembled() {
        let mut c = StreamConverter::new("g");
        let mut events = Vec::new();
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        )));
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            None,
        )));
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "get_time", "arguments": "{\"tz\""}}]}),
            None,
        )));
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}, {"index": 1, "function": {"arguments": ":\"CET\"}"}}]}),
            None,
        )));
        assert!(events.is_empty(), "no event before the calls are complete");
        events.extend(c.push(&chunk(json!({}), Some("tool_calls"))));
        events.extend(c.finish(Some(&Usage {
            input_tokens: 10,
            output_tokens: 8,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 3,
            units: Vec::new(),
        })));
        let d = datas(&events);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0]["candidates"][0]["content"]["parts"],
            json!([
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}
            ])
        );
        assert!(d[0]["candidates"][0].get("finishReason").is_none());
        assert_eq!(d[1]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            d[1]["usageMetadata"],
            json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 18, "thoughtsTokenCount": 3})
        );
    }

    #[test]
    fn unfinished_tool_calls_flush_at_finish() {
        let mut c = StreamConverter::new("g");
        assert!(
            c.push(&chunk(
                json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"x\":1}"}}]}),
                None,
            ))
            .is_empty()
        );
        // A second call on the same index, with another id, is a new call.
        assert!(
            c.push(&chunk(
                json!({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
                None,
            ))
            .is_empty()
        );
        let d = datas(&c.finish(None));
        assert_eq!(
            d[0]["candidates"][0]["content"]["parts"],
            json!([
                {"functionCall": {"name": "f", "args": {"x": 1}}},
                {"functionCall": {"name": "g", "args": {}}}
            ])
        );
        assert_eq!(d[0]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            d[0]["usageMetadata"],
            json!({"promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0})
        );
    }

    #[test]
    fn max_tokens_finish_and_garbage() {
        let mut c = StreamConverter::new("g");
        for garbage in [&b"nope"[..], b"[DONE]", b"1", b"", b"[]"] {
            assert!(c.push(garbage).is_empty());
        }
        for weird in [
            json!({"choices": 3}),
            json!({"choices": [null]}),
            json!({"choices": [{"delta": {"content": 1, "tool_calls": [null, 2, {"function": 5}]}}]}),
            json!({"usage": []}),
        ] {
            c.push(weird.to_string().as_bytes());
        }
        let events = c.push(&chunk(json!({"content": "abc"}), Some("length")));
        assert_eq!(
            datas(&events)[0]["candidates"][0]["content"]["parts"][0]["text"],
            "abc"
        );
        let d = datas(&c.finish(None));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["candidates"][0]["finishReason"], "MAX_TOKENS");
        // Headless tool call fragments make no call.
        assert_eq!(
            d[0]["candidates"][0]["content"]["parts"],
            json!([{"text": ""}])
        );
    }

    #[test]
    fn empty_stream_still_ends() {
        let mut c = StreamConverter::new("g");
        let d = datas(&c.finish(None));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["candidates"][0]["finishReason"], "STOP");
        assert!(!d[0]["responseId"].as_str().unwrap().is_empty());
    }
}

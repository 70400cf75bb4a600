//! OpenAI's Responses API (`POST /v1/responses`) served by a canonical chat
//! channel: the request becomes an OpenAI `chat.completions` request, the
//! `chat.completion` answer becomes a `response` object, and a stream of
//! `chat.completion.chunk`s becomes the Responses event sequence, every
//! event numbered by `sequence_number`:
//!
//! ```text
//! response.created → response.in_progress
//!   → (response.output_item.added → part / delta / done events → response.output_item.done)*
//!   → response.completed | response.incomplete
//! ```
//!
//! Reasoning arrives as a `reasoning` item whose summary holds the
//! upstream's reasoning text, text as a `message` item with one
//! `output_text` part (and a `refusal` part if the model refused), and each
//! tool call as a `function_call` item.
//!
//! What does not translate: the gateway keeps no state, so
//! `previous_response_id`, `conversation`, stored prompts, `background` and
//! `item_reference` items are refused; only function tools are served
//! (hosted tools such as `web_search` or `file_search` are refused);
//! reasoning items sent back in `input` are dropped (their encrypted content
//! means nothing to another model); files are passed by `file_data` or
//! `file_id`, never by URL. The answer's `tools`, `tool_choice` and `text`
//! fields are defaults, not an echo of the request.

use serde_json::{Map, Value, json};

use super::SseEvent;
use crate::adapters::Usage;
use crate::error::{ErrorKind, GatewayError};

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// A 400 naming the offending parameter.
fn invalid(message: impl Into<String>, param: impl Into<String>) -> GatewayError {
    GatewayError::invalid(message).with_param(param)
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A non-empty string field.
fn nonempty<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A field that is present and not `null`.
fn present<'a>(req: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    req.get(key).filter(|v| !v.is_null())
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

fn require_model(req: &Map<String, Value>) -> Result<(), GatewayError> {
    match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(()),
        None | Some(Value::Null) => Err(invalid("model: Field required", "model")),
        Some(_) => Err(invalid(
            "model: Input should be a non-empty string",
            "model",
        )),
    }
}

/// The request's `input`: a string, or a non-empty list of items.
enum Input<'a> {
    Text(&'a str),
    Items(&'a [Value]),
}

fn require_input(req: &Map<String, Value>) -> Result<Input<'_>, GatewayError> {
    match req.get("input") {
        None | Some(Value::Null) => Err(invalid("input: Field required", "input")),
        Some(Value::String(s)) => Ok(Input::Text(s)),
        Some(Value::Array(items)) if !items.is_empty() => Ok(Input::Items(items)),
        Some(Value::Array(_)) => Err(invalid("input: at least one item is required", "input")),
        Some(_) => Err(invalid(
            "input: Input should be a string or a list of input items",
            "input",
        )),
    }
}

/// Features that need responses, conversations or prompts stored on the
/// server, which this gateway does not keep.
fn refuse_stateful(req: &Map<String, Value>) -> Result<(), GatewayError> {
    let refusals = [
        (
            "previous_response_id",
            "previous_response_id: responses are not stored here; send the whole conversation in `input` instead",
        ),
        (
            "conversation",
            "conversation: conversations are not stored here; send the whole conversation in `input` instead",
        ),
        (
            "prompt",
            "prompt: stored prompt templates are not available here; send `instructions` and `input` instead",
        ),
    ];
    for (key, message) in refusals {
        if present(req, key).is_some() {
            return Err(invalid(message, key));
        }
    }
    if req.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(
            "background: background responses are not supported here; stream the response instead",
            "background",
        ));
    }
    Ok(())
}

/// `max_output_tokens`, if given: a positive integer (a whole float counts).
fn max_output_tokens(req: &Map<String, Value>) -> Result<Option<u64>, GatewayError> {
    let Some(value) = present(req, "max_output_tokens") else {
        return Ok(None);
    };
    let n = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    match n {
        Some(n) if n >= 1 => Ok(Some(n)),
        _ => Err(invalid(
            "max_output_tokens: Input should be a positive integer",
            "max_output_tokens",
        )),
    }
}

/// Translate a Responses request into a canonical chat request for `model`.
/// `stream` asks for a streamed answer (with a final usage chunk).
///
/// `model` and `input` are required; `instructions` becomes a leading system
/// message; `store`, `include`, `metadata` and `truncation` are ignored.
pub fn request_to_chat(body: &[u8], model: &str, stream: bool) -> Result<Vec<u8>, GatewayError> {
    let req = parse_object(body)?;
    require_model(&req)?;
    refuse_stateful(&req)?;
    let input = require_input(&req)?;

    let mut history = History::default();
    if let Some(instructions) = present(&req, "instructions") {
        let Some(text) = instructions.as_str() else {
            return Err(invalid(
                "instructions: Input should be a valid string",
                "instructions",
            ));
        };
        if !text.is_empty() {
            history
                .messages
                .push(json!({"role": "system", "content": text}));
        }
    }
    match input {
        Input::Text(text) => history
            .messages
            .push(json!({"role": "user", "content": text})),
        Input::Items(items) => {
            for (i, item) in items.iter().enumerate() {
                history.item(i, item)?;
            }
        }
    }
    history.flush_media();

    let mut chat = Map::new();
    chat.insert("model".into(), json!(model));
    chat.insert("messages".into(), Value::Array(history.messages));
    if let Some(n) = max_output_tokens(&req)? {
        chat.insert("max_tokens".into(), json!(n));
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = req.get(key).filter(|v| v.is_number()) {
            chat.insert(key.into(), v.clone());
        }
    }

    let tools = convert_tools(req.get("tools"))?;
    let choice = present(&req, "tool_choice")
        .map(convert_tool_choice)
        .transpose()?;
    if !tools.is_empty() {
        // OpenAI refuses `tool_choice` and `parallel_tool_calls` without tools.
        chat.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = choice {
            chat.insert("tool_choice".into(), choice);
        }
        if let Some(parallel) = req.get("parallel_tool_calls").and_then(Value::as_bool) {
            chat.insert("parallel_tool_calls".into(), json!(parallel));
        }
    }

    if let Some(text) = present(&req, "text") {
        convert_text_config(text, &mut chat)?;
    }
    if let Some(effort) = req
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .and_then(Value::as_str)
    {
        chat.insert("reasoning_effort".into(), json!(effort));
    }
    for key in ["user", "safety_identifier", "prompt_cache_key"] {
        if let Some(v) = req.get(key).and_then(Value::as_str) {
            chat.insert(key.into(), json!(v));
        }
    }
    if stream {
        chat.insert("stream".into(), json!(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(chat).to_string().into_bytes())
}

/// The chat messages built from `input` items.
#[derive(Debug, Default)]
struct History {
    messages: Vec<Value>,
    /// The last message is an assistant turn that following `function_call`
    /// items join (one assistant message holds the text and all its calls).
    assistant_open: bool,
    /// Images and files from tool outputs: chat tool messages hold text
    /// only, so they follow the run of tool messages as one user message.
    media: Vec<Value>,
}

impl History {
    /// One `input` item.
    fn item(&mut self, i: usize, item: &Value) -> Result<(), GatewayError> {
        if !item.is_object() {
            return Err(invalid(
                format!("input[{i}]: Input should be an object"),
                format!("input[{i}]"),
            ));
        }
        let kind = match item.get("type").and_then(Value::as_str) {
            Some(kind) => kind,
            // An "easy" input message: `{role, content}` without a type.
            None if item.get("role").is_some() => "message",
            None => {
                return Err(invalid(
                    format!("input[{i}].type: Field required"),
                    format!("input[{i}].type"),
                ));
            }
        };
        match kind {
            "message" => self.message(i, item),
            "function_call" => self.function_call(i, item),
            "function_call_output" => self.function_call_output(i, item),
            "reasoning" => Ok(()),
            "item_reference" => Err(invalid(
                format!(
                    "input[{i}]: items are not stored here, so they cannot be referenced; send the item itself"
                ),
                format!("input[{i}]"),
            )),
            other => Err(invalid(
                format!("input[{i}]: items of type `{other}` cannot be sent to this model"),
                format!("input[{i}].type"),
            )),
        }
    }

    fn push(&mut self, message: Value, assistant: bool) {
        self.flush_media();
        self.messages.push(message);
        self.assistant_open = assistant;
    }

    /// The pending tool-output media as one user message.
    fn flush_media(&mut self) {
        if !self.media.is_empty() {
            let parts = std::mem::take(&mut self.media);
            self.messages
                .push(json!({"role": "user", "content": parts}));
            self.assistant_open = false;
        }
    }

    fn message(&mut self, i: usize, item: &Value) -> Result<(), GatewayError> {
        let content = match item.get("content") {
            None | Some(Value::Null) => {
                return Err(invalid(
                    format!("input[{i}].content: Field required"),
                    format!("input[{i}].content"),
                ));
            }
            Some(c) => c,
        };
        match str_field(item, "role") {
            "user" => {
                let content = user_content(i, content)?;
                self.push(json!({"role": "user", "content": content}), false);
            }
            "assistant" => {
                let text = joined_text(i, content, &["output_text", "input_text", "refusal"], "")?;
                self.push(json!({"role": "assistant", "content": text}), true);
            }
            "system" | "developer" => {
                let text = joined_text(i, content, &["input_text"], "\n\n")?;
                self.push(json!({"role": "system", "content": text}), false);
            }
            _ => {
                return Err(invalid(
                    format!(
                        "input[{i}].role: Input should be 'user', 'assistant', 'system' or 'developer'"
                    ),
                    format!("input[{i}].role"),
                ));
            }
        }
        Ok(())
    }

    /// A call the model made: joins the assistant turn before it, if any.
    fn function_call(&mut self, i: usize, item: &Value) -> Result<(), GatewayError> {
        let call_id = required_str(i, item, "call_id")?;
        let name = required_str(i, item, "name")?;
        let arguments = match item.get("arguments") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => "{}".to_owned(),
            Some(v) => v.to_string(),
        };
        let call = json!({
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        });
        self.flush_media();
        if self.assistant_open
            && let Some(Value::Object(last)) = self.messages.last_mut()
        {
            if last.get("content").and_then(Value::as_str) == Some("") {
                last.insert("content".into(), Value::Null);
            }
            match last.get_mut("tool_calls") {
                Some(Value::Array(calls)) => calls.push(call),
                _ => {
                    last.insert("tool_calls".into(), json!([call]));
                }
            }
            return Ok(());
        }
        self.push(
            json!({"role": "assistant", "content": null, "tool_calls": [call]}),
            true,
        );
        Ok(())
    }

    /// A tool result: a `tool` message; its images and files are kept for
    /// a user message after the run of tool messages.
    fn function_call_output(&mut self, i: usize, item: &Value) -> Result<(), GatewayError> {
        let call_id = required_str(i, item, "call_id")?;
        let text = match item.get("output") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut texts = Vec::new();
                for (j, part) in parts.iter().enumerate() {
                    let at = format!("input[{i}].output[{j}]");
                    match str_field(part, "type") {
                        "input_text" | "output_text" => texts.push(str_field(part, "text")),
                        "input_image" => self.media.push(image_part(&at, part)?),
                        "input_file" => self.media.push(file_part(&at, part)?),
                        other => {
                            return Err(invalid(
                                format!(
                                    "{at}: content of type `{other}` cannot be sent to this model"
                                ),
                                format!("{at}.type"),
                            ));
                        }
                    }
                }
                texts.join("\n")
            }
            Some(other) => other.to_string(),
        };
        self.messages
            .push(json!({"role": "tool", "tool_call_id": call_id, "content": text}));
        self.assistant_open = false;
        Ok(())
    }
}

fn required_str<'a>(i: usize, item: &'a Value, key: &str) -> Result<&'a str, GatewayError> {
    nonempty(item, key).ok_or_else(|| {
        invalid(
            format!("input[{i}].{key}: Field required"),
            format!("input[{i}].{key}"),
        )
    })
}

/// A user message's content: a string, or chat content parts (a lone text
/// part is sent as a plain string, which every upstream understands).
fn user_content(i: usize, content: &Value) -> Result<Value, GatewayError> {
    let parts = match content {
        Value::String(s) => return Ok(json!(s)),
        Value::Array(parts) => parts,
        _ => return Err(bad_content(i)),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let at = format!("input[{i}].content[{j}]");
        match str_field(part, "type") {
            "input_text" | "output_text" => {
                out.push(json!({"type": "text", "text": str_field(part, "text")}));
            }
            "input_image" => out.push(image_part(&at, part)?),
            "input_file" => out.push(file_part(&at, part)?),
            other => return Err(unsupported_part(&at, other)),
        }
    }
    if let [only] = out.as_slice()
        && only.get("type").and_then(Value::as_str) == Some("text")
    {
        return Ok(only.get("text").cloned().unwrap_or_default());
    }
    Ok(Value::Array(out))
}

/// The text of a string content or of its text parts of the `allowed`
/// types, joined by `separator`.
fn joined_text(
    i: usize,
    content: &Value,
    allowed: &[&str],
    separator: &str,
) -> Result<String, GatewayError> {
    let parts = match content {
        Value::String(s) => return Ok(s.clone()),
        Value::Array(parts) => parts,
        _ => return Err(bad_content(i)),
    };
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let kind = str_field(part, "type");
        if !allowed.contains(&kind) {
            return Err(unsupported_part(&format!("input[{i}].content[{j}]"), kind));
        }
        let key = if kind == "refusal" { "refusal" } else { "text" };
        texts.push(str_field(part, key));
    }
    Ok(texts.join(separator))
}

fn bad_content(i: usize) -> GatewayError {
    invalid(
        format!("input[{i}].content: Input should be a string or a list of content parts"),
        format!("input[{i}].content"),
    )
}

fn unsupported_part(at: &str, kind: &str) -> GatewayError {
    invalid(
        format!("{at}: content of type `{kind}` cannot be sent in this message"),
        format!("{at}.type"),
    )
}

/// An `input_image` part → a chat `image_url` part (or a `file` part when
/// the image is given by file id).
fn image_part(at: &str, part: &Value) -> Result<Value, GatewayError> {
    if let Some(url) = nonempty(part, "image_url") {
        let mut image = Map::new();
        image.insert("url".into(), json!(url));
        if let Some(detail) = part
            .get("detail")
            .and_then(Value::as_str)
            .filter(|d| matches!(*d, "auto" | "low" | "high"))
        {
            image.insert("detail".into(), json!(detail));
        }
        return Ok(json!({"type": "image_url", "image_url": image}));
    }
    if let Some(file_id) = nonempty(part, "file_id") {
        return Ok(json!({"type": "file", "file": {"file_id": file_id}}));
    }
    Err(invalid(
        format!("{at}: an input_image needs an image_url or a file_id"),
        format!("{at}.image_url"),
    ))
}

/// An `input_file` part → a chat `file` part.
fn file_part(at: &str, part: &Value) -> Result<Value, GatewayError> {
    if let Some(data) = nonempty(part, "file_data") {
        let filename = nonempty(part, "filename").unwrap_or("document.pdf");
        return Ok(json!({"type": "file", "file": {"filename": filename, "file_data": data}}));
    }
    if let Some(file_id) = nonempty(part, "file_id") {
        return Ok(json!({"type": "file", "file": {"file_id": file_id}}));
    }
    if nonempty(part, "file_url").is_some() {
        return Err(invalid(
            format!(
                "{at}.file_url: files by URL cannot be sent to this model; send file_data instead"
            ),
            format!("{at}.file_url"),
        ));
    }
    Err(invalid(
        format!("{at}: an input_file needs file_data or a file_id"),
        at.to_owned(),
    ))
}

/// Function tools → chat function tools. Hosted tools (`web_search`,
/// `file_search`, `mcp`, ...) and custom tools have no chat counterpart.
fn convert_tools(tools: Option<&Value>) -> Result<Vec<Value>, GatewayError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(invalid("tools: Input should be a valid list", "tools")),
    };
    let mut out = Vec::with_capacity(tools.len());
    for (k, tool) in tools.iter().enumerate() {
        let kind = str_field(tool, "type");
        if kind != "function" {
            return Err(invalid(
                format!(
                    "tools[{k}]: tools of type `{kind}` are not supported by this model; only function tools are"
                ),
                "tools",
            ));
        }
        let Some(name) = nonempty(tool, "name") else {
            return Err(invalid(
                format!("tools[{k}].name: Field required"),
                format!("tools[{k}].name"),
            ));
        };
        let parameters = tool
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        if let Some(description) = tool.get("description").and_then(Value::as_str) {
            function.insert("description".into(), json!(description));
        }
        function.insert("parameters".into(), parameters);
        if let Some(strict) = tool.get("strict").and_then(Value::as_bool) {
            function.insert("strict".into(), json!(strict));
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// `tool_choice` → chat's: the three modes, or one named function.
fn convert_tool_choice(choice: &Value) -> Result<Value, GatewayError> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            Ok(json!(mode))
        }
        Value::Object(_) if str_field(choice, "type") == "function" => {
            match nonempty(choice, "name") {
                Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
                None => Err(invalid(
                    "tool_choice.name: Field required",
                    "tool_choice.name",
                )),
            }
        }
        Value::Object(_) => Err(invalid(
            format!(
                "tool_choice: tool choices of type `{}` are not supported by this model",
                str_field(choice, "type")
            ),
            "tool_choice",
        )),
        _ => Err(invalid(
            "tool_choice: Input should be 'none', 'auto', 'required' or a function",
            "tool_choice",
        )),
    }
}

/// `text: {format, verbosity}` → `response_format` and `verbosity`.
fn convert_text_config(text: &Value, chat: &mut Map<String, Value>) -> Result<(), GatewayError> {
    if let Some(format) = text.get("format").filter(|f| !f.is_null()) {
        match str_field(format, "type") {
            "text" => {}
            "json_object" => {
                chat.insert("response_format".into(), json!({"type": "json_object"}));
            }
            "json_schema" => {
                let Some(schema) = format.get("schema").filter(|s| s.is_object()) else {
                    return Err(invalid(
                        "text.format.schema: Field required",
                        "text.format.schema",
                    ));
                };
                let mut json_schema = Map::new();
                json_schema.insert(
                    "name".into(),
                    json!(nonempty(format, "name").unwrap_or("response")),
                );
                if let Some(description) = format.get("description").and_then(Value::as_str) {
                    json_schema.insert("description".into(), json!(description));
                }
                json_schema.insert("schema".into(), schema.clone());
                if let Some(strict) = format.get("strict").and_then(Value::as_bool) {
                    json_schema.insert("strict".into(), json!(strict));
                }
                chat.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": json_schema}),
                );
            }
            other => {
                return Err(invalid(
                    format!(
                        "text.format.type: `{other}` is not one of 'text', 'json_schema', 'json_object'"
                    ),
                    "text.format.type",
                ));
            }
        }
    }
    if let Some(verbosity) = text.get("verbosity").and_then(Value::as_str) {
        chat.insert("verbosity".into(), json!(verbosity));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

fn upstream_error(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::Upstream, message)
}

/// Token counts of an OpenAI `usage` object or a usage record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ChatUsage {
    /// Input tokens, cached ones included (as OpenAI counts them).
    prompt: u64,
    /// Output tokens, reasoning included.
    completion: u64,
    cached: u64,
    cache_write: u64,
    reasoning: u64,
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
            cache_write: 0,
            reasoning: n(usage
                .get("completion_tokens_details")
                .and_then(|d| d.get("reasoning_tokens"))),
        })
    }

    /// The gateway's usage record (its `input_tokens` counts cache reads
    /// and writes, as OpenAI's does).
    fn from_usage(usage: &Usage) -> Self {
        Self {
            prompt: usage.input_tokens,
            completion: usage.output_tokens,
            cached: usage.cache_read_tokens,
            cache_write: usage.cache_write_tokens,
            reasoning: usage.reasoning_tokens,
        }
    }

    /// A Responses `usage` object.
    fn to_responses(self) -> Value {
        json!({
            "input_tokens": self.prompt,
            "input_tokens_details": {
                "cached_tokens": self.cached,
                "cache_write_tokens": self.cache_write,
            },
            "output_tokens": self.completion,
            "output_tokens_details": {"reasoning_tokens": self.reasoning.min(self.completion)},
            "total_tokens": self.prompt.saturating_add(self.completion),
        })
    }
}

fn usage_json(usage: Option<ChatUsage>) -> Value {
    usage.map_or(Value::Null, ChatUsage::to_responses)
}

/// The status of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    InProgress,
    Completed,
    /// Cut short, with the reason Responses reports.
    Incomplete(&'static str),
}

impl Status {
    /// The status of a finished answer by its chat `finish_reason`.
    fn of(finish_reason: Option<&str>) -> Self {
        match finish_reason {
            Some("length") => Self::Incomplete("max_output_tokens"),
            Some("content_filter") => Self::Incomplete("content_filter"),
            _ => Self::Completed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Incomplete(_) => "incomplete",
        }
    }

    /// The status of a message item in a response of this status.
    fn item_status(self) -> &'static str {
        match self {
            Self::Incomplete(_) => "incomplete",
            _ => "completed",
        }
    }
}

fn unix_now() -> i64 {
    crate::store::now()
}

/// A `response` object. The request's `tools`, `tool_choice` and `text`
/// settings are not known here, so their defaults are reported.
fn response_object(
    id: &str,
    created_at: i64,
    model: &str,
    status: Status,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    let incomplete_details = match status {
        Status::Incomplete(reason) => json!({"reason": reason}),
        _ => Value::Null,
    };
    let completed_at = match status {
        Status::Completed => json!(unix_now()),
        _ => Value::Null,
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status.as_str(),
        "completed_at": completed_at,
        "background": false,
        "error": null,
        "incomplete_details": incomplete_details,
        "instructions": null,
        "max_output_tokens": null,
        "max_tool_calls": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
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

/// Tool call arguments as a JSON string; never empty, as strict clients
/// parse them.
fn arguments_string(arguments: Option<&Value>) -> String {
    match arguments {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        _ => "{}".to_owned(),
    }
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({
        "id": id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}],
    })
}

fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({
        "id": id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

fn function_call_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({
        "id": id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    })
}

/// The kind of a message content part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Refusal,
}

/// A finished content part of `kind` holding `text`.
fn content_part(kind: PartKind, text: &str) -> Value {
    match kind {
        PartKind::Text => {
            json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
        }
        PartKind::Refusal => json!({"type": "refusal", "refusal": text}),
    }
}

/// Translate a canonical `chat.completion` into a Responses `response`
/// (the first choice; Responses has no `n`).
pub fn chat_to_response(chat: &[u8], model: &str) -> Result<Vec<u8>, GatewayError> {
    let chat: Value = serde_json::from_slice(chat)
        .map_err(|e| upstream_error(format!("the upstream answer is not valid JSON: {e}")))?;
    let choice = chat
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| upstream_error("the upstream answer has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let status = Status::of(choice.get("finish_reason").and_then(Value::as_str));

    let mut output = Vec::new();
    if let Some(reasoning) = reasoning_of(message) {
        output.push(reasoning_item(&new_id("rs"), reasoning));
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut parts = Vec::new();
    let text = content_text(message.get("content"));
    if !text.is_empty() {
        parts.push(content_part(PartKind::Text, &text));
    }
    if let Some(refusal) = nonempty(message, "refusal") {
        parts.push(content_part(PartKind::Refusal, refusal));
    }
    if parts.is_empty() && calls.is_empty() {
        parts.push(content_part(PartKind::Text, ""));
    }
    if !parts.is_empty() {
        output.push(message_item(&new_id("msg"), status.item_status(), parts));
    }
    for call in calls {
        let function = call.get("function").unwrap_or(&Value::Null);
        let call_id = nonempty(call, "id").map_or_else(|| new_id("call"), str::to_owned);
        output.push(function_call_item(
            &new_id("fc"),
            "completed",
            &call_id,
            str_field(function, "name"),
            &arguments_string(function.get("arguments")),
        ));
    }

    let usage = usage_json(ChatUsage::from_json(chat.get("usage")));
    let response = response_object(&new_id("resp"), unix_now(), model, status, output, usage);
    Ok(response.to_string().into_bytes())
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// Numbers events and names each after its `type`.
#[derive(Debug, Default)]
struct Sequencer {
    next: u64,
}

impl Sequencer {
    fn emit(&mut self, mut data: Value, events: &mut Vec<SseEvent>) {
        let name = data.get("type").and_then(Value::as_str).map(str::to_owned);
        if let Some(map) = data.as_object_mut() {
            map.insert("sequence_number".into(), json!(self.next));
        }
        self.next += 1;
        events.push(SseEvent {
            name,
            data: data.to_string().into_bytes(),
        });
    }
}

/// The output item currently open in the stream.
#[derive(Debug)]
enum OpenItem {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        /// Finished content parts.
        parts: Vec<Value>,
        /// The open content part and its text so far.
        part: Option<(PartKind, String)>,
    },
    Call {
        id: String,
        /// OpenAI's tool-call `index`.
        openai_index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Turns a stream of canonical `chat.completion.chunk`s into the Responses
/// event stream.
///
/// Items are opened as content arrives and closed when another kind of
/// content starts, so their events never interleave: reasoning becomes a
/// `reasoning` item fed by summary-text deltas, text a `message` item fed by
/// `output_text` deltas (refusals by `refusal` deltas, in a part of their
/// own), and each tool call a `function_call` item fed by argument deltas.
/// Tool calls are expected one after another, as OpenAI streams them;
/// argument fragments of a call whose item was already closed are dropped.
#[derive(Debug)]
pub struct StreamConverter {
    model: String,
    id: String,
    created_at: i64,
    seq: Sequencer,
    started: bool,
    finished: bool,
    /// Closed items, in output order; the open item's index is its length.
    output: Vec<Value>,
    open: Option<OpenItem>,
    /// OpenAI tool-call indexes that already had an item.
    tool_indexes: Vec<u64>,
    finish_reason: Option<String>,
    usage: Option<ChatUsage>,
}

/// Close a message's open content part: its done events, then the part
/// joins `parts`.
fn close_part(
    seq: &mut Sequencer,
    item_id: &str,
    output_index: usize,
    parts: &mut Vec<Value>,
    (kind, text): (PartKind, String),
    events: &mut Vec<SseEvent>,
) {
    let content_index = parts.len();
    let done = match kind {
        PartKind::Text => json!({
            "type": "response.output_text.done",
            "item_id": item_id,
            "output_index": output_index,
            "content_index": content_index,
            "text": text,
            "logprobs": [],
        }),
        PartKind::Refusal => json!({
            "type": "response.refusal.done",
            "item_id": item_id,
            "output_index": output_index,
            "content_index": content_index,
            "refusal": text,
        }),
    };
    seq.emit(done, events);
    let part = content_part(kind, &text);
    seq.emit(
        json!({
            "type": "response.content_part.done",
            "item_id": item_id,
            "output_index": output_index,
            "content_index": content_index,
            "part": part,
        }),
        events,
    );
    parts.push(part);
}

impl StreamConverter {
    /// A converter for one stream answering as `model`.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            id: new_id("resp"),
            created_at: unix_now(),
            seq: Sequencer::default(),
            started: false,
            finished: false,
            output: Vec::new(),
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
                self.reasoning_delta(reasoning, &mut events);
            }
            let text = content_text(delta.get("content"));
            if !text.is_empty() {
                self.part_delta(PartKind::Text, &text, &mut events);
            }
            if let Some(refusal) = nonempty(delta, "refusal") {
                self.part_delta(PartKind::Refusal, refusal, &mut events);
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

    /// The stream is over: close the open item, then `response.completed`
    /// (or `response.incomplete` when the answer was cut short) with the
    /// whole response and its usage (`usage` if given, else what the chunks
    /// reported). Later calls return nothing.
    pub fn finish(&mut self, usage: Option<&Usage>) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.finished {
            return events;
        }
        self.start(&mut events);
        self.close_item(&mut events);
        self.finished = true;
        let usage = usage.map(ChatUsage::from_usage).or(self.usage);
        let status = Status::of(self.finish_reason.as_deref());
        let kind = match status {
            Status::Incomplete(_) => "response.incomplete",
            _ => "response.completed",
        };
        let response = response_object(
            &self.id,
            self.created_at,
            &self.model,
            status,
            std::mem::take(&mut self.output),
            usage_json(usage),
        );
        self.seq
            .emit(json!({"type": kind, "response": response}), &mut events);
        events
    }

    /// `response.created` and `response.in_progress`, once.
    fn start(&mut self, events: &mut Vec<SseEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            let response = response_object(
                &self.id,
                self.created_at,
                &self.model,
                Status::InProgress,
                Vec::new(),
                Value::Null,
            );
            self.seq
                .emit(json!({"type": kind, "response": response}), events);
        }
    }

    /// Open a new item (closing the open one) and announce it.
    fn open_item(&mut self, open: OpenItem, item: Value, events: &mut Vec<SseEvent>) {
        self.close_item(events);
        self.seq.emit(
            json!({
                "type": "response.output_item.added",
                "output_index": self.output.len(),
                "item": item,
            }),
            events,
        );
        self.open = Some(open);
    }

    /// Close the open item: its done events, then `response.output_item.done`.
    fn close_item(&mut self, events: &mut Vec<SseEvent>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let output_index = self.output.len();
        let seq = &mut self.seq;
        let item = match open {
            OpenItem::Reasoning { id, text } => {
                seq.emit(
                    json!({
                        "type": "response.reasoning_summary_text.done",
                        "item_id": id,
                        "output_index": output_index,
                        "summary_index": 0,
                        "text": text,
                    }),
                    events,
                );
                seq.emit(
                    json!({
                        "type": "response.reasoning_summary_part.done",
                        "item_id": id,
                        "output_index": output_index,
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": text},
                    }),
                    events,
                );
                reasoning_item(&id, &text)
            }
            OpenItem::Message {
                id,
                mut parts,
                part,
            } => {
                if let Some(part) = part {
                    close_part(seq, &id, output_index, &mut parts, part, events);
                }
                let status = Status::of(self.finish_reason.as_deref());
                message_item(&id, status.item_status(), parts)
            }
            OpenItem::Call {
                id,
                call_id,
                name,
                mut arguments,
                ..
            } => {
                if arguments.is_empty() {
                    // Clients parse the arguments; an empty string is not JSON.
                    arguments.push_str("{}");
                    seq.emit(
                        json!({
                            "type": "response.function_call_arguments.delta",
                            "item_id": id,
                            "output_index": output_index,
                            "delta": arguments,
                        }),
                        events,
                    );
                }
                seq.emit(
                    json!({
                        "type": "response.function_call_arguments.done",
                        "item_id": id,
                        "output_index": output_index,
                        "name": name,
                        "arguments": arguments,
                    }),
                    events,
                );
                function_call_item(&id, "completed", &call_id, &name, &arguments)
            }
        };
        self.seq.emit(
            json!({
                "type": "response.output_item.done",
                "output_index": output_index,
                "item": item,
            }),
            events,
        );
        self.output.push(item);
    }

    /// Reasoning text: into the open reasoning item's summary.
    fn reasoning_delta(&mut self, delta: &str, events: &mut Vec<SseEvent>) {
        if !matches!(self.open, Some(OpenItem::Reasoning { .. })) {
            let id = new_id("rs");
            let item = json!({"id": id, "type": "reasoning", "summary": []});
            self.open_item(
                OpenItem::Reasoning {
                    id: id.clone(),
                    text: String::new(),
                },
                item,
                events,
            );
            self.seq.emit(
                json!({
                    "type": "response.reasoning_summary_part.added",
                    "item_id": id,
                    "output_index": self.output.len(),
                    "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                }),
                events,
            );
        }
        let output_index = self.output.len();
        if let Some(OpenItem::Reasoning { id, text }) = &mut self.open {
            text.push_str(delta);
            self.seq.emit(
                json!({
                    "type": "response.reasoning_summary_text.delta",
                    "item_id": id,
                    "output_index": output_index,
                    "summary_index": 0,
                    "delta": delta,
                }),
                events,
            );
        }
    }

    /// Text or refusal: into the open message item's part of that kind.
    fn part_delta(&mut self, kind: PartKind, delta: &str, events: &mut Vec<SseEvent>) {
        if !matches!(self.open, Some(OpenItem::Message { .. })) {
            let id = new_id("msg");
            let item = message_item(&id, "in_progress", Vec::new());
            self.open_item(
                OpenItem::Message {
                    id,
                    parts: Vec::new(),
                    part: None,
                },
                item,
                events,
            );
        }
        let output_index = self.output.len();
        let seq = &mut self.seq;
        let Some(OpenItem::Message { id, parts, part }) = &mut self.open else {
            return;
        };
        if part.as_ref().map(|(k, _)| *k) != Some(kind) {
            if let Some(previous) = part.take() {
                close_part(seq, id, output_index, parts, previous, events);
            }
            seq.emit(
                json!({
                    "type": "response.content_part.added",
                    "item_id": id,
                    "output_index": output_index,
                    "content_index": parts.len(),
                    "part": content_part(kind, ""),
                }),
                events,
            );
            *part = Some((kind, String::new()));
        }
        if let Some((_, text)) = part {
            text.push_str(delta);
        }
        let data = match kind {
            PartKind::Text => json!({
                "type": "response.output_text.delta",
                "item_id": id,
                "output_index": output_index,
                "content_index": parts.len(),
                "delta": delta,
                "logprobs": [],
            }),
            PartKind::Refusal => json!({
                "type": "response.refusal.delta",
                "item_id": id,
                "output_index": output_index,
                "content_index": parts.len(),
                "delta": delta,
            }),
        };
        seq.emit(data, events);
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
        let id = nonempty(call, "id");
        let function = call.get("function").unwrap_or(&Value::Null);
        let name = nonempty(function, "name");
        let continues = match &self.open {
            Some(OpenItem::Call {
                openai_index,
                call_id,
                ..
            }) => *openai_index == index && id.is_none_or(|id| id == call_id),
            _ => false,
        };
        if !continues {
            if id.is_none() && (name.is_none() || self.tool_indexes.contains(&index)) {
                // A late fragment of a call whose item is closed, or a
                // fragment of a call that never started.
                return;
            }
            let call_id = id.map_or_else(|| new_id("call"), str::to_owned);
            let item_id = new_id("fc");
            let name = name.unwrap_or_default();
            let item = function_call_item(&item_id, "in_progress", &call_id, name, "");
            self.open_item(
                OpenItem::Call {
                    id: item_id,
                    openai_index: index,
                    call_id,
                    name: name.to_owned(),
                    arguments: String::new(),
                },
                item,
                events,
            );
            self.tool_indexes.push(index);
        }
        let output_index = self.output.len();
        let Some(OpenItem::Call {
            id: item_id,
            name: open_name,
            arguments,
            ..
        }) = &mut self.open
        else {
            return;
        };
        if open_name.is_empty()
            && let Some(name) = name
        {
            open_name.push_str(name);
        }
        let fragment = str_field(function, "arguments");
        if !fragment.is_empty() {
            arguments.push_str(fragment);
            self.seq.emit(
                json!({
                    "type": "response.function_call_arguments.delta",
                    "item_id": item_id,
                    "output_index": output_index,
                    "delta": fragment,
                }),
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
        to_json(&request_to_chat(body.to_string().as_bytes(), "gpt-x", false).unwrap())
    }

    fn chat_err(body: Value) -> GatewayError {
        request_to_chat(body.to_string().as_bytes(), "gpt-x", false).unwrap_err()
    }

    fn respond(chat: Value) -> Value {
        to_json(&chat_to_response(chat.to_string().as_bytes(), "gpt-x").unwrap())
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

    fn usage(input: u64, output: u64, cache_read: u64, reasoning: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_write_tokens: 0,
            reasoning_tokens: reasoning,
            units: Vec::new(),
        }
    }

    // --- requests -----------------------------------------------------------

    #[test]
    fn string_input() {
        // The shape of the Responses API's first example.
        let out = chat(json!({
            "model": "gpt-4.1",
            "input": "Tell me a three sentence bedtime story about a unicorn."
        }));
        assert_eq!(
            out,
            json!({
                "model": "gpt-x",
                "messages": [{"role": "user", "content": "Tell me a three sentence bedtime story about a unicorn."}]
            })
        );
    }

    #[test]
    fn instructions_sampling_reasoning_and_stream() {
        let body = json!({
            "model": "gpt-5",
            "instructions": "Talk like a pirate.",
            "input": "Are semicolons optional in JavaScript?",
            "max_output_tokens": 500,
            "temperature": 0.3,
            "top_p": 0.8,
            "reasoning": {"effort": "low", "summary": "auto"},
            "store": true,
            "metadata": {"k": "v"},
            "include": ["reasoning.encrypted_content"],
            "truncation": "auto",
            "user": "u-1",
            "safety_identifier": "s-1",
            "prompt_cache_key": "k-1",
            "stream": true
        });
        let out = to_json(&request_to_chat(body.to_string().as_bytes(), "m", true).unwrap());
        assert_eq!(
            out,
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "Talk like a pirate."},
                    {"role": "user", "content": "Are semicolons optional in JavaScript?"}
                ],
                "max_tokens": 500,
                "temperature": 0.3,
                "top_p": 0.8,
                "reasoning_effort": "low",
                "user": "u-1",
                "safety_identifier": "s-1",
                "prompt_cache_key": "k-1",
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
        // `stream` in the body alone does not stream: the caller decides.
        let out = chat(json!({"model": "m", "input": "x", "stream": true, "instructions": ""}));
        assert!(out.get("stream").is_none());
        assert_eq!(out["messages"].as_array().unwrap().len(), 1);
        // A whole float is an integer.
        assert_eq!(
            chat(json!({"model": "m", "input": "x", "max_output_tokens": 64.0}))["max_tokens"],
            64
        );
    }

    #[test]
    fn message_items_roles_and_parts() {
        let out = chat(json!({
            "model": "m",
            "input": [
                {"role": "developer", "content": "Be terse."},
                {"type": "message", "role": "system", "content": [
                    {"type": "input_text", "text": "A"}, {"type": "input_text", "text": "B"}
                ]},
                {"role": "user", "content": [
                    {"type": "input_text", "text": "What is in these?"},
                    {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "high"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "original"},
                    {"type": "input_image", "file_id": "file-img", "detail": "auto"},
                    {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
                    {"type": "input_file", "file_id": "file-pdf"}
                ]},
                // An output message fed back as it came.
                {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [
                    {"type": "output_text", "text": "A cat", "annotations": []},
                    {"type": "output_text", "text": " and a PDF.", "annotations": []}
                ]},
                {"role": "user", "content": [{"type": "input_text", "text": "Thanks"}]}
            ]
        }));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "system", "content": "Be terse."},
                {"role": "system", "content": "A\n\nB"},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "file", "file": {"file_id": "file-img"}},
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
                    {"type": "file", "file": {"file_id": "file-pdf"}}
                ]},
                {"role": "assistant", "content": "A cat and a PDF."},
                {"role": "user", "content": "Thanks"}
            ])
        );
    }

    #[test]
    fn function_calling_round_trip() {
        // The shape of the function-calling guide's second request: the
        // first response's output appended to the input, then the results.
        let out = chat(json!({
            "model": "gpt-4.1",
            "tools": [{
                "type": "function",
                "name": "get_weather",
                "description": "Get current temperature for a given location.",
                "parameters": {
                    "type": "object",
                    "properties": {"location": {"type": "string", "description": "City and country e.g. Bogotá, Colombia"}},
                    "required": ["location"],
                    "additionalProperties": false
                },
                "strict": true
            }, {"type": "function", "name": "get_time", "parameters": null, "strict": null}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "input": [
                {"role": "user", "content": "What's the weather like in Paris and Bogotá today?"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
                {"type": "function_call", "id": "fc_1", "call_id": "call_12345xyz", "name": "get_weather",
                 "arguments": "{\"location\":\"Paris, France\"}", "status": "completed"},
                {"type": "function_call", "id": "fc_2", "call_id": "call_67890abc", "name": "get_weather",
                 "arguments": "{\"location\":\"Bogotá, Colombia\"}"},
                {"type": "function_call_output", "call_id": "call_12345xyz", "output": "14"},
                {"type": "function_call_output", "call_id": "call_67890abc", "output": "21"},
                // Text then a call in one assistant turn.
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking the time."}]},
                {"type": "function_call", "call_id": "call_t", "name": "get_time", "arguments": {"tz": "UTC"}},
                {"type": "function_call_output", "call_id": "call_t", "output": {"h": 12}}
            ]
        }));
        assert_eq!(
            out["tools"],
            json!([
                {"type": "function", "function": {
                    "name": "get_weather",
                    "description": "Get current temperature for a given location.",
                    "parameters": {
                        "type": "object",
                        "properties": {"location": {"type": "string", "description": "City and country e.g. Bogotá, Colombia"}},
                        "required": ["location"],
                        "additionalProperties": false
                    },
                    "strict": true
                }},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
            ])
        );
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "What's the weather like in Paris and Bogotá today?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_12345xyz", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}},
                    {"id": "call_67890abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Bogotá, Colombia\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_12345xyz", "content": "14"},
                {"role": "tool", "tool_call_id": "call_67890abc", "content": "21"},
                {"role": "assistant", "content": "Checking the time.", "tool_calls": [
                    {"id": "call_t", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"UTC\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_t", "content": "{\"h\":12}"}
            ])
        );
    }

    #[test]
    fn tool_outputs_with_images_follow_the_tool_messages() {
        let out = chat(json!({
            "model": "m",
            "input": [
                {"type": "function_call", "call_id": "a", "name": "shot", "arguments": ""},
                {"type": "function_call", "call_id": "b", "name": "ls"},
                {"type": "function_call_output", "call_id": "a", "output": [
                    {"type": "input_text", "text": "screenshot taken"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBOR"}
                ]},
                {"type": "function_call_output", "call_id": "b", "output": [
                    {"type": "input_text", "text": "x"}, {"type": "input_text", "text": "y"}
                ]},
                {"type": "function_call", "call_id": "c", "name": "more", "arguments": "{}"}
            ]
        }));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "shot", "arguments": "{}"}},
                    {"id": "b", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "a", "content": "screenshot taken"},
                {"role": "tool", "tool_call_id": "b", "content": "x\ny"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "more", "arguments": "{}"}}
                ]}
            ])
        );
    }

    #[test]
    fn tool_choice_variants_and_hosted_tools() {
        let body = |choice: Value| {
            json!({
                "model": "m", "input": "x",
                "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                "tool_choice": choice
            })
        };
        assert_eq!(chat(body(json!("auto")))["tool_choice"], "auto");
        assert_eq!(chat(body(json!("none")))["tool_choice"], "none");
        assert_eq!(
            chat(body(json!({"type": "function", "name": "f"})))["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        for bad in [
            json!("sometimes"),
            json!({"type": "file_search"}),
            json!({"type": "allowed_tools", "mode": "auto", "tools": []}),
            json!(3),
        ] {
            assert_eq!(
                chat_err(body(bad.clone())).param.as_deref(),
                Some("tool_choice"),
                "{bad}"
            );
        }
        assert_eq!(
            chat_err(body(json!({"type": "function"}))).param.as_deref(),
            Some("tool_choice.name")
        );
        // Without tools, tool_choice and parallel_tool_calls are dropped
        // (OpenAI refuses them alone).
        let out = chat(
            json!({"model": "m", "input": "x", "tools": [], "tool_choice": "required",
                              "parallel_tool_calls": true}),
        );
        assert!(out.get("tools").is_none());
        assert!(out.get("tool_choice").is_none());
        assert!(out.get("parallel_tool_calls").is_none());

        for hosted in [
            json!({"type": "web_search"}),
            json!({"type": "web_search_preview"}),
            json!({"type": "file_search", "vector_store_ids": ["vs_1"]}),
            json!({"type": "mcp", "server_label": "x", "server_url": "https://x"}),
            json!({"type": "custom", "name": "grammar"}),
        ] {
            let e = chat_err(json!({"model": "m", "input": "x", "tools": [
                {"type": "function", "name": "f"}, hosted.clone()
            ]}));
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{hosted}");
            assert_eq!(e.param.as_deref(), Some("tools"), "{hosted}");
            assert!(e.message.starts_with("tools[1]: "), "{}", e.message);
        }
    }

    #[test]
    fn text_formats() {
        let out = chat(json!({
            "model": "m", "input": "Extract the event.",
            "text": {"format": {
                "type": "json_schema",
                "name": "calendar_event",
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "date": {"type": "string"}},
                    "required": ["name", "date"],
                    "additionalProperties": false
                },
                "strict": true
            }, "verbosity": "low"}
        }));
        assert_eq!(
            out["response_format"],
            json!({"type": "json_schema", "json_schema": {
                "name": "calendar_event",
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "date": {"type": "string"}},
                    "required": ["name", "date"],
                    "additionalProperties": false
                },
                "strict": true
            }})
        );
        assert_eq!(out["verbosity"], "low");
        let out =
            chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}));
        assert_eq!(out["response_format"], json!({"type": "json_object"}));
        let out = chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "text"}}}));
        assert!(out.get("response_format").is_none());
        let out = chat(json!({"model": "m", "input": "x",
            "text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}));
        assert_eq!(out["response_format"]["json_schema"]["name"], "response");
        assert_eq!(
            chat_err(
                json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}})
            )
            .param
            .as_deref(),
            Some("text.format.schema")
        );
        assert_eq!(
            chat_err(json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}))
                .param
                .as_deref(),
            Some("text.format.type")
        );
    }

    #[test]
    fn validation_errors() {
        let cases = [
            (json!({"input": "x"}), "model"),
            (json!({"model": "", "input": "x"}), "model"),
            (json!({"model": 3, "input": "x"}), "model"),
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": null}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (json!({"model": "m", "input": 5}), "input"),
            (
                json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": "x", "conversation": "conv_1"}),
                "conversation",
            ),
            (
                json!({"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}),
                "prompt",
            ),
            (
                json!({"model": "m", "input": "x", "background": true}),
                "background",
            ),
            (
                json!({"model": "m", "input": "x", "instructions": ["x"]}),
                "instructions",
            ),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": 0}),
                "max_output_tokens",
            ),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": "9"}),
                "max_output_tokens",
            ),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": 1.5}),
                "max_output_tokens",
            ),
            (json!({"model": "m", "input": "x", "tools": {}}), "tools"),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
                "tools[0].name",
            ),
            (json!({"model": "m", "input": ["x"]}), "input[0]"),
            (
                json!({"model": "m", "input": [{"content": "x"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": "user"}]}),
                "input[0].content",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": 3}]}),
                "input[0].content",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0]",
            ),
            (
                json!({"model": "m", "input": [{"type": "web_search_call", "id": "ws_1"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "call_id": "c"}]}),
                "input[0].name",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [
                    {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [
                    {"type": "input_file", "file_url": "https://example.com/a.pdf"}]}]}),
                "input[0].content[0].file_url",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}),
                "input[0].content[0].image_url",
            ),
            (
                json!({"model": "m", "input": [{"role": "assistant", "content": [
                    {"type": "input_image", "image_url": "https://x"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "developer", "content": [
                    {"type": "output_text", "text": "x"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": [
                    {"type": "input_audio"}]}]}),
                "input[0].output[0].type",
            ),
        ];
        for (body, param) in cases {
            let e = chat_err(body.clone());
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        assert_eq!(
            chat_err(json!({"model": "m"})).message,
            "input: Field required"
        );
        // `store`, `background: false` and null stateful fields are fine.
        assert!(
            request_to_chat(
                json!({"model": "m", "input": "x", "store": false, "background": false,
                       "previous_response_id": null, "conversation": null})
                .to_string()
                .as_bytes(),
                "m",
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn invalid_json_is_invalid() {
        for body in [&b"{not json"[..], b"[1,2]", b""] {
            let e = request_to_chat(body, "m", false).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    // --- responses ----------------------------------------------------------

    /// The fields the `openai` SDK's `Response` model requires.
    fn assert_response_shape(r: &Value) {
        for key in [
            "id",
            "created_at",
            "model",
            "object",
            "output",
            "parallel_tool_calls",
            "tool_choice",
            "tools",
        ] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
        assert!(r["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(r["object"], "response");
        assert!(r["created_at"].as_i64().unwrap() > 0);
        // The SDK computes output_text itself.
        assert!(r.get("output_text").is_none());
    }

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
        let out = respond(openai);
        assert_response_shape(&out);
        assert_eq!(out["status"], "completed");
        assert!(out["completed_at"].as_i64().unwrap() > 0);
        assert_eq!(out["model"], "gpt-x");
        assert_eq!(out["error"], Value::Null);
        assert_eq!(out["incomplete_details"], Value::Null);
        assert_eq!(out["instructions"], Value::Null);
        assert_eq!(out["metadata"], json!({}));
        assert_eq!(out["temperature"], Value::Null);
        assert_eq!(out["top_p"], Value::Null);
        assert_eq!(out["parallel_tool_calls"], true);
        assert_eq!(out["tool_choice"], "auto");
        assert_eq!(out["tools"], json!([]));
        assert_eq!(out["text"], json!({"format": {"type": "text"}}));
        let output = out["output"].as_array().unwrap();
        assert_eq!(output.len(), 1);
        assert!(output[0]["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(output[0]["type"], "message");
        assert_eq!(output[0]["role"], "assistant");
        assert_eq!(output[0]["status"], "completed");
        assert_eq!(
            output[0]["content"],
            json!([{"type": "output_text", "text": "Hello there, how may I assist you today?",
                    "annotations": [], "logprobs": []}])
        );
        assert_eq!(
            out["usage"],
            json!({
                "input_tokens": 9,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 12,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 21
            })
        );
    }

    #[test]
    fn tool_and_reasoning_response_with_cache() {
        let out = respond(json!({
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
                        {"type": "function", "function": {"name": "get_time", "arguments": ""}}
                    ]
                },
                "finish_reason": "tool_calls"
            }],
            "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                      "prompt_tokens_details": {"cached_tokens": 1920},
                      "completion_tokens_details": {"reasoning_tokens": 200}}
        }));
        assert_response_shape(&out);
        assert_eq!(out["status"], "completed");
        let output = out["output"].as_array().unwrap();
        assert_eq!(output.len(), 4);
        assert!(output[0]["id"].as_str().unwrap().starts_with("rs_"));
        assert_eq!(output[0]["type"], "reasoning");
        assert_eq!(
            output[0]["summary"],
            json!([{"type": "summary_text", "text": "The user wants weather."}])
        );
        assert_eq!(output[1]["type"], "message");
        assert_eq!(output[1]["content"][0]["text"], "Let me look.");
        assert!(output[2]["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(output[2]["type"], "function_call");
        assert_eq!(output[2]["status"], "completed");
        assert_eq!(output[2]["call_id"], "call_abc123");
        assert_eq!(output[2]["name"], "get_weather");
        assert_eq!(output[2]["arguments"], "{\"location\":\"Boston, MA\"}");
        assert!(output[3]["call_id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(output[3]["arguments"], "{}");
        assert_eq!(
            out["usage"],
            json!({
                "input_tokens": 2006,
                "input_tokens_details": {"cached_tokens": 1920, "cache_write_tokens": 0},
                "output_tokens": 300,
                "output_tokens_details": {"reasoning_tokens": 200},
                "total_tokens": 2306
            })
        );
        // Tool calls alone: no empty message item.
        let out = respond(
            json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}),
        );
        let types: Vec<&Value> = out["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["type"])
            .collect();
        assert_eq!(types, [&json!("function_call")]);
        // No usage reported: none invented.
        assert_eq!(out["usage"], Value::Null);
    }

    #[test]
    fn incomplete_and_refused_responses() {
        for (finish, reason) in [
            ("length", "max_output_tokens"),
            ("content_filter", "content_filter"),
        ] {
            let out = respond(
                json!({"choices": [{"message": {"role": "assistant", "content": "abc"}, "finish_reason": finish}]}),
            );
            assert_eq!(out["status"], "incomplete", "{finish}");
            assert_eq!(out["incomplete_details"], json!({"reason": reason}));
            assert_eq!(out["completed_at"], Value::Null);
            assert_eq!(out["output"][0]["status"], "incomplete");
        }
        let out = respond(
            json!({"choices": [{"message": {"role": "assistant", "content": null,
            "refusal": "I can't help with that."}, "finish_reason": "stop"}]}),
        );
        assert_eq!(
            out["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "I can't help with that."}])
        );
        // An empty answer still has a message (output_text is "").
        let out = respond(
            json!({"choices": [{"message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]}),
        );
        assert_eq!(out["output"][0]["content"][0]["text"], "");
    }

    #[test]
    fn unusable_upstream_answers() {
        let e = chat_to_response(b"<html>", "m").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
        let e = chat_to_response(br#"{"choices": []}"#, "m").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
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

    /// Every event is named by its `type`, and numbered 0, 1, 2, ...
    fn assert_numbered(events: &[SseEvent]) {
        for (n, e) in events.iter().enumerate() {
            let data = to_json(&e.data);
            assert_eq!(e.name.as_deref(), data["type"].as_str(), "{data}");
            assert_eq!(data["sequence_number"], n as u64, "{data}");
        }
    }

    /// Rebuild the output the way the `openai` SDK's stream state does
    /// (items appended on `output_item.added`, parts on `content_part.added`,
    /// deltas appended by index), and check it against the final response.
    fn replay(events: &[SseEvent]) -> Value {
        let d = datas(events);
        assert_eq!(d[0]["type"], "response.created");
        let mut output: Vec<Value> = d[0]["response"]["output"].as_array().unwrap().clone();
        for e in &d[1..] {
            let index = e["output_index"].as_u64().map(|i| i as usize);
            match e["type"].as_str().unwrap() {
                "response.output_item.added" => {
                    assert_eq!(index, Some(output.len()), "{e}");
                    output.push(e["item"].clone());
                }
                "response.content_part.added" => {
                    let item = &mut output[index.unwrap()];
                    assert_eq!(item["type"], "message");
                    assert_eq!(e["item_id"], item["id"]);
                    let content = item["content"].as_array_mut().unwrap();
                    assert_eq!(e["content_index"], content.len() as u64);
                    content.push(e["part"].clone());
                }
                "response.output_text.delta" => {
                    let item = &mut output[index.unwrap()];
                    assert_eq!(e["item_id"], item["id"]);
                    let part = &mut item["content"][e["content_index"].as_u64().unwrap() as usize];
                    assert_eq!(part["type"], "output_text");
                    let text = format!(
                        "{}{}",
                        part["text"].as_str().unwrap(),
                        e["delta"].as_str().unwrap()
                    );
                    part["text"] = json!(text);
                }
                "response.function_call_arguments.delta" => {
                    let item = &mut output[index.unwrap()];
                    assert_eq!(item["type"], "function_call");
                    assert_eq!(e["item_id"], item["id"]);
                    let args = format!(
                        "{}{}",
                        item["arguments"].as_str().unwrap(),
                        e["delta"].as_str().unwrap()
                    );
                    item["arguments"] = json!(args);
                }
                "response.output_item.done" => {
                    let item = &output[index.unwrap()];
                    assert_eq!(e["item"]["id"], item["id"]);
                    assert_eq!(e["item"]["type"], item["type"]);
                    if item["type"] == "function_call" {
                        assert_eq!(e["item"]["arguments"], item["arguments"]);
                    }
                    if item["type"] == "message" {
                        for (done, built) in e["item"]["content"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .zip(item["content"].as_array().unwrap())
                        {
                            if built["type"] == "output_text" {
                                assert_eq!(done["text"], built["text"]);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let last = d.last().unwrap();
        let final_output = last["response"]["output"].as_array().unwrap();
        assert_eq!(final_output.len(), output.len());
        for (a, b) in final_output.iter().zip(&output) {
            assert_eq!(a["id"], b["id"]);
        }
        last["response"].clone()
    }

    /// The SDK's `output_text`: every output_text part of message items.
    fn output_text(response: &Value) -> String {
        response["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "message")
            .flat_map(|i| i["content"].as_array().unwrap().iter())
            .filter(|p| p["type"] == "output_text")
            .map(|p| p["text"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn text_stream_matches_the_responses_sequence() {
        let mut c = StreamConverter::new("gpt-x");
        let mut events = Vec::new();
        events.extend(c.push(&chunk(json!({"role": "assistant", "content": ""}), None)));
        events.extend(c.push(&chunk(json!({"content": "Hi"}), None)));
        events.extend(c.push(&chunk(json!({"content": " there!"}), None)));
        events.extend(c.push(&chunk(json!({}), Some("stop"))));
        events.extend(c.push(&usage_chunk(25, 15, 5)));
        events.extend(c.finish(None));
        assert_numbered(&events);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let d = datas(&events);
        let created = &d[0]["response"];
        assert_response_shape(created);
        assert_eq!(created["status"], "in_progress");
        assert_eq!(created["output"], json!([]));
        assert_eq!(created["usage"], Value::Null);
        assert_eq!(created["model"], "gpt-x");
        assert_eq!(d[1]["response"]["id"], created["id"]);
        let item_id = d[2]["item"]["id"].as_str().unwrap();
        assert!(item_id.starts_with("msg_"));
        assert_eq!(
            d[2],
            json!({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
                   "item": {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}})
        );
        assert_eq!(
            d[3],
            json!({"type": "response.content_part.added", "sequence_number": 3, "item_id": item_id,
                   "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        );
        assert_eq!(
            d[4],
            json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": item_id,
                   "output_index": 0, "content_index": 0, "delta": "Hi", "logprobs": []})
        );
        assert_eq!(
            d[6],
            json!({"type": "response.output_text.done", "sequence_number": 6, "item_id": item_id,
                   "output_index": 0, "content_index": 0, "text": "Hi there!", "logprobs": []})
        );
        assert_eq!(
            d[7]["part"],
            json!({"type": "output_text", "text": "Hi there!", "annotations": [], "logprobs": []})
        );
        assert_eq!(
            d[8]["item"],
            json!({"id": item_id, "type": "message", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": "Hi there!", "annotations": [], "logprobs": []}]})
        );
        let done = replay(&events);
        assert_response_shape(&done);
        assert_eq!(done["id"], created["id"]);
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0], d[8]["item"]);
        assert_eq!(output_text(&done), "Hi there!");
        assert_eq!(
            done["usage"],
            json!({
                "input_tokens": 25,
                "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 0},
                "output_tokens": 15,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 40
            })
        );
        // finish is idempotent, and nothing follows it.
        assert!(c.finish(None).is_empty());
        assert!(c.push(&chunk(json!({"content": "late"}), None)).is_empty());
    }

    #[test]
    fn reasoning_text_and_tool_calls_stream() {
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
            json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
            None,
        )));
        events.extend(c.push(&chunk(json!({}), Some("tool_calls"))));
        events.extend(c.finish(Some(&usage(100, 40, 30, 12))));
        assert_numbered(&events);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                // reasoning
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                // text
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                // first call
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                // second call, without arguments
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let d = datas(&events);
        let rs = d[2]["item"]["id"].as_str().unwrap();
        assert!(rs.starts_with("rs_"));
        assert_eq!(
            d[2]["item"],
            json!({"id": rs, "type": "reasoning", "summary": []})
        );
        assert_eq!(
            d[3],
            json!({"type": "response.reasoning_summary_part.added", "sequence_number": 3, "item_id": rs,
                   "output_index": 0, "summary_index": 0, "part": {"type": "summary_text", "text": ""}})
        );
        assert_eq!(
            d[4],
            json!({"type": "response.reasoning_summary_text.delta", "sequence_number": 4, "item_id": rs,
                   "output_index": 0, "summary_index": 0, "delta": "Hmm"})
        );
        assert_eq!(d[6]["text"], "Hmm, weather.");
        assert_eq!(
            d[7]["part"],
            json!({"type": "summary_text", "text": "Hmm, weather."})
        );
        assert_eq!(
            d[8]["item"],
            json!({"id": rs, "type": "reasoning", "summary": [{"type": "summary_text", "text": "Hmm, weather."}]})
        );
        assert_eq!(d[9]["output_index"], 1);
        assert_eq!(d[11]["output_index"], 1);
        let fc = d[15]["item"]["id"].as_str().unwrap();
        assert!(fc.starts_with("fc_"));
        assert_eq!(
            d[15],
            json!({"type": "response.output_item.added", "sequence_number": 15, "output_index": 2,
                   "item": {"id": fc, "type": "function_call", "status": "in_progress", "call_id": "call_1",
                            "name": "get_weather", "arguments": ""}})
        );
        assert_eq!(
            d[16],
            json!({"type": "response.function_call_arguments.delta", "sequence_number": 16, "item_id": fc,
                   "output_index": 2, "delta": "{\"location\":"})
        );
        assert_eq!(
            d[18],
            json!({"type": "response.function_call_arguments.done", "sequence_number": 18, "item_id": fc,
                   "output_index": 2, "name": "get_weather", "arguments": "{\"location\":\"Paris\"}"})
        );
        assert_eq!(
            d[19]["item"],
            json!({"id": fc, "type": "function_call", "status": "completed", "call_id": "call_1",
                   "name": "get_weather", "arguments": "{\"location\":\"Paris\"}"})
        );
        assert_eq!(d[20]["output_index"], 3);
        assert_eq!(d[20]["item"]["call_id"], "call_2");
        assert_eq!(d[21]["delta"], "{}");
        assert_eq!(d[22]["arguments"], "{}");
        let done = replay(&events);
        assert_eq!(done["status"], "completed");
        assert_eq!(output_text(&done), "Checking.");
        let types: Vec<&str> = done["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["reasoning", "message", "function_call", "function_call"]
        );
        // The usage record passed to finish wins.
        assert_eq!(
            done["usage"],
            json!({
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 0},
                "output_tokens": 40,
                "output_tokens_details": {"reasoning_tokens": 12},
                "total_tokens": 140
            })
        );
    }

    #[test]
    fn length_stop_is_incomplete() {
        let mut c = StreamConverter::new("m");
        let mut events = c.push(&chunk(json!({"content": "abc"}), Some("length")));
        events.extend(c.push(&usage_chunk(50, 7, 20)));
        events.extend(c.finish(None));
        assert_numbered(&events);
        let d = datas(&events);
        let last = d.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["status"], "incomplete");
        assert_eq!(
            last["response"]["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        assert_eq!(last["response"]["usage"]["input_tokens"], 50);
        assert_eq!(last["response"]["usage"]["output_tokens"], 7);
        assert_eq!(
            last["response"]["usage"]["input_tokens_details"]["cached_tokens"],
            20
        );
        assert_eq!(d[d.len() - 2]["item"]["status"], "incomplete");
    }

    #[test]
    fn refusal_stream() {
        let mut c = StreamConverter::new("m");
        let mut events = c.push(&chunk(json!({"content": "Well"}), None));
        events.extend(c.push(&chunk(json!({"refusal": "I can't"}), None)));
        events.extend(c.push(&chunk(json!({"refusal": " help."}), None)));
        events.extend(c.finish(None));
        assert_numbered(&events);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.content_part.added",
                "response.refusal.delta",
                "response.refusal.delta",
                "response.refusal.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let d = datas(&events);
        assert_eq!(d[7]["content_index"], 1);
        assert_eq!(d[7]["part"], json!({"type": "refusal", "refusal": ""}));
        assert_eq!(d[8]["content_index"], 1);
        assert_eq!(d[10]["refusal"], "I can't help.");
        let done = replay(&events);
        assert_eq!(
            done["output"][0]["content"][1],
            json!({"type": "refusal", "refusal": "I can't help."})
        );
        assert_eq!(output_text(&done), "Well");
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
        // Two calls that both claim index 0 but carry distinct ids.
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "h", "arguments": "{}"}}]}),
            None,
        )));
        // A fragment for a call whose item is already closed is dropped.
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "oops"}}]}),
            None,
        )));
        // A call whose id is missing gets one.
        events.extend(c.push(&chunk(
            json!({"tool_calls": [{"index": 3, "function": {"name": "k", "arguments": "{}"}}]}),
            None,
        )));
        events.extend(c.finish(None));
        assert_numbered(&events);
        let d = datas(&events);
        let calls: Vec<&Value> = d
            .iter()
            .filter(|e| e["type"] == "response.output_item.added")
            .map(|e| &e["item"]["call_id"])
            .collect();
        assert_eq!(calls[..3], [&json!("a"), &json!("b"), &json!("c")]);
        assert!(calls[3].as_str().unwrap().starts_with("call_"));
        assert!(!d.iter().any(|e| e["delta"] == "oops"));
        let done = replay(&events);
        assert_eq!(done["output"][0]["arguments"], "{\"x\":1}");
        assert_eq!(done["output"].as_array().unwrap().len(), 4);
        assert_eq!(done["usage"], Value::Null);
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
            json!({"choices": [{"delta": {"content": 5, "tool_calls": "x", "refusal": 1}}]}),
            json!({"choices": [{"delta": {"tool_calls": [null, {"index": "a", "function": 3}]}}]}),
            json!({"usage": "none"}),
        ];
        let mut events = Vec::new();
        for w in weird {
            events.extend(c.push(w.to_string().as_bytes()));
        }
        events.extend(c.finish(None));
        assert_numbered(&events);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.completed"
            ]
        );
        // A stream with no chunk at all still has a complete envelope.
        let mut c = StreamConverter::new("m");
        let events = c.finish(None);
        assert_numbered(&events);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.completed"
            ]
        );
        let done = replay(&events);
        assert_eq!(done["output"], json!([]));
        assert_eq!(output_text(&done), "");
    }

    #[test]
    fn other_choices_are_ignored() {
        let mut c = StreamConverter::new("m");
        let body = json!({"choices": [{"index": 1, "delta": {"content": "second"}}]});
        let events = c.push(body.to_string().as_bytes());
        assert_eq!(names(&events), ["response.created", "response.in_progress"]);
    }
}

//! OpenAI chat request → Bedrock `ConverseRequest`.
//!
//! - `system` / `developer` messages → `system` text blocks;
//! - `user` and `assistant` messages → `messages` turns, consecutive turns
//!   of one role merged (Converse wants the roles to alternate); `tool`
//!   messages → `toolResult` blocks in a user turn;
//! - text parts → `text` blocks (blank text is dropped: Converse refuses
//!   it); `image_url` data URLs → `image` blocks `{format, source: {bytes}}`
//!   (bytes are base64 in Converse's JSON; `s3://` URLs are refused, as Bedrock would read them with the channel's credentials);
//!   `file` parts with a data URL → `document` blocks;
//! - assistant `tool_calls` → `toolUse` blocks (arguments parsed to JSON);
//! - `tools` → `toolConfig.tools[].toolSpec{name, description,
//!   inputSchema{json}}`; `tool_choice` → `toolConfig.toolChoice`
//!   (`auto`, `any`, `tool`); `none` drops the tools unless the history holds
//!   tool blocks (Converse then insists on a `toolConfig`). A history with
//!   tool blocks but no `tools` gets declarations made up from the names it
//!   uses, for the same reason;
//! - `max_completion_tokens` / `max_tokens`, `temperature`, `top_p`, `stop`
//!   → `inferenceConfig`;
//! - `response_format` `json_schema` → `outputConfig.textFormat` (Bedrock's
//!   structured outputs); `json_object` (which Converse has no switch for) →
//!   a system instruction to answer with one JSON object;
//! - `reasoning_effort` on Anthropic models → `additionalModelRequestFields
//!   .thinking` with a token budget;
//! - Converse's own fields, when a client sends them
//!   (`additionalModelRequestFields`, `additionalModelResponseFieldPaths`,
//!   `guardrailConfig`, `performanceConfig`, `requestMetadata`,
//!   `promptVariables`), pass through.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;

/// Converse fields a client may send as they are.
const NATIVE_FIELDS: &[&str] = &[
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "guardrailConfig",
    "performanceConfig",
    "requestMetadata",
    "promptVariables",
];

/// Appended to `system` for `response_format: json_object`.
pub const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with a single valid JSON object and nothing else: no prose, no code fences.";

/// Translate an OpenAI chat request for the model `model`.
pub fn to_converse(model: &str, request: &Map<String, Value>) -> Result<Value, AdapterError> {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| errors::invalid_request("`messages` is required and must be an array"))?;
    if request
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return Err(errors::invalid_request(
            "Bedrock's Converse API returns one choice: `n` must be 1",
        ));
    }
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    let mut used_tools: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| errors::invalid_request(format!("messages[{i}].role is required")))?;
        let (turn_role, blocks) = match role {
            "system" | "developer" => {
                for text in texts(message.get("content"), i)? {
                    system.push(json!({ "text": text }));
                }
                continue;
            }
            "user" => ("user", user_blocks(message.get("content"), i)?),
            "assistant" => ("assistant", assistant_blocks(message, i, &mut used_tools)?),
            "tool" | "function" => ("user", vec![tool_result(message, i)?]),
            other => {
                return Err(errors::invalid_request(format!(
                    "messages[{i}].role `{other}` is not supported"
                )));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, content)) if last == turn_role => content.extend(blocks),
            _ => turns.push((turn_role.to_owned(), blocks)),
        }
    }
    if turns.is_empty() {
        return Err(errors::invalid_request(
            "`messages` needs at least one user or assistant message with content",
        ));
    }
    let has_tool_blocks = turns.iter().any(|(_, blocks)| {
        blocks
            .iter()
            .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some())
    });

    let mut out = Map::new();
    out.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if let Some(format) = request.get("response_format").filter(|f| !f.is_null()) {
        match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                out.insert("outputConfig".into(), output_config(format)?);
            }
            Some("json_object") => system.push(json!({ "text": JSON_OBJECT_INSTRUCTION })),
            Some("text") | None => {}
            Some(other) => {
                return Err(errors::invalid_request(format!(
                    "response_format type `{other}` is not supported"
                )));
            }
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(request)?;
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(config) = tool_config(request, has_tool_blocks, &used_tools)? {
        out.insert("toolConfig".into(), config);
    }
    for field in NATIVE_FIELDS {
        if let Some(v) = request.get(*field).filter(|v| !v.is_null()) {
            out.insert((*field).to_owned(), v.clone());
        }
    }
    if let Some(budget) = thinking_budget(model, request) {
        let fields = out
            .entry("additionalModelRequestFields")
            .or_insert_with(|| json!({}));
        if let Some(fields) = fields.as_object_mut() {
            fields
                .entry("thinking")
                .or_insert(json!({"type": "enabled", "budget_tokens": budget}));
        }
        // Claude on Bedrock refuses thinking unless the output cap exceeds
        // the budget, and with a temperature or top_p set.
        let inference = out.entry("inferenceConfig").or_insert_with(|| json!({}));
        if let Some(inference) = inference.as_object_mut() {
            let cap = inference.get("maxTokens").and_then(Value::as_u64);
            if cap.is_none_or(|c| c <= budget) {
                inference.insert(
                    "maxTokens".into(),
                    json!(budget + cap.unwrap_or(DEFAULT_ANSWER_TOKENS)),
                );
            }
            inference.remove("temperature");
            inference.remove("topP");
        }
    }
    Ok(Value::Object(out))
}

/// The text of a system message: a string, or its text parts.
fn texts(content: Option<&Value>, i: usize) -> Result<Vec<String>, AdapterError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(non_blank(s).into_iter().collect()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .filter_map(non_blank)
            .collect()),
        Some(_) => Err(errors::invalid_request(format!(
            "messages[{i}].content must be a string or an array of parts"
        ))),
    }
}

fn non_blank(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

/// The content blocks of a user message.
fn user_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, AdapterError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => {
            return Ok(non_blank(s)
                .map(|t| json!({ "text": t }))
                .into_iter()
                .collect());
        }
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(errors::invalid_request(format!(
                "messages[{i}].content must be a string or an array of parts"
            )));
        }
    };
    let mut blocks = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        match part.get("type").and_then(Value::as_str) {
            Some("text") | None => {
                if let Some(t) = part.get("text").and_then(Value::as_str).and_then(non_blank) {
                    blocks.push(json!({ "text": t }));
                }
            }
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|u| u.get("url").or(Some(u)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| errors::invalid_request(format!("{} has no image URL", at())))?;
                blocks.push(image_block(url, &at())?);
            }
            Some("file") => {
                let file = part.get("file").unwrap_or(&Value::Null);
                blocks.push(document_block(file, &at())?);
            }
            Some(other) => {
                return Err(errors::invalid_request(format!(
                    "{}: content parts of type `{other}` are not supported by Bedrock's Converse API",
                    at()
                )));
            }
        }
    }
    Ok(blocks)
}

/// `data:MIME;base64,DATA` → (MIME, DATA).
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (mime, data) = rest.split_once(";base64,")?;
    Some((mime.trim(), data.trim()))
}

/// An image part → an `image` block.
fn image_block(url: &str, at: &str) -> Result<Value, AdapterError> {
    // Bedrock would read an s3:// object with the channel's credentials, on
    // behalf of whoever sent the URL: clients send bytes.
    if url.starts_with("s3://") {
        return Err(errors::invalid_request(format!(
            "{at}: s3:// URIs are not accepted (Bedrock would read them with the gateway's credentials); send the image as a base64 data URL"
        )));
    }
    let Some((mime, data)) = data_url(url) else {
        return Err(errors::invalid_request(format!(
            "{at}: Bedrock takes images as base64 data URLs (data:image/png;base64,…), not web URLs"
        )));
    };
    let subtype = mime.strip_prefix("image/").unwrap_or(mime);
    let format = image_format(subtype).ok_or_else(|| {
        errors::invalid_request(format!(
            "{at}: image type `{mime}` is not supported (png, jpeg, gif, webp)"
        ))
    })?;
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn image_format(subtype: &str) -> Option<&'static str> {
    match subtype.to_ascii_lowercase().as_str() {
        "png" => Some("png"),
        "jpeg" | "jpg" => Some("jpeg"),
        "gif" => Some("gif"),
        "webp" => Some("webp"),
        _ => None,
    }
}

fn extension(path: &str) -> Option<&str> {
    path.rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext)
}

/// A file part (`{"filename", "file_data": "data:…"}`) → a `document` block.
fn document_block(file: &Value, at: &str) -> Result<Value, AdapterError> {
    let Some((mime, data)) = file
        .get("file_data")
        .and_then(Value::as_str)
        .and_then(data_url)
    else {
        return Err(errors::invalid_request(format!(
            "{at}: Bedrock takes files as base64 data URLs in `file_data`; file ids are not supported"
        )));
    };
    let filename = file
        .get("filename")
        .and_then(Value::as_str)
        .unwrap_or("document");
    let format = document_format(mime, extension(filename)).ok_or_else(|| {
        errors::invalid_request(format!(
            "{at}: file type `{mime}` is not supported (pdf, csv, doc, docx, xls, xlsx, html, txt, md)"
        ))
    })?;
    Ok(
        json!({"document": {"format": format, "name": document_name(filename), "source": {"bytes": data}}}),
    )
}

fn document_format(mime: &str, ext: Option<&str>) -> Option<&'static str> {
    let by_mime = match mime.to_ascii_lowercase().as_str() {
        "application/pdf" => Some("pdf"),
        "text/csv" => Some("csv"),
        "application/msword" => Some("doc"),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Some("docx"),
        "application/vnd.ms-excel" => Some("xls"),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Some("xlsx"),
        "text/html" => Some("html"),
        "text/plain" => Some("txt"),
        "text/markdown" => Some("md"),
        _ => None,
    };
    by_mime.or_else(|| match ext?.to_ascii_lowercase().as_str() {
        "pdf" => Some("pdf"),
        "csv" => Some("csv"),
        "doc" => Some("doc"),
        "docx" => Some("docx"),
        "xls" => Some("xls"),
        "xlsx" => Some("xlsx"),
        "html" | "htm" => Some("html"),
        "txt" => Some("txt"),
        "md" => Some("md"),
        _ => None,
    })
}

/// Converse allows letters, digits, single spaces, hyphens, parentheses and
/// square brackets in a document's name; the extension is dropped.
fn document_name(filename: &str) -> String {
    let stem = filename.rsplit_once('.').map_or(filename, |(s, _)| s);
    let mut name = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || "-()[]".contains(c) {
            c
        } else {
            ' '
        };
        if !(c == ' ' && (name.is_empty() || name.ends_with(' '))) {
            name.push(c);
        }
    }
    let name = name.trim_end().to_owned();
    if name.is_empty() {
        "document".to_owned()
    } else {
        name
    }
}

/// The content blocks of an assistant message: its text and its tool calls.
fn assistant_blocks(
    message: &Value,
    i: usize,
    used_tools: &mut Vec<String>,
) -> Result<Vec<Value>, AdapterError> {
    let mut blocks: Vec<Value> = texts(message.get("content"), i)?
        .into_iter()
        .map(|t| json!({ "text": t }))
        .collect();
    for (j, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                errors::invalid_request(format!(
                    "messages[{i}].tool_calls[{j}].function.name is required"
                ))
            })?;
        let id = call.get("id").and_then(Value::as_str).ok_or_else(|| {
            errors::invalid_request(format!("messages[{i}].tool_calls[{j}].id is required"))
        })?;
        let input = function
            .get("arguments")
            .and_then(Value::as_str)
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        if !used_tools.iter().any(|t| t == name) {
            used_tools.push(name.to_owned());
        }
        blocks.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
    }
    Ok(blocks)
}

/// A `tool` message → a `toolResult` block.
fn tool_result(message: &Value, i: usize) -> Result<Value, AdapterError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            errors::invalid_request(format!("messages[{i}].tool_call_id is required"))
        })?;
    let mut content: Vec<Value> = match message.get("content") {
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                match part.get("type").and_then(Value::as_str) {
                    Some("image_url") => {
                        let url = part
                            .get("image_url")
                            .and_then(|u| u.get("url"))
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        blocks.push(image_block(url, &format!("messages[{i}].content[{j}]"))?);
                    }
                    _ => {
                        if let Some(t) =
                            part.get("text").and_then(Value::as_str).and_then(non_blank)
                        {
                            blocks.push(json!({ "text": t }));
                        }
                    }
                }
            }
            blocks
        }
        Some(Value::String(s)) => non_blank(s)
            .map(|t| json!({ "text": t }))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    if content.is_empty() {
        // Converse refuses blank text; an empty result still needs a block.
        content.push(json!({ "text": "(empty)" }));
    }
    Ok(json!({"toolResult": {"toolUseId": id, "content": content}}))
}

/// `max_completion_tokens` (or `max_tokens`), `temperature`, `top_p`, `stop`.
fn inference_config(request: &Map<String, Value>) -> Result<Map<String, Value>, AdapterError> {
    let mut config = Map::new();
    let max = request
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| request.get("max_tokens").filter(|v| !v.is_null()));
    if let Some(max) = max {
        let n = max
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| errors::invalid_request("`max_tokens` must be a positive integer"))?;
        config.insert("maxTokens".into(), json!(n));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = request.get(from).filter(|v| !v.is_null()) {
            let f = v
                .as_f64()
                .ok_or_else(|| errors::invalid_request(format!("`{from}` must be a number")))?;
            config.insert(to.into(), json!(f));
        }
    }
    let stops: Vec<Value> = match request.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![json!(s)],
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => list.clone(),
        Some(_) => {
            return Err(errors::invalid_request(
                "`stop` must be a string or an array of strings",
            ));
        }
    };
    if !stops.is_empty() {
        config.insert("stopSequences".into(), Value::Array(stops));
    }
    Ok(config)
}

/// `tools` and `tool_choice` → `toolConfig`.
fn tool_config(
    request: &Map<String, Value>,
    has_tool_blocks: bool,
    used_tools: &[String],
) -> Result<Option<Value>, AdapterError> {
    let mut specs = Vec::new();
    for (i, tool) in request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(errors::invalid_request(format!(
                "tools[{i}]: tools of type `{kind}` are not supported by Bedrock's Converse API"
            )));
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                errors::invalid_request(format!("tools[{i}].function.name is required"))
            })?;
        let schema = function
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let mut spec = Map::new();
        spec.insert("name".into(), json!(name));
        if let Some(d) = function
            .get("description")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
        {
            spec.insert("description".into(), json!(d));
        }
        spec.insert("inputSchema".into(), json!({ "json": schema }));
        specs.push(json!({ "toolSpec": spec }));
    }
    let choice = request.get("tool_choice").filter(|c| !c.is_null());
    let none = choice.and_then(Value::as_str) == Some("none");
    if specs.is_empty() || none {
        if !has_tool_blocks {
            return Ok(None);
        }
        if specs.is_empty() {
            // Converse wants every tool the history uses declared.
            specs = used_tools
                .iter()
                .map(|name| {
                    json!({"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object"}}}})
                })
                .collect();
        }
        if specs.is_empty() {
            return Ok(None);
        }
        return Ok(Some(json!({ "tools": specs })));
    }
    let mut config = Map::new();
    config.insert("tools".into(), Value::Array(specs));
    if let Some(choice) = choice.and_then(tool_choice) {
        config.insert("toolChoice".into(), choice);
    }
    Ok(Some(Value::Object(config)))
}

/// OpenAI `tool_choice` → Converse `toolChoice`.
fn tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            _ => None,
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)?;
            Some(json!({"tool": {"name": name}}))
        }
        _ => None,
    }
}

/// `response_format: {type: json_schema, json_schema: {name, description,
/// schema}}` → `outputConfig.textFormat` (the schema as a JSON string).
fn output_config(format: &Value) -> Result<Value, AdapterError> {
    let spec = format.get("json_schema").unwrap_or(&Value::Null);
    let schema = spec
        .get("schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| errors::invalid_request("response_format.json_schema.schema is required"))?;
    let mut definition = Map::new();
    definition.insert("schema".into(), json!(schema.to_string()));
    if let Some(name) = spec.get("name").and_then(Value::as_str) {
        definition.insert("name".into(), json!(name));
    }
    if let Some(d) = spec.get("description").and_then(Value::as_str) {
        definition.insert("description".into(), json!(d));
    }
    Ok(json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}))
}

/// Output tokens left for the answer when thinking raises a cap the client
/// did not set (or set below the thinking budget).
const DEFAULT_ANSWER_TOKENS: u64 = 1024;

/// `reasoning_effort` → Claude's extended-thinking budget, on Anthropic
/// models.
fn thinking_budget(model: &str, request: &Map<String, Value>) -> Option<u64> {
    if !model.contains("anthropic.") {
        return None;
    }
    match request.get("reasoning_effort").and_then(Value::as_str)? {
        "minimal" | "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16_384),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converse(body: Value) -> Value {
        let Value::Object(map) = body else {
            panic!("not an object")
        };
        to_converse("anthropic.claude-3-5-sonnet-20240620-v1:0", &map).unwrap()
    }

    fn refused(body: Value) -> String {
        let Value::Object(map) = body else {
            panic!("not an object")
        };
        match to_converse("m", &map) {
            Err(AdapterError::InvalidRequest(m)) => m,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    /// The documented request shape: the OpenAI request in
    /// `openai_request.json` becomes `converse_request.json`.
    #[test]
    fn fixture_request_translates() {
        let openai: Value =
            serde_json::from_str(include_str!("../fixtures/openai_request.json")).unwrap();
        let expected: Value =
            serde_json::from_str(include_str!("../fixtures/converse_request.json")).unwrap();
        assert_eq!(converse(openai), expected);
    }

    #[test]
    fn roles_merge_and_blank_text_is_dropped() {
        let b = converse(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "In French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "  "}, {"type": "text", "text": "again"}]},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "More"}
        ], "stop": "END", "max_tokens": 50, "temperature": 0.2}));
        assert_eq!(
            b["system"],
            json!([{"text": "Be brief."}, {"text": "In French."}])
        );
        assert_eq!(
            b["messages"],
            json!([
                {"role": "user", "content": [{"text": "Hi"}, {"text": "again"}]},
                {"role": "assistant", "content": [{"text": "Bonjour"}]},
                {"role": "user", "content": [{"text": "More"}]}
            ])
        );
        assert_eq!(
            b["inferenceConfig"],
            json!({"maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"]})
        );
        assert!(b.get("toolConfig").is_none() && b.get("outputConfig").is_none());
    }

    #[test]
    fn images_and_documents() {
        let b = converse(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
            {"type": "file", "file": {"filename": "Q3 report (final).pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
        ]}]}));
        let c = &b["messages"][0]["content"];
        assert_eq!(
            c[0],
            json!({"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}})
        );
        // The gateway's credentials never fetch a client-named S3 object.
        assert!(
            refused(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "s3://bucket/cat.webp"}}]}]}))
            .contains("s3://")
        );
        assert_eq!(
            c[1],
            json!({"document": {"format": "pdf", "name": "Q3 report (final)", "source": {"bytes": "JVBERi0="}}})
        );
        assert!(
            refused(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}))
            .contains("data URLs")
        );
        assert!(
            refused(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]}))
            .contains("image/tiff")
        );
        assert!(
            refused(json!({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "mp3"}}]}]}))
            .contains("input_audio")
        );
        assert!(
            refused(json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "file-1"}}]}]}))
            .contains("file ids")
        );
        assert_eq!(document_name("...."), "document");
        assert_eq!(document_name("a  b_c.txt"), "a b c");
    }

    #[test]
    fn tool_choice_modes() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let with = |choice: Value| {
            converse(
                json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
            )
        };
        assert_eq!(
            with(json!("auto"))["toolConfig"]["toolChoice"],
            json!({"auto": {}})
        );
        assert_eq!(
            with(json!("required"))["toolConfig"]["toolChoice"],
            json!({"any": {}})
        );
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "f"}}))["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "f"}})
        );
        assert!(with(json!("none")).get("toolConfig").is_none());
        let t = with(Value::Null);
        assert_eq!(
            t["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
        );
        assert!(
            refused(json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search"}]}))
            .contains("web_search")
        );
    }

    #[test]
    fn a_tool_history_without_tools_declares_them() {
        let b = converse(json!({"messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "not json"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": ""},
        ], "tool_choice": "none"}));
        assert_eq!(
            b["messages"][1]["content"][0],
            json!({"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}})
        );
        assert_eq!(
            b["messages"][2]["content"][0],
            json!({"toolResult": {"toolUseId": "t1", "content": [{"text": "(empty)"}]}})
        );
        assert_eq!(
            b["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]})
        );
    }

    #[test]
    fn json_modes_and_thinking() {
        let b = converse(json!({"messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "description": "A person",
                "schema": {"type": "object", "properties": {"age": {"type": "integer"}}}}},
            "reasoning_effort": "medium", "max_completion_tokens": 8000}));
        let def = &b["outputConfig"]["textFormat"];
        assert_eq!(def["type"], "json_schema");
        let schema: Value =
            serde_json::from_str(def["structure"]["jsonSchema"]["schema"].as_str().unwrap())
                .unwrap();
        assert_eq!(schema["properties"]["age"]["type"], "integer");
        assert_eq!(def["structure"]["jsonSchema"]["name"], "person");
        assert_eq!(
            b["additionalModelRequestFields"]["thinking"],
            json!({"type": "enabled", "budget_tokens": 4096})
        );
        assert_eq!(b["inferenceConfig"]["maxTokens"], 8000);
        // A cap at or under the budget is raised above it; sampling knobs
        // Claude refuses with thinking are dropped.
        let b = converse(json!({"messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "high", "max_tokens": 500, "temperature": 0.3, "top_p": 0.9}));
        assert_eq!(b["inferenceConfig"]["maxTokens"], 16_384 + 500);
        assert!(b["inferenceConfig"].get("temperature").is_none());
        assert!(b["inferenceConfig"].get("topP").is_none());
        let b = converse(json!({"messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "low"}));
        assert_eq!(
            b["inferenceConfig"]["maxTokens"],
            1024 + DEFAULT_ANSWER_TOKENS
        );
        let b = converse(json!({"messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
            "additionalModelRequestFields": {"top_k": 5}, "guardrailConfig": {"guardrailIdentifier": "g", "guardrailVersion": "1"}}));
        assert_eq!(b["system"], json!([{"text": JSON_OBJECT_INSTRUCTION}]));
        assert_eq!(b["additionalModelRequestFields"], json!({"top_k": 5}));
        assert_eq!(b["guardrailConfig"]["guardrailIdentifier"], "g");
        assert!(b.get("outputConfig").is_none());
        let Value::Object(m) =
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "high"})
        else {
            panic!()
        };
        assert!(
            to_converse("meta.llama3-70b-instruct-v1:0", &m)
                .unwrap()
                .get("additionalModelRequestFields")
                .is_none()
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(refused(json!({})).contains("messages"));
        assert!(refused(json!({"messages": "hi"})).contains("messages"));
        assert!(
            refused(json!({"messages": [{"role": "system", "content": "x"}]}))
                .contains("at least one")
        );
        assert!(
            refused(json!({"messages": [{"role": "critic", "content": "x"}]})).contains("critic")
        );
        assert!(refused(json!({"messages": [{"content": "x"}]})).contains("role"));
        assert!(refused(json!({"messages": [{"role": "user", "content": 5}]})).contains("content"));
        assert!(
            refused(json!({"messages": [{"role": "user", "content": "x"}], "n": 2}))
                .contains("`n`")
        );
        assert!(
            refused(json!({"messages": [{"role": "user", "content": "x"}], "stop": 3}))
                .contains("stop")
        );
        assert!(
            refused(json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}))
                .contains("max_tokens")
        );
        assert!(
            refused(json!({"messages": [{"role": "tool", "content": "x"}]}))
                .contains("tool_call_id")
        );
        assert!(refused(json!({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]})).contains("id"));
        assert!(
            refused(json!({"messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}))
            .contains("schema")
        );
    }
}

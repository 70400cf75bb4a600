//! OpenAI chat request → Gemini `GenerateContentRequest`.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;

/// The signature Google documents for function calls replayed without the
/// one Gemini gave them (history from another model, or a client that
/// dropped it).
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// The harm categories `safety-threshold` applies to.
const HARM_CATEGORIES: &[&str] = &[
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
];

/// Gemini's built-in tools, passed through when a client names them
/// (`{"google_search": {}}`) next to its functions.
const BUILTIN_TOOLS: &[&str] = &[
    "googleSearch",
    "google_search",
    "codeExecution",
    "code_execution",
    "urlContext",
    "url_context",
];

/// Translate a chat request (already checked to be a JSON object).
pub fn to_generate_request(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| errors::invalid_request("`messages` must be an array"))?;
    let names = call_names(messages);
    let sign = needs_signature(&call.model);
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let (role, parts) = match role {
            "system" | "developer" => {
                let text = text_of(m.get("content"));
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
                continue;
            }
            "user" => ("user", user_parts(i, m.get("content"))?),
            "assistant" => ("model", model_parts(m, sign)),
            "tool" | "function" => ("user", vec![function_response(i, m, &names)?]),
            other => {
                return Err(errors::invalid_request(format!(
                    "messages[{i}]: the role `{other}` is not supported"
                )));
            }
        };
        if parts.is_empty() {
            continue;
        }
        // Merge a run of one role into one turn (tool results answering
        // parallel calls must share a turn).
        let merged = match contents.last_mut().and_then(Value::as_object_mut) {
            Some(last) if last.get("role").and_then(Value::as_str) == Some(role) => {
                match last.get_mut("parts").and_then(Value::as_array_mut) {
                    Some(existing) => {
                        existing.extend(parts.iter().cloned());
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if !merged {
            contents.push(json!({"role": role, "parts": parts}));
        }
    }
    if contents.is_empty() {
        return Err(errors::invalid_request(
            "at least one user or assistant message is required",
        ));
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let config = generation_config(req);
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    let tools = tools(req)?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(config) = req.get("tool_choice").and_then(tool_config) {
            out.insert("toolConfig".into(), config);
        }
    }
    if let Some(threshold) = call
        .channel
        .option("safety-threshold")
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let settings: Vec<Value> = HARM_CATEGORIES
            .iter()
            .map(|c| json!({"category": c, "threshold": threshold}))
            .collect();
        out.insert("safetySettings".into(), Value::Array(settings));
    }
    Ok(Value::Object(out))
}

/// Whether replayed function calls must carry a thought signature: Gemini 3
/// and later do; older models and Gemma do not.
fn needs_signature(model: &str) -> bool {
    let model = model
        .trim()
        .trim_start_matches("models/")
        .to_ascii_lowercase();
    !(model.starts_with("gemini-1")
        || model.starts_with("gemini-2")
        || model.starts_with("gemma")
        || model.starts_with("learnlm")
        || model.starts_with("tunedmodels/"))
}

/// Tool call id → function name, from every assistant message.
fn call_names(messages: &[Value]) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for m in messages {
        for call in m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = call.get("id").and_then(Value::as_str);
            let name = call
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            if let (Some(id), Some(name)) = (id, name) {
                names.push((id.to_owned(), name.to_owned()));
            }
        }
    }
    names
}

/// A message's text: the string content, or its text parts joined.
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

fn user_parts(i: usize, content: Option<&Value>) -> Result<Vec<Value>, AdapterError> {
    match content {
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"text": s})]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                if let Some(p) = user_part(part).map_err(|e| at(i, j, e))? {
                    out.push(p);
                }
            }
            Ok(out)
        }
        Some(Value::Null) | None => Ok(Vec::new()),
        Some(_) => Err(errors::invalid_request(format!(
            "messages[{i}].content must be a string or an array of parts"
        ))),
    }
}

/// Prefix an invalid part's message with where it is.
fn at(i: usize, j: usize, e: AdapterError) -> AdapterError {
    match e {
        AdapterError::InvalidRequest(m) => {
            AdapterError::InvalidRequest(format!("messages[{i}].content[{j}]: {m}"))
        }
        other => other,
    }
}

/// One OpenAI content part → a Gemini part (`None` for empty text).
fn user_part(part: &Value) -> Result<Option<Value>, AdapterError> {
    let kind = part.get("type").and_then(Value::as_str);
    match kind {
        Some("text") => Ok(part
            .get("text")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| json!({"text": t}))),
        Some("image_url") => {
            let url = part
                .get("image_url")
                .and_then(|i| i.get("url").or(Some(i)))
                .and_then(Value::as_str)
                .ok_or_else(|| errors::invalid_request("an image part has no url"))?;
            media_part(url, "image/jpeg").map(Some)
        }
        Some("input_audio") => {
            let audio = part.get("input_audio");
            let data = audio
                .and_then(|a| a.get("data"))
                .and_then(Value::as_str)
                .ok_or_else(|| errors::invalid_request("an audio part has no data"))?;
            let format = audio
                .and_then(|a| a.get("format"))
                .and_then(Value::as_str)
                .unwrap_or("wav");
            Ok(Some(json!({"inlineData": {
                "mimeType": audio_mime(format),
                "data": data,
            }})))
        }
        Some("file") => {
            let file = part.get("file");
            let field = |k: &str| file.and_then(|f| f.get(k)).and_then(Value::as_str);
            let mime = field("filename")
                .and_then(guess_mime)
                .unwrap_or("application/pdf");
            match field("file_data") {
                Some(data) if data.starts_with("data:") => media_part(data, mime).map(Some),
                Some(data) => Ok(Some(
                    json!({"inlineData": {"mimeType": mime, "data": data}}),
                )),
                None => Err(errors::invalid_request(
                    "file parts must carry `file_data`: uploaded file ids are not supported by Gemini channels",
                )),
            }
        }
        other => Err(errors::invalid_request(format!(
            "content parts of type `{}` are not supported by Gemini channels",
            other.unwrap_or("(none)")
        ))),
    }
}

/// A URL → `inlineData` (a base64 data URL) or `fileData` (anything else).
fn media_part(url: &str, fallback_mime: &str) -> Result<Value, AdapterError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| errors::invalid_request("a data URL has no data"))?;
        let Some(mime) = meta.strip_suffix(";base64") else {
            return Err(errors::invalid_request(
                "only base64 data URLs are supported",
            ));
        };
        let mime = mime.split(';').next().unwrap_or_default();
        let mime = if mime.is_empty() { fallback_mime } else { mime };
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    if url.trim().is_empty() {
        return Err(errors::invalid_request("a media part has an empty url"));
    }
    let mut file = Map::new();
    // YouTube links are videos Gemini fetches itself, with no MIME type.
    if !is_youtube(url) {
        let mime = guess_mime(url).unwrap_or(fallback_mime);
        file.insert("mimeType".into(), Value::String(mime.to_owned()));
    }
    file.insert("fileUri".into(), Value::String(url.to_owned()));
    Ok(json!({"fileData": file}))
}

fn is_youtube(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    host == "youtu.be" || host == "youtube.com" || host.ends_with(".youtube.com")
}

/// The MIME type of a file, from the extension of a URL's path or a name.
fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "aac" => "audio/aac",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "aiff" => "audio/aiff",
        "mp4" => "video/mp4",
        "mpeg" | "mpg" => "video/mpeg",
        "mov" => "video/mov",
        "webm" => "video/webm",
        "avi" => "video/avi",
        "wmv" => "video/wmv",
        "flv" => "video/x-flv",
        "3gp" | "3gpp" => "video/3gpp",
        _ => return None,
    })
}

fn audio_mime(format: &str) -> String {
    match format {
        "mp3" | "mpeg" => "audio/mp3".to_owned(),
        "" => "audio/wav".to_owned(),
        other => format!("audio/{other}"),
    }
}

/// An assistant message → text and `functionCall` parts.
fn model_parts(m: &Value, sign: bool) -> Vec<Value> {
    let mut parts = Vec::new();
    let text = text_of(m.get("content"));
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
    let calls: Vec<&Value> = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("function"))
        .collect();
    let signatures: Vec<Option<&str>> = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("function").is_some())
        .map(|c| {
            c.pointer("/extra_content/google/thought_signature")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .collect();
    // Only the first of parallel calls carries a signature; when none came
    // back, the first gets the placeholder.
    let unsigned = signatures.iter().all(Option::is_none);
    for (n, f) in calls.iter().enumerate() {
        let signature = signatures.get(n).copied().flatten();
        let signature = match signature {
            Some(s) => Some(s),
            None if sign && unsigned && n == 0 => Some(SKIP_SIGNATURE),
            None => None,
        };
        parts.push(function_call(f, signature));
    }
    // The deprecated `function_call` of the functions API.
    if let Some(f) = m.get("function_call").filter(|f| f.is_object()) {
        let signature = (sign && calls.is_empty()).then_some(SKIP_SIGNATURE);
        parts.push(function_call(f, signature));
    }
    parts
}

fn function_call(f: &Value, signature: Option<&str>) -> Value {
    let args = f
        .get("arguments")
        .and_then(Value::as_str)
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let mut part = json!({"functionCall": {
        "name": f.get("name").and_then(Value::as_str).unwrap_or_default(),
        "args": args,
    }});
    if let (Some(signature), Some(obj)) = (signature, part.as_object_mut()) {
        obj.insert(
            "thoughtSignature".into(),
            Value::String(signature.to_owned()),
        );
    }
    part
}

/// A tool (or legacy function) result → a `functionResponse` part named
/// after the call it answers.
fn function_response(
    i: usize,
    m: &Value,
    names: &[(String, String)],
) -> Result<Value, AdapterError> {
    let id = m.get("tool_call_id").and_then(Value::as_str);
    let name = id
        .and_then(|id| names.iter().find(|(call, _)| call == id))
        .map(|(_, name)| name.as_str())
        .or_else(|| m.get("name").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            errors::invalid_request(format!(
                "messages[{i}]: no assistant tool call has the id `{}` this tool message answers",
                id.unwrap_or_default()
            ))
        })?;
    let text = text_of(m.get("content"));
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => Value::Object(o),
        _ => json!({"output": text}),
    };
    Ok(json!({"functionResponse": {"name": name, "response": response}}))
}

fn generation_config(req: &Map<String, Value>) -> Map<String, Value> {
    let mut config = Map::new();
    if let Some(n) = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.get(*k).and_then(Value::as_u64))
    {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = req.get(from).filter(|v| v.is_number()) {
            config.insert(to.into(), v.clone());
        }
    }
    if let Some(seed) = req.get("seed").and_then(Value::as_i64) {
        config.insert("seed".into(), json!(seed));
    }
    if let Some(n) = req.get("n").and_then(Value::as_u64) {
        config.insert("candidateCount".into(), json!(n));
    }
    let stops: Vec<Value> = match req.get("stop") {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(a)) => a.iter().filter(|s| s.is_string()).cloned().collect(),
        _ => Vec::new(),
    };
    if !stops.is_empty() {
        config.insert("stopSequences".into(), Value::Array(stops));
    }
    if let Some(format) = req.get("response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                config.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = format
                    .get("json_schema")
                    .and_then(|s| s.get("schema"))
                    .filter(|s| s.is_object())
                {
                    config.insert("responseJsonSchema".into(), sanitize_schema(schema));
                }
            }
            _ => {}
        }
    }
    if let Some(effort) = req.get("reasoning_effort").and_then(Value::as_str) {
        config.insert("thinkingConfig".into(), thinking_config(effort));
    }
    // Google's own OpenAI-compatible endpoint reads a thinking config from
    // `extra_body={"google": {"thinking_config": {...}}}`; honour it too.
    if let Some(thinking) = req
        .get("google")
        .and_then(|g| g.get("thinking_config"))
        .filter(|t| t.is_object())
    {
        config.insert("thinkingConfig".into(), thinking.clone());
    }
    config
}

/// `reasoning_effort` → a thinking budget (the budgets Google's
/// OpenAI-compatible endpoint uses), with thought summaries returned.
fn thinking_config(effort: &str) -> Value {
    let budget = match effort {
        "none" => return json!({"thinkingBudget": 0}),
        "minimal" => 512,
        "low" => 1024,
        "high" | "xhigh" => 24576,
        _ => 8192,
    };
    json!({"thinkingBudget": budget, "includeThoughts": true})
}

/// A client's JSON Schema, minus the `$schema` keyword Gemini has no use for.
fn sanitize_schema(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
    }
    schema
}

/// OpenAI tools → one `functionDeclarations` tool, plus any built-in tool
/// the client named.
fn tools(req: &Map<String, Value>) -> Result<Vec<Value>, AdapterError> {
    let Some(list) = req.get("tools").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut declarations = Vec::new();
    let mut out = Vec::new();
    for (i, tool) in list.iter().enumerate() {
        if let Some(f) = tool.get("function").filter(|f| f.is_object()) {
            declarations.push(declaration(i, f)?);
            continue;
        }
        if let Some(obj) = tool.as_object()
            && let Some(key) = BUILTIN_TOOLS.iter().find(|k| obj.contains_key(**k))
        {
            out.push(json!({ *key: obj.get(*key).cloned().unwrap_or_else(|| json!({})) }));
            continue;
        }
        return Err(errors::invalid_request(format!(
            "tools[{i}]: tools of type `{}` are not supported by Gemini channels",
            tool.get("type").and_then(Value::as_str).unwrap_or("(none)")
        )));
    }
    if !declarations.is_empty() {
        out.insert(0, json!({"functionDeclarations": declarations}));
    }
    Ok(out)
}

fn declaration(i: usize, f: &Value) -> Result<Value, AdapterError> {
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| errors::invalid_request(format!("tools[{i}].function has no name")))?;
    let mut out = Map::new();
    out.insert("name".into(), Value::String(name.to_owned()));
    if let Some(d) = f.get("description").and_then(Value::as_str) {
        out.insert("description".into(), Value::String(d.to_owned()));
    }
    if let Some(p) = f.get("parameters").filter(|p| p.is_object()) {
        out.insert("parametersJsonSchema".into(), sanitize_schema(p));
    }
    Ok(Value::Object(out))
}

/// `tool_choice` → `toolConfig.functionCallingConfig`.
fn tool_config(choice: &Value) -> Option<Value> {
    let named = |v: &Value| {
        v.get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| v.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (mode, names): (&str, Vec<String>) = match choice {
        Value::String(s) => match s.as_str() {
            "none" => ("NONE", Vec::new()),
            "required" => ("ANY", Vec::new()),
            "auto" => ("AUTO", Vec::new()),
            _ => return None,
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("allowed_tools") => {
                let allowed = o.get("allowed_tools")?;
                let required = allowed.get("mode").and_then(Value::as_str) == Some("required");
                let names = allowed
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(named)
                    .collect();
                // Gemini restricts the functions only in ANY mode.
                if required {
                    ("ANY", names)
                } else {
                    ("AUTO", Vec::new())
                }
            }
            _ => ("ANY", vec![named(choice)?]),
        },
        _ => return None,
    };
    let mut config = Map::new();
    config.insert("mode".into(), Value::String(mode.to_owned()));
    if !names.is_empty() {
        config.insert("allowedFunctionNames".into(), json!(names));
    }
    Some(json!({"functionCallingConfig": config}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CHAT, Gemini};
    use transit_adapter_sdk::testing::call;

    fn prepared_for(model: &str, body: Value) -> Value {
        let c = call(CHAT, model, false);
        let req = Gemini::prepare_request(&c, body.to_string().as_bytes()).unwrap();
        serde_json::from_slice(&req.body).unwrap()
    }

    fn prepared(body: Value) -> Value {
        prepared_for("gemini-2.5-flash", body)
    }

    fn refused(body: Value) -> String {
        let c = call(CHAT, "gemini-2.5-flash", false);
        match Gemini::prepare_request(&c, body.to_string().as_bytes()) {
            Err(AdapterError::InvalidRequest(m)) => m,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    #[test]
    fn system_roles_and_generation_config() {
        let b = prepared(json!({"model": "x", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "More"}
        ], "max_tokens": 100, "max_completion_tokens": 200, "temperature": 0.3, "top_p": 0.9,
           "stop": "END", "n": 2, "seed": 7, "presence_penalty": 0.5}));
        assert_eq!(
            b["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]})
        );
        let contents = b["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3, "consecutive user turns are merged");
        assert_eq!(contents[0]["role"], "user");
        assert_eq!(
            contents[0]["parts"],
            json!([{"text": "Hi"}, {"text": "again"}])
        );
        assert_eq!(
            contents[1],
            json!({"role": "model", "parts": [{"text": "Bonjour"}]})
        );
        let g = &b["generationConfig"];
        assert_eq!(g["maxOutputTokens"], 200);
        assert_eq!(g["temperature"], 0.3);
        assert_eq!(g["topP"], 0.9);
        assert_eq!(g["stopSequences"], json!(["END"]));
        assert_eq!(g["candidateCount"], 2);
        assert_eq!(g["seed"], 7);
        assert_eq!(g["presencePenalty"], 0.5);
        assert!(b.get("model").is_none() && b.get("messages").is_none());
        assert!(b.get("tools").is_none() && b.get("safetySettings").is_none());
    }

    #[test]
    fn images_audio_and_files_become_parts() {
        let b = prepared(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=large"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/picture"}},
            {"type": "image_url", "image_url": {"url": "https://www.youtube.com/watch?v=9hE5-98ZeCg"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3"}},
            {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
        ]}]}));
        let p = &b["contents"][0]["parts"];
        assert_eq!(p[0]["text"], "What is this?");
        assert_eq!(
            p[1]["inlineData"],
            json!({"mimeType": "image/png", "data": "iVBORw0KGgo="})
        );
        assert_eq!(
            p[2]["fileData"],
            json!({"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=large"})
        );
        assert_eq!(p[3]["fileData"]["mimeType"], "image/jpeg");
        assert!(p[4]["fileData"].get("mimeType").is_none());
        assert_eq!(p[5]["inlineData"]["mimeType"], "audio/mp3");
        assert_eq!(p[6]["inlineData"]["mimeType"], "application/pdf");
        assert_eq!(p[6]["inlineData"]["data"], "JVBERi0=");

        let m = refused(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/svg+xml,%3Csvg%3E"}}]}]}));
        assert!(
            m.contains("messages[0].content[0]") && m.contains("base64"),
            "{m}"
        );
        let m = refused(json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "file-abc"}}]}]}));
        assert!(m.contains("file ids"), "{m}");
    }

    #[test]
    fn tools_calls_and_results_translate() {
        let b = prepared(json!({"messages": [
            {"role": "user", "content": "Weather in Paris and London?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"},
                 "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{\"city\":\"London\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\":18}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "14:05"}
        ], "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
             "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                            "properties": {"location": {"type": "string"}}, "required": ["location"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "get_time"}},
            {"google_search": {}}
        ], "tool_choice": "required"}));
        let model = &b["contents"][1];
        assert_eq!(model["role"], "model");
        assert_eq!(
            model["parts"][0],
            json!({"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"})
        );
        assert_eq!(
            model["parts"][1],
            json!({"functionCall": {"name": "get_time", "args": {"city": "London"}}})
        );
        let results = &b["contents"][2];
        assert_eq!(results["role"], "user");
        assert_eq!(
            results["parts"],
            json!([
                {"functionResponse": {"name": "get_weather", "response": {"temperature": 18}}},
                {"functionResponse": {"name": "get_time", "response": {"output": "14:05"}}}
            ])
        );
        let declarations = &b["tools"][0]["functionDeclarations"];
        assert_eq!(declarations[0]["name"], "get_weather");
        assert_eq!(declarations[0]["description"], "Weather for a city");
        let schema = &declarations[0]["parametersJsonSchema"];
        assert_eq!(schema["properties"]["location"]["type"], "string");
        assert_eq!(schema["additionalProperties"], false);
        assert!(schema.get("$schema").is_none());
        assert!(declarations[1].get("parametersJsonSchema").is_none());
        assert_eq!(b["tools"][1], json!({"google_search": {}}));
        assert_eq!(
            b["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
    }

    #[test]
    fn gemini_3_replays_get_a_placeholder_signature() {
        let body = json!({"messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": "not json"}}
            ]},
            {"role": "tool", "tool_call_id": "a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "b", "content": "rainy"}
        ]});
        let b = prepared_for("gemini-3-pro-preview", body.clone());
        let parts = &b["contents"][1]["parts"];
        assert_eq!(parts[0]["thoughtSignature"], SKIP_SIGNATURE);
        assert!(parts[1].get("thoughtSignature").is_none());
        assert_eq!(parts[1]["functionCall"]["args"], json!({}));
        let b = prepared_for("models/gemini-2.5-flash", body);
        assert!(
            b["contents"][1]["parts"][0]
                .get("thoughtSignature")
                .is_none()
        );
    }

    #[test]
    fn tool_choice_modes() {
        let config = |choice: Value| tool_config(&choice);
        assert_eq!(
            config(json!("none")),
            Some(json!({"functionCallingConfig": {"mode": "NONE"}}))
        );
        assert_eq!(
            config(json!("auto")),
            Some(json!({"functionCallingConfig": {"mode": "AUTO"}}))
        );
        assert_eq!(
            config(json!({"type": "function", "function": {"name": "get_weather"}})),
            Some(
                json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
            )
        );
        assert_eq!(
            config(
                json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "a"}}]}})
            ),
            Some(json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a"]}}))
        );
        assert_eq!(config(json!(3)), None);
        // No tools, no tool config.
        let b = prepared(
            json!({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"}),
        );
        assert!(b.get("toolConfig").is_none());
    }

    #[test]
    fn json_output_and_thinking() {
        let b = prepared(json!({"messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
            "reasoning_effort": "low"}));
        let g = &b["generationConfig"];
        assert_eq!(g["responseMimeType"], "application/json");
        assert_eq!(
            g["responseJsonSchema"]["properties"]["a"]["type"],
            "integer"
        );
        assert_eq!(
            g["thinkingConfig"],
            json!({"thinkingBudget": 1024, "includeThoughts": true})
        );
        let b = prepared(json!({"messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}, "reasoning_effort": "none"}));
        assert_eq!(
            b["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert!(b["generationConfig"].get("responseJsonSchema").is_none());
        assert_eq!(
            b["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 0})
        );
        let b = prepared(json!({"messages": [{"role": "user", "content": "hi"}],
            "reasoning_effort": "high", "google": {"thinking_config": {"thinking_budget": 99, "include_thoughts": true}}}));
        assert_eq!(
            b["generationConfig"]["thinkingConfig"],
            json!({"thinking_budget": 99, "include_thoughts": true})
        );
    }

    #[test]
    fn safety_threshold_option() {
        let mut c = call(CHAT, "gemini-2.5-flash", false);
        c.channel.options = vec![("safety-threshold".into(), "BLOCK_NONE".into())];
        let req = Gemini::prepare_request(&c, br#"{"messages":[{"role":"user","content":"hi"}]}"#)
            .unwrap();
        let b: Value = serde_json::from_slice(&req.body).unwrap();
        let settings = b["safetySettings"].as_array().unwrap();
        assert_eq!(settings.len(), HARM_CATEGORIES.len());
        assert!(settings.iter().all(|s| s["threshold"] == "BLOCK_NONE"));
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(refused(json!({})).contains("messages"));
        assert!(
            refused(json!({"messages": [{"role": "system", "content": "only"}]}))
                .contains("at least one")
        );
        assert!(
            refused(json!({"messages": [{"role": "critic", "content": "x"}]})).contains("critic")
        );
        assert!(
            refused(json!({"messages": [
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "nope", "content": "x"}
            ]}))
            .contains("nope")
        );
        assert!(
            refused(json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "custom", "custom": {"name": "x"}}]}))
            .contains("custom")
        );
        assert!(refused(json!({"messages": [{"role": "user", "content": 5}]})).contains("content"));
        let c = call(CHAT, "m", false);
        assert!(matches!(
            Gemini::prepare_request(&c, b"{"),
            Err(AdapterError::InvalidRequest(_))
        ));
    }
}

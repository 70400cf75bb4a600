//! OpenAI chat request → Cohere `POST /v2/chat` request.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;

/// Request fields that keep their name and value.
const COPIED: &[&str] = &[
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "thinking",
    "safety_mode",
];

/// Translate an OpenAI chat request for `call.model`.
pub fn to_cohere(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| errors::invalid_request("`messages` must be a non-empty array"))?;
    if let Some(n) = req.get("n").and_then(Value::as_u64)
        && n > 1
    {
        return Err(errors::invalid_request(
            "Cohere returns one choice per request: `n` must be 1",
        ));
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(call.model.clone()));
    out.insert("messages".into(), Value::Array(messages_of(messages)?));

    let mut tools = match req.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools.iter().map(tool).collect::<Result<_, _>>()?,
        Some(_) => return Err(errors::invalid_request("`tools` must be an array")),
    };
    match req.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => {}
            "required" => {
                out.insert("tool_choice".into(), json!("REQUIRED"));
            }
            "none" => {
                out.insert("tool_choice".into(), json!("NONE"));
            }
            other => {
                return Err(errors::invalid_request(format!(
                    "unknown `tool_choice` {other:?}"
                )));
            }
        },
        Some(Value::Object(choice)) => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    errors::invalid_request("`tool_choice.function.name` is required")
                })?;
            // Cohere cannot force one function by name: offer it alone and
            // require a call.
            tools.retain(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name));
            if tools.is_empty() {
                return Err(errors::invalid_request(format!(
                    "`tool_choice` names the function {name:?}, which is not in `tools`"
                )));
            }
            out.insert("tool_choice".into(), json!("REQUIRED"));
        }
        Some(_) => return Err(errors::invalid_request("invalid `tool_choice`")),
    }
    if !tools.is_empty() {
        let strict = req
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|t| t.pointer("/function/strict") == Some(&Value::Bool(true)));
        if strict {
            out.insert("strict_tools".into(), Value::Bool(true));
        }
        out.insert("tools".into(), Value::Array(tools));
    }

    if let Some(format) = response_format(req.get("response_format"))? {
        out.insert("response_format".into(), format);
    }
    if let Some(max) = req
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| req.get("max_tokens").filter(|v| !v.is_null()))
    {
        out.insert("max_tokens".into(), max.clone());
    }
    if let Some(p) = req.get("top_p").filter(|v| !v.is_null()) {
        out.insert("p".into(), p.clone());
    }
    if let Some(k) = req.get("top_k").filter(|v| !v.is_null()) {
        out.insert("k".into(), k.clone());
    }
    match req.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
            out.insert("stop_sequences".into(), Value::Array(list.clone()));
        }
        Some(_) => {
            return Err(errors::invalid_request(
                "`stop` must be a string or an array of strings",
            ));
        }
    }
    for key in COPIED {
        if let Some(v) = req.get(*key).filter(|v| !v.is_null()) {
            out.insert((*key).into(), v.clone());
        }
    }
    if !out.contains_key("thinking")
        && let Some(effort) = req.get("reasoning_effort").and_then(Value::as_str)
    {
        let kind = if matches!(effort, "none" | "minimal") {
            "disabled"
        } else {
            "enabled"
        };
        out.insert("thinking".into(), json!({ "type": kind }));
    }
    if req.get("logprobs") == Some(&Value::Bool(true)) {
        out.insert("logprobs".into(), Value::Bool(true));
    }
    out.insert("stream".into(), Value::Bool(call.stream));
    Ok(Value::Object(out))
}

/// The messages: every system and developer message first (Cohere refuses
/// a system turn after others), joined into one.
fn messages_of(messages: &[Value]) -> Result<Vec<Value>, AdapterError> {
    let mut system = Vec::new();
    let mut turns = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        match role {
            "system" | "developer" => {
                let text = text_of(m.get("content"), i)?;
                if !text.is_empty() {
                    system.push(text);
                }
            }
            "user" => {
                turns.push(json!({"role": "user", "content": user_content(m.get("content"), i)?}))
            }
            "assistant" => turns.push(assistant(m, i)?),
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        errors::invalid_request(format!(
                            "messages[{i}]: a tool message needs `tool_call_id`"
                        ))
                    })?;
                turns.push(json!({
                    "role": "tool",
                    "tool_call_id": id,
                    "content": text_of(m.get("content"), i)?,
                }));
            }
            other => {
                return Err(errors::invalid_request(format!(
                    "messages[{i}]: role {other:?} is not supported by Cohere"
                )));
            }
        }
    }
    let mut out = Vec::with_capacity(turns.len() + 1);
    if !system.is_empty() {
        out.push(json!({"role": "system", "content": system.join("\n\n")}));
    }
    out.extend(turns);
    Ok(out)
}

/// The text of a string content or of its text parts.
fn text_of(content: Option<&Value>, i: usize) -> Result<String, AdapterError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                    Some("refusal") => {}
                    other => {
                        return Err(errors::invalid_request(format!(
                            "messages[{i}]: content parts of type {:?} are not supported here",
                            other.unwrap_or_default()
                        )));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(errors::invalid_request(format!(
            "messages[{i}]: `content` must be a string or an array of parts"
        ))),
    }
}

/// A user message's content: a string, or text and image parts.
fn user_content(content: Option<&Value>, i: usize) -> Result<Value, AdapterError> {
    let Some(Value::Array(parts)) = content else {
        return Ok(Value::String(text_of(content, i)?));
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => out.push(json!({
                "type": "text",
                "text": part.get("text").and_then(Value::as_str).unwrap_or_default(),
            })),
            Some("image_url") => {
                let (url, detail) = match part.get("image_url") {
                    Some(Value::String(url)) => (url.as_str(), None),
                    Some(obj) => (
                        obj.get("url").and_then(Value::as_str).unwrap_or_default(),
                        obj.get("detail").and_then(Value::as_str),
                    ),
                    None => ("", None),
                };
                if url.is_empty() {
                    return Err(errors::invalid_request(format!(
                        "messages[{i}]: an image_url part needs a `url`"
                    )));
                }
                let mut image = json!({ "url": url });
                if let Some(detail) = detail {
                    image["detail"] = json!(detail);
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(errors::invalid_request(format!(
                    "messages[{i}]: content parts of type {:?} are not supported by Cohere",
                    other.unwrap_or_default()
                )));
            }
        }
    }
    Ok(Value::Array(out))
}

/// An assistant turn: its text, or — with tool calls — its tool plan and
/// the calls.
fn assistant(m: &Value, i: usize) -> Result<Value, AdapterError> {
    let text = text_of(m.get("content"), i)?;
    let calls = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Map::new();
    out.insert("role".into(), json!("assistant"));
    if calls.is_empty() {
        out.insert("content".into(), Value::String(text));
        return Ok(Value::Object(out));
    }
    if !text.is_empty() {
        out.insert("tool_plan".into(), Value::String(text));
    }
    let mut tool_calls = Vec::with_capacity(calls.len());
    for call in calls {
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                errors::invalid_request(format!("messages[{i}]: a tool call needs a function name"))
            })?;
        let arguments = match function.and_then(|f| f.get("arguments")) {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => "{}".to_owned(),
            Some(other) => other.to_string(),
        };
        tool_calls.push(json!({
            "id": call.get("id").and_then(Value::as_str).unwrap_or_default(),
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }));
    }
    out.insert("tool_calls".into(), Value::Array(tool_calls));
    Ok(Value::Object(out))
}

/// One OpenAI tool → Cohere's (the same shape, `function` tools only).
fn tool(t: &Value) -> Result<Value, AdapterError> {
    if t.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
        return Err(errors::invalid_request(
            "Cohere supports only `function` tools",
        ));
    }
    let function = t
        .get("function")
        .ok_or_else(|| errors::invalid_request("a tool needs a `function`"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| errors::invalid_request("a tool function needs a `name`"))?;
    let mut f = Map::new();
    f.insert("name".into(), json!(name));
    if let Some(d) = function.get("description").filter(|d| !d.is_null()) {
        f.insert("description".into(), d.clone());
    }
    f.insert(
        "parameters".into(),
        function
            .get("parameters")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    Ok(json!({"type": "function", "function": f}))
}

/// `response_format`: JSON mode and JSON schemas become Cohere's
/// `json_object` (with the schema); text is the default.
fn response_format(format: Option<&Value>) -> Result<Option<Value>, AdapterError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| !s.is_null())
                .ok_or_else(|| {
                    errors::invalid_request("`response_format.json_schema.schema` is required")
                })?;
            Ok(Some(json!({"type": "json_object", "json_schema": schema})))
        }
        _ => Err(errors::invalid_request(
            "`response_format.type` must be text, json_object or json_schema",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::call;

    const OPENAI_REQUEST: &[u8] = include_bytes!("../fixtures/openai_request.json");
    const COHERE_REQUEST: &[u8] = include_bytes!("../fixtures/cohere_request.json");

    fn translate(body: &[u8]) -> Result<Value, AdapterError> {
        let c = call("chat.completions", "command-a-03-2025", false);
        to_cohere(&c, &transit_adapter_sdk::json::parse_object(body)?)
    }

    #[test]
    fn the_documented_request_shape_is_produced() {
        let got = translate(OPENAI_REQUEST).unwrap();
        let want: Value = serde_json::from_slice(COHERE_REQUEST).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn streams_and_tool_choices() {
        let mut c = call("chat.completions", "command-r", true);
        c.include_usage = true;
        let body = json!({"model": "x", "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {"type": "function", "function": {"name": "a", "strict": true}},
                {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "b"}},
            "stop": "END", "max_tokens": 10, "reasoning_effort": "high"});
        let out = to_cohere(&c, body.as_object().unwrap()).unwrap();
        assert_eq!(out["stream"], true);
        assert_eq!(out["tool_choice"], "REQUIRED");
        assert_eq!(out["tools"].as_array().unwrap().len(), 1);
        assert_eq!(out["tools"][0]["function"]["name"], "b");
        assert_eq!(out["strict_tools"], true);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["max_tokens"], 10);
        assert_eq!(out["thinking"], json!({"type": "enabled"}));

        let body = json!({"model": "x", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": "none",
            "response_format": {"type": "json_object"}});
        let out = to_cohere(&c, body.as_object().unwrap()).unwrap();
        assert_eq!(out["tool_choice"], "NONE");
        assert_eq!(
            out["tools"][0]["function"]["parameters"],
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(out["response_format"], json!({"type": "json_object"}));
    }

    #[test]
    fn unsupported_input_is_the_clients_error() {
        for body in [
            json!({"model": "x", "messages": []}),
            json!({"model": "x"}),
            json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
            json!({"model": "x", "messages": [{"role": "function", "content": "hi"}]}),
            json!({"model": "x", "messages": [{"role": "tool", "content": "hi"}]}),
            json!({"model": "x", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
            json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "stop": 3}),
            json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "function", "function": {"name": "zz"}}}),
            json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema"}}),
        ] {
            assert!(
                matches!(
                    translate(body.to_string().as_bytes()),
                    Err(AdapterError::InvalidRequest(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn system_messages_move_first_and_plain_assistant_turns_keep_text() {
        let body = json!({"model": "x", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
            {"role": "system", "content": "late rule"},
            {"role": "user", "content": "again"}
        ]});
        let out = translate(body.to_string().as_bytes()).unwrap();
        let roles: Vec<&str> = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(out["messages"][0]["content"], "late rule");
        assert_eq!(out["messages"][2]["content"], "hello");
    }
}

//! OpenAI chat request → Hunyuan `ChatCompletions` request body.
//!
//! Hunyuan's fields are PascalCase: `Model`, `Messages` (`Role`, `Content`
//! or `Contents` for images, `ToolCalls`, `ToolCallId`), `Stream`,
//! `Temperature`, `TopP`, `Stop`, `Seed`, `Tools` (each function's JSON
//! Schema sent as a JSON *string*), `ToolChoice` (`none`, `auto` or
//! `custom` with `CustomTool`), `EnableEnhancement`.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

/// The instruction that asks for JSON when the client sets
/// `response_format` (Hunyuan's ChatCompletions has no JSON mode of its own).
const JSON_INSTRUCTION: &str =
    "Respond with one valid JSON object only, without any text before or after it.";

/// Translate the client's chat request for `call`.
pub fn to_hunyuan(call: &Call, request: &Map<String, Value>) -> Result<Value, AdapterError> {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| errors::invalid_request("`messages` must be a non-empty array"))?;
    let mut out = Map::new();
    out.insert("Model".into(), Value::String(call.model.clone()));

    let mut translated = Vec::with_capacity(messages.len() + 1);
    for message in messages {
        translated.push(message_of(message)?);
    }
    if let Some(instruction) = json_instruction(request.get("response_format"))? {
        add_system(&mut translated, &instruction);
    }
    out.insert("Messages".into(), Value::Array(translated));
    out.insert("Stream".into(), Value::Bool(call.stream));

    if let Some(t) = number(request, "temperature")? {
        out.insert("Temperature".into(), t);
    }
    if let Some(p) = number(request, "top_p")? {
        out.insert("TopP".into(), p);
    }
    if let Some(seed) = request.get("seed").filter(|v| !v.is_null()) {
        if !seed.is_i64() {
            return Err(errors::invalid_request("`seed` must be an integer"));
        }
        out.insert("Seed".into(), seed.clone());
    }
    match request.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("Stop".into(), json!([s]));
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            if !items.is_empty() {
                out.insert("Stop".into(), Value::Array(items.clone()));
            }
        }
        Some(_) => {
            return Err(errors::invalid_request(
                "`stop` must be a string or an array of strings",
            ));
        }
    }

    let tools = tools_of(request.get("tools"))?;
    if !tools.is_empty() {
        tool_choice(request.get("tool_choice"), &tools, &mut out)?;
        out.insert("Tools".into(), Value::Array(tools));
    }

    let enhancement = request
        .get("enable_enhancement")
        .and_then(Value::as_bool)
        .or_else(|| {
            call.channel
                .option("enable-enhancement")
                .and_then(|v| match v.trim() {
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => None,
                })
        });
    if let Some(on) = enhancement {
        out.insert("EnableEnhancement".into(), Value::Bool(on));
    }
    Ok(Value::Object(out))
}

fn number(request: &Map<String, Value>, key: &str) -> Result<Option<Value>, AdapterError> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(_)) => Ok(Some(v.clone())),
        Some(_) => Err(errors::invalid_request(format!("`{key}` must be a number"))),
    }
}

/// One OpenAI message → one Hunyuan message.
fn message_of(message: &Value) -> Result<Value, AdapterError> {
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| errors::invalid_request("every message needs a `role`"))?;
    let role = match role {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        "tool" => "tool",
        other => {
            return Err(errors::invalid_request(format!(
                "Hunyuan does not take messages of role `{other}`"
            )));
        }
    };
    let mut out = Map::new();
    out.insert("Role".into(), Value::String(role.to_owned()));
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("Content".into(), Value::String(s.clone()));
        }
        Some(Value::Array(parts)) => {
            let has_image = parts
                .iter()
                .any(|p| p.get("type").and_then(Value::as_str) == Some("image_url"));
            if has_image && role == "user" {
                out.insert("Contents".into(), Value::Array(contents_of(parts)?));
            } else {
                out.insert("Content".into(), Value::String(text_of(parts)?));
            }
        }
        Some(_) => {
            return Err(errors::invalid_request(
                "message `content` must be a string or an array of parts",
            ));
        }
    }
    if role == "assistant"
        && let Some(calls) = message.get("tool_calls").and_then(Value::as_array)
        && !calls.is_empty()
    {
        let calls = calls
            .iter()
            .map(tool_call_of)
            .collect::<Result<Vec<_>, _>>()?;
        out.insert("ToolCalls".into(), Value::Array(calls));
    }
    if role == "tool" {
        let id = message
            .get("tool_call_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| errors::invalid_request("a `tool` message needs a `tool_call_id`"))?;
        out.insert("ToolCallId".into(), Value::String(id.to_owned()));
    }
    Ok(Value::Object(out))
}

/// The text parts of a content array, joined (non-user roles and messages
/// without images).
fn text_of(parts: &[Value]) -> Result<String, AdapterError> {
    let mut text = String::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(part.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("image_url") => {
                return Err(errors::invalid_request(
                    "Hunyuan takes images in user messages only",
                ));
            }
            other => {
                return Err(errors::invalid_request(format!(
                    "Hunyuan does not take content parts of type `{}`",
                    other.unwrap_or("(none)")
                )));
            }
        }
    }
    Ok(text)
}

/// A user content array with images → `Contents`.
fn contents_of(parts: &[Value]) -> Result<Vec<Value>, AdapterError> {
    parts
        .iter()
        .map(|part| match part.get("type").and_then(Value::as_str) {
            Some("text") => Ok(json!({
                "Type": "text",
                "Text": part.get("text").and_then(Value::as_str).unwrap_or(""),
            })),
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|i| i.get("url").or(Some(i)))
                    .and_then(Value::as_str)
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| errors::invalid_request("an `image_url` part needs a `url`"))?;
                Ok(json!({"Type": "image_url", "ImageUrl": {"Url": url}}))
            }
            other => Err(errors::invalid_request(format!(
                "Hunyuan does not take content parts of type `{}`",
                other.unwrap_or("(none)")
            ))),
        })
        .collect()
}

fn tool_call_of(call: &Value) -> Result<Value, AdapterError> {
    let function = call
        .get("function")
        .ok_or_else(|| errors::invalid_request("a tool call needs a `function`"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| errors::invalid_request("a tool call needs a function `name`"))?;
    let arguments = match function.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => "{}".to_owned(),
        Some(other) => other.to_string(),
    };
    Ok(json!({
        "Id": call.get("id").and_then(Value::as_str).unwrap_or(""),
        "Type": "function",
        "Function": {"Name": name, "Arguments": arguments},
    }))
}

/// OpenAI `tools` → Hunyuan `Tools`, parameters as a JSON string.
fn tools_of(tools: Option<&Value>) -> Result<Vec<Value>, AdapterError> {
    let Some(tools) = tools.filter(|t| !t.is_null()) else {
        return Ok(Vec::new());
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| errors::invalid_request("`tools` must be an array"))?;
    tools
        .iter()
        .map(|tool| {
            let kind = tool
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("function");
            if kind != "function" {
                return Err(errors::invalid_request(format!(
                    "Hunyuan takes function tools only, not `{kind}`"
                )));
            }
            let function = tool
                .get("function")
                .ok_or_else(|| errors::invalid_request("a tool needs a `function`"))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| errors::invalid_request("a function tool needs a `name`"))?;
            let parameters = match function.get("parameters") {
                None | Some(Value::Null) => r#"{"type":"object","properties":{}}"#.to_owned(),
                Some(Value::String(s)) => s.clone(),
                Some(schema) => schema.to_string(),
            };
            let mut f = Map::new();
            f.insert("Name".into(), Value::String(name.to_owned()));
            if let Some(d) = function.get("description").and_then(Value::as_str) {
                f.insert("Description".into(), Value::String(d.to_owned()));
            }
            f.insert("Parameters".into(), Value::String(parameters));
            Ok(json!({"Type": "function", "Function": f}))
        })
        .collect()
}

/// `tool_choice` → `ToolChoice` (and `CustomTool` for a named function).
/// Hunyuan has no "must call some tool": `required` forces the only tool
/// when there is one, and is `auto` otherwise.
fn tool_choice(
    choice: Option<&Value>,
    tools: &[Value],
    out: &mut Map<String, Value>,
) -> Result<(), AdapterError> {
    let named = |name: &str| {
        tools
            .iter()
            .find(|t| t.pointer("/Function/Name").and_then(Value::as_str) == Some(name))
            .cloned()
            .ok_or_else(|| {
                errors::invalid_request(format!(
                    "`tool_choice` names `{name}`, which is not among the `tools`"
                ))
            })
    };
    let (mode, custom) = match choice {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) => match s.as_str() {
            "none" => ("none", None),
            "auto" => ("auto", None),
            "required" if tools.len() == 1 => ("custom", tools.first().cloned()),
            "required" => ("auto", None),
            other => {
                return Err(errors::invalid_request(format!(
                    "unknown `tool_choice` `{other}`"
                )));
            }
        },
        Some(obj) => {
            let name = obj
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| errors::invalid_request("`tool_choice` names no function"))?;
            ("custom", Some(named(name)?))
        }
    };
    out.insert("ToolChoice".into(), Value::String(mode.to_owned()));
    if let Some(tool) = custom {
        out.insert("CustomTool".into(), tool);
    }
    Ok(())
}

/// The instruction for `response_format` `json_object` / `json_schema`.
fn json_instruction(format: Option<&Value>) -> Result<Option<String>, AdapterError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(JSON_INSTRUCTION.to_owned())),
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .map(|s| json::to_vec(s).map(|b| String::from_utf8_lossy(&b).into_owned()))
                .transpose()?;
            Ok(Some(match schema {
                Some(schema) => {
                    format!("{JSON_INSTRUCTION} It must conform to this JSON Schema: {schema}")
                }
                None => JSON_INSTRUCTION.to_owned(),
            }))
        }
        _ => Err(errors::invalid_request(
            "`response_format.type` must be `text`, `json_object` or `json_schema`",
        )),
    }
}

/// Add `instruction` to the leading system message (Hunyuan allows only
/// one, first), or put one first.
fn add_system(messages: &mut Vec<Value>, instruction: &str) {
    if let Some(first) = messages.first_mut()
        && first.get("Role").and_then(Value::as_str) == Some("system")
    {
        let text = first.get("Content").and_then(Value::as_str).unwrap_or("");
        let joined = if text.is_empty() {
            instruction.to_owned()
        } else {
            format!("{text}\n\n{instruction}")
        };
        first["Content"] = Value::String(joined);
        return;
    }
    messages.insert(0, json!({"Role": "system", "Content": instruction}));
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::call;

    const OPENAI_REQUEST: &[u8] = include_bytes!("../fixtures/request_openai.json");
    const HUNYUAN_REQUEST: &[u8] = include_bytes!("../fixtures/request_hunyuan.json");

    fn translate(body: &Value, stream: bool) -> Result<Value, AdapterError> {
        let c = call("chat.completions", "hunyuan-turbos-latest", stream);
        to_hunyuan(&c, body.as_object().unwrap())
    }

    #[test]
    fn the_documented_shape_comes_out() {
        let body: Value = serde_json::from_slice(OPENAI_REQUEST).unwrap();
        let mut expected: Value = serde_json::from_slice(HUNYUAN_REQUEST).unwrap();
        let mut out = translate(&body, false).unwrap();
        // The schema travels as a string: compare it as JSON (key order
        // is serde_json's to choose).
        let schema = |v: &mut Value| -> Value {
            let s = v["Tools"][0]["Function"]["Parameters"].take();
            serde_json::from_str(s.as_str().unwrap()).unwrap()
        };
        assert_eq!(schema(&mut out), schema(&mut expected));
        assert_eq!(out, expected);
    }

    #[test]
    fn parameters_are_a_json_string() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]});
        let out = translate(&body, true).unwrap();
        assert_eq!(out["Stream"], true);
        assert_eq!(
            out["Tools"][0]["Function"]["Parameters"],
            r#"{"type":"object"}"#
        );
        assert!(out.get("ToolChoice").is_none());
    }

    #[test]
    fn tool_choice_forms() {
        let tools = json!([
            {"type": "function", "function": {"name": "a"}},
            {"type": "function", "function": {"name": "b"}}
        ]);
        let with = |choice: Value| {
            translate(
                &json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
                false,
            )
        };
        let named = with(json!({"type": "function", "function": {"name": "b"}})).unwrap();
        assert_eq!(named["ToolChoice"], "custom");
        assert_eq!(named["CustomTool"]["Function"]["Name"], "b");
        assert_eq!(with(json!("none")).unwrap()["ToolChoice"], "none");
        assert_eq!(with(json!("required")).unwrap()["ToolChoice"], "auto");
        assert!(matches!(
            with(json!({"type": "function", "function": {"name": "zzz"}})),
            Err(AdapterError::InvalidRequest(_))
        ));
        let single = translate(
            &json!({"messages": [{"role": "user", "content": "x"}],
                    "tools": [{"type": "function", "function": {"name": "only"}}], "tool_choice": "required"}),
            false,
        )
        .unwrap();
        assert_eq!(single["ToolChoice"], "custom");
        assert_eq!(single["CustomTool"]["Function"]["Name"], "only");
    }

    #[test]
    fn json_mode_becomes_a_system_instruction() {
        let out = translate(
            &json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
            false,
        )
        .unwrap();
        assert_eq!(out["Messages"][0]["Role"], "system");
        assert_eq!(out["Messages"][0]["Content"], JSON_INSTRUCTION);
        let out = translate(
            &json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x"}],
                    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}}),
            false,
        )
        .unwrap();
        let system = out["Messages"][0]["Content"].as_str().unwrap();
        assert!(system.starts_with("Be brief.\n\n"), "{system}");
        assert!(system.ends_with(r#"{"type":"object"}"#), "{system}");
        assert_eq!(out["Messages"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn bad_requests_are_the_clients() {
        for body in [
            json!({"messages": []}),
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": 5}]}),
            json!({"messages": [{"role": "user", "content": "x"}], "stop": 3}),
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "retrieval"}]}),
            json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}),
        ] {
            assert!(
                matches!(
                    translate(&body, false),
                    Err(AdapterError::InvalidRequest(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn enhancement_from_the_request_or_the_channel() {
        let body = json!({"messages": [{"role": "user", "content": "x"}]});
        assert!(
            translate(&body, false)
                .unwrap()
                .get("EnableEnhancement")
                .is_none()
        );
        let mut c = call("chat.completions", "m", false);
        c.channel.options = vec![("enable-enhancement".into(), "true".into())];
        let out = to_hunyuan(&c, body.as_object().unwrap()).unwrap();
        assert_eq!(out["EnableEnhancement"], true);
        let body =
            json!({"messages": [{"role": "user", "content": "x"}], "enable_enhancement": false});
        let out = to_hunyuan(&c, body.as_object().unwrap()).unwrap();
        assert_eq!(out["EnableEnhancement"], false);
    }
}

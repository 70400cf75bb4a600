//! Hunyuan `ChatCompletions` answer → OpenAI `chat.completion`.
//!
//! `{"Response": {"Id", "Created", "Choices": [{"Index", "Message": {"Role",
//! "Content", "ReasoningContent", "ToolCalls"}, "FinishReason"}], "Usage":
//! {"PromptTokens", "CompletionTokens", "TotalTokens"}, "RequestId"}}`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;

use crate::error;

/// The OpenAI completion for a (non-streamed) answer, and its usage.
pub fn to_completion(call: &Call, body: &Value) -> Result<(Value, Option<Usage>), AdapterError> {
    if let Some(e) = error::in_body(body) {
        return Err(e);
    }
    let response = body
        .get("Response")
        .filter(|r| r.is_object())
        .ok_or_else(|| {
            errors::upstream(502, true, "Hunyuan answered without a `Response` object")
        })?;
    let usage = usage_of(response.get("Usage"));
    let choices: Vec<Value> = response
        .get("Choices")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(position, choice)| choice_of(choice, position))
        .collect();
    let mut completion = json!({
        "id": completion_id(response),
        "object": "chat.completion",
        "created": created_of(response),
        "model": call.model,
        "choices": choices,
    });
    if let Some(u) = &usage {
        completion["usage"] = json!(openai::UsageJson::from(u));
    }
    Ok((completion, usage))
}

fn choice_of(choice: &Value, position: usize) -> Value {
    let message = choice.get("Message").unwrap_or(&Value::Null);
    let mut out = Map::new();
    out.insert("role".into(), json!("assistant"));
    let content = message.get("Content").and_then(Value::as_str).unwrap_or("");
    let calls: Vec<Value> = message
        .get("ToolCalls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, call)| tool_call(call, None, i))
        .collect();
    out.insert(
        "content".into(),
        if content.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::String(content.to_owned())
        },
    );
    if let Some(r) = message
        .get("ReasoningContent")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        out.insert("reasoning_content".into(), json!(r));
    }
    let has_calls = !calls.is_empty();
    if has_calls {
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    json!({
        "index": choice.get("Index").and_then(Value::as_u64).unwrap_or(position as u64),
        "message": out,
        "finish_reason": finish_reason(choice.get("FinishReason").and_then(Value::as_str), has_calls),
    })
}

/// A Hunyuan `ToolCall` as an OpenAI tool call; `index` set for stream
/// deltas.
pub fn tool_call(call: &Value, index: Option<usize>, position: usize) -> Value {
    let function = call.get("Function").unwrap_or(&Value::Null);
    let mut out = json!({
        "id": call
            .get("Id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("call_{position}"), str::to_owned),
        "type": "function",
        "function": {
            "name": function.get("Name").and_then(Value::as_str).unwrap_or(""),
            "arguments": function.get("Arguments").and_then(Value::as_str).unwrap_or(""),
        },
    });
    if let Some(i) = index {
        out["index"] = json!(i);
    }
    out
}

/// Hunyuan's `FinishReason` → OpenAI's: `stop`, `tool_calls`, `length`;
/// `sensitive` (the output failed moderation) is `content_filter`. An
/// empty reason (a stream's unfinished piece) is none.
pub fn finish_reason(reason: Option<&str>, has_calls: bool) -> Option<&'static str> {
    match reason.map(str::trim).filter(|r| !r.is_empty())? {
        "tool_calls" => Some("tool_calls"),
        "sensitive" => Some("content_filter"),
        "length" => Some("length"),
        _ if has_calls => Some("tool_calls"),
        _ => Some("stop"),
    }
}

/// `Usage {PromptTokens, CompletionTokens}`, with cached prompt and
/// reasoning tokens when the details are given.
pub fn usage_of(usage: Option<&Value>) -> Option<Usage> {
    let usage = usage?.as_object()?;
    let num = |k: &str| usage.get(k).and_then(Value::as_u64);
    let input = num("PromptTokens");
    let output = num("CompletionTokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    let mut out = Usage::tokens(input.unwrap_or(0), output.unwrap_or(0));
    out.cache_read_tokens = usage
        .get("PromptTokensDetails")
        .and_then(|d| d.get("CachedTokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    out.reasoning_tokens = usage
        .get("CompletionTokensDetails")
        .and_then(|d| d.get("ReasoningTokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(out)
}

/// `chatcmpl-` and Hunyuan's `Id` (or `RequestId`).
pub fn completion_id(response: &Value) -> String {
    let id = response
        .get("Id")
        .or_else(|| response.get("RequestId"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("hunyuan");
    format!("chatcmpl-{id}")
}

pub fn created_of(response: &Value) -> u64 {
    response
        .get("Created")
        .and_then(Value::as_u64)
        .unwrap_or_else(now)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::call;

    const RESPONSE: &[u8] = include_bytes!("../fixtures/response.json");
    const TOOLS: &[u8] = include_bytes!("../fixtures/response_tools.json");
    const T1: &[u8] = include_bytes!("../fixtures/response_t1.json");

    fn complete(body: &[u8]) -> (Value, Option<Usage>) {
        let c = call("chat.completions", "hunyuan-turbos-latest", false);
        to_completion(&c, &serde_json::from_slice(body).unwrap()).unwrap()
    }

    #[test]
    fn text_answer() {
        let (v, usage) = complete(RESPONSE);
        assert_eq!(v["id"], "chatcmpl-8a0b1c2d-3e4f-5a6b-7c8d-9e0f1a2b3c4d");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["created"], 1_715_076_839);
        assert_eq!(v["model"], "hunyuan-turbos-latest");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "你好！有什么我可以帮助你的吗？"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(v["usage"]["completion_tokens"], 11);
        assert_eq!(v["usage"]["total_tokens"], 14);
        assert_eq!(usage, Some(Usage::tokens(3, 11)));
    }

    #[test]
    fn tool_calls_answer() {
        let (v, usage) = complete(TOOLS);
        let m = &v["choices"][0]["message"];
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(m["tool_calls"][0]["id"], "call_cq5ttqh3ij9thl0d1hmg");
        assert_eq!(m["tool_calls"][0]["type"], "function");
        assert_eq!(
            m["tool_calls"][0]["function"]["name"],
            "get_current_weather"
        );
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            "{\"location\":\"北京\"}"
        );
        assert!(m["tool_calls"][0].get("index").is_none());
        assert_eq!(usage, Some(Usage::tokens(214, 34)));
    }

    #[test]
    fn reasoning_is_surfaced() {
        let (v, _) = complete(T1);
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "9.11 比 9.9 小。");
        assert!(
            m["reasoning_content"]
                .as_str()
                .unwrap()
                .starts_with("比较 9.11 和 9.9")
        );
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason(Some(""), false), None);
        assert_eq!(finish_reason(None, false), None);
        assert_eq!(finish_reason(Some("stop"), false), Some("stop"));
        assert_eq!(finish_reason(Some("stop"), true), Some("tool_calls"));
        assert_eq!(
            finish_reason(Some("sensitive"), false),
            Some("content_filter")
        );
        assert_eq!(finish_reason(Some("length"), false), Some("length"));
    }

    #[test]
    fn usage_details() {
        let u = usage_of(Some(&json!({"PromptTokens": 10, "CompletionTokens": 5, "TotalTokens": 15,
            "PromptTokensDetails": {"CachedTokens": 4}, "CompletionTokensDetails": {"ReasoningTokens": 3}})))
        .unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.reasoning_tokens
            ),
            (10, 5, 4, 3)
        );
        assert_eq!(usage_of(Some(&json!({}))), None);
        assert_eq!(usage_of(None), None);
    }

    #[test]
    fn errors_and_odd_bodies() {
        let c = call("chat.completions", "m", false);
        let auth: Value =
            serde_json::from_slice(include_bytes!("../fixtures/error_auth.json")).unwrap();
        assert!(matches!(
            to_completion(&c, &auth),
            Err(AdapterError::Auth(_))
        ));
        assert!(matches!(
            to_completion(&c, &json!({"choices": []})),
            Err(AdapterError::Upstream(_))
        ));
    }
}

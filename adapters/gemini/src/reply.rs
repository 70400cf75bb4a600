//! Gemini `GenerateContentResponse` → OpenAI `chat.completion`, and the
//! pieces the stream translator shares: usage, finish reasons, tool calls,
//! ids.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;

/// Usage from `usageMetadata`: the prompt (with the tokens of tool results
/// Gemini fetched itself) as input; candidates plus thoughts as output,
/// thoughts as reasoning; cached content as cache reads. `None` when it
/// carries no counts (early stream events may carry none).
pub fn usage_of(meta: Option<&Value>) -> Option<Usage> {
    let meta = meta?.as_object()?;
    let n = |k: &str| meta.get(k).and_then(Value::as_u64);
    let prompt = n("promptTokenCount");
    let candidates = n("candidatesTokenCount");
    let thoughts = n("thoughtsTokenCount");
    if prompt.is_none() && candidates.is_none() && thoughts.is_none() {
        return None;
    }
    let thoughts = thoughts.unwrap_or(0);
    let input = prompt.unwrap_or(0) + n("toolUsePromptTokenCount").unwrap_or(0);
    let mut usage = Usage::tokens(input, candidates.unwrap_or(0) + thoughts);
    usage.reasoning_tokens = thoughts;
    usage.cache_read_tokens = n("cachedContentTokenCount").unwrap_or(0).min(input);
    Some(usage)
}

/// Gemini's `finishReason` → OpenAI's `finish_reason`; a candidate that
/// called functions finished with `tool_calls`.
pub fn finish_reason(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if called_tools => "tool_calls",
        _ => "stop",
    }
}

/// A `functionCall` part → an OpenAI tool call (with `index` in streams).
/// Arguments become a JSON string; the id is Gemini's when it gives one;
/// the part's thought signature rides along in `extra_content`.
pub fn tool_call(part: &Value, call: &Value, index: Option<u32>) -> Value {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(|| new_id("call_"), str::to_owned);
    let arguments = call
        .get("args")
        .filter(|a| !a.is_null())
        .map_or_else(|| "{}".to_owned(), Value::to_string);
    let mut out = Map::new();
    if let Some(index) = index {
        out.insert("index".into(), json!(index));
    }
    out.insert("id".into(), Value::String(id));
    out.insert("type".into(), json!("function"));
    out.insert(
        "function".into(),
        json!({
            "name": call.get("name").and_then(Value::as_str).unwrap_or_default(),
            "arguments": arguments,
        }),
    );
    if let Some(signature) = part.get("thoughtSignature").and_then(Value::as_str) {
        out.insert(
            "extra_content".into(),
            json!({"google": {"thought_signature": signature}}),
        );
    }
    Value::Object(out)
}

/// Whether a part is a thought summary.
pub fn is_thought(part: &Value) -> bool {
    part.get("thought").and_then(Value::as_bool) == Some(true)
}

/// The completion id: Gemini's `responseId`, or a fresh one.
pub fn completion_id(response: &Value) -> String {
    match response.get("responseId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => new_id("chatcmpl-"),
    }
}

/// A fresh id: `prefix` and 24 hex digits from the standard library's
/// randomly seeded hasher (no other source of randomness is needed).
pub fn new_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now_nanos());
    let a = hasher.finish();
    hasher.write_u64(a);
    let b = hasher.finish();
    format!("{prefix}{a:016x}{:08x}", b >> 32)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    u64::try_from(now_nanos() / 1_000_000_000).unwrap_or(0)
}

/// A whole response → `chat.completion`, one choice per candidate.
pub fn to_completion(call: &Call, response: &Value, usage: Option<&Usage>) -> Value {
    let candidates = response
        .get("candidates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut choices = Vec::new();
    for (position, candidate) in candidates.iter().enumerate() {
        let index = candidate
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut tool_calls = Vec::new();
        for part in candidate
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(f) = part.get("functionCall") {
                tool_calls.push(tool_call(part, f, None));
            } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                if is_thought(part) {
                    reasoning.push_str(t);
                } else {
                    text.push_str(t);
                }
            }
        }
        let called = !tool_calls.is_empty();
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        let content = if text.is_empty() && called {
            Value::Null
        } else {
            Value::String(text)
        };
        message.insert("content".into(), content);
        if !reasoning.is_empty() {
            message.insert("reasoning_content".into(), Value::String(reasoning));
        }
        if called {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        let reason = candidate
            .get("finishReason")
            .and_then(Value::as_str)
            .map_or(if called { "tool_calls" } else { "stop" }, |r| {
                finish_reason(r, called)
            });
        choices.push(json!({"index": index, "message": message, "finish_reason": reason}));
    }
    if choices.is_empty() {
        // No candidates: the prompt itself was blocked.
        let blocked = response.pointer("/promptFeedback/blockReason").is_some();
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "finish_reason": if blocked { "content_filter" } else { "stop" },
        }));
    }
    let mut out = json!({
        "id": completion_id(response),
        "object": "chat.completion",
        "created": now(),
        "model": response.get("modelVersion").and_then(Value::as_str).unwrap_or(&call.model),
        "choices": choices,
    });
    if let (Some(u), Some(obj)) = (usage, out.as_object_mut()) {
        obj.insert(
            "usage".into(),
            serde_json::to_value(openai::UsageJson::from(u)).unwrap_or(Value::Null),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CHAT, Gemini};
    use transit_adapter_sdk::testing::{call, response};

    const RESPONSE: &[u8] = include_bytes!("../fixtures/response.json");

    #[test]
    fn response_becomes_a_chat_completion() {
        let c = call(CHAT, "gemini-2.5-flash", false);
        let t = Gemini::parse_response(&c, &response(200, RESPONSE)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], "chatcmpl-7RbyaOqnIe6Oz7IP9qWa4Ak");
        assert_eq!(v["model"], "gemini-2.5-flash");
        let m = &v["choices"][0]["message"];
        assert_eq!(m["role"], "assistant");
        assert_eq!(m["content"], "Let me check the weather in Paris.");
        assert!(
            m["reasoning_content"]
                .as_str()
                .unwrap()
                .starts_with("**Checking the forecast**")
        );
        let tc = &m["tool_calls"][0];
        assert_eq!(tc["type"], "function");
        assert_eq!(tc["function"]["name"], "get_weather");
        assert_eq!(tc["function"]["arguments"], "{\"location\":\"Paris\"}");
        assert!(tc["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(tc["id"].as_str().unwrap().len(), 29);
        assert_eq!(
            tc["extra_content"]["google"]["thought_signature"],
            "CiQB0e2Kb7Gq0Qr3pNx8sV2mW0c5yq1Lz4kTn9uXo3Ej6aHdRfQ="
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

        let u = t.usage.unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.reasoning_tokens,
                u.cache_read_tokens
            ),
            (120, 93, 68, 64)
        );
        assert_eq!(v["usage"]["prompt_tokens"], 120);
        assert_eq!(v["usage"]["completion_tokens"], 93);
        assert_eq!(v["usage"]["total_tokens"], 213);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 64);
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            68
        );
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason("STOP", false), "stop");
        assert_eq!(finish_reason("STOP", true), "tool_calls");
        assert_eq!(finish_reason("MAX_TOKENS", true), "length");
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
        ] {
            assert_eq!(finish_reason(r, false), "content_filter");
        }
        assert_eq!(finish_reason("OTHER", false), "stop");
        assert_eq!(finish_reason("MALFORMED_FUNCTION_CALL", false), "stop");
    }

    #[test]
    fn several_candidates_and_blocked_prompts() {
        let c = call(CHAT, "gemini-2.5-flash", false);
        let body = json!({"candidates": [
            {"content": {"parts": [{"text": "One"}], "role": "model"}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "Two"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1},
            {"finishReason": "SAFETY", "index": 2}
        ], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10}});
        let t = Gemini::parse_response(&c, &response(200, body.to_string().as_bytes())).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        let choices = v["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 3);
        assert_eq!(choices[1]["index"], 1);
        assert_eq!(choices[1]["message"]["content"], "Two");
        assert_eq!(choices[1]["finish_reason"], "length");
        assert_eq!(choices[2]["message"]["content"], "");
        assert_eq!(choices[2]["finish_reason"], "content_filter");
        assert_eq!(v["model"], "gemini-2.5-flash");
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(t.usage, Some(Usage::tokens(4, 6)));

        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}});
        let t = Gemini::parse_response(&c, &response(200, blocked.to_string().as_bytes())).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(t.usage, Some(Usage::tokens(7, 0)));
    }

    #[test]
    fn usage_needs_counts_and_adds_tool_prompts() {
        assert_eq!(usage_of(None), None);
        assert_eq!(usage_of(Some(&json!({"trafficType": "ON_DEMAND"}))), None);
        let u = usage_of(Some(
            &json!({"promptTokenCount": 10, "toolUsePromptTokenCount": 5,
            "candidatesTokenCount": 3}),
        ))
        .unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (15, 3));
    }

    #[test]
    fn ids_are_fresh() {
        let a = new_id("call_");
        let b = new_id("call_");
        assert_ne!(a, b);
        assert_eq!(a.len(), "call_".len() + 24);
        let id = tool_call(&json!({}), &json!({"id": "fc-1", "name": "f"}), Some(2));
        assert_eq!(id["id"], "fc-1");
        assert_eq!(id["index"], 2);
        assert_eq!(id["function"]["arguments"], "{}");
    }
}

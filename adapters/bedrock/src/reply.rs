//! Bedrock `ConverseResponse` → OpenAI `chat.completion`, and the pieces
//! the stream translator shares: usage, stop reasons, ids.

use serde_json::{Value, json};
use transit_adapter_sdk::prelude::*;

/// Usage from Converse's `usage` (`TokenUsage`). Bedrock counts cached
/// prompt tokens apart from `inputTokens`; the gateway's input includes
/// them, with the cache reads and writes as their parts. `None` when it
/// carries no counts.
pub fn usage_of(usage: Option<&Value>) -> Option<Usage> {
    let usage = usage?.as_object()?;
    let n = |k: &str| usage.get(k).and_then(Value::as_u64);
    let (input, output) = (n("inputTokens"), n("outputTokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    let cache_read = n("cacheReadInputTokens").unwrap_or(0);
    let cache_write = n("cacheWriteInputTokens").unwrap_or(0);
    let mut out = Usage::tokens(
        input.unwrap_or(0) + cache_read + cache_write,
        output.unwrap_or(0),
    );
    out.cache_read_tokens = cache_read;
    out.cache_write_tokens = cache_write;
    Some(out)
}

/// Converse's `stopReason` → OpenAI's `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        // end_turn, stop_sequence, malformed_model_output, …
        _ => "stop",
    }
}

/// A fresh id: `prefix` and 24 hex digits from the standard library's
/// randomly seeded hasher.
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

/// A whole Converse answer → `chat.completion`. `request_id` is Bedrock's
/// `x-amzn-RequestId`, when it sent one.
pub fn to_completion(
    call: &Call,
    response: &Value,
    usage: Option<&Usage>,
    request_id: Option<&str>,
) -> Result<Value, AdapterError> {
    let Some(content) = response
        .pointer("/output/message/content")
        .and_then(Value::as_array)
    else {
        return Err(errors::upstream(
            502,
            true,
            "Bedrock answered without output.message.content",
        ));
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(r) = block.get("reasoningContent") {
            if let Some(t) = r.pointer("/reasoningText/text").and_then(Value::as_str) {
                reasoning.push_str(t);
            }
        } else if let Some(tool) = block.get("toolUse") {
            tool_calls.push(json!({
                "id": tool.get("toolUseId").and_then(Value::as_str).map_or_else(|| new_id("call_"), str::to_owned),
                "type": "function",
                "function": {
                    "name": tool.get("name").and_then(Value::as_str).unwrap_or_default(),
                    "arguments": tool.get("input").filter(|i| !i.is_null()).map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            }));
        }
    }
    let stop = response
        .get("stopReason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let mut message = json!({"role": "assistant", "content": text});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
        if text.is_empty() {
            message["content"] = Value::Null;
        }
    }
    let id = request_id
        .filter(|id| !id.is_empty())
        .map_or_else(|| new_id("chatcmpl-"), |id| format!("chatcmpl-{id}"));
    let mut completion = json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "model": call.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stop)}],
    });
    if let Some(usage) = usage {
        completion["usage"] = json!(openai::UsageJson::from(usage));
    }
    Ok(completion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::call;

    const RESPONSE: &str = include_str!("../fixtures/converse_response.json");
    const TOOL_USE: &str = include_str!("../fixtures/converse_response_tool_use.json");

    #[test]
    fn text_reasoning_and_usage() {
        let v: Value = serde_json::from_str(RESPONSE).unwrap();
        let usage = usage_of(v.get("usage")).unwrap();
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens
            ),
            (30 + 1024, 628, 1024, 0)
        );
        let c = to_completion(
            &call("chat.completions", "m", false),
            &v,
            Some(&usage),
            Some("req-1"),
        )
        .unwrap();
        assert_eq!(c["id"], "chatcmpl-req-1");
        assert_eq!(c["model"], "m");
        let m = &c["choices"][0]["message"];
        assert!(
            m["content"]
                .as_str()
                .unwrap()
                .starts_with("Here is a list of 3 pop songs")
        );
        assert!(
            m["reasoning_content"]
                .as_str()
                .unwrap()
                .starts_with("The user wants")
        );
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(c["usage"]["prompt_tokens"], 1054);
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 1024);
        assert_eq!(c["usage"]["total_tokens"], 1054 + 628);
    }

    #[test]
    fn tool_use_becomes_tool_calls() {
        let v: Value = serde_json::from_str(TOOL_USE).unwrap();
        let c = to_completion(&call("chat.completions", "m", false), &v, None, None).unwrap();
        assert!(c["id"].as_str().unwrap().starts_with("chatcmpl-"));
        let m = &c["choices"][0]["message"];
        assert_eq!(m["content"], "I'll look up the top song on WZPZ.");
        assert_eq!(m["tool_calls"][0]["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "top_song");
        let args: Value = serde_json::from_str(
            m["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(args, json!({"sign": "WZPZ"}));
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert!(c.get("usage").is_none());
    }

    #[test]
    fn stop_reasons() {
        for (from, to) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("tool_use", "tool_calls"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("content_filtered", "content_filter"),
            ("guardrail_intervened", "content_filter"),
            ("malformed_model_output", "stop"),
        ] {
            assert_eq!(finish_reason(from), to, "{from}");
        }
    }

    #[test]
    fn odd_answers() {
        let c = call("chat.completions", "m", false);
        assert!(matches!(
            to_completion(&c, &json!({"stopReason": "end_turn"}), None, None),
            Err(AdapterError::Upstream(u)) if u.status == 502
        ));
        assert_eq!(usage_of(Some(&json!({}))), None);
        assert_eq!(usage_of(Some(&json!("x"))), None);
        assert_eq!(usage_of(None), None);
        let only_tools = json!({"output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]}}, "stopReason": "tool_use"});
        let v = to_completion(&c, &only_tools, None, None).unwrap();
        assert!(v["choices"][0]["message"]["content"].is_null());
    }
}

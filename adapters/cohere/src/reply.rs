//! Cohere `/v2/chat` answer → OpenAI `chat.completion`; usage and finish
//! reasons, shared with the stream.

use serde_json::{Value, json};
use transit_adapter_sdk::prelude::*;

use crate::count;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Cohere's `usage` → typed usage: the billed units when Cohere gives
/// them, else the raw token counts; `cached_tokens` as cache reads.
pub fn usage_of(usage: Option<&Value>) -> Option<Usage> {
    let usage = usage.filter(|u| u.is_object())?;
    let billed = usage.get("billed_units");
    let tokens = usage.get("tokens");
    let input = count(billed, "input_tokens").or_else(|| count(tokens, "input_tokens"));
    let output = count(billed, "output_tokens").or_else(|| count(tokens, "output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    let mut out = Usage::tokens(input.unwrap_or(0), output.unwrap_or(0));
    out.cache_read_tokens = count(Some(usage), "cached_tokens")
        .unwrap_or(0)
        .min(out.input_tokens);
    Some(out)
}

/// A Cohere finish reason → OpenAI's; `ERROR` is a failure, not a reason.
pub fn finish_reason(reason: &str) -> Result<&'static str, AdapterError> {
    match reason {
        "COMPLETE" | "STOP_SEQUENCE" | "USER_CANCEL" => Ok("stop"),
        "MAX_TOKENS" | "ERROR_LIMIT" => Ok("length"),
        "TOOL_CALL" => Ok("tool_calls"),
        "ERROR_TOXIC" => Ok("content_filter"),
        "ERROR" => Err(errors::upstream(
            502,
            true,
            "Cohere stopped generating with finish_reason ERROR",
        )),
        _ => Ok("stop"),
    }
}

/// An OpenAI tool call from Cohere's (`index` set in streams only).
pub fn tool_call(call: &Value, index: Option<usize>) -> Value {
    let function = call.get("function");
    let arguments = match function.and_then(|f| f.get("arguments")) {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    };
    let mut out = json!({
        "id": call.get("id").and_then(Value::as_str).unwrap_or_default(),
        "type": "function",
        "function": {
            "name": function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default(),
            "arguments": arguments,
        },
    });
    if let Some(index) = index {
        out["index"] = json!(index);
    }
    out
}

/// A whole chat answer → `chat.completion`.
pub fn to_completion(
    call: &Call,
    answer: &Value,
    usage: Option<&Usage>,
) -> Result<Value, AdapterError> {
    let message = answer.get("message").unwrap_or(&Value::Null);
    let mut text = String::new();
    let mut thinking = String::new();
    for part in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match part.get("type").and_then(Value::as_str) {
            Some("thinking") => {
                thinking.push_str(
                    part.get("thinking")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
            }
            _ => text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default()),
        }
    }
    let calls: Vec<Value> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| tool_call(c, None))
        .collect();
    // The plan that comes with tool calls is what the model said.
    if text.is_empty()
        && let Some(plan) = message.get("tool_plan").and_then(Value::as_str)
    {
        plan.clone_into(&mut text);
    }
    let reason = answer
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("COMPLETE");
    let mut finish = finish_reason(reason)?;
    if !calls.is_empty() {
        finish = "tool_calls";
    }
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !thinking.is_empty() {
        msg["reasoning_content"] = Value::String(thinking);
    }
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    let mut completion = json!({
        "id": answer.get("id").and_then(Value::as_str).unwrap_or("chatcmpl-cohere"),
        "object": "chat.completion",
        "created": now(),
        "model": call.model,
        "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
    });
    if let Some(usage) = usage {
        completion["usage"] = serde_json::to_value(openai::UsageJson::from(usage))
            .map_err(|e| errors::internal(e.to_string()))?;
    }
    Ok(completion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cohere;
    use transit_adapter_sdk::testing::{call, response};

    const RESPONSE: &[u8] = include_bytes!("../fixtures/response.json");
    const TOOLS: &[u8] = include_bytes!("../fixtures/response_tools.json");
    const THINKING: &[u8] = include_bytes!("../fixtures/response_thinking.json");

    fn parse(body: &[u8]) -> (Value, Option<Usage>) {
        let t = Cohere::parse_response(
            &call("chat.completions", "command-a-03-2025", false),
            &response(200, body),
        )
        .unwrap();
        (serde_json::from_slice(&t.body).unwrap(), t.usage)
    }

    #[test]
    fn text_answer() {
        let (v, usage) = parse(RESPONSE);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
        assert_eq!(v["model"], "command-a-03-2025");
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(choice["message"]["role"], "assistant");
        assert!(
            choice["message"]["content"]
                .as_str()
                .unwrap()
                .starts_with("LLMs stand for Large Language Models")
        );
        // The billed units, not the raw token counts.
        assert_eq!(usage, Some(Usage::tokens(5, 25)));
        assert_eq!(v["usage"]["prompt_tokens"], 5);
        assert_eq!(v["usage"]["completion_tokens"], 25);
        assert_eq!(v["usage"]["total_tokens"], 30);
    }

    #[test]
    fn tool_call_answer() {
        let (v, usage) = parse(TOOLS);
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"]["content"],
            "I will search for the weather in Toronto."
        );
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["id"], "get_weather_1byjy32y4hvq");
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(
            calls[0]["function"]["arguments"],
            "{\"location\":\"Toronto\"}"
        );
        assert!(calls[0].get("index").is_none());
        assert_eq!(usage, Some(Usage::tokens(37, 28)));
    }

    #[test]
    fn thinking_answer_and_cached_tokens() {
        let (v, usage) = parse(THINKING);
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "length");
        assert_eq!(choice["message"]["content"], "The capital of France is");
        assert_eq!(
            choice["message"]["reasoning_content"],
            "The user wants the capital of France. That is Paris."
        );
        let usage = usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (9, 20));
        // Never more cached than input.
        assert_eq!(usage.cache_read_tokens, 9);
    }

    #[test]
    fn finish_reasons_and_usage_fallbacks() {
        assert_eq!(finish_reason("COMPLETE").unwrap(), "stop");
        assert_eq!(finish_reason("STOP_SEQUENCE").unwrap(), "stop");
        assert_eq!(finish_reason("MAX_TOKENS").unwrap(), "length");
        assert_eq!(finish_reason("TOOL_CALL").unwrap(), "tool_calls");
        assert!(matches!(
            finish_reason("ERROR"),
            Err(AdapterError::Upstream(e)) if e.retryable
        ));
        let u = usage_of(Some(
            &json!({"tokens": {"input_tokens": 7, "output_tokens": 3}}),
        ));
        assert_eq!(u, Some(Usage::tokens(7, 3)));
        assert_eq!(usage_of(Some(&json!({}))), None);
        assert_eq!(usage_of(None), None);
        let errored =
            br#"{"id":"x","finish_reason":"ERROR","message":{"role":"assistant","content":[]}}"#;
        assert!(matches!(
            Cohere::parse_response(
                &call("chat.completions", "m", false),
                &response(200, errored)
            ),
            Err(AdapterError::Upstream(_))
        ));
    }
}

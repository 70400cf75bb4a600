//! Hunyuan's server-sent stream: every `data:` event is a whole answer
//! object without the `Response` wrapper (`{"Id", "Created", "Choices":
//! [{"Delta": {"Role", "Content", "ReasoningContent", "ToolCalls"},
//! "FinishReason"}], "Usage"}`), `FinishReason` empty until the last one,
//! `Usage` a running total on each. There is no `[DONE]`: the event with a
//! `FinishReason` ends the stream. A failure mid-way comes as `ErrorMsg`.
//!
//! Tool call pieces are merged by their `Id`: the first piece of a call
//! carries its id and name in the OpenAI delta, later pieces only argument
//! text, all under the call's OpenAI `index`.

use serde_json::{Value, json};
use transit_adapter_sdk::prelude::*;

use crate::{error, reply};

pub struct HunyuanStream {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    usage: Option<Usage>,
    /// Whether the first (role) chunk went out.
    started: bool,
    /// Ids of the tool calls seen, in order (their OpenAI index).
    calls: Vec<String>,
    done: bool,
}

impl HunyuanStream {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Result<Vec<u8>, AdapterError> {
        openai::chunk(&self.id, self.created, &self.model, delta, finish)
    }

    fn usage_chunk(&self) -> Result<Option<Vec<u8>>, AdapterError> {
        let Some(usage) = self.usage.as_ref().filter(|_| self.include_usage) else {
            return Ok(None);
        };
        openai::usage_chunk(&self.id, self.created, &self.model, usage).map(Some)
    }

    /// The OpenAI tool call deltas of one piece.
    fn tool_deltas(&mut self, calls: &[Value]) -> Vec<Value> {
        let mut out = Vec::new();
        for (position, call) in calls.iter().enumerate() {
            let id = call
                .get("Id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(|| format!("call_{}", self.calls.len()), str::to_owned);
            let known = self.calls.iter().position(|c| *c == id);
            let delta = match known {
                Some(index) => json!({
                    "index": index,
                    "function": {
                        "arguments": call
                            .pointer("/Function/Arguments")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                    },
                }),
                None => {
                    self.calls.push(id.clone());
                    let mut first = reply::tool_call(call, Some(self.calls.len() - 1), position);
                    first["id"] = json!(id);
                    first
                }
            };
            out.push(delta);
        }
        out
    }

    fn translate(&mut self, value: &Value, out: &mut Vec<Vec<u8>>) -> Result<(), AdapterError> {
        if self.id.is_empty() {
            self.id = reply::completion_id(value);
        }
        if let Some(created) = value.get("Created").and_then(Value::as_u64) {
            self.created = created;
        }
        let choices = value
            .get("Choices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for choice in choices {
            let delta = choice.get("Delta").unwrap_or(&Value::Null);
            if !self.started {
                self.started = true;
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None)?);
            }
            if let Some(r) = delta
                .get("ReasoningContent")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                out.push(self.chunk(json!({"reasoning_content": r}), None)?);
            }
            if let Some(c) = delta
                .get("Content")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
            {
                out.push(self.chunk(json!({"content": c}), None)?);
            }
            if let Some(calls) = delta
                .get("ToolCalls")
                .and_then(Value::as_array)
                .filter(|c| !c.is_empty())
            {
                let deltas = self.tool_deltas(calls);
                out.push(self.chunk(json!({"tool_calls": deltas}), None)?);
            }
            let reason = reply::finish_reason(
                choice.get("FinishReason").and_then(Value::as_str),
                !self.calls.is_empty(),
            );
            if let Some(reason) = reason {
                out.push(self.chunk(json!({}), Some(reason))?);
                self.done = true;
            }
        }
        Ok(())
    }
}

impl StreamTranslator for HunyuanStream {
    fn new(call: Call) -> Self {
        Self {
            include_usage: call.include_usage,
            id: String::new(),
            model: call.model,
            created: reply::now(),
            usage: None,
            started: false,
            calls: Vec::new(),
            done: false,
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        for event in events {
            if self.done {
                break;
            }
            let data = event.data.trim_ascii();
            if data.is_empty() {
                continue;
            }
            if data == b"[DONE]" {
                self.done = true;
            } else {
                let Ok(value) = serde_json::from_slice::<Value>(data) else {
                    return Err(errors::upstream(
                        502,
                        false,
                        "Hunyuan sent a stream event that is not JSON",
                    ));
                };
                // Tolerate the wrapped form of a whole answer too.
                let value = value.get("Response").unwrap_or(&value);
                if let Some(e) = error::in_body(value) {
                    return Err(e);
                }
                if let Some(e) = value.get("ErrorMsg").filter(|e| e.is_object()) {
                    return Err(error::stream_error(e));
                }
                if let Some(usage) = reply::usage_of(value.get("Usage")) {
                    self.usage = Some(usage.clone());
                    batch.usage = Some(usage);
                }
                self.translate(value, &mut batch.chunks)?;
            }
            if self.done {
                batch.done = true;
                if let Some(chunk) = self.usage_chunk()? {
                    batch.chunks.push(chunk);
                }
            }
        }
        Ok(batch)
    }

    /// The upstream closed without a last `FinishReason`: the usage chunk
    /// still goes out (once).
    fn finish(&mut self) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        if !self.done {
            self.done = true;
            if let Some(chunk) = self.usage_chunk()? {
                batch.chunks.push(chunk);
            }
            batch.usage.clone_from(&self.usage);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, sse_events};

    const STREAM: &str = include_str!("../fixtures/stream.sse");
    const TOOLS: &str = include_str!("../fixtures/stream_tools.sse");
    const T1: &str = include_str!("../fixtures/stream_t1.sse");
    const ERROR: &str = include_str!("../fixtures/stream_error.sse");

    /// Feed a transcript one event per batch; the chunks, last usage and
    /// whether the stream ended.
    fn run(transcript: &str, include_usage: bool) -> (Vec<Value>, Option<Usage>, bool) {
        let mut c = call("chat.completions", "hunyuan-turbos-latest", true);
        c.include_usage = include_usage;
        let mut s = HunyuanStream::new(c);
        let (mut chunks, mut usage, mut done) = (Vec::new(), None, false);
        for event in sse_events(transcript) {
            let b = s.push(vec![event]).unwrap();
            chunks.extend(b.chunks);
            usage = b.usage.or(usage);
            done |= b.done;
        }
        let b = s.finish().unwrap();
        chunks.extend(b.chunks);
        let chunks = chunks
            .iter()
            .map(|c| serde_json::from_slice(c).unwrap())
            .collect();
        (chunks, usage, done)
    }

    fn text(chunks: &[Value], key: &str) -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][key].as_str())
            .collect()
    }

    #[test]
    fn text_stream() {
        let (chunks, usage, done) = run(STREAM, false);
        assert!(done);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            chunks[0]["id"],
            "chatcmpl-0c5bd8f1-6d8a-4a3e-a4f4-3b4b3d3f2a1c"
        );
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert_eq!(text(&chunks, "content"), "你好！有什么可以帮你的吗？");
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(usage, Some(Usage::tokens(3, 11)));
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }

    #[test]
    fn usage_chunk_when_asked() {
        let (chunks, _, _) = run(STREAM, true);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 3);
        assert_eq!(last["usage"]["completion_tokens"], 11);
        assert_eq!(
            chunks.iter().filter(|c| c.get("usage").is_some()).count(),
            1
        );
    }

    #[test]
    fn reasoning_stream() {
        let (chunks, usage, _) = run(T1, false);
        assert_eq!(
            text(&chunks, "reasoning_content"),
            "比较 9.11 和 9.9：0.11 小于 0.90。"
        );
        assert_eq!(text(&chunks, "content"), "9.11 更小。");
        assert_eq!(usage, Some(Usage::tokens(12, 27)));
    }

    #[test]
    fn tool_call_pieces_merge_by_id() {
        let (chunks, usage, done) = run(TOOLS, false);
        assert!(done);
        let deltas: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        assert_eq!(deltas.len(), 2);
        assert_eq!(deltas[0]["index"], 0);
        assert_eq!(deltas[0]["id"], "call_cr2k9ah3ij9thl0d1hn0");
        assert_eq!(deltas[0]["function"]["name"], "get_current_weather");
        assert_eq!(deltas[1]["index"], 0);
        assert!(deltas[1].get("id").is_none());
        assert!(deltas[1]["function"].get("name").is_none());
        let args: String = deltas
            .iter()
            .filter_map(|d| d["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, "{\"location\":\"北京\"}");
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(usage, Some(Usage::tokens(214, 34)));
    }

    #[test]
    fn error_mid_stream() {
        let mut s = HunyuanStream::new(call("chat.completions", "m", true));
        let mut events = sse_events(ERROR).into_iter();
        let first = s.push(vec![events.next().unwrap()]).unwrap();
        assert_eq!(first.chunks.len(), 2);
        let err = s.push(events.collect()).unwrap_err();
        assert!(
            matches!(err, AdapterError::Upstream(ref u) if u.message == "请求模型超时"),
            "{err:?}"
        );
    }

    #[test]
    fn all_at_once_and_garbage() {
        let mut s = HunyuanStream::new(call("chat.completions", "m", true));
        let b = s.push(sse_events(STREAM)).unwrap();
        assert!(b.done);
        assert_eq!(b.usage, Some(Usage::tokens(3, 11)));
        assert!(s.finish().unwrap().chunks.is_empty());
        let mut s = HunyuanStream::new(call("chat.completions", "m", true));
        assert!(s.push(sse_events("data: {nope\n\n")).is_err());
        let mut s = HunyuanStream::new(call("chat.completions", "m", true));
        let auth = String::from_utf8_lossy(include_bytes!("../fixtures/error_auth.json"))
            .replace('\n', " ");
        assert!(matches!(
            s.push(sse_events(&format!("data: {auth}\n\n"))),
            Err(AdapterError::Auth(_))
        ));
    }
}

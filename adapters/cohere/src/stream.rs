//! Cohere's v2 chat stream → `chat.completion.chunk`s.
//!
//! Each event's JSON carries its `type` (the SSE `event:` name too):
//! `message-start` (the id), `content-start` / `content-delta` /
//! `content-end` (text, or `thinking` on reasoning models),
//! `tool-plan-delta`, `tool-call-start` / `tool-call-delta` /
//! `tool-call-end`, `citation-*` (ignored) and `message-end` with the
//! finish reason and usage. A `data: [DONE]` may follow.

use serde_json::{Value, json};
use transit_adapter_sdk::prelude::*;

use crate::reply;

/// State of one stream.
pub struct CohereStream {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    started: bool,
    /// Cohere's index of every tool call started, in order; a call's
    /// position here is its OpenAI index.
    tool_calls: Vec<u64>,
    usage: Option<Usage>,
    finished: bool,
    done: bool,
}

impl CohereStream {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Result<Vec<u8>, AdapterError> {
        openai::chunk(&self.id, self.created, &self.model, delta, finish)
    }

    fn start(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), AdapterError> {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None)?);
        }
        Ok(())
    }

    /// The OpenAI index of the tool call Cohere numbers `index`.
    fn tool_index(&self, index: Option<u64>) -> usize {
        match index {
            Some(i) => self
                .tool_calls
                .iter()
                .position(|c| *c == i)
                .unwrap_or(self.tool_calls.len().saturating_sub(1)),
            None => self.tool_calls.len().saturating_sub(1),
        }
    }

    fn translate(
        &mut self,
        kind: &str,
        value: &Value,
        batch: &mut ChunkBatch,
    ) -> Result<(), AdapterError> {
        let message = value.pointer("/delta/message");
        match kind {
            "message-start" => {
                if let Some(id) = value.get("id").and_then(Value::as_str) {
                    id.clone_into(&mut self.id);
                }
                self.start(&mut batch.chunks)?;
            }
            "content-delta" => {
                self.start(&mut batch.chunks)?;
                let content = message.and_then(|m| m.get("content"));
                if let Some(text) = content
                    .and_then(|c| c.get("text"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    batch
                        .chunks
                        .push(self.chunk(json!({ "content": text }), None)?);
                }
                if let Some(thinking) = content
                    .and_then(|c| c.get("thinking"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    batch
                        .chunks
                        .push(self.chunk(json!({ "reasoning_content": thinking }), None)?);
                }
            }
            "tool-plan-delta" => {
                self.start(&mut batch.chunks)?;
                if let Some(plan) = message
                    .and_then(|m| m.get("tool_plan"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    batch
                        .chunks
                        .push(self.chunk(json!({ "content": plan }), None)?);
                }
            }
            "tool-call-start" => {
                self.start(&mut batch.chunks)?;
                let cohere_index = value
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(self.tool_calls.len() as u64);
                self.tool_calls.push(cohere_index);
                let index = self.tool_calls.len() - 1;
                let call = message
                    .and_then(|m| m.get("tool_calls"))
                    .unwrap_or(&Value::Null);
                let call = reply::tool_call(call, Some(index));
                batch
                    .chunks
                    .push(self.chunk(json!({ "tool_calls": [call] }), None)?);
            }
            "tool-call-delta" => {
                let arguments = message
                    .and_then(|m| m.pointer("/tool_calls/function/arguments"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !arguments.is_empty() && !self.tool_calls.is_empty() {
                    let index = self.tool_index(value.get("index").and_then(Value::as_u64));
                    batch.chunks.push(self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
                        None,
                    )?);
                }
            }
            "message-end" => {
                self.start(&mut batch.chunks)?;
                let delta = value.get("delta");
                if let Some(usage) = reply::usage_of(delta.and_then(|d| d.get("usage"))) {
                    self.usage = Some(usage.clone());
                    batch.usage = Some(usage);
                }
                let reason = delta
                    .and_then(|d| d.get("finish_reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("COMPLETE");
                let mut finish = reply::finish_reason(reason)?;
                if !self.tool_calls.is_empty() {
                    finish = "tool_calls";
                }
                batch.chunks.push(self.chunk(json!({}), Some(finish))?);
                self.finished = true;
                self.end(batch)?;
            }
            // content-start, content-end, tool-call-end, citation-*, debug.
            _ => {}
        }
        Ok(())
    }

    /// Mark the stream done, with the usage chunk if the client asked.
    fn end(&mut self, batch: &mut ChunkBatch) -> Result<(), AdapterError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        batch.done = true;
        if self.include_usage
            && let Some(usage) = &self.usage
        {
            let chunk = openai::usage_chunk(&self.id, self.created, &self.model, usage)?;
            batch.chunks.push(chunk);
        }
        Ok(())
    }
}

impl StreamTranslator for CohereStream {
    fn new(call: Call) -> Self {
        Self {
            include_usage: call.include_usage,
            id: "chatcmpl-cohere".to_owned(),
            model: call.model,
            created: reply::now(),
            started: false,
            tool_calls: Vec::new(),
            usage: None,
            finished: false,
            done: false,
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        for event in events {
            let data = event.data.trim_ascii();
            if data.is_empty() {
                continue;
            }
            if data == b"[DONE]" {
                self.end(&mut batch)?;
                continue;
            }
            let Ok(value) = serde_json::from_slice::<Value>(data) else {
                return Err(errors::upstream(
                    502,
                    false,
                    "Cohere sent a stream event that is not JSON",
                ));
            };
            let kind = value
                .get("type")
                .and_then(Value::as_str)
                .or(event.name.as_deref())
                .unwrap_or_default()
                .to_owned();
            if kind.is_empty() || kind == "error" {
                if let Some(message) = value.get("message").and_then(Value::as_str) {
                    return Err(errors::upstream(502, false, message));
                }
                continue;
            }
            if self.finished {
                continue;
            }
            self.translate(&kind, &value, &mut batch)?;
        }
        Ok(batch)
    }

    /// The upstream closed without a `message-end`: what was sent stands,
    /// with the usage chunk if one is owed.
    fn finish(&mut self) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        if !self.done {
            self.end(&mut batch)?;
            batch.done = false;
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
    const THINKING: &str = include_str!("../fixtures/stream_thinking.sse");

    fn run(transcript: &str, include_usage: bool) -> (Vec<Value>, Option<Usage>, bool) {
        let mut c = call("chat.completions", "command-a-03-2025", true);
        c.include_usage = include_usage;
        let mut s = CohereStream::new(c);
        let mut chunks = Vec::new();
        let mut usage = None;
        let mut done = false;
        // One event per push, as a slow upstream would deliver them.
        for event in sse_events(transcript) {
            let batch = s.push(vec![event]).unwrap();
            chunks.extend(batch.chunks);
            usage = batch.usage.or(usage);
            done |= batch.done;
        }
        let tail = s.finish().unwrap();
        chunks.extend(tail.chunks);
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
        assert_eq!(chunks[0]["id"], "29f14a5a-11de-4cae-9800-25e4747408ea");
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk")
        );
        assert_eq!(text(&chunks, "content"), "Hello! How can I help you today?");
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(usage, Some(Usage::tokens(3, 9)));
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }

    #[test]
    fn usage_chunk_when_asked() {
        let (chunks, _, _) = run(STREAM, true);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 3);
        assert_eq!(last["usage"]["completion_tokens"], 9);
        assert_eq!(
            chunks.iter().filter(|c| c.get("usage").is_some()).count(),
            1
        );
    }

    #[test]
    fn tool_call_stream() {
        let (chunks, usage, done) = run(TOOLS, true);
        assert!(done);
        assert_eq!(
            text(&chunks, "content"),
            "I will search for the weather in Toronto."
        );
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[0]["id"], "get_weather_nsz5zm3w56q3");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        let args = |index: u64| -> String {
            calls
                .iter()
                .filter(|c| c["index"] == index)
                .filter_map(|c| c["function"]["arguments"].as_str())
                .collect()
        };
        assert_eq!(args(0), "{\"location\":\"Toronto\"}");
        assert_eq!(args(1), "{\"location\":\"Paris\"}");
        assert_eq!(
            calls.iter().filter(|c| c.get("id").is_some()).count(),
            2,
            "ids only on the first delta of each call"
        );
        let finish = chunks
            .iter()
            .find_map(|c| c["choices"][0]["finish_reason"].as_str())
            .unwrap();
        assert_eq!(finish, "tool_calls");
        assert_eq!(usage, Some(Usage::tokens(37, 28)));
    }

    #[test]
    fn thinking_stream() {
        let (chunks, usage, _) = run(THINKING, false);
        assert_eq!(
            text(&chunks, "reasoning_content"),
            "The user wants the capital of France."
        );
        assert_eq!(text(&chunks, "content"), "Paris.");
        let finish = chunks
            .iter()
            .find_map(|c| c["choices"][0]["finish_reason"].as_str())
            .unwrap();
        assert_eq!(finish, "length");
        assert_eq!(usage.unwrap().cache_read_tokens, 9);
    }

    #[test]
    fn whole_transcript_in_one_batch_and_bad_events() {
        let mut s = CohereStream::new(call("chat.completions", "m", true));
        let batch = s.push(sse_events(STREAM)).unwrap();
        assert!(batch.done);
        assert_eq!(batch.usage, Some(Usage::tokens(3, 9)));
        assert!(s.finish().unwrap().chunks.is_empty());

        let mut s = CohereStream::new(call("chat.completions", "m", true));
        assert!(s.push(sse_events("data: {not json\n\n")).is_err());
        let mut s = CohereStream::new(call("chat.completions", "m", true));
        let r = s.push(sse_events(
            "event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\"}}\n\n",
        ));
        assert!(matches!(r, Err(AdapterError::Upstream(_))));
        let mut s = CohereStream::new(call("chat.completions", "m", true));
        let r = s.push(sse_events(
            "data: {\"message\":\"internal server error\"}\n\n",
        ));
        assert!(
            matches!(r, Err(AdapterError::Upstream(e)) if e.message == "internal server error")
        );
    }

    #[test]
    fn a_cut_stream_invents_no_usage() {
        let mut c = call("chat.completions", "m", true);
        c.include_usage = true;
        let mut s = CohereStream::new(c);
        let events = sse_events(STREAM);
        // Everything up to message-end, which carries the usage, is lost.
        s.push(events[..3].to_vec()).unwrap();
        let tail = s.finish().unwrap();
        assert!(tail.chunks.is_empty(), "no usage was ever reported");
    }
}

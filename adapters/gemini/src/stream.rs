//! Gemini's server-sent stream (`streamGenerateContent?alt=sse`): every
//! event is a whole `GenerateContentResponse` holding the next piece of each
//! candidate, the last one carrying `finishReason` and the final
//! `usageMetadata`. There is no `[DONE]`: the stream is over when every
//! candidate has finished (or the prompt was blocked), and Gemini closes it.

use serde_json::{Value, json};
use transit_adapter_sdk::prelude::*;

use crate::{NATIVE_GENERATE, error, reply};

/// Translates Gemini stream events into `chat.completion.chunk`s, or passes
/// them through untouched for a native `generateContent` client.
pub struct GeminiStream {
    /// Events pass through untouched (a native Gemini client).
    native: bool,
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    /// The latest usage (Gemini's counts are running totals).
    usage: Option<Usage>,
    candidates: Vec<Candidate>,
    /// The prompt was blocked: no candidate will come.
    blocked: bool,
    done: bool,
    usage_sent: bool,
}

/// What is known of one candidate (one OpenAI choice).
struct Candidate {
    index: u64,
    started: bool,
    finished: bool,
    tool_calls: u32,
}

impl GeminiStream {
    fn chunk(
        &self,
        index: u64,
        delta: Value,
        finish: Option<&str>,
    ) -> Result<Vec<u8>, AdapterError> {
        transit_adapter_sdk::json::to_vec(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        }))
    }

    /// The usage-only chunk, once, when the client asked for it.
    fn usage_chunk(&mut self) -> Result<Option<Vec<u8>>, AdapterError> {
        if self.native || !self.include_usage || self.usage_sent {
            return Ok(None);
        }
        let Some(usage) = &self.usage else {
            return Ok(None);
        };
        let chunk = transit_adapter_sdk::json::to_vec(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": openai::UsageJson::from(usage),
        }))?;
        self.usage_sent = true;
        Ok(Some(chunk))
    }

    /// The position of candidate `index` in `candidates`, added if new.
    fn slot(&mut self, index: u64) -> usize {
        if let Some(i) = self.candidates.iter().position(|c| c.index == index) {
            return i;
        }
        self.candidates.push(Candidate {
            index,
            started: false,
            finished: false,
            tool_calls: 0,
        });
        self.candidates.len() - 1
    }

    fn is_over(&self) -> bool {
        self.blocked || (!self.candidates.is_empty() && self.candidates.iter().all(|c| c.finished))
    }

    /// Note which candidates finished (a native stream, passed through).
    fn track(&mut self, value: &Value) {
        let candidates = candidates_of(value);
        if candidates.is_empty() && value.pointer("/promptFeedback/blockReason").is_some() {
            self.blocked = true;
        }
        for (position, candidate) in candidates.iter().enumerate() {
            let slot = self.slot(index_of(candidate, position));
            if candidate.get("finishReason").is_some()
                && let Some(c) = self.candidates.get_mut(slot)
            {
                c.finished = true;
            }
        }
    }

    /// One event → chunks.
    fn translate(&mut self, value: &Value, out: &mut Vec<Vec<u8>>) -> Result<(), AdapterError> {
        if self.id.is_empty() {
            self.id = reply::completion_id(value);
        }
        if let Some(model) = value.get("modelVersion").and_then(Value::as_str) {
            model.clone_into(&mut self.model);
        }
        let candidates = candidates_of(value);
        if candidates.is_empty() {
            if value.pointer("/promptFeedback/blockReason").is_some() && !self.blocked {
                self.blocked = true;
                if self.candidates.is_empty() {
                    out.push(self.chunk(0, json!({"role": "assistant", "content": ""}), None)?);
                }
                out.push(self.chunk(0, json!({}), Some("content_filter"))?);
            }
            return Ok(());
        }
        for (position, candidate) in candidates.iter().enumerate() {
            let index = index_of(candidate, position);
            let slot = self.slot(index);
            let Some(state) = self.candidates.get(slot) else {
                continue;
            };
            let (started, finished, mut tools) = (state.started, state.finished, state.tool_calls);
            if finished {
                continue;
            }
            if !started {
                out.push(self.chunk(index, json!({"role": "assistant", "content": ""}), None)?);
            }
            for part in candidate
                .get("content")
                .and_then(|c| c.get("parts"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(call) = part.get("functionCall") {
                    let call = reply::tool_call(part, call, Some(tools));
                    tools += 1;
                    out.push(self.chunk(index, json!({"tool_calls": [call]}), None)?);
                } else if let Some(text) = part
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    let key = if reply::is_thought(part) {
                        "reasoning_content"
                    } else {
                        "content"
                    };
                    out.push(self.chunk(index, json!({ key: text }), None)?);
                }
            }
            let reason = candidate.get("finishReason").and_then(Value::as_str);
            if let Some(reason) = reason {
                let reason = reply::finish_reason(reason, tools > 0);
                out.push(self.chunk(index, json!({}), Some(reason))?);
            }
            if let Some(state) = self.candidates.get_mut(slot) {
                state.started = true;
                state.tool_calls = tools;
                state.finished = reason.is_some();
            }
        }
        Ok(())
    }
}

fn candidates_of(value: &Value) -> &[Value] {
    value
        .get("candidates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn index_of(candidate: &Value, position: usize) -> u64 {
    candidate
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64)
}

impl StreamTranslator for GeminiStream {
    fn new(call: Call) -> Self {
        Self {
            native: call.endpoint == NATIVE_GENERATE,
            include_usage: call.include_usage,
            id: String::new(),
            model: call.model,
            created: reply::now(),
            usage: None,
            candidates: Vec::new(),
            blocked: false,
            done: false,
            usage_sent: false,
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        for event in events {
            let data = event.data.trim_ascii();
            if data.is_empty() {
                continue;
            }
            let Ok(value) = serde_json::from_slice::<Value>(data) else {
                return Err(errors::upstream(
                    502,
                    false,
                    "Gemini sent a stream event that is not JSON",
                ));
            };
            if let Some(e) = value.get("error").filter(|e| !e.is_null()) {
                return Err(error::stream_error(e));
            }
            if let Some(usage) = reply::usage_of(value.get("usageMetadata")) {
                self.usage = Some(usage.clone());
                batch.usage = Some(usage);
            }
            if self.native {
                self.track(&value);
                batch.chunks.push(event.data);
            } else {
                self.translate(&value, &mut batch.chunks)?;
            }
            if !self.done && self.is_over() {
                self.done = true;
                batch.done = true;
                if let Some(chunk) = self.usage_chunk()? {
                    batch.chunks.push(chunk);
                }
            }
        }
        Ok(batch)
    }

    /// The upstream closed. A stream that ended without a last
    /// `finishReason` still gets its usage chunk; called twice, the second
    /// call adds nothing.
    fn finish(&mut self) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        if let Some(chunk) = self.usage_chunk()? {
            batch.chunks.push(chunk);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CHAT;
    use transit_adapter_sdk::testing::{call, sse_events};

    const STREAM: &str = include_str!("../fixtures/stream.sse");
    const TOOLS: &str = include_str!("../fixtures/stream_tools.sse");

    struct Outcome {
        chunks: Vec<Value>,
        usage: Option<Usage>,
        done: bool,
    }

    fn run(c: Call, transcript: &str) -> Outcome {
        let mut s = GeminiStream::new(c);
        let mut chunks = Vec::new();
        let mut usage = None;
        let mut done = false;
        for event in sse_events(transcript) {
            let b = s.push(vec![event]).unwrap();
            chunks.extend(b.chunks);
            usage = b.usage.or(usage);
            done |= b.done;
        }
        let last = s.finish().unwrap();
        chunks.extend(last.chunks);
        assert!(
            s.finish().unwrap().chunks.is_empty(),
            "finish is idempotent"
        );
        Outcome {
            chunks: chunks
                .iter()
                .map(|c| serde_json::from_slice(c).unwrap())
                .collect(),
            usage,
            done,
        }
    }

    fn deltas<'a>(chunks: &'a [Value], key: &str) -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][key].as_str())
            .collect::<Vec<&'a str>>()
            .join("")
    }

    #[test]
    fn stream_transcript_translates() {
        let mut c = call(CHAT, "gemini-2.5-flash", true);
        c.include_usage = true;
        let o = run(c, STREAM);
        assert!(o.done);
        let first = &o.chunks[0];
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            deltas(&o.chunks, "content"),
            "Hello! How can I help you today?"
        );
        assert!(deltas(&o.chunks, "reasoning_content").starts_with("**Greeting the user**"));
        let finish: Vec<&Value> = o
            .chunks
            .iter()
            .filter(|c| !c["choices"][0]["finish_reason"].is_null())
            .collect();
        assert_eq!(finish.len(), 1);
        assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
        let last = o.chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 8);
        assert_eq!(last["usage"]["completion_tokens"], 41);
        assert_eq!(
            last["usage"]["completion_tokens_details"]["reasoning_tokens"],
            32
        );
        let u = o.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.reasoning_tokens),
            (8, 41, 32)
        );
        assert!(
            o.chunks
                .iter()
                .all(|c| c["id"] == "chatcmpl-tTCwacuEBMvnitYP06qsgQY"
                    && c["model"] == "gemini-2.5-flash")
        );
    }

    #[test]
    fn without_include_usage_no_usage_chunk_but_usage_reported() {
        let o = run(call(CHAT, "gemini-2.5-flash", true), STREAM);
        assert!(o.chunks.iter().all(|c| c.get("usage").is_none()));
        assert!(o.usage.is_some());
    }

    #[test]
    fn function_calls_are_whole_tool_call_deltas() {
        let o = run(call(CHAT, "gemini-3-flash-preview", true), TOOLS);
        assert!(o.done);
        let calls: Vec<&Value> = o
            .chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[1]["index"], 1);
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(
            calls[0]["function"]["arguments"],
            "{\"location\":\"Paris\"}"
        );
        assert_eq!(
            calls[1]["function"]["arguments"],
            "{\"location\":\"London\"}"
        );
        assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        assert_eq!(
            calls[0]["extra_content"]["google"]["thought_signature"],
            "CiQB0e2Kb7Gq0Qr3pNx8sV2mW0c5yq1Lz4kTn9uXo3Ej6aHdRfQ="
        );
        assert!(calls[1].get("extra_content").is_none());
        let last = o.chunks.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(o.usage, Some(Usage::tokens(61, 36)));
    }

    #[test]
    fn a_whole_transcript_in_one_batch() {
        let mut c = call(CHAT, "gemini-2.5-flash", true);
        c.include_usage = true;
        let mut s = GeminiStream::new(c);
        let b = s.push(sse_events(STREAM)).unwrap();
        assert!(b.done);
        assert!(b.usage.is_some());
        let last: Value = serde_json::from_slice(b.chunks.last().unwrap()).unwrap();
        assert!(last["usage"].is_object());
        assert!(s.finish().unwrap().chunks.is_empty());
    }

    #[test]
    fn a_cut_stream_still_reports_usage_at_finish() {
        let mut c = call(CHAT, "gemini-2.5-flash", true);
        c.include_usage = true;
        let mut s = GeminiStream::new(c);
        let events = sse_events(STREAM);
        let b = s.push(events[..2].to_vec()).unwrap();
        assert!(!b.done);
        let end = s.finish().unwrap();
        assert_eq!(end.chunks.len(), 1);
        let usage: Value = serde_json::from_slice(&end.chunks[0]).unwrap();
        assert_eq!(usage["usage"]["prompt_tokens"], 8);
    }

    #[test]
    fn several_candidates_end_when_all_have_finished() {
        let transcript = concat!(
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"A\"}], \"role\": \"model\"}, \"index\": 0}, {\"content\": {\"parts\": [{\"text\": \"B\"}], \"role\": \"model\"}, \"index\": 1}]}\r\n\r\n",
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}], \"role\": \"model\"}, \"finishReason\": \"STOP\", \"index\": 0}]}\r\n\r\n",
        );
        let mut s = GeminiStream::new(call(CHAT, "m", true));
        let b = s.push(sse_events(transcript)).unwrap();
        assert!(!b.done, "candidate 1 has not finished");
        let b = s
            .push(sse_events("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"?\"}], \"role\": \"model\"}, \"finishReason\": \"MAX_TOKENS\", \"index\": 1}]}\r\n\r\n"))
            .unwrap();
        assert!(b.done);
        let last: Value = serde_json::from_slice(b.chunks.last().unwrap()).unwrap();
        assert_eq!(last["choices"][0]["index"], 1);
        assert_eq!(last["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn a_blocked_prompt_ends_the_stream() {
        let mut s = GeminiStream::new(call(CHAT, "m", true));
        let b = s
            .push(sse_events("data: {\"promptFeedback\": {\"blockReason\": \"PROHIBITED_CONTENT\"}, \"usageMetadata\": {\"promptTokenCount\": 5, \"totalTokenCount\": 5}}\r\n\r\n"))
            .unwrap();
        assert!(b.done);
        assert_eq!(b.chunks.len(), 2);
        let last: Value = serde_json::from_slice(&b.chunks[1]).unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(b.usage, Some(Usage::tokens(5, 0)));
    }

    #[test]
    fn error_events_and_garbage_fail_the_stream() {
        let mut s = GeminiStream::new(call(CHAT, "m", true));
        let r = s.push(sse_events("data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded. Please try again later.\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n"));
        assert!(
            matches!(r, Err(AdapterError::Upstream(u)) if u.status == 503 && !u.retryable && u.code.as_deref() == Some("UNAVAILABLE"))
        );
        let mut s = GeminiStream::new(call(CHAT, "m", true));
        assert!(s.push(sse_events("data: {\"candid\n\n")).is_err());
        let mut s = GeminiStream::new(call(CHAT, "m", true));
        let b = s
            .push(vec![Event {
                name: None,
                data: Vec::new(),
            }])
            .unwrap();
        assert!(b.chunks.is_empty() && !b.done);
        assert!(s.finish().unwrap().chunks.is_empty());
    }
}

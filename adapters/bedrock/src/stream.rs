//! ConverseStream: AWS eventstream messages, framed by the gateway into
//! events named by their `:event-type` header (or `:exception-type` for
//! exception frames) with the JSON payload as data:
//!
//! `messageStart {role}` → `contentBlockStart {contentBlockIndex, start:
//! {toolUse: {toolUseId, name}}}` (tool blocks only) → `contentBlockDelta
//! {contentBlockIndex, delta: {text | toolUse: {input} | reasoningContent:
//! {text | signature | redactedContent}}}` … → `contentBlockStop` →
//! `messageStop {stopReason}` → `metadata {usage, metrics}`, the last event.
//!
//! They become `chat.completion.chunk`s: the role first, text as
//! `content`, reasoning as `reasoning_content`, tool blocks as `tool_calls`
//! (the id and name when the block starts, then the input JSON in
//! fragments, indexed from 0 in the order the tool blocks start), the
//! finish reason at `messageStop`, and the usage from `metadata` (a
//! usage-only chunk when the client asked for one). Exception frames fail
//! the stream with the error they name.

use std::collections::HashMap;

use serde_json::{Value, json};
use transit_adapter_sdk::prelude::*;

use crate::{error, reply};

/// Events a ConverseStream sends that are not errors.
const EVENTS: &[&str] = &[
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
];

/// Translates ConverseStream events into `chat.completion.chunk`s.
pub struct BedrockStream {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    started: bool,
    /// `contentBlockIndex` of each tool block → its tool call index.
    tools: HashMap<u64, u32>,
    usage: Option<Usage>,
    finished: bool,
    done: bool,
    usage_sent: bool,
}

impl BedrockStream {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Result<Vec<u8>, AdapterError> {
        openai::chunk(&self.id, self.created, &self.model, delta, finish)
    }

    /// The role chunk, once, before anything else.
    fn start(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), AdapterError> {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None)?);
        }
        Ok(())
    }

    /// The usage-only chunk, once, when the client asked for it.
    fn usage_chunk(&mut self) -> Result<Option<Vec<u8>>, AdapterError> {
        if !self.include_usage || self.usage_sent {
            return Ok(None);
        }
        let Some(usage) = &self.usage else {
            return Ok(None);
        };
        let chunk = openai::usage_chunk(&self.id, self.created, &self.model, usage)?;
        self.usage_sent = true;
        Ok(Some(chunk))
    }

    /// The tool call index of tool block `block`, numbered as they start.
    fn tool_index(&mut self, block: u64) -> u32 {
        let next = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
        *self.tools.entry(block).or_insert(next)
    }

    fn translate(
        &mut self,
        name: &str,
        value: &Value,
        batch: &mut ChunkBatch,
    ) -> Result<(), AdapterError> {
        let out = &mut batch.chunks;
        let block = value
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match name {
            "messageStart" => self.start(out)?,
            "contentBlockStart" => {
                self.start(out)?;
                if let Some(tool) = value.pointer("/start/toolUse") {
                    let index = self.tool_index(block);
                    let id = tool
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .map_or_else(|| reply::new_id("call_"), str::to_owned);
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                                               "function": {"name": name, "arguments": ""}}]}),
                        None,
                    )?);
                }
            }
            "contentBlockDelta" => {
                self.start(out)?;
                let delta = value.get("delta").unwrap_or(&Value::Null);
                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    if !text.is_empty() {
                        out.push(self.chunk(json!({ "content": text }), None)?);
                    }
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str)
                {
                    let index = self.tool_index(block);
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": input}}]}),
                        None,
                    )?);
                } else if let Some(text) = delta
                    .pointer("/reasoningContent/text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    out.push(self.chunk(json!({ "reasoning_content": text }), None)?);
                }
            }
            "messageStop" => {
                self.start(out)?;
                let reason = value
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                if !self.finished {
                    self.finished = true;
                    out.push(self.chunk(json!({}), Some(reply::finish_reason(reason)))?);
                }
            }
            "metadata" => {
                if let Some(usage) = reply::usage_of(value.get("usage")) {
                    self.usage = Some(usage.clone());
                    batch.usage = Some(usage);
                }
                if !self.done {
                    self.done = true;
                    batch.done = true;
                    if let Some(chunk) = self.usage_chunk()? {
                        batch.chunks.push(chunk);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl StreamTranslator for BedrockStream {
    fn new(call: Call) -> Self {
        Self {
            include_usage: call.include_usage,
            id: reply::new_id("chatcmpl-"),
            model: call.model,
            created: reply::now(),
            started: false,
            tools: HashMap::new(),
            usage: None,
            finished: false,
            done: false,
            usage_sent: false,
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        for event in events {
            let name = event.name.as_deref().unwrap_or_default();
            if !EVENTS.contains(&name) {
                return Err(error::stream_exception(name, &event.data));
            }
            let data = event.data.trim_ascii();
            let value = if data.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice::<Value>(data).map_err(|_| {
                    errors::upstream(
                        502,
                        false,
                        format!("Bedrock sent a `{name}` stream event that is not JSON"),
                    )
                })?
            };
            self.translate(name, &value, &mut batch)?;
        }
        Ok(batch)
    }

    /// The upstream closed. A stream cut before its `metadata` still gets
    /// its usage chunk, if any usage came; a second call adds nothing.
    fn finish(&mut self) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        if let Some(chunk) = self.usage_chunk()? {
            batch.chunks.push(chunk);
        }
        Ok(batch)
    }
}

/// A recorded, decoded ConverseStream transcript (a JSON array of
/// `{"event": NAME, "payload": {…}}`) as the events the gateway delivers.
#[cfg(test)]
pub fn transcript_events(transcript: &str) -> Vec<Event> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(transcript) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| Event {
            name: item.get("event").and_then(Value::as_str).map(str::to_owned),
            data: item
                .get("payload")
                .map(|p| p.to_string().into_bytes())
                .unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::call;

    const STREAM: &str = include_str!("../fixtures/converse_stream.json");
    const TOOLS: &str = include_str!("../fixtures/converse_stream_tool_use.json");

    struct Outcome {
        chunks: Vec<Value>,
        usage: Option<Usage>,
        done: bool,
    }

    fn run(c: Call, transcript: &str, one_batch: bool) -> Outcome {
        let mut s = BedrockStream::new(c);
        let mut chunks = Vec::new();
        let mut usage = None;
        let mut done = false;
        let events = transcript_events(transcript);
        assert!(!events.is_empty());
        let batches: Vec<Vec<Event>> = if one_batch {
            vec![events]
        } else {
            events.into_iter().map(|e| vec![e]).collect()
        };
        for batch in batches {
            let b = s.push(batch).unwrap();
            chunks.extend(b.chunks);
            usage = b.usage.or(usage);
            done |= b.done;
        }
        chunks.extend(s.finish().unwrap().chunks);
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

    fn deltas(chunks: &[Value], key: &str) -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][key].as_str())
            .collect()
    }

    #[test]
    fn text_stream_translates() {
        for one_batch in [false, true] {
            let mut c = call("chat.completions", "claude", true);
            c.include_usage = true;
            let o = run(c, STREAM, one_batch);
            assert!(o.done);
            assert_eq!(o.chunks[0]["choices"][0]["delta"]["role"], "assistant");
            assert_eq!(
                deltas(&o.chunks, "content"),
                "Here are three pop songs by UK artists: \"Wannabe\", \"Bitter Sweet Symphony\" and \"Wonderwall\"."
            );
            assert_eq!(
                deltas(&o.chunks, "reasoning_content"),
                "The user wants UK pop songs."
            );
            let finishes: Vec<&Value> = o
                .chunks
                .iter()
                .filter(|c| !c["choices"][0]["finish_reason"].is_null())
                .collect();
            assert_eq!(finishes.len(), 1);
            assert_eq!(finishes[0]["choices"][0]["finish_reason"], "stop");
            let last = o.chunks.last().unwrap();
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"]["prompt_tokens"], 25 + 100 + 20);
            assert_eq!(last["usage"]["completion_tokens"], 37);
            assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
            let u = o.usage.unwrap();
            assert_eq!(
                (
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_read_tokens,
                    u.cache_write_tokens
                ),
                (145, 37, 100, 20)
            );
            let id = &o.chunks[0]["id"];
            assert!(
                o.chunks
                    .iter()
                    .all(|c| &c["id"] == id && c["model"] == "claude")
            );
        }
    }

    #[test]
    fn without_include_usage_there_is_no_usage_chunk() {
        let o = run(call("chat.completions", "m", true), STREAM, false);
        assert!(o.chunks.iter().all(|c| c.get("usage").is_none()));
        assert!(o.usage.is_some() && o.done);
    }

    #[test]
    fn tool_use_streams_as_tool_call_deltas() {
        let o = run(call("chat.completions", "m", true), TOOLS, false);
        assert!(o.done);
        assert_eq!(deltas(&o.chunks, "content"), "Let me check that.");
        let calls: Vec<&Value> = o
            .chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
            .collect();
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[0]["id"], "tooluse_3Dxx3bXRTbSb3SIh5ljlbw");
        assert_eq!(calls[0]["function"]["name"], "top_song");
        let args: String = calls
            .iter()
            .filter(|c| c["index"] == 0)
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"sign": "WZPZ"})
        );
        let second: Vec<&&Value> = calls.iter().filter(|c| c["index"] == 1).collect();
        assert_eq!(second[0]["function"]["name"], "top_song");
        let args: String = second
            .iter()
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"sign": "WKRP"})
        );
        let finish = o
            .chunks
            .iter()
            .find(|c| !c["choices"][0]["finish_reason"].is_null())
            .unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(o.usage, Some(Usage::tokens(412, 92)));
    }

    #[test]
    fn a_cut_stream_reports_usage_at_finish() {
        let mut c = call("chat.completions", "m", true);
        c.include_usage = true;
        let mut s = BedrockStream::new(c);
        let b = s.push(transcript_events(STREAM)[..3].to_vec()).unwrap();
        assert!(!b.done && b.usage.is_none());
        assert!(s.finish().unwrap().chunks.is_empty(), "no usage came");
    }

    #[test]
    fn exceptions_and_garbage_fail_the_stream() {
        let mut s = BedrockStream::new(call("chat.completions", "m", true));
        let r = s.push(vec![Event {
            name: Some("throttlingException".into()),
            data: br#"{"message":"Too many requests, please wait before trying again."}"#.to_vec(),
        }]);
        assert!(
            matches!(r, Err(AdapterError::RateLimited(l)) if l.message.starts_with("Too many"))
        );
        let r = s.push(vec![Event {
            name: Some("modelStreamErrorException".into()),
            data: br#"{"message":"boom","originalStatusCode":500}"#.to_vec(),
        }]);
        assert!(
            matches!(r, Err(AdapterError::Upstream(u)) if u.status == 502 && u.code.as_deref() == Some("modelStreamErrorException"))
        );
        let r = s.push(vec![Event {
            name: Some("validationException".into()),
            data: br#"{"message":"bad input"}"#.to_vec(),
        }]);
        assert!(
            matches!(r, Err(AdapterError::Upstream(u)) if u.status == 400 && u.message == "bad input")
        );
        let r = s.push(vec![Event {
            name: None,
            data: b"{}".to_vec(),
        }]);
        assert!(r.is_err());
        let r = s.push(vec![Event {
            name: Some("contentBlockDelta".into()),
            data: b"{not json".to_vec(),
        }]);
        assert!(matches!(r, Err(AdapterError::Upstream(_))));
        let r = s.push(vec![Event {
            name: Some("internalServerException".into()),
            data: vec![0xff, 0xfe],
        }]);
        assert!(matches!(r, Err(AdapterError::Upstream(u)) if u.status == 500));
    }
}

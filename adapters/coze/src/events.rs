//! Coze's Chat v3 event stream, read once for streamed and non-streamed
//! clients alike.
//!
//! ```text
//! event:conversation.chat.created       data: chat object (id, created_at)
//! event:conversation.chat.in_progress   data: chat object
//! event:conversation.message.delta      data: message (type, content, reasoning_content)
//! event:conversation.message.completed  data: the whole message
//! event:conversation.chat.completed     data: chat object with usage
//!                                             {token_count, input_count, output_count}
//! event:conversation.chat.failed        data: chat object with last_error {code, msg}
//! event:error                           data: {code, msg}
//! event:done                            data: "[DONE]"
//! ```
//!
//! Only messages of type `answer` are the bot's reply (`verbose`,
//! `follow_up`, `knowledge`, `function_call` and `tool_output` are Coze's
//! own bookkeeping and plugin traffic). An answer that arrives whole in
//! `message.completed` without deltas before it (some bots reply so) counts
//! too; one that had deltas is not repeated.
//!
//! [`CozeStream`] turns the events into `chat.completion.chunk`s;
//! [`complete`] reads a whole recorded stream into one `chat.completion`
//! (a non-streamed client: see the crate docs).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::sse;

use crate::error;

/// What one event means for the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Content(String),
    Reasoning(String),
    /// The chat completed.
    Finished,
}

/// The state of one chat, fed event by event.
#[derive(Debug, Default)]
pub struct Chat {
    pub id: String,
    pub created: u64,
    pub usage: Option<Usage>,
    /// Answer messages that streamed deltas.
    streamed: Vec<String>,
    pub finished: bool,
    /// `done` arrived (or the chat completed).
    pub done: bool,
}

impl Chat {
    /// Read one event.
    pub fn event(&mut self, name: Option<&str>, data: &[u8]) -> Result<Vec<Piece>, AdapterError> {
        let data = data.trim_ascii();
        if self.done {
            return Ok(Vec::new());
        }
        if name == Some("done") {
            self.done = true;
            return Ok(Vec::new());
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let value: Value = serde_json::from_slice(data).map_err(|_| {
            errors::upstream(502, false, "Coze sent a stream event that is not JSON")
        })?;
        let mut pieces = Vec::new();
        match name.unwrap_or("") {
            "conversation.chat.created" | "conversation.chat.in_progress" => self.note_chat(&value),
            "conversation.message.delta" if is_answer(&value) => {
                if let Some(id) = value.get("id").and_then(Value::as_str)
                    && !self.streamed.iter().any(|s| s == id)
                {
                    self.streamed.push(id.to_owned());
                }
                push_text(&value, &mut pieces);
            }
            "conversation.message.completed" if is_answer(&value) => {
                let id = value.get("id").and_then(Value::as_str).unwrap_or("");
                if id.is_empty() || !self.streamed.iter().any(|s| s == id) {
                    push_text(&value, &mut pieces);
                }
            }
            "conversation.chat.completed" => {
                self.note_chat(&value);
                self.usage = usage_of(value.get("usage"));
                self.finished = true;
                self.done = true;
                pieces.push(Piece::Finished);
            }
            "conversation.chat.failed" => {
                let error = value.get("last_error").unwrap_or(&value);
                return Err(error::from_object(error, None).unwrap_or_else(|| {
                    errors::upstream(502, true, "the Coze chat failed without saying why")
                }));
            }
            "conversation.chat.requires_action" => {
                return Err(errors::upstream(
                    502,
                    false,
                    "the Coze bot asked the caller to run a plugin (requires_action), \
                     which Transit cannot do: give the bot server-side plugins only",
                ));
            }
            "error" => {
                return Err(error::from_object(&value, None).unwrap_or_else(|| {
                    errors::upstream(502, true, "Coze reported an error without a code")
                }));
            }
            // An unnamed `{code, msg}`: an error body where a stream was due.
            "" => {
                if let Some(e) = error::from_object(&value, None) {
                    return Err(e);
                }
            }
            _ => {}
        }
        Ok(pieces)
    }

    fn note_chat(&mut self, chat: &Value) {
        if self.id.is_empty()
            && let Some(id) = chat.get("id").and_then(Value::as_str)
        {
            self.id = id.to_owned();
        }
        if let Some(created) = chat.get("created_at").and_then(Value::as_u64) {
            self.created = created;
        }
    }

    pub fn completion_id(&self) -> String {
        if self.id.is_empty() {
            "chatcmpl-coze".to_owned()
        } else {
            format!("chatcmpl-{}", self.id)
        }
    }
}

fn is_answer(message: &Value) -> bool {
    message.get("type").and_then(Value::as_str) == Some("answer")
}

fn push_text(message: &Value, pieces: &mut Vec<Piece>) {
    if let Some(r) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        pieces.push(Piece::Reasoning(r.to_owned()));
    }
    if let Some(c) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        pieces.push(Piece::Content(c.to_owned()));
    }
}

/// `usage {token_count, input_count, output_count}`.
pub fn usage_of(usage: Option<&Value>) -> Option<Usage> {
    let usage = usage?.as_object()?;
    let input = usage.get("input_count").and_then(Value::as_u64);
    let output = usage.get("output_count").and_then(Value::as_u64);
    if input.is_none() && output.is_none() {
        // Only a total: count it as input, the cheaper side, rather than
        // lose it.
        let total = usage.get("token_count").and_then(Value::as_u64)?;
        return Some(Usage::tokens(total, 0));
    }
    Some(Usage::tokens(input.unwrap_or(0), output.unwrap_or(0)))
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Translates Coze events into `chat.completion.chunk`s.
pub struct CozeStream {
    chat: Chat,
    model: String,
    include_usage: bool,
    started: bool,
    ended: bool,
}

impl CozeStream {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Result<Vec<u8>, AdapterError> {
        let id = self.chat.completion_id();
        openai::chunk(&id, self.chat.created, &self.model, delta, finish)
    }

    fn usage_chunk(&self) -> Result<Option<Vec<u8>>, AdapterError> {
        let Some(usage) = self.chat.usage.as_ref().filter(|_| self.include_usage) else {
            return Ok(None);
        };
        let id = self.chat.completion_id();
        openai::usage_chunk(&id, self.chat.created, &self.model, usage).map(Some)
    }
}

impl StreamTranslator for CozeStream {
    fn new(call: Call) -> Self {
        Self {
            chat: Chat {
                created: now(),
                ..Chat::default()
            },
            model: call.model,
            include_usage: call.include_usage,
            started: false,
            ended: false,
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        for event in events {
            for piece in self.chat.event(event.name.as_deref(), &event.data)? {
                let delta = match piece {
                    Piece::Content(c) => json!({"content": c}),
                    Piece::Reasoning(r) => json!({"reasoning_content": r}),
                    Piece::Finished => {
                        if !self.started {
                            self.started = true;
                            batch.chunks.push(
                                self.chunk(json!({"role": "assistant", "content": ""}), None)?,
                            );
                        }
                        batch.chunks.push(self.chunk(json!({}), Some("stop"))?);
                        if let Some(chunk) = self.usage_chunk()? {
                            batch.chunks.push(chunk);
                        }
                        batch.usage.clone_from(&self.chat.usage);
                        self.ended = true;
                        continue;
                    }
                };
                if !self.started {
                    self.started = true;
                    batch
                        .chunks
                        .push(self.chunk(json!({"role": "assistant", "content": ""}), None)?);
                }
                batch.chunks.push(self.chunk(delta, None)?);
            }
            if self.chat.done {
                batch.done = true;
                break;
            }
        }
        Ok(batch)
    }
}

/// A whole recorded stream (the body of a non-streamed call) → one
/// `chat.completion` and its usage.
pub fn complete(call: &Call, transcript: &[u8]) -> Result<(Value, Option<Usage>), AdapterError> {
    let mut chat = Chat {
        created: now(),
        ..Chat::default()
    };
    let (mut content, mut reasoning) = (String::new(), String::new());
    for (name, data) in sse_events(transcript) {
        for piece in chat.event(name.as_deref(), &data)? {
            match piece {
                Piece::Content(c) => content.push_str(&c),
                Piece::Reasoning(r) => reasoning.push_str(&r),
                Piece::Finished => {}
            }
        }
        if chat.done {
            break;
        }
    }
    if !chat.finished {
        return Err(errors::upstream(
            502,
            true,
            "Coze's answer ended before the chat completed",
        ));
    }
    let mut message = json!({"role": "assistant", "content": content});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    let mut completion = json!({
        "id": chat.completion_id(),
        "object": "chat.completion",
        "created": chat.created,
        "model": call.model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    });
    if let Some(u) = &chat.usage {
        completion["usage"] = json!(openai::UsageJson::from(u));
    }
    Ok((completion, chat.usage))
}

/// Cut a `text/event-stream` body into (event name, data) pairs with the
/// gateway's own framing rules ([`transit_adapter_sdk::sse`]). The body is
/// read as UTF-8, invalid bytes replaced.
pub fn sse_events(body: &[u8]) -> Vec<(Option<String>, Vec<u8>)> {
    sse::parse(String::from_utf8_lossy(body).as_bytes())
        .into_iter()
        .map(|event| (event.name, event.data))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, sse_events as host_framing};

    const STREAM: &str = include_str!("../fixtures/stream.sse");
    const REASONING: &str = include_str!("../fixtures/stream_reasoning.sse");
    const FAILED: &str = include_str!("../fixtures/stream_failed.sse");
    const ERROR: &str = include_str!("../fixtures/stream_error.sse");

    fn run(transcript: &str, include_usage: bool) -> (Vec<Value>, Option<Usage>, bool) {
        let mut c = call("chat.completions", "7348293334792339480", true);
        c.include_usage = include_usage;
        let mut s = CozeStream::new(c);
        let (mut chunks, mut usage, mut done) = (Vec::new(), None, false);
        for event in host_framing(transcript) {
            let b = s.push(vec![event]).unwrap();
            chunks.extend(b.chunks);
            usage = b.usage.or(usage);
            done |= b.done;
        }
        chunks.extend(s.finish().unwrap().chunks);
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
    fn answer_deltas_stream() {
        let (chunks, usage, done) = run(STREAM, false);
        assert!(done);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["id"], "chatcmpl-7382159487131697202");
        assert_eq!(chunks[0]["created"], 1_718_792_949);
        assert_eq!(chunks[0]["model"], "7348293334792339480");
        // Verbose and follow-up messages are not the answer; the completed
        // answer is not repeated.
        assert_eq!(
            text(&chunks, "content"),
            "Coze is a platform for building bots."
        );
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "stop"
        );
        assert_eq!(usage, Some(Usage::tokens(621, 12)));
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }

    #[test]
    fn usage_chunk_when_asked() {
        let (chunks, _, _) = run(STREAM, true);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 621);
        assert_eq!(last["usage"]["completion_tokens"], 12);
        assert_eq!(last["usage"]["total_tokens"], 633);
    }

    #[test]
    fn reasoning_streams_as_reasoning_content() {
        let (chunks, usage, _) = run(REASONING, false);
        assert_eq!(
            text(&chunks, "reasoning_content"),
            "The user asks 9.11 vs 9.9. 0.90 > 0.11."
        );
        assert_eq!(text(&chunks, "content"), "9.9 is larger.");
        assert_eq!(usage, Some(Usage::tokens(131, 41)));
    }

    #[test]
    fn failed_chats_and_error_events() {
        let mut s = CozeStream::new(call("chat.completions", "b", true));
        let err = s.push(host_framing(FAILED)).unwrap_err();
        assert!(
            matches!(err, AdapterError::RateLimited(ref r) if r.message.contains("quota")),
            "{err:?}"
        );
        let mut s = CozeStream::new(call("chat.completions", "b", true));
        let err = s.push(host_framing(ERROR)).unwrap_err();
        assert!(
            matches!(err, AdapterError::Upstream(ref u) if u.status == 500 && u.retryable),
            "{err:?}"
        );
        let mut s = CozeStream::new(call("chat.completions", "b", true));
        assert!(
            s.push(host_framing(
                "event:conversation.message.delta\ndata:{oops\n\n"
            ))
            .is_err()
        );
    }

    #[test]
    fn a_whole_answer_without_deltas_counts() {
        let transcript = "event:conversation.chat.created\ndata:{\"id\":\"c1\",\"created_at\":5}\n\n\
event:conversation.message.completed\ndata:{\"id\":\"m1\",\"role\":\"assistant\",\"type\":\"answer\",\"content\":\"Whole.\",\"content_type\":\"text\"}\n\n\
event:conversation.chat.completed\ndata:{\"id\":\"c1\",\"usage\":{\"token_count\":7,\"output_count\":2,\"input_count\":5}}\n\n";
        let (chunks, usage, done) = run(transcript, false);
        assert!(done);
        assert_eq!(text(&chunks, "content"), "Whole.");
        assert_eq!(usage, Some(Usage::tokens(5, 2)));
    }

    #[test]
    fn a_recorded_stream_becomes_one_completion() {
        let c = call("chat.completions", "7348293334792339480", false);
        let (v, usage) = complete(&c, STREAM.as_bytes()).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], "chatcmpl-7382159487131697202");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Coze is a platform for building bots."
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 621);
        assert_eq!(usage, Some(Usage::tokens(621, 12)));

        let (v, _) = complete(&c, REASONING.as_bytes()).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["reasoning_content"],
            "The user asks 9.11 vs 9.9. 0.90 > 0.11."
        );
        assert!(matches!(
            complete(&c, FAILED.as_bytes()),
            Err(AdapterError::RateLimited(_))
        ));
        // Cut short: no completed chat, no answer.
        let cut = &STREAM[..STREAM.find("event:conversation.chat.completed").unwrap()];
        assert!(matches!(
            complete(&c, cut.as_bytes()),
            Err(AdapterError::Upstream(ref u)) if u.retryable
        ));
    }

    #[test]
    fn framing_matches_the_gateways() {
        for transcript in [
            STREAM,
            REASONING,
            FAILED,
            ERROR,
            "data: x\r\n\r\n: c\n\nevent: e\ndata: 1\ndata: 2",
        ] {
            let ours = sse_events(transcript.as_bytes());
            let host: Vec<(Option<String>, Vec<u8>)> = host_framing(transcript)
                .into_iter()
                .map(|e| (e.name, e.data))
                .collect();
            assert_eq!(ours, host, "{transcript}");
        }
    }
}

//! Native inbound shapes: clients that speak Anthropic's Messages API or
//! Gemini's `generateContent` instead of OpenAI's.
//!
//! A call in a native shape is served by any channel. When the channel's
//! adapter speaks the shape itself (it lists the shape's endpoint, such as
//! `anthropic.messages`), the body goes to it untouched and its answer comes
//! back untouched. Otherwise the request is translated into the canonical
//! form — an OpenAI `chat.completions` request — served like any chat call,
//! and the answer translated back: whole responses, and streams chunk by
//! chunk into the shape's exact event sequence.

pub mod anthropic;
pub mod gemini;
pub mod responses;

use serde_json::Value;

use crate::adapters::Usage;
use crate::error::GatewayError;

/// The API shape a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
    /// OpenAI's Responses API, served over chat completions.
    Responses,
}

impl Shape {
    /// The adapter endpoint that serves this shape's `endpoint` (the
    /// canonical one it maps to) natively.
    pub fn native_endpoint(self, endpoint: &str) -> Option<&'static str> {
        match (self, endpoint) {
            (Self::Anthropic, "chat.completions") => Some("anthropic.messages"),
            (Self::Gemini, "chat.completions") => Some("gemini.generate-content"),
            (Self::Gemini, "embeddings") => Some("gemini.embed-content"),
            _ => None,
        }
    }

    /// An error in the shape's own envelope.
    pub fn error_body(self, e: &GatewayError) -> Value {
        match self {
            Self::OpenAi | Self::Responses => e.body(),
            Self::Anthropic => anthropic::error_body(e),
            Self::Gemini => gemini::error_body(e),
        }
    }

    /// Whether streams in this shape end with OpenAI's `data: [DONE]`.
    pub fn ends_with_done(self) -> bool {
        self == Self::OpenAi
    }

    /// Translate a native request body into a canonical chat request for
    /// `model` (the client's model name).
    pub fn to_chat(self, body: &[u8], model: &str, stream: bool) -> Result<Vec<u8>, GatewayError> {
        match self {
            Self::OpenAi => Ok(body.to_vec()),
            Self::Responses => responses::request_to_chat(body, model, stream),
            Self::Anthropic => anthropic::request_to_chat(body, model, stream),
            Self::Gemini => gemini::request_to_chat(body, model, stream),
        }
    }

    /// Translate a canonical `chat.completion` into the shape's response.
    pub fn from_chat(self, chat: &[u8], model: &str) -> Result<Vec<u8>, GatewayError> {
        match self {
            Self::OpenAi => Ok(chat.to_vec()),
            Self::Responses => responses::chat_to_response(chat, model),
            Self::Anthropic => anthropic::chat_to_response(chat, model),
            Self::Gemini => gemini::chat_to_response(chat, model),
        }
    }

    /// A converter for one translated stream.
    pub fn stream_converter(self, model: &str) -> Option<StreamConverter> {
        match self {
            Self::OpenAi => None,
            Self::Responses => Some(StreamConverter::Responses(responses::StreamConverter::new(
                model,
            ))),
            Self::Anthropic => Some(StreamConverter::Anthropic(anthropic::StreamConverter::new(
                model,
            ))),
            Self::Gemini => Some(StreamConverter::Gemini(gemini::StreamConverter::new(model))),
        }
    }

    /// The SSE event name of one event the shape's native adapter produced
    /// (Anthropic names each event by its `type`).
    pub fn event_name(self, data: &[u8]) -> Option<String> {
        match self {
            Self::Anthropic => serde_json::from_slice::<Value>(data)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned)),
            _ => None,
        }
    }
}

/// One server-sent event for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` field, if the shape names its events.
    pub name: Option<String>,
    /// The `data:` payload (one JSON document).
    pub data: Vec<u8>,
}

/// Turns canonical `chat.completion.chunk`s into a native event stream.
pub enum StreamConverter {
    Responses(responses::StreamConverter),
    Anthropic(anthropic::StreamConverter),
    Gemini(gemini::StreamConverter),
}

impl StreamConverter {
    /// One canonical chunk (the JSON of one `data:` line) → native events.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        match self {
            Self::Responses(c) => c.push(chunk),
            Self::Anthropic(c) => c.push(chunk),
            Self::Gemini(c) => c.push(chunk),
        }
    }

    /// The stream is over; `usage` is the call's final usage. The closing
    /// events (Anthropic's `message_delta` with usage and `message_stop`,
    /// Gemini's last chunk with `usageMetadata`).
    pub fn finish(&mut self, usage: Option<&Usage>) -> Vec<SseEvent> {
        match self {
            Self::Responses(c) => c.finish(usage),
            Self::Anthropic(c) => c.finish(usage),
            Self::Gemini(c) => c.finish(usage),
        }
    }
}

//! The OpenAI adapter: OpenAI itself and every vendor that speaks its dialect
//! (DeepSeek, Moonshot, SiliconFlow, Groq, xAI, Together, OpenRouter, vLLM,
//! Ollama, ...), reached through the channel's base URL.
//!
//! Requests pass through with the model mapped and, on streams,
//! `stream_options.include_usage` forced on so every stream reports usage.
//! Responses and stream chunks pass through untouched: the adapter asks the
//! host to relay them and read their usage itself (`answer::openai`), and
//! translates them the same way when asked to.
//!
//! Videos (Sora) are asynchronous tasks through OpenAI's Videos API: the
//! client's `POST /v1/videos` (JSON or multipart) or the generic
//! `POST /v1/video/generations` shape become `POST /v1/videos`, polled with
//! `GET /v1/videos/{id}`, the finished clip downloaded through
//! `GET /v1/videos/{id}/content` (see [`videos`]).
//!
//! Images (generations, edits, variations), audio (transcriptions,
//! translations, speech), moderations and rerank pass through OpenAI's
//! paths with the model mapped, multipart uploads included; speech audio is
//! relayed raw (see [`media`]).
//!
//! Channel options: `organization`, `project` (OpenAI headers) and
//! `header.NAME` (any extra header a vendor needs).

use transit_adapter_sdk::prelude::*;

pub mod media;
pub mod multipart;
pub mod videos;

/// The adapter.
pub struct OpenAi;

const ENDPOINTS: &[&str] = &[
    "chat.completions",
    "completions",
    "embeddings",
    "videos",
    "video.generations",
    "images.generations",
    "images.edits",
    "images.variations",
    "audio.transcriptions",
    "audio.translations",
    "audio.speech",
    "moderations",
    "rerank",
];

impl Adapter for OpenAi {
    type Stream = OpenAiStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("openai", env!("CARGO_PKG_VERSION"), ENDPOINTS)
            .with_description("OpenAI and OpenAI-compatible APIs")
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        let path = match call.endpoint.as_str() {
            "chat.completions" => "chat/completions",
            "completions" => "completions",
            "embeddings" => "embeddings",
            media if media::serves(media) => return media::prepare_request(call, body),
            other => {
                return Err(errors::unsupported(format!(
                    "the openai adapter does not serve the {other} endpoint"
                )));
            }
        };
        let url = openai::endpoint_url(&call.channel.base_url, path);
        // The same JSON rules hold for all three: the model is mapped and a
        // stream is asked to report usage. Their answers are the client's
        // as they come: the host reads them.
        openai::prepare_chat(call, body, &url).map(UpstreamRequest::with_openai_answer)
    }

    fn parse_response(
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        if media::serves(&call.endpoint) {
            return media::parse_response(call, response);
        }
        openai::parse_chat(response)
    }

    fn prepare_submit(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        videos::prepare_submit(call, body)
    }

    // Videos are this adapter's only tasks, so polls and downloads do not
    // depend on the endpoint the task was submitted through.
    fn parse_submit(_call: &Call, response: &UpstreamResponse) -> Result<Submitted, AdapterError> {
        videos::parse_submit(response)
    }

    fn prepare_poll(call: &Call, upstream_id: &str) -> Result<UpstreamRequest, AdapterError> {
        videos::prepare_poll(call, upstream_id)
    }

    fn parse_poll(_call: &Call, response: &UpstreamResponse) -> Result<TaskState, AdapterError> {
        videos::parse_poll(response)
    }

    fn prepare_content(
        call: &Call,
        upstream_id: &str,
        variant: &str,
    ) -> Result<UpstreamRequest, AdapterError> {
        videos::prepare_content(call, upstream_id, variant)
    }
}

/// A streamed answer: chat chunks, or OpenAI's image and transcription
/// events, which carry their usage in events a chat stream would drop.
pub enum OpenAiStream {
    /// Chat, completions: [`openai::PassthroughStream`].
    Chat(openai::PassthroughStream),
    /// Image generations and transcriptions: [`media::EventStream`].
    Media(media::EventStream),
}

impl StreamTranslator for OpenAiStream {
    fn new(call: Call) -> Self {
        if media::serves(&call.endpoint) {
            Self::Media(media::EventStream::new(&call.endpoint))
        } else {
            Self::Chat(openai::PassthroughStream::new(call))
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        match self {
            Self::Chat(s) => s.push(events),
            Self::Media(s) => s.push(events),
        }
    }

    fn finish(&mut self) -> Result<ChunkBatch, AdapterError> {
        match self {
            Self::Chat(s) => s.finish(),
            Self::Media(_) => Ok(ChunkBatch::empty()),
        }
    }
}

export_adapter!(OpenAi);

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, response, sse_events};

    const REQUEST: &[u8] = include_bytes!("../fixtures/chat_request.json");
    const RESPONSE: &[u8] = include_bytes!("../fixtures/chat_response.json");
    const STREAM: &str = include_str!("../fixtures/chat_stream.sse");

    #[test]
    fn chat_request_goes_to_the_v1_path_with_bearer_auth() {
        let mut c = call("chat.completions", "gpt-4o-mini-2024-07-18", false);
        c.channel.base_url = "https://api.openai.com".into();
        c.channel.options = vec![("organization".into(), "org-1".into())];
        let req = OpenAi::prepare_request(&c, REQUEST).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.url, "https://api.openai.com/v1/chat/completions");
        let header = |n: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("authorization"), Some("Bearer sk-test"));
        assert_eq!(header("openai-organization"), Some("org-1"));
        assert_eq!(req.answer, Answer::Openai);
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini-2024-07-18");
        assert_eq!(body["messages"][0]["role"], "system");
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn stream_requests_force_usage_reporting() {
        let c = call("chat.completions", "deepseek-chat", true);
        let req = OpenAi::prepare_request(&c, REQUEST).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
    }

    #[test]
    fn embeddings_and_completions_go_to_their_paths() {
        for (endpoint, path) in [
            ("embeddings", "/v1/embeddings"),
            ("completions", "/v1/completions"),
        ] {
            let c = call(endpoint, "text-embedding-3-small", false);
            let req = OpenAi::prepare_request(&c, br#"{"model":"x","input":"hi"}"#).unwrap();
            assert!(req.url.ends_with(path), "{}", req.url);
        }
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"model":"m","usage":{"prompt_tokens":5,"total_tokens":5}}"#;
        let t =
            OpenAi::parse_response(&call("embeddings", "m", false), &response(200, body)).unwrap();
        assert_eq!(t.usage, Some(Usage::tokens(5, 0)));
    }

    #[test]
    fn other_endpoints_are_unsupported() {
        let c = call("assistants", "gpt-4o", false);
        assert!(matches!(
            OpenAi::prepare_request(&c, b"{}"),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn response_passes_through_with_usage() {
        let c = call("chat.completions", "m", false);
        let t = OpenAi::parse_response(&c, &response(200, RESPONSE)).unwrap();
        assert_eq!(t.body, RESPONSE);
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens),
            (19, 10, 0)
        );
    }

    #[test]
    fn stream_transcript_translates_with_usage() {
        let mut s = openai::PassthroughStream::new(call("chat.completions", "m", true));
        let batch = s.push(sse_events(STREAM)).unwrap();
        assert!(batch.done);
        let text: String = batch
            .chunks
            .iter()
            .map(|c| serde_json::from_slice::<openai::ChatChunk>(c).unwrap())
            .filter_map(|c| c.choices.first().and_then(|ch| ch.delta.content.clone()))
            .collect();
        assert_eq!(text, "Hello there!");
        assert_eq!(batch.usage, Some(Usage::tokens(19, 3)));
    }

    #[test]
    fn errors_are_classified() {
        let c = call("chat.completions", "m", false);
        let err = OpenAi::map_error(
            &c,
            &response(
                401,
                br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
            ),
        );
        assert!(matches!(err, AdapterError::Auth(_)));
        let err = OpenAi::map_error(
            &c,
            &response(404, br#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#),
        );
        assert!(matches!(err, AdapterError::Upstream(e) if e.status == 404 && !e.retryable));
    }
}

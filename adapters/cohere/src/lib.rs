//! The Cohere adapter: OpenAI chat completions, embeddings and rerank served
//! by Cohere's v2 API (`POST /v2/chat`, `/v2/embed`, `/v2/rerank`), with the
//! channel's key as a bearer token.
//!
//! Chat ([`chat`], [`reply`], [`stream`]): system and developer messages
//! become one leading `system` message (Cohere refuses a system turn that is
//! not the first); user content keeps its text and `image_url` parts;
//! assistant tool calls and `tool` results keep their ids; the text that
//! comes with an assistant's tool calls is its `tool_plan`. Tools, JSON
//! output (`response_format` → `json_object` with the schema), token limit,
//! sampling (`top_p` → `p`), stop sequences and seed are translated; so is
//! `tool_choice` (`required` → `REQUIRED`, `none` → `NONE`, a named function
//! → that tool alone, required). Answers come back as `chat.completion`s:
//! text, thinking as `reasoning_content`, a `tool_plan` as the content of a
//! tool-calling turn, tool calls, finish reasons (`COMPLETE` and
//! `STOP_SEQUENCE` → `stop`, `MAX_TOKENS` → `length`, `TOOL_CALL` →
//! `tool_calls`; `ERROR` is an upstream failure) and usage (Cohere's
//! `billed_units`, else its `tokens`; `cached_tokens` as cache reads).
//! Streams (`message-start`, `content-*`, `tool-plan-delta`, `tool-call-*`,
//! `message-end`) become chunks, tool call deltas included, with the usage
//! chunk when the client asked for one.
//!
//! Embeddings and rerank ([`embed`]): `input` → `texts` with
//! `embedding_types: ["float"]`, `dimensions` → `output_dimension`, and
//! `input_type` from the request, else the channel option `input_type`
//! (or `input-type`), else `search_document`; the answer is an OpenAI
//! embeddings list billed by `billed_units.input_tokens`. Rerank keeps
//! Cohere's answer shape (`results[{index, relevance_score}]`), with the
//! model and, when Cohere counts them, the tokens added as `usage`; when
//! Cohere reports only search units, no usage is reported and the gateway
//! bills the prompt tokens it counted.
//!
//! Errors ([`error`]): Cohere's `{"message": ...}` bodies, by status.
//!
//! Channel options: `input_type`, `header.NAME` (an extra request header).

use serde_json::Value;
use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

pub mod chat;
pub mod embed;
pub mod error;
pub mod reply;
pub mod stream;

/// The adapter.
pub struct Cohere;

/// OpenAI chat completions.
pub const CHAT: &str = "chat.completions";
/// OpenAI embeddings.
pub const EMBEDDINGS: &str = "embeddings";
/// Jina / Cohere-style rerank.
pub const RERANK: &str = "rerank";

const ENDPOINTS: &[&str] = &[CHAT, EMBEDDINGS, RERANK];

impl Adapter for Cohere {
    type Stream = stream::CohereStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("cohere", env!("CARGO_PKG_VERSION"), ENDPOINTS)
            .with_description("Cohere v2 API (chat, embed, rerank)")
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        let request = json::parse_object(body)?;
        let (path, translated) = match call.endpoint.as_str() {
            CHAT => ("chat", chat::to_cohere(call, &request)?),
            EMBEDDINGS => ("embed", embed::to_embed_request(call, &request)?),
            RERANK => ("rerank", embed::to_rerank_request(call, &request)?),
            _ => return Err(errors::unsupported_endpoint(call)),
        };
        Ok(UpstreamRequest::post_json(
            endpoint_url(&call.channel.base_url, path),
            headers(call),
            json::to_vec(&translated)?,
        ))
    }

    fn parse_response(
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        let value = json::parse_upstream(&response.body)?;
        if !value.is_object() {
            return Err(errors::upstream(
                502,
                true,
                "Cohere answered with a JSON value that is not an object",
            ));
        }
        let (body, usage) = match call.endpoint.as_str() {
            CHAT => {
                let usage = reply::usage_of(value.get("usage"));
                let completion = reply::to_completion(call, &value, usage.as_ref())?;
                (completion, usage)
            }
            EMBEDDINGS => embed::to_openai_embeddings(call, &value)?,
            RERANK => embed::to_rerank_answer(call, &value),
            _ => return Err(errors::unsupported_endpoint(call)),
        };
        Ok(Translated {
            body: json::to_vec(&body)?,
            content_type: "application/json".to_owned(),
            usage,
        })
    }

    fn map_error(_call: &Call, response: &UpstreamResponse) -> AdapterError {
        error::classify(response)
    }
}

/// `{base}/v2/{path}`; a base URL that already ends in a version
/// (`…/v2`, `…/v1`) has it replaced by `v2`.
pub fn endpoint_url(base_url: &str, path: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let base = base
        .strip_suffix("/v2")
        .or_else(|| base.strip_suffix("/v1"))
        .unwrap_or(base);
    format!("{base}/v2/{path}")
}

/// Bearer auth, JSON, and any `header.NAME` channel option.
fn headers(call: &Call) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "authorization".to_owned(),
            format!("Bearer {}", call.channel.api_key),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("accept".to_owned(), accept(call).to_owned()),
    ];
    headers.extend(call.channel.option_headers());
    headers
}

fn accept(call: &Call) -> &'static str {
    if call.stream && call.endpoint == CHAT {
        "text/event-stream"
    } else {
        "application/json"
    }
}

/// A non-negative whole number field of a JSON object.
pub(crate) fn count(value: Option<&Value>, key: &str) -> Option<u64> {
    let v = value?.get(key)?;
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.ceil() as u64))
}

export_adapter!(Cohere);

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, response};

    #[test]
    fn urls_and_headers() {
        assert_eq!(
            endpoint_url("https://api.cohere.com", "chat"),
            "https://api.cohere.com/v2/chat"
        );
        assert_eq!(
            endpoint_url("https://api.cohere.com/v2/", "embed"),
            "https://api.cohere.com/v2/embed"
        );
        assert_eq!(
            endpoint_url("https://api.cohere.ai/v1", "rerank"),
            "https://api.cohere.ai/v2/rerank"
        );
        let mut c = call(CHAT, "command-a-03-2025", true);
        c.channel.options = vec![("header.X-Client-Name".into(), "transit".into())];
        let req = Cohere::prepare_request(
            &c,
            br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(req.url, "http://upstream.test/v2/chat");
        let header = |n: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("authorization"), Some("Bearer sk-test"));
        assert_eq!(header("accept"), Some("text/event-stream"));
        assert_eq!(header("X-Client-Name"), Some("transit"));
        assert!(!String::from_utf8_lossy(&req.body).contains("sk-test"));
    }

    #[test]
    fn other_endpoints_are_unsupported() {
        let c = call("images.generations", "m", false);
        assert!(matches!(
            Cohere::prepare_request(&c, br#"{"prompt":"x"}"#),
            Err(AdapterError::Unsupported(_))
        ));
        assert!(matches!(
            Cohere::prepare_request(&call(CHAT, "m", false), b"[1]"),
            Err(AdapterError::InvalidRequest(_))
        ));
        assert!(matches!(
            Cohere::parse_response(&call(CHAT, "m", false), &response(200, b"[]")),
            Err(AdapterError::Upstream(_))
        ));
        assert!(matches!(
            Cohere::parse_response(&call(CHAT, "m", false), &response(200, b"<html>")),
            Err(AdapterError::Upstream(_))
        ));
    }
}

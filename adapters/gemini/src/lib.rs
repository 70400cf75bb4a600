//! The Gemini adapter: OpenAI chat completions and embeddings served by
//! Google's Gemini API (`generateContent`, `streamGenerateContent`,
//! `batchEmbedContents`), and Gemini's own `generateContent` and
//! `embedContent` passed through for clients that speak them.
//!
//! Requests ([`chat`]): system and developer messages become
//! `systemInstruction`; user and assistant messages become `user` and
//! `model` turns, consecutive turns of one role merged; image, audio and
//! file parts become `inlineData` (data URLs) or `fileData` (other URLs, the
//! MIME type guessed from the path); tool calls and tool results become
//! `functionCall` / `functionResponse` parts, a result's function name looked
//! up from the call it answers; tools are declared with their JSON Schema as
//! `parametersJsonSchema`; `tool_choice` becomes
//! `toolConfig.functionCallingConfig`; token limits, sampling, stop
//! sequences, `n`, JSON output (`responseJsonSchema`) and `reasoning_effort`
//! (a thinking budget, thoughts included) go into `generationConfig`.
//!
//! Responses and streams ([`reply`], [`stream`]) come back as OpenAI
//! objects: text, thought summaries as `reasoning_content`, function calls as
//! `tool_calls` (arguments as a JSON string, ids generated when Gemini gives
//! none), finish reasons mapped, and usage from `usageMetadata` (thinking
//! tokens count as output and as reasoning, cached content as cache reads).
//! Gemini ends a stream by closing it, not with a `[DONE]`: the event that
//! carries the last `finishReason` ends it.
//!
//! Thought signatures: a function call's `thoughtSignature` travels with the
//! tool call as `extra_content.google.thought_signature` (where Google's own
//! OpenAI-compatible endpoint puts it) and goes back to Gemini when the
//! client replays the call. A replayed call that carries none gets Google's
//! documented `skip_thought_signature_validator` placeholder, without which
//! Gemini 3 models refuse the request (models named `gemini-1…`, `gemini-2…`
//! or `gemma…` get none).
//!
//! Embeddings ([`embed`]): one `batchEmbedContents` call for all inputs,
//! `dimensions` as `outputDimensionality`. Gemini does not count embedding
//! tokens, so no usage is reported (the gateway counts the input), and the
//! vectors always come back as floats.
//!
//! Native endpoints: `gemini.generate-content` sends the client's
//! `GenerateContentRequest` as it is to the channel's model, and returns
//! Gemini's answer and stream events untouched, usage read on the way;
//! `gemini.embed-content` does the same for `embedContent`. A `model` field
//! in such a body, when present, is set to the channel's model.
//!
//! Errors ([`error`]) are read from Gemini's envelope
//! (`{"error": {"code", "message", "status", "details"}}`).
//!
//! Channel options:
//! - `api-version`: the version path added to a base URL that ends in none
//!   (default `v1beta`; a base URL ending in `/v1beta`, `/v1`, … is used as
//!   it is).
//! - `safety-threshold`: when set (`BLOCK_NONE`, `OFF`, `BLOCK_ONLY_HIGH`,
//!   …), translated chat requests carry `safetySettings` giving every harm
//!   category this threshold.
//! - `header.NAME`: an extra request header.
//!
//! The channel's key goes in the `x-goog-api-key` header, never in the URL.
//!
//! Vertex AI channels (types `vertex`, `vertex-ai`) are served by the same
//! translations with Vertex's URLs, a bearer token and `predict` for
//! embeddings: see [`vertex`].

use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

pub mod chat;
pub mod embed;
pub mod error;
pub mod reply;
pub mod stream;
pub mod vertex;

/// The adapter.
pub struct Gemini;

/// OpenAI chat completions, translated.
pub const CHAT: &str = "chat.completions";
/// OpenAI embeddings, translated.
pub const EMBEDDINGS: &str = "embeddings";
/// Gemini's `generateContent` / `streamGenerateContent`, passed through.
pub const NATIVE_GENERATE: &str = "gemini.generate-content";
/// Gemini's `embedContent`, passed through.
pub const NATIVE_EMBED: &str = "gemini.embed-content";

const ENDPOINTS: &[&str] = &[CHAT, EMBEDDINGS, NATIVE_GENERATE, NATIVE_EMBED];
/// The API version added to a base URL that names none.
const API_VERSION: &str = "v1beta";

impl Adapter for Gemini {
    type Stream = stream::GeminiStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("gemini", env!("CARGO_PKG_VERSION"), ENDPOINTS)
            .with_description("Google Gemini API (generateContent, embeddings)")
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        if vertex::is_vertex(call) {
            return prepare_vertex(call, body);
        }
        let (action, body) = match call.endpoint.as_str() {
            CHAT => {
                let request = json::parse_object(body)?;
                let translated = chat::to_generate_request(call, &request)?;
                (generate_action(call), json::to_vec(&translated)?)
            }
            NATIVE_GENERATE => (generate_action(call), native_body(call, body)?),
            EMBEDDINGS => {
                let request = json::parse_object(body)?;
                let translated = embed::to_batch_request(call, &request)?;
                ("batchEmbedContents", json::to_vec(&translated)?)
            }
            NATIVE_EMBED => ("embedContent", native_body(call, body)?),
            _ => return Err(errors::unsupported_endpoint(call)),
        };
        let url = format!(
            "{}/{}:{action}",
            api_base(call),
            model_url_path(&call.model)?
        );
        // Streams are server-sent events (`alt=sse`), the default framing.
        Ok(UpstreamRequest::post_json(url, headers(call), body))
    }

    fn parse_response(
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        let value = json::parse_upstream(&response.body)?;
        if let Some(e) = error::in_body(&value) {
            return Err(e);
        }
        let (body, usage) = match call.endpoint.as_str() {
            NATIVE_GENERATE => (
                response.body.clone(),
                reply::usage_of(value.get("usageMetadata")),
            ),
            NATIVE_EMBED => (response.body.clone(), None),
            EMBEDDINGS if vertex::is_vertex(call) => {
                let (list, usage) = vertex::predictions_to_openai(call, &value)?;
                (json::to_vec(&list)?, usage)
            }
            EMBEDDINGS => (json::to_vec(&embed::to_openai(call, &value)?)?, None),
            _ => {
                let usage = reply::usage_of(value.get("usageMetadata"));
                let completion = reply::to_completion(call, &value, usage.as_ref());
                (json::to_vec(&completion)?, usage)
            }
        };
        Ok(Translated {
            body,
            content_type: "application/json".to_owned(),
            usage,
        })
    }

    fn map_error(_call: &Call, response: &UpstreamResponse) -> AdapterError {
        error::classify(response)
    }
}

/// A call on a Vertex AI channel: the same bodies (roles always set),
/// Vertex's URLs and a bearer token; embeddings through `predict`.
fn prepare_vertex(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
    let (action, body) = match call.endpoint.as_str() {
        CHAT => {
            let request = json::parse_object(body)?;
            let translated = chat::to_generate_request(call, &request)?;
            (generate_action(call), json::to_vec(&translated)?)
        }
        NATIVE_GENERATE => (generate_action(call), vertex::native_generate_body(body)?),
        EMBEDDINGS => {
            let request = json::parse_object(body)?;
            let translated = vertex::to_predict_request(&request)?;
            ("predict", json::to_vec(&translated)?)
        }
        NATIVE_EMBED => {
            return Err(errors::unsupported(
                "Gemini's embedContent is not available on Vertex AI channels: use /v1/embeddings",
            ));
        }
        _ => return Err(errors::unsupported_endpoint(call)),
    };
    Ok(UpstreamRequest::post_json(
        vertex::url(call, action)?,
        vertex::headers(call),
        body,
    ))
}

/// `generateContent`, or `streamGenerateContent` framed as server-sent
/// events (without `alt=sse` Gemini streams one JSON array).
fn generate_action(call: &Call) -> &'static str {
    if call.stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    }
}

/// A native client's body: sent as it came, unless it names a model, which
/// is set to the channel's (Gemini wants a body's model to match the URL's).
fn native_body(call: &Call, body: &[u8]) -> Result<Vec<u8>, AdapterError> {
    let mut request = json::parse_object(body)?;
    let wanted = model_name(&call.model);
    match request.get("model") {
        Some(serde_json::Value::String(m)) if *m == wanted || *m == call.model => Ok(body.to_vec()),
        Some(_) => {
            request.insert("model".to_owned(), serde_json::Value::String(wanted));
            json::to_vec(&request)
        }
        None => Ok(body.to_vec()),
    }
}

/// The key header, the JSON content type and any `header.NAME` option.
fn headers(call: &Call) -> Vec<(String, String)> {
    let mut headers = vec![
        ("x-goog-api-key".to_owned(), call.channel.api_key.clone()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    headers.extend(call.channel.option_headers());
    headers
}

/// The channel's base URL with the API version: `…googleapis.com` gets
/// `/v1beta` (or the `api-version` option); a base URL whose last path
/// segment already is a version (`/v1beta`, `/v1`, `/v1alpha`) is kept.
pub fn api_base(call: &Call) -> String {
    let base = call.channel.base_url.trim_end_matches('/');
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    let versioned = after_scheme
        .split_once('/')
        .and_then(|(_, path)| path.rsplit('/').next())
        .is_some_and(is_version);
    if versioned {
        return base.to_owned();
    }
    let version = call
        .channel
        .option("api-version")
        .map(|v| v.trim().trim_matches('/'))
        .filter(|v| !v.is_empty())
        .unwrap_or(API_VERSION);
    format!("{base}/{version}")
}

/// `v1`, `v1beta`, `v1alpha`, `v1beta1`, …
fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    let tail = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    if tail.len() == rest.len() {
        return false;
    }
    let tail = tail
        .strip_prefix("alpha")
        .or_else(|| tail.strip_prefix("beta"))
        .unwrap_or(tail);
    tail.chars().all(|c| c.is_ascii_digit())
}

/// The model's resource name: `models/NAME` (a name given as `models/…` or
/// `tunedModels/…` is kept).
pub fn model_name(model: &str) -> String {
    let model = model.trim().trim_matches('/');
    if model.starts_with("models/") || model.starts_with("tunedModels/") {
        model.to_owned()
    } else {
        format!("models/{model}")
    }
}

/// The model's resource name as a URL path, the name percent-encoded.
fn model_url_path(model: &str) -> Result<String, AdapterError> {
    let name = model_name(model);
    let (collection, id) = name.split_once('/').unwrap_or(("models", name.as_str()));
    if id.is_empty() {
        return Err(errors::invalid_request("the channel names no model"));
    }
    let mut out = format!("{collection}/");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

export_adapter!(Gemini);

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, response};

    fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn urls_add_the_version_only_when_missing() {
        let mut c = call(CHAT, "gemini-2.5-flash", false);
        for (base, expected) in [
            (
                "https://generativelanguage.googleapis.com",
                "https://generativelanguage.googleapis.com/v1beta",
            ),
            (
                "https://generativelanguage.googleapis.com/",
                "https://generativelanguage.googleapis.com/v1beta",
            ),
            (
                "https://generativelanguage.googleapis.com/v1beta",
                "https://generativelanguage.googleapis.com/v1beta",
            ),
            (
                "https://generativelanguage.googleapis.com/v1/",
                "https://generativelanguage.googleapis.com/v1",
            ),
            (
                "https://gateway.example/acct/google-ai-studio",
                "https://gateway.example/acct/google-ai-studio/v1beta",
            ),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000/v1beta"),
        ] {
            c.channel.base_url = base.into();
            assert_eq!(api_base(&c), expected, "{base}");
        }
        c.channel.base_url = "https://generativelanguage.googleapis.com".into();
        c.channel.options = vec![("api-version".into(), "v1alpha".into())];
        assert_eq!(
            api_base(&c),
            "https://generativelanguage.googleapis.com/v1alpha"
        );
        assert!(is_version("v1beta1") && is_version("v2") && !is_version("vx"));
        assert!(!is_version("v1foo") && !is_version("models"));
    }

    #[test]
    fn chat_goes_to_generate_content_with_the_key_in_a_header() {
        let mut c = call(CHAT, "gemini-2.5-flash", false);
        c.channel.base_url = "https://generativelanguage.googleapis.com".into();
        c.channel.options = vec![("header.x-goog-user-project".into(), "proj".into())];
        let body = br#"{"model":"alias","messages":[{"role":"user","content":"Hi"}]}"#;
        let req = Gemini::prepare_request(&c, body).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(header(&req, "x-goog-api-key"), Some("sk-test"));
        assert_eq!(header(&req, "x-goog-user-project"), Some("proj"));
        assert!(!req.url.contains("sk-test"));
        assert!(!String::from_utf8_lossy(&req.body).contains("sk-test"));

        c.stream = true;
        let req = Gemini::prepare_request(&c, body).unwrap();
        assert!(
            req.url
                .ends_with("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
            "{}",
            req.url
        );
        assert_eq!(req.framing, Framing::Sse);
    }

    #[test]
    fn model_names_are_resources_and_encoded() {
        assert_eq!(model_name("gemini-2.5-pro"), "models/gemini-2.5-pro");
        assert_eq!(model_name("models/gemini-2.5-pro"), "models/gemini-2.5-pro");
        assert_eq!(model_name("tunedModels/my-tune"), "tunedModels/my-tune");
        assert_eq!(model_url_path("a b?c").unwrap(), "models/a%20b%3Fc");
        assert!(matches!(
            model_url_path(" "),
            Err(AdapterError::InvalidRequest(_))
        ));
    }

    #[test]
    fn other_endpoints_are_unsupported() {
        let c = call("images.generations", "m", false);
        assert!(matches!(
            Gemini::prepare_request(&c, b"{}"),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn info_lists_every_endpoint() {
        let info = Gemini::info();
        assert_eq!(info.name, "gemini");
        assert_eq!(info.endpoints, ENDPOINTS);
    }

    #[test]
    fn a_2xx_error_body_is_an_upstream_error() {
        let c = call(CHAT, "m", false);
        let body = br#"{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}"#;
        assert!(matches!(
            Gemini::parse_response(&c, &response(200, body)),
            Err(AdapterError::Upstream(u)) if u.message == "Internal error encountered."
        ));
    }
}

#[cfg(test)]
mod native_tests {
    use super::*;
    use serde_json::Value;
    use transit_adapter_sdk::testing::{call, response, sse_events};

    const RESPONSE: &[u8] = include_bytes!("../fixtures/response.json");
    const STREAM: &str = include_str!("../fixtures/stream.sse");
    const EMBED: &[u8] = include_bytes!("../fixtures/embed_response.json");

    /// A native Gemini client: its body goes to the channel's model as sent,
    /// and the answer and stream events come back untouched.
    #[test]
    fn generate_content_passes_through_with_usage() {
        let mut c = call(NATIVE_GENERATE, "gemini-2.5-flash", false);
        c.channel.base_url = "https://generativelanguage.googleapis.com".into();
        let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":5}}"#;
        let req = Gemini::prepare_request(&c, body).unwrap();
        assert_eq!(req.body, body.to_vec());
        assert_eq!(
            req.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );

        let parsed = Gemini::parse_response(&c, &response(200, RESPONSE)).unwrap();
        assert_eq!(parsed.body, RESPONSE);
        let u = parsed.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.reasoning_tokens),
            (120, 93, 68)
        );

        c.stream = true;
        let req = Gemini::prepare_request(&c, body).unwrap();
        assert!(req.url.ends_with(":streamGenerateContent?alt=sse"));
        let events = sse_events(STREAM);
        let count = events.len();
        let mut s = stream::GeminiStream::new(c.clone());
        let mut chunks = Vec::new();
        let mut done = false;
        let mut usage = None;
        for event in events.clone() {
            let b = s.push(vec![event]).unwrap();
            chunks.extend(b.chunks);
            done |= b.done;
            usage = b.usage.or(usage);
        }
        assert!(s.finish().unwrap().chunks.is_empty());
        assert_eq!(chunks.len(), count);
        assert_eq!(chunks[0], events[0].data);
        assert!(done);
        let u = usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (8, 41));
    }

    #[test]
    fn a_body_model_is_set_to_the_channel_model() {
        let c = call(NATIVE_EMBED, "gemini-embedding-001", false);
        let body = br#"{"model":"models/my-alias","content":{"parts":[{"text":"hello"}]}}"#;
        let req = Gemini::prepare_request(&c, body).unwrap();
        assert!(
            req.url
                .ends_with("/models/gemini-embedding-001:embedContent")
        );
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent["model"], "models/gemini-embedding-001");
        assert_eq!(sent["content"]["parts"][0]["text"], "hello");

        let plain = br#"{"content":{"parts":[{"text":"hello"}]},"taskType":"RETRIEVAL_QUERY"}"#;
        let req = Gemini::prepare_request(&c, plain).unwrap();
        assert_eq!(req.body, plain.to_vec());

        let parsed = Gemini::parse_response(&c, &response(200, EMBED)).unwrap();
        assert_eq!(parsed.body, EMBED);
        assert!(parsed.usage.is_none());
    }

    #[test]
    fn native_bodies_must_be_json_objects() {
        let c = call(NATIVE_GENERATE, "gemini-2.5-flash", false);
        assert!(matches!(
            Gemini::prepare_request(&c, b"[1]"),
            Err(AdapterError::InvalidRequest(_))
        ));
    }
}

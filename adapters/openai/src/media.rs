//! OpenAI's image, audio, moderation and rerank endpoints.
//!
//! | endpoint | upstream | body |
//! |---|---|---|
//! | `images.generations` | `POST /v1/images/generations` | JSON, model mapped |
//! | `images.edits` | `POST /v1/images/edits` | the client's form (or JSON), model mapped |
//! | `images.variations` | `POST /v1/images/variations` | the client's form, model mapped |
//! | `audio.transcriptions` | `POST /v1/audio/transcriptions` | the client's form, model mapped |
//! | `audio.translations` | `POST /v1/audio/translations` | the client's form, model mapped |
//! | `audio.speech` | `POST /v1/audio/speech` | JSON, model mapped; raw audio answer |
//! | `moderations` | `POST /v1/moderations` | JSON, model mapped if given |
//! | `rerank` | `POST /v1/rerank` | JSON (Jina / Cohere shape), model mapped |
//!
//! A form upload goes upstream byte for byte with the client's
//! `content-type` (its boundary included); only the value of its `model`
//! field is replaced, and only when it differs from the upstream model (see
//! [`crate::multipart`]).
//!
//! Answers pass through unchanged, content type included (a transcription
//! may be `text/plain`, SRT or WebVTT). Usage:
//!
//! - images: the unit `images` (entries in `data`), plus the token counts
//!   GPT image models report in `usage`;
//! - transcriptions and translations: tokens when `usage.type` is
//!   `tokens`, the unit `seconds` (rounded up) when it is `duration` or,
//!   failing both, from a `verbose_json` answer's `duration`;
//! - speech: the unit `characters` of `input`, known before the call and
//!   set on the upstream request (the answer is relayed raw);
//! - moderations: none;
//! - rerank: `usage.total_tokens` (or `prompt_tokens`) as input tokens, or
//!   Cohere's `meta.billed_units.search_units` as the unit `searches`.
//!
//! Streamed image generations and transcriptions (OpenAI's
//! `image_generation.*` and `transcript.text.*` events) go through
//! [`EventStream`].

use serde_json::{Map, Value};
use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

use crate::multipart;

/// How the adapter sends one endpoint's request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A JSON object whose `model` is set to the upstream model.
    Json,
    /// A JSON object whose `model` is replaced only if the client sent one.
    JsonOptionalModel,
    /// A speech request: JSON, the answer relayed raw.
    Speech,
    /// A multipart upload.
    Form,
    /// A multipart upload, or a JSON object.
    FormOrJson,
}

/// What usage an endpoint's answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Images,
    Transcript,
    Audio,
    Moderation,
    Rerank,
}

/// One endpoint: its name, its path under the base URL and how it is sent
/// and read.
struct Route {
    endpoint: &'static str,
    path: &'static str,
    shape: Shape,
    answer: Answer,
}

const ROUTES: &[Route] = &[
    Route {
        endpoint: "images.generations",
        path: "images/generations",
        shape: Shape::Json,
        answer: Answer::Images,
    },
    Route {
        endpoint: "images.edits",
        path: "images/edits",
        shape: Shape::FormOrJson,
        answer: Answer::Images,
    },
    Route {
        endpoint: "images.variations",
        path: "images/variations",
        shape: Shape::Form,
        answer: Answer::Images,
    },
    Route {
        endpoint: "audio.transcriptions",
        path: "audio/transcriptions",
        shape: Shape::Form,
        answer: Answer::Transcript,
    },
    Route {
        endpoint: "audio.translations",
        path: "audio/translations",
        shape: Shape::Form,
        answer: Answer::Transcript,
    },
    Route {
        endpoint: "audio.speech",
        path: "audio/speech",
        shape: Shape::Speech,
        answer: Answer::Audio,
    },
    Route {
        endpoint: "moderations",
        path: "moderations",
        shape: Shape::JsonOptionalModel,
        answer: Answer::Moderation,
    },
    Route {
        endpoint: "rerank",
        path: "rerank",
        shape: Shape::Json,
        answer: Answer::Rerank,
    },
];

/// The endpoints this module serves.
pub const ENDPOINTS: &[&str] = &[
    "images.generations",
    "images.edits",
    "images.variations",
    "audio.transcriptions",
    "audio.translations",
    "audio.speech",
    "moderations",
    "rerank",
];

fn route(endpoint: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.endpoint == endpoint)
}

/// Whether this module serves `endpoint`.
pub fn serves(endpoint: &str) -> bool {
    route(endpoint).is_some()
}

/// Build the upstream request for a media endpoint.
pub fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
    let route = route(&call.endpoint).ok_or_else(|| errors::unsupported_endpoint(call))?;
    let url = openai::endpoint_url(&call.channel.base_url, route.path);
    let form_type = call
        .header("content-type")
        .filter(|ct| multipart::is_form(ct));
    match (route.shape, form_type) {
        (Shape::Json, _) => json_request(call, body, url, true),
        (Shape::JsonOptionalModel, _) => json_request(call, body, url, false),
        (Shape::Speech, _) => speech_request(call, body, url),
        (Shape::Form | Shape::FormOrJson, Some(content_type)) => {
            form_request(call, body, url, content_type)
        }
        (Shape::FormOrJson, None) => json_request(call, body, url, true),
        (Shape::Form, None) => Err(errors::invalid_request(format!(
            "`{}` takes a multipart/form-data upload",
            call.endpoint
        ))),
    }
}

/// A JSON body with the model mapped: always, or (`always` false) only when
/// the client named one.
fn json_request(
    call: &Call,
    body: &[u8],
    url: String,
    always: bool,
) -> Result<UpstreamRequest, AdapterError> {
    let mut request = json::parse_object(body)?;
    if always || request.contains_key("model") {
        request.insert("model".to_owned(), Value::String(call.model.clone()));
    }
    Ok(UpstreamRequest::post_json(
        url,
        openai::bearer_headers(call),
        json::to_vec(&request)?,
    ))
}

/// `POST /v1/audio/speech`: the audio comes back raw, billed by the
/// characters of `input`.
fn speech_request(call: &Call, body: &[u8], url: String) -> Result<UpstreamRequest, AdapterError> {
    let mut request = json::parse_object(body)?;
    let characters = match request.get("input") {
        Some(Value::String(input)) if !input.is_empty() => input.chars().count() as u64,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(errors::invalid_request("`input` is required"));
        }
        Some(_) => return Err(errors::invalid_request("`input` must be a string")),
    };
    request.insert("model".to_owned(), Value::String(call.model.clone()));
    let mut upstream =
        UpstreamRequest::post_json(url, openai::bearer_headers(call), json::to_vec(&request)?);
    upstream.framing = Framing::Raw;
    upstream.usage = Some(Usage::units("characters", characters));
    Ok(upstream)
}

/// A multipart upload, byte for byte but for its `model` field.
fn form_request(
    call: &Call,
    body: &[u8],
    url: String,
    content_type: &str,
) -> Result<UpstreamRequest, AdapterError> {
    let body = multipart::set_text_field(body, content_type, "model", &call.model)
        .map_err(errors::invalid_request)?
        .into_owned();
    let mut headers = openai::bearer_headers(call);
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
    headers.push(("content-type".to_owned(), content_type.to_owned()));
    Ok(UpstreamRequest::post_json(url, headers, body))
}

/// Pass a media answer through, reading its usage.
pub fn parse_response(
    call: &Call,
    response: &UpstreamResponse,
) -> Result<Translated, AdapterError> {
    let route = route(&call.endpoint).ok_or_else(|| errors::unsupported_endpoint(call))?;
    let declared = response
        .header("content-type")
        .map(str::trim)
        .filter(|ct| !ct.is_empty());
    let usage = match route.answer {
        Answer::Images => images_usage(&upstream_object(response)?),
        Answer::Moderation => {
            upstream_object(response)?;
            None
        }
        Answer::Rerank => rerank_usage(&upstream_object(response)?),
        // `response_format` text, srt and vtt answer plain text.
        Answer::Transcript if is_json(declared, &response.body) => {
            transcript_usage(&upstream_object(response)?)
        }
        Answer::Transcript | Answer::Audio => None,
    };
    let content_type = match declared {
        Some(ct) => ct.to_owned(),
        None if is_json(None, &response.body) => "application/json".to_owned(),
        None if route.answer == Answer::Transcript => "text/plain; charset=utf-8".to_owned(),
        None => "application/octet-stream".to_owned(),
    };
    Ok(Translated {
        body: response.body.clone(),
        content_type,
        usage,
    })
}

/// Whether an answer is JSON: by its content type, or, without one, by its
/// first byte.
fn is_json(content_type: Option<&str>, body: &[u8]) -> bool {
    match content_type {
        Some(ct) => ct.to_ascii_lowercase().contains("json"),
        None => body.trim_ascii_start().first() == Some(&b'{'),
    }
}

/// The JSON object of a 2xx answer. An `error` in it is the upstream's
/// failure, as some OpenAI-compatible vendors answer 200 with one.
fn upstream_object(response: &UpstreamResponse) -> Result<Map<String, Value>, AdapterError> {
    let value = json::parse_upstream(&response.body)?;
    if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
        let (message, code) = errors::error_message(&json::to_vec(err)?);
        return Err(AdapterError::Upstream(transit_adapter_sdk::UpstreamError {
            status: 502,
            retryable: true,
            message,
            code,
        }));
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(errors::upstream(
            502,
            true,
            "upstream answered with a JSON value that is not an object",
        )),
    }
}

/// A non-negative JSON number rounded up to a whole count (seconds of
/// audio, search units).
fn round_up(value: &Value) -> Option<u64> {
    let number = value.as_f64()?;
    (number.is_finite() && number >= 0.0).then(|| number.ceil() as u64)
}

/// An images answer: `("images", entries in data)`, plus the GPT image
/// models' token counts.
fn images_usage(answer: &Map<String, Value>) -> Option<Usage> {
    let images = answer
        .get("data")
        .and_then(Value::as_array)
        .map(|d| d.len() as u64);
    let tokens = answer.get("usage").and_then(openai::usage_from_json);
    if images.is_none() && tokens.is_none() {
        return None;
    }
    let mut usage = tokens.unwrap_or_else(|| Usage::tokens(0, 0));
    if let Some(images) = images {
        usage.units.push(("images".to_owned(), images));
    }
    Some(usage)
}

/// A transcription or translation answer (`json`, `verbose_json`, or the
/// final event of a stream).
fn transcript_usage(answer: &Map<String, Value>) -> Option<Usage> {
    let usage = answer.get("usage");
    let tokens = || usage.and_then(openai::usage_from_json);
    let billed_seconds = || usage.and_then(|u| u.get("seconds")).and_then(round_up);
    let reported = match usage.and_then(|u| u.get("type")).and_then(Value::as_str) {
        Some("tokens") => tokens(),
        Some("duration") => billed_seconds().map(|s| Usage::units("seconds", s)),
        _ => None,
    };
    reported.or_else(|| {
        answer
            .get("duration")
            .and_then(round_up)
            .map(|s| Usage::units("seconds", s))
    })
}

/// A rerank answer: Jina / Voyage / OpenAI-style token counts, or Cohere's
/// search units.
fn rerank_usage(answer: &Map<String, Value>) -> Option<Usage> {
    let usage = answer.get("usage");
    let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
    if let Some(tokens) = count("total_tokens").or_else(|| count("prompt_tokens")) {
        return Some(Usage::tokens(tokens, 0));
    }
    answer
        .get("meta")
        .and_then(|m| m.get("billed_units"))
        .and_then(|b| b.get("search_units"))
        .and_then(round_up)
        .map(|n| Usage::units("searches", n))
}

/// Stream translator for OpenAI's media event streams: streamed image
/// generations and edits (`image_generation.partial_image`,
/// `image_generation.completed`, `image_edit.*`) and transcriptions
/// (`transcript.text.delta`, `transcript.text.done`). Every event passes
/// through as it came; usage is read from the events that carry it, and
/// for images the unit `images` counts the completed events.
pub struct EventStream {
    answer: Answer,
    images: u64,
    usage: Option<Usage>,
}

impl EventStream {
    /// A translator for a stream of `endpoint`.
    pub fn new(endpoint: &str) -> Self {
        Self {
            answer: route(endpoint).map_or(Answer::Transcript, |r| r.answer),
            images: 0,
            usage: None,
        }
    }

    /// Translate a batch of events.
    pub fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        for event in events {
            let data = event.data.trim_ascii();
            if data.is_empty() {
                continue;
            }
            if data == b"[DONE]" {
                batch.done = true;
                continue;
            }
            let value: Value = serde_json::from_slice(data).map_err(|e| {
                errors::upstream(
                    502,
                    false,
                    format!("upstream sent a stream event that is not JSON: {e}"),
                )
            })?;
            let Value::Object(event) = value else {
                return Err(errors::upstream(
                    502,
                    false,
                    "upstream sent a stream event that is not a JSON object",
                ));
            };
            if let Some(err) = event.get("error").filter(|e| !e.is_null()) {
                let (message, code) = errors::error_message(&json::to_vec(err)?);
                return Err(AdapterError::Upstream(transit_adapter_sdk::UpstreamError {
                    status: 502,
                    retryable: false,
                    message,
                    code,
                }));
            }
            if self.read_usage(&event) {
                batch.usage = self.usage.clone();
            }
            batch.chunks.push(data.to_vec());
        }
        Ok(batch)
    }

    /// Take the usage an event carries; whether it changed the totals.
    fn read_usage(&mut self, event: &Map<String, Value>) -> bool {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        match self.answer {
            Answer::Images => {
                let completed = kind.ends_with(".completed");
                let tokens = event.get("usage").and_then(openai::usage_from_json);
                if !completed && tokens.is_none() {
                    return false;
                }
                if completed {
                    self.images += 1;
                }
                // Token counts are the latest reported, not a sum: never
                // bill one request's tokens twice.
                let mut usage = tokens
                    .or_else(|| self.usage.clone())
                    .unwrap_or_else(|| Usage::tokens(0, 0));
                usage.units.retain(|(unit, _)| unit != "images");
                usage.units.push(("images".to_owned(), self.images));
                self.usage = Some(usage);
                true
            }
            _ => match transcript_usage(event) {
                Some(usage) => {
                    self.usage = Some(usage);
                    true
                }
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenAi;
    use transit_adapter_sdk::testing::{call, response, sse_events};

    const IMAGE_REQUEST: &[u8] = include_bytes!("../fixtures/images_generations_request.json");
    const IMAGE_GPT: &[u8] = include_bytes!("../fixtures/images_response_gpt_image.json");
    const IMAGE_DALLE: &[u8] = include_bytes!("../fixtures/images_response_dall_e.json");
    const IMAGE_STREAM: &str = include_str!("../fixtures/images_stream.sse");
    const TRANSCRIPT_TOKENS: &[u8] =
        include_bytes!("../fixtures/transcription_response_tokens.json");
    const TRANSCRIPT_DURATION: &[u8] =
        include_bytes!("../fixtures/transcription_response_duration.json");
    const TRANSCRIPT_VERBOSE: &[u8] = include_bytes!("../fixtures/transcription_verbose.json");
    const TRANSCRIPT_SRT: &[u8] = include_bytes!("../fixtures/transcription.srt");
    const TRANSCRIPT_STREAM: &str = include_str!("../fixtures/transcription_stream.sse");
    const SPEECH_REQUEST: &[u8] = include_bytes!("../fixtures/speech_request.json");
    const MODERATION_REQUEST: &[u8] = include_bytes!("../fixtures/moderation_request.json");
    const MODERATION_RESPONSE: &[u8] = include_bytes!("../fixtures/moderation_response.json");
    const RERANK_REQUEST: &[u8] = include_bytes!("../fixtures/rerank_request.json");
    const RERANK_JINA: &[u8] = include_bytes!("../fixtures/rerank_response_jina.json");
    const RERANK_COHERE: &[u8] = include_bytes!("../fixtures/rerank_response_cohere.json");

    const BOUNDARY_CT: &str =
        "multipart/form-data; boundary=------------------------d74496d66958873e";

    fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body(req: &UpstreamRequest) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    fn unit(usage: &Usage, name: &str) -> Option<u64> {
        usage.units.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// A form as curl builds it for `-F file=@… -F model=…`.
    fn curl_form(file_field: &str, file: &[u8], model: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"--------------------------d74496d66958873e\r\n");
        out.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{file_field}\"; filename=\"speech.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(file);
        out.extend_from_slice(b"\r\n--------------------------d74496d66958873e\r\n");
        out.extend_from_slice(b"Content-Disposition: form-data; name=\"model\"\r\n\r\n");
        out.extend_from_slice(model.as_bytes());
        out.extend_from_slice(b"\r\n--------------------------d74496d66958873e\r\n");
        out.extend_from_slice(
            b"Content-Disposition: form-data; name=\"response_format\"\r\n\r\nverbose_json\r\n",
        );
        out.extend_from_slice(b"--------------------------d74496d66958873e--\r\n");
        out
    }

    fn form_call(endpoint: &str, model: &str) -> Call {
        let mut c = call(endpoint, model, false);
        c.headers = vec![("content-type".into(), BOUNDARY_CT.into())];
        c
    }

    #[test]
    fn every_media_endpoint_is_listed() {
        let info = OpenAi::info();
        for endpoint in ENDPOINTS {
            assert!(info.endpoints.iter().any(|e| e == endpoint), "{endpoint}");
            assert!(serves(endpoint));
        }
        assert_eq!(ENDPOINTS.len(), ROUTES.len());
    }

    #[test]
    fn image_generation_maps_the_model() {
        let mut c = call("images.generations", "gpt-image-1", false);
        c.channel.base_url = "https://api.openai.com".into();
        let req = OpenAi::prepare_request(&c, IMAGE_REQUEST).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.url, "https://api.openai.com/v1/images/generations");
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
        assert_eq!(header(&req, "content-type"), Some("application/json"));
        let sent = body(&req);
        assert_eq!(sent["model"], "gpt-image-1");
        assert_eq!(sent["n"], 1);
        assert_eq!(sent["size"], "1024x1024");
        assert_eq!(req.usage, None);
    }

    #[test]
    fn image_answers_count_images_and_tokens() {
        let c = call("images.generations", "gpt-image-1", false);
        let t = OpenAi::parse_response(&c, &response(200, IMAGE_GPT)).unwrap();
        assert_eq!(t.body, IMAGE_GPT);
        assert_eq!(t.content_type, "application/json");
        let u = t.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (50, 50));
        assert_eq!(unit(&u, "images"), Some(1));

        let c = call("images.generations", "dall-e-3", false);
        let u = OpenAi::parse_response(&c, &response(200, IMAGE_DALLE))
            .unwrap()
            .usage
            .unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (0, 0));
        assert_eq!(unit(&u, "images"), Some(2));

        assert!(matches!(
            OpenAi::parse_response(&c, &response(200, b"<html>")),
            Err(AdapterError::Upstream(_))
        ));
        assert!(matches!(
            OpenAi::parse_response(&c, &response(200, br#"{"error":{"message":"no"}}"#)),
            Err(AdapterError::Upstream(e)) if e.message == "no"
        ));
    }

    #[test]
    fn image_edits_rewrite_the_form_model_only() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR--------------------------d74496d66958873e";
        let form = curl_form("image", png, "my-image-alias");
        let c = form_call("images.edits", "gpt-image-1");
        let req = OpenAi::prepare_request(&c, &form).unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/images/edits");
        assert_eq!(header(&req, "content-type"), Some(BOUNDARY_CT));
        assert_eq!(
            req.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
        assert_eq!(req.body, curl_form("image", png, "gpt-image-1"));
        assert_eq!(req.framing, Framing::Sse);

        // Already the upstream model: byte for byte.
        let same = curl_form("image", png, "gpt-image-1");
        assert_eq!(OpenAi::prepare_request(&c, &same).unwrap().body, same);

        // No model field: left as it is.
        let c = form_call("images.variations", "dall-e-2");
        let bare = b"--------------------------d74496d66958873e\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nPNG\r\n--------------------------d74496d66958873e--\r\n";
        let req = OpenAi::prepare_request(&c, bare).unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/images/variations");
        assert_eq!(req.body, bare);
    }

    #[test]
    fn image_edits_also_take_json() {
        let c = call("images.edits", "gpt-image-1", false);
        let req = OpenAi::prepare_request(
            &c,
            br#"{"model":"alias","prompt":"add a hat","images":[{"image_url":"https://example.com/cat.png"}]}"#,
        )
        .unwrap();
        assert_eq!(header(&req, "content-type"), Some("application/json"));
        assert_eq!(body(&req)["model"], "gpt-image-1");
    }

    #[test]
    fn audio_uploads_pass_through_with_the_model_mapped() {
        let wav = b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0";
        for (endpoint, path) in [
            ("audio.transcriptions", "/v1/audio/transcriptions"),
            ("audio.translations", "/v1/audio/translations"),
        ] {
            let c = form_call(endpoint, "whisper-1");
            let req = OpenAi::prepare_request(&c, &curl_form("file", wav, "whisper")).unwrap();
            assert_eq!(req.url, format!("http://upstream.test{path}"));
            assert_eq!(req.body, curl_form("file", wav, "whisper-1"));
            assert_eq!(header(&req, "content-type"), Some(BOUNDARY_CT));
            assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
            assert!(!String::from_utf8_lossy(&req.body).contains("sk-test"));

            // JSON is not an upload.
            let c = call(endpoint, "whisper-1", false);
            assert!(matches!(
                OpenAi::prepare_request(&c, br#"{"file":"x"}"#),
                Err(AdapterError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn broken_forms_are_the_clients_to_fix() {
        let c = form_call("audio.transcriptions", "whisper-1");
        let form = curl_form("file", b"RIFF", "whisper");
        assert!(matches!(
            OpenAi::prepare_request(&c, &form[..form.len() - 10]),
            Err(AdapterError::InvalidRequest(_))
        ));
        let mut c = c;
        c.headers = vec![("content-type".into(), "multipart/form-data".into())];
        assert!(matches!(
            OpenAi::prepare_request(&c, &form),
            Err(AdapterError::InvalidRequest(_))
        ));
    }

    #[test]
    fn transcript_answers_report_tokens_or_seconds() {
        let c = call("audio.transcriptions", "gpt-4o-transcribe", false);
        let t = OpenAi::parse_response(&c, &response(200, TRANSCRIPT_TOKENS)).unwrap();
        assert_eq!(t.body, TRANSCRIPT_TOKENS);
        let u = t.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (14, 45));
        assert!(u.units.is_empty());

        let c = call("audio.transcriptions", "whisper-1", false);
        let u = OpenAi::parse_response(&c, &response(200, TRANSCRIPT_DURATION))
            .unwrap()
            .usage
            .unwrap();
        assert_eq!((u.input_tokens, unit(&u, "seconds")), (0, Some(9)));

        let c = call("audio.translations", "whisper-1", false);
        let u = OpenAi::parse_response(&c, &response(200, TRANSCRIPT_VERBOSE))
            .unwrap()
            .usage
            .unwrap();
        assert_eq!(unit(&u, "seconds"), Some(9), "8.47 s rounds up");

        let u = OpenAi::parse_response(&c, &response(200, br#"{"text":"hi","duration":2.0}"#))
            .unwrap()
            .usage
            .unwrap();
        assert_eq!(unit(&u, "seconds"), Some(2));
        let t = OpenAi::parse_response(&c, &response(200, br#"{"text":"hi"}"#)).unwrap();
        assert_eq!(t.usage, None);
    }

    #[test]
    fn text_transcripts_pass_through_with_their_content_type() {
        let c = call("audio.transcriptions", "whisper-1", false);
        for (content_type, body) in [
            ("application/x-subrip", TRANSCRIPT_SRT),
            ("text/plain; charset=utf-8", &b"hello world\n"[..]),
            (
                "text/vtt",
                &b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nhello world\n"[..],
            ),
        ] {
            let mut r = response(200, body);
            r.headers = vec![("Content-Type".into(), content_type.into())];
            let t = OpenAi::parse_response(&c, &r).unwrap();
            assert_eq!(t.body, body);
            assert_eq!(t.content_type, content_type);
            assert_eq!(t.usage, None);
        }
        let mut r = response(200, b"hello");
        r.headers.clear();
        let t = OpenAi::parse_response(&c, &r).unwrap();
        assert_eq!(t.content_type, "text/plain; charset=utf-8");
    }

    #[test]
    fn speech_is_raw_and_billed_by_characters() {
        let mut c = call("audio.speech", "gpt-4o-mini-tts", false);
        c.channel.options = vec![("organization".into(), "org-1".into())];
        let req = OpenAi::prepare_request(&c, SPEECH_REQUEST).unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/audio/speech");
        assert_eq!(req.framing, Framing::Raw);
        assert_eq!(header(&req, "openai-organization"), Some("org-1"));
        let sent = body(&req);
        assert_eq!(sent["model"], "gpt-4o-mini-tts");
        assert_eq!(sent["voice"], "coral");
        let usage = req.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (0, 0));
        assert_eq!(
            usage.units,
            vec![(
                "characters".to_owned(),
                "Today is a wonderful day to build something people love!"
                    .chars()
                    .count() as u64
            )]
        );

        // Characters, not bytes.
        let req =
            OpenAi::prepare_request(&c, r#"{"input":"héllo 世界","voice":"alloy"}"#.as_bytes())
                .unwrap();
        assert_eq!(req.usage.unwrap().units[0].1, 8);

        for bad in [
            r#"{"model":"tts-1","voice":"alloy"}"#,
            r#"{"input":"","voice":"alloy"}"#,
            r#"{"input":null}"#,
            r#"{"input":["a"]}"#,
            "nope",
        ] {
            assert!(
                matches!(
                    OpenAi::prepare_request(&c, bad.as_bytes()),
                    Err(AdapterError::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn moderation_maps_a_given_model_and_leaves_a_missing_one_out() {
        let c = call("moderations", "omni-moderation-2024-09-26", false);
        let req = OpenAi::prepare_request(&c, MODERATION_REQUEST).unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/moderations");
        assert_eq!(body(&req)["model"], "omni-moderation-2024-09-26");
        let req = OpenAi::prepare_request(&c, br#"{"input":"hi"}"#).unwrap();
        assert!(body(&req).get("model").is_none());

        let t = OpenAi::parse_response(&c, &response(200, MODERATION_RESPONSE)).unwrap();
        assert_eq!(t.body, MODERATION_RESPONSE);
        assert_eq!(t.usage, None);
    }

    #[test]
    fn rerank_maps_the_model_and_reads_tokens_or_search_units() {
        let mut c = call("rerank", "jina-reranker-v2-base-multilingual", false);
        c.channel.base_url = "https://api.jina.ai".into();
        let req = OpenAi::prepare_request(&c, RERANK_REQUEST).unwrap();
        assert_eq!(req.url, "https://api.jina.ai/v1/rerank");
        let sent = body(&req);
        assert_eq!(sent["model"], "jina-reranker-v2-base-multilingual");
        assert_eq!(sent["top_n"], 3);
        assert_eq!(sent["documents"].as_array().unwrap().len(), 4);

        let t = OpenAi::parse_response(&c, &response(200, RERANK_JINA)).unwrap();
        assert_eq!(t.body, RERANK_JINA);
        assert_eq!(t.usage, Some(Usage::tokens(815, 0)));

        let u = OpenAi::parse_response(&c, &response(200, RERANK_COHERE))
            .unwrap()
            .usage
            .unwrap();
        assert_eq!((u.input_tokens, unit(&u, "searches")), (0, Some(1)));

        let t = OpenAi::parse_response(
            &c,
            &response(200, br#"{"results":[],"usage":{"prompt_tokens":7}}"#),
        )
        .unwrap();
        assert_eq!(t.usage, Some(Usage::tokens(7, 0)));
    }

    #[test]
    fn image_streams_pass_every_event_and_count_images() {
        let mut s = crate::OpenAiStream::new(call("images.generations", "gpt-image-1", true));
        let batch = s.push(sse_events(IMAGE_STREAM)).unwrap();
        assert_eq!(
            batch.chunks.len(),
            3,
            "partial images and the completed one"
        );
        let kinds: Vec<String> = batch
            .chunks
            .iter()
            .map(|c| {
                serde_json::from_slice::<Value>(c).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "image_generation.partial_image",
                "image_generation.partial_image",
                "image_generation.completed"
            ]
        );
        let u = batch.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (13, 4160));
        assert_eq!(unit(&u, "images"), Some(1));
    }

    #[test]
    fn transcript_streams_pass_every_event_with_usage() {
        let mut s =
            crate::OpenAiStream::new(call("audio.transcriptions", "gpt-4o-transcribe", true));
        let batch = s.push(sse_events(TRANSCRIPT_STREAM)).unwrap();
        assert_eq!(batch.chunks.len(), 4);
        assert_eq!(batch.usage, Some(Usage::tokens(14, 4)));
        assert!(
            s.push(sse_events(
                "data: {\"type\":\"error\",\"error\":{\"message\":\"bad audio\"}}\n\n"
            ))
            .is_err()
        );
        assert!(s.push(sse_events("data: [1]\n\n")).is_err());
        assert!(s.push(sse_events("data: [DONE]\n\n")).unwrap().done);
    }
}

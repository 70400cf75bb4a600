//! The rest of OpenAI's `/v1` surface: images, audio, moderations and
//! rerank. Each endpoint's parse phase checks what OpenAI checks, counts
//! what the call is billed by (prompt tokens, images, characters), and
//! hands the body to the channel's adapter as the client sent it — JSON,
//! or a multipart upload with its boundary.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Object, Probe, Prober, handle, input_tokens, missing, required_model};
use crate::AppState;
use crate::billing;
use crate::error::GatewayError;

/// The most images one call may ask for (OpenAI's limit).
const MAX_IMAGES: u64 = 10;
/// The longest speech input OpenAI accepts, in characters.
const MAX_SPEECH_INPUT: usize = 4096;

fn json_object(body: &[u8], fields: &str) -> Result<Object, GatewayError> {
    match super::parse_object(body, fields)? {
        Value::Object(obj) => Ok(obj),
        _ => Err(GatewayError::invalid(
            "The request body must be a JSON object.",
        )),
    }
}

/// A required non-empty string field.
fn text(obj: &Object, name: &str) -> Result<String, GatewayError> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        None | Some(Value::Null) => Err(missing(name)),
        Some(_) => Err(
            GatewayError::invalid(format!("`{name}` must be a non-empty string.")).with_param(name),
        ),
    }
}

/// The model, or OpenAI's default for the endpoint when the client named none.
fn model_or(obj: &Object, default: &str) -> Result<String, GatewayError> {
    match obj.get("model") {
        None | Some(Value::Null) => Ok(default.to_owned()),
        _ => required_model(obj),
    }
}

/// `n`, from a JSON number or a form field's text.
fn image_count(obj: &Object) -> Result<u64, GatewayError> {
    let n = match obj.get("n") {
        None | Some(Value::Null) => Some(1),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    n.filter(|n| (1..=MAX_IMAGES).contains(n)).ok_or_else(|| {
        GatewayError::invalid(format!(
            "`n` must be a whole number from 1 to {MAX_IMAGES}."
        ))
        .with_param("n")
    })
}

fn require_file(files: &[String], name: &str) -> Result<(), GatewayError> {
    if files
        .iter()
        .any(|f| f == name || f.starts_with(&format!("{name}[")))
    {
        Ok(())
    } else {
        Err(GatewayError::invalid(format!(
            "Missing required file: '{name}' (send it as a multipart file part)."
        ))
        .with_param(name)
        .with_code("missing_required_parameter"))
    }
}

fn images(endpoint: &'static str, model: String, obj: &Object) -> Result<Probe, GatewayError> {
    let n = image_count(obj)?;
    let prompt_tokens = obj
        .get("prompt")
        .and_then(Value::as_str)
        .map_or(0, |p| billing::tokens::count(&model, p));
    let mut probe = Probe::input_only(endpoint, model, prompt_tokens);
    probe.units = vec![("images".to_owned(), n)];
    probe.price_variant = image_variant(obj);
    Ok(probe)
}

/// An image request's price variant keys, most specific first:
/// `size/quality`, `size`, `quality`.
pub(crate) fn image_variant(obj: &Object) -> Vec<String> {
    let field = |name| {
        obj.get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty() && *v != "auto")
    };
    match (field("size"), field("quality")) {
        (Some(size), Some(quality)) => vec![
            format!("{size}/{quality}"),
            size.to_owned(),
            quality.to_owned(),
        ],
        (Some(one), None) | (None, Some(one)) => vec![one.to_owned()],
        (None, None) => Vec::new(),
    }
}

fn probe_image_generation(body: &[u8]) -> Result<Probe, GatewayError> {
    let obj = json_object(body, "`model` and `prompt`")?;
    text(&obj, "prompt")?;
    let model = model_or(&obj, "dall-e-2")?;
    let mut probe = images("images.generations", model, &obj)?;
    // GPT image models stream partial images as events.
    probe.stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    Ok(probe)
}

fn probe_image_edit(fields: &Object, files: &[String]) -> Result<Probe, GatewayError> {
    require_file(files, "image")?;
    text(fields, "prompt")?;
    let model = model_or(fields, "dall-e-2")?;
    images("images.edits", model, fields)
}

fn probe_image_variation(fields: &Object, files: &[String]) -> Result<Probe, GatewayError> {
    require_file(files, "image")?;
    let model = model_or(fields, "dall-e-2")?;
    images("images.variations", model, fields)
}

fn audio_upload(
    endpoint: &'static str,
    fields: &Object,
    files: &[String],
) -> Result<Probe, GatewayError> {
    require_file(files, "file")?;
    let model = required_model(fields)?;
    let prompt_tokens = fields
        .get("prompt")
        .and_then(Value::as_str)
        .map_or(0, |p| billing::tokens::count(&model, p));
    let mut probe = Probe::input_only(endpoint, model, prompt_tokens);
    // Form fields are text: `stream=true` asks for transcript events.
    probe.stream = fields.get("stream").and_then(Value::as_str) == Some("true");
    Ok(probe)
}

fn probe_transcription(fields: &Object, files: &[String]) -> Result<Probe, GatewayError> {
    audio_upload("audio.transcriptions", fields, files)
}

fn probe_translation(fields: &Object, files: &[String]) -> Result<Probe, GatewayError> {
    audio_upload("audio.translations", fields, files)
}

fn probe_speech(body: &[u8]) -> Result<Probe, GatewayError> {
    let obj = json_object(body, "`model`, `input` and `voice`")?;
    let model = required_model(&obj)?;
    let input = text(&obj, "input")?;
    text(&obj, "voice")?;
    let chars = input.chars().count();
    if chars > MAX_SPEECH_INPUT {
        return Err(GatewayError::invalid(format!(
            "`input` is {chars} characters; the limit is {MAX_SPEECH_INPUT}."
        ))
        .with_param("input"));
    }
    let mut probe = Probe::input_only("audio.speech", model, 0);
    probe.units = vec![("characters".to_owned(), chars as u64)];
    Ok(probe)
}

fn probe_moderation(body: &[u8]) -> Result<Probe, GatewayError> {
    let obj = json_object(body, "`input`")?;
    let model = model_or(&obj, "omni-moderation-latest")?;
    let input = obj.get("input").ok_or_else(|| missing("input"))?;
    let tokens = match input {
        // Multi-modal inputs: count the text parts.
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => items
            .iter()
            .filter_map(|i| i["text"].as_str())
            .map(|t| billing::tokens::count(&model, t))
            .sum(),
        other => input_tokens(&model, other).ok_or_else(|| {
            GatewayError::invalid(
                "`input` must be a string, an array of strings or of content parts.",
            )
            .with_param("input")
        })?,
    };
    Ok(Probe::input_only("moderations", model, tokens))
}

fn probe_rerank(body: &[u8]) -> Result<Probe, GatewayError> {
    let obj = json_object(body, "`model`, `query` and `documents`")?;
    let model = required_model(&obj)?;
    let query = text(&obj, "query")?;
    let documents = match obj.get("documents") {
        Some(Value::Array(d)) if !d.is_empty() => d,
        Some(_) => {
            return Err(
                GatewayError::invalid("`documents` must be a non-empty array.")
                    .with_param("documents"),
            );
        }
        None => return Err(missing("documents")),
    };
    let mut tokens = billing::tokens::count(&model, &query);
    for doc in documents {
        let text = match doc {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("text").and_then(Value::as_str).unwrap_or_default(),
            _ => {
                return Err(GatewayError::invalid(
                    "Each document must be a string or an object with `text`.",
                )
                .with_param("documents"));
            }
        };
        tokens += billing::tokens::count(&model, text);
    }
    Ok(Probe::input_only("rerank", model, tokens))
}

/// `POST /v1/images/generations`: relayed, or — when the model's channels
/// generate images only as tasks — answered with a task to poll at
/// `GET /v1/images/generations/{id}`.
pub async fn image_generations(State(app): State<AppState>, request: Request) -> Response {
    let connect_info = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .cloned();
    let (caller, headers, body) = match super::authenticated_body(&app, request).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let model = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "dall-e-2".to_owned());
    if crate::tasks::api::images_are_tasks(&app, &caller, &model) {
        return crate::tasks::api::create_image_task(&app, &caller, &headers, body).await;
    }
    let mut request = Request::new(axum::body::Body::from(body));
    *request.headers_mut() = headers;
    if let Some(ci) = connect_info {
        request.extensions_mut().insert(ci);
    }
    handle(app, request, Prober::Json(probe_image_generation)).await
}

/// `POST /v1/images/edits` (multipart)
pub async fn image_edits(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Form(probe_image_edit)).await
}

/// `POST /v1/images/variations` (multipart)
pub async fn image_variations(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Form(probe_image_variation)).await
}

/// `POST /v1/audio/transcriptions` (multipart)
pub async fn transcriptions(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Form(probe_transcription)).await
}

/// `POST /v1/audio/translations` (multipart)
pub async fn translations(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Form(probe_translation)).await
}

/// `POST /v1/audio/speech`: the audio streams back as the upstream sends it.
pub async fn speech(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Json(probe_speech)).await
}

/// `POST /v1/moderations`
pub async fn moderations(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Json(probe_moderation)).await
}

/// `POST /v1/rerank`
pub async fn rerank(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Json(probe_rerank)).await
}

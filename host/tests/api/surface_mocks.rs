//! Protocol mock of OpenAI's media and retrieval surface: images
//! (generations, edits, variations), audio (transcriptions, translations,
//! speech), moderations, and a Jina / Cohere-style rerank.
//!
//! Every route checks `Authorization: Bearer <key>` (401 `invalid_api_key`
//! otherwise), rejects what the real API rejects with a 400 in OpenAI's
//! error envelope, and records what it was sent.
//!
//! ```ignore
//! let mock = OpenAiSurfaceMock::start("sk-media").await;
//! // ... point a channel at mock.base_url(), call the gateway ...
//! assert_eq!(mock.last_path().as_deref(), Some("/v1/audio/transcriptions"));
//! let form = mock.last_form().unwrap(); // [(name, file name, bytes), ...]
//! mock.fail_next(503); // the next request answers 503
//! ```
//!
//! `POST /v1/audio/speech` answers [`speech_audio`] of the input as
//! `audio/mpeg`, streamed in several chunks with short pauses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

/// The text every transcription and translation answers.
pub const TRANSCRIPT: &str = "hello world";
/// The audio length `json` transcriptions report in `usage.seconds`.
pub const TRANSCRIPT_SECONDS: u64 = 3;
/// The length `verbose_json` transcriptions report in `duration`.
pub const VERBOSE_DURATION: f64 = 2.5;
/// `usage.total_tokens` of every rerank answer.
pub const RERANK_TOKENS: u64 = 42;
/// Size of a speech answer, in bytes.
pub const SPEECH_BYTES: usize = 64 * 1024;
/// Chunk size a speech answer is streamed in.
const SPEECH_CHUNK: usize = 8 * 1024;
/// The largest request body accepted (OpenAI takes 25 MB of audio and
/// 50 MB of images).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The moderation categories OpenAI's omni models score.
const CATEGORIES: &[&str] = &[
    "sexual",
    "sexual/minors",
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "violence",
    "violence/graphic",
];
/// Response formats of transcriptions and translations.
const TRANSCRIPT_FORMATS: &[&str] = &["json", "text", "srt", "verbose_json", "vtt"];

/// The bytes `POST /v1/audio/speech` answers for `input`: `ID3`, then the
/// input's bytes repeated, [`SPEECH_BYTES`] in all.
pub fn speech_audio(input: &str) -> Vec<u8> {
    let mut out = b"ID3".to_vec();
    let filler = if input.is_empty() { " " } else { input };
    out.extend(filler.bytes().cycle().take(SPEECH_BYTES - out.len()));
    out
}

/// One part of a multipart form as the mock read it: field name, file name
/// (for file parts) and content length in bytes.
pub type FormField = (String, Option<String>, usize);

/// What the latest request carried.
#[derive(Debug, Default, Clone)]
struct Seen {
    path: Option<String>,
    content_type: Option<String>,
    form: Option<Vec<FormField>>,
    json: Option<Value>,
}

struct SurfaceState {
    api_key: String,
    requests: AtomicUsize,
    seen: Mutex<Seen>,
    fail_next: Mutex<Option<u16>>,
}

/// Mock of OpenAI's image, audio, moderation and rerank endpoints.
pub struct OpenAiSurfaceMock {
    pub addr: SocketAddr,
    state: Arc<SurfaceState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OpenAiSurfaceMock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OpenAiSurfaceMock {
    /// Serve on a loopback port, accepting `api_key`.
    pub async fn start(api_key: &str) -> Self {
        let state = Arc::new(SurfaceState {
            api_key: api_key.to_owned(),
            requests: AtomicUsize::new(0),
            seen: Mutex::new(Seen::default()),
            fail_next: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/v1/images/generations", post(images_generations))
            .route("/v1/images/edits", post(images_edits))
            .route("/v1/images/variations", post(images_variations))
            .route("/v1/audio/transcriptions", post(audio_transcriptions))
            .route("/v1/audio/translations", post(audio_translations))
            .route("/v1/audio/speech", post(audio_speech))
            .route("/v1/moderations", post(moderations))
            .route("/v1/rerank", post(rerank))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            state,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received, answered or refused.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Path of the latest request.
    pub fn last_path(&self) -> Option<String> {
        self.seen().path
    }

    /// `content-type` of the latest request, boundary included.
    pub fn last_content_type(&self) -> Option<String> {
        self.seen().content_type
    }

    /// The parts of the latest request, if it was a readable multipart
    /// form: `(name, file name, bytes)` in order.
    pub fn last_form(&self) -> Option<Vec<FormField>> {
        self.seen().form
    }

    /// The body of the latest request, if it was JSON.
    pub fn last_json(&self) -> Option<Value> {
        self.seen().json
    }

    /// Answer the next request (whatever its route) with `status` in
    /// OpenAI's error envelope.
    pub fn fail_next(&self, status: u16) {
        *self.state.fail_next.lock().unwrap() = Some(status);
    }

    fn seen(&self) -> Seen {
        self.state.seen.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------
// Errors, auth and request reading shared by the routes
// ---------------------------------------------------------------------------

/// An answer in OpenAI's error envelope.
struct OpenAiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }})),
        )
            .into_response()
    }
}

/// A 400 `invalid_request_error` about `param`.
fn invalid(message: &str, param: Option<&'static str>, code: Option<&'static str>) -> OpenAiError {
    OpenAiError {
        status: StatusCode::BAD_REQUEST,
        message: message.to_owned(),
        kind: "invalid_request_error",
        param,
        code,
    }
}

fn missing(param: &'static str) -> OpenAiError {
    invalid(
        &format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

/// The error a scripted failure answers.
fn scripted(status: u16) -> OpenAiError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (message, kind, code) = match status.as_u16() {
        401 => (
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        429 => (
            "Rate limit reached for requests",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        s if s >= 500 => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        _ => (
            "The request was rejected (scripted failure).",
            "invalid_request_error",
            None,
        ),
    };
    OpenAiError {
        status,
        message: message.to_owned(),
        kind,
        param: None,
        code,
    }
}

/// A request body as read: a JSON object, or the parts of a form.
enum Incoming {
    Json(Map<String, Value>),
    Form(Vec<FormPart>),
}

struct FormPart {
    name: String,
    file_name: Option<String>,
    data: Bytes,
}

impl Incoming {
    fn form(&self) -> Option<&[FormPart]> {
        match self {
            Self::Form(parts) => Some(parts),
            Self::Json(_) => None,
        }
    }
}

/// Count and record the request, read its body, then apply a scripted
/// failure, the key check and the body's parse errors, in that order.
/// JSON bodies must be objects; forms are read with axum's `Multipart`.
async fn receive(state: &SurfaceState, request: Request) -> Result<Incoming, OpenAiError> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    *state.seen.lock().unwrap() = Seen {
        path: Some(request.uri().path().to_owned()),
        content_type: content_type.clone(),
        form: None,
        json: None,
    };
    let is_form = content_type
        .as_deref()
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    let body = if is_form {
        read_form(request).await.map(Incoming::Form)
    } else {
        read_json(request).await.map(Incoming::Json)
    };
    {
        let mut seen = state.seen.lock().unwrap();
        match &body {
            Ok(Incoming::Form(parts)) => {
                seen.form = Some(
                    parts
                        .iter()
                        .map(|p| (p.name.clone(), p.file_name.clone(), p.data.len()))
                        .collect(),
                );
            }
            Ok(Incoming::Json(map)) => seen.json = Some(Value::Object(map.clone())),
            Err(_) => {}
        }
    }
    if let Some(status) = state.fail_next.lock().unwrap().take() {
        return Err(scripted(status));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(state.api_key.as_str()) {
        return Err(OpenAiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.".to_owned(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        });
    }
    body
}

async fn read_form(request: Request) -> Result<Vec<FormPart>, OpenAiError> {
    let bad = |e: &dyn std::fmt::Display| {
        invalid(&format!("Could not parse multipart form: {e}"), None, None)
    };
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(&e))?;
    let mut parts = Vec::new();
    while let Some(field) = form.next_field().await.map_err(|e| bad(&e))? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let data = field.bytes().await.map_err(|e| bad(&e))?;
        parts.push(FormPart {
            name,
            file_name,
            data,
        });
    }
    Ok(parts)
}

async fn read_json(request: Request) -> Result<Map<String, Value>, OpenAiError> {
    let unreadable = || {
        invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
            None,
        )
    };
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|_| unreadable())?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(unreadable()),
    }
}

/// The JSON body of a JSON-only route.
fn expect_json(incoming: Incoming) -> Result<Map<String, Value>, OpenAiError> {
    match incoming {
        Incoming::Json(map) => Ok(map),
        Incoming::Form(_) => Err(invalid(
            "Unsupported content type: 'multipart/form-data'. This API method only accepts 'application/json' requests.",
            None,
            Some("unsupported_content_type"),
        )),
    }
}

/// The form of a form-only route.
fn expect_form(incoming: &Incoming) -> Result<&[FormPart], OpenAiError> {
    incoming.form().ok_or_else(|| {
        invalid(
            "Invalid Content-Type header (application/json), expected multipart/form-data.",
            None,
            Some("invalid_content_type"),
        )
    })
}

/// A non-empty string field of a JSON body.
fn required_str<'a>(
    body: &'a Map<String, Value>,
    param: &'static str,
) -> Result<&'a str, OpenAiError> {
    match body.get(param) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) => Err(missing(param)),
        Some(Value::String(_)) => Err(invalid(
            &format!(
                "Invalid '{param}': string too short. Expected a string with minimum length 1, but got an empty string instead."
            ),
            Some(param),
            Some("string_below_min_length"),
        )),
        Some(_) => Err(invalid(
            &format!("Invalid type for '{param}': expected a string."),
            Some(param),
            Some("invalid_type"),
        )),
    }
}

/// The text of form field `name`, if present.
fn form_text<'a>(parts: &'a [FormPart], name: &str) -> Option<&'a str> {
    parts
        .iter()
        .find(|p| p.name == name && p.file_name.is_none())
        .and_then(|p| std::str::from_utf8(&p.data).ok())
}

/// The first file part whose name is one of `names`.
fn form_file<'a>(parts: &'a [FormPart], names: &[&str]) -> Option<&'a FormPart> {
    parts
        .iter()
        .find(|p| names.contains(&p.name.as_str()) && p.file_name.is_some())
}

/// `n`: 1 to 10 images, 1 by default; `raw` is the JSON value or the form
/// field's text.
fn image_count(raw: Option<Value>) -> Result<usize, OpenAiError> {
    let n = match raw {
        None | Some(Value::Null) => return Ok(1),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n @ 1..=10) => Ok(n as usize),
        Some(n) if n > 10 => Err(invalid(
            &format!("{n} is greater than the maximum of 10 - 'n'"),
            Some("n"),
            Some("integer_above_max_value"),
        )),
        _ => Err(invalid(
            "Invalid value for 'n': expected an integer between 1 and 10.",
            Some("n"),
            Some("invalid_value"),
        )),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn image_data(n: usize) -> Value {
    (0..n)
        .map(|i| json!({"url": format!("https://img.test/{i}.png")}))
        .collect()
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

/// `POST /v1/images/generations`: JSON, `prompt` required, `n` 1 to 10.
async fn images_generations(State(state): State<Arc<SurfaceState>>, request: Request) -> Response {
    let answer = async {
        let body = expect_json(receive(&state, request).await?)?;
        required_str(&body, "prompt")?;
        let n = image_count(body.get("n").cloned())?;
        Ok::<_, OpenAiError>(Json(json!({
            "created": unix_now(),
            "data": image_data(n),
            "usage": {
                "input_tokens": 10,
                "output_tokens": 100,
                "total_tokens": 110,
                "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}
            }
        })))
    };
    answer.await.into_response()
}

/// `POST /v1/images/edits` (`image` or `image[]` files and `prompt`) and
/// `/v1/images/variations` (an `image` file).
async fn image_form(state: &SurfaceState, request: Request, edit: bool) -> Response {
    let answer = async {
        let incoming = receive(state, request).await?;
        let parts = expect_form(&incoming)?;
        let image_fields: &[&str] = if edit {
            &["image", "image[]"]
        } else {
            &["image"]
        };
        if form_file(parts, image_fields).is_none() {
            return Err(missing("image"));
        }
        if edit && form_text(parts, "prompt").is_none_or(str::is_empty) {
            return Err(missing("prompt"));
        }
        let n = image_count(form_text(parts, "n").map(|s| Value::String(s.to_owned())))?;
        Ok(Json(json!({"created": unix_now(), "data": image_data(n)})))
    };
    answer.await.into_response()
}

async fn images_edits(State(state): State<Arc<SurfaceState>>, request: Request) -> Response {
    image_form(&state, request, true).await
}

async fn images_variations(State(state): State<Arc<SurfaceState>>, request: Request) -> Response {
    image_form(&state, request, false).await
}

// ---------------------------------------------------------------------------
// Audio
// ---------------------------------------------------------------------------

/// `POST /v1/audio/transcriptions` and `/translations`: a WAV `file` and a
/// `model`; answers by `response_format`.
async fn transcript(state: &SurfaceState, request: Request, task: &str) -> Response {
    let answer = async {
        let incoming = receive(state, request).await?;
        let parts = expect_form(&incoming)?;
        let file = form_file(parts, &["file"]).ok_or_else(|| missing("file"))?;
        if form_text(parts, "model").is_none_or(str::is_empty) {
            return Err(invalid(
                "you must provide a model parameter",
                Some("model"),
                None,
            ));
        }
        let wav = file.data.starts_with(b"RIFF") && file.data.get(8..12) == Some(&b"WAVE"[..]);
        if !wav {
            return Err(invalid(
                "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']",
                Some("file"),
                Some("invalid_value"),
            ));
        }
        let format = form_text(parts, "response_format").unwrap_or("json");
        if !TRANSCRIPT_FORMATS.contains(&format) {
            return Err(invalid(
                &format!(
                    "Invalid value: '{format}'. Supported values are: 'json', 'text', 'srt', 'verbose_json', and 'vtt'."
                ),
                Some("response_format"),
                Some("invalid_value"),
            ));
        }
        Ok(match format {
            "text" => text_answer("text/plain; charset=utf-8", format!("{TRANSCRIPT}\n")),
            "srt" => text_answer(
                "text/plain; charset=utf-8",
                format!("1\n00:00:00,000 --> 00:00:02,500\n{TRANSCRIPT}\n\n"),
            ),
            "vtt" => text_answer(
                "text/plain; charset=utf-8",
                format!("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n{TRANSCRIPT}\n\n"),
            ),
            "verbose_json" => Json(json!({
                "task": task,
                "language": "english",
                "duration": VERBOSE_DURATION,
                "text": TRANSCRIPT,
                "segments": []
            }))
            .into_response(),
            _ => Json(json!({
                "text": TRANSCRIPT,
                "usage": {"type": "duration", "seconds": TRANSCRIPT_SECONDS}
            }))
            .into_response(),
        })
    };
    answer.await.into_response()
}

fn text_answer(content_type: &'static str, text: String) -> Response {
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn audio_transcriptions(
    State(state): State<Arc<SurfaceState>>,
    request: Request,
) -> Response {
    transcript(&state, request, "transcribe").await
}

async fn audio_translations(State(state): State<Arc<SurfaceState>>, request: Request) -> Response {
    transcript(&state, request, "translate").await
}

/// `POST /v1/audio/speech`: JSON with `model`, `input` (at most 4096
/// characters) and `voice`; answers [`speech_audio`] as `audio/mpeg` in
/// [`SPEECH_CHUNK`]-byte chunks, 5 ms apart.
async fn audio_speech(State(state): State<Arc<SurfaceState>>, request: Request) -> Response {
    let answer = async {
        let body = expect_json(receive(&state, request).await?)?;
        required_str(&body, "model")?;
        let input = required_str(&body, "input")?;
        required_str(&body, "voice")?;
        if input.chars().count() > 4096 {
            return Err(invalid(
                "Invalid 'input': string too long. Expected a string with maximum length 4096.",
                Some("input"),
                Some("string_above_max_length"),
            ));
        }
        let audio = speech_audio(input);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        tokio::spawn(async move {
            for chunk in audio.chunks(SPEECH_CHUNK) {
                if tx.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Ok(Response::builder()
            .header(header::CONTENT_TYPE, "audio/mpeg")
            .body(Body::from_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .unwrap())
    };
    answer.await.into_response()
}

// ---------------------------------------------------------------------------
// Moderations and rerank
// ---------------------------------------------------------------------------

/// `POST /v1/moderations`: `input` a string or a non-empty array; one
/// unflagged result per input.
async fn moderations(State(state): State<Arc<SurfaceState>>, request: Request) -> Response {
    let answer = async {
        let body = expect_json(receive(&state, request).await?)?;
        let inputs = match body.get("input") {
            None | Some(Value::Null) => return Err(missing("input")),
            Some(Value::String(_)) => 1,
            Some(Value::Array(items)) if !items.is_empty() => items.len(),
            Some(Value::Array(_)) => {
                return Err(invalid(
                    "Invalid 'input': empty array. Expected an array with minimum length 1.",
                    Some("input"),
                    Some("empty_array"),
                ));
            }
            Some(_) => {
                return Err(invalid(
                    "Invalid type for 'input': expected a string or an array.",
                    Some("input"),
                    Some("invalid_type"),
                ));
            }
        };
        let categories: Map<String, Value> = CATEGORIES
            .iter()
            .map(|c| ((*c).to_owned(), Value::Bool(false)))
            .collect();
        let scores: Map<String, Value> = CATEGORIES
            .iter()
            .map(|c| ((*c).to_owned(), json!(0.0001)))
            .collect();
        let result = json!({
            "flagged": false,
            "categories": categories,
            "category_scores": scores,
        });
        Ok(Json(json!({
            "id": "modr-1",
            "model": "omni-moderation-latest",
            "results": vec![result; inputs],
        })))
    };
    answer.await.into_response()
}

/// `POST /v1/rerank`: `model`, `query` and a non-empty `documents` (strings
/// or `{"text": …}`); results sorted by a word-overlap score, cut to
/// `top_n`.
async fn rerank(State(state): State<Arc<SurfaceState>>, request: Request) -> Response {
    let answer = async {
        let body = expect_json(receive(&state, request).await?)?;
        let model = required_str(&body, "model")?.to_owned();
        let query = required_str(&body, "query")?;
        let documents = match body.get("documents") {
            None | Some(Value::Null) => return Err(missing("documents")),
            Some(Value::Array(d)) if !d.is_empty() => d,
            Some(_) => {
                return Err(invalid(
                    "Invalid 'documents': expected a non-empty array.",
                    Some("documents"),
                    Some("invalid_value"),
                ));
            }
        };
        let top_n = match body.get("top_n") {
            None | Some(Value::Null) => documents.len(),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => (n as usize).min(documents.len()),
                _ => {
                    return Err(invalid(
                        "Invalid 'top_n': expected a positive integer.",
                        Some("top_n"),
                        Some("invalid_value"),
                    ));
                }
            },
        };
        let words = |text: &str| -> Vec<String> {
            text.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect()
        };
        let query_words = words(query);
        let mut results = Vec::with_capacity(documents.len());
        for (index, doc) in documents.iter().enumerate() {
            let text = match doc {
                Value::String(s) => s.as_str(),
                Value::Object(o) => o.get("text").and_then(Value::as_str).unwrap_or(""),
                _ => {
                    return Err(invalid(
                        "Invalid 'documents': each document must be a string or an object with 'text'.",
                        Some("documents"),
                        Some("invalid_type"),
                    ));
                }
            };
            let doc_words = words(text);
            let shared = query_words.iter().filter(|w| doc_words.contains(w)).count();
            // Overlap first; earlier documents break ties.
            let score = shared as f64 / (query_words.len().max(1) as f64) * 0.9
                + 0.05 / (index as f64 + 1.0);
            results.push((index, score));
        }
        results.sort_by(|a, b| b.1.total_cmp(&a.1));
        results.truncate(top_n);
        Ok(Json(json!({
            "model": model,
            "results": results
                .iter()
                .map(|(index, score)| json!({"index": index, "relevance_score": score}))
                .collect::<Vec<_>>(),
            "usage": {"total_tokens": RERANK_TOKENS}
        })))
    };
    answer.await.into_response()
}

// ---------------------------------------------------------------------------
// Sanity checks of the mock
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        transit::init_tls();
        reqwest::Client::new()
    }

    /// A minimal WAV header and a little silence.
    fn wav() -> Vec<u8> {
        let mut out = b"RIFF\x2c\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data\x08\0\0\0".to_vec();
        out.extend_from_slice(&[0; 8]);
        out
    }

    async fn error_of(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap()["error"].clone(),
        )
    }

    #[tokio::test]
    async fn images_check_key_and_prompt_and_scripted_failures() {
        let mock = OpenAiSurfaceMock::start("sk-m").await;
        let http = client();
        let url = format!("{}/v1/images/generations", mock.base_url());

        let r = http
            .post(&url)
            .bearer_auth("sk-wrong")
            .json(&json!({"prompt": "a cat"}))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(r).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (401, Some("invalid_api_key"))
        );

        let r = http
            .post(&url)
            .bearer_auth("sk-m")
            .json(&json!({"model": "gpt-image-1"}))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(r).await;
        assert_eq!((status, err["param"].as_str()), (400, Some("prompt")));

        let ok: Value = http
            .post(&url)
            .bearer_auth("sk-m")
            .json(&json!({"model": "gpt-image-1", "prompt": "a cat", "n": 3}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ok["data"].as_array().unwrap().len(), 3);
        assert_eq!(ok["data"][2]["url"], "https://img.test/2.png");
        assert_eq!(ok["usage"]["total_tokens"], 110);
        assert_eq!(mock.last_json().unwrap()["n"], 3);
        assert_eq!(mock.last_path().as_deref(), Some("/v1/images/generations"));

        mock.fail_next(503);
        let r = http
            .post(&url)
            .bearer_auth("sk-m")
            .json(&json!({"prompt": "a cat"}))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(r).await;
        assert_eq!((status, err["type"].as_str()), (503, Some("server_error")));
        let r = http
            .post(&url)
            .bearer_auth("sk-m")
            .json(&json!({"prompt": "a cat"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "a failure is scripted once");
        assert_eq!(mock.requests(), 5);

        let form = reqwest::multipart::Form::new()
            .text("prompt", "add a hat")
            .text("n", "2")
            .part(
                "image",
                reqwest::multipart::Part::bytes(b"\x89PNG".to_vec()).file_name("cat.png"),
            );
        let ok: Value = http
            .post(format!("{}/v1/images/edits", mock.base_url()))
            .bearer_auth("sk-m")
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ok["data"].as_array().unwrap().len(), 2);
        let form = mock.last_form().unwrap();
        assert!(form.contains(&("image".to_owned(), Some("cat.png".to_owned()), 4)));
        assert!(
            mock.last_content_type()
                .unwrap()
                .starts_with("multipart/form-data; boundary=")
        );
        let r = http
            .post(format!("{}/v1/images/variations", mock.base_url()))
            .bearer_auth("sk-m")
            .multipart(reqwest::multipart::Form::new().text("n", "1"))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(r).await;
        assert_eq!((status, err["param"].as_str()), (400, Some("image")));
    }

    #[tokio::test]
    async fn transcriptions_check_the_file_and_answer_each_format() {
        let mock = OpenAiSurfaceMock::start("sk-m").await;
        let http = client();
        let url = format!("{}/v1/audio/transcriptions", mock.base_url());
        let send = |file: Vec<u8>, format: Option<&str>| {
            let mut form = reqwest::multipart::Form::new()
                .text("model", "whisper-1")
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(file).file_name("speech.wav"),
                );
            if let Some(f) = format {
                form = form.text("response_format", f.to_owned());
            }
            http.post(&url).bearer_auth("sk-m").multipart(form).send()
        };

        let json: Value = send(wav(), None).await.unwrap().json().await.unwrap();
        assert_eq!(json["text"], TRANSCRIPT);
        assert_eq!(json["usage"]["type"], "duration");
        assert_eq!(json["usage"]["seconds"], TRANSCRIPT_SECONDS);
        assert_eq!(
            mock.last_form().unwrap(),
            vec![
                ("model".to_owned(), None, 9),
                (
                    "file".to_owned(),
                    Some("speech.wav".to_owned()),
                    wav().len()
                )
            ]
        );

        let r = send(wav(), Some("text")).await.unwrap();
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(r.text().await.unwrap().trim(), TRANSCRIPT);

        let verbose: Value = send(wav(), Some("verbose_json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(verbose["duration"], VERBOSE_DURATION);
        assert_eq!(verbose["task"], "transcribe");

        let (status, err) = error_of(send(b"ID3 not a wav".to_vec(), None).await.unwrap()).await;
        assert_eq!(status, 400);
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid file format.")
        );

        let r = http
            .post(format!("{}/v1/audio/translations", mock.base_url()))
            .bearer_auth("sk-m")
            .multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(wav()).file_name("a.wav"),
            ))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(r).await;
        assert_eq!((status, err["param"].as_str()), (400, Some("model")));
    }

    #[tokio::test]
    async fn speech_streams_audio_and_json_routes_validate() {
        let mock = OpenAiSurfaceMock::start("sk-m").await;
        let http = client();
        let base = mock.base_url();

        let r = http
            .post(format!("{base}/v1/audio/speech"))
            .bearer_auth("sk-m")
            .json(&json!({"model": "tts-1", "input": "Hello there.", "voice": "alloy"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "audio/mpeg");
        let mut chunks = 0;
        let mut audio = Vec::new();
        let mut stream = r.bytes_stream();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            chunks += 1;
            audio.extend_from_slice(&chunk.unwrap());
        }
        assert!(chunks > 1, "the audio arrives in pieces");
        assert_eq!(audio, speech_audio("Hello there."));
        assert_eq!(audio.len(), SPEECH_BYTES);
        assert!(audio.starts_with(b"ID3Hello there.Hello"));

        let r = http
            .post(format!("{base}/v1/audio/speech"))
            .bearer_auth("sk-m")
            .json(&json!({"model": "tts-1", "input": "Hi"}))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(r).await;
        assert_eq!((status, err["param"].as_str()), (400, Some("voice")));

        let moderated: Value = http
            .post(format!("{base}/v1/moderations"))
            .bearer_auth("sk-m")
            .json(&json!({"input": ["one", "two"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(moderated["results"].as_array().unwrap().len(), 2);
        assert_eq!(moderated["results"][1]["flagged"], false);
        assert_eq!(moderated["results"][0]["categories"]["violence"], false);

        let reranked: Value = http
            .post(format!("{base}/v1/rerank"))
            .bearer_auth("sk-m")
            .json(&json!({
                "model": "jina-reranker-v2",
                "query": "sea otter",
                "documents": ["a cat", {"text": "the sea otter floats"}, "the sea"],
                "top_n": 2
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let results = reranked["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(
            (results[0]["index"].as_u64(), results[1]["index"].as_u64()),
            (Some(1), Some(2))
        );
        assert!(results[0]["relevance_score"].as_f64() > results[1]["relevance_score"].as_f64());
        assert_eq!(reranked["usage"]["total_tokens"], RERANK_TOKENS);

        let r = http
            .post(format!("{base}/v1/rerank"))
            .bearer_auth("sk-m")
            .json(&json!({"model": "m", "query": "q", "documents": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
}

//! Protocol mocks of the asynchronous task providers: OpenAI's Videos API,
//! APIMart and Kling. Each speaks its provider's wire format (paths,
//! envelopes, status names, error codes, auth), rejects what the real API
//! rejects, keeps a task table, and moves tasks along a scripted
//! [`Outcome`] as they are polled.
//!
//! ```ignore
//! let mock = KlingMock::start("ak-1", "sk-1").await; // channel key "ak-1|sk-1"
//! mock.set(Outcome::SucceedAfter(2));
//! // ... submit through the gateway, wait ...
//! assert_eq!((mock.submits(), mock.polls()), (1, 2));
//! ```
//!
//! Finished APIMart and Kling tasks point at `{base_url}/files/…`, which the
//! mock serves without credentials, as a CDN would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// The script shared by every mock
// ---------------------------------------------------------------------------

/// How a mock treats the tasks it is given. Read at every poll, so a test
/// may change it while tasks run (a task that has ended stays ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Queued at the first poll, then in progress; finished with results
    /// from poll `n` on (the first poll when `n` is 0 or 1).
    SucceedAfter(u32),
    /// The same, but the task fails at poll `n` with the provider's failure
    /// message.
    FailAfter(u32),
    /// The task stays in progress forever.
    Never,
    /// Submits are refused with a 4xx in the provider's error envelope.
    RejectSubmit,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Queued,
    Running(u8),
    Succeeded,
    Failed,
}

/// One task the mock accepted.
#[derive(Debug, Clone)]
struct Job {
    /// What kind of task, in the provider's terms ("video", "images",
    /// "text2video", ...).
    kind: &'static str,
    /// The request, as the provider keeps it (normalised fields).
    params: Value,
    /// Unix milliseconds.
    created_ms: u64,
}

#[derive(Debug)]
struct Entry {
    job: Job,
    polls: u32,
    ended: Option<Stage>,
}

/// The task table, the scripted outcome and the counters of one mock.
#[derive(Debug)]
pub struct Script {
    base_url: String,
    outcome: Mutex<Outcome>,
    tasks: Mutex<HashMap<String, Entry>>,
    submits: AtomicUsize,
    polls: AtomicUsize,
    last_submit: Mutex<Option<Value>>,
}

impl Script {
    fn new(addr: SocketAddr) -> Self {
        Self {
            base_url: format!("http://{addr}"),
            outcome: Mutex::new(Outcome::SucceedAfter(1)),
            tasks: Mutex::new(HashMap::new()),
            submits: AtomicUsize::new(0),
            polls: AtomicUsize::new(0),
            last_submit: Mutex::new(None),
        }
    }

    /// Count a submit request and remember what it asked for.
    fn record_submit(&self, request: &Value) {
        self.submits.fetch_add(1, Ordering::SeqCst);
        *self.last_submit.lock().unwrap() = Some(request.clone());
    }

    fn outcome(&self) -> Outcome {
        *self.outcome.lock().unwrap()
    }

    fn create(&self, id: &str, job: Job) {
        self.tasks.lock().unwrap().insert(
            id.to_owned(),
            Entry {
                job,
                polls: 0,
                ended: None,
            },
        );
    }

    /// A poll of task `id`: it moves one step along the current outcome.
    /// `None` for an unknown task.
    fn poll(&self, id: &str) -> Option<(Stage, Job)> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let outcome = self.outcome();
        let mut tasks = self.tasks.lock().unwrap();
        let entry = tasks.get_mut(id)?;
        if let Some(ended) = entry.ended {
            return Some((ended, entry.job.clone()));
        }
        entry.polls += 1;
        let k = entry.polls;
        let stage = match outcome {
            Outcome::SucceedAfter(n) if k >= n => Stage::Succeeded,
            Outcome::FailAfter(n) if k >= n => Stage::Failed,
            _ if k == 1 => Stage::Queued,
            Outcome::SucceedAfter(n) | Outcome::FailAfter(n) => {
                Stage::Running((k * 100 / n.max(1)).min(99) as u8)
            }
            Outcome::Never | Outcome::RejectSubmit => Stage::Running((k * 10).min(90) as u8),
        };
        if matches!(stage, Stage::Succeeded | Stage::Failed) {
            entry.ended = Some(stage);
        }
        Some((stage, entry.job.clone()))
    }

    /// Where task `id` stands, without polling it.
    fn peek(&self, id: &str) -> Option<(Stage, Job)> {
        let tasks = self.tasks.lock().unwrap();
        let entry = tasks.get(id)?;
        let stage = entry.ended.unwrap_or(if entry.polls == 0 {
            Stage::Queued
        } else {
            Stage::Running(50)
        });
        Some((stage, entry.job.clone()))
    }
}

/// A running mock: `S` is its provider's state.
pub struct TaskMock<S> {
    pub addr: SocketAddr,
    state: Arc<S>,
    server: tokio::task::JoinHandle<()>,
}

impl<S> Drop for TaskMock<S> {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl<S: AsRef<Script>> TaskMock<S> {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Script what happens to tasks from now on.
    pub fn set(&self, outcome: Outcome) {
        *self.state.as_ref().as_ref().outcome.lock().unwrap() = outcome;
    }

    /// Submit requests received (accepted or not).
    pub fn submits(&self) -> usize {
        self.state.as_ref().as_ref().submits.load(Ordering::SeqCst)
    }

    /// Authenticated poll requests received (known task or not).
    pub fn polls(&self) -> usize {
        self.state.as_ref().as_ref().polls.load(Ordering::SeqCst)
    }

    /// The body of the latest submit request (a multipart form as an object
    /// of its text fields), as the mock read it.
    pub fn last_submit(&self) -> Option<Value> {
        self.state
            .as_ref()
            .as_ref()
            .last_submit
            .lock()
            .unwrap()
            .clone()
    }

    /// Tasks created.
    pub fn tasks(&self) -> usize {
        self.state.as_ref().as_ref().tasks.lock().unwrap().len()
    }
}

/// Bind a loopback port, build the state that needs its address, serve.
async fn spawn<S: Send + Sync + 'static>(
    state: impl FnOnce(SocketAddr) -> S,
    router: impl FnOnce(Arc<S>) -> axum::Router,
) -> TaskMock<S> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(state(addr));
    let app = router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TaskMock {
        addr,
        state,
        server,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `GET /files/{name}`: the public result URLs of APIMart and Kling.
async fn serve_file(Path(name): Path<String>) -> Response {
    let content_type = if name.ends_with(".mp4") {
        "video/mp4"
    } else {
        "image/png"
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        format!("FILE-BYTES-{name}"),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// OpenAI Videos API
// ---------------------------------------------------------------------------

const SORA_SECONDS: &[&str] = &["4", "8", "12"];
const SORA_SIZES: &[&str] = &["720x1280", "1280x720", "1024x1792", "1792x1024"];

pub struct OpenAiVideosState {
    script: Script,
    api_key: String,
}

impl AsRef<Script> for OpenAiVideosState {
    fn as_ref(&self) -> &Script {
        &self.script
    }
}

/// `POST /v1/videos` (JSON, or a multipart form with `input_reference` as a
/// file), `GET /v1/videos/{id}`, `GET /v1/videos/{id}/content?variant=…`
/// (`MP4-BYTES-{id}` as `video/mp4` once completed). Rejects a wrong bearer
/// key (401 `invalid_api_key`), a missing prompt, a `seconds` that is not
/// one of the strings "4", "8", "12" (a JSON number included), an unknown
/// `size`, and unknown video ids (404).
pub type OpenAiVideosMock = TaskMock<OpenAiVideosState>;

impl OpenAiVideosMock {
    pub async fn start(api_key: &str) -> Self {
        let api_key = api_key.to_owned();
        spawn(
            |addr| OpenAiVideosState {
                script: Script::new(addr),
                api_key,
            },
            |state| {
                axum::Router::new()
                    .route("/v1/videos", post(openai_create))
                    .route("/v1/videos/{id}", get(openai_retrieve))
                    .route("/v1/videos/{id}/content", get(openai_content))
                    .with_state(state)
            },
        )
        .await
    }
}

/// An error answer in OpenAI's envelope.
struct OpenAiError {
    status: StatusCode,
    message: String,
    param: Option<&'static str>,
    code: &'static str,
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }})),
        )
            .into_response()
    }
}

fn openai_error(
    status: StatusCode,
    message: &str,
    param: Option<&'static str>,
    code: &'static str,
) -> OpenAiError {
    OpenAiError {
        status,
        message: message.to_owned(),
        param,
        code,
    }
}

fn openai_authorized(state: &OpenAiVideosState, headers: &HeaderMap) -> Result<(), OpenAiError> {
    if bearer(headers) == Some(state.api_key.as_str()) {
        Ok(())
    } else {
        Err(openai_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            None,
            "invalid_api_key",
        ))
    }
}

/// The create body as an object: JSON as sent, or a form's text fields.
async fn openai_read_create(request: Request) -> Result<Map<String, Value>, OpenAiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let bad =
        |message: &str| openai_error(StatusCode::BAD_REQUEST, message, None, "invalid_request");
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|e| bad(&format!("Could not parse multipart form: {e}")))?;
        let mut fields = Map::new();
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| bad(&format!("Could not parse multipart form: {e}")))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            let is_file = field.file_name().is_some();
            let data = field
                .bytes()
                .await
                .map_err(|e| bad(&format!("Could not parse multipart form: {e}")))?;
            let value = if is_file {
                json!({"file_bytes": data.len()})
            } else {
                Value::String(String::from_utf8_lossy(&data).into_owned())
            };
            fields.insert(name, value);
        }
        return Ok(fields);
    }
    if !content_type.starts_with("application/json") {
        return Err(bad(
            "Unsupported content type: send application/json or multipart/form-data.",
        ));
    }
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|e| bad(&e.to_string()))?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.",
        )),
    }
}

/// What the Videos API checks before accepting a create.
fn openai_validate(body: &Map<String, Value>) -> Result<(), OpenAiError> {
    let invalid = |message: &str, param: &'static str, code: &'static str| {
        openai_error(StatusCode::BAD_REQUEST, message, Some(param), code)
    };
    match body.get("prompt") {
        Some(Value::String(p)) if !p.trim().is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(invalid(
                "Missing required parameter: 'prompt'.",
                "prompt",
                "missing_required_parameter",
            ));
        }
        Some(_) => {
            return Err(invalid(
                "Invalid type for 'prompt': expected a string.",
                "prompt",
                "invalid_type",
            ));
        }
    }
    if let Some(model) = body.get("model")
        && !model.is_string()
    {
        return Err(invalid(
            "Invalid type for 'model': expected a string.",
            "model",
            "invalid_type",
        ));
    }
    match body.get("seconds") {
        None => {}
        Some(Value::String(s)) if SORA_SECONDS.contains(&s.as_str()) => {}
        Some(Value::String(s)) => {
            return Err(invalid(
                &format!("Invalid value: '{s}'. Supported values are: '4', '8', and '12'."),
                "seconds",
                "invalid_value",
            ));
        }
        Some(other) => {
            return Err(invalid(
                &format!(
                    "Invalid type for 'seconds': expected one of '4', '8', or '12', but got {} instead.",
                    json_kind(other)
                ),
                "seconds",
                "invalid_type",
            ));
        }
    }
    match body.get("size") {
        None => {}
        Some(Value::String(s)) if SORA_SIZES.contains(&s.as_str()) => {}
        Some(other) => {
            return Err(invalid(
                &format!(
                    "Invalid value for 'size': {other}. Supported values are: '720x1280', '1280x720', '1024x1792', and '1792x1024'."
                ),
                "size",
                "invalid_value",
            ));
        }
    }
    if let Some(reference) = body.get("input_reference") {
        let ok = match reference {
            // A form's file part.
            Value::Object(r) if r.contains_key("file_bytes") => true,
            Value::Object(r) => {
                r.get("image_url").is_some_and(Value::is_string)
                    ^ r.get("file_id").is_some_and(Value::is_string)
            }
            _ => false,
        };
        if !ok {
            return Err(invalid(
                "Invalid 'input_reference': provide exactly one of 'image_url' or 'file_id'.",
                "input_reference",
                "invalid_value",
            ));
        }
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The Video object of task `id` at `stage`.
fn openai_video(id: &str, stage: Stage, job: &Job) -> Value {
    let p = &job.params;
    let (status, progress) = match stage {
        Stage::Queued => ("queued", 0),
        Stage::Running(p) => ("in_progress", p),
        Stage::Succeeded => ("completed", 100),
        Stage::Failed => ("failed", 0),
    };
    let created = job.created_ms / 1000;
    let done = matches!(stage, Stage::Succeeded);
    json!({
        "id": id,
        "object": "video",
        "model": p["model"],
        "status": status,
        "progress": progress,
        "created_at": created,
        "completed_at": if done { json!(created + 60) } else { Value::Null },
        "expires_at": if done { json!(created + 60 + 86_400) } else { Value::Null },
        "prompt": p["prompt"],
        "size": p["size"],
        "seconds": p["seconds"],
        "remixed_from_video_id": null,
        "error": if stage == Stage::Failed {
            json!({"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."})
        } else {
            Value::Null
        },
    })
}

async fn openai_create(State(state): State<Arc<OpenAiVideosState>>, request: Request) -> Response {
    let headers = request.headers().clone();
    let body = match openai_read_create(request).await {
        Ok(body) => body,
        Err(response) => {
            state.script.record_submit(&Value::Null);
            return response.into_response();
        }
    };
    state.script.record_submit(&Value::Object(body.clone()));
    if let Err(response) = openai_authorized(&state, &headers) {
        return response.into_response();
    }
    if let Err(response) = openai_validate(&body) {
        return response.into_response();
    }
    if state.script.outcome() == Outcome::RejectSubmit {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "Your request was rejected as a result of our safety system.",
            None,
            "moderation_blocked",
        )
        .into_response();
    }
    let string = |k: &str, default: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let job = Job {
        kind: "video",
        params: json!({
            "model": string("model", "sora-2"),
            "prompt": string("prompt", ""),
            "seconds": string("seconds", "4"),
            "size": string("size", "720x1280"),
        }),
        created_ms: now_ms(),
    };
    let id = format!("video_{}", new_id());
    let video = openai_video(&id, Stage::Queued, &job);
    state.script.create(&id, job);
    Json(video).into_response()
}

fn openai_not_found(id: &str) -> OpenAiError {
    openai_error(
        StatusCode::NOT_FOUND,
        &format!("Video with id '{id}' not found."),
        None,
        "video_not_found",
    )
}

async fn openai_retrieve(
    State(state): State<Arc<OpenAiVideosState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = openai_authorized(&state, &headers) {
        return response.into_response();
    }
    match state.script.poll(&id) {
        Some((stage, job)) => Json(openai_video(&id, stage, &job)).into_response(),
        None => openai_not_found(&id).into_response(),
    }
}

async fn openai_content(
    State(state): State<Arc<OpenAiVideosState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = openai_authorized(&state, &headers) {
        return response.into_response();
    }
    let (content_type, prefix) = match query.get("variant").map(String::as_str) {
        None | Some("video") => ("video/mp4", "MP4"),
        Some("thumbnail") => ("image/webp", "WEBP"),
        Some("spritesheet") => ("image/jpeg", "JPG"),
        Some(other) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid value for 'variant': '{other}'."),
                Some("variant"),
                "invalid_value",
            )
            .into_response();
        }
    };
    match state.script.peek(&id) {
        Some((Stage::Succeeded, _)) => (
            [(header::CONTENT_TYPE, content_type)],
            format!("{prefix}-BYTES-{id}"),
        )
            .into_response(),
        Some(_) => openai_error(
            StatusCode::NOT_FOUND,
            &format!("Video '{id}' is not completed; its content is not available."),
            None,
            "video_not_ready",
        )
        .into_response(),
        None => openai_not_found(&id).into_response(),
    }
}

// ---------------------------------------------------------------------------
// APIMart
// ---------------------------------------------------------------------------

pub struct ApimartState {
    script: Script,
    api_key: String,
}

impl AsRef<Script> for ApimartState {
    fn as_ref(&self) -> &Script {
        &self.script
    }
}

/// `POST /v1/videos/generations`, `POST /v1/images/generations` (answered
/// `{"code":200,"data":[{"status":"submitted","task_id":…}]}`),
/// `GET /v1/tasks/{id}?language=…` (`pending` → `processing` → `completed`
/// with `result.videos[].url[]` / `result.images[].url[]` under
/// `{base_url}/files/`, or `failed` with `error.message`). Rejects a wrong
/// bearer key (401), a missing model or prompt, a `duration` that is not a
/// JSON integer, an `n` that is not a positive integer (400, `code` 400),
/// and unknown task ids (404, `code` 404).
pub type ApimartMock = TaskMock<ApimartState>;

impl ApimartMock {
    pub async fn start(api_key: &str) -> Self {
        let api_key = api_key.to_owned();
        spawn(
            |addr| ApimartState {
                script: Script::new(addr),
                api_key,
            },
            |state| {
                axum::Router::new()
                    .route(
                        "/v1/videos/generations",
                        post(|s, h, b| apimart_submit(s, h, b, "video")),
                    )
                    .route(
                        "/v1/images/generations",
                        post(|s, h, b| apimart_submit(s, h, b, "images")),
                    )
                    .route("/v1/tasks/{id}", get(apimart_task))
                    .route("/files/{name}", get(serve_file))
                    .with_state(state)
            },
        )
        .await
    }
}

/// An error answer in APIMart's envelope.
struct ApimartError {
    status: StatusCode,
    message: String,
    kind: &'static str,
}

impl IntoResponse for ApimartError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.status.as_u16(), "error": {"message": self.message, "type": self.kind}})),
        )
            .into_response()
    }
}

fn apimart_error(status: StatusCode, message: &str, kind: &'static str) -> ApimartError {
    ApimartError {
        status,
        message: message.to_owned(),
        kind,
    }
}

fn apimart_authorized(state: &ApimartState, headers: &HeaderMap) -> Result<(), ApimartError> {
    if bearer(headers) == Some(state.api_key.as_str()) {
        Ok(())
    } else {
        Err(apimart_error(
            StatusCode::UNAUTHORIZED,
            "Invalid API key",
            "authentication_error",
        ))
    }
}

fn apimart_validate(kind: &str, body: &Map<String, Value>) -> Result<(), ApimartError> {
    let invalid =
        |message: &str| apimart_error(StatusCode::BAD_REQUEST, message, "invalid_request_error");
    if body
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(invalid("model is required"));
    }
    if body
        .get("prompt")
        .and_then(Value::as_str)
        .is_none_or(|p| p.trim().is_empty())
    {
        return Err(invalid("prompt is required"));
    }
    if kind == "video"
        && let Some(duration) = body.get("duration")
        && !(duration.is_u64() && duration.as_u64() != Some(0))
    {
        return Err(invalid(
            "duration must be a positive integer (do not quote it)",
        ));
    }
    if kind == "images"
        && let Some(n) = body.get("n")
        && !n.as_u64().is_some_and(|n| (1..=4).contains(&n))
    {
        return Err(invalid("n must be an integer from 1 to 4"));
    }
    if let Some(urls) = body.get("image_urls")
        && !urls
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(invalid("image_urls must be an array of URLs"));
    }
    Ok(())
}

async fn apimart_submit(
    State(state): State<Arc<ApimartState>>,
    headers: HeaderMap,
    body: Bytes,
    kind: &'static str,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    state.script.record_submit(&parsed);
    if let Err(response) = apimart_authorized(&state, &headers) {
        return response.into_response();
    }
    let Value::Object(body) = parsed else {
        return apimart_error(
            StatusCode::BAD_REQUEST,
            "request body must be a JSON object",
            "invalid_request_error",
        )
        .into_response();
    };
    if let Err(response) = apimart_validate(kind, &body) {
        return response.into_response();
    }
    if state.script.outcome() == Outcome::RejectSubmit {
        return apimart_error(
            StatusCode::BAD_REQUEST,
            "The prompt violates the content policy",
            "invalid_request_error",
        )
        .into_response();
    }
    let id = format!("task_{}", new_id().to_uppercase());
    state.script.create(
        &id,
        Job {
            kind,
            params: Value::Object(body),
            created_ms: now_ms(),
        },
    );
    Json(json!({"code": 200, "data": [{"status": "submitted", "task_id": id}]})).into_response()
}

async fn apimart_task(
    State(state): State<Arc<ApimartState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = apimart_authorized(&state, &headers) {
        return response.into_response();
    }
    let Some((stage, job)) = state.script.poll(&id) else {
        return apimart_error(StatusCode::NOT_FOUND, "task not found", "not_found_error")
            .into_response();
    };
    let created = job.created_ms / 1000;
    let mut data = json!({
        "id": id,
        "status": "pending",
        "progress": 0,
        "created": created,
        "estimated_time": 120,
    });
    match stage {
        Stage::Queued => {}
        Stage::Running(progress) => {
            data["status"] = json!("processing");
            data["progress"] = json!(progress);
        }
        Stage::Succeeded => {
            let base = &state.script.base_url;
            let expires_at = created + 86_400;
            data["status"] = json!("completed");
            data["progress"] = json!(100);
            data["completed"] = json!(created + 60);
            data["actual_time"] = json!(60);
            data["result"] = if job.kind == "video" {
                json!({"videos": [{"url": [format!("{base}/files/{id}.mp4")], "expires_at": expires_at}]})
            } else {
                let n = job.params.get("n").and_then(Value::as_u64).unwrap_or(1);
                let images: Vec<Value> = (0..n)
                    .map(|i| json!({"url": [format!("{base}/files/{id}-{i}.png")], "expires_at": expires_at}))
                    .collect();
                json!({"images": images})
            };
        }
        Stage::Failed => {
            data["status"] = json!("failed");
            data["error"] = json!({"code": "generation_failed", "message": "The generation failed: content policy violation"});
        }
    }
    Json(json!({"code": 200, "data": data})).into_response()
}

// ---------------------------------------------------------------------------
// Kling
// ---------------------------------------------------------------------------

const KLING_RATIOS: &[&str] = &["16:9", "9:16", "1:1"];
const KLING_IMAGE_RATIOS: &[&str] = &["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"];

pub struct KlingState {
    script: Script,
    access_key: String,
    secret_key: String,
    external_ids: Mutex<Vec<String>>,
}

impl AsRef<Script> for KlingState {
    fn as_ref(&self) -> &Script {
        &self.script
    }
}

/// `POST /v1/videos/text2video`, `POST /v1/videos/image2video`,
/// `POST /v1/images/generations` and the matching
/// `GET …/{task_id}` queries (a task is found only under the path it was
/// created on), in Kling's `{code, message, request_id, data}` envelope:
/// `submitted` → `processing` → `succeed` with
/// `task_result.videos[{id, url, duration}]` / `task_result.images[{index,
/// url}]` under `{base_url}/files/`, or `failed` with `task_status_msg`; no
/// progress field; millisecond timestamps.
///
/// Every request must carry `Authorization: Bearer <JWT>`, an HS256 token
/// signed with the secret key whose `iss` is the access key and whose
/// `nbf`/`exp` window holds now: 401 with code 1001 (empty), 1002 (invalid:
/// malformed, wrong algorithm, bad signature or issuer), 1003 (not yet
/// valid), 1004 (expired). A missing prompt (text-to-video, images), a
/// `duration` that is not a string of 3–15, an unknown `mode` or
/// `aspect_ratio`, an image-to-video without `image` or with a `data:` URL,
/// a reused `external_task_id` → 400 with code 1201. Unknown tasks → 404
/// with code 1203. [`Outcome::RejectSubmit`] → 400 with code 1301 (content
/// safety).
pub type KlingMock = TaskMock<KlingState>;

impl KlingMock {
    pub async fn start(access_key: &str, secret_key: &str) -> Self {
        let (access_key, secret_key) = (access_key.to_owned(), secret_key.to_owned());
        spawn(
            |addr| KlingState {
                script: Script::new(addr),
                access_key,
                secret_key,
                external_ids: Mutex::new(Vec::new()),
            },
            |state| {
                axum::Router::new()
                    .route(
                        "/v1/videos/text2video",
                        post(|s, h, b| kling_submit(s, h, b, "text2video")),
                    )
                    .route(
                        "/v1/videos/image2video",
                        post(|s, h, b| kling_submit(s, h, b, "image2video")),
                    )
                    .route(
                        "/v1/images/generations",
                        post(|s, h, b| kling_submit(s, h, b, "images")),
                    )
                    .route(
                        "/v1/videos/text2video/{id}",
                        get(|s, p, h| kling_query(s, p, h, "text2video")),
                    )
                    .route(
                        "/v1/videos/image2video/{id}",
                        get(|s, p, h| kling_query(s, p, h, "image2video")),
                    )
                    .route(
                        "/v1/images/generations/{id}",
                        get(|s, p, h| kling_query(s, p, h, "images")),
                    )
                    .route("/files/{name}", get(serve_file))
                    .with_state(state)
            },
        )
        .await
    }
}

/// An error answer in Kling's envelope.
struct KlingError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl IntoResponse for KlingError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "message": self.message, "request_id": uuid::Uuid::new_v4().to_string()})),
        )
            .into_response()
    }
}

fn kling_error(status: StatusCode, code: u32, message: &str) -> KlingError {
    KlingError {
        status,
        code,
        message: message.to_owned(),
    }
}

/// HMAC-SHA256 (RFC 2104), written out so the mock checks the adapter's
/// tokens with code of its own.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// An HS256 JWT with `claims`, signed with `secret` (for tests that call
/// the mock directly).
pub fn kling_token(claims: &Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let signature =
        URL_SAFE_NO_PAD.encode(hmac_sha256(secret.as_bytes(), signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Kling's token check: 1001 empty, 1002 invalid, 1003 not yet valid, 1004
/// expired.
fn kling_authorized(state: &KlingState, headers: &HeaderMap) -> Result<(), KlingError> {
    let fail = |code: u32, message: &str| kling_error(StatusCode::UNAUTHORIZED, code, message);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    if value.is_empty() || value == "Bearer" {
        return Err(fail(1001, "Authorization is empty"));
    }
    let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
        return Err(fail(1002, "Authorization is invalid"));
    };
    let invalid = || fail(1002, "Authorization is invalid");
    let parts: Vec<&str> = token.split('.').collect();
    let [header_part, payload_part, signature_part] = parts[..] else {
        return Err(invalid());
    };
    let decode = |part: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let jwt_header = decode(header_part).ok_or_else(invalid)?;
    if jwt_header["alg"] != "HS256" {
        return Err(invalid());
    }
    let expected = hmac_sha256(
        state.secret_key.as_bytes(),
        format!("{header_part}.{payload_part}").as_bytes(),
    );
    if URL_SAFE_NO_PAD.decode(signature_part).ok().as_deref() != Some(&expected[..]) {
        return Err(invalid());
    }
    let claims = decode(payload_part).ok_or_else(invalid)?;
    if claims["iss"] != state.access_key.as_str() {
        return Err(invalid());
    }
    let now = now_ms() / 1000;
    let (Some(nbf), Some(exp)) = (claims["nbf"].as_u64(), claims["exp"].as_u64()) else {
        return Err(invalid());
    };
    if now < nbf {
        return Err(fail(1003, "Authorization is not yet valid"));
    }
    if now >= exp {
        return Err(fail(1004, "Authorization has expired"));
    }
    Ok(())
}

fn kling_validate(
    state: &KlingState,
    kind: &str,
    body: &Map<String, Value>,
) -> Result<(), KlingError> {
    let invalid = |message: &str| kling_error(StatusCode::BAD_REQUEST, 1201, message);
    let prompt = body.get("prompt");
    match prompt {
        Some(Value::String(p)) if p.chars().count() > 2500 => {
            return Err(invalid("prompt cannot exceed 2500 characters"));
        }
        Some(Value::String(p)) if !p.trim().is_empty() => {}
        None | Some(Value::Null) if kind == "image2video" => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(invalid("prompt is required"));
        }
        Some(_) => return Err(invalid("prompt must be a string")),
    }
    if let Some(model) = body.get("model_name")
        && !model.is_string()
    {
        return Err(invalid("model_name must be a string"));
    }
    if kind == "images" {
        if let Some(n) = body.get("n")
            && !n.as_u64().is_some_and(|n| (1..=9).contains(&n))
        {
            return Err(invalid("n must be an integer from 1 to 9"));
        }
        if let Some(ratio) = body.get("aspect_ratio")
            && !ratio
                .as_str()
                .is_some_and(|r| KLING_IMAGE_RATIOS.contains(&r))
        {
            return Err(invalid("aspect_ratio is invalid"));
        }
    } else {
        match body.get("duration") {
            None => {}
            Some(Value::String(d)) if d.parse::<u64>().is_ok_and(|d| (3..=15).contains(&d)) => {}
            Some(Value::String(_)) => return Err(invalid("duration value is invalid")),
            Some(_) => return Err(invalid("duration must be a string, e.g. \"5\"")),
        }
        if let Some(mode) = body.get("mode")
            && !matches!(mode.as_str(), Some("std" | "pro"))
        {
            return Err(invalid("mode must be std or pro"));
        }
        if let Some(ratio) = body.get("aspect_ratio")
            && !ratio.as_str().is_some_and(|r| KLING_RATIOS.contains(&r))
        {
            return Err(invalid("aspect_ratio must be one of 16:9, 9:16, 1:1"));
        }
    }
    match body.get("image") {
        Some(Value::String(image)) if image.starts_with("data:") => {
            return Err(invalid(
                "image must be a URL or base64 without a data: prefix",
            ));
        }
        Some(Value::String(image)) if !image.is_empty() => {}
        None | Some(Value::Null) if kind != "image2video" => {}
        _ if kind == "image2video" => return Err(invalid("image is required")),
        _ => return Err(invalid("image must be a string")),
    }
    if let Some(external) = body.get("external_task_id") {
        let Some(external) = external.as_str() else {
            return Err(invalid("external_task_id must be a string"));
        };
        if !external.is_empty() {
            let mut seen = state.external_ids.lock().unwrap();
            if seen.iter().any(|e| e == external) {
                return Err(invalid("external_task_id already exists"));
            }
            seen.push(external.to_owned());
        }
    }
    Ok(())
}

async fn kling_submit(
    State(state): State<Arc<KlingState>>,
    headers: HeaderMap,
    body: Bytes,
    kind: &'static str,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    state.script.record_submit(&parsed);
    if let Err(response) = kling_authorized(&state, &headers) {
        return response.into_response();
    }
    let Value::Object(body) = parsed else {
        return kling_error(StatusCode::BAD_REQUEST, 1200, "invalid request body").into_response();
    };
    if let Err(response) = kling_validate(&state, kind, &body) {
        return response.into_response();
    }
    if state.script.outcome() == Outcome::RejectSubmit {
        return kling_error(
            StatusCode::BAD_REQUEST,
            1301,
            "Failure to pass the risk control system",
        )
        .into_response();
    }
    // Kling's task ids are long decimal strings.
    let id = format!(
        "{}",
        800_000_000_000_000_000u64 + uuid::Uuid::new_v4().as_u64_pair().0 % 100_000_000_000_000_000
    );
    let created_ms = now_ms();
    let external = body
        .get("external_task_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    state.script.create(
        &id,
        Job {
            kind,
            params: Value::Object(body),
            created_ms,
        },
    );
    Json(json!({
        "code": 0,
        "message": "SUCCEED",
        "request_id": uuid::Uuid::new_v4().to_string(),
        "data": {
            "task_id": id,
            "task_status": "submitted",
            "task_info": {"external_task_id": external},
            "created_at": created_ms,
            "updated_at": created_ms,
        },
    }))
    .into_response()
}

async fn kling_query(
    State(state): State<Arc<KlingState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    kind: &'static str,
) -> Response {
    if let Err(response) = kling_authorized(&state, &headers) {
        return response.into_response();
    }
    // A task exists only under the path it was created on.
    let polled = match state.script.peek(&id) {
        Some((_, job)) if job.kind == kind => state.script.poll(&id),
        _ => {
            state.script.polls.fetch_add(1, Ordering::SeqCst);
            None
        }
    };
    let Some((stage, job)) = polled else {
        return kling_error(StatusCode::NOT_FOUND, 1203, "task not found").into_response();
    };
    let external = job
        .params
        .get("external_task_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut data = json!({
        "task_id": id,
        "task_status": "submitted",
        "task_status_msg": "",
        "task_info": {"external_task_id": external},
        "created_at": job.created_ms,
        "updated_at": now_ms(),
    });
    match stage {
        Stage::Queued => {}
        Stage::Running(_) => data["task_status"] = json!("processing"),
        Stage::Succeeded => {
            let base = &state.script.base_url;
            data["task_status"] = json!("succeed");
            data["task_result"] = if kind == "images" {
                let n = job.params.get("n").and_then(Value::as_u64).unwrap_or(1);
                let images: Vec<Value> = (0..n)
                    .map(|i| json!({"index": i, "url": format!("{base}/files/{id}-{i}.png")}))
                    .collect();
                json!({"images": images})
            } else {
                let seconds = job
                    .params
                    .get("duration")
                    .and_then(Value::as_str)
                    .unwrap_or("5");
                data["watermark_info"] = json!({"enabled": false});
                json!({"videos": [{
                    "id": uuid::Uuid::new_v4().to_string(),
                    "url": format!("{base}/files/{id}.mp4"),
                    "watermark_url": "",
                    "duration": format!("{seconds}.042"),
                }]})
            };
        }
        Stage::Failed => {
            data["task_status"] = json!("failed");
            data["task_status_msg"] = json!("Failure to pass the risk control system");
        }
    }
    Json(json!({
        "code": 0,
        "message": "SUCCEED",
        "request_id": uuid::Uuid::new_v4().to_string(),
        "data": data,
    }))
    .into_response()
}

// ---------------------------------------------------------------------------
// Sanity checks of the mocks
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        transit::init_tls();
        reqwest::Client::new()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[tokio::test]
    async fn openai_mock_runs_a_video_to_its_content() {
        let mock = OpenAiVideosMock::start("sk-v").await;
        mock.set(Outcome::SucceedAfter(2));
        let http = client();
        let base = mock.base_url();
        let created: Value = http
            .post(format!("{base}/v1/videos"))
            .bearer_auth("sk-v")
            .json(&json!({"model": "sora-2", "prompt": "a cat", "seconds": "8"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(created["status"], "queued");
        let id = created["id"].as_str().unwrap();
        let content = format!("{base}/v1/videos/{id}/content");
        let early = http.get(&content).bearer_auth("sk-v").send().await.unwrap();
        assert_eq!(early.status(), 404);
        let poll = || async {
            http.get(format!("{base}/v1/videos/{id}"))
                .bearer_auth("sk-v")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        };
        assert_eq!(poll().await["status"], "queued");
        let done = poll().await;
        assert_eq!(
            (done["status"].as_str(), done["seconds"].as_str()),
            (Some("completed"), Some("8"))
        );
        assert_eq!((mock.submits(), mock.polls()), (1, 2));
        let r = http.get(&content).bearer_auth("sk-v").send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "video/mp4");
        assert_eq!(
            r.bytes().await.unwrap(),
            format!("MP4-BYTES-{id}").as_bytes()
        );

        // What the real API refuses.
        for (key, body, status, param) in [
            ("sk-wrong", json!({"prompt": "a"}), 401, Value::Null),
            (
                "sk-v",
                json!({"prompt": "a", "seconds": 8}),
                400,
                json!("seconds"),
            ),
            ("sk-v", json!({"model": "sora-2"}), 400, json!("prompt")),
        ] {
            let r = http
                .post(format!("{base}/v1/videos"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{body}");
            assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], param);
        }
        let form = reqwest::multipart::Form::new()
            .text("prompt", "a cat")
            .text("seconds", "4")
            .part(
                "input_reference",
                reqwest::multipart::Part::bytes(b"PNG".to_vec()).file_name("f.png"),
            );
        let r = http
            .post(format!("{base}/v1/videos"))
            .bearer_auth("sk-v")
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            mock.last_submit().unwrap()["input_reference"]["file_bytes"],
            3
        );
        assert_eq!(mock.tasks(), 2);

        // The outcome is read at every poll: a task held back finishes when
        // the script lets it.
        mock.set(Outcome::Never);
        let created: Value = http
            .post(format!("{base}/v1/videos"))
            .bearer_auth("sk-v")
            .json(&json!({"prompt": "a dog", "size": "1280x720"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let held = created["id"].as_str().unwrap();
        let status = || async {
            http.get(format!("{base}/v1/videos/{held}"))
                .bearer_auth("sk-v")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["status"]
                .clone()
        };
        for expected in ["queued", "in_progress", "in_progress"] {
            assert_eq!(status().await, expected);
        }
        mock.set(Outcome::SucceedAfter(0));
        assert_eq!(status().await, "completed");
        mock.set(Outcome::FailAfter(0));
        assert_eq!(status().await, "completed", "an ended task stays ended");

        let r = http
            .get(format!("{base}/v1/videos/video_nope"))
            .bearer_auth("sk-v")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }

    #[tokio::test]
    async fn apimart_mock_completes_and_fails_tasks() {
        let mock = ApimartMock::start("am").await;
        let http = client();
        let base = mock.base_url();
        let submit = |path: &'static str, body: Value| {
            let http = http.clone();
            let base = base.clone();
            async move {
                http.post(format!("{base}{path}"))
                    .bearer_auth("am")
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
            }
        };
        let r = submit(
            "/v1/videos/generations",
            json!({"model": "veo3", "prompt": "p", "duration": "8"}),
        )
        .await;
        assert_eq!(r.status(), 400, "a quoted duration is refused");
        let r: Value = submit(
            "/v1/images/generations",
            json!({"model": "m", "prompt": "p", "n": 2}),
        )
        .await
        .json()
        .await
        .unwrap();
        let id = r["data"][0]["task_id"].as_str().unwrap();
        let task: Value = http
            .get(format!("{base}/v1/tasks/{id}?language=en"))
            .bearer_auth("am")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(task["data"]["status"], "completed");
        let url = task["data"]["result"]["images"][1]["url"][0]
            .as_str()
            .unwrap();
        assert_eq!(http.get(url).send().await.unwrap().status(), 200);

        mock.set(Outcome::FailAfter(2));
        let r: Value = submit(
            "/v1/videos/generations",
            json!({"model": "veo3", "prompt": "p", "duration": 8}),
        )
        .await
        .json()
        .await
        .unwrap();
        let id = r["data"][0]["task_id"].as_str().unwrap();
        let poll = || async {
            http.get(format!("{base}/v1/tasks/{id}"))
                .bearer_auth("am")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        };
        assert_eq!(poll().await["data"]["status"], "pending");
        let failed = poll().await;
        assert_eq!(failed["data"]["status"], "failed");
        assert!(failed["data"]["error"]["message"].is_string());
        let r = http
            .get(format!("{base}/v1/tasks/{id}"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    #[tokio::test]
    async fn kling_mock_checks_its_tokens() {
        let mock = KlingMock::start("ak", "sk").await;
        let http = client();
        let base = mock.base_url();
        let now = now_ms() / 1000;
        let good = kling_token(
            &json!({"iss": "ak", "exp": now + 1800, "nbf": now - 5}),
            "sk",
        );
        let body = json!({"model_name": "kling-v2-6", "prompt": "p", "duration": "5"});
        let code = |r: Value| r["code"].as_u64().unwrap();
        for (token, expected) in [
            (String::new(), 1001),
            ("not.a.jwt".to_owned(), 1002),
            (
                kling_token(
                    &json!({"iss": "ak", "exp": now + 1800, "nbf": now - 5}),
                    "other",
                ),
                1002,
            ),
            (
                kling_token(
                    &json!({"iss": "nobody", "exp": now + 1800, "nbf": now - 5}),
                    "sk",
                ),
                1002,
            ),
            (
                kling_token(
                    &json!({"iss": "ak", "exp": now + 1800, "nbf": now + 600}),
                    "sk",
                ),
                1003,
            ),
            (
                kling_token(&json!({"iss": "ak", "exp": now - 1, "nbf": now - 60}), "sk"),
                1004,
            ),
        ] {
            let r = http
                .post(format!("{base}/v1/videos/text2video"))
                .header("authorization", format!("Bearer {token}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
            assert_eq!(code(r.json().await.unwrap()), expected);
        }
        let r = http
            .post(format!("{base}/v1/videos/text2video"))
            .bearer_auth(&good)
            .json(&json!({"model_name": "kling-v2-6", "prompt": "p", "duration": 5}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(code(r.json().await.unwrap()), 1201);

        let created: Value = http
            .post(format!("{base}/v1/videos/text2video"))
            .bearer_auth(&good)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(created["code"], 0);
        let id = created["data"]["task_id"].as_str().unwrap();
        // Only under the path it was created on.
        let r = http
            .get(format!("{base}/v1/videos/image2video/{id}"))
            .bearer_auth(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let task: Value = http
            .get(format!("{base}/v1/videos/text2video/{id}"))
            .bearer_auth(&good)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(task["data"]["task_status"], "succeed");
        assert_eq!(
            task["data"]["task_result"]["videos"][0]["duration"],
            "5.042"
        );
        assert!(task["data"].get("progress").is_none());
    }
}

//! The relay: one client call through its phases.
//!
//! ```text
//! auth     token → caller (user, group, allowed models, IP, expiry, quota, limits)
//! parse    body read under the size cap; JSON, model, messages validated;
//!          prompt tokens counted
//! limits   RPM/TPM budgets (key, user, model rules); key and user concurrency
//! hold     the estimated cost held against the balance (billing)
//! select   a concurrency slot on an upstream key of the channels serving the
//!          model: highest priority tier with room, weight × free share inside it
//! prepare  adapter.prepare-request → the upstream request (host does the I/O)
//! send     pooled HTTP client, connect and total timeouts
//! translate  non-stream: adapter.parse-response
//!          stream: host frames events → adapter stream-translator → SSE to client
//!          (an answer already in OpenAI's shape, when the adapter says so:
//!          relayed as it is, its usage read by the host; see `passthrough`)
//! settle   actual cost charged, the rest of the hold refunded, log row written;
//!          slots released
//! ```
//!
//! A retryable failure before any byte reached the client moves on to the
//! next channel (at most `relay.max_retries` more). Once the first chunk of
//! a stream is sent, the call is committed to its channel.

pub(crate) mod admission;
pub mod framing;
pub mod native;
mod passthrough;
mod stream;
pub mod surface;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::adapters::{
    self, AdapterError, Answer, Call, ChannelInfo, Framing, Lease, UpstreamResponse, Usage,
};
use crate::auth::{self, Caller};
use crate::billing::{self, Hold, HoldRequest, Outcome};
use crate::channels::{Channel, NoRoute};
use crate::error::{ErrorKind, GatewayError};
use crate::inbound::Shape;
use crate::limits::{Acquired, SlotGuard};
use crate::upstream::{self, Limit};

/// Read a request body under the configured cap. A body over it is
/// refused with 413 after it is read on and thrown away (see
/// [`discard`]), so that the client, still sending, gets the answer.
pub async fn read_body(request: Request, limit: usize) -> Result<(HeaderMap, Bytes), GatewayError> {
    use http_body_util::BodyExt;
    let (parts, mut body) = request.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        discard(body).await;
        return Err(too_large(limit));
    }
    // Borrowed, so that what is left of a body over the cap can be discarded.
    match http_body_util::Limited::new(&mut body, limit)
        .collect()
        .await
    {
        Ok(collected) => Ok((parts.headers, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            discard(body).await;
            Err(too_large(limit))
        }
        Err(e) => Err(GatewayError::invalid(format!(
            "reading the request body failed: {e}"
        ))),
    }
}

/// Authenticate a request's caller, then read its body under the cap. A
/// request refused at the door has what its client still sends read and
/// thrown away first (see [`discard`]), so that the client gets the answer.
pub(crate) async fn authenticated_body(
    app: &AppState,
    request: Request,
) -> Result<(Caller, HeaderMap, Bytes), GatewayError> {
    let ip = client_ip(&request);
    let key = auth::api_key(request.headers()).map(str::to_owned);
    match auth::authenticate(&app.tokens, key.as_deref(), ip).await {
        Ok(caller) => {
            let (headers, body) = read_body(request, app.config.body_limit_bytes).await?;
            Ok((caller, headers, body))
        }
        Err(e) => {
            discard(request.into_body()).await;
            Err(e)
        }
    }
}

/// How much more of a refused body is read, and for how long, before the
/// refusal goes out.
const DISCARD_BYTES: usize = 8 * 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(2);

/// Read what is left of a refused body and throw it away, up to
/// [`DISCARD_BYTES`] within [`DISCARD_TIME`]. Closing a connection with
/// unread bytes makes it a reset, which can reach a client still sending
/// before the answer does: it would see a broken connection instead of 413.
async fn discard(mut body: Body) {
    use http_body_util::BodyExt;
    let mut left = DISCARD_BYTES;
    let _ = tokio::time::timeout(DISCARD_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, Bytes::len);
            if len >= left {
                return;
            }
            left -= len;
        }
    })
    .await;
}

fn too_large(limit: usize) -> GatewayError {
    GatewayError::new(
        ErrorKind::PayloadTooLarge,
        format!("Request body is larger than the {limit}-byte limit."),
    )
    .with_code("request_too_large")
}

pub(crate) fn client_ip(request: &Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// What the relay needs to know of a request; the body itself goes to the
/// adapter as the client sent it.
#[derive(Debug)]
struct Probe {
    /// The API called: "chat.completions", "completions", "embeddings".
    endpoint: &'static str,
    model: String,
    stream: bool,
    include_usage: bool,
    /// Prompt tokens, counted with the model's tokenizer; estimated past
    /// [`billing::tokens::COUNTED_AHEAD`] bytes of text.
    prompt_tokens: u64,
    /// How to count the whole prompt, when `prompt_tokens` is an estimate:
    /// done only if the upstream reports no usage (see [`PromptTokens`]).
    recount: Option<Recount>,
    /// The output cap the client set (or, for embeddings, zero).
    max_tokens: Option<u64>,
    /// Client headers the adapter may need (see [`forwarded_headers`]).
    headers: Vec<(String, String)>,
    /// Per-call units asked for (`("images", n)`, `("characters", n)`),
    /// for models priced per call.
    units: Vec<(String, u64)>,
    /// Price variant keys (image size and quality), most specific first.
    price_variant: Vec<String>,
    /// The API shape the client spoke; its body is in that shape.
    shape: Shape,
    /// The body in its canonical OpenAI form, when the parse phase already
    /// translated it (to check it); reused by every attempt that translates.
    canonical: Option<Vec<u8>>,
}

impl Probe {
    /// A probe for a call billed by its input (and per-call units), with no
    /// generated output to hold for.
    fn input_only(endpoint: &'static str, model: String, prompt_tokens: u64) -> Self {
        Self {
            endpoint,
            model,
            stream: false,
            include_usage: false,
            prompt_tokens,
            recount: None,
            max_tokens: Some(0),
            headers: Vec::new(),
            units: Vec::new(),
            price_variant: Vec::new(),
            shape: Shape::OpenAi,
            canonical: None,
        }
    }
}

/// Client headers passed to adapters: what a provider may need to see of the
/// client's request, never its credential.
const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
];

pub(crate) fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    FORWARDED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect()
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

type Object = serde_json::Map<String, serde_json::Value>;

fn parse_object(body: &[u8], fields: &str) -> Result<serde_json::Value, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::invalid(format!(
            "The request body is empty; send a JSON object with {fields}."
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::invalid(format!("The request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(GatewayError::invalid(
            "The request body must be a JSON object.",
        ));
    }
    Ok(value)
}

fn required_model(obj: &Object) -> Result<String, GatewayError> {
    match obj.get("model") {
        Some(serde_json::Value::String(m)) if !m.trim().is_empty() => Ok(m.clone()),
        Some(serde_json::Value::String(_)) | None | Some(serde_json::Value::Null) => {
            Err(GatewayError::invalid("you must provide a model parameter")
                .with_param("model")
                .with_code("missing_required_parameter"))
        }
        Some(_) => Err(GatewayError::invalid("`model` must be a string.").with_param("model")),
    }
}

/// `stream` and `stream_options.include_usage`.
fn stream_flags(obj: &Object) -> Result<(bool, bool), GatewayError> {
    let stream = match obj.get("stream") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => {
            return Err(GatewayError::invalid("`stream` must be a boolean.").with_param("stream"));
        }
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| serde_json::from_value::<StreamOptions>(o.clone()).ok())
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    Ok((stream, include_usage))
}

fn missing(param: &str) -> GatewayError {
    GatewayError::invalid(format!("Missing required parameter: '{param}'."))
        .with_param(param)
        .with_code("missing_required_parameter")
}

fn max_tokens(obj: &Object) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(serde_json::Value::as_u64))
}

fn probe_chat(body: &[u8]) -> Result<Probe, GatewayError> {
    let value = parse_object(body, "`model` and `messages`")?;
    let obj = value
        .as_object()
        .ok_or_else(|| GatewayError::invalid("not an object"))?;
    let model = required_model(obj)?;
    match obj.get("messages") {
        Some(serde_json::Value::Array(m)) if !m.is_empty() => {}
        Some(serde_json::Value::Array(_)) => {
            return Err(
                GatewayError::invalid("`messages` must contain at least one message.")
                    .with_param("messages"),
            );
        }
        None | Some(serde_json::Value::Null) => return Err(missing("messages")),
        Some(_) => {
            return Err(
                GatewayError::invalid("`messages` must be an array.").with_param("messages")
            );
        }
    };
    let (stream, include_usage) = stream_flags(obj)?;
    let (prompt_tokens, exact) = billing::tokens::estimate_chat(&model, &value);
    Ok(Probe {
        headers: Vec::new(),
        units: Vec::new(),
        price_variant: Vec::new(),
        shape: Shape::OpenAi,
        canonical: None,
        endpoint: "chat.completions",
        prompt_tokens,
        recount: (!exact).then_some(recount_chat as Recount),
        max_tokens: max_tokens(obj),
        model,
        stream,
        include_usage,
    })
}

/// Counts a whole prompt again, from the request body.
type Recount = fn(model: &str, body: &[u8]) -> Option<u64>;

fn recount_chat(model: &str, body: &[u8]) -> Option<u64> {
    let request = serde_json::from_slice(body).ok()?;
    Some(billing::tokens::count_chat(model, &request))
}

fn recount_prompt(model: &str, body: &[u8]) -> Option<u64> {
    recount_field("prompt", model, body)
}

fn recount_input(model: &str, body: &[u8]) -> Option<u64> {
    recount_field("input", model, body)
}

fn recount_field(field: &str, model: &str, body: &[u8]) -> Option<u64> {
    let request: serde_json::Value = serde_json::from_slice(body).ok()?;
    input_tokens(model, request.get(field)?)
}

/// Tokens of a `prompt` or `input` (a string, strings, or token arrays)
/// within an estimate's budget, and whether they were all counted.
fn estimate_input(model: &str, input: &serde_json::Value) -> Option<(u64, bool)> {
    let mut estimate = billing::tokens::Estimate::new(model);
    let tokens = count_input(input, &mut |text| estimate.text(text))?;
    Some((tokens, estimate.is_exact()))
}

/// Tokens of a `prompt` or `input`: a string, strings, or token arrays.
fn input_tokens(model: &str, input: &serde_json::Value) -> Option<u64> {
    count_input(input, &mut |text| billing::tokens::count(model, text))
}

fn count_input(input: &serde_json::Value, count: &mut impl FnMut(&str) -> u64) -> Option<u64> {
    use serde_json::Value;
    match input {
        Value::String(s) => Some(count(s)),
        Value::Array(items) if !items.is_empty() => items.iter().try_fold(0u64, |acc, item| {
            let n = match item {
                Value::String(s) => count(s),
                Value::Number(_) => 1,
                Value::Array(tokens) if tokens.iter().all(Value::is_number) => tokens.len() as u64,
                _ => return None,
            };
            Some(acc + n)
        }),
        _ => None,
    }
}

fn probe_completions(body: &[u8]) -> Result<Probe, GatewayError> {
    let value = parse_object(body, "`model` and `prompt`")?;
    let obj = value
        .as_object()
        .ok_or_else(|| GatewayError::invalid("not an object"))?;
    let model = required_model(obj)?;
    let prompt = obj.get("prompt").ok_or_else(|| missing("prompt"))?;
    let (prompt_tokens, exact) = estimate_input(&model, prompt).ok_or_else(|| {
        GatewayError::invalid("`prompt` must be a string, an array of strings or of token arrays.")
            .with_param("prompt")
    })?;
    let (stream, include_usage) = stream_flags(obj)?;
    Ok(Probe {
        headers: Vec::new(),
        units: Vec::new(),
        price_variant: Vec::new(),
        shape: Shape::OpenAi,
        canonical: None,
        endpoint: "completions",
        // The legacy API's own default output cap.
        max_tokens: max_tokens(obj).or(Some(16)),
        model,
        stream,
        include_usage,
        prompt_tokens,
        recount: (!exact).then_some(recount_prompt as Recount),
    })
}

fn probe_embeddings(body: &[u8]) -> Result<Probe, GatewayError> {
    let value = parse_object(body, "`model` and `input`")?;
    let obj = value
        .as_object()
        .ok_or_else(|| GatewayError::invalid("not an object"))?;
    let model = required_model(obj)?;
    let input = obj.get("input").ok_or_else(|| missing("input"))?;
    let (prompt_tokens, exact) = estimate_input(&model, input).ok_or_else(|| {
        GatewayError::invalid(
            "`input` must be a non-empty string, array of strings or of token arrays.",
        )
        .with_param("input")
    })?;
    Ok(Probe {
        headers: Vec::new(),
        units: Vec::new(),
        price_variant: Vec::new(),
        shape: Shape::OpenAi,
        canonical: None,
        endpoint: "embeddings",
        model,
        stream: false,
        include_usage: false,
        prompt_tokens,
        recount: (!exact).then_some(recount_input as Recount),
        max_tokens: Some(0),
    })
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Json(probe_chat)).await
}

/// `POST /v1/completions` (the legacy text completions API)
pub async fn completions(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Json(probe_completions)).await
}

/// `POST /v1/embeddings`
pub async fn embeddings(State(app): State<AppState>, request: Request) -> Response {
    handle(app, request, Prober::Json(probe_embeddings)).await
}

/// How a request body is read for the parse phase.
#[derive(Clone)]
enum Prober {
    /// A JSON body.
    Json(fn(&[u8]) -> Result<Probe, GatewayError>),
    /// A `multipart/form-data` upload: its text fields, and the names of
    /// its file parts. The body goes to the adapter as it came.
    Form(fn(&Object, &[String]) -> Result<Probe, GatewayError>),
    /// A JSON body whose model is named in the path (Gemini's routes).
    Path(fn(&[u8], &str) -> Result<Probe, GatewayError>, String),
}

impl Prober {
    async fn probe(self, headers: &HeaderMap, body: &[u8]) -> Result<Probe, GatewayError> {
        match self {
            Self::Json(f) => f(body),
            Self::Path(f, model) => f(body, &model),
            Self::Form(f) => {
                let content_type = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !content_type
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
                {
                    return Err(GatewayError::invalid(format!(
                        "This endpoint takes a multipart/form-data upload (got `{}`).",
                        if content_type.is_empty() {
                            "no content type"
                        } else {
                            content_type
                        }
                    ))
                    .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                    .with_code("unsupported_content_type"));
                }
                let form = multipart_fields(content_type, body).await?;
                f(&form.fields, &form.files)
            }
        }
    }
}

/// The parts of a `multipart/form-data` body.
pub(crate) struct Form {
    /// Text fields, as JSON strings.
    pub fields: Object,
    /// Names of the file parts.
    pub files: Vec<String>,
}

/// Read the parts of a `multipart/form-data` body (already under the size
/// cap): text fields kept, files only named.
pub(crate) async fn multipart_fields(
    content_type: &str,
    body: &[u8],
) -> Result<Form, GatewayError> {
    let boundary = multer::parse_boundary(content_type).map_err(|e| {
        GatewayError::invalid(format!("The multipart body has no usable boundary: {e}"))
    })?;
    let bytes = Bytes::copy_from_slice(body);
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut form = Form {
        fields: Object::new(),
        files: Vec::new(),
    };
    while let Some(field) = parts
        .next_field()
        .await
        .map_err(|e| GatewayError::invalid(format!("The multipart body is malformed: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if field.file_name().is_some() {
            form.files.push(name);
            continue;
        }
        let text = field.text().await.map_err(|e| {
            GatewayError::invalid(format!("The multipart field `{name}` is unreadable: {e}"))
        })?;
        form.fields.insert(name, serde_json::Value::String(text));
    }
    Ok(form)
}

async fn handle(app: AppState, request: Request, probe: Prober) -> Response {
    handle_as(app, request, probe, Shape::OpenAi).await
}

/// [`handle`] for a client speaking `shape`: errors answer in its envelope.
async fn handle_as(app: AppState, request: Request, probe: Prober, shape: Shape) -> Response {
    let started = Instant::now();
    let request_id = request_id(&request);
    let ip = client_ip(&request);
    let result = async {
        let (caller, headers, body) = authenticated_body(&app, request).await?;
        let mut probe = probe.probe(&headers, &body).await?;
        probe.headers = forwarded_headers(&headers);
        probe.shape = shape;
        relay(&app, caller, probe, body, started, &request_id, ip).await
    }
    .await;
    match result {
        Ok(response) => response,
        Err(e) => {
            if e.is_server_side() {
                tracing::warn!(request_id, status = e.status.as_u16(), error = %e.message, "request failed");
            }
            let body = shape.error_body(&e);
            e.into_response_with(body)
        }
    }
}

pub(crate) fn request_id(request: &Request) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default()
}

/// What the later phases need to know of the call.
#[derive(Clone)]
pub(crate) struct CallRecord {
    /// The caller's user: adapter instances serve one user only.
    pub user_id: i64,
    pub model: String,
    pub request_id: String,
    pub started: Instant,
    pub prompt: PromptTokens,
}

/// The prompt's tokens as billed when the upstream reports none: those
/// counted at admission, or, where that was an estimate, the whole prompt
/// counted on first asking (most calls never ask: the upstream reports).
/// An estimated prompt's body is kept for that until the call ends.
#[derive(Clone)]
pub(crate) struct PromptTokens {
    counted: u64,
    whole: Option<Arc<WholeCount>>,
}

struct WholeCount {
    recount: Recount,
    body: Bytes,
    tokens: std::sync::OnceLock<u64>,
}

impl PromptTokens {
    fn new(probe: &Probe, body: &Bytes) -> Self {
        Self {
            counted: probe.prompt_tokens,
            whole: probe.recount.map(|recount| {
                Arc::new(WholeCount {
                    recount,
                    body: body.clone(),
                    tokens: std::sync::OnceLock::new(),
                })
            }),
        }
    }

    /// Tokens to bill for the prompt of a call to `model`.
    pub(crate) fn billed(&self, model: &str) -> u64 {
        match &self.whole {
            None => self.counted,
            Some(whole) => *whole
                .tokens
                .get_or_init(|| (whole.recount)(model, &whole.body).unwrap_or(self.counted)),
        }
    }
}

async fn relay(
    app: &AppState,
    caller: Caller,
    probe: Probe,
    body: Bytes,
    started: Instant,
    request_id: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<Response, GatewayError> {
    if !caller.may_use(&probe.model) {
        return Err(GatewayError::forbidden(format!(
            "This API key may not use the model `{}`.",
            probe.model
        ))
        .with_code("model_not_allowed"));
    }
    let snapshot = app.router.snapshot();
    let candidates = snapshot
        .candidates(&caller.group, &probe.model)
        .map_err(|no| match no {
            NoRoute::UnknownModel => GatewayError::not_found(format!(
                "The model `{}` does not exist or you do not have access to it.",
                probe.model
            ))
            .with_code("model_not_found"),
            NoRoute::NoChannel => GatewayError::unavailable(format!(
                "No channel is available for the model `{}` in group `{}`.",
                probe.model, caller.group
            ))
            .with_code("no_available_channel"),
        })?;
    // Channels whose adapter is not loaded, or keeps crashing, are skipped.
    let (candidates, unusable): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| {
        app.runtime
            .get(&c.adapter)
            .is_some_and(|a| a.health.is_healthy())
    });
    if candidates.is_empty() {
        let adapter = unusable
            .first()
            .map(|c| c.adapter.clone())
            .unwrap_or_default();
        let why = if app.runtime.get(&adapter).is_some() {
            "keeps failing and is out of rotation for a while"
        } else {
            "is not loaded"
        };
        return Err(GatewayError::unavailable(format!(
            "No channel can serve `{}`: the adapter `{adapter}` {why}.",
            probe.model
        ))
        .with_code("adapter_unavailable"));
    }
    let price = app
        .billing
        .quote(&probe.model, &caller.group, &probe.price_variant)?;
    let max_out = probe
        .max_tokens
        .unwrap_or(app.billing.config.default_max_tokens);
    let rate_headers =
        admission::rate_limit(app, &caller, &probe.model, probe.prompt_tokens + max_out).await?;
    // Slots held until the call ends (moved into the stream for streams).
    let mut slots: Vec<SlotGuard> = Vec::new();
    if let Some(guard) = admission::caller_slots(app, &caller).await? {
        slots.push(guard);
    }
    let client_ip = ip.map(|i| i.to_string()).unwrap_or_default();
    let hold = app
        .billing
        .hold(
            HoldRequest {
                caller: &caller,
                model: &probe.model,
                prompt_tokens: probe.prompt_tokens,
                max_output_tokens: probe.max_tokens,
                request_id,
                client_ip: &client_ip,
                stream: probe.stream,
                started,
                units: &probe.units,
            },
            price,
        )
        .await?;
    let mut hold = Some(hold);
    let record = CallRecord {
        user_id: caller.user_id,
        model: probe.model.clone(),
        request_id: request_id.to_owned(),
        started,
        prompt: PromptTokens::new(&probe, &body),
    };
    let mut tried: Vec<i64> = Vec::new();
    let mut last_error = None;
    for _ in 0..=app.config.relay.max_retries {
        let open: Vec<Arc<Channel>> = candidates
            .iter()
            .filter(|c| !tried.contains(&c.id))
            .cloned()
            .collect();
        if open.is_empty() {
            break;
        }
        let (slot_candidates, owners) = admission::candidates(&open);
        let (channel, key_index) = match app.limiter.acquire(&[], &slot_candidates).await {
            Acquired::Slot(i, guard) => {
                slots.push(guard);
                owners[i].clone()
            }
            Acquired::Full | Acquired::RequiredFull(_) => {
                if last_error.is_none() {
                    last_error = Some(admission::all_busy(&probe.model));
                }
                break;
            }
        };
        tried.push(channel.id);
        match attempt(
            app, &channel, key_index, &probe, &body, &record, &mut hold, &mut slots,
        )
        .await
        {
            Ok(mut response) => {
                for (name, value) in &rate_headers {
                    response.headers_mut().insert(name.clone(), value.clone());
                }
                return Ok(response);
            }
            Err(e) => {
                if let Some(mut guard) = slots.pop() {
                    guard.mark_failed();
                }
                if e.code.as_deref() == Some("upstream_auth_failed")
                    && crate::channels::vertex::is_vertex(&channel.kind)
                {
                    app.vertex_tokens.forget(channel.id);
                }
                tracing::info!(
                    request_id,
                    channel = channel.id,
                    status = e.status.as_u16(),
                    retryable = e.retryable,
                    error = %e.message,
                    "upstream attempt failed"
                );
                let retry = e.retryable;
                last_error = Some(e);
                if !retry {
                    break;
                }
            }
        }
    }
    let error = last_error.unwrap_or_else(|| {
        GatewayError::unavailable(format!(
            "No channel is available for the model `{}`.",
            probe.model
        ))
    });
    // Nothing was produced: the whole hold goes back.
    if let Some(hold) = hold.take() {
        hold.settle(Outcome::Failed {
            channel_id: tried.last().copied().unwrap_or(0),
            status: error.status.as_u16(),
            message: error.message.clone(),
        });
    }
    Err(error)
}

/// One try on one channel, with upstream key `key_index`.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    app: &AppState,
    channel: &Arc<Channel>,
    key_index: usize,
    probe: &Probe,
    body: &Bytes,
    record: &CallRecord,
    hold: &mut Option<Hold>,
    slots: &mut Vec<SlotGuard>,
) -> Result<Response, GatewayError> {
    let adapter = app.runtime.get(&channel.adapter).ok_or_else(|| {
        GatewayError::unavailable(format!(
            "The adapter `{}` of channel {} is not loaded.",
            channel.adapter, channel.id
        ))
        .retryable(true)
    })?;
    // The channel's key, or the access token it stands for (Vertex AI):
    // fetched before an instance is leased, so a slow token endpoint holds
    // no instance.
    let channel_info: ChannelInfo =
        crate::channels::vertex::channel_info(app, channel, key_index).await?;
    let mut lease = lease_for(app, &adapter, record.user_id).await?;
    // A client in a native shape is served natively when the channel's
    // adapter speaks that shape, and through the canonical form otherwise.
    let native = probe
        .shape
        .native_endpoint(probe.endpoint)
        .filter(|e| adapter.info.endpoints.iter().any(|x| x == e));
    let translate = probe.shape != Shape::OpenAi && native.is_none();
    let translated_here;
    let (endpoint, body): (&str, &[u8]) = match native {
        Some(e) => (e, body),
        None if translate => match &probe.canonical {
            Some(canonical) => (probe.endpoint, canonical),
            // Shapes whose parse phase does not translate (Anthropic's).
            None => {
                translated_here = probe.shape.to_chat(body, &probe.model, probe.stream)?;
                (probe.endpoint, &translated_here)
            }
        },
        None => (probe.endpoint, body),
    };
    let call = Call {
        endpoint: endpoint.to_owned(),
        model: channel.upstream_model(&probe.model).to_owned(),
        stream: probe.stream,
        include_usage: probe.include_usage,
        headers: probe.headers.clone(),
        channel: channel_info,
    };
    let mut upstream = lease
        .instance
        .prepare_request(&call, body)
        .await
        .map_err(|f| guest_failure(&lease.adapter, f))?
        .map_err(|e| from_adapter_error(e, channel))?;
    // The instance is not held while the upstream works, which may take
    // minutes: it waits warm for the user's next call (unless preparing a
    // long prompt grew it), and the answer is translated by a warm
    // instance of the user, most often this one, or a fresh one.
    lease.recycle();

    let req = upstream_request(&adapter.info.name, channel, &mut upstream)?;
    let limit = if probe.stream {
        Limit::Idle
    } else {
        Limit::Total(Duration::from_secs(
            app.config.upstream.request_timeout_secs,
        ))
    };
    // From here on, a call its client abandons costs at least its prompt:
    // the upstream bills it once it has the request.
    if let Some(hold) = hold.as_mut() {
        hold.reaching(channel.id);
    }
    let response = app
        .upstream
        .send(req, limit)
        .await
        .map_err(|e| upstream_unreachable(&e, channel))?;

    let status = response.status();
    if !status.is_success() {
        let upstream_response = collect_response(response, 1024 * 1024, channel).await?;
        let mut lease = lease_for(app, &adapter, record.user_id).await?;
        let mapped = lease
            .instance
            .map_error(&call, &upstream_response)
            .await
            .map_err(|f| guest_failure(&lease.adapter, f))?;
        lease.recycle();
        return Err(from_adapter_error(mapped, channel));
    }

    if upstream.framing == Framing::Raw {
        // Binary answers (audio) go to the client as they arrive. The call
        // is billed now, for what the adapter said it costs (or the units the
        // request asked for): the upstream bills it once it answered 2xx.
        let usage = with_units(upstream.usage.take(), probe, record);
        if let Some(hold) = hold.take() {
            hold.settle(Outcome::Served {
                channel_id: channel.id,
                usage,
                first_token: None,
                note: String::new(),
            });
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let mut out = Response::new(Body::from_stream(response.bytes_stream()));
        out.headers_mut().insert(header::CONTENT_TYPE, content_type);
        return Ok(out);
    }

    if probe.stream {
        let (framing, answer) = (upstream.framing, upstream.answer);
        let output = stream::Output {
            shape: probe.shape,
            converter: if translate {
                probe.shape.stream_converter(&probe.model)
            } else {
                None
            },
        };
        return stream::start(
            app, &adapter, call, response, framing, answer, output, channel, record, hold, slots,
        )
        .await;
    }

    let upstream_response =
        collect_response(response, app.config.upstream.max_response_bytes, channel).await?;
    let translated = match upstream.answer {
        Answer::Openai => passthrough::whole(upstream_response.body),
        Answer::Adapter => {
            let mut lease = lease_for_answer(app, &adapter, record.user_id).await?;
            let translated = lease
                .instance
                .parse_response(&call, &upstream_response)
                .await
                .map_err(|f| guest_failure(&lease.adapter, f))?;
            lease.recycle();
            translated
        }
    }
    .map_err(|e| from_adapter_error(e, channel))?;
    let usage = translated.usage.clone().unwrap_or_else(|| Usage {
        input_tokens: record.prompt.billed(&record.model),
        output_tokens: billing::tokens::count(&record.model, &completion_text(&translated.body)),
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        units: Vec::new(),
    });
    let usage = with_units(Some(usage), probe, record);
    let body = if translate {
        inbound_response(probe, &translated.body)?
    } else {
        translated.body
    };
    if let Some(hold) = hold.take() {
        hold.settle(Outcome::Served {
            channel_id: channel.id,
            usage,
            first_token: None,
            note: String::new(),
        });
    }
    let mut out = Response::new(Body::from(body));
    let content_type = HeaderValue::from_str(&translated.content_type)
        .unwrap_or(HeaderValue::from_static("application/json"));
    out.headers_mut().insert(header::CONTENT_TYPE, content_type);
    Ok(out)
}

/// A canonical OpenAI answer in the client's native shape.
fn inbound_response(probe: &Probe, body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    match (probe.shape, probe.endpoint) {
        (Shape::Gemini, "embeddings") => crate::inbound::gemini::embeddings_to_response(body),
        (shape, _) => shape.from_chat(body, &probe.model),
    }
}

/// The usage to bill: what the adapter reported, else the prompt counted at
/// admission; per-call units the request asked for fill in when the
/// adapter reported none.
fn with_units(usage: Option<Usage>, probe: &Probe, record: &CallRecord) -> Usage {
    let mut usage = usage.unwrap_or_else(|| Usage {
        input_tokens: record.prompt.billed(&record.model),
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        units: Vec::new(),
    });
    if usage.units.is_empty() {
        usage.units.clone_from(&probe.units);
    }
    usage
}

/// The generated text of a non-streamed chat completion, for counting
/// tokens when the upstream reported none.
fn completion_text(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let mut text = String::new();
    for choice in value["choices"].as_array().into_iter().flatten() {
        for key in ["content", "reasoning_content"] {
            if let Some(t) = choice["message"][key].as_str() {
                text.push_str(t);
            }
        }
        // Legacy completions.
        if let Some(t) = choice["text"].as_str() {
            text.push_str(t);
        }
    }
    text
}

pub(crate) async fn collect_response(
    response: upstream::Response,
    limit: usize,
    channel: &Channel,
) -> Result<UpstreamResponse, GatewayError> {
    use futures_util::StreamExt;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| upstream_unreachable(&e, channel))?;
        if body.len() + piece.len() > limit {
            return Err(GatewayError::new(
                ErrorKind::Upstream,
                format!("The upstream response exceeded {limit} bytes."),
            )
            .retryable(false));
        }
        body.extend_from_slice(&piece);
    }
    Ok(UpstreamResponse {
        status,
        headers,
        body,
    })
}

pub(crate) fn upstream_unreachable(e: &upstream::Error, channel: &Channel) -> GatewayError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not be reached"
    } else {
        "failed"
    };
    // Logged where operators see it: "too many open files" or "connection
    // refused" says more than the answer to the client can.
    tracing::info!(channel = channel.id, cause = e.cause(), "upstream error");
    let status = if e.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    GatewayError::new(
        ErrorKind::Upstream,
        format!("The upstream of channel {} {what}.", channel.id),
    )
    .with_status(status)
    .with_code("upstream_unreachable")
    .retryable(true)
}

/// Turn an adapter's verdict into the gateway's error.
pub(crate) fn from_adapter_error(e: AdapterError, channel: &Channel) -> GatewayError {
    match e {
        AdapterError::InvalidRequest(m) => GatewayError::invalid(m),
        AdapterError::Unsupported(m) => {
            GatewayError::new(ErrorKind::Unsupported, m).retryable(true)
        }
        AdapterError::Auth(_) => {
            // The channel's credential is the operator's problem; the
            // upstream's message (which may quote part of the key) stays out
            // of the client's answer.
            tracing::warn!(
                channel = channel.id,
                "upstream rejected the channel's credentials"
            );
            GatewayError::new(
                ErrorKind::Upstream,
                format!(
                    "The upstream rejected the credentials of channel {}.",
                    channel.id
                ),
            )
            .with_code("upstream_auth_failed")
            .retryable(true)
        }
        AdapterError::RateLimited(r) => GatewayError::new(ErrorKind::RateLimited, r.message)
            .with_code("upstream_rate_limited")
            .with_retry_after(r.retry_after_ms.map(|ms| ms.div_ceil(1000)))
            .retryable(true),
        AdapterError::Upstream(u) => {
            let status = StatusCode::from_u16(u.status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            let mut err = GatewayError::new(ErrorKind::Upstream, u.message)
                .with_status(status)
                .retryable(u.retryable);
            if status.is_client_error() {
                err.kind = ErrorKind::InvalidRequest;
            }
            if let Some(code) = u.code {
                err = err.with_code(code);
            }
            err
        }
        AdapterError::Internal(m) => GatewayError::new(ErrorKind::Adapter, m).retryable(true),
    }
}

/// An instance of `adapter` to translate the answer to a call of `user`.
/// The upstream has answered (and billed) the call: one that finds no
/// instance free is not sent again to another channel.
pub(super) async fn lease_for_answer(
    app: &AppState,
    adapter: &Arc<adapters::LoadedAdapter>,
    user: i64,
) -> Result<Lease, GatewayError> {
    lease_for(app, adapter, user)
        .await
        .map_err(|e| e.retryable(false))
}

/// An instance of `adapter` for a call of `user`.
async fn lease_for(
    app: &AppState,
    adapter: &Arc<adapters::LoadedAdapter>,
    user: i64,
) -> Result<Lease, GatewayError> {
    let mut lease = app
        .runtime
        .instantiate_for(adapter, user)
        .await
        .map_err(|e| {
            GatewayError::unavailable(format!("No adapter instance is free: {e}")).retryable(true)
        })?;
    lease.instance.set_log_name(&adapter.info.name);
    Ok(lease)
}

pub(crate) fn guest_failure(
    adapter: &adapters::LoadedAdapter,
    failure: adapters::GuestFailure,
) -> GatewayError {
    tracing::error!(adapter = %adapter.info.name, version = %adapter.info.version, %failure, "adapter failed");
    // A failure shared with another stream was counted when it happened.
    if failure != adapters::GuestFailure::Spoiled && adapter.health.record_failure() {
        tracing::error!(
            adapter = %adapter.info.name,
            "adapter keeps failing: its channels are out of rotation for a while"
        );
    }
    GatewayError::new(
        ErrorKind::Adapter,
        format!("The adapter `{}` {failure}.", adapter.info.name),
    )
    .with_code("adapter_failure")
}

pub(crate) fn adapter_bug(lease: &Lease, what: &str) -> GatewayError {
    adapter_bug_named(&lease.adapter.info.name, what)
}

fn adapter_bug_named(adapter: &str, what: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::Adapter,
        format!("The adapter `{adapter}` {what}."),
    )
    .with_code("adapter_failure")
}

/// The HTTP request for an adapter-built upstream request, its body moved
/// into it.
pub(crate) fn upstream_request(
    adapter: &str,
    channel: &Channel,
    upstream: &mut adapters::UpstreamRequest,
) -> Result<upstream::Request, GatewayError> {
    let method = Method::from_bytes(upstream.method.as_bytes())
        .map_err(|_| adapter_bug_named(adapter, "returned an invalid HTTP method"))?;
    let mut headers = HeaderMap::with_capacity(upstream.headers.len());
    for (k, v) in &upstream.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| adapter_bug_named(adapter, "returned an invalid header name"))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| adapter_bug_named(adapter, "returned an invalid header value"))?;
        headers.append(name, value);
    }
    Ok(upstream::Request {
        method,
        url: std::mem::take(&mut upstream.url),
        headers,
        body: Bytes::from(std::mem::take(&mut upstream.body)),
        http2_prior_knowledge: channel.http2_prior_knowledge,
    })
}

pub(crate) fn framer_for(framing: Framing) -> Option<framing::Framer> {
    match framing {
        Framing::Sse => Some(framing::Framer::Sse(framing::SseFramer::default())),
        Framing::Ndjson => Some(framing::Framer::Ndjson(framing::NdjsonFramer::default())),
        Framing::AwsEventstream => Some(framing::Framer::AwsEventstream(
            framing::AwsEventstreamFramer::default(),
        )),
        Framing::Raw => None,
    }
}

/// `GET /v1/models/{id}`: one model this token may call.
pub async fn get_model(
    State(app): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    request: Request,
) -> Response {
    let ip = client_ip(&request);
    let key = auth::api_key(request.headers()).map(str::to_owned);
    let caller = match auth::authenticate(&app.tokens, key.as_deref(), ip).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let listed = app.router.snapshot().models_for_group(&caller.group);
    if caller.may_use(&id) && listed.contains(&id) {
        axum::Json(
            serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "transit"}),
        )
        .into_response()
    } else {
        GatewayError::not_found(format!(
            "The model `{id}` does not exist or you do not have access to it."
        ))
        .with_code("model_not_found")
        .into_response()
    }
}

/// `GET /v1/models`: the models this token may call.
pub async fn list_models(State(app): State<AppState>, request: Request) -> Response {
    let ip = client_ip(&request);
    let key = auth::api_key(request.headers()).map(str::to_owned);
    let caller = match auth::authenticate(&app.tokens, key.as_deref(), ip).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let snapshot = app.router.snapshot();
    let data: Vec<serde_json::Value> = snapshot
        .models_for_group(&caller.group)
        .into_iter()
        .filter(|m| caller.may_use(m))
        .map(|id| {
            serde_json::json!({
                "id": id,
                "object": "model",
                "created": 0,
                "owned_by": "transit",
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "object": "list", "data": data })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_validates_the_essentials() {
        let ok = probe_chat(br#"{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(ok.model, "m");
        assert!(ok.stream && ok.include_usage);
        assert_eq!(
            ok.prompt_tokens,
            3 + 3 + 1 + 1,
            "priming, framing, role, text"
        );
        assert_eq!(ok.max_tokens, None);
        for (body, param) in [
            (
                &br#"{"messages":[{"role":"user","content":"x"}]}"#[..],
                Some("model"),
            ),
            (
                br#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
            (br#"{"model":5,"messages":[]}"#, Some("model")),
            (br#"{"model":"m"}"#, Some("messages")),
            (br#"{"model":"m","messages":[]}"#, Some("messages")),
            (br#"{"model":"m","messages":{}}"#, Some("messages")),
            (
                br#"{"model":"m","messages":[{}],"stream":"yes"}"#,
                Some("stream"),
            ),
            (b"[]", None),
            (b"{", None),
            (b"", None),
        ] {
            let e = probe_chat(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(
                e.param.as_deref(),
                param,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

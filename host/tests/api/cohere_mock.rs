//! Protocol mocks of Cohere's v2 API and of Jina AI's and Voyage AI's
//! embeddings and rerank.
//!
//! [`MockCohere`] serves `POST /v2/chat` (whole answers and server-sent
//! event streams), `/v2/embed` and `/v2/rerank`, and rejects what Cohere
//! rejects with its `{"id", "message"}` body:
//! - a missing or wrong bearer key: 401 `invalid api token`;
//! - a body that is not JSON, or has a field the endpoint does not know
//!   (`unknown field: parameter top_p is not a valid field`), a missing
//!   `model`, missing or empty `messages`;
//! - a `system` message that is not the first (`system turn must be the
//!   first in the list`), an unknown role, a `tool` message whose
//!   `tool_call_id` answers no earlier assistant tool call;
//! - embed requests without `texts`, `input_type` or `embedding_types`;
//!   rerank requests with an empty `query`, no documents or documents that
//!   are not strings.
//!
//! The model [`COHERE_RATE_LIMITED_MODEL`] answers 429 with `retry-after`.
//! Chat answers [`COHERE_REPLY`] with [`COHERE_INPUT_TOKENS`] /
//! [`COHERE_OUTPUT_TOKENS`] billed units (the raw `tokens` are larger: they
//! count Cohere's prompt template); with `tool_choice: REQUIRED` it calls
//! the first tool with `{"location": "Paris"}`; when the last message is a
//! tool result it answers `The weather is <result>`.
//!
//! [`MockReranker`] speaks Jina's or Voyage's `POST /v1/rerank` and
//! `/v1/embeddings`: both check the bearer key (401 `{"detail": …}`);
//! Jina answers missing fields with FastAPI's 422 list, Voyage with a 400
//! `detail`, and Voyage takes documents only as strings and
//! `input_type` only as `query` / `document`. Each honours its own
//! parameter names (`top_n` vs `top_k`, `dimensions` vs
//! `output_dimension`), so a request in the other's dialect gets a visibly
//! different answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

/// The text every plain chat answers.
pub const COHERE_REPLY: &str = "Hello from Cohere!";
/// `usage.billed_units.input_tokens` of every chat answer.
pub const COHERE_INPUT_TOKENS: u64 = 12;
/// `usage.billed_units.output_tokens` of every chat answer.
pub const COHERE_OUTPUT_TOKENS: u64 = 8;
/// The model that always answers 429.
pub const COHERE_RATE_LIMITED_MODEL: &str = "command-rate-limited";
/// `meta.billed_units.input_tokens` per embedded text.
pub const COHERE_TOKENS_PER_TEXT: u64 = 3;
/// Values per embedding when the request names no dimension.
pub const MOCK_DIMENSIONS: usize = 4;
/// `usage.total_tokens` of every Jina / Voyage rerank answer.
pub const JINA_RERANK_TOKENS: u64 = 41;
pub const VOYAGE_RERANK_TOKENS: u64 = 37;
/// `usage.total_tokens` per input of Jina / Voyage embeddings.
pub const RERANKER_TOKENS_PER_INPUT: u64 = 5;

const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "strict_tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "thinking",
    "stream",
];
const EMBED_FIELDS: &[&str] = &[
    "model",
    "texts",
    "images",
    "inputs",
    "input_type",
    "embedding_types",
    "output_dimension",
    "max_tokens",
    "truncate",
];
const RERANK_FIELDS: &[&str] = &["model", "query", "documents", "top_n", "max_tokens_per_doc"];

/// What the latest request to a mock carried.
#[derive(Default)]
struct Seen {
    path: Option<String>,
    body: Option<Value>,
    requests: usize,
}

fn record(seen: &Mutex<Seen>, uri: &Uri, body: Option<Value>) {
    let mut s = seen.lock().unwrap();
    s.path = Some(uri.path().to_owned());
    s.requests += 1;
    if body.is_some() {
        s.body = body;
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

async fn serve(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, server)
}

/// A deterministic embedding of `text` with `dimensions` values.
fn embedding(text: &str, dimensions: usize) -> Value {
    let seed = text
        .bytes()
        .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    Value::Array(
        (0..dimensions)
            .map(|i| {
                let x = seed.wrapping_add(i as u64).wrapping_mul(2_654_435_761) % 2000;
                json!((x as f64 - 1000.0) / 1000.0)
            })
            .collect(),
    )
}

/// Scores documents against a query: the share of query words a document
/// contains, so the ranking is deterministic and meaningful.
fn scores(query: &str, documents: &[String]) -> Vec<(usize, f64)> {
    let words: Vec<String> = query
        .split_whitespace()
        .map(|w| {
            w.to_lowercase()
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_owned()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let mut scored: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let d = d.to_lowercase();
            let hits = words.iter().filter(|w| d.contains(w.as_str())).count();
            let score = (hits as f64 + 0.01) / (words.len() as f64 + 0.01);
            (i, (score * 1000.0).round() / 1000.0)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
}

// ---------------------------------------------------------------------------
// Cohere
// ---------------------------------------------------------------------------

struct CohereState {
    api_key: &'static str,
    seen: Mutex<Seen>,
}

/// Mock of Cohere's v2 API.
pub struct MockCohere {
    pub addr: SocketAddr,
    state: Arc<CohereState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockCohere {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockCohere {
    pub async fn start(api_key: &'static str) -> Self {
        let state = Arc::new(CohereState {
            api_key,
            seen: Mutex::new(Seen::default()),
        });
        let app = axum::Router::new()
            .route("/v2/chat", post(cohere_chat))
            .route("/v2/embed", post(cohere_embed))
            .route("/v2/rerank", post(cohere_rerank))
            .with_state(state.clone());
        let (addr, server) = serve(app).await;
        Self {
            addr,
            state,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The JSON body of the latest request that got past the key check.
    pub fn last_body(&self) -> Value {
        self.state.seen.lock().unwrap().body.clone().unwrap()
    }

    pub fn last_path(&self) -> String {
        self.state.seen.lock().unwrap().path.clone().unwrap()
    }

    /// Requests received, rejected ones included.
    pub fn requests(&self) -> usize {
        self.state.seen.lock().unwrap().requests
    }
}

fn cohere_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"id": "9b0d4f2e-mock", "message": message})),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    cohere_error(StatusCode::BAD_REQUEST, message)
}

/// The key check and JSON parse every Cohere route starts with.
fn cohere_request(
    state: &CohereState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    fields: &[&str],
) -> Result<Map<String, Value>, Box<Response>> {
    if bearer(headers) != Some(state.api_key) {
        record(&state.seen, uri, None);
        return Err(Box::new(cohere_error(
            StatusCode::UNAUTHORIZED,
            "invalid api token",
        )));
    }
    let parsed = serde_json::from_slice::<Value>(body).ok();
    record(&state.seen, uri, parsed.clone());
    let Some(Value::Object(req)) = parsed else {
        return Err(Box::new(invalid(
            "invalid request: could not parse the request body as JSON",
        )));
    };
    if let Some(unknown) = req.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(Box::new(invalid(&format!(
            "unknown field: parameter {unknown} is not a valid field"
        ))));
    }
    if req
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Box::new(invalid("invalid request: model is required")));
    }
    if req["model"] == COHERE_RATE_LIMITED_MODEL {
        let mut r = cohere_error(
            StatusCode::TOO_MANY_REQUESTS,
            "You are using a Trial key, which is limited to 20 API calls / minute.",
        );
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("3"));
        return Err(Box::new(r));
    }
    Ok(req)
}

/// Check a chat request's messages as Cohere does.
fn check_messages(req: &Map<String, Value>) -> Result<(), String> {
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("invalid request: messages must not be empty")?;
    let mut call_ids: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        match role {
            "system" if i > 0 => return Err("system turn must be the first in the list".into()),
            "system" | "user" => {
                if m.get("content").is_none_or(Value::is_null) {
                    return Err(format!(
                        "invalid request: messages[{i}].content is required"
                    ));
                }
            }
            "assistant" => {
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                    if id.is_empty() || call.pointer("/function/name").is_none() {
                        return Err(format!(
                            "invalid request: messages[{i}]: tool calls need an id and a function name"
                        ));
                    }
                    call_ids.push(id.to_owned());
                }
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !call_ids.iter().any(|c| c == id) {
                    return Err(format!(
                        "invalid request: messages[{i}]: tool_call_id '{id}' does not match any tool call"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "invalid request: messages[{i}]: role '{other}' must be one of system, user, assistant, tool"
                ));
            }
        }
    }
    Ok(())
}

async fn cohere_chat(
    State(state): State<Arc<CohereState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match cohere_request(&state, &uri, &headers, &body, CHAT_FIELDS) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if let Err(refusal) = check_messages(&req) {
        return invalid(&refusal);
    }
    if let Some(format) = req.get("response_format")
        && !matches!(format["type"].as_str(), Some("text" | "json_object"))
    {
        return invalid("invalid request: response_format.type must be one of text, json_object");
    }
    let usage = json!({
        "billed_units": {"input_tokens": COHERE_INPUT_TOKENS, "output_tokens": COHERE_OUTPUT_TOKENS},
        "tokens": {"input_tokens": COHERE_INPUT_TOKENS + 60, "output_tokens": COHERE_OUTPUT_TOKENS},
    });
    let forced = (req.get("tool_choice").and_then(Value::as_str) == Some("REQUIRED"))
        .then(|| req.get("tools").and_then(|t| t.pointer("/0/function/name")))
        .flatten()
        .and_then(Value::as_str)
        .map(str::to_owned);
    let last = req["messages"].as_array().and_then(|m| m.last()).cloned();
    let text = match &last {
        Some(m) if m["role"] == "tool" => format!(
            "The weather is {}",
            m["content"].as_str().unwrap_or_default()
        ),
        _ => COHERE_REPLY.to_owned(),
    };
    let stream = req.get("stream") == Some(&Value::Bool(true));
    if !stream {
        let (message, finish) = match &forced {
            Some(name) => (
                json!({"role": "assistant", "tool_plan": "I will look up the weather.",
                       "tool_calls": [{"id": "get_weather_mock1", "type": "function",
                                       "function": {"name": name, "arguments": "{\"location\":\"Paris\"}"}}]}),
                "TOOL_CALL",
            ),
            None => (
                json!({"role": "assistant", "content": [{"type": "text", "text": text}]}),
                "COMPLETE",
            ),
        };
        return Json(json!({"id": "cohere-mock-1", "finish_reason": finish, "message": message, "usage": usage}))
            .into_response();
    }
    let mut events: Vec<Value> = vec![json!({
        "id": "cohere-mock-1", "type": "message-start",
        "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}
    })];
    let finish = if let Some(name) = &forced {
        events.push(json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will look up the weather."}}}));
        events.push(json!({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {"id": "get_weather_mock1", "type": "function", "function": {"name": name, "arguments": ""}}}}}));
        for piece in ["{\"location\":", "\"Paris\"}"] {
            events.push(json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}}}));
        }
        events.push(json!({"type": "tool-call-end", "index": 0}));
        "TOOL_CALL"
    } else {
        events.push(json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}));
        for piece in text.split_inclusive(' ') {
            events.push(json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}, "logprobs": null}));
        }
        events.push(json!({"type": "content-end", "index": 0}));
        "COMPLETE"
    };
    events.push(json!({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}));
    let mut wire = String::new();
    for e in events {
        wire.push_str(&format!(
            "event: {}\ndata: {e}\n\n",
            e["type"].as_str().unwrap()
        ));
    }
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(wire))
        .unwrap()
}

async fn cohere_embed(
    State(state): State<Arc<CohereState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match cohere_request(&state, &uri, &headers, &body, EMBED_FIELDS) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(texts) = req
        .get("texts")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty() && t.iter().all(Value::is_string))
    else {
        return invalid("invalid request: texts must be a non-empty list of strings");
    };
    let valid_types = [
        "search_document",
        "search_query",
        "classification",
        "clustering",
        "image",
    ];
    if !req
        .get("input_type")
        .and_then(Value::as_str)
        .is_some_and(|t| valid_types.contains(&t))
    {
        return invalid(
            "invalid request: valid input_type must be provided with the provided model",
        );
    }
    if req
        .get("embedding_types")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return invalid(
            "invalid request: embedding_types is required for embed models v3 and higher",
        );
    }
    let dims = req
        .get("output_dimension")
        .and_then(Value::as_u64)
        .map_or(MOCK_DIMENSIONS, |d| d as usize);
    let vectors: Vec<Value> = texts
        .iter()
        .map(|t| embedding(t.as_str().unwrap_or_default(), dims))
        .collect();
    Json(json!({
        "id": "cohere-embed-mock",
        "embeddings": {"float": vectors},
        "texts": texts,
        "meta": {"api_version": {"version": "2"},
                 "billed_units": {"input_tokens": COHERE_TOKENS_PER_TEXT * texts.len() as u64}},
        "response_type": "embeddings_by_type",
    }))
    .into_response()
}

async fn cohere_rerank(
    State(state): State<Arc<CohereState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match cohere_request(&state, &uri, &headers, &body, RERANK_FIELDS) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let query = req.get("query").and_then(Value::as_str).unwrap_or_default();
    if query.trim().is_empty() {
        return invalid("invalid request: query must not be empty or be only whitespace");
    }
    let Some(docs) = req
        .get("documents")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
    else {
        return invalid("invalid request: list of documents must not be empty");
    };
    let Some(docs) = docs
        .iter()
        .map(|d| d.as_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()
    else {
        return invalid("invalid request: documents must be a list of strings");
    };
    let top = req
        .get("top_n")
        .and_then(Value::as_u64)
        .map_or(docs.len(), |n| n as usize);
    let results: Vec<Value> = scores(query, &docs)
        .into_iter()
        .take(top)
        .map(|(index, score)| json!({"index": index, "relevance_score": score}))
        .collect();
    Json(json!({
        "results": results,
        "id": "cohere-rerank-mock",
        "meta": {"api_version": {"version": "2", "is_experimental": false},
                 "billed_units": {"search_units": 1}},
    }))
    .into_response()
}

// ---------------------------------------------------------------------------
// Jina and Voyage
// ---------------------------------------------------------------------------

/// Which provider a [`MockReranker`] plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Jina,
    Voyage,
}

struct RerankerState {
    dialect: Dialect,
    api_key: &'static str,
    seen: Mutex<Seen>,
}

/// Mock of Jina's or Voyage's embeddings and rerank.
pub struct MockReranker {
    pub addr: SocketAddr,
    state: Arc<RerankerState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockReranker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockReranker {
    pub async fn start(dialect: Dialect, api_key: &'static str) -> Self {
        let state = Arc::new(RerankerState {
            dialect,
            api_key,
            seen: Mutex::new(Seen::default()),
        });
        let app = axum::Router::new()
            .route("/v1/rerank", post(reranker_rerank))
            .route("/v1/embeddings", post(reranker_embeddings))
            .with_state(state.clone());
        let (addr, server) = serve(app).await;
        Self {
            addr,
            state,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn last_body(&self) -> Value {
        self.state.seen.lock().unwrap().body.clone().unwrap()
    }

    pub fn last_path(&self) -> String {
        self.state.seen.lock().unwrap().path.clone().unwrap()
    }
}

fn detail(status: StatusCode, detail: Value) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

/// A missing field, the way each provider says it.
fn missing(dialect: Dialect, field: &str) -> Response {
    match dialect {
        Dialect::Jina => detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!([{"loc": ["body", field], "msg": "field required", "type": "value_error.missing"}]),
        ),
        Dialect::Voyage => detail(
            StatusCode::BAD_REQUEST,
            json!(format!(
                "Request body is missing the required field '{field}'."
            )),
        ),
    }
}

fn reranker_request(
    state: &RerankerState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, Box<Response>> {
    if bearer(headers) != Some(state.api_key) {
        record(&state.seen, uri, None);
        let message = match state.dialect {
            Dialect::Jina => {
                "Failed to authenticate the request. Please make sure your API key is valid."
            }
            Dialect::Voyage => "Provided API key is invalid.",
        };
        return Err(Box::new(detail(StatusCode::UNAUTHORIZED, json!(message))));
    }
    let parsed = serde_json::from_slice::<Value>(body).ok();
    record(&state.seen, uri, parsed.clone());
    let Some(Value::Object(req)) = parsed else {
        return Err(Box::new(detail(
            StatusCode::BAD_REQUEST,
            json!("Invalid JSON body"),
        )));
    };
    if req
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Box::new(missing(state.dialect, "model")));
    }
    Ok(req)
}

async fn reranker_rerank(
    State(state): State<Arc<RerankerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match reranker_request(&state, &uri, &headers, &body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let dialect = state.dialect;
    let Some(query) = req.get("query").and_then(Value::as_str) else {
        return missing(dialect, "query");
    };
    let Some(raw) = req
        .get("documents")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
    else {
        return missing(dialect, "documents");
    };
    let mut docs = Vec::with_capacity(raw.len());
    for d in raw {
        let text = match (dialect, d) {
            (_, Value::String(s)) => s.clone(),
            (Dialect::Jina, Value::Object(o)) if o.get("text").is_some_and(Value::is_string) => {
                o["text"].as_str().unwrap_or_default().to_owned()
            }
            (Dialect::Jina, _) => {
                return detail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!([{"loc": ["body", "documents"], "msg": "str type expected", "type": "type_error.str"}]),
                );
            }
            (Dialect::Voyage, _) => {
                return detail(
                    StatusCode::BAD_REQUEST,
                    json!("documents must be a list of strings."),
                );
            }
        };
        docs.push(text);
    }
    let top_key = match dialect {
        Dialect::Jina => "top_n",
        Dialect::Voyage => "top_k",
    };
    let top = req
        .get(top_key)
        .and_then(Value::as_u64)
        .map_or(docs.len(), |n| n as usize);
    let with_docs = req.get("return_documents") == Some(&Value::Bool(true));
    let items: Vec<Value> = scores(query, &docs)
        .into_iter()
        .take(top)
        .map(|(index, score)| {
            let mut item = json!({"index": index, "relevance_score": score});
            if with_docs {
                item["document"] = match dialect {
                    Dialect::Jina => json!({"text": docs[index]}),
                    Dialect::Voyage => json!(docs[index]),
                };
            }
            item
        })
        .collect();
    let model = req["model"].clone();
    match dialect {
        Dialect::Jina => Json(json!({
            "model": model, "usage": {"total_tokens": JINA_RERANK_TOKENS}, "results": items,
        }))
        .into_response(),
        Dialect::Voyage => Json(json!({
            "object": "list", "data": items, "model": model,
            "usage": {"total_tokens": VOYAGE_RERANK_TOKENS},
        }))
        .into_response(),
    }
}

async fn reranker_embeddings(
    State(state): State<Arc<RerankerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match reranker_request(&state, &uri, &headers, &body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let dialect = state.dialect;
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect(),
        _ => return missing(dialect, "input"),
    };
    let dims_key = match dialect {
        Dialect::Jina => "dimensions",
        Dialect::Voyage => {
            if let Some(kind) = req.get("input_type").filter(|k| !k.is_null())
                && !matches!(kind.as_str(), Some("query" | "document"))
            {
                return detail(
                    StatusCode::BAD_REQUEST,
                    json!(format!(
                        "Value '{kind}' supplied for argument 'input_type' is not valid; it should be null, 'query', or 'document'."
                    )),
                );
            }
            "output_dimension"
        }
    };
    let dims = req
        .get(dims_key)
        .and_then(Value::as_u64)
        .map_or(MOCK_DIMENSIONS, |d| d as usize);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embedding(t, dims)}))
        .collect();
    let tokens = RERANKER_TOKENS_PER_INPUT * inputs.len() as u64;
    let usage = match dialect {
        Dialect::Jina => json!({"total_tokens": tokens, "prompt_tokens": tokens}),
        Dialect::Voyage => json!({"total_tokens": tokens}),
    };
    Json(json!({"object": "list", "data": data, "model": req["model"], "usage": usage}))
        .into_response()
}

// ---------------------------------------------------------------------------
// Sanity checks of the mocks
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(base: &str, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        transit::init_tls();
        let mut r = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .json(&body);
        if let Some(key) = key {
            r = r.bearer_auth(key);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn hello() -> Value {
        json!({"model": "command-a-03-2025", "messages": [{"role": "user", "content": "Hi"}]})
    }

    #[tokio::test]
    async fn cohere_checks_the_key_and_the_body() {
        let mock = MockCohere::start("co-key").await;
        let base = mock.base_url();
        for key in [None, Some("wrong")] {
            let (status, v) = post(&base, "/v2/chat", key, hello()).await;
            assert_eq!(status, 401);
            assert_eq!(v["message"], "invalid api token");
        }
        let (status, v) = post(&base, "/v2/chat", Some("co-key"), hello()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["message"]["content"][0]["text"], COHERE_REPLY);
        assert_eq!(v["finish_reason"], "COMPLETE");
        assert_eq!(
            v["usage"]["billed_units"]["input_tokens"],
            COHERE_INPUT_TOKENS
        );
        for (body, expected) in [
            (
                json!({"messages": [{"role": "user", "content": "Hi"}]}),
                "model is required",
            ),
            (json!({"model": "m"}), "messages must not be empty"),
            (
                json!({"model": "m", "messages": []}),
                "messages must not be empty",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "x"}]}),
                "system turn must be the first",
            ),
            (
                json!({"model": "m", "messages": [{"role": "developer", "content": "Hi"}]}),
                "role 'developer'",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]}),
                "does not match any tool call",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}], "top_p": 0.5}),
                "parameter top_p is not a valid field",
            ),
        ] {
            let (status, v) = post(&base, "/v2/chat", Some("co-key"), body.clone()).await;
            assert_eq!(status, 400, "{body}");
            assert!(
                v["message"].as_str().unwrap().contains(expected),
                "{body}: {v}"
            );
        }
        let mut limited = hello();
        limited["model"] = json!(COHERE_RATE_LIMITED_MODEL);
        assert_eq!(
            post(&base, "/v2/chat", Some("co-key"), limited).await.0,
            429
        );
    }

    #[tokio::test]
    async fn cohere_streams_tools_embed_and_rerank() {
        let mock = MockCohere::start("co-key").await;
        let base = mock.base_url();
        let mut body = hello();
        body["stream"] = json!(true);
        let (status, v) = post(&base, "/v2/chat", Some("co-key"), body).await;
        assert_eq!(status, 200);
        let text = v.as_str().unwrap();
        assert!(text.starts_with("event: message-start\n"));
        assert!(text.contains("event: message-end\n"));

        let mut body = hello();
        body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        body["tool_choice"] = json!("REQUIRED");
        let (_, v) = post(&base, "/v2/chat", Some("co-key"), body).await;
        assert_eq!(v["finish_reason"], "TOOL_CALL");
        assert_eq!(
            v["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );

        let embed = json!({"model": "embed-v4.0", "texts": ["a", "b"], "input_type": "search_query", "embedding_types": ["float"], "output_dimension": 3});
        let (status, v) = post(&base, "/v2/embed", Some("co-key"), embed).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["embeddings"]["float"][1].as_array().unwrap().len(), 3);
        assert_eq!(
            v["meta"]["billed_units"]["input_tokens"],
            2 * COHERE_TOKENS_PER_TEXT
        );
        let (status, _) = post(
            &base,
            "/v2/embed",
            Some("co-key"),
            json!({"model": "embed-v4.0", "texts": ["a"], "embedding_types": ["float"]}),
        )
        .await;
        assert_eq!(status, 400);

        let rerank = json!({"model": "rerank-v3.5", "query": "capital of France", "documents": ["Berlin is in Germany", "Paris is the capital of France"], "top_n": 1});
        let (status, v) = post(&base, "/v2/rerank", Some("co-key"), rerank).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["results"].as_array().unwrap().len(), 1);
        assert_eq!(v["results"][0]["index"], 1);
        for bad in [
            json!({"model": "r", "query": " ", "documents": ["a"]}),
            json!({"model": "r", "query": "q", "documents": []}),
            json!({"model": "r", "query": "q", "documents": [{"text": "a"}]}),
            json!({"model": "r", "query": "q", "documents": ["a"], "return_documents": true}),
        ] {
            assert_eq!(
                post(&base, "/v2/rerank", Some("co-key"), bad.clone())
                    .await
                    .0,
                400,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn jina_and_voyage_speak_their_own_dialects() {
        let jina = MockReranker::start(Dialect::Jina, "jina-key").await;
        let voyage = MockReranker::start(Dialect::Voyage, "voyage-key").await;
        let body = json!({"model": "r", "query": "capital of France", "documents": ["Berlin", "Paris is the capital of France", "Rome"], "top_n": 1, "top_k": 2, "return_documents": true});
        let (status, v) = post(
            &jina.base_url(),
            "/v1/rerank",
            Some("jina-key"),
            body.clone(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(v["results"].as_array().unwrap().len(), 1);
        assert_eq!(
            v["results"][0]["document"]["text"],
            "Paris is the capital of France"
        );
        let (status, v) = post(&voyage.base_url(), "/v1/rerank", Some("voyage-key"), body).await;
        assert_eq!(status, 200);
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][0]["document"], "Paris is the capital of France");

        let (status, v) = post(
            &jina.base_url(),
            "/v1/rerank",
            Some("jina-key"),
            json!({"model": "r", "documents": ["a"]}),
        )
        .await;
        assert_eq!(status, 422);
        assert_eq!(v["detail"][0]["loc"], json!(["body", "query"]));
        let (status, _) = post(
            &voyage.base_url(),
            "/v1/rerank",
            Some("voyage-key"),
            json!({"model": "r", "query": "q", "documents": [{"text": "a"}]}),
        )
        .await;
        assert_eq!(status, 400);
        let (status, v) = post(
            &voyage.base_url(),
            "/v1/rerank",
            Some("jina-key"),
            json!({}),
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(v["detail"], "Provided API key is invalid.");

        let (_, v) = post(
            &voyage.base_url(),
            "/v1/embeddings",
            Some("voyage-key"),
            json!({"model": "voyage-3.5", "input": ["a"], "output_dimension": 2, "dimensions": 7}),
        )
        .await;
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 2);
        let (status, _) = post(
            &voyage.base_url(),
            "/v1/embeddings",
            Some("voyage-key"),
            json!({"model": "voyage-3.5", "input": ["a"], "input_type": "search_document"}),
        )
        .await;
        assert_eq!(status, 400);
        let (_, v) = post(
            &jina.base_url(),
            "/v1/embeddings",
            Some("jina-key"),
            json!({"model": "jina-embeddings-v3", "input": ["a", "b"], "dimensions": 2}),
        )
        .await;
        assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 2);
        assert_eq!(v["usage"]["total_tokens"], 2 * RERANKER_TOKENS_PER_INPUT);
    }
}

//! Protocol mocks of the OpenAI-dialect providers served by the
//! `openai-compat` adapter, on one server that routes by path:
//!
//! | provider | paths | auth |
//! |---|---|---|
//! | Azure OpenAI | `/openai/deployments/{deployment}/{chat/completions, embeddings, images/generations}?api-version=…` | `api-key` header |
//! | Zhipu | `/api/paas/v4/{chat/completions, embeddings}` | bearer HS256 JWT (`{api_key, exp, timestamp}` in ms, header `sign_type: SIGN`) or the plain key |
//! | DashScope | `/compatible-mode/v1/{chat/completions, embeddings}`, `/api/v1/services/rerank/text-rerank/text-rerank` | bearer key |
//! | Workers AI | `/client/v4/accounts/{account}/ai/v1/{chat/completions, embeddings}` | bearer token of that account |
//! | Qianfan | `/v2/{chat/completions, embeddings}` | bearer `bce-v3/…` key, optional `appid` header |
//!
//! Each rejects what its provider rejects, in its provider's error shape:
//! - Azure: no `api-version` → 404 `{"error":{"code":"404","message":"Resource
//!   not found"}}`; a malformed one → 400; no or wrong `api-key` (a bearer
//!   token included) → 401; an unknown deployment → 404
//!   `DeploymentNotFound`; `stream_options` without `stream` → 400; a
//!   prompt containing [`FILTER_TRIGGER`] → 400 `content_filter` with the
//!   `ResponsibleAIPolicyViolation` inner error.
//! - Zhipu: no token → 401 `1001`; a JWT with a bad header, wrong id or bad
//!   signature → 401 `1002`, an expired one → 401 `1003`; an unknown model
//!   → 400 `1211`; a `tool_choice` other than `auto` → 400 `1214`; model
//!   [`BUSY_MODEL`] → 429 `1302`.
//! - DashScope: a wrong key → 401 (`invalid_api_key` in compatible mode,
//!   `InvalidApiKey` natively); an unknown model → 404 `model_not_found`;
//!   `qwen3-32b` without `enable_thinking: false` on a non-streamed call → 400
//!   (as DashScope refuses); rerank without `input.query` /
//!   `input.documents` (e.g. the OpenAI-style top-level shape) → 400
//!   `InvalidParameter`; [`BUSY_MODEL`] → 429 `Throttling.RateQuota`.
//! - Workers AI: an account id that is not 32 hex digits → 404 `7003`; a
//!   wrong token → 401 `10000`; a valid token on another account → 403
//!   `10000`; an unknown model → 400 `5007`; [`BUSY_MODEL`] → 429 `3040`.
//! - Qianfan: a wrong key → 401 `invalid_iam_token`; an `appid` header
//!   other than [`BAIDU_APPID`] → 403; an unknown model → 400
//!   `invalid_model`; [`BUSY_MODEL`] → 429 `rpm_rate_limit_exceeded`.
//!
//! Chat answers are [`REPLY`] with [`PROMPT_TOKENS`] in ([`CACHED_TOKENS`] of
//! them cached) and [`COMPLETION_TOKENS`] out; thinking models (`glm-4.5`
//! unless `thinking` is disabled, `qwen3-32b` / `qwen-plus` with
//! `enable_thinking`, `ernie-x1-turbo-32k`) also give [`REASONING`] as
//! `reasoning_content` and report [`REASONING_TOKENS`]. A request with tools
//! (and `tool_choice` not `none`) whose last message is the user's gets a
//! call of the first tool with `{"location":"Paris"}`. Streams are SSE in
//! each provider's manner: Azure starts with its `prompt_filter_results`
//! annotation chunk; Zhipu puts usage in its last content chunk and never
//! sends a usage-only chunk; the others send the usage chunk only when
//! `stream_options.include_usage` asks for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const AZURE_KEY: &str = "az-key-0123456789";
pub const AZURE_DEPLOYMENTS: &[&str] = &["gpt-4o-prod", "embed-small", "dalle3-prod"];
pub const ZHIPU_ID: &str = "zp4f2a9c1e";
pub const ZHIPU_SECRET: &str = "Q2hhbmdlTWVQbGVhc2U";
pub const ALI_KEY: &str = "sk-ali-0123456789";
pub const CF_ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";
pub const CF_TOKEN: &str = "cf-token-0123456789";
pub const BAIDU_KEY: &str = "bce-v3/ALTAK-mock0123/9f8e7d6c5b4a";
pub const BAIDU_APPID: &str = "app-7741";

/// The Zhipu key in its `id.secret` form.
pub fn zhipu_key() -> String {
    format!("{ZHIPU_ID}.{ZHIPU_SECRET}")
}

/// The model every provider answers with a rate limit.
pub const BUSY_MODEL: &str = "busy-model";
/// Text that makes Azure's content filter refuse a prompt.
pub const FILTER_TRIGGER: &str = "trigger the content filter";

pub const REPLY: &str = "Hello from the compat mock!";
pub const REASONING: &str = "Thinking it over.";
pub const PROMPT_TOKENS: u64 = 13;
pub const CACHED_TOKENS: u64 = 4;
pub const COMPLETION_TOKENS: u64 = 8;
pub const REASONING_TOKENS: u64 = 5;
pub const EMBEDDING_TOKENS: u64 = 6;
pub const RERANK_TOKENS: u64 = 31;

const ZHIPU_MODELS: &[&str] = &["glm-4.5", "glm-4-flash", "embedding-3"];
const ALI_MODELS: &[&str] = &[
    "qwen-plus",
    "qwen3-32b",
    "text-embedding-v4",
    "gte-rerank-v2",
];
const CF_MODELS: &[&str] = &[
    "@cf/meta/llama-3.1-8b-instruct",
    "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
    "@cf/baai/bge-base-en-v1.5",
];
const BAIDU_MODELS: &[&str] = &["ernie-4.5-turbo-128k", "ernie-x1-turbo-32k", "embedding-v1"];

/// What the latest request carried.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct MockState {
    requests: AtomicUsize,
    last: Mutex<Option<Seen>>,
    /// How the latest Zhipu request authenticated: `jwt` or `key`.
    zhipu_auth: Mutex<Option<&'static str>>,
}

/// The mock server.
pub struct CompatMock {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for CompatMock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl CompatMock {
    pub async fn start() -> Self {
        let state = Arc::new(MockState::default());
        let app = axum::Router::new()
            .fallback(handle)
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

    /// The latest request.
    pub fn last(&self) -> Seen {
        self.state.last.lock().unwrap().clone().unwrap()
    }

    pub fn last_target(&self) -> String {
        self.last().target
    }

    pub fn last_body(&self) -> Value {
        self.last().body
    }

    pub fn last_header(&self, name: &str) -> Option<String> {
        self.last()
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// `jwt` or `key`: how the latest accepted Zhipu request authenticated.
    pub fn zhipu_auth(&self) -> Option<&'static str> {
        *self.state.zhipu_auth.lock().unwrap()
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

async fn handle(
    State(state): State<Arc<MockState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let json_body: Option<Value> = serde_json::from_slice(&body).ok();
    *state.last.lock().unwrap() = Some(Seen {
        target,
        headers: headers.clone(),
        body: json_body.clone().unwrap_or(Value::Null),
    });
    let path = uri.path();
    let query = uri.query().unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        return azure(rest, query, &headers, json_body);
    }
    if let Some(op) = path.strip_prefix("/api/paas/v4/") {
        return zhipu(&state, op, &headers, json_body);
    }
    if let Some(op) = path.strip_prefix("/compatible-mode/v1/") {
        return ali(op, &headers, json_body);
    }
    if path == "/api/v1/services/rerank/text-rerank/text-rerank" {
        return ali_rerank(&headers, json_body);
    }
    if let Some(rest) = path.strip_prefix("/client/v4/accounts/") {
        return cloudflare(path, rest, &headers, json_body);
    }
    if let Some(op) = path.strip_prefix("/v2/") {
        return baidu(op, &headers, json_body);
    }
    (StatusCode::NOT_FOUND, "404 page not found").into_response()
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------
// Shared OpenAI-shaped answers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Azure,
    Zhipu,
    Ali,
    Cloudflare,
    Baidu,
}

/// How one chat is answered.
struct Answer {
    flavor: Flavor,
    model: String,
    reasoning: bool,
    finish: &'static str,
}

fn tool_call_wanted(req: &Value) -> Option<String> {
    let tools = req.get("tools").and_then(Value::as_array)?;
    if tools.is_empty() || req.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last = req["messages"].as_array()?.last()?;
    if last["role"] != "user" {
        return None;
    }
    tools[0]["function"]["name"].as_str().map(str::to_owned)
}

fn last_user_text(req: &Value) -> String {
    req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

fn usage_json(a: &Answer) -> Value {
    let mut usage = json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
    });
    if a.reasoning {
        usage["completion_tokens_details"] = json!({"reasoning_tokens": REASONING_TOKENS});
    }
    usage
}

fn chat_answer(req: &Value, a: Answer) -> Response {
    let stream = req["stream"].as_bool().unwrap_or(false);
    let tool = tool_call_wanted(req);
    if !stream {
        let mut message = json!({"role": "assistant"});
        if a.reasoning {
            message["reasoning_content"] = json!(REASONING);
        }
        let finish = match &tool {
            Some(name) => {
                message["content"] = Value::Null;
                message["tool_calls"] = json!([{
                    "id": "call_mock_1", "type": "function",
                    "function": {"name": name, "arguments": "{\"location\":\"Paris\"}"},
                }]);
                "tool_calls"
            }
            None => {
                message["content"] = json!(REPLY);
                a.finish
            }
        };
        let mut body = json!({
            "id": "chatcmpl-mock",
            "created": 1_700_000_000u64,
            "model": a.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage_json(&a),
        });
        if a.flavor != Flavor::Zhipu {
            body["object"] = json!("chat.completion");
        }
        if a.flavor == Flavor::Azure {
            body["prompt_filter_results"] =
                json!([{"prompt_index": 0, "content_filter_results": {}}]);
        }
        return Json(body).into_response();
    }

    let include_usage = req["stream_options"]["include_usage"].as_bool() == Some(true);
    let chunk = |choices: Value| {
        let mut c = json!({"id": "chatcmpl-mock-s", "created": 1_700_000_001u64, "model": a.model, "choices": choices});
        if a.flavor != Flavor::Zhipu {
            c["object"] = json!("chat.completion.chunk");
        }
        c
    };
    let delta = |d: Value| chunk(json!([{"index": 0, "delta": d, "finish_reason": null}]));
    let mut chunks = Vec::new();
    if a.flavor == Flavor::Azure {
        chunks.push(
            json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}),
        );
    }
    chunks.push(delta(json!({"role": "assistant", "content": ""})));
    if a.reasoning {
        let (first, second) = REASONING.split_at(8);
        chunks.push(delta(json!({"reasoning_content": first})));
        chunks.push(delta(json!({"reasoning_content": second})));
    }
    let finish = match &tool {
        Some(name) => {
            chunks.push(delta(
                json!({"tool_calls": [{"index": 0, "id": "call_mock_1", "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
            ));
            chunks.push(delta(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
            ));
            chunks.push(delta(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            ));
            "tool_calls"
        }
        None => {
            for piece in ["Hello from ", "the compat ", "mock!"] {
                chunks.push(delta(json!({"content": piece})));
            }
            a.finish
        }
    };
    let mut last = chunk(json!([{"index": 0, "delta": {}, "finish_reason": finish}]));
    if a.flavor == Flavor::Zhipu {
        last["usage"] = usage_json(&a);
    }
    chunks.push(last);
    if a.flavor != Flavor::Zhipu && include_usage {
        let mut u = chunk(json!([]));
        u["usage"] = usage_json(&a);
        chunks.push(u);
    }
    let mut wire = String::new();
    for c in chunks {
        wire.push_str(&format!("data: {c}\n\n"));
    }
    wire.push_str("data: [DONE]\n\n");
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(wire))
        .unwrap()
}

fn embeddings_answer(req: &Value, model: &str) -> Response {
    let inputs = match &req["input"] {
        Value::Array(items) => items.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, -0.2, 0.3]}))
        .collect();
    Json(json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS},
    }))
    .into_response()
}

fn messages_ok(req: &Value) -> bool {
    req["messages"].as_array().is_some_and(|m| !m.is_empty())
}

// ---------------------------------------------------------------------------
// Azure OpenAI
// ---------------------------------------------------------------------------

fn azure(rest: &str, query: &str, headers: &HeaderMap, body: Option<Value>) -> Response {
    let resource_not_found = || {
        error(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "404", "message": "Resource not found"}}),
        )
    };
    let version = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("api-version="));
    let Some(version) = version else {
        return resource_not_found();
    };
    let well_formed = {
        let date = version.strip_suffix("-preview").unwrap_or(version);
        date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
    };
    if !well_formed {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "BadRequest", "message": "API version not supported"}}),
        );
    }
    if headers.get("api-key").and_then(|v| v.to_str().ok()) != Some(AZURE_KEY) {
        return error(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
        );
    }
    let Some((deployment, op)) = rest.split_once('/') else {
        return resource_not_found();
    };
    if !AZURE_DEPLOYMENTS.contains(&deployment) {
        return error(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}),
        );
    }
    let invalid = |message: &str, param: &str| {
        error(
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}}),
        )
    };
    let Some(req) = body.filter(Value::is_object) else {
        return invalid("We could not parse the JSON body of your request.", "body");
    };
    match op {
        "chat/completions" => {
            if !messages_ok(&req) {
                return invalid("'messages' is a required property", "messages");
            }
            if req.get("stream_options").is_some() && req["stream"] != true {
                return invalid(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    "stream_options",
                );
            }
            if last_user_text(&req).contains(FILTER_TRIGGER) {
                return error(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {
                        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
                        "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                            "hate": {"filtered": false, "severity": "safe"},
                            "jailbreak": {"filtered": true, "detected": true},
                            "self_harm": {"filtered": false, "severity": "safe"},
                            "sexual": {"filtered": false, "severity": "safe"},
                            "violence": {"filtered": false, "severity": "safe"}}}}}),
                );
            }
            chat_answer(
                &req,
                Answer {
                    flavor: Flavor::Azure,
                    model: "gpt-4o-2024-08-06".to_owned(),
                    reasoning: false,
                    finish: "stop",
                },
            )
        }
        "embeddings" => {
            if req.get("input").is_none_or(Value::is_null) {
                return invalid("'input' is a required property", "input");
            }
            embeddings_answer(&req, "text-embedding-3-small")
        }
        "images/generations" => {
            if req["prompt"].as_str().is_none_or(str::is_empty) {
                return invalid("'prompt' is a required property", "prompt");
            }
            let n = req["n"].as_u64().unwrap_or(1);
            let data: Vec<Value> = (0..n)
                .map(|i| json!({"url": format!("https://dalleprodsec.blob.core.windows.net/private/images/mock/generated_{i:02}.png"),
                                 "revised_prompt": req["prompt"], "content_filter_results": {}}))
                .collect();
            Json(json!({"created": 1_700_000_002u64, "data": data})).into_response()
        }
        _ => resource_not_found(),
    }
}

// ---------------------------------------------------------------------------
// Zhipu
// ---------------------------------------------------------------------------

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// `Ok(kind)` for an accepted Zhipu bearer token, else the business code
/// and message of the refusal.
fn zhipu_token(token: &str) -> Result<&'static str, (&'static str, &'static str)> {
    if token == zhipu_key() {
        return Ok("key");
    }
    let invalid = (
        "1002",
        "Authorization Token非法，请确认Authorization Token正确传递。",
    );
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(invalid);
    }
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let (Some(header), Some(claims)) = (decode(parts[0]), decode(parts[1])) else {
        return Err(invalid);
    };
    if header["alg"] != "HS256" || header["sign_type"] != "SIGN" || claims["api_key"] != ZHIPU_ID {
        return Err(invalid);
    }
    let expected = hmac_sha256(
        ZHIPU_SECRET.as_bytes(),
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
    );
    if URL_SAFE_NO_PAD.decode(parts[2]).ok().as_deref() != Some(&expected[..]) {
        return Err(invalid);
    }
    let (Some(exp), Some(_timestamp)) = (claims["exp"].as_u64(), claims["timestamp"].as_u64())
    else {
        return Err(invalid);
    };
    if exp <= now_ms() {
        return Err(("1003", "Authorization Token已过期，请重新生成/获取。"));
    }
    Ok("jwt")
}

fn zhipu_error(status: StatusCode, code: &str, message: &str) -> Response {
    error(status, json!({"error": {"code": code, "message": message}}))
}

fn zhipu(state: &MockState, op: &str, headers: &HeaderMap, body: Option<Value>) -> Response {
    let Some(token) = bearer(headers) else {
        return zhipu_error(
            StatusCode::UNAUTHORIZED,
            "1001",
            "Header中未收到Authorization参数，无法进行身份验证。",
        );
    };
    match zhipu_token(token) {
        Ok(kind) => *state.zhipu_auth.lock().unwrap() = Some(kind),
        Err((code, message)) => return zhipu_error(StatusCode::UNAUTHORIZED, code, message),
    }
    let Some(req) = body.filter(Value::is_object) else {
        return zhipu_error(
            StatusCode::BAD_REQUEST,
            "1210",
            "API 调用参数有误，请检查文档。",
        );
    };
    let model = req["model"].as_str().unwrap_or_default().to_owned();
    if model == BUSY_MODEL {
        return zhipu_error(
            StatusCode::TOO_MANY_REQUESTS,
            "1302",
            "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。",
        );
    }
    if !ZHIPU_MODELS.contains(&model.as_str()) {
        return zhipu_error(
            StatusCode::BAD_REQUEST,
            "1211",
            "模型不存在，请检查模型代码。",
        );
    }
    match op {
        "chat/completions" => {
            if !messages_ok(&req) {
                return zhipu_error(
                    StatusCode::BAD_REQUEST,
                    "1214",
                    "messages 参数非法。请检查文档。",
                );
            }
            if req
                .get("tool_choice")
                .is_some_and(|c| c.as_str() != Some("auto"))
            {
                return zhipu_error(
                    StatusCode::BAD_REQUEST,
                    "1214",
                    "tool_choice 参数非法。请检查文档。",
                );
            }
            let thinking_off = req["thinking"]["type"] == "disabled";
            let finish = if last_user_text(&req).contains("sensitive-topic") {
                "sensitive"
            } else {
                "stop"
            };
            chat_answer(
                &req,
                Answer {
                    flavor: Flavor::Zhipu,
                    reasoning: model == "glm-4.5" && !thinking_off,
                    model,
                    finish,
                },
            )
        }
        "embeddings" => embeddings_answer(&req, &model),
        _ => zhipu_error(StatusCode::NOT_FOUND, "1222", "API 不存在"),
    }
}

// ---------------------------------------------------------------------------
// DashScope
// ---------------------------------------------------------------------------

fn ali(op: &str, headers: &HeaderMap, body: Option<Value>) -> Response {
    let compat_error = |status: StatusCode, code: &str, kind: &str, message: &str| {
        error(
            status,
            json!({"error": {"message": message, "type": kind, "param": null, "code": code},
                   "request_id": "mock-request-id"}),
        )
    };
    if bearer(headers) != Some(ALI_KEY) {
        return compat_error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "invalid_request_error",
            "Incorrect API key provided. ",
        );
    }
    let Some(req) = body.filter(Value::is_object) else {
        return compat_error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter_error",
            "invalid_request_error",
            "The request body is not valid JSON.",
        );
    };
    let model = req["model"].as_str().unwrap_or_default().to_owned();
    if model == BUSY_MODEL {
        return compat_error(
            StatusCode::TOO_MANY_REQUESTS,
            "limit_requests",
            "limit_requests",
            "Requests rate limit exceeded, please try again later.",
        );
    }
    if !ALI_MODELS.contains(&model.as_str()) {
        return compat_error(
            StatusCode::NOT_FOUND,
            "model_not_found",
            "invalid_request_error",
            &format!("The model `{model}` does not exist or you do not have access to it."),
        );
    }
    match op {
        "chat/completions" => {
            if !messages_ok(&req) {
                return compat_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameter_error",
                    "invalid_request_error",
                    "messages must not be empty",
                );
            }
            let stream = req["stream"] == true;
            let thinking = match model.as_str() {
                "qwen3-32b" => req["enable_thinking"] != false,
                _ => req["enable_thinking"] == true,
            };
            if thinking && !stream {
                return compat_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameter_error",
                    "invalid_request_error",
                    "parameter.enable_thinking must be set to false for non-streaming calls",
                );
            }
            chat_answer(
                &req,
                Answer {
                    flavor: Flavor::Ali,
                    model,
                    reasoning: thinking,
                    finish: "stop",
                },
            )
        }
        "embeddings" => embeddings_answer(&req, &model),
        _ => compat_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "invalid_request_error",
            "Not found",
        ),
    }
}

fn ali_rerank(headers: &HeaderMap, body: Option<Value>) -> Response {
    let native_error = |status: StatusCode, code: &str, message: &str| {
        error(
            status,
            json!({"code": code, "message": message, "request_id": "mock-rerank-id"}),
        )
    };
    if bearer(headers) != Some(ALI_KEY) {
        return native_error(
            StatusCode::UNAUTHORIZED,
            "InvalidApiKey",
            "Invalid API-key provided.",
        );
    }
    let Some(req) = body.filter(Value::is_object) else {
        return native_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "Invalid JSON body.",
        );
    };
    let model = req["model"].as_str().unwrap_or_default();
    if model.is_empty() {
        return native_error(
            StatusCode::BAD_REQUEST,
            "BadRequest.EmptyModel",
            "Required parameter \"model\" missing from request.",
        );
    }
    if model == BUSY_MODEL {
        return native_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttling.RateQuota",
            "Requests rate limit exceeded, please try again later.",
        );
    }
    let query = req["input"]["query"].as_str().filter(|q| !q.is_empty());
    let documents = req["input"]["documents"]
        .as_array()
        .filter(|d| !d.is_empty() && d.iter().all(Value::is_string));
    let (Some(query), Some(documents)) = (query, documents) else {
        return native_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "Input should be a object with query and documents (a non-empty list of strings).",
        );
    };
    let words: Vec<String> = query
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let mut scored: Vec<(usize, f64, &str)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let text = d.as_str().unwrap_or_default();
            let lower = text.to_ascii_lowercase();
            let hits = words.iter().filter(|w| lower.contains(w.as_str())).count();
            (i, (hits as f64 + 1.0) / (words.len() as f64 + 2.0), text)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top_n = req["parameters"]["top_n"]
        .as_u64()
        .map_or(scored.len(), |n| n as usize);
    let with_docs = req["parameters"]["return_documents"] == true;
    let results: Vec<Value> = scored
        .into_iter()
        .take(top_n)
        .map(|(index, score, text)| {
            let mut r = json!({"index": index, "relevance_score": score});
            if with_docs {
                r["document"] = json!({"text": text});
            }
            r
        })
        .collect();
    Json(json!({
        "output": {"results": results},
        "usage": {"total_tokens": RERANK_TOKENS},
        "request_id": "mock-rerank-id",
    }))
    .into_response()
}

// ---------------------------------------------------------------------------
// Cloudflare Workers AI
// ---------------------------------------------------------------------------

fn cf_error(status: StatusCode, errors: Value) -> Response {
    error(
        status,
        json!({"success": false, "errors": errors, "messages": [], "result": null}),
    )
}

fn cloudflare(path: &str, rest: &str, headers: &HeaderMap, body: Option<Value>) -> Response {
    let (account, op) = rest.split_once("/ai/v1/").unwrap_or((rest, ""));
    if account.len() != 32 || !account.bytes().all(|b| b.is_ascii_hexdigit()) {
        return cf_error(
            StatusCode::NOT_FOUND,
            json!([{"code": 7003, "message": format!("Could not route to {path}, perhaps your object identifier is invalid?")},
                   {"code": 7000, "message": "No route for that URI"}]),
        );
    }
    if bearer(headers) != Some(CF_TOKEN) {
        return cf_error(
            StatusCode::UNAUTHORIZED,
            json!([{"code": 10000, "message": "Authentication error"}]),
        );
    }
    if account != CF_ACCOUNT {
        return cf_error(
            StatusCode::FORBIDDEN,
            json!([{"code": 10000, "message": "Authentication error"}]),
        );
    }
    let Some(req) = body.filter(Value::is_object) else {
        return cf_error(
            StatusCode::BAD_REQUEST,
            json!([{"code": 3003, "message": "AiError: Request is missing headers or body: body"}]),
        );
    };
    let model = req["model"].as_str().unwrap_or_default().to_owned();
    if model == BUSY_MODEL {
        return cf_error(
            StatusCode::TOO_MANY_REQUESTS,
            json!([{"code": 3040, "message": "AiError: Capacity temporarily exceeded, please try again."}]),
        );
    }
    if !CF_MODELS.contains(&model.as_str()) {
        return cf_error(
            StatusCode::BAD_REQUEST,
            json!([{"code": 5007, "message": format!("AiError: No such model {model} or task")}]),
        );
    }
    match op {
        "chat/completions" => {
            if !messages_ok(&req) {
                return cf_error(
                    StatusCode::BAD_REQUEST,
                    json!([{"code": 3010, "message": "AiError: Invalid or incomplete input for the model: messages"}]),
                );
            }
            chat_answer(
                &req,
                Answer {
                    flavor: Flavor::Cloudflare,
                    model,
                    reasoning: false,
                    finish: "stop",
                },
            )
        }
        "embeddings" => embeddings_answer(&req, &model),
        _ => cf_error(
            StatusCode::NOT_FOUND,
            json!([{"code": 7000, "message": "No route for that URI"}]),
        ),
    }
}

// ---------------------------------------------------------------------------
// Baidu Qianfan
// ---------------------------------------------------------------------------

fn baidu_error(status: StatusCode, code: &str, kind: &str, message: &str) -> Response {
    error(
        status,
        json!({"error": {"code": code, "message": message, "type": kind}, "id": "as-mockerror"}),
    )
}

fn baidu(op: &str, headers: &HeaderMap, body: Option<Value>) -> Response {
    if bearer(headers) != Some(BAIDU_KEY) {
        return baidu_error(
            StatusCode::UNAUTHORIZED,
            "invalid_iam_token",
            "invalid_request_error",
            "IAM Certification failed",
        );
    }
    if let Some(appid) = headers.get("appid")
        && appid.to_str().ok() != Some(BAIDU_APPID)
    {
        return baidu_error(
            StatusCode::FORBIDDEN,
            "no_permission",
            "access_denied",
            "the appid does not belong to this key",
        );
    }
    let Some(req) = body.filter(Value::is_object) else {
        return baidu_error(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "invalid_request_error",
            "Invalid Argument",
        );
    };
    let model = req["model"].as_str().unwrap_or_default().to_owned();
    if model == BUSY_MODEL {
        return baidu_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rpm_rate_limit_exceeded",
            "rate_limit_exceeded",
            "Rpm limit exceeded",
        );
    }
    if !BAIDU_MODELS.contains(&model.as_str()) {
        return baidu_error(
            StatusCode::BAD_REQUEST,
            "invalid_model",
            "invalid_request_error",
            "model is not found",
        );
    }
    match op {
        "chat/completions" => {
            if !messages_ok(&req) {
                return baidu_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_argument",
                    "invalid_request_error",
                    "messages is empty",
                );
            }
            chat_answer(
                &req,
                Answer {
                    flavor: Flavor::Baidu,
                    reasoning: model == "ernie-x1-turbo-32k",
                    model,
                    finish: "stop",
                },
            )
        }
        "embeddings" => embeddings_answer(&req, &model),
        _ => baidu_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "invalid_request_error",
            "Not found",
        ),
    }
}

// ---------------------------------------------------------------------------
// The mock rejects what the providers reject
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: &str, claims: &Value, secret: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(
            secret.as_bytes(),
            format!("{h}.{c}").as_bytes(),
        ));
        format!("{h}.{c}.{sig}")
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn the_mock_refuses_what_the_providers_refuse() {
        let mock = CompatMock::start().await;
        let client = reqwest::Client::new();
        let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
        let post = |path: String, headers: Vec<(&'static str, String)>, body: Value| {
            let mut r = client
                .post(format!("{}{path}", mock.base_url()))
                .json(&body);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.send()
        };
        // Azure: no api-version, no api-key, bearer instead of api-key.
        let r = post(
            "/openai/deployments/gpt-4o-prod/chat/completions".into(),
            vec![("api-key", AZURE_KEY.into())],
            chat.clone(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["message"],
            "Resource not found"
        );
        let r = post(
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21".into(),
            vec![("authorization", format!("Bearer {AZURE_KEY}"))],
            chat.clone(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 401);
        let r = post(
            "/openai/deployments/nope/chat/completions?api-version=2024-10-21".into(),
            vec![("api-key", AZURE_KEY.into())],
            chat.clone(),
        )
        .await
        .unwrap();
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "DeploymentNotFound"
        );

        // Zhipu: expired, wrongly signed and foreign-header JWTs.
        let now = now_ms();
        let header = r#"{"alg":"HS256","sign_type":"SIGN"}"#;
        let zp = |token: String| {
            post(
                "/api/paas/v4/chat/completions".into(),
                vec![("authorization", format!("Bearer {token}"))],
                json!({"model": "glm-4-flash", "messages": [{"role": "user", "content": "hi"}]}),
            )
        };
        let expired = jwt(
            header,
            &json!({"api_key": ZHIPU_ID, "exp": now - 1000, "timestamp": now - 301_000}),
            ZHIPU_SECRET,
        );
        let r = zp(expired).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "1003");
        let forged = jwt(
            header,
            &json!({"api_key": ZHIPU_ID, "exp": now + 60_000, "timestamp": now}),
            "not-the-secret",
        );
        assert_eq!(
            zp(forged).await.unwrap().json::<Value>().await.unwrap()["error"]["code"],
            "1002"
        );
        let typ = jwt(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &json!({"api_key": ZHIPU_ID, "exp": now + 60_000, "timestamp": now}),
            ZHIPU_SECRET,
        );
        assert_eq!(zp(typ).await.unwrap().status(), 401);
        let good = jwt(
            header,
            &json!({"api_key": ZHIPU_ID, "exp": now + 60_000, "timestamp": now}),
            ZHIPU_SECRET,
        );
        assert_eq!(zp(good).await.unwrap().status(), 200);
        assert_eq!(mock.zhipu_auth(), Some("jwt"));

        // Cloudflare: malformed and foreign accounts.
        let cf = |account: &str| {
            post(
                format!("/client/v4/accounts/{account}/ai/v1/chat/completions"),
                vec![("authorization", format!("Bearer {CF_TOKEN}"))],
                json!({"model": "@cf/meta/llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}]}),
            )
        };
        let r = cf("not-an-account").await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], 7003);
        assert_eq!(
            cf("0123456789abcdef0123456789abcdef")
                .await
                .unwrap()
                .status(),
            403
        );
        assert_eq!(cf(CF_ACCOUNT).await.unwrap().status(), 200);

        // DashScope rerank in the OpenAI shape is refused natively.
        let r = post(
            "/api/v1/services/rerank/text-rerank/text-rerank".into(),
            vec![("authorization", format!("Bearer {ALI_KEY}"))],
            json!({"model": "gte-rerank-v2", "query": "q", "documents": ["a"]}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "InvalidParameter");
        assert_eq!(mock.requests(), 11, "every request is counted");
    }
}

//! Protocol mocks of two Chinese providers:
//!
//! [`MockTencent`], Tencent Cloud API 3.0 at `hunyuan.tencentcloudapi.com`:
//! `POST /` with `X-TC-Action: ChatCompletions`, `X-TC-Version:
//! 2023-09-01`. Like the real API it answers every failure with HTTP 200
//! and `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`, and it
//! rejects:
//! - an `Authorization` that is not a `TC3-HMAC-SHA256` credential, a
//!   SecretId it does not know (`AuthFailure.SecretIdNotFound`), a
//!   signature that does not verify (`AuthFailure.SignatureFailure`: the
//!   mock recomputes it from the secret key, the received `Content-Type`
//!   and `Host` headers, the body and `X-TC-Timestamp`), a timestamp more
//!   than five minutes off or a credential date that is not the
//!   timestamp's (`AuthFailure.SignatureExpire`);
//! - another action or version (`InvalidAction`, `NoSuchVersion`);
//! - a body that is not JSON, has a field `ChatCompletionsRequest` does
//!   not know (`UnknownParameter`), or misses `Model` / `Messages`, has a
//!   role other than system / user / assistant / tool, a tool message
//!   without `ToolCallId`, a message with neither `Content` nor
//!   `Contents`, or a tool whose `Parameters` is not a JSON string
//!   (`InvalidParameter`).
//!
//! Model `hunyuan-limited` answers `RequestLimitExceeded`. Otherwise it
//! answers [`HUNYUAN_REPLY`] ([`HUNYUAN_PROMPT_TOKENS`] in,
//! [`HUNYUAN_COMPLETION_TOKENS`] out), or — when the request declares
//! tools, `ToolChoice` is not `none` and the last message is the user's —
//! a `ToolCalls` answer calling the first tool with `{"location":"Paris"}`.
//! `Stream: true` sends the same as SSE `data:` events without the
//! `Response` wrapper, `FinishReason` empty until the last, running
//! `Usage` on each, no `[DONE]`.
//!
//! [`MockCoze`], Coze Chat v3: `POST /v3/chat` with `Authorization: Bearer
//! PAT`. A wrong token gets HTTP 401 `{"code": 4100}`; a body without
//! `bot_id` / `user_id` / `additional_messages`, with a role other than
//! user / assistant, an unknown `content_type`, or an `object_string`
//! content that is not a JSON array of typed items gets HTTP 400
//! `{"code": 4000}`; an unknown bot gets HTTP 200 `{"code": 4200}`, bot
//! `bot-limited` HTTP 429 `{"code": 4013}`. `stream: true` answers the
//! Chat v3 event stream ([`COZE_REPLY`] in three `answer` deltas, a
//! verbose message, `conversation.chat.completed` with usage
//! [`COZE_INPUT_TOKENS`] / [`COZE_OUTPUT_TOKENS`], `done`); `stream: false`
//! answers what Coze does: only a chat object `in_progress`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const HUNYUAN_REPLY: &str = "你好！我是腾讯混元。";
pub const HUNYUAN_PROMPT_TOKENS: u64 = 7;
pub const HUNYUAN_COMPLETION_TOKENS: u64 = 9;
pub const COZE_REPLY: &str = "Hello from a Coze bot!";
pub const COZE_INPUT_TOKENS: u64 = 21;
pub const COZE_OUTPUT_TOKENS: u64 = 6;

/// Top-level fields of `ChatCompletionsRequest` (API version 2023-09-01).
const HUNYUAN_FIELDS: &[&str] = &[
    "Model",
    "Messages",
    "Stream",
    "StreamModeration",
    "TopP",
    "Temperature",
    "EnableEnhancement",
    "Tools",
    "ToolChoice",
    "CustomTool",
    "SearchInfo",
    "Citation",
    "EnableSpeedSearch",
    "EnableMultimedia",
    "EnableDeepSearch",
    "Seed",
    "ForceSearchEnhancement",
    "Stop",
    "EnableRecommendedQuestions",
    "EnableDeepRead",
    "WebSearchOptions",
    "TopicChoice",
];

fn serve(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, server)
}

fn sse(wire: String) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(wire))
        .unwrap()
}

// ---------------------------------------------------------------------------
// Tencent Cloud (Hunyuan)

struct TencentState {
    secret_id: &'static str,
    secret_key: &'static str,
    requests: AtomicUsize,
    last_body: Mutex<Option<Value>>,
    last_headers: Mutex<Option<HeaderMap>>,
}

/// Mock of Tencent Cloud's Hunyuan `ChatCompletions`.
pub struct MockTencent {
    pub addr: SocketAddr,
    state: Arc<TencentState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockTencent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockTencent {
    /// Serve on a loopback port, accepting the key pair `secret_id` /
    /// `secret_key`.
    pub async fn start(secret_id: &'static str, secret_key: &'static str) -> Self {
        let state = Arc::new(TencentState {
            secret_id,
            secret_key,
            requests: AtomicUsize::new(0),
            last_body: Mutex::new(None),
            last_headers: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/", post(tencent))
            .with_state(state.clone());
        let (addr, server) = serve(app);
        Self {
            addr,
            state,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The body of the latest request whose signature verified.
    pub fn last_body(&self) -> Value {
        self.state.last_body.lock().unwrap().clone().unwrap()
    }

    /// A header of the latest request whose signature verified.
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.state
            .last_headers
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Requests received, rejected ones included.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

/// Tencent Cloud's failure envelope, HTTP 200 as the real API answers.
fn tc_error(code: &str, message: &str) -> Response {
    Json(json!({"Response": {
        "Error": {"Code": code, "Message": message},
        "RequestId": uuid::Uuid::new_v4().to_string(),
    }}))
    .into_response()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let mut inner = Sha256::new();
    inner.update(k.iter().map(|b| b ^ 0x36).collect::<Vec<_>>());
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.iter().map(|b| b ^ 0x5c).collect::<Vec<_>>());
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// The UTC day of a Unix timestamp.
fn utc_day(timestamp: i64) -> String {
    let days = timestamp.div_euclid(86_400);
    // Civil-from-days (Howard Hinnant), as the signer must compute it.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// An error code and message to answer in Tencent Cloud's envelope.
type Refusal = (&'static str, String);

fn refuse(code: &'static str, message: &str) -> Refusal {
    (code, message.to_owned())
}

/// Verify the TC3-HMAC-SHA256 signature of a request; the error to answer
/// when it does not hold.
fn verify_tc3(state: &TencentState, headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let authorization = header("authorization");
    let Some(rest) = authorization.strip_prefix("TC3-HMAC-SHA256 ") else {
        return Err(refuse(
            "AuthFailure.InvalidAuthorization",
            "Authorization header is not a TC3-HMAC-SHA256 credential.",
        ));
    };
    let mut credential = "";
    let mut signed_headers = "";
    let mut signature = "";
    for part in rest.split(", ") {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = v,
            Some(("SignedHeaders", v)) => signed_headers = v,
            Some(("Signature", v)) => signature = v,
            _ => {}
        }
    }
    let scope: Vec<&str> = credential.split('/').collect();
    let [secret_id, date, service, "tc3_request"] = scope.as_slice() else {
        return Err(refuse(
            "AuthFailure.InvalidAuthorization",
            "Credential is not SecretId/Date/Service/tc3_request.",
        ));
    };
    if *secret_id != state.secret_id {
        return Err(refuse(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        ));
    }
    let Ok(timestamp) = header("x-tc-timestamp").parse::<i64>() else {
        return Err(refuse(
            "MissingParameter",
            "The request is missing a required parameter `Timestamp`.",
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - timestamp).abs() > 300 || *date != utc_day(timestamp) {
        return Err(refuse(
            "AuthFailure.SignatureExpire",
            "Signature expired. Timestamp and date in the credential must be the current time.",
        ));
    }
    // Only the headers named are signed; this API's clients sign these.
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        canonical_headers.push_str(&format!(
            "{name}:{}\n",
            header(name).trim().to_ascii_lowercase()
        ));
    }
    if !signed_headers.split(';').any(|h| h == "host")
        || !signed_headers.split(';').any(|h| h == "content-type")
    {
        return Err(refuse(
            "AuthFailure.SignatureFailure",
            "SignedHeaders must include content-type and host.",
        ));
    }
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac_sha256(
        format!("TC3{}", state.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let k_service = hmac_sha256(&k_date, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    let expected = hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    if *service != "hunyuan" || signature != expected {
        return Err(refuse(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        ));
    }
    Ok(())
}

/// Why a `ChatCompletionsRequest` is refused, if it is.
fn check_hunyuan_body(body: &Value) -> Result<(), Refusal> {
    let Some(obj) = body.as_object() else {
        return Err(refuse(
            "InvalidParameter",
            "The request body is not a JSON object.",
        ));
    };
    if let Some(unknown) = obj.keys().find(|k| !HUNYUAN_FIELDS.contains(&k.as_str())) {
        return Err(refuse(
            "UnknownParameter",
            &format!("The parameter `{unknown}` is not recognized."),
        ));
    }
    let invalid = |m: &str| Err(refuse("InvalidParameter", m));
    if !obj.get("Model").is_some_and(Value::is_string) {
        return invalid("Model 不能为空");
    }
    let Some(messages) = obj
        .get("Messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return invalid("Messages 不能为空");
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("Role").and_then(Value::as_str).unwrap_or("");
        if !["system", "user", "assistant", "tool"].contains(&role) {
            return invalid(&format!("Messages[{i}].Role `{role}` is not supported"));
        }
        if role == "system" && i != 0 {
            return invalid("system 角色必须位于列表的最开始");
        }
        let content = m.get("Content").is_some_and(Value::is_string);
        let contents = m.get("Contents").is_some_and(Value::is_array);
        let calls = m.get("ToolCalls").is_some_and(Value::is_array);
        if !content && !contents && !calls {
            return invalid(&format!("Messages[{i}].Content 不能为空"));
        }
        if role == "tool" && !m.get("ToolCallId").is_some_and(Value::is_string) {
            return invalid(&format!("Messages[{i}].ToolCallId 不能为空"));
        }
    }
    for (i, tool) in obj
        .get("Tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let params = tool.pointer("/Function/Parameters");
        let parses = params
            .and_then(Value::as_str)
            .is_some_and(|s| serde_json::from_str::<Value>(s).is_ok());
        if tool.get("Type").and_then(Value::as_str) != Some("function")
            || tool
                .pointer("/Function/Name")
                .and_then(Value::as_str)
                .is_none()
            || !parses
        {
            return invalid(&format!(
                "Tools[{i}] must be a function with a Name and Parameters as a JSON string"
            ));
        }
    }
    Ok(())
}

async fn tencent(
    State(state): State<Arc<TencentState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if let Err((code, message)) = verify_tc3(&state, &headers, &body) {
        return tc_error(code, &message);
    }
    let action = headers.get("x-tc-action").and_then(|v| v.to_str().ok());
    if action != Some("ChatCompletions") {
        return tc_error("InvalidAction", "The requested action does not exist.");
    }
    if headers.get("x-tc-version").and_then(|v| v.to_str().ok()) != Some("2023-09-01") {
        return tc_error(
            "NoSuchVersion",
            "The requested version does not exist or is not supported.",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return tc_error("InvalidParameter", "The request body is not valid JSON.");
    };
    *state.last_headers.lock().unwrap() = Some(headers);
    *state.last_body.lock().unwrap() = Some(req.clone());
    if let Err((code, message)) = check_hunyuan_body(&req) {
        return tc_error(code, &message);
    }
    if req["Model"] == "hunyuan-limited" {
        return tc_error(
            "RequestLimitExceeded",
            "Your current request times equals to `21` in a second, which exceeds the frequency limit `20` for a second.",
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let usage = |out: u64| {
        json!({"PromptTokens": HUNYUAN_PROMPT_TOKENS, "CompletionTokens": out,
               "TotalTokens": HUNYUAN_PROMPT_TOKENS + out})
    };
    let tools = req["Tools"].as_array().filter(|t| !t.is_empty());
    let last_role = req["Messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["Role"].as_str())
        .unwrap_or("");
    let call = tools
        .filter(|_| req["ToolChoice"] != "none" && last_role == "user")
        .and_then(|t| t.first())
        .map(|tool| {
            json!({"Id": "call_mock_0", "Type": "function", "Index": 0,
                   "Function": {"Name": tool["Function"]["Name"], "Arguments": "{\"location\":\"Paris\"}"}})
        });
    let note = "以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记";
    if req["Stream"] != true {
        let (message, reason) = match &call {
            Some(c) => (
                json!({"Role": "assistant", "Content": "", "ToolCalls": [c]}),
                "tool_calls",
            ),
            None => (
                json!({"Role": "assistant", "Content": HUNYUAN_REPLY}),
                "stop",
            ),
        };
        return Json(json!({"Response": {
            "RequestId": id, "Note": note, "Created": created, "Id": id,
            "Choices": [{"Index": 0, "Message": message, "FinishReason": reason}],
            "Usage": usage(HUNYUAN_COMPLETION_TOKENS),
        }}))
        .into_response();
    }
    let piece = |delta: Value, reason: &str, out: u64| {
        json!({"Note": note, "Choices": [{"Delta": delta, "FinishReason": reason}],
               "Created": created, "Id": id, "Usage": usage(out)})
    };
    let mut events = Vec::new();
    match &call {
        Some(c) => {
            events.push(piece(
                json!({"Role": "assistant", "Content": "", "ToolCalls": [c]}),
                "",
                HUNYUAN_COMPLETION_TOKENS - 1,
            ));
            events.push(piece(
                json!({"Role": "assistant", "Content": ""}),
                "tool_calls",
                HUNYUAN_COMPLETION_TOKENS,
            ));
        }
        None => {
            let chars: Vec<char> = HUNYUAN_REPLY.chars().collect();
            let third = chars.len().div_ceil(3);
            for (i, part) in chars.chunks(third).enumerate() {
                events.push(piece(
                    json!({"Role": "assistant", "Content": part.iter().collect::<String>()}),
                    "",
                    (i as u64 + 1) * 3,
                ));
            }
            events.push(piece(
                json!({"Role": "assistant", "Content": ""}),
                "stop",
                HUNYUAN_COMPLETION_TOKENS,
            ));
        }
    }
    sse(events.iter().map(|e| format!("data: {e}\n\n")).collect())
}

// ---------------------------------------------------------------------------
// Coze

struct CozeState {
    token: &'static str,
    bot_id: &'static str,
    requests: AtomicUsize,
    last_body: Mutex<Option<Value>>,
}

/// Mock of Coze's Chat v3.
pub struct MockCoze {
    pub addr: SocketAddr,
    state: Arc<CozeState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockCoze {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockCoze {
    /// Serve on a loopback port, accepting the personal access token
    /// `token` and knowing the bot `bot_id` (and `bot-limited`).
    pub async fn start(token: &'static str, bot_id: &'static str) -> Self {
        let state = Arc::new(CozeState {
            token,
            bot_id,
            requests: AtomicUsize::new(0),
            last_body: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/v3/chat", post(coze))
            .with_state(state.clone());
        let (addr, server) = serve(app);
        Self {
            addr,
            state,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The body of the latest request that got past the token check.
    pub fn last_body(&self) -> Value {
        self.state.last_body.lock().unwrap().clone().unwrap()
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

fn coze_error(status: StatusCode, code: i64, msg: &str) -> Response {
    (
        status,
        Json(json!({"code": code, "msg": msg, "detail": {"logid": "20241210152726467C48D89D6DB2F3DF9E"}})),
    )
        .into_response()
}

fn check_coze_body(body: &Value) -> Result<(), String> {
    for field in ["bot_id", "user_id"] {
        if body[field].as_str().is_none_or(str::is_empty) {
            return Err(format!("{field} is required"));
        }
    }
    if !body.get("stream").is_none_or(Value::is_boolean) {
        return Err("stream must be a boolean".into());
    }
    let Some(messages) = body["additional_messages"]
        .as_array()
        .filter(|m| !m.is_empty())
    else {
        return Err("additional_messages is required".into());
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!("additional_messages[{i}].role `{role}` is invalid"));
        }
        let Some(content) = m["content"].as_str() else {
            return Err(format!("additional_messages[{i}].content is required"));
        };
        match m["content_type"].as_str() {
            Some("text") => {}
            Some("object_string") => {
                let items: Vec<Value> = serde_json::from_str(content)
                    .map_err(|_| format!("additional_messages[{i}].content is not a JSON array"))?;
                if items.is_empty() || items.iter().any(|it| !it["type"].is_string()) {
                    return Err(format!(
                        "additional_messages[{i}] object_string items need a type"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "additional_messages[{i}].content_type {other:?} is invalid"
                ));
            }
        }
    }
    Ok(())
}

async fn coze(State(state): State<Arc<CozeState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(state.token) {
        return coze_error(StatusCode::UNAUTHORIZED, 4100, "authentication is invalid");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return coze_error(
            StatusCode::BAD_REQUEST,
            4000,
            "The request body is not valid JSON.",
        );
    };
    *state.last_body.lock().unwrap() = Some(req.clone());
    if let Err(why) = check_coze_body(&req) {
        return coze_error(
            StatusCode::BAD_REQUEST,
            4000,
            &format!("invalid parameter: {why}"),
        );
    }
    let bot = req["bot_id"].as_str().unwrap_or("");
    if bot == "bot-limited" {
        return coze_error(
            StatusCode::TOO_MANY_REQUESTS,
            4013,
            "The request frequency exceeds the limit. Please try again later.",
        );
    }
    if bot != state.bot_id {
        return coze_error(
            StatusCode::OK,
            4200,
            "Bot does not exist or has not been published to the API channel.",
        );
    }
    let chat_id = "7382159487131697202";
    let conversation = "7381473525342978089";
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let chat = |status: &str, usage: Value| {
        json!({"id": chat_id, "conversation_id": conversation, "bot_id": bot, "created_at": created,
               "last_error": {"code": 0, "msg": ""}, "status": status, "usage": usage})
    };
    if req["stream"] != true {
        // The reply is not in a non-streamed answer: it must be polled for.
        return Json(json!({"data": chat("in_progress", Value::Null), "code": 0, "msg": ""}))
            .into_response();
    }
    let message = |kind: &str, content: &str, id: &str| {
        json!({"id": id, "conversation_id": conversation, "bot_id": bot, "role": "assistant",
               "type": kind, "content": content, "content_type": "text", "chat_id": chat_id})
    };
    let zero = json!({"token_count": 0, "output_count": 0, "input_count": 0});
    let mut events: Vec<(&str, String)> = vec![
        (
            "conversation.chat.created",
            chat("created", zero.clone()).to_string(),
        ),
        (
            "conversation.chat.in_progress",
            chat("in_progress", zero).to_string(),
        ),
    ];
    let words: Vec<&str> = COZE_REPLY.split_inclusive(' ').collect();
    for part in words.chunks(words.len().div_ceil(3)) {
        events.push((
            "conversation.message.delta",
            message("answer", &part.concat(), "7382159494123470858").to_string(),
        ));
    }
    events.push((
        "conversation.message.completed",
        message("answer", COZE_REPLY, "7382159494123470858").to_string(),
    ));
    events.push((
        "conversation.message.completed",
        message(
            "verbose",
            "{\"msg_type\":\"generate_answer_finish\",\"data\":\"\"}",
            "7382159494123552778",
        )
        .to_string(),
    ));
    events.push((
        "conversation.chat.completed",
        chat(
            "completed",
            json!({"token_count": COZE_INPUT_TOKENS + COZE_OUTPUT_TOKENS,
                   "output_count": COZE_OUTPUT_TOKENS, "input_count": COZE_INPUT_TOKENS}),
        )
        .to_string(),
    ));
    events.push(("done", "\"[DONE]\"".to_owned()));
    sse(events
        .iter()
        .map(|(name, data)| format!("event:{name}\ndata:{data}\n\n"))
        .collect())
}

//! Protocol mock of Amazon Bedrock Runtime's Converse API:
//! `POST /model/{modelId}/converse` and `POST /model/{modelId}/converse-stream`.
//!
//! It checks what Bedrock checks, and answers failures the way Bedrock does
//! (`{"message": …}` with the type in `x-amzn-ErrorType`):
//! - AWS Signature Version 4: the `authorization` header is parsed and the
//!   signature recomputed from the request as received (method, the raw
//!   path with every segment encoded once more, the signed headers, the
//!   SHA-256 of the body) with the secret key the mock knows. No header →
//!   403 `MissingAuthenticationTokenException`; an unknown access key →
//!   403 `UnrecognizedClientException`; a scope for another region or
//!   service, a missing session token, a clock more than five minutes off,
//!   or a signature that does not match → 403 `InvalidSignatureException`
//!   ("The request signature we calculated does not match…").
//! - The Converse body: not JSON → 400 `SerializationException`; no
//!   `messages` → 400 `ValidationException`; a first message that is not the
//!   user's, roles that do not alternate, an empty `content`, a blank text
//!   block, an unknown content block, an image that is not png/jpeg/gif/webp
//!   base64, `toolUse`/`toolResult` blocks without a `toolConfig`, a
//!   `toolResult` that answers no `toolUse` of the turn before, a tool name
//!   Bedrock would refuse, a `toolChoice` without tools, `maxTokens` < 1 →
//!   400 `ValidationException` with Bedrock's wording.
//!
//! `converse` answers [`BEDROCK_REPLY`]; with `toolChoice` `any` or `tool`
//! (and no tool result to answer) it calls the first (or the named) tool
//! with [`bedrock_tool_input`]; after a tool result it answers
//! [`BEDROCK_AFTER_TOOL`] followed by the result's text. Usage is always
//! [`BEDROCK_INPUT_TOKENS`] in (plus [`BEDROCK_CACHE_READ_TOKENS`] read from
//! and [`BEDROCK_CACHE_WRITE_TOKENS`] written to the prompt cache) and
//! [`BEDROCK_OUTPUT_TOKENS`] out. `converse-stream` answers the same as an
//! AWS eventstream (real prelude and message CRC32s), sent in 7-byte pieces
//! so messages arrive split: `messageStart`, the text in three
//! `contentBlockDelta`s (or a `contentBlockStart` with the tool use and its
//! input in two fragments), `contentBlockStop`, `messageStop`, `metadata`.
//! The model [`THROTTLED_STREAM_MODEL`] streams `messageStart` and then a
//! `throttlingException` exception message.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const BEDROCK_REPLY: &str = "Hello from Bedrock!";
pub const BEDROCK_AFTER_TOOL: &str = "The tool said: ";
pub const BEDROCK_INPUT_TOKENS: u64 = 8;
pub const BEDROCK_CACHE_READ_TOKENS: u64 = 4;
pub const BEDROCK_CACHE_WRITE_TOKENS: u64 = 2;
pub const BEDROCK_OUTPUT_TOKENS: u64 = 6;
pub const THROTTLED_STREAM_MODEL: &str = "throttled.model-v1:0";

/// The input of every tool call the mock makes.
pub fn bedrock_tool_input() -> Value {
    json!({"location": "Paris"})
}

struct MockState {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    region: String,
    requests: AtomicUsize,
    signature_failures: AtomicUsize,
    last_body: Mutex<Option<Value>>,
    last_path: Mutex<Option<String>>,
}

/// Mock of Bedrock Runtime.
pub struct MockBedrock {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockBedrock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockBedrock {
    /// Serve on a loopback port, accepting requests signed for `region`
    /// with these credentials.
    pub async fn start(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        region: &str,
    ) -> Self {
        let state = Arc::new(MockState {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: session_token.map(str::to_owned),
            region: region.to_owned(),
            requests: AtomicUsize::new(0),
            signature_failures: AtomicUsize::new(0),
            last_body: Mutex::new(None),
            last_path: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/model/{model}/{action}", post(handle))
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

    /// The body of the latest request that passed the signature check.
    pub fn last_body(&self) -> Value {
        self.state.last_body.lock().unwrap().clone().unwrap()
    }

    /// The raw path of the latest request, e.g.
    /// `/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse`.
    pub fn last_path(&self) -> String {
        self.state.last_path.lock().unwrap().clone().unwrap()
    }

    /// Requests received, rejected ones included.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests refused for their signature or credentials.
    pub fn signature_failures(&self) -> usize {
        self.state.signature_failures.load(Ordering::SeqCst)
    }
}

/// An error the way Bedrock sends one.
fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let namespace = if kind.ends_with("TokenException")
        || kind == "UnrecognizedClientException"
        || kind == "InvalidSignatureException"
    {
        "com.amazon.coral.service"
    } else {
        "com.amazon.bedrock"
    };
    (
        status,
        [
            ("content-type", "application/json".to_owned()),
            (
                "x-amzn-ErrorType",
                format!("{kind}:http://internal.amazon.com/coral/{namespace}/"),
            ),
            ("x-amzn-RequestId", "mock-request-id".to_owned()),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn validation(message: &str) -> Response {
    aws_error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

async fn handle(
    State(state): State<Arc<MockState>>,
    Path((model, action)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    *state.last_path.lock().unwrap() = Some(uri.path().to_owned());
    if let Err(response) = verify_signature(&state, &method, &uri, &headers, &body) {
        state.signature_failures.fetch_add(1, Ordering::SeqCst);
        return *response;
    }
    let stream = match action.as_str() {
        "converse" => false,
        "converse-stream" => true,
        _ => {
            return aws_error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                "Unknown operation",
            );
        }
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "Unexpected character while parsing the request body",
        );
    };
    *state.last_body.lock().unwrap() = Some(request.clone());
    if let Err(message) = validate(&request) {
        return validation(&message);
    }
    let answer = answer(&request);
    if stream {
        stream_answer(&model, &answer)
    } else {
        let content = match &answer {
            Answer::Text(t) => json!([{ "text": t }]),
            Answer::Tool { id, name } => json!([
                {"toolUse": {"toolUseId": id, "name": name, "input": bedrock_tool_input()}}
            ]),
        };
        let stop = match &answer {
            Answer::Text(_) => "end_turn",
            Answer::Tool { .. } => "tool_use",
        };
        (
            StatusCode::OK,
            [
                ("content-type", "application/json"),
                ("x-amzn-RequestId", "mock-request-id"),
            ],
            json!({
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage(),
                "metrics": {"latencyMs": 42},
            })
            .to_string(),
        )
            .into_response()
    }
}

fn usage() -> Value {
    json!({
        "inputTokens": BEDROCK_INPUT_TOKENS,
        "outputTokens": BEDROCK_OUTPUT_TOKENS,
        "totalTokens": BEDROCK_INPUT_TOKENS + BEDROCK_CACHE_READ_TOKENS + BEDROCK_CACHE_WRITE_TOKENS + BEDROCK_OUTPUT_TOKENS,
        "cacheReadInputTokens": BEDROCK_CACHE_READ_TOKENS,
        "cacheWriteInputTokens": BEDROCK_CACHE_WRITE_TOKENS,
    })
}

// ---------------------------------------------------------------------------
// Signature Version 4, checked independently of the adapter's code.
// ---------------------------------------------------------------------------

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

fn aws_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes().get(8) != Some(&b'T') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
    Some(days * 86_400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?)
}

fn verify_signature(
    state: &MockState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Box<Response>> {
    let forbidden =
        |kind: &str, message: &str| Box::new(aws_error(StatusCode::FORBIDDEN, kind, message));
    let mismatch = || {
        forbidden(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )
    };
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(forbidden(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(forbidden(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    let (Some(credential), Some(signed_headers), Some(signature)) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    ) else {
        return Err(forbidden(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = scope.as_slice() else {
        return Err(forbidden(
            "IncompleteSignatureException",
            "Credential is not of the form ACCESS_KEY/DATE/REGION/SERVICE/aws4_request.",
        ));
    };
    if *access_key != state.access_key_id {
        return Err(forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if *region != state.region || *service != "bedrock" || *terminator != "aws4_request" {
        return Err(forbidden(
            "InvalidSignatureException",
            &format!(
                "Credential should be scoped to a valid region and service: '{}' / 'bedrock'.",
                state.region
            ),
        ));
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.contains(&"host") || !signed.contains(&"x-amz-date") {
        return Err(mismatch());
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(when) = parse_amz_date(amz_date) else {
        return Err(mismatch());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - when).abs() > 300 || !amz_date.starts_with(date) {
        return Err(forbidden(
            "InvalidSignatureException",
            "Signature expired: the request's date is more than 5 minutes from the server's time.",
        ));
    }
    if let Some(token) = &state.session_token {
        let sent = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok());
        if sent != Some(token.as_str()) || !signed.contains(&"x-amz-security-token") {
            return Err(forbidden(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        }
    }
    let mut canonical_headers = String::new();
    for name in &signed {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let expected = expected_signature(
        &state.secret_access_key,
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or_default(),
        &canonical_headers,
        signed_headers,
        body,
        amz_date,
        region,
    );
    if expected == signature {
        Ok(())
    } else {
        Err(mismatch())
    }
}

/// The SigV4 signature of a request (service `bedrock`): the canonical
/// request hashed into the string to sign, signed with the key derived from
/// `secret`, the date, `region` and the service.
#[allow(clippy::too_many_arguments)]
fn expected_signature(
    secret: &str,
    method: &str,
    raw_path: &str,
    query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    body: &[u8],
    amz_date: &str,
    region: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let canonical_uri = raw_path
        .split('/')
        .map(aws_encode)
        .collect::<Vec<_>>()
        .join("/");
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/bedrock/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, "bedrock", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()))
}

impl MockBedrock {
    /// POST `body` to `path` (raw, e.g. `/model/m/converse`) the way an AWS
    /// client would, signed with the mock's own credentials over
    /// `signed_body` (pass `body` for a valid signature), or not signed at
    /// all. For testing the mock itself.
    pub async fn post(
        &self,
        path: &str,
        body: &'static [u8],
        signed_body: Option<&[u8]>,
    ) -> reqwest::Response {
        let url = format!("{}{path}", self.base_url());
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(signed_body) = signed_body {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
            let mut date = String::new();
            // The civil date of `days`, found by walking from a known year.
            let mut year = 2020;
            while days_from_civil(year + 1, 1, 1) <= days {
                year += 1;
            }
            let mut month = 1;
            while month < 12 && days_from_civil(year, month + 1, 1) <= days {
                month += 1;
            }
            let day = days - days_from_civil(year, month, 1) + 1;
            date.push_str(&format!("{year:04}{month:02}{day:02}"));
            let amz_date = format!(
                "{date}T{:02}{:02}{:02}Z",
                secs / 3600,
                (secs % 3600) / 60,
                secs % 60
            );
            let host = self.addr.to_string();
            let canonical_headers =
                format!("content-type:application/json\nhost:{host}\nx-amz-date:{amz_date}\n");
            let signed_headers = "content-type;host;x-amz-date";
            let state = &self.state;
            let signature = expected_signature(
                &state.secret_access_key,
                "POST",
                path,
                "",
                &canonical_headers,
                signed_headers,
                signed_body,
                &amz_date,
                &state.region,
            );
            request = request.header("x-amz-date", &amz_date).header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{date}/{}/bedrock/aws4_request, SignedHeaders={signed_headers}, Signature={signature}",
                    state.access_key_id, state.region
                ),
            );
        }
        request.send().await.unwrap()
    }
}

// ---------------------------------------------------------------------------
// Converse request validation.
// ---------------------------------------------------------------------------

fn validate(request: &Value) -> Result<(), String> {
    if !request.is_object() {
        return Err("Malformed input request, please reformat your input and try again.".into());
    }
    let Some(messages) = request.get("messages") else {
        return Err("1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null".into());
    };
    let Some(messages) = messages.as_array().filter(|m| !m.is_empty()) else {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
    };
    let tools: Vec<&str> = request
        .pointer("/toolConfig/tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/toolSpec/name").and_then(Value::as_str))
        .collect();
    if let Some(config) = request.get("toolConfig") {
        let declared = config.get("tools").and_then(Value::as_array);
        if declared.is_none_or(Vec::is_empty) {
            return Err("The value at toolConfig.tools must contain at least one tool.".into());
        }
        for (i, tool) in declared.into_iter().flatten().enumerate() {
            let name = tool
                .pointer("/toolSpec/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.len() <= 64;
            if !valid {
                return Err(format!(
                    "1 validation error detected: Value '{name}' at 'toolConfig.tools.{}.member.toolSpec.name' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][a-zA-Z0-9_]*",
                    i + 1
                ));
            }
            if !tool
                .pointer("/toolSpec/inputSchema/json")
                .is_some_and(Value::is_object)
            {
                return Err(format!(
                    "The inputSchema of tool {name} must be a JSON schema object."
                ));
            }
        }
        if let Some(choice) = config.get("toolChoice") {
            let ok = choice.get("auto").is_some()
                || choice.get("any").is_some()
                || choice
                    .pointer("/tool/name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| tools.contains(&n));
            if !ok {
                return Err("The toolChoice must name one of the tools in toolConfig.".into());
            }
        }
    }
    if let Some(max) = request.pointer("/inferenceConfig/maxTokens")
        && max.as_u64().is_none_or(|m| m < 1)
    {
        return Err("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1".into());
    }
    for (i, block) in request
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if block
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(format!(
                "The text field in the SystemContentBlock object at system.{i} is blank. Add text to the text field, and try again."
            ));
        }
    }
    let mut previous_tool_uses: Vec<String> = Vec::new();
    let mut expected_role = "user";
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!(
                "1 validation error detected: Value '{role}' at 'messages.{}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]",
                i + 1
            ));
        }
        if role != expected_role {
            return Err(if i == 0 {
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.".into()
            } else {
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into()
            });
        }
        expected_role = if role == "user" { "assistant" } else { "user" };
        let Some(content) = message
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
        else {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            ));
        };
        let mut tool_uses = Vec::new();
        for (j, block) in content.iter().enumerate() {
            let keys: Vec<&String> = block
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            let [key] = keys.as_slice() else {
                return Err(format!(
                    "The ContentBlock object at messages.{i}.content.{j} must set exactly one of its members."
                ));
            };
            let value = &block[key.as_str()];
            match key.as_str() {
                "text" => {
                    if value.as_str().is_none_or(|t| t.trim().is_empty()) {
                        return Err(format!(
                            "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
                        ));
                    }
                }
                "image" => {
                    let format = value.get("format").and_then(Value::as_str);
                    if !matches!(format, Some("png" | "jpeg" | "gif" | "webp")) {
                        return Err(format!(
                            "1 validation error detected: Value at 'messages.{}.member.content.{}.member.image.format' failed to satisfy constraint: Member must satisfy enum value set: [png, gif, webp, jpeg]",
                            i + 1,
                            j + 1
                        ));
                    }
                    let bytes = value.pointer("/source/bytes").and_then(Value::as_str);
                    if bytes.is_none_or(|b| {
                        base64::engine::general_purpose::STANDARD.decode(b).is_err()
                    }) {
                        return Err(format!(
                            "Invalid base64 image data at messages.{i}.content.{j}."
                        ));
                    }
                }
                "toolUse" => {
                    if request.get("toolConfig").is_none() {
                        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
                    }
                    if role != "assistant" || !value.get("input").is_some_and(Value::is_object) {
                        return Err(format!(
                            "The toolUse block at messages.{i}.content.{j} is malformed."
                        ));
                    }
                    tool_uses.push(
                        value
                            .get("toolUseId")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                "toolResult" => {
                    if request.get("toolConfig").is_none() {
                        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
                    }
                    let id = value
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if role != "user" || !previous_tool_uses.iter().any(|u| u == id) {
                        return Err(format!(
                            "Expected toolResult blocks at messages.{i}.content to answer toolUse ids of the previous turn; unknown id {id}."
                        ));
                    }
                    if value
                        .get("content")
                        .and_then(Value::as_array)
                        .is_none_or(Vec::is_empty)
                    {
                        return Err(format!(
                            "The content field in the toolResult at messages.{i}.content.{j} is empty."
                        ));
                    }
                }
                "document" | "reasoningContent" | "cachePoint" | "video" | "guardContent" => {}
                other => {
                    return Err(format!(
                        "Unknown content block `{other}` at messages.{i}.content.{j}."
                    ));
                }
            }
        }
        previous_tool_uses = tool_uses;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Answers.
// ---------------------------------------------------------------------------

enum Answer {
    Text(String),
    Tool { id: String, name: String },
}

fn answer(request: &Value) -> Answer {
    let last = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last());
    let result_text: Option<String> = last
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|b| {
            b.pointer("/toolResult/content/0/text")
                .and_then(Value::as_str)
        })
        .map(str::to_owned);
    if let Some(text) = result_text {
        return Answer::Text(format!("{BEDROCK_AFTER_TOOL}{text}"));
    }
    let choice = request.pointer("/toolConfig/toolChoice");
    let forced = choice.is_some_and(|c| c.get("any").is_some() || c.get("tool").is_some());
    if forced {
        let name = choice
            .and_then(|c| c.pointer("/tool/name"))
            .or_else(|| request.pointer("/toolConfig/tools/0/toolSpec/name"))
            .and_then(Value::as_str)
            .unwrap_or("tool")
            .to_owned();
        return Answer::Tool {
            id: "tooluse_mock0123456789abcdef".to_owned(),
            name,
        };
    }
    Answer::Text(BEDROCK_REPLY.to_owned())
}

/// One eventstream message: string headers, payload, both CRC32s.
pub fn eventstream_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(u8::try_from(name.len()).unwrap());
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = u32::try_from(16 + h.len() + payload.len()).unwrap();
    let mut m = Vec::new();
    m.extend_from_slice(&total.to_be_bytes());
    m.extend_from_slice(&u32::try_from(h.len()).unwrap().to_be_bytes());
    m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
    m.extend_from_slice(&h);
    m.extend_from_slice(payload);
    m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
    m
}

/// A ConverseStream event as Bedrock frames it (with its `p` padding).
fn event(kind: &str, mut payload: Value) -> Vec<u8> {
    payload["p"] =
        json!("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[..(kind.len() * 3) % 36].to_owned());
    eventstream_message(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

fn stream_answer(model: &str, answer: &Answer) -> Response {
    let mut bytes = event("messageStart", json!({"role": "assistant"}));
    if model == THROTTLED_STREAM_MODEL {
        bytes.extend(eventstream_message(
            &[
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            br#"{"message":"Too many requests, please wait before trying again."}"#,
        ));
    } else {
        let stop = match answer {
            Answer::Text(text) => {
                let cut = |n: usize| text.char_indices().nth(n).map_or(text.len(), |(i, _)| i);
                let (a, b) = (cut(5), cut(11));
                for piece in [&text[..a], &text[a..b], &text[b..]] {
                    bytes.extend(event(
                        "contentBlockDelta",
                        json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
                    ));
                }
                bytes.extend(event("contentBlockStop", json!({"contentBlockIndex": 0})));
                "end_turn"
            }
            Answer::Tool { id, name } => {
                bytes.extend(event(
                    "contentBlockStart",
                    json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
                ));
                let input = bedrock_tool_input().to_string();
                let (a, b) = input.split_at(input.len() / 2);
                for piece in [a, b] {
                    bytes.extend(event(
                        "contentBlockDelta",
                        json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}),
                    ));
                }
                bytes.extend(event("contentBlockStop", json!({"contentBlockIndex": 0})));
                "tool_use"
            }
        };
        bytes.extend(event("messageStop", json!({"stopReason": stop})));
        bytes.extend(event(
            "metadata",
            json!({"usage": usage(), "metrics": {"latencyMs": 42}}),
        ));
    }
    // Seven bytes at a time: messages arrive split anywhere.
    let pieces: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (
        StatusCode::OK,
        [
            ("content-type", "application/vnd.amazon.eventstream"),
            ("x-amzn-RequestId", "mock-request-id"),
        ],
        Body::from_stream(futures_util::stream::iter(pieces)),
    )
        .into_response()
}

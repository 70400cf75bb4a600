//! Protocol mock of Google's Gemini API (`generativelanguage.googleapis.com`):
//! `POST /v1beta/models/{model}:{action}` for `generateContent`,
//! `streamGenerateContent`, `embedContent` and `batchEmbedContents`.
//!
//! It rejects what Gemini rejects, in Gemini's envelope
//! (`{"error": {"code", "message", "status", "details"}}`):
//! - a missing or wrong key (`x-goog-api-key`, or `?key=`): 400
//!   `INVALID_ARGUMENT` with the `ErrorInfo` reason `API_KEY_INVALID`, as
//!   Gemini answers a bad key;
//! - a body that is not JSON, or has a top-level field
//!   `GenerateContentRequest` does not know (`messages`, `model_name`, …);
//! - missing or empty `contents`, a turn with no parts, a role other than
//!   `user` / `model` (a `system` turn included);
//! - on Gemini 3 models (`gemini-3…`), a replayed `functionCall` without a
//!   `thoughtSignature`;
//! - embeddings without content, and batch requests whose `model` differs
//!   from the URL's.
//!
//! `generateContent` answers [`GEMINI_REPLY`] with [`GEMINI_PROMPT_TOKENS`]
//! in and [`GEMINI_OUTPUT_TOKENS`] out; when the request declares functions
//! and `toolConfig.functionCallingConfig.mode` is `ANY`, it answers a
//! `functionCall` of the first declared function with
//! `{"location": "Paris"}` instead. `streamGenerateContent?alt=sse` sends
//! the reply as server-sent events the way Gemini does (`data: {…}\r\n\r\n`:
//! three text chunks, then a last chunk with `finishReason: STOP` and the
//! full `usageMetadata`, then the connection closes — no `[DONE]`); without
//! `alt=sse` it answers the same chunks as one JSON array.
//!
//! ```ignore
//! let mock = MockGemini::start("gm-key").await;
//! // ... a channel {"type": "gemini", "base_url": mock.base_url(), ...} ...
//! assert_eq!(mock.last_path(), "/v1beta/models/gemini-2.5-flash:generateContent");
//! assert_eq!(mock.last_body()["contents"][0]["role"], "user");
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

/// The text every `generateContent` answers.
pub const GEMINI_REPLY: &str = "Hello from Gemini!";
/// `usageMetadata.promptTokenCount` of every answer.
pub const GEMINI_PROMPT_TOKENS: u64 = 9;
/// `usageMetadata.candidatesTokenCount` of every answer.
pub const GEMINI_OUTPUT_TOKENS: u64 = 5;
/// Values in an embedding when the request sets no `outputDimensionality`.
pub const GEMINI_EMBEDDING_DIMENSIONS: usize = 8;

/// Top-level fields of a `GenerateContentRequest` (Gemini reads JSON
/// field names in lowerCamelCase and in snake_case).
const REQUEST_FIELDS: &[&str] = &[
    "contents",
    "tools",
    "toolConfig",
    "tool_config",
    "safetySettings",
    "safety_settings",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "cachedContent",
    "cached_content",
    "model",
];

struct MockState {
    api_key: &'static str,
    requests: AtomicUsize,
    last_body: Mutex<Option<Value>>,
    last_path: Mutex<Option<String>>,
}

/// Mock of the Gemini API.
pub struct MockGemini {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockGemini {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockGemini {
    /// Serve on a loopback port, accepting `api_key`.
    pub async fn start(api_key: &'static str) -> Self {
        let state = Arc::new(MockState {
            api_key,
            requests: AtomicUsize::new(0),
            last_body: Mutex::new(None),
            last_path: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/v1beta/models/{target}", post(handle))
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

    /// The base URL a channel uses (no version: the adapter adds `/v1beta`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The JSON body of the latest request that got past the key check.
    pub fn last_body(&self) -> Value {
        self.state.last_body.lock().unwrap().clone().unwrap()
    }

    /// The path (and query, if any) of the latest request, e.g.
    /// `/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`.
    pub fn last_path(&self) -> String {
        self.state.last_path.lock().unwrap().clone().unwrap()
    }

    /// Requests received, rejected ones included.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

/// An error in Gemini's envelope.
fn gemini_error(code: StatusCode, status: &str, message: &str, details: Value) -> Response {
    let mut error = json!({"code": code.as_u16(), "message": message, "status": status});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    (code, Json(json!({ "error": error }))).into_response()
}

fn invalid(message: &str) -> Response {
    gemini_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        message,
        json!([]),
    )
}

/// What Gemini answers a missing or wrong key.
fn api_key_invalid() -> Response {
    let message = "API key not valid. Please pass a valid API key.";
    gemini_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        message,
        json!([
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message
            }
        ]),
    )
}

/// A field by its lowerCamelCase or snake_case name.
fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

async fn handle(
    State(state): State<Arc<MockState>>,
    Path(target): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    *state.last_path.lock().unwrap() = Some(
        uri.path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
    );
    let presented = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.get("key").map(String::as_str));
    if presented != Some(state.api_key) {
        return api_key_invalid();
    }
    let Some((model, action)) = target.split_once(':') else {
        return gemini_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!(
                "models/{target} is not found for API version v1beta, or is not supported for generateContent."
            ),
            json!([]),
        );
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return invalid("Invalid JSON payload received. Unexpected token.");
    };
    if !req.is_object() {
        return invalid(
            "Invalid JSON payload received. Unknown name \"\": Root element must be a message.",
        );
    }
    *state.last_body.lock().unwrap() = Some(req.clone());
    match action {
        "generateContent" => generate(model, &req, Answer::Whole),
        "streamGenerateContent" if query.get("alt").map(String::as_str) == Some("sse") => {
            generate(model, &req, Answer::Sse)
        }
        "streamGenerateContent" => generate(model, &req, Answer::Array),
        "embedContent" => embed_content(model, &req),
        "batchEmbedContents" => batch_embed_contents(model, &req),
        other => gemini_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Method `{other}` not found."),
            json!([]),
        ),
    }
}

/// How a generation is answered.
#[derive(Clone, Copy)]
enum Answer {
    /// `generateContent`: one response.
    Whole,
    /// `streamGenerateContent?alt=sse`: server-sent events.
    Sse,
    /// `streamGenerateContent` without `alt=sse`: a JSON array of chunks.
    Array,
}

/// Check a `GenerateContentRequest` as Gemini does; a refusal is the
/// message of a 400 `INVALID_ARGUMENT`.
fn check_generate(model: &str, req: &Value) -> Result<(), String> {
    if let Some(unknown) = req
        .as_object()
        .and_then(|o| o.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())))
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        ));
    }
    let contents = req
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified\n")?;
    let signed = model.starts_with("gemini-3");
    for (i, content) in contents.iter().enumerate() {
        if let Some(role) = content.get("role")
            && !matches!(role.as_str(), Some("user" | "model"))
        {
            return Err("Please use a valid role: user, model.".to_owned());
        }
        let parts = content
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                format!(
                    "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
                )
            })?;
        if signed
            && content.get("role").and_then(Value::as_str) == Some("model")
            && let Some(first) = parts
                .iter()
                .position(|p| field(p, "functionCall", "function_call").is_some())
            && field(&parts[first], "thoughtSignature", "thought_signature").is_none()
        {
            let name = field(&parts[first], "functionCall", "function_call")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Err(format!(
                "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                first + 1
            ));
        }
    }
    Ok(())
}

/// The first declared function, when the request forces a call (mode ANY).
fn forced_function(req: &Value) -> Option<String> {
    let mode = field(req, "toolConfig", "tool_config")
        .and_then(|c| field(c, "functionCallingConfig", "function_calling_config"))
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)?;
    if mode != "ANY" {
        return None;
    }
    req.get("tools")?
        .as_array()?
        .iter()
        .filter_map(|t| field(t, "functionDeclarations", "function_declarations"))
        .filter_map(Value::as_array)
        .flatten()
        .find_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
}

fn full_usage() -> Value {
    json!({
        "promptTokenCount": GEMINI_PROMPT_TOKENS,
        "candidatesTokenCount": GEMINI_OUTPUT_TOKENS,
        "totalTokenCount": GEMINI_PROMPT_TOKENS + GEMINI_OUTPUT_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": GEMINI_PROMPT_TOKENS}]
    })
}

/// One `GenerateContentResponse`.
fn response_chunk(model: &str, parts: Value, finish: Option<&str>, usage: Value) -> Value {
    let mut candidate = Map::new();
    candidate.insert("content".into(), json!({"parts": parts, "role": "model"}));
    if let Some(reason) = finish {
        candidate.insert("finishReason".into(), json!(reason));
    }
    candidate.insert("index".into(), json!(0));
    json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": "mock-gemini-response",
    })
}

fn generate(model: &str, req: &Value, answer: Answer) -> Response {
    if let Err(refusal) = check_generate(model, req) {
        return invalid(&refusal);
    }
    let chunks: Vec<Value> = if let Some(name) = forced_function(req) {
        let mut call = json!({"functionCall": {"name": name, "args": {"location": "Paris"}}});
        if model.starts_with("gemini-3") {
            call["thoughtSignature"] = json!("bW9jay1zaWduYXR1cmU=");
        }
        vec![response_chunk(
            model,
            json!([call]),
            Some("STOP"),
            full_usage(),
        )]
    } else if matches!(answer, Answer::Whole) {
        vec![response_chunk(
            model,
            json!([{"text": GEMINI_REPLY}]),
            Some("STOP"),
            full_usage(),
        )]
    } else {
        let early = json!({
            "promptTokenCount": GEMINI_PROMPT_TOKENS,
            "totalTokenCount": GEMINI_PROMPT_TOKENS,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": GEMINI_PROMPT_TOKENS}]
        });
        let mut chunks: Vec<Value> = GEMINI_REPLY
            .split_inclusive(' ')
            .map(|piece| response_chunk(model, json!([{"text": piece}]), None, early.clone()))
            .collect();
        chunks.push(response_chunk(
            model,
            json!([{"text": ""}]),
            Some("STOP"),
            full_usage(),
        ));
        chunks
    };
    match answer {
        Answer::Whole => Json(chunks.into_iter().next().unwrap_or(Value::Null)).into_response(),
        Answer::Array => Json(Value::Array(chunks)).into_response(),
        Answer::Sse => {
            let mut wire = String::new();
            for chunk in chunks {
                wire.push_str(&format!("data: {chunk}\r\n\r\n"));
            }
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(wire))
                .unwrap()
        }
    }
}

/// A deterministic embedding of `text` with `dimensions` values.
fn embedding(text: &str, dimensions: usize) -> Value {
    let seed = text
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let values: Vec<f64> = (0..dimensions)
        .map(|i| {
            let x = seed.wrapping_add(i as u64).wrapping_mul(2_654_435_761) % 2000;
            (x as f64 - 1000.0) / 1000.0
        })
        .collect();
    json!({ "values": values })
}

/// The text of an `EmbedContentRequest`, or why it is refused.
fn embed_text(req: &Value, at: &str) -> Result<String, String> {
    let parts = req
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("* {at}content: content is not specified\n"))?;
    Ok(parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect())
}

fn dimensions(req: &Value) -> usize {
    field(req, "outputDimensionality", "output_dimensionality")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(GEMINI_EMBEDDING_DIMENSIONS)
}

fn embed_content(model: &str, req: &Value) -> Response {
    if let Some(named) = req.get("model").and_then(Value::as_str)
        && named != format!("models/{model}")
    {
        return invalid(&format!(
            "* EmbedContentRequest.model: the model `{named}` does not match `models/{model}` in the URL\n"
        ));
    }
    match embed_text(req, "EmbedContentRequest.") {
        Ok(text) => Json(json!({"embedding": embedding(&text, dimensions(req))})).into_response(),
        Err(refusal) => invalid(&refusal),
    }
}

fn batch_embed_contents(model: &str, req: &Value) -> Response {
    let Some(requests) = req
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
    else {
        return invalid("* BatchEmbedContentsRequest.requests: requests is not specified\n");
    };
    let wanted = format!("models/{model}");
    let mut embeddings = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if r.get("model").and_then(Value::as_str) != Some(wanted.as_str()) {
            return invalid(&format!(
                "* BatchEmbedContentsRequest.requests[{i}].model: the model of each request must match the model of the batch (`{wanted}`)\n"
            ));
        }
        match embed_text(r, &format!("BatchEmbedContentsRequest.requests[{i}].")) {
            Ok(text) => embeddings.push(embedding(&text, dimensions(r))),
            Err(refusal) => return invalid(&refusal),
        }
    }
    Json(json!({ "embeddings": embeddings })).into_response()
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

    async fn post(
        mock: &MockGemini,
        path: &str,
        key: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut request = client()
            .post(format!("{}{path}", mock.base_url()))
            .json(&body);
        if let Some(key) = key {
            request = request.header("x-goog-api-key", key);
        }
        request.send().await.unwrap()
    }

    async fn error_of(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap()["error"].clone(),
        )
    }

    fn hello() -> Value {
        json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
    }

    const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

    #[tokio::test]
    async fn the_key_is_checked_in_the_header_or_the_query() {
        let mock = MockGemini::start("gm-key").await;
        for key in [None, Some("wrong")] {
            let (status, error) = error_of(post(&mock, GENERATE, key, hello()).await).await;
            assert_eq!(status, 400);
            assert_eq!(error["status"], "INVALID_ARGUMENT");
            assert_eq!(error["details"][0]["reason"], "API_KEY_INVALID");
        }
        let r = post(&mock, &format!("{GENERATE}?key=gm-key"), None, hello()).await;
        assert_eq!(r.status(), 200);
        let r = post(&mock, GENERATE, Some("gm-key"), hello()).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["text"],
            GEMINI_REPLY
        );
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");
        assert_eq!(v["usageMetadata"]["promptTokenCount"], GEMINI_PROMPT_TOKENS);
        assert_eq!(
            v["usageMetadata"]["candidatesTokenCount"],
            GEMINI_OUTPUT_TOKENS
        );
        assert_eq!(v["modelVersion"], "gemini-2.5-flash");
        assert_eq!(mock.last_path(), GENERATE);
        assert_eq!(mock.last_body(), hello());
        assert_eq!(mock.requests(), 4);
    }

    #[tokio::test]
    async fn malformed_requests_are_refused_as_gemini_does() {
        let mock = MockGemini::start("gm-key").await;
        for (body, expected) in [
            (json!({}), "contents is not specified"),
            (json!({"contents": []}), "contents is not specified"),
            (
                json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}),
                "valid role",
            ),
            (
                json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
                "valid role",
            ),
            (
                json!({"contents": [{"role": "user", "parts": []}]}),
                "must not be empty",
            ),
            (
                json!({"model": "m", "messages": [], "contents": [{"parts": [{"text": "x"}]}]}),
                "Unknown name \"messages\"",
            ),
        ] {
            let (status, error) =
                error_of(post(&mock, GENERATE, Some("gm-key"), body.clone()).await).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(error["status"], "INVALID_ARGUMENT");
            assert!(
                error["message"].as_str().unwrap().contains(expected),
                "{body}: {error}"
            );
        }
        // Snake_case field names and a role-less single turn are fine.
        let ok = json!({"contents": [{"parts": [{"text": "x"}]}], "generation_config": {"max_output_tokens": 5}});
        assert_eq!(
            post(&mock, GENERATE, Some("gm-key"), ok).await.status(),
            200
        );
        let r = client()
            .post(format!("{}{GENERATE}", mock.base_url()))
            .header("x-goog-api-key", "gm-key")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let (status, _) = error_of(
            post(
                &mock,
                "/v1beta/models/gemini-2.5-flash:predict",
                Some("gm-key"),
                hello(),
            )
            .await,
        )
        .await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn streams_are_sse_with_alt_sse_and_an_array_without() {
        let mock = MockGemini::start("gm-key").await;
        let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
        let r = post(&mock, path, Some("gm-key"), hello()).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let text = r.text().await.unwrap();
        assert!(text.ends_with("\r\n\r\n") && !text.contains("[DONE]"));
        let events: Vec<Value> = text
            .split("\r\n\r\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(events.len(), 4);
        let joined: String = events
            .iter()
            .filter_map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str())
            .collect();
        assert_eq!(joined, GEMINI_REPLY);
        assert!(
            events[..3]
                .iter()
                .all(|e| e["candidates"][0].get("finishReason").is_none())
        );
        let last = &events[3];
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            last["usageMetadata"]["candidatesTokenCount"],
            GEMINI_OUTPUT_TOKENS
        );
        assert_eq!(mock.last_path(), path);

        let r = post(
            &mock,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            Some("gm-key"),
            hello(),
        )
        .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v.as_array().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn forced_function_calls_and_gemini_3_signatures() {
        let mock = MockGemini::start("gm-key").await;
        let body = json!({
            "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": {"type": "object"}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}
        });
        let v: Value = post(&mock, GENERATE, Some("gm-key"), body.clone())
            .await
            .json()
            .await
            .unwrap();
        let part = &v["candidates"][0]["content"]["parts"][0];
        assert_eq!(
            part["functionCall"],
            json!({"name": "get_weather", "args": {"location": "Paris"}})
        );
        assert!(part.get("thoughtSignature").is_none());

        let gemini3 = "/v1beta/models/gemini-3-pro-preview:generateContent";
        let v: Value = post(&mock, gemini3, Some("gm-key"), body)
            .await
            .json()
            .await
            .unwrap();
        assert!(v["candidates"][0]["content"]["parts"][0]["thoughtSignature"].is_string());
        let replay = |signature: Option<&str>| {
            let mut call =
                json!({"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}});
            if let Some(s) = signature {
                call["thoughtSignature"] = json!(s);
            }
            json!({"contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                {"role": "model", "parts": [call]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]}
            ]})
        };
        let (status, error) =
            error_of(post(&mock, gemini3, Some("gm-key"), replay(None)).await).await;
        assert_eq!(status, 400);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("thought_signature")
        );
        let r = post(
            &mock,
            gemini3,
            Some("gm-key"),
            replay(Some("skip_thought_signature_validator")),
        )
        .await;
        assert_eq!(r.status(), 200);
        // Older models take replays without signatures.
        assert_eq!(
            post(&mock, GENERATE, Some("gm-key"), replay(None))
                .await
                .status(),
            200
        );
    }

    #[tokio::test]
    async fn embeddings_single_and_batched() {
        let mock = MockGemini::start("gm-key").await;
        let one = "/v1beta/models/gemini-embedding-001:embedContent";
        let v: Value = post(
            &mock,
            one,
            Some("gm-key"),
            json!({"content": {"parts": [{"text": "hello"}]}}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            v["embedding"]["values"].as_array().unwrap().len(),
            GEMINI_EMBEDDING_DIMENSIONS
        );
        let (status, _) = error_of(post(&mock, one, Some("gm-key"), json!({})).await).await;
        assert_eq!(status, 400);

        let batch = "/v1beta/models/gemini-embedding-001:batchEmbedContents";
        let request = |model: &str, text: &str| json!({"model": model, "content": {"parts": [{"text": text}]}, "outputDimensionality": 3});
        let v: Value = post(
            &mock,
            batch,
            Some("gm-key"),
            json!({"requests": [request("models/gemini-embedding-001", "a"), request("models/gemini-embedding-001", "b")]}),
        )
        .await
        .json()
        .await
        .unwrap();
        let embeddings = v["embeddings"].as_array().unwrap();
        assert_eq!(embeddings.len(), 2);
        assert_eq!(embeddings[0]["values"].as_array().unwrap().len(), 3);
        assert_ne!(embeddings[0], embeddings[1]);
        for body in [
            json!({"requests": []}),
            json!({"requests": [request("models/other", "a")]}),
        ] {
            let (status, error) = error_of(post(&mock, batch, Some("gm-key"), body).await).await;
            assert_eq!(status, 400);
            assert_eq!(error["status"], "INVALID_ARGUMENT");
        }
    }
}

//! Test harness: the real gateway in-process on its own database, and a mock
//! OpenAI upstream that speaks the real wire protocol (and rejects what the
//! real API rejects).
//!
//! The database backend comes from `TEST_DATABASE` (`sqlite`, the default,
//! `postgres` or `mysql`); each app gets a database of its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sqlx::Connection;
use transit::config::Secret;
use transit::{App, Config};

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct TestApp {
    pub addr: SocketAddr,
    pub app: App,
    pub client: reqwest::Client,
    pub database_url: String,
    _data_dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn backend() -> String {
    std::env::var("TEST_DATABASE").unwrap_or_else(|_| "sqlite".to_owned())
}

/// A fresh, empty database for one app, on the backend under test.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    let name = format!(
        "transit_t_{}",
        uuid::Uuid::new_v4().simple().to_string().get(..16).unwrap()
    );
    let base = match backend().as_str() {
        "sqlite" => return format!("sqlite://{}?mode=rwc", dir.join("transit.db").display()),
        "postgres" => std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned()),
        "mysql" => std::env::var("TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned()),
        other => panic!("unknown TEST_DATABASE {other:?}"),
    };
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&format!("{base}/test"))
        .await
        .unwrap_or_else(|e| panic!("the {} server must be reachable: {e}", backend()));
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .unwrap();
    format!("{base}/{name}")
}

pub fn test_config(dir: &std::path::Path, database_url: &str) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        database_url: Some(Secret::new(database_url)),
        admin_token: Some(Secret::new(ADMIN_TOKEN)),
        // Instances sharing a database must share the key of its secrets.
        secret_key: Some(Secret::new("test-secret-key")),
        body_limit_bytes: 256 * 1024,
        ..Config::default()
    };
    config.adapters.call_timeout_ms = 300;
    config.adapters.max_instances = 64;
    // One compiled-adapter cache for the whole test run.
    config.adapters.cache_dir =
        Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-adapter-cache"));
    config.relay.channel_refresh_ms = 200;
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    spawn_app_on(dir, url, tweak).await
}

/// A second (or further) instance sharing `database_url`.
pub async fn spawn_app_on(
    dir: tempfile::TempDir,
    database_url: String,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(dir.path(), &database_url);
    tweak(&mut config);
    let app = transit::build_app(config).await.expect("app builds");
    // Unless a test sets prices, every model costs one unit per token.
    app.state.billing.set_pricing(flat_pricing()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(transit::server::serve(
        listener,
        app.router.clone(),
        std::future::pending(),
        app.state.shutdown.clone(),
    ));
    TestApp {
        addr,
        app,
        client: reqwest::Client::new(),
        database_url,
        _data_dir: dir,
        server,
    }
}

impl TestApp {
    /// Stop this instance but keep its data directory (where a SQLite
    /// database lives) for the instance that follows it.
    pub fn stop_keeping_data(mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self._data_dir, tempfile::tempdir().unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("X-Admin-Token", ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_patch(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .header("X-Admin-Token", ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("X-Admin-Token", ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// Create a channel; returns its id.
    pub async fn channel(&self, body: Value) -> i64 {
        let r = self.admin_post("/admin/channels", body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// Create a user with `quota` and an unlimited token; returns (user id, key).
    pub async fn user_with_key(&self, quota: i64) -> (i64, String) {
        let name = format!("u{}", uuid::Uuid::new_v4().simple());
        let r = self
            .admin_post("/admin/users", json!({"username": name, "quota": quota}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let user: Value = r.json().await.unwrap();
        let id = user["id"].as_i64().unwrap();
        let key = self.key_for(id, json!({})).await;
        (id, key)
    }

    pub async fn key_for(&self, user_id: i64, extra: Value) -> String {
        let mut body = json!({"user_id": user_id, "name": "test"});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let r = self.admin_post("/admin/tokens", body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["key"].as_str().unwrap().to_owned()
    }

    pub async fn chat(&self, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// An admin GET's JSON answer.
    pub async fn admin_json(&self, path: &str) -> Value {
        self.admin_get(path).await.json().await.unwrap()
    }

    /// The entry of adapter `name` in `GET /admin/adapters`.
    pub async fn admin_adapter(&self, name: &str) -> Value {
        let v = self.admin_json("/admin/adapters").await;
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("adapter {name} is not listed: {v}"))
            .clone()
    }

    pub async fn user(&self, id: i64) -> Value {
        self.admin_json(&format!("/admin/users/{id}")).await
    }

    /// Wait until every usage record written so far is in the database.
    pub async fn settled(&self) {
        self.app.state.billing.flush().await;
    }

    pub async fn logs(&self) -> Vec<Value> {
        self.settled().await;
        let v: Value = self.admin_json("/admin/logs?limit=1000").await;
        v["data"].as_array().unwrap().clone()
    }

    /// The log rows once there are at least `n` of them, or what there is
    /// after five seconds: for calls that settle after the client has gone.
    pub async fn wait_logs(&self, n: usize) -> Vec<Value> {
        let mut logs = Vec::new();
        for _ in 0..50 {
            logs = self.logs().await;
            if logs.len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        logs
    }

    /// The holds still open once none are, or after twenty seconds: for
    /// holds a sweep returns when their lease runs out.
    pub async fn wait_holds_returned(&self) -> i64 {
        let mut left = self.open_holds().await;
        for _ in 0..200 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            left = self.open_holds().await;
        }
        left
    }

    /// (balance, sum of charges logged, sum of top-ups logged) of a user.
    pub async fn ledger(&self, user_id: i64) -> (i64, i64, i64) {
        self.settled().await;
        let db = &self.app.state.db;
        let (quota,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(
            db.sql("SELECT quota FROM users WHERE id = ?").into_owned(),
        ))
        .bind(user_id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(
            db.sql("SELECT kind, quota FROM logs WHERE user_id = ?")
                .into_owned(),
        ))
        .bind(user_id)
        .fetch_all(db.pool())
        .await
        .unwrap();
        let charged = rows
            .iter()
            .filter(|(k, _)| k == "consume")
            .map(|(_, q)| q)
            .sum();
        let topped = rows
            .iter()
            .filter(|(k, _)| k == "topup")
            .map(|(_, q)| q)
            .sum();
        (quota, charged, topped)
    }

    pub async fn open_holds(&self) -> i64 {
        self.app.state.db.open_holds().await.unwrap()
    }

    pub async fn set_prices(&self, pricing: Value) {
        let r = self
            .client
            .put(self.url("/admin/pricing"))
            .header("X-Admin-Token", ADMIN_TOKEN)
            .json(&pricing)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, 200, "{}", r.text().await.unwrap());
    }

    /// The bytes of a test-fixture component built by `build.rs`.
    pub fn fixture_wasm(file: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("BUILT_ADAPTERS_DIR")).join(file)).unwrap()
    }

    /// Load the test-fixture adapter that misbehaves on demand.
    pub async fn install_misbehave_adapter(&self) {
        let bytes =
            std::fs::read(std::path::Path::new(env!("BUILT_ADAPTERS_DIR")).join("misbehave.wasm"))
                .unwrap();
        let adapter = self
            .app
            .state
            .runtime
            .compile(&bytes, transit::adapters::Source::Directory)
            .await
            .unwrap();
        self.app.state.runtime.install(adapter);
    }
}

/// Every model at one unit per input or output token.
pub fn flat_pricing() -> transit::billing::Pricing {
    transit::billing::Pricing {
        models: Default::default(),
        allow_unpriced: true,
        ..transit::billing::Pricing::default()
    }
}

pub fn chat_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": stream,
    })
}

/// Read a whole SSE response into its `data:` payloads.
pub async fn sse_data(response: reqwest::Response) -> Vec<String> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|block| block.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// The text a list of chat chunks spells.
pub fn chunk_text(data: &[String]) -> String {
    data.iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Mock OpenAI upstream
// ---------------------------------------------------------------------------

/// How the mock answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Normal,
    /// Stream without a usage chunk, even if asked for one.
    NoUsage,
    /// 500 with an OpenAI error body.
    ServerError,
    /// 400 with an OpenAI error body.
    BadRequest,
    /// 429 with retry-after.
    RateLimited,
    /// Stream a few chunks, then cut the connection.
    CutMidStream,
    /// Stream one event every 50 ms (about half a second in all).
    SlowStream,
    /// Answer plainly after 600 ms.
    Slow,
    /// Answer a streamed call with the plain completion (`stream` ignored).
    IgnoresStream,
    /// Stream, with `content-type: application/json`.
    StreamLabelledJson,
    /// Answer 200 with an error object (as some vendors do); a stream's
    /// first event is one.
    ErrorIn200,
}

pub struct MockState {
    /// Keys the mock accepts.
    pub api_keys: Vec<String>,
    /// Calls in flight and the most ever in flight, per key (counted here,
    /// not by the gateway).
    pub in_flight: Mutex<std::collections::HashMap<String, (usize, usize)>>,
    pub behavior: Mutex<Behavior>,
    pub requests: AtomicUsize,
    pub last_body: Mutex<Option<Value>>,
    /// `x-swap-version` of each request that carried one.
    pub swap_versions: Mutex<Vec<String>>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests that came over HTTP/2.
    pub http2_requests: AtomicUsize,
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub const MOCK_REPLY: &str = "Hello from the mock upstream!";
pub const MOCK_PROMPT_TOKENS: u64 = 11;
pub const MOCK_COMPLETION_TOKENS: u64 = 7;

impl MockUpstream {
    pub async fn start(api_key: &str) -> Self {
        Self::start_with_keys(&[api_key]).await
    }

    pub async fn start_with_keys(api_keys: &[&str]) -> Self {
        Self::serve(api_keys, None).await
    }

    /// A mock that takes at most `max_streams` calls at once on one HTTP/2
    /// connection (its `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub async fn start_with_http2_limit(api_key: &str, max_streams: u32) -> Self {
        Self::serve(&[api_key], Some(max_streams)).await
    }

    async fn serve(api_keys: &[&str], max_http2_streams: Option<u32>) -> Self {
        let state = Arc::new(MockState {
            api_keys: api_keys.iter().map(|k| (*k).to_owned()).collect(),
            in_flight: Mutex::new(std::collections::HashMap::new()),
            swap_versions: Mutex::new(Vec::new()),
            behavior: Mutex::new(Behavior::Normal),
            requests: AtomicUsize::new(0),
            last_body: Mutex::new(None),
            connections: Arc::default(),
            http2_requests: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(mock_chat))
            .route("/v1/embeddings", post(mock_embeddings))
            .route("/v1/completions", post(mock_completions))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = state.connections.clone();
        let server = match max_http2_streams {
            None => {
                let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
                    connections.fetch_add(1, Ordering::SeqCst);
                });
                tokio::spawn(async move {
                    axum::serve(listener, app).await.unwrap();
                })
            }
            Some(max) => tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    connections.fetch_add(1, Ordering::SeqCst);
                    let service = hyper_util::service::TowerToHyperService::new(app.clone());
                    tokio::spawn(async move {
                        let mut builder = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        );
                        builder.http2().max_concurrent_streams(max);
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            }),
        };
        Self {
            addr,
            state,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, behavior: Behavior) {
        *self.state.behavior.lock().unwrap() = behavior;
    }

    /// TCP connections the mock accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests that came over HTTP/2.
    pub fn http2_requests(&self) -> usize {
        self.state.http2_requests.load(Ordering::SeqCst)
    }

    /// The adapter version that served the latest request.
    pub fn last_swap_version(&self) -> Option<String> {
        self.state.swap_versions.lock().unwrap().last().cloned()
    }

    /// The most calls ever in flight at once with `key`.
    pub fn max_in_flight(&self, key: &str) -> usize {
        self.state
            .in_flight
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |v| v.1)
    }

    pub fn in_flight_now(&self) -> usize {
        self.state
            .in_flight
            .lock()
            .unwrap()
            .values()
            .map(|v| v.0)
            .sum()
    }

    pub fn last_body(&self) -> Value {
        self.state.last_body.lock().unwrap().clone().unwrap()
    }
}

fn openai_error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}})),
    )
        .into_response()
}

/// Counts a call in flight for its key until dropped.
struct InFlight {
    state: Arc<MockState>,
    key: String,
}

impl InFlight {
    fn new(state: &Arc<MockState>, key: &str) -> Self {
        let mut map = state.in_flight.lock().unwrap();
        let entry = map.entry(key.to_owned()).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
        drop(map);
        Self {
            state: state.clone(),
            key: key.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(e) = self.state.in_flight.lock().unwrap().get_mut(&self.key) {
            e.0 -= 1;
        }
    }
}

async fn mock_chat(
    State(state): State<Arc<MockState>>,
    version: axum::http::Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if version == axum::http::Version::HTTP_2 {
        state.http2_requests.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(v) = headers.get("x-swap-version").and_then(|v| v.to_str().ok()) {
        state.swap_versions.lock().unwrap().push(v.to_owned());
    }
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    if !state.api_keys.contains(&presented) {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided: sk-wron*****-key. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            None,
        );
    };
    *state.last_body.lock().unwrap() = Some(req.clone());
    let Some(model) = req["model"].as_str() else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
        );
    };
    if req["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "[] is too short - 'messages'",
            "invalid_request_error",
            None,
        );
    }
    let behavior = *state.behavior.lock().unwrap();
    let in_flight = InFlight::new(&state, &presented);
    if behavior == Behavior::Slow {
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    match behavior {
        Behavior::ServerError => {
            return openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server had an error while processing your request.",
                "server_error",
                None,
            );
        }
        Behavior::BadRequest => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "Invalid value for 'temperature': must be <= 2.",
                "invalid_request_error",
                Some("invalid_value"),
            );
        }
        Behavior::RateLimited => {
            let mut r = openai_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for requests",
                "requests",
                Some("rate_limit_exceeded"),
            );
            r.headers_mut().insert("retry-after", "3".parse().unwrap());
            return r;
        }
        _ => {}
    }
    let usage = json!({
        "prompt_tokens": MOCK_PROMPT_TOKENS,
        "completion_tokens": MOCK_COMPLETION_TOKENS,
        "total_tokens": MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    });
    let overloaded = json!({"error": {"message": "The engine is currently overloaded.", "type": "server_error", "code": "overloaded"}});
    if behavior == Behavior::ErrorIn200 && req["stream"] != json!(true) {
        return Json(overloaded).into_response();
    }
    if req["stream"] != json!(true) || behavior == Behavior::IgnoresStream {
        return Json(json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": MOCK_REPLY, "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
            "system_fingerprint": "fp_mock"
        }))
        .into_response();
    }
    let include_usage = req["stream_options"]["include_usage"] == json!(true);
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        .to_string()
    };
    let mut events = Vec::new();
    if behavior == Behavior::ErrorIn200 {
        events.push(overloaded.to_string());
    }
    events.push(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    for word in MOCK_REPLY.split_inclusive(' ') {
        events.push(chunk(json!({"content": word}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage && behavior != Behavior::NoUsage {
        events.push(
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model, "choices": [], "usage": usage})
                .to_string(),
        );
    }
    let mut wire = String::new();
    for e in &events {
        wire.push_str("data: ");
        wire.push_str(e);
        wire.push_str("\n\n");
    }
    wire.push_str("data: [DONE]\n\n");
    let cut = behavior == Behavior::CutMidStream;
    if behavior == Behavior::StreamLabelledJson {
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(wire))
            .unwrap();
    }
    if behavior == Behavior::SlowStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let blocks: Vec<String> = wire.split_inclusive("\n\n").map(str::to_owned).collect();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            for block in blocks {
                if tx.send(Ok(Bytes::from(block))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .unwrap();
    }
    let bytes = wire.into_bytes();
    // Deliver in small uneven pieces, so events arrive split mid-line.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let mut i = 0;
        let mut piece = 7;
        let stop_at = if cut { bytes.len() / 2 } else { bytes.len() };
        while i < stop_at {
            let end = (i + piece).min(stop_at);
            if tx
                .send(Ok(Bytes::copy_from_slice(&bytes[i..end])))
                .await
                .is_err()
            {
                return;
            }
            i = end;
            piece = piece % 53 + 11;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if cut {
            let _ = tx
                .send(Err(std::io::Error::other("connection reset")))
                .await;
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap()
}

// ---------------------------------------------------------------------------
// The gateway as a separate process (for crash tests)
// ---------------------------------------------------------------------------

pub struct GatewayProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
    pub client: reqwest::Client,
}

impl GatewayProcess {
    /// Start the `transit` binary on `database_url`, configured through the
    /// environment as an operator would, with a 4-second hold lease (short,
    /// so a killed process's holds are recovered soon; long enough that a
    /// process starved of CPU on a loaded machine still renews in time).
    pub async fn start(database_url: &str, data_dir: &std::path::Path) -> Self {
        Self::start_with(database_url, data_dir, &[]).await
    }

    /// As [`GatewayProcess::start`], with more environment.
    pub async fn start_with(
        database_url: &str,
        data_dir: &std::path::Path,
        env: &[(&str, String)],
    ) -> Self {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let cache =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-adapter-cache");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_transit"))
            .env("TRANSIT_LISTEN", addr.to_string())
            .env("DATABASE_URL", database_url)
            .env("TRANSIT_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("TRANSIT_SECRET_KEY", "test-secret-key")
            .env("TRANSIT_DATA_DIR", data_dir)
            .env("TRANSIT_ADAPTERS__CACHE_DIR", cache)
            .env("TRANSIT_BILLING__HOLD_LEASE_SECS", "4")
            .env("TRANSIT_LOG__LEVEL", "error")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .kill_on_drop(true)
            .spawn()
            .expect("the transit binary starts");
        let client = reqwest::Client::new();
        let process = Self {
            child,
            addr,
            client,
        };
        for _ in 0..300 {
            if let Ok(r) = process.client.get(process.url("/health")).send().await
                && r.status() == 200
            {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the transit binary did not become healthy");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL: no shutdown hook runs.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A Redis key prefix of its own for one test.
pub fn redis_prefix() -> String {
    format!("transit-test-{}", uuid::Uuid::new_v4().simple())
}

/// A TCP relay to Redis that a test can cut and restore, to play a Redis
/// outage without touching the real server.
pub struct RedisProxy {
    pub port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl RedisProxy {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.serve(listener);
        proxy
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:6379").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drop every connection and stop accepting.
    pub fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Accept connections again, on the same port.
    pub async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}

// ---------------------------------------------------------------------------
// Mock Anthropic Messages API
// ---------------------------------------------------------------------------

pub const CLAUDE_REPLY: &str = "Hello from Claude!";
pub const CLAUDE_INPUT_TOKENS: u64 = 13;
pub const CLAUDE_CACHE_READ_TOKENS: u64 = 4;
pub const CLAUDE_OUTPUT_TOKENS: u64 = 6;

/// Speaks `POST /v1/messages` and rejects what the real API rejects: a
/// missing or wrong `x-api-key`, a missing `anthropic-version`, a missing
/// `max_tokens`, roles other than user/assistant, a `system` role message.
pub struct MockAnthropic {
    pub addr: SocketAddr,
    pub last_body: Arc<Mutex<Option<Value>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

impl MockAnthropic {
    pub async fn start(api_key: &'static str) -> Self {
        let last_body: Arc<Mutex<Option<Value>>> = Arc::new(Mutex::new(None));
        let seen = last_body.clone();
        let app = axum::Router::new().route(
            "/v1/messages",
            post(move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move { mock_messages(api_key, &seen, &headers, &body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            last_body,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn last_body(&self) -> Value {
        self.last_body.lock().unwrap().clone().unwrap()
    }
}

fn mock_messages(
    api_key: &str,
    seen: &Mutex<Option<Value>>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(api_key) {
        return anthropic_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        );
    }
    if headers.get("anthropic-version").is_none() {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid JSON",
        );
    };
    *seen.lock().unwrap() = Some(req.clone());
    if req.get("max_tokens").and_then(Value::as_u64).is_none() {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    }
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages: at least one message is required",
        );
    }
    for m in &messages {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return anthropic_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!(
                    "messages: Input tag '{role}' found using 'role' does not match any of the expected tags: 'assistant', 'user'"
                ),
            );
        }
    }
    let model = req["model"].as_str().unwrap_or("claude").to_owned();
    let wants_tool = req.get("tools").is_some() && req["tool_choice"]["type"] == "any";
    let usage_start = json!({"input_tokens": CLAUDE_INPUT_TOKENS - CLAUDE_CACHE_READ_TOKENS, "cache_read_input_tokens": CLAUDE_CACHE_READ_TOKENS, "cache_creation_input_tokens": 0, "output_tokens": 1});
    if req["stream"] != json!(true) {
        let content = if wants_tool {
            json!([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}])
        } else {
            json!([{"type": "text", "text": CLAUDE_REPLY}])
        };
        let mut usage = usage_start.clone();
        usage["output_tokens"] = json!(CLAUDE_OUTPUT_TOKENS);
        return Json(json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": if wants_tool { "tool_use" } else { "end_turn" },
            "stop_sequence": null, "usage": usage,
        }))
        .into_response();
    }
    let mut events = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "content": [], "model": model, "stop_reason": null, "stop_sequence": null, "usage": usage_start}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
    ];
    for word in CLAUDE_REPLY.split_inclusive(' ') {
        events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}})));
    }
    events.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": CLAUDE_OUTPUT_TOKENS}})));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let mut wire = String::new();
    for (name, data) in events {
        wire.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(wire))
        .unwrap()
}

pub const MOCK_EMBEDDING_TOKENS: u64 = 8;

async fn mock_embeddings(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            None,
        );
    };
    *state.last_body.lock().unwrap() = Some(req.clone());
    if req.get("input").is_none() {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "'input' is a required property",
            "invalid_request_error",
            None,
        );
    }
    Json(json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
        "model": req["model"],
        "usage": {"prompt_tokens": MOCK_EMBEDDING_TOKENS, "total_tokens": MOCK_EMBEDDING_TOKENS}
    }))
    .into_response()
}

async fn mock_completions(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            None,
        );
    };
    *state.last_body.lock().unwrap() = Some(req.clone());
    let usage = json!({"prompt_tokens": MOCK_PROMPT_TOKENS, "completion_tokens": MOCK_COMPLETION_TOKENS, "total_tokens": MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS});
    if req["stream"] != json!(true) {
        return Json(json!({
            "id": "cmpl-mock", "object": "text_completion", "created": 1, "model": req["model"],
            "choices": [{"text": MOCK_REPLY, "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage
        }))
        .into_response();
    }
    let mut wire = String::new();
    for word in MOCK_REPLY.split_inclusive(' ') {
        let chunk = json!({"id": "cmpl-mock", "object": "text_completion", "created": 1, "model": req["model"],
            "choices": [{"text": word, "index": 0, "logprobs": null, "finish_reason": null}]});
        wire.push_str(&format!("data: {chunk}\n\n"));
    }
    if req["stream_options"]["include_usage"] == json!(true) {
        let chunk = json!({"id": "cmpl-mock", "object": "text_completion", "created": 1, "model": req["model"], "choices": [], "usage": usage});
        wire.push_str(&format!("data: {chunk}\n\n"));
    }
    wire.push_str("data: [DONE]\n\n");
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(wire))
        .unwrap()
}

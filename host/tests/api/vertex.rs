//! Gemini on Google Cloud Vertex AI (channel types `vertex` and
//! `vertex-ai`) through the built-in gemini adapter, the channel's key a
//! service-account JSON key the gateway trades for an access token.
//!
//! The in-process mock ([`mock`]) plays both Google services and refuses
//! what they refuse:
//! - the OAuth token endpoint (`POST /token`) takes only a form-encoded
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with an RS256
//!   JWT `assertion` whose signature verifies against the service account's
//!   public key (`fixtures/vertex/service_account_public.der`), with the
//!   right `kid`, `iss`, `aud`, the cloud-platform `scope`, and an `iat` /
//!   `exp` at most an hour apart around now (400 `invalid_grant` otherwise);
//! - Vertex AI (`POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:{action}`)
//!   takes only `Authorization: Bearer` with a token it issued (401
//!   `UNAUTHENTICATED`), only the service account's project (403
//!   `PERMISSION_DENIED`), and refuses contents without a role or with a
//!   role other than `user` / `model` (400 `INVALID_ARGUMENT`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::*;
use mock::*;

const PROJECT: &str = "transit-test-project";
const CLIENT_EMAIL: &str = "gateway@transit-test-project.iam.gserviceaccount.com";
const KEY_ID: &str = "4f1c2a0b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a";
const PRIVATE_KEY: &str = include_str!("../fixtures/vertex/service_account_key.pem");
/// A well-formed key the token endpoint does not know.
const OTHER_KEY: &str = include_str!("../fixtures/vertex/other_key.pem");
const PUBLIC_KEY: &[u8] = include_bytes!("../fixtures/vertex/service_account_public.der");
const UPSTREAM_MODEL: &str = "gemini-2.5-flash";

/// A service-account JSON key, pretty-printed as Google's console
/// downloads it.
fn service_account(mock: &MockVertex, private_key: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": KEY_ID,
        "private_key": private_key,
        "client_email": CLIENT_EMAIL,
        "client_id": "104519012345678901234",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": mock.token_uri(),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/gateway%40transit-test-project.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com"
    }))
    .unwrap()
}

async fn start_mock() -> MockVertex {
    MockVertex::start(MockConfig {
        public_key: PUBLIC_KEY.to_vec(),
        key_id: KEY_ID,
        client_email: CLIENT_EMAIL,
        project: PROJECT,
        expires_in: 3599,
    })
    .await
}

/// A gateway with one Vertex channel (`channel` merged over the defaults).
async fn vertex_app(channel: Value) -> (TestApp, MockVertex, String) {
    let app = spawn_app().await;
    let mock = start_mock().await;
    let mut body = json!({"name": "vertex", "type": "vertex",
        "secret_key": service_account(&mock, PRIVATE_KEY), "base_url": mock.base_url(),
        "options": {"location": "europe-west4"},
        "models": ["gemini-vertex", "text-embedding-005", "gemini-exhausted"],
        "model_mapping": {"gemini-vertex": UPSTREAM_MODEL}});
    if let (Value::Object(b), Value::Object(extra)) = (&mut body, channel) {
        b.extend(extra);
    }
    app.channel(body).await;
    let (_, key) = app.user_with_key(1_000_000).await;
    (app, mock, key)
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Neither the private key nor an access token is in `text`.
fn assert_no_secrets(mock: &MockVertex, text: &str) {
    let pem_body = PRIVATE_KEY.lines().nth(1).unwrap();
    assert!(!text.contains(pem_body), "private key leaked: {text}");
    assert!(!text.contains("BEGIN PRIVATE KEY"), "{text}");
    for token in mock.issued_tokens() {
        assert!(!text.contains(&token), "access token leaked: {text}");
    }
    assert!(!text.contains("ya29."), "{text}");
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}])
}

#[tokio::test]
async fn chat_plain_and_stream_with_one_token_exchange() {
    let (app, mock, key) = vertex_app(json!({})).await;
    let body = json!({"model": "gemini-vertex", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Say hello"}
    ]});
    let r = app.chat(&key, body.clone()).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_no_secrets(&mock, &text);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], VERTEX_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], VERTEX_PROMPT_TOKENS);
    assert_eq!(v["usage"]["completion_tokens"], VERTEX_OUTPUT_TOKENS);
    // The project comes from the key, the location from the channel.
    assert_eq!(
        mock.last_path(),
        format!(
            "/v1/projects/{PROJECT}/locations/europe-west4/publishers/google/models/{UPSTREAM_MODEL}:generateContent"
        )
    );
    let sent = mock.last_body();
    let roles: Vec<&str> = sent["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "model", "user"]);
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(mock.last_auth_scheme(), "Bearer");

    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = app.chat(&key, streamed).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    assert_no_secrets(&mock, &data.join("\n"));
    assert_eq!(chunk_text(&data), VERTEX_REPLY);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["prompt_tokens"], VERTEX_PROMPT_TOKENS);
    assert_eq!(usage["usage"]["completion_tokens"], VERTEX_OUTPUT_TOKENS);
    assert!(
        mock.last_path().ends_with(":streamGenerateContent?alt=sse"),
        "{}",
        mock.last_path()
    );

    // Two calls, one token exchange: the token is cached.
    assert_eq!(mock.exchanges(), 1);
    assert_eq!(mock.refused_exchanges(), 0);
    assert_eq!(app.app.state.vertex_tokens.exchanges(), 1);
    let logs = app.logs().await;
    assert_eq!(logs.len(), 2);
    for l in &logs {
        assert_eq!(l["prompt_tokens"], VERTEX_PROMPT_TOKENS, "{l}");
        assert_eq!(l["completion_tokens"], VERTEX_OUTPUT_TOKENS, "{l}");
    }
    assert_no_secrets(&mock, &Value::Array(logs).to_string());
}

#[tokio::test]
async fn concurrent_calls_share_one_exchange() {
    let (app, mock, key) = vertex_app(json!({"type": "vertex-ai", "options": {}})).await;
    let app = Arc::new(app);
    let calls = (0..6).map(|_| {
        let app = app.clone();
        let key = key.clone();
        tokio::spawn(async move { app.chat(&key, chat_body("gemini-vertex", false)).await })
    });
    for call in calls {
        assert_eq!(call.await.unwrap().status(), 200);
    }
    assert_eq!(mock.exchanges(), 1);
    // `vertex-ai` is the same channel type; the location defaults to us-central1.
    assert!(
        mock.last_path()
            .starts_with(&format!("/v1/projects/{PROJECT}/locations/us-central1/")),
        "{}",
        mock.last_path()
    );
}

/// A token about to expire (within the five-minute margin) is not reused.
#[tokio::test]
async fn short_lived_tokens_are_replaced() {
    let app = spawn_app().await;
    let mock = MockVertex::start(MockConfig {
        public_key: PUBLIC_KEY.to_vec(),
        key_id: KEY_ID,
        client_email: CLIENT_EMAIL,
        project: PROJECT,
        expires_in: 240,
    })
    .await;
    app.channel(json!({"name": "vertex", "type": "vertex",
        "secret_key": service_account(&mock, PRIVATE_KEY), "base_url": mock.base_url(),
        "models": ["gemini-vertex"]}))
        .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    for _ in 0..2 {
        let r = app.chat(&key, chat_body("gemini-vertex", false)).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(mock.exchanges(), 2);
}

#[tokio::test]
async fn tools_both_ways() {
    let (app, mock, key) = vertex_app(json!({})).await;
    let ask = json!({"model": "gemini-vertex", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tools(), "tool_choice": "required"});
    let v: Value = app.chat(&key, ask.clone()).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "Paris"}));
    let sent = mock.last_body();
    assert_eq!(
        sent["toolConfig"]["functionCallingConfig"]["mode"], "ANY",
        "{sent}"
    );
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );

    let answer = json!({"model": "gemini-vertex", "tools": weather_tools(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees and sunny"}
    ]});
    let r = app.chat(&key, answer).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], VERTEX_REPLY);
    let sent = mock.last_body();
    assert_eq!(sent["contents"][1]["role"], "model");
    assert_eq!(
        sent["contents"][1]["parts"][0]["functionCall"]["name"],
        "get_weather"
    );
    assert_eq!(sent["contents"][2]["role"], "user");
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_weather"
    );

    let mut streamed = ask;
    streamed["stream"] = json!(true);
    let data = sse_data(app.chat(&key, streamed).await).await;
    let chunks: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .collect();
    let call = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .unwrap();
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
    assert_eq!(mock.exchanges(), 1);
}

#[tokio::test]
async fn upstream_errors_reach_the_client_in_openai_shape() {
    let (app, mock, key) = vertex_app(json!({})).await;
    // Vertex's quota error is a rate limit.
    let r = app.chat(&key, chat_body("gemini-exhausted", false)).await;
    assert_eq!(r.status(), 429);
    let text = r.text().await.unwrap();
    assert_no_secrets(&mock, &text);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "upstream_rate_limited", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Resource exhausted")
    );

    // A project the account has no access to: a credential failure.
    let (app, mock, key) =
        vertex_app(json!({"options": {"project": "someone-elses", "location": "europe-west4"}}))
            .await;
    for stream in [false, true] {
        let r = app.chat(&key, chat_body("gemini-vertex", stream)).await;
        assert_eq!(r.status(), 502);
        let text = r.text().await.unwrap();
        assert_no_secrets(&mock, &text);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], "upstream_auth_failed", "{v}");
    }
    // A refused token is traded again only once it is 30 s old: a project
    // the account cannot use does not cost an exchange per call.
    assert_eq!(mock.exchanges(), 1);
    assert!(
        mock.last_path()
            .starts_with("/v1/projects/someone-elses/locations/europe-west4/")
    );
    app.settled().await;
    assert_eq!(app.open_holds().await, 0);
}

#[tokio::test]
async fn bad_service_account_keys_give_clear_errors() {
    // Refused when the channel is saved, without quoting the key: not a
    // service-account key at all, and a key with no private key in it.
    let app = spawn_app().await;
    let broken =
        json!({"type": "service_account", "client_email": CLIENT_EMAIL, "project_id": PROJECT})
            .to_string();
    for (secret, why) in [
        ("AIzaSyNotAServiceAccount", "service-account"),
        (broken.as_str(), "private_key"),
    ] {
        let r = app
            .admin_post(
                "/admin/channels",
                json!({"name": "v", "type": "vertex", "secret_key": secret, "models": ["gemini-vertex"]}),
            )
            .await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], "secret_key", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("Key 1") && message.contains(why),
            "{message}"
        );
        assert!(
            !message.contains("AIzaSy") && !message.contains(CLIENT_EMAIL),
            "{message}"
        );
    }

    // A channel whose type would become `vertex` while keeping a key that
    // is not a service-account key: the change is refused, without quoting
    // the key, and the channel stays as it was.
    let mock = start_mock().await;
    let id = app
        .channel(
            json!({"name": "was-gemini", "type": "gemini", "secret_key": "AIzaSyNotAServiceAccount",
            "base_url": mock.base_url(), "models": ["gemini-vertex"]}),
        )
        .await;
    let r = app
        .admin_patch(&format!("/admin/channels/{id}"), json!({"type": "vertex"}))
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "secret_key", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("service-account") && message.contains("keeps its key"),
        "{message}"
    );
    assert!(!message.contains("AIzaSy"), "{message}");
    let v: Value = app.admin_json(&format!("/admin/channels/{id}")).await;
    assert_eq!(v["type"], "gemini", "{v}");
    // With its service-account key sent along, the same change is taken.
    let r = app
        .admin_patch(
            &format!("/admin/channels/{id}"),
            json!({"type": "vertex", "secret_key": service_account(&mock, PRIVATE_KEY)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(mock.exchanges() + mock.refused_exchanges(), 0);
    assert_eq!(mock.vertex_requests(), 0);

    // A well-formed key Google does not know: the token endpoint refuses
    // the signature. The refusal is answered for a few seconds to the calls
    // that follow, instead of each trading the key again in turn.
    let mock = start_mock().await;
    let (app, _unused, key) = vertex_app(
        json!({"secret_key": service_account(&mock, OTHER_KEY), "base_url": mock.base_url()}),
    )
    .await;
    for stream in [false, true] {
        let r = app.chat(&key, chat_body("gemini-vertex", stream)).await;
        assert_eq!(r.status(), 502);
        let text = r.text().await.unwrap();
        assert!(!text.contains(OTHER_KEY.lines().nth(1).unwrap()), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], "upstream_auth_failed", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("token endpoint") && message.contains("invalid_grant"),
            "{message}"
        );
    }
    assert_eq!(mock.refused_exchanges(), 1);
    assert_eq!(mock.exchanges(), 0);
    assert_eq!(mock.vertex_requests(), 0);
    app.settled().await;
    assert_eq!(app.open_holds().await, 0);
}

#[tokio::test]
async fn embeddings_are_predictions_with_usage() {
    let (app, mock, key) = vertex_app(json!({})).await;
    let r = post(
        &app,
        &key,
        "/v1/embeddings",
        json!({"model": "text-embedding-005", "input": ["hello", "wide world"], "dimensions": 4, "encoding_format": "float"}),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);
    // One token per word, as the mock counts.
    assert_eq!(v["usage"]["prompt_tokens"], 3, "{v}");
    assert_eq!(
        mock.last_path(),
        format!(
            "/v1/projects/{PROJECT}/locations/europe-west4/publishers/google/models/text-embedding-005:predict"
        )
    );
    assert_eq!(
        mock.last_body(),
        json!({"instances": [{"content": "hello"}, {"content": "wide world"}], "parameters": {"outputDimensionality": 4}})
    );
}

#[tokio::test]
async fn native_gemini_clients_get_roles_filled_in() {
    let (app, mock, key) = vertex_app(json!({})).await;
    // AI Studio takes a role-less turn; Vertex wants the role.
    let r = app
        .client
        .post(app.url("/v1beta/models/gemini-vertex:generateContent"))
        .header("x-goog-api-key", &key)
        .json(&json!({"contents": [{"parts": [{"text": "Say hello"}]}]}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        VERTEX_REPLY
    );
    assert_eq!(
        mock.last_body(),
        json!({"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]})
    );
}

/// The official OpenAI SDK gets plain and streamed answers, with usage,
/// from a Vertex AI channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_is_served_by_a_vertex_channel() {
    let (app, mock, key) = vertex_app(json!({})).await;
    crate::sdk::run_openai_sdk(
        &app,
        key,
        "gemini-vertex",
        VERTEX_REPLY,
        VERTEX_PROMPT_TOKENS,
        VERTEX_OUTPUT_TOKENS,
    )
    .await;
    assert_eq!(mock.exchanges(), 1);
}

/// The mock itself refuses what Google refuses.
#[tokio::test]
async fn the_mock_refuses_what_google_refuses() {
    use transit::channels::vertex::{GRANT_TYPE, ServiceAccount};
    transit::init_tls();
    let mock = start_mock().await;
    let client = reqwest::Client::new();
    let exchange = |form: String| {
        client
            .post(mock.token_uri())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let form = |grant: &str, assertion: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", grant)
            .append_pair("assertion", assertion)
            .finish()
    };
    let account = ServiceAccount::parse(&service_account(&mock, PRIVATE_KEY)).unwrap();
    let jwt = account.assertion(transit_now()).unwrap();
    // A wrong grant type, a tampered claim set, an expired assertion, a
    // foreign key: all refused.
    let r = exchange(form("client_credentials", &jwt)).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        json!({"iss": CLIENT_EMAIL, "scope": "https://www.googleapis.com/auth/cloud-platform",
               "aud": mock.token_uri(), "iat": transit_now(), "exp": transit_now() + 60})
        .to_string(),
    );
    let tampered = parts.join(".");
    let stale = account.assertion(transit_now() - 7200).unwrap();
    let other = ServiceAccount::parse(&service_account(&mock, OTHER_KEY))
        .unwrap()
        .assertion(transit_now())
        .unwrap();
    for assertion in [tampered.as_str(), stale.as_str(), other.as_str(), "a.b"] {
        let r = exchange(form(GRANT_TYPE, assertion)).await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    assert_eq!(mock.exchanges(), 0);
    let r = exchange(form(GRANT_TYPE, &jwt)).await.unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let generate = format!(
        "{}/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/{UPSTREAM_MODEL}:generateContent",
        mock.base_url()
    );
    let call = |bearer: Option<&str>, body: Value| {
        let mut request = client.post(&generate).json(&body);
        if let Some(b) = bearer {
            request = request.bearer_auth(b);
        }
        request.send()
    };
    let hello = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]});
    for bearer in [None, Some("ya29.forged")] {
        let r = call(bearer, hello.clone()).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["status"],
            "UNAUTHENTICATED"
        );
    }
    for body in [
        json!({"contents": [{"parts": [{"text": "Hi"}]}]}),
        json!({"contents": [{"role": "assistant", "parts": [{"text": "Hi"}]}]}),
        json!({"contents": []}),
        json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "messages": []}),
    ] {
        let r = call(Some(&token), body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["status"],
            "INVALID_ARGUMENT"
        );
    }
    let r = call(Some(&token), hello).await.unwrap();
    assert_eq!(r.status(), 200);
    let wrong_project = generate.replace(PROJECT, "someone-elses");
    let r = client
        .post(wrong_project)
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

fn transit_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The Google token endpoint and Vertex AI, in process.
pub mod mock {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::Json;
    use axum::body::{Body, Bytes};
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use serde_json::{Map, Value, json};
    use std::collections::HashMap;

    pub const VERTEX_REPLY: &str = "Hello from Vertex AI!";
    pub const VERTEX_PROMPT_TOKENS: u64 = 11;
    pub const VERTEX_OUTPUT_TOKENS: u64 = 6;
    const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
    const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    /// Top-level fields of Vertex's `GenerateContentRequest`.
    const REQUEST_FIELDS: &[&str] = &[
        "contents",
        "tools",
        "toolConfig",
        "safetySettings",
        "systemInstruction",
        "generationConfig",
        "cachedContent",
        "labels",
    ];

    pub struct MockConfig {
        /// The service account's public key, RSAPublicKey (PKCS#1) DER.
        pub public_key: Vec<u8>,
        pub key_id: &'static str,
        pub client_email: &'static str,
        pub project: &'static str,
        /// The `expires_in` of issued tokens.
        pub expires_in: u64,
    }

    struct MockState {
        config: MockConfig,
        addr: SocketAddr,
        exchanges: AtomicUsize,
        refused: AtomicUsize,
        vertex_requests: AtomicUsize,
        issued: Mutex<HashSet<String>>,
        last_body: Mutex<Option<Value>>,
        last_path: Mutex<Option<String>>,
        last_auth_scheme: Mutex<Option<String>>,
    }

    pub struct MockVertex {
        state: Arc<MockState>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Drop for MockVertex {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    impl MockVertex {
        pub async fn start(config: MockConfig) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let state = Arc::new(MockState {
                config,
                addr,
                exchanges: AtomicUsize::new(0),
                refused: AtomicUsize::new(0),
                vertex_requests: AtomicUsize::new(0),
                issued: Mutex::new(HashSet::new()),
                last_body: Mutex::new(None),
                last_path: Mutex::new(None),
                last_auth_scheme: Mutex::new(None),
            });
            let app = axum::Router::new()
                .route("/token", post(token))
                .route(
                    "/v1/projects/{project}/locations/{location}/publishers/google/models/{target}",
                    post(vertex),
                )
                .with_state(state.clone());
            let server = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Self { state, server }
        }

        pub fn base_url(&self) -> String {
            format!("http://{}", self.state.addr)
        }

        pub fn token_uri(&self) -> String {
            format!("http://{}/token", self.state.addr)
        }

        /// Tokens issued.
        pub fn exchanges(&self) -> usize {
            self.state.exchanges.load(Ordering::SeqCst)
        }

        /// Token requests refused.
        pub fn refused_exchanges(&self) -> usize {
            self.state.refused.load(Ordering::SeqCst)
        }

        /// Requests to Vertex AI, refused ones included.
        pub fn vertex_requests(&self) -> usize {
            self.state.vertex_requests.load(Ordering::SeqCst)
        }

        pub fn issued_tokens(&self) -> Vec<String> {
            self.state.issued.lock().unwrap().iter().cloned().collect()
        }

        pub fn last_body(&self) -> Value {
            self.state.last_body.lock().unwrap().clone().unwrap()
        }

        pub fn last_path(&self) -> String {
            self.state.last_path.lock().unwrap().clone().unwrap()
        }

        pub fn last_auth_scheme(&self) -> String {
            self.state.last_auth_scheme.lock().unwrap().clone().unwrap()
        }
    }

    fn oauth_error(state: &MockState, error: &str, description: &str) -> Response {
        state.refused.fetch_add(1, Ordering::SeqCst);
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// Google's token endpoint for the JWT bearer grant.
    async fn token(
        State(state): State<Arc<MockState>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let form_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !form_type.starts_with("application/x-www-form-urlencoded") {
            return oauth_error(&state, "invalid_request", "Bad Request");
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some(GRANT_TYPE) {
            return oauth_error(&state, "unsupported_grant_type", "Invalid grant_type");
        }
        let Some(assertion) = form.get("assertion") else {
            return oauth_error(
                &state,
                "invalid_request",
                "Missing required parameter: assertion",
            );
        };
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts.as_slice() else {
            return oauth_error(
                &state,
                "invalid_grant",
                "Invalid JWT: wrong number of segments",
            );
        };
        let decode = |s: &str| -> Option<Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
        };
        let (Some(header_json), Some(claims_json), Ok(signature)) = (
            decode(header),
            decode(claims),
            URL_SAFE_NO_PAD.decode(signature),
        ) else {
            return oauth_error(&state, "invalid_grant", "Invalid JWT: malformed");
        };
        if header_json["alg"] != "RS256" || header_json["typ"] != "JWT" {
            return oauth_error(
                &state,
                "invalid_grant",
                "Invalid JWT: unsupported algorithm",
            );
        }
        if header_json["kid"] != state.config.key_id {
            return oauth_error(&state, "invalid_grant", "Invalid JWT Signature.");
        }
        let signing_input = format!("{header}.{claims}");
        let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &state.config.public_key);
        if key.verify(signing_input.as_bytes(), &signature).is_err() {
            return oauth_error(&state, "invalid_grant", "Invalid JWT Signature.");
        }
        if claims_json["iss"] != state.config.client_email {
            return oauth_error(&state, "invalid_grant", "Invalid JWT: iss");
        }
        let audience = format!("http://{}/token", state.addr);
        if claims_json["aud"] != audience.as_str() {
            return oauth_error(
                &state,
                "invalid_grant",
                "Invalid JWT: Failed audience check.",
            );
        }
        let scopes = claims_json["scope"].as_str().unwrap_or_default();
        if !scopes.split(' ').any(|s| s == SCOPE) {
            return oauth_error(
                &state,
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.",
            );
        }
        let (Some(iat), Some(exp)) = (claims_json["iat"].as_i64(), claims_json["exp"].as_i64())
        else {
            return oauth_error(
                &state,
                "invalid_grant",
                "Invalid JWT: iat and exp are required",
            );
        };
        let now = now();
        if exp <= iat || exp - iat > 3600 || (iat - now).abs() > 300 || exp <= now {
            return oauth_error(
                &state,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            );
        }
        let n = state.exchanges.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!(
            "ya29.mock-access-token-{n}-{}",
            uuid::Uuid::new_v4().simple()
        );
        state.issued.lock().unwrap().insert(token.clone());
        Json(json!({"access_token": token, "expires_in": state.config.expires_in, "token_type": "Bearer"}))
            .into_response()
    }

    fn vertex_error(code: StatusCode, status: &str, message: &str) -> Response {
        (
            code,
            Json(json!({"error": {"code": code.as_u16(), "message": message, "status": status}})),
        )
            .into_response()
    }

    fn invalid(message: &str) -> Response {
        vertex_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    async fn vertex(
        State(state): State<Arc<MockState>>,
        Path((project, location, target)): Path<(String, String, String)>,
        Query(query): Query<HashMap<String, String>>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        state.vertex_requests.fetch_add(1, Ordering::SeqCst);
        *state.last_path.lock().unwrap() = Some(
            uri.path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        );
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let token = auth.strip_prefix("Bearer ");
        let known = token.is_some_and(|t| state.issued.lock().unwrap().contains(t));
        if !known || headers.contains_key("x-goog-api-key") || query.contains_key("key") {
            return vertex_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            );
        }
        *state.last_auth_scheme.lock().unwrap() = Some("Bearer".to_owned());
        let Some((model, action)) = target.split_once(':') else {
            return vertex_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found.");
        };
        if project != state.config.project {
            return vertex_error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                &format!(
                    "Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/{project}/locations/{location}/publishers/google/models/{model}' (or it may not exist)."
                ),
            );
        }
        let Ok(req) = serde_json::from_slice::<Value>(&body) else {
            return invalid("Invalid JSON payload received. Unexpected token.");
        };
        *state.last_body.lock().unwrap() = Some(req.clone());
        if model == "gemini-exhausted" {
            return vertex_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
            );
        }
        match action {
            "generateContent" => generate(model, &req, false),
            "streamGenerateContent" if query.get("alt").map(String::as_str) == Some("sse") => {
                generate(model, &req, true)
            }
            "predict" => predict(&req),
            other => vertex_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Method `{other}` not found."),
            ),
        }
    }

    fn check_generate(req: &Value) -> Result<(), String> {
        let object = req.as_object().ok_or("Invalid JSON payload received.")?;
        if let Some(unknown) = object
            .keys()
            .find(|k| !REQUEST_FIELDS.contains(&k.as_str()))
        {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
            ));
        }
        let contents = req
            .get("contents")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or("Unable to submit request because it has an empty contents field.")?;
        for content in contents {
            if !matches!(
                content.get("role").and_then(Value::as_str),
                Some("user" | "model")
            ) {
                return Err("Please use a valid role: user, model.".to_owned());
            }
            if content
                .get("parts")
                .and_then(Value::as_array)
                .is_none_or(|p| p.is_empty())
            {
                return Err(
                    "Unable to submit request because it has an empty parts field.".to_owned(),
                );
            }
        }
        Ok(())
    }

    fn forced_function(req: &Value) -> Option<String> {
        if req["toolConfig"]["functionCallingConfig"]["mode"] != "ANY" {
            return None;
        }
        req["tools"][0]["functionDeclarations"][0]["name"]
            .as_str()
            .map(str::to_owned)
    }

    fn chunk(model: &str, parts: Value, finish: Option<&str>, usage: Value) -> Value {
        let mut candidate = Map::new();
        candidate.insert("content".into(), json!({"role": "model", "parts": parts}));
        if let Some(f) = finish {
            candidate.insert("finishReason".into(), json!(f));
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "createTime": "2025-06-05T17:26:14.442815Z",
            "responseId": "mock-vertex-response",
        })
    }

    fn full_usage() -> Value {
        json!({
            "promptTokenCount": VERTEX_PROMPT_TOKENS,
            "candidatesTokenCount": VERTEX_OUTPUT_TOKENS,
            "totalTokenCount": VERTEX_PROMPT_TOKENS + VERTEX_OUTPUT_TOKENS,
            "trafficType": "ON_DEMAND"
        })
    }

    fn generate(model: &str, req: &Value, sse: bool) -> Response {
        if let Err(refusal) = check_generate(req) {
            return invalid(&refusal);
        }
        let chunks: Vec<Value> = if let Some(name) = forced_function(req) {
            vec![chunk(
                model,
                json!([{"functionCall": {"name": name, "args": {"location": "Paris"}}}]),
                Some("STOP"),
                full_usage(),
            )]
        } else if sse {
            let mut chunks: Vec<Value> = VERTEX_REPLY
                .split_inclusive(' ')
                .map(|p| {
                    chunk(
                        model,
                        json!([{"text": p}]),
                        None,
                        json!({"trafficType": "ON_DEMAND"}),
                    )
                })
                .collect();
            chunks.push(chunk(
                model,
                json!([{"text": ""}]),
                Some("STOP"),
                full_usage(),
            ));
            chunks
        } else {
            vec![chunk(
                model,
                json!([{"text": VERTEX_REPLY}]),
                Some("STOP"),
                full_usage(),
            )]
        };
        if !sse {
            return Json(chunks.into_iter().next().unwrap()).into_response();
        }
        let mut wire = String::new();
        for c in chunks {
            wire.push_str(&format!("data: {c}\r\n\r\n"));
        }
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(wire))
            .unwrap()
    }

    /// Text embeddings: one prediction per instance, one token per word.
    fn predict(req: &Value) -> Response {
        let Some(instances) = req
            .get("instances")
            .and_then(Value::as_array)
            .filter(|i| !i.is_empty())
        else {
            return invalid("Invalid JSON payload received. instances is required.");
        };
        let dimensions = req["parameters"]["outputDimensionality"]
            .as_u64()
            .unwrap_or(8) as usize;
        let mut predictions = Vec::new();
        for instance in instances {
            let Some(text) = instance.get("content").and_then(Value::as_str) else {
                return invalid("Missing field 'content' in instance.");
            };
            let values: Vec<f64> = (0..dimensions)
                .map(|i| ((text.len() + i) % 7) as f64 / 10.0)
                .collect();
            predictions.push(json!({"embeddings": {
                "statistics": {"truncated": false, "token_count": text.split_whitespace().count()},
                "values": values
            }}));
        }
        Json(json!({"predictions": predictions, "metadata": {"billableCharacterCount": 15}}))
            .into_response()
    }
}

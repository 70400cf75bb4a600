//! The `openai-compat` adapter through the running gateway: Azure OpenAI,
//! Zhipu, DashScope, Cloudflare Workers AI and Baidu Qianfan channels
//! created by type name, against the protocol mocks of
//! [`crate::compat_mocks`] — chat plain and streamed (reasoning included),
//! tools, provider errors mapped, Azure embeddings and images, DashScope
//! rerank, and the quota billed for each.

use serde_json::{Value, json};

use crate::compat_mocks::*;
use crate::helpers::*;

/// Tokens billed for one chat answer (flat pricing: one unit per token).
const CHAT_COST: i64 = (PROMPT_TOKENS + COMPLETION_TOKENS) as i64;
const QUOTA: i64 = 10_000_000;

async fn app_with(channel: Value) -> (TestApp, CompatMock, i64, String) {
    let app = spawn_app().await;
    let mock = CompatMock::start().await;
    let mut channel = channel;
    if channel.get("base_url").is_none() {
        channel["base_url"] = json!(mock.base_url());
    }
    app.channel(channel).await;
    let (user, key) = app.user_with_key(QUOTA).await;
    (app, mock, user, key)
}

async fn post(app: &TestApp, path: &str, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn stream_body(model: &str) -> Value {
    let mut body = chat_body(model, true);
    body["stream_options"] = json!({"include_usage": true});
    body
}

fn tools_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
    })
}

fn parse_chunks(data: &[String]) -> Vec<Value> {
    data.iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn delta_text(chunks: &[Value], field: &str) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"][field].as_str())
        .collect()
}

/// The arguments a streamed tool call spells, and its function name.
fn streamed_tool_call(chunks: &[Value]) -> (String, String) {
    let calls = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0].as_object());
    let mut name = String::new();
    let mut args = String::new();
    for call in calls {
        if let Some(n) = call.get("function").and_then(|f| f["name"].as_str()) {
            name.push_str(n);
        }
        if let Some(a) = call.get("function").and_then(|f| f["arguments"].as_str()) {
            args.push_str(a);
        }
    }
    (name, args)
}

/// A plain chat: 200, the mock's reply, its usage.
async fn plain_chat(app: &TestApp, key: &str, model: &str) -> Value {
    let r = app.chat(key, chat_body(model, false)).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], REPLY);
    assert_eq!(v["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(v["usage"]["completion_tokens"], COMPLETION_TOKENS);
    v
}

/// A streamed chat with a usage chunk asked for: the reply, every chunk in
/// OpenAI's shape, the usage chunk last.
async fn streamed_chat(app: &TestApp, key: &str, model: &str) -> Vec<Value> {
    let r = app.chat(key, stream_body(model)).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks = parse_chunks(&data);
    assert_eq!(delta_text(&chunks, "content"), REPLY);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["id"] != ""),
        "{chunks:?}"
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"]["total_tokens"],
        PROMPT_TOKENS + COMPLETION_TOKENS
    );
    assert_eq!(
        chunks.iter().filter(|c| c.get("usage").is_some()).count(),
        1,
        "usage only in its own chunk"
    );
    chunks
}

async fn assert_tools(app: &TestApp, key: &str, model: &str) {
    let r = app.chat(key, tools_body(model, false)).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"location\":\"Paris\"}");

    let r = app.chat(key, tools_body(model, true)).await;
    assert_eq!(r.status(), 200);
    let chunks = parse_chunks(&sse_data(r).await);
    assert_eq!(
        streamed_tool_call(&chunks),
        (
            "get_weather".to_owned(),
            "{\"location\":\"Paris\"}".to_owned()
        )
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
}

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

// ---------------------------------------------------------------------------
// Azure OpenAI
// ---------------------------------------------------------------------------

fn azure_channel(key: &str) -> Value {
    json!({"name": "azure", "type": "azure", "secret_key": key,
           "models": ["gpt-4o"], "model_mapping": {"gpt-4o": "gpt-4o-prod"}})
}

#[tokio::test]
async fn azure_chat_plain_and_streamed_is_billed() {
    let (app, mock, user, key) = app_with(azure_channel(AZURE_KEY)).await;
    let v = plain_chat(&app, &key, "gpt-4o").await;
    assert!(
        v.get("prompt_filter_results").is_some(),
        "Azure's annotations pass"
    );
    assert_eq!(
        mock.last_target(),
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(mock.last_header("api-key").as_deref(), Some(AZURE_KEY));
    assert!(mock.last_header("authorization").is_none());
    assert!(mock.last_body().get("stream_options").is_none());

    streamed_chat(&app, &key, "gpt-4o").await;
    assert_eq!(mock.last_body()["stream_options"]["include_usage"], true);

    let logs = app.logs().await;
    let consumed: Vec<&Value> = logs.iter().filter(|l| l["kind"] == "consume").collect();
    assert_eq!(consumed.len(), 2);
    assert!(
        consumed.iter().all(|l| l["cached_tokens"] == CACHED_TOKENS),
        "{logs:?}"
    );
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 2 * CHAT_COST);
    assert_eq!(balance, QUOTA - charged);
}

#[tokio::test]
async fn azure_tools_and_content_filter() {
    let (app, mock, user, key) = app_with(azure_channel(AZURE_KEY)).await;
    assert_tools(&app, &key, "gpt-4o").await;
    assert_eq!(mock.last_body()["response_format"]["type"], "json_object");
    let (_, charged_before, _) = app.ledger(user).await;
    assert_eq!(charged_before, 2 * CHAT_COST);

    let mut body = chat_body("gpt-4o", false);
    body["messages"][0]["content"] = json!(format!("please {FILTER_TRIGGER}"));
    let (status, v) = error_of(app.chat(&key, body).await).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "content_filter");
    assert_eq!(
        app.ledger(user).await.1,
        charged_before,
        "refusals are free"
    );
}

#[tokio::test]
async fn azure_errors_for_wrong_key_version_and_deployment() {
    let (app, mock, _user, key) = app_with(azure_channel("az-wrong-key")).await;
    let (status, v) = error_of(app.chat(&key, chat_body("gpt-4o", false)).await).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (502, Some("upstream_auth_failed")),
        "{v}"
    );
    assert!(!v.to_string().contains("az-wrong"));
    assert_eq!(mock.last_header("api-key").as_deref(), Some("az-wrong-key"));

    let (app, _mock, _user, key) = app_with(
        json!({"name": "azure", "type": "azure-openai", "secret_key": AZURE_KEY,
        "models": ["gpt-4o"], "options": {"api-version": "latest"}}),
    )
    .await;
    let (status, v) = error_of(app.chat(&key, chat_body("gpt-4o", false)).await).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API version")
    );

    // The channel's model has no deployment of that name on the resource.
    let (app, _mock, _user, key) = app_with(
        json!({"name": "azure", "type": "azure", "secret_key": AZURE_KEY,
        "models": ["gpt-4o"]}),
    )
    .await;
    let (status, v) = error_of(app.chat(&key, chat_body("gpt-4o", false)).await).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "DeploymentNotFound");
}

#[tokio::test]
async fn azure_embeddings_and_images_use_deployments() {
    let app = spawn_app().await;
    let mock = CompatMock::start().await;
    app.channel(json!({"name": "azure-embed", "type": "azure", "secret_key": AZURE_KEY, "base_url": mock.base_url(),
        "models": ["text-embedding-3-small"], "options": {"deployment": "embed-small", "api-version": "2024-06-01"}}))
        .await;
    app.channel(json!({"name": "azure-images", "type": "azure", "secret_key": AZURE_KEY, "base_url": format!("{}/openai", mock.base_url()),
        "models": ["dall-e-3"], "model_mapping": {"dall-e-3": "dalle3-prod"}}))
        .await;
    app.set_prices(
        json!({"models": {"dall-e-3": {"price_per_call": 0.04}}, "allow_unpriced": true}),
    )
    .await;
    let (user, key) = app.user_with_key(QUOTA).await;

    let r = post(
        &app,
        "/v1/embeddings",
        &key,
        json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        mock.last_target(),
        "/openai/deployments/embed-small/embeddings?api-version=2024-06-01"
    );
    assert_eq!(app.ledger(user).await.1, EMBEDDING_TOKENS as i64);

    let r = post(
        &app,
        "/v1/images/generations",
        &key,
        json!({"model": "dall-e-3", "prompt": "a lighthouse at dawn", "n": 2}),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        mock.last_target(),
        "/openai/deployments/dalle3-prod/images/generations?api-version=2024-10-21"
    );
    // Two images at 0.04 USD (20 000 units each) on top of the embeddings.
    assert_eq!(
        app.ledger(user).await.1,
        EMBEDDING_TOKENS as i64 + 2 * 20_000
    );
}

// ---------------------------------------------------------------------------
// Zhipu
// ---------------------------------------------------------------------------

fn zhipu_channel(key: &str, base: &str) -> Value {
    json!({"name": "glm", "type": "zhipu", "secret_key": key, "base_url": format!("{base}/api/paas/v4"),
           "models": ["glm-4.5", "glm-4-flash", "busy-model", "glm-nope"]})
}

#[tokio::test]
async fn zhipu_chat_with_jwt_reasoning_and_billing() {
    let mock = CompatMock::start().await;
    let (app, _unused, user, key) = app_with(zhipu_channel(&zhipu_key(), &mock.base_url())).await;
    let v = plain_chat(&app, &key, "glm-4.5").await;
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], REASONING);
    assert_eq!(
        mock.zhipu_auth(),
        Some("jwt"),
        "the id.secret key became a JWT"
    );
    assert_eq!(mock.last_target(), "/api/paas/v4/chat/completions");
    let bearer = mock.last_header("authorization").unwrap();
    assert!(!bearer.contains(ZHIPU_SECRET));

    let chunks = streamed_chat(&app, &key, "glm-4.5").await;
    assert_eq!(delta_text(&chunks, "reasoning_content"), REASONING);
    assert!(mock.last_body().get("stream_options").is_none());

    // Without include_usage the client gets no usage at all.
    let r = app.chat(&key, chat_body("glm-4-flash", true)).await;
    let plain = parse_chunks(&sse_data(r).await);
    assert!(plain.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(delta_text(&plain, "content"), REPLY);

    let logs = app.logs().await;
    assert!(
        logs.iter()
            .any(|l| l["reasoning_tokens"] == REASONING_TOKENS),
        "{logs:?}"
    );
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 3 * CHAT_COST);
    assert_eq!(balance, QUOTA - charged);
}

#[tokio::test]
async fn zhipu_tools_reasoning_effort_and_errors() {
    let mock = CompatMock::start().await;
    let (app, _unused, _user, key) = app_with(zhipu_channel(&zhipu_key(), &mock.base_url())).await;
    assert_tools(&app, &key, "glm-4-flash").await;
    // Zhipu only takes tool_choice auto: a required choice still gets served.
    let mut body = tools_body("glm-4-flash", false);
    body["tool_choice"] = json!("required");
    assert_eq!(app.chat(&key, body).await.status(), 200);
    assert!(mock.last_body().get("tool_choice").is_none());
    // reasoning_effort none turns GLM-4.5's thinking off.
    let mut body = chat_body("glm-4.5", false);
    body["reasoning_effort"] = json!("none");
    let v: Value = app.chat(&key, body).await.json().await.unwrap();
    assert!(
        v["choices"][0]["message"]
            .get("reasoning_content")
            .is_none(),
        "{v}"
    );
    assert_eq!(mock.last_body()["thinking"]["type"], "disabled");

    let (status, v) = error_of(app.chat(&key, chat_body("busy-model", false)).await).await;
    assert_eq!(status, 429, "{v}");
    let (status, v) = error_of(app.chat(&key, chat_body("glm-nope", false)).await).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    // Content stopped by Zhipu's safety check is OpenAI's content_filter.
    let mut body = chat_body("glm-4-flash", false);
    body["messages"][0]["content"] = json!("a sensitive-topic");
    let v: Value = app.chat(&key, body).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn zhipu_rejects_a_wrong_secret_and_takes_a_plain_key() {
    let mock = CompatMock::start().await;
    let (app, _unused, user, key) = app_with(zhipu_channel(
        &format!("{ZHIPU_ID}.wrong-secret"),
        &mock.base_url(),
    ))
    .await;
    let (status, v) = error_of(app.chat(&key, chat_body("glm-4.5", false)).await).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (502, Some("upstream_auth_failed")),
        "{v}"
    );
    assert_eq!(app.ledger(user).await.1, 0);

    let mut channel = zhipu_channel(&zhipu_key(), &mock.base_url());
    channel["options"] = json!({"auth": "key"});
    let (app, _unused, _user, key) = app_with(channel).await;
    plain_chat(&app, &key, "glm-4-flash").await;
    assert_eq!(mock.zhipu_auth(), Some("key"));
}

// ---------------------------------------------------------------------------
// DashScope
// ---------------------------------------------------------------------------

fn ali_channel(key: &str) -> Value {
    json!({"name": "qwen", "type": "qwen", "secret_key": key,
           "models": ["qwen-plus", "qwen3-32b", "busy-model", "gte-rerank-v2", "text-embedding-v4"]})
}

#[tokio::test]
async fn ali_chat_thinking_and_billing() {
    let (app, mock, user, key) = app_with(ali_channel(ALI_KEY)).await;
    // qwen3 refuses thinking on non-streamed calls; the adapter turns it off.
    let v = plain_chat(&app, &key, "qwen3-32b").await;
    assert!(
        v["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );
    assert_eq!(mock.last_target(), "/compatible-mode/v1/chat/completions");
    assert_eq!(mock.last_body()["enable_thinking"], false);

    let chunks = streamed_chat(&app, &key, "qwen3-32b").await;
    assert_eq!(delta_text(&chunks, "reasoning_content"), REASONING);

    let mut body = stream_body("qwen-plus");
    body["enable_thinking"] = json!(true);
    let r = app.chat(&key, body).await;
    let chunks = parse_chunks(&sse_data(r).await);
    assert_eq!(delta_text(&chunks, "reasoning_content"), REASONING);

    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 3 * CHAT_COST);
    assert_eq!(balance, QUOTA - charged);
    let r = post(
        &app,
        "/v1/embeddings",
        &key,
        json!({"model": "text-embedding-v4", "input": "hello"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(mock.last_target(), "/compatible-mode/v1/embeddings");
    assert_eq!(
        app.ledger(user).await.1,
        3 * CHAT_COST + EMBEDDING_TOKENS as i64
    );
}

#[tokio::test]
async fn ali_tools_and_errors() {
    let (app, mock, user, key) = app_with(ali_channel(ALI_KEY)).await;
    assert_tools(&app, &key, "qwen-plus").await;
    assert_eq!(
        mock.last_body()["tools"][0]["function"]["name"],
        "get_weather"
    );
    let (status, v) = error_of(app.chat(&key, chat_body("busy-model", false)).await).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(app.ledger(user).await.1, 2 * CHAT_COST);

    let (app, _mock, _user, key) = app_with(ali_channel("sk-ali-wrong")).await;
    let (status, v) = error_of(app.chat(&key, chat_body("qwen-plus", false)).await).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (502, Some("upstream_auth_failed")),
        "{v}"
    );
}

#[tokio::test]
async fn ali_rerank_goes_through_the_native_api() {
    let (app, mock, user, key) = app_with(ali_channel(ALI_KEY)).await;
    let r = post(
        &app,
        "/v1/rerank",
        &key,
        json!({
        "model": "gte-rerank-v2", "query": "capital of France",
        "documents": ["Berlin is in Germany", {"text": "Paris is the capital of France"}, "Rome"],
        "top_n": 2, "return_documents": true}),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["index"], 1);
    assert_eq!(
        results[0]["document"]["text"],
        "Paris is the capital of France"
    );
    assert!(
        results[0]["relevance_score"].as_f64().unwrap()
            > results[1]["relevance_score"].as_f64().unwrap()
    );
    assert_eq!(v["usage"]["total_tokens"], RERANK_TOKENS);
    assert_eq!(
        mock.last_target(),
        "/api/v1/services/rerank/text-rerank/text-rerank"
    );
    let sent = mock.last_body();
    assert_eq!(
        sent["input"]["documents"][1],
        "Paris is the capital of France"
    );
    assert_eq!(sent["parameters"]["top_n"], 2);
    assert_eq!(app.ledger(user).await.1, RERANK_TOKENS as i64);

    let r = post(
        &app,
        "/v1/rerank",
        &key,
        json!({"model": "busy-model", "query": "q", "documents": ["a"]}),
    )
    .await;
    assert_eq!(r.status(), 429);
}

// ---------------------------------------------------------------------------
// Cloudflare Workers AI
// ---------------------------------------------------------------------------

const CF_MODEL: &str = "@cf/meta/llama-3.1-8b-instruct";

fn cf_channel(base: &str, key: &str, options: Value) -> Value {
    json!({"name": "workers-ai", "type": "cloudflare", "secret_key": key, "base_url": format!("{base}/client/v4"),
           "models": [CF_MODEL, "@cf/meta/llama-3.3-70b-instruct-fp8-fast", "@cf/nope", "busy-model"], "options": options})
}

#[tokio::test]
async fn cloudflare_chat_with_account_in_the_key_is_billed() {
    let mock = CompatMock::start().await;
    let (app, _unused, user, key) = app_with(cf_channel(
        &mock.base_url(),
        &format!("{CF_ACCOUNT}|{CF_TOKEN}"),
        json!({}),
    ))
    .await;
    plain_chat(&app, &key, CF_MODEL).await;
    assert_eq!(
        mock.last_target(),
        format!("/client/v4/accounts/{CF_ACCOUNT}/ai/v1/chat/completions")
    );
    assert_eq!(
        mock.last_header("authorization"),
        Some(format!("Bearer {CF_TOKEN}"))
    );
    streamed_chat(&app, &key, CF_MODEL).await;
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 2 * CHAT_COST);
    assert_eq!(balance, QUOTA - charged);
}

#[tokio::test]
async fn cloudflare_tools_and_errors() {
    let mock = CompatMock::start().await;
    let (app, _unused, _user, key) = app_with(cf_channel(
        &mock.base_url(),
        CF_TOKEN,
        json!({"account_id": CF_ACCOUNT}),
    ))
    .await;
    assert_tools(&app, &key, "@cf/meta/llama-3.3-70b-instruct-fp8-fast").await;
    let (status, v) = error_of(app.chat(&key, chat_body("@cf/nope", false)).await).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    let (status, _) = error_of(app.chat(&key, chat_body("busy-model", false)).await).await;
    assert_eq!(status, 429);

    // An account the token does not reach, and one that is not an id.
    for account in ["0123456789abcdef0123456789abcdef", "my-account"] {
        let (app, _unused, _user, key) = app_with(cf_channel(
            &mock.base_url(),
            CF_TOKEN,
            json!({"account_id": account}),
        ))
        .await;
        let (status, v) = error_of(app.chat(&key, chat_body(CF_MODEL, false)).await).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (502, Some("upstream_auth_failed")),
            "{v}"
        );
    }
}

// ---------------------------------------------------------------------------
// Baidu Qianfan
// ---------------------------------------------------------------------------

fn baidu_channel(base: &str, key: &str) -> Value {
    json!({"name": "qianfan", "type": "qianfan", "secret_key": key, "base_url": format!("{base}/v2"),
           "models": ["ernie-4.5-turbo-128k", "ernie-x1-turbo-32k", "busy-model"], "options": {"appid": BAIDU_APPID}})
}

#[tokio::test]
async fn baidu_chat_with_appid_reasoning_and_billing() {
    let mock = CompatMock::start().await;
    let (app, _unused, user, key) = app_with(baidu_channel(&mock.base_url(), BAIDU_KEY)).await;
    plain_chat(&app, &key, "ernie-4.5-turbo-128k").await;
    assert_eq!(mock.last_target(), "/v2/chat/completions");
    assert_eq!(mock.last_header("appid").as_deref(), Some(BAIDU_APPID));
    assert_eq!(
        mock.last_header("authorization"),
        Some(format!("Bearer {BAIDU_KEY}"))
    );
    let v = plain_chat(&app, &key, "ernie-x1-turbo-32k").await;
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], REASONING);
    streamed_chat(&app, &key, "ernie-4.5-turbo-128k").await;
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 3 * CHAT_COST);
    assert_eq!(balance, QUOTA - charged);
}

#[tokio::test]
async fn baidu_tools_and_errors() {
    let mock = CompatMock::start().await;
    let (app, _unused, _user, key) = app_with(baidu_channel(&mock.base_url(), BAIDU_KEY)).await;
    assert_tools(&app, &key, "ernie-4.5-turbo-128k").await;
    let (status, v) = error_of(app.chat(&key, chat_body("busy-model", false)).await).await;
    assert_eq!(status, 429, "{v}");

    let (app, _unused, _user, key) =
        app_with(baidu_channel(&mock.base_url(), "bce-v3/ALTAK-wrong/0000")).await;
    let (status, v) = error_of(
        app.chat(&key, chat_body("ernie-4.5-turbo-128k", false))
            .await,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (502, Some("upstream_auth_failed")),
        "{v}"
    );
}

#[tokio::test]
async fn compat_channel_types_are_listed_with_their_defaults() {
    let app = spawn_app().await;
    // Only a key (plus the account where the provider needs one).
    for (kind, extra) in [
        ("zhipu", json!({})),
        ("glm", json!({})),
        ("ali", json!({})),
        ("dashscope", json!({})),
        ("qwen", json!({})),
        ("cloudflare", json!({"options": {"account_id": CF_ACCOUNT}})),
        ("workers-ai", json!({})),
        ("baidu", json!({})),
        ("qianfan", json!({})),
        ("ernie", json!({})),
    ] {
        let mut body = json!({"name": kind, "type": kind, "secret_key": "k"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        app.channel(body).await;
    }
    // Azure has no default endpoint: the resource URL is required.
    for kind in ["azure", "azure-openai"] {
        let r = app
            .admin_post(
                "/admin/channels",
                json!({"name": kind, "type": kind, "secret_key": "k"}),
            )
            .await;
        assert_eq!(r.status(), 400, "{kind}");
    }
    let v: Value = app.admin_json("/admin/channels").await;
    let urls: Vec<(String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_owned(),
                c["base_url"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (kind, url) in [
        ("zhipu", "https://open.bigmodel.cn/api/paas/v4"),
        ("ali", "https://dashscope.aliyuncs.com"),
        ("cloudflare", "https://api.cloudflare.com/client/v4"),
        ("baidu", "https://qianfan.baidubce.com/v2"),
    ] {
        assert!(
            urls.contains(&(kind.to_owned(), url.to_owned())),
            "{kind}: {urls:?}"
        );
    }
}

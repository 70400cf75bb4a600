//! The rest of the OpenAI surface served so far: embeddings and legacy
//! completions, each billed.

use serde_json::{Value, json};

use crate::helpers::*;

async fn app_with_mock() -> (TestApp, MockUpstream, i64, String) {
    let app = spawn_app().await;
    let mock = MockUpstream::start("k").await;
    app.channel(json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["text-embedding-3-small", "gpt-3.5-turbo-instruct"]}))
        .await;
    let (user, key) = app.user_with_key(1_000_000).await;
    (app, mock, user, key)
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

#[tokio::test]
async fn embeddings_are_relayed_and_billed_by_input_tokens() {
    let (app, mock, user, key) = app_with_mock().await;
    let r = post(
        &app,
        &key,
        "/v1/embeddings",
        json!({"model": "text-embedding-3-small", "input": ["hello", "world"]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["embedding"], json!([0.1, -0.2, 0.3]));
    assert_eq!(mock.last_body()["input"], json!(["hello", "world"]));
    let logs = app.logs().await;
    assert_eq!(logs[0]["prompt_tokens"], MOCK_EMBEDDING_TOKENS);
    assert_eq!(logs[0]["completion_tokens"], 0);
    assert_eq!(logs[0]["quota"], MOCK_EMBEDDING_TOKENS);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(1_000_000 - quota, charged);

    for (body, param) in [
        (json!({"model": "text-embedding-3-small"}), "input"),
        (
            json!({"model": "text-embedding-3-small", "input": []}),
            "input",
        ),
        (
            json!({"model": "text-embedding-3-small", "input": [{"x": 1}]}),
            "input",
        ),
        (json!({"input": "x"}), "model"),
    ] {
        let r = post(&app, &key, "/v1/embeddings", body).await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], param);
    }
}

#[tokio::test]
async fn legacy_completions_plain_and_streamed() {
    let (app, _mock, _user, key) = app_with_mock().await;
    let r = post(
        &app,
        &key,
        "/v1/completions",
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["text"], MOCK_REPLY);
    let r = post(
        &app,
        &key,
        "/v1/completions",
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello", "stream": true}),
    )
    .await;
    let data = sse_data(r).await;
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, MOCK_REPLY);
    let logs = app.logs().await;
    assert_eq!(logs.len(), 2);
    assert!(
        logs.iter()
            .all(|l| l["completion_tokens"] == MOCK_COMPLETION_TOKENS)
    );
    let r = post(
        &app,
        &key,
        "/v1/completions",
        json!({"model": "gpt-3.5-turbo-instruct"}),
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn an_endpoint_the_adapter_does_not_serve_is_a_clear_501() {
    let app = spawn_app().await;
    let mock = MockAnthropic::start("k").await;
    app.channel(json!({"name": "claude", "type": "claude", "secret_key": "k", "base_url": mock.base_url(), "models": "claude-embed"}))
        .await;
    let (user, key) = app.user_with_key(1_000_000).await;
    let r = post(
        &app,
        &key,
        "/v1/embeddings",
        json!({"model": "claude-embed", "input": "x"}),
    )
    .await;
    assert_eq!(r.status(), 501);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "not_implemented"
    );
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!((quota, charged), (1_000_000, 0));
}

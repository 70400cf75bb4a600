//! A Claude channel through the built-in Anthropic adapter, against a mock
//! of the Messages API that rejects malformed requests as the real one does.

use serde_json::{Value, json};

use crate::helpers::*;

async fn claude_app() -> (TestApp, MockAnthropic, String) {
    let app = spawn_app().await;
    let mock = MockAnthropic::start("sk-ant-test").await;
    app.channel(json!({"name": "claude", "type": "claude", "secret_key": "sk-ant-test", "base_url": mock.base_url(), "models": ["claude-sonnet-4"]}))
        .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    (app, mock, key)
}

#[tokio::test]
async fn plain_stream_and_tools_through_a_claude_channel() {
    let (app, mock, key) = claude_app().await;
    let body = json!({"model": "claude-sonnet-4", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"}
    ]});
    let r = app.chat(&key, body.clone()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], CLAUDE_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], CLAUDE_INPUT_TOKENS);
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"],
        CLAUDE_CACHE_READ_TOKENS
    );
    let sent = mock.last_body();
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 4096);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let data = sse_data(app.chat(&key, streamed).await).await;
    assert_eq!(chunk_text(&data), CLAUDE_REPLY);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], CLAUDE_OUTPUT_TOKENS);

    let tools = json!({"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
        "tool_choice": "required"});
    let v: Value = app.chat(&key, tools).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );

    // Billed from Claude's usage, cache reads included.
    let logs = app.logs().await;
    assert_eq!(logs.len(), 3);
    assert!(
        logs.iter()
            .all(|l| l["prompt_tokens"] == CLAUDE_INPUT_TOKENS
                && l["cached_tokens"] == CLAUDE_CACHE_READ_TOKENS)
    );
}

#[tokio::test]
async fn claude_errors_reach_the_client_in_openai_shape() {
    let app = spawn_app().await;
    let mock = MockAnthropic::start("sk-ant-right").await;
    app.channel(json!({"name": "claude", "type": "claude", "secret_key": "sk-ant-wrong", "base_url": mock.base_url(), "models": "claude-sonnet-4"}))
        .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    let r = app.chat(&key, chat_body("claude-sonnet-4", false)).await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "upstream_auth_failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_talks_to_claude_through_transit() {
    let (app, _mock, key) = claude_app().await;
    crate::sdk::run_openai_sdk(
        &app,
        key,
        "claude-sonnet-4",
        CLAUDE_REPLY,
        CLAUDE_INPUT_TOKENS,
        CLAUDE_OUTPUT_TOKENS,
    )
    .await;
}

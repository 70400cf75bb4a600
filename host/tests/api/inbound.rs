//! Native inbound shapes: Anthropic Messages and Gemini generateContent
//! clients, served by a channel that speaks their shape (passed through)
//! and by one that does not (translated to the canonical form and back,
//! streams included), billed like any call; errors in each shape's envelope.

use serde_json::{Value, json};

use crate::helpers::*;

async fn post(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// `(event name, data)` of an SSE body.
async fn events(r: reqwest::Response) -> Vec<(String, Value)> {
    let text = r.text().await.unwrap();
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect()
}

fn messages_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": stream,
    })
}

async fn claude_app() -> (TestApp, MockAnthropic, String) {
    let app = spawn_app().await;
    let mock = MockAnthropic::start("sk-ant").await;
    app.channel(json!({"name": "claude", "type": "anthropic", "secret_key": "sk-ant", "base_url": mock.base_url(),
                       "models": ["claude-test"], "model_mapping": {"claude-test": "claude-upstream"}}))
        .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    (app, mock, key)
}

async fn openai_app() -> (TestApp, MockUpstream, i64, String) {
    let app = spawn_app().await;
    let mock = MockUpstream::start("sk-oa").await;
    app.channel(json!({"name": "oa", "type": "openai", "secret_key": "sk-oa", "base_url": mock.base_url(), "models": ["gpt-test"]}))
        .await;
    let (user, key) = app.user_with_key(1_000_000).await;
    (app, mock, user, key)
}

#[tokio::test]
async fn messages_to_a_claude_channel_pass_through() {
    let (app, mock, key) = claude_app().await;
    // Current Anthropic SDKs send Bearer; older ones x-api-key.
    for auth in [
        ("authorization", format!("Bearer {key}")),
        ("x-api-key", key.clone()),
    ] {
        let r = post(
            &app,
            "/v1/messages",
            &[(auth.0, &auth.1), ("anthropic-version", "2023-06-01")],
            messages_body("claude-test", false),
        )
        .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["id"], "msg_mock", "untouched: {v}");
        assert_eq!(v["content"][0]["text"], CLAUDE_REPLY);
    }
    // The body went upstream as sent, with the model mapped.
    let sent = mock.last_body();
    assert_eq!(sent["model"], "claude-upstream");
    assert_eq!(sent["system"], "Be brief.");

    let r = post(
        &app,
        "/v1/messages",
        &[("x-api-key", &key)],
        messages_body("claude-test", true),
    )
    .await;
    assert_eq!(r.status(), 200);
    let ev = events(r).await;
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.iter().all(|n| !n.is_empty()));
    let logs = app.logs().await;
    assert_eq!(logs[0]["completion_tokens"], CLAUDE_OUTPUT_TOKENS);
}

#[tokio::test]
async fn messages_to_an_openai_channel_are_translated_both_ways() {
    let (app, mock, user, key) = openai_app().await;
    let r = post(
        &app,
        "/v1/messages",
        &[("x-api-key", &key)],
        messages_body("gpt-test", false),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], MOCK_REPLY);
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], MOCK_PROMPT_TOKENS);
    assert_eq!(v["usage"]["output_tokens"], MOCK_COMPLETION_TOKENS);
    // Upstream saw an OpenAI chat request with the system prompt first.
    let sent = mock.last_body();
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "Say hello");
    assert_eq!(sent["max_tokens"], 256);

    let r = post(
        &app,
        "/v1/messages",
        &[("x-api-key", &key)],
        messages_body("gpt-test", true),
    )
    .await;
    assert_eq!(r.status(), 200);
    let ev = events(r).await;
    let names: Vec<&str> = ev
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "ping")
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names[1], "content_block_start");
    assert_eq!(
        &names[names.len() - 3..],
        &["content_block_stop", "message_delta", "message_stop"]
    );
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, MOCK_REPLY);
    let delta = &ev.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], MOCK_COMPLETION_TOKENS);
    // Both calls billed.
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(
        charged,
        2 * (MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS) as i64
    );
    assert_eq!(balance, 1_000_000 - charged);
}

#[tokio::test]
async fn messages_errors_are_anthropic_shaped() {
    let (app, _mock, _, key) = openai_app().await;
    let mut body = messages_body("gpt-test", false);
    body.as_object_mut().unwrap().remove("max_tokens");
    let r = post(&app, "/v1/messages", &[("x-api-key", &key)], body).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let r = post(
        &app,
        "/v1/messages",
        &[("x-api-key", "sk-nope")],
        messages_body("gpt-test", false),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "authentication_error"
    );
    let r = post(
        &app,
        "/v1/messages/count_tokens",
        &[("x-api-key", &key)],
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "Say hello"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<Value>().await.unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn gemini_generate_content_is_served_by_an_openai_channel() {
    let (app, mock, _, key) = openai_app().await;
    let body = json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
        "generationConfig": {"maxOutputTokens": 128},
    });
    for prefix in ["/v1beta", "/v1"] {
        let r = post(
            &app,
            &format!("{prefix}/models/gpt-test:generateContent"),
            &[("x-goog-api-key", &key)],
            body.clone(),
        )
        .await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["text"],
            MOCK_REPLY
        );
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");
        assert_eq!(v["usageMetadata"]["promptTokenCount"], MOCK_PROMPT_TOKENS);
    }
    assert_eq!(mock.last_body()["max_tokens"], 128);
    // `?key=` works as well as the header; streams are SSE.
    let r = post(
        &app,
        &format!("/v1beta/models/gpt-test:streamGenerateContent?alt=sse&key={key}"),
        &[],
        body.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let ev = events(r).await;
    let text: String = ev
        .iter()
        .filter_map(|(_, d)| d["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, MOCK_REPLY);
    assert!(
        ev.last().unwrap().1["usageMetadata"]["totalTokenCount"]
            .as_u64()
            .unwrap()
            > 0
    );

    let r = post(
        &app,
        "/v1beta/models/gpt-test:countTokens",
        &[("x-goog-api-key", &key)],
        json!({"contents": body["contents"]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<Value>().await.unwrap()["totalTokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let r = post(
        &app,
        "/v1beta/models/gpt-test:embedContent",
        &[("x-goog-api-key", &key)],
        json!({"content": {"parts": [{"text": "hello"}]}}),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["embedding"]["values"].as_array().unwrap().len(), 3);

    // Errors in Google's envelope.
    let r = post(
        &app,
        "/v1beta/models/gpt-test:generateContent",
        &[("x-goog-api-key", &key)],
        json!({"contents": []}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["status"],
        "INVALID_ARGUMENT"
    );
    let r = post(
        &app,
        "/v1beta/models/gpt-test:generateContent",
        &[("x-goog-api-key", "nope")],
        body,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["status"],
        "UNAUTHENTICATED"
    );
}

fn sdk_env(
    app: &TestApp,
    key: String,
    model: &str,
    reply: &str,
    kind: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("GATEWAY_ROOT_URL", app.url("")),
        ("GATEWAY_KEY", key),
        ("GATEWAY_MODEL", model.to_owned()),
        ("EXPECTED_REPLY", reply.to_owned()),
        ("CHANNEL_KIND", kind.to_owned()),
    ]
}

async fn pytest(file: &'static str, env: Vec<(&'static str, String)>) {
    let python = tokio::task::spawn_blocking(crate::sdk::sdk_python)
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || crate::sdk::pytest(&python, file, &env))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_against_a_claude_channel() {
    let (app, _mock, key) = claude_app().await;
    pytest(
        "test_anthropic_sdk.py",
        sdk_env(&app, key, "claude-test", CLAUDE_REPLY, "claude"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_against_an_openai_channel() {
    let (app, mock, _, key) = openai_app().await;
    pytest(
        "test_anthropic_sdk.py",
        sdk_env(&app, key, "gpt-test", MOCK_REPLY, "openai"),
    )
    .await;
    // The tool definitions reached the OpenAI upstream as functions.
    let sent = mock.last_body();
    assert_eq!(sent["tools"][0]["type"], "function", "{sent}");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genai_sdk_against_an_openai_channel() {
    let (app, _mock, _, key) = openai_app().await;
    pytest(
        "test_genai_sdk.py",
        sdk_env(&app, key, "gpt-test", MOCK_REPLY, "openai"),
    )
    .await;
}

async fn gemini_app() -> (TestApp, crate::gemini_mock::MockGemini, i64, String) {
    let app = spawn_app().await;
    let mock = crate::gemini_mock::MockGemini::start("g-key").await;
    app.channel(json!({"name": "gemini", "type": "gemini", "secret_key": "g-key", "base_url": mock.base_url(),
                       "models": ["gemini-test"], "model_mapping": {"gemini-test": "gemini-upstream"}}))
        .await;
    let (user, key) = app.user_with_key(1_000_000).await;
    (app, mock, user, key)
}

#[tokio::test]
async fn gemini_clients_pass_through_to_a_gemini_channel() {
    use crate::gemini_mock::{GEMINI_OUTPUT_TOKENS, GEMINI_PROMPT_TOKENS, GEMINI_REPLY};
    let (app, mock, user, key) = gemini_app().await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]});
    let r = post(
        &app,
        "/v1beta/models/gemini-test:generateContent",
        &[("x-goog-api-key", &key)],
        body.clone(),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        GEMINI_REPLY
    );
    // Untouched on the way: the upstream saw the client's body, under the mapped model.
    assert_eq!(mock.last_body(), body);
    assert!(
        mock.last_path().contains("gemini-upstream:generateContent"),
        "{}",
        mock.last_path()
    );

    let r = post(
        &app,
        "/v1beta/models/gemini-test:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", &key)],
        body,
    )
    .await;
    assert_eq!(r.status(), 200);
    let ev = events(r).await;
    let text: String = ev
        .iter()
        .filter_map(|(_, d)| d["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, GEMINI_REPLY);
    let (_, charged, _) = app.ledger(user).await;
    assert_eq!(
        charged,
        2 * (GEMINI_PROMPT_TOKENS + GEMINI_OUTPUT_TOKENS) as i64
    );
}

#[tokio::test]
async fn openai_clients_are_served_by_a_gemini_channel() {
    use crate::gemini_mock::GEMINI_REPLY;
    let (app, mock, _, key) = gemini_app().await;
    let r = app.chat(&key, chat_body("gemini-test", false)).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], GEMINI_REPLY);
    assert_eq!(
        mock.last_body()["contents"][0]["parts"][0]["text"],
        "Say hello"
    );
    let r = app.chat(&key, chat_body("gemini-test", true)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(chunk_text(&sse_data(r).await), GEMINI_REPLY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genai_sdk_against_a_gemini_channel() {
    use crate::gemini_mock::GEMINI_REPLY;
    let (app, _mock, _, key) = gemini_app().await;
    pytest(
        "test_genai_sdk.py",
        sdk_env(&app, key, "gemini-test", GEMINI_REPLY, "gemini"),
    )
    .await;
}

/// The official OpenAI SDK gets plain and streamed answers, with usage, from
/// a Gemini channel (translated both ways by the gemini adapter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_is_served_by_a_gemini_channel() {
    use crate::gemini_mock::{GEMINI_OUTPUT_TOKENS, GEMINI_PROMPT_TOKENS, GEMINI_REPLY};
    let (app, _mock, _user, key) = gemini_app().await;
    crate::sdk::run_openai_sdk(
        &app,
        key,
        "gemini-test",
        GEMINI_REPLY,
        GEMINI_PROMPT_TOKENS,
        GEMINI_OUTPUT_TOKENS,
    )
    .await;
}

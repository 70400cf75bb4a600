//! The `tencent` (Hunyuan) and `coze` adapters through the running gateway,
//! against the protocol mocks of `cn_mocks`: chat plain and streamed, tools
//! (Hunyuan only: Coze bots take no client-side tools), errors mapped,
//! and what was served billed.

use serde_json::{Value, json};

use crate::cn_mocks::{
    COZE_INPUT_TOKENS, COZE_OUTPUT_TOKENS, COZE_REPLY, HUNYUAN_COMPLETION_TOKENS,
    HUNYUAN_PROMPT_TOKENS, HUNYUAN_REPLY, MockCoze, MockTencent,
};
use crate::helpers::{TestApp, chat_body, chunk_text, spawn_app, sse_data};

const QUOTA: i64 = 1_000_000;
const TC_SECRET_ID: &str = "AKIDmockHunyuan0001";
const TC_SECRET_KEY: &str = "mockHunyuanSecretKey0001";
const COZE_PAT: &str = "pat_mockCozeToken0001";
const COZE_BOT: &str = "7348293334792339480";

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
    }})
}

async fn tencent_app(kind: &str, key: &str, options: Value) -> (TestApp, MockTencent, i64, String) {
    let app = spawn_app().await;
    let mock = MockTencent::start(TC_SECRET_ID, TC_SECRET_KEY).await;
    app.channel(
        json!({"name": "hunyuan", "type": kind, "secret_key": key, "base_url": mock.base_url(),
                       "models": ["hunyuan-test", "hunyuan-limited"],
                       "model_mapping": {"hunyuan-test": "hunyuan-turbos-latest"},
                       "options": options}),
    )
    .await;
    let (user, token) = app.user_with_key(QUOTA).await;
    (app, mock, user, token)
}

fn tencent_key() -> String {
    format!("{TC_SECRET_ID}|{TC_SECRET_KEY}")
}

#[tokio::test]
async fn tencent_chat_stream_and_tools_are_served_and_billed() {
    let (app, mock, user, key) = tencent_app("tencent", &tencent_key(), json!({})).await;

    // Plain.
    let r = app.chat(&key, chat_body("hunyuan-test", false)).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], HUNYUAN_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], HUNYUAN_PROMPT_TOKENS);
    assert_eq!(v["usage"]["completion_tokens"], HUNYUAN_COMPLETION_TOKENS);
    let sent = mock.last_body();
    assert_eq!(sent["Model"], "hunyuan-turbos-latest");
    assert_eq!(sent["Messages"][0]["Role"], "user");
    assert_eq!(sent["Messages"][0]["Content"], "Say hello");
    assert_eq!(sent["Stream"], false);
    assert_eq!(
        mock.last_header("x-tc-action").as_deref(),
        Some("ChatCompletions")
    );
    assert_eq!(
        mock.last_header("x-tc-version").as_deref(),
        Some("2023-09-01")
    );
    assert_eq!(mock.last_header("x-tc-region"), None);

    // Streamed.
    let r = app.chat(&key, chat_body("hunyuan-test", true)).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    assert_eq!(chunk_text(&data), HUNYUAN_REPLY);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(mock.last_body()["Stream"], true);

    // Tools: the model calls one.
    let ask = json!({"model": "hunyuan-test", "tools": [weather_tool()], "tool_choice": "auto",
                     "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let r = app.chat(&key, ask.clone()).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"location\":\"Paris\"}");
    let sent = mock.last_body();
    let schema: Value =
        serde_json::from_str(sent["Tools"][0]["Function"]["Parameters"].as_str().unwrap()).unwrap();
    assert_eq!(schema["required"][0], "location");
    assert_eq!(sent["ToolChoice"], "auto");

    // ... and its result goes back.
    let answer = json!({"model": "hunyuan-test", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "{\"sky\":\"clear\"}"}
    ]});
    let r = app.chat(&key, answer).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], HUNYUAN_REPLY, "{v}");
    let sent = mock.last_body();
    assert_eq!(
        sent["Messages"][1]["ToolCalls"][0]["Function"]["Name"],
        "get_weather"
    );
    assert_eq!(sent["Messages"][2]["Role"], "tool");
    assert_eq!(sent["Messages"][2]["ToolCallId"], call["id"]);

    // Tools, streamed.
    let mut streamed = ask;
    streamed["stream"] = json!(true);
    let r = app.chat(&key, streamed).await;
    let data = sse_data(r).await;
    let chunks: Vec<Value> = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let delta = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .expect("a tool call delta");
    assert_eq!(delta[0]["function"]["name"], "get_weather");
    assert_eq!(delta[0]["index"], 0);
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );

    // Five calls, each billed for the usage Hunyuan reported.
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(
        charged,
        5 * (HUNYUAN_PROMPT_TOKENS + HUNYUAN_COMPLETION_TOKENS) as i64
    );
    assert_eq!(balance, QUOTA - charged);
}

#[tokio::test]
async fn tencent_errors_are_mapped() {
    // A SecretKey the mock does not sign with: its signature fails.
    let wrong = format!("{TC_SECRET_ID}|not-the-secret");
    let (app, mock, user, key) = tencent_app("tencent", &wrong, json!({})).await;
    let r = app.chat(&key, chat_body("hunyuan-test", false)).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_auth_failed", "{v}");
    assert!(!v.to_string().contains("not-the-secret"), "{v}");
    assert_eq!(mock.requests(), 1);
    assert_eq!(app.ledger(user).await.1, 0, "failures are not billed");

    // A key that is not `SecretId|SecretKey` never leaves the gateway.
    let (app, mock, _, key) = tencent_app("tencent", "just-one-part", json!({})).await;
    let r = app.chat(&key, chat_body("hunyuan-test", false)).await;
    assert_eq!(r.status(), 502);
    assert_eq!(mock.requests(), 0);

    // Rate limited (HTTP 200 with RequestLimitExceeded), streamed or not.
    let (app, mock, user, key) = tencent_app("tencent", &tencent_key(), json!({})).await;
    for stream in [false, true] {
        let r = app.chat(&key, chat_body("hunyuan-limited", stream)).await;
        assert_eq!(r.status(), 429, "stream: {stream}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "upstream_rate_limited", "{v}");
    }

    // A request Hunyuan refuses: the client's error, not retried.
    let before = mock.requests();
    let r = app
        .chat(
            &key,
            json!({"model": "hunyuan-test", "messages": [{"role": "tool", "tool_call_id": "x", "content": "orphan"},
                                                          {"role": "system", "content": "late"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("system"),
        "{v}"
    );
    assert_eq!(mock.requests(), before + 1);
    assert_eq!(app.ledger(user).await.1, 0);
}

#[tokio::test]
async fn hunyuan_channels_send_their_region() {
    let (app, mock, _, key) = tencent_app(
        "hunyuan",
        &tencent_key(),
        json!({"region": "ap-guangzhou", "enable-enhancement": "false"}),
    )
    .await;
    let r = app.chat(&key, chat_body("hunyuan-test", false)).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        mock.last_header("x-tc-region").as_deref(),
        Some("ap-guangzhou")
    );
    assert_eq!(mock.last_body()["EnableEnhancement"], false);

    // Created by type name with only a key, a channel points at Tencent.
    let id = app
        .channel(
            json!({"name": "hy", "type": "hunyuan", "secret_key": tencent_key(), "models": ["x"]}),
        )
        .await;
    let v: Value = app.admin_json(&format!("/admin/channels/{id}")).await;
    assert_eq!(v["base_url"], "https://hunyuan.tencentcloudapi.com", "{v}");
}

async fn coze_app(token: &str) -> (TestApp, MockCoze, i64, String) {
    let app = spawn_app().await;
    let mock = MockCoze::start(COZE_PAT, COZE_BOT).await;
    app.channel(
        json!({"name": "coze", "type": "coze", "secret_key": token, "base_url": mock.base_url(),
                       "models": ["coze-bot", "limited-bot", "ghost-bot"],
                       "model_mapping": {"coze-bot": COZE_BOT, "limited-bot": "bot-limited",
                                         "ghost-bot": "7000000000000000000"}}),
    )
    .await;
    let (user, key) = app.user_with_key(QUOTA).await;
    (app, mock, user, key)
}

#[tokio::test]
async fn coze_bots_answer_plain_and_streamed_and_are_billed() {
    let (app, mock, user, key) = coze_app(COZE_PAT).await;

    // A non-streamed client: Coze is asked to stream, and the gateway's
    // adapter assembles the whole event transcript into one completion.
    let mut body = chat_body("coze-bot", false);
    body["user"] = json!("end-user-7");
    let r = app.chat(&key, body).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], COZE_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], COZE_INPUT_TOKENS);
    assert_eq!(v["usage"]["completion_tokens"], COZE_OUTPUT_TOKENS);
    let sent = mock.last_body();
    assert_eq!(sent["bot_id"], COZE_BOT);
    assert_eq!(sent["user_id"], "end-user-7");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["auto_save_history"], false);
    assert_eq!(sent["additional_messages"][0]["role"], "user");
    assert_eq!(sent["additional_messages"][0]["content"], "Say hello");
    assert_eq!(sent["additional_messages"][0]["content_type"], "text");

    // Streamed.
    let r = app.chat(&key, chat_body("coze-bot", true)).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    assert_eq!(chunk_text(&data), COZE_REPLY);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));

    // An image by URL goes as an object_string message.
    let r = app
        .chat(
            &key,
            json!({"model": "coze-bot", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
            ]}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let sent = mock.last_body();
    assert_eq!(
        sent["additional_messages"][0]["content_type"],
        "object_string"
    );
    let items: Value =
        serde_json::from_str(sent["additional_messages"][0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        items[1],
        json!({"type": "image", "file_url": "https://example.com/cat.png"})
    );

    // Client-side tools: not something a Coze bot takes; never sent.
    let before = mock.requests();
    let r = app
        .chat(
            &key,
            json!({"model": "coze-bot", "tools": [weather_tool()],
                   "messages": [{"role": "user", "content": "Weather?"}]}),
        )
        .await;
    assert_eq!(r.status(), 501);
    assert_eq!(mock.requests(), before);

    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 3 * (COZE_INPUT_TOKENS + COZE_OUTPUT_TOKENS) as i64);
    assert_eq!(balance, QUOTA - charged);
}

#[tokio::test]
async fn coze_errors_are_mapped() {
    // A wrong token: Coze's 401 {code 4100}.
    let (app, _mock, user, key) = coze_app("pat_wrong").await;
    let r = app.chat(&key, chat_body("coze-bot", false)).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_auth_failed", "{v}");
    assert!(!v.to_string().contains("pat_wrong"), "{v}");
    assert_eq!(app.ledger(user).await.1, 0);

    let (app, _mock, user, key) = coze_app(COZE_PAT).await;
    // Rate limited: 429 {code 4013}, streamed or not.
    for stream in [false, true] {
        let r = app.chat(&key, chat_body("limited-bot", stream)).await;
        assert_eq!(r.status(), 429, "stream: {stream}");
    }
    // A bot that does not exist: HTTP 200 {code 4200}, read from the body.
    let r = app.chat(&key, chat_body("ghost-bot", false)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "4200", "{v}");
    // Streamed, the same JSON body comes instead of an event stream: the
    // adapter still reads the error from it.
    let r = app.chat(&key, chat_body("ghost-bot", true)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "4200", "{v}");
    assert_eq!(app.ledger(user).await.1, 0, "failures are not billed");
}

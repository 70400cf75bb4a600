//! Amazon Bedrock channels (types `bedrock` and `aws`) through the built-in
//! Bedrock adapter, against a mock of Bedrock Runtime's Converse API that
//! verifies SigV4 signatures and rejects malformed requests as Bedrock does,
//! streaming in the AWS eventstream framing.

use serde_json::{Value, json};

use crate::bedrock_mock::*;
use crate::helpers::*;

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const UPSTREAM_MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// Input tokens as billed: Bedrock's `inputTokens` plus the cached ones.
const PROMPT_TOKENS: u64 =
    BEDROCK_INPUT_TOKENS + BEDROCK_CACHE_READ_TOKENS + BEDROCK_CACHE_WRITE_TOKENS;
/// The quota one call costs at [`prices`]: plain input at 1, cache reads at
/// 0.5, cache writes at 1, output at 2.
const CALL_COST: i64 = (BEDROCK_INPUT_TOKENS
    + BEDROCK_CACHE_READ_TOKENS / 2
    + BEDROCK_CACHE_WRITE_TOKENS
    + 2 * BEDROCK_OUTPUT_TOKENS) as i64;

fn prices() -> Value {
    let price = json!({"model_ratio": 1.0, "completion_ratio": 2.0, "cache_read_ratio": 0.5, "cache_write_ratio": 1.0});
    json!({"models": {"claude-bedrock": price, UPSTREAM_MODEL: price, THROTTLED_STREAM_MODEL: price}})
}

async fn bedrock_app(secret: &str) -> (TestApp, MockBedrock, i64, String) {
    let app = spawn_app().await;
    let mock = MockBedrock::start(ACCESS_KEY, SECRET_KEY, None, "us-west-2").await;
    app.channel(json!({"name": "bedrock", "type": "bedrock",
        "secret_key": format!("{ACCESS_KEY}|{secret}"), "base_url": mock.base_url(),
        "options": {"region": "us-west-2"},
        "models": ["claude-bedrock", THROTTLED_STREAM_MODEL],
        "model_mapping": {"claude-bedrock": UPSTREAM_MODEL}}))
        .await;
    app.set_prices(prices()).await;
    let (user, key) = app.user_with_key(1_000_000).await;
    (app, mock, user, key)
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}])
}

#[tokio::test]
async fn chat_plain_and_stream_are_signed_translated_and_billed() {
    let (app, mock, user, key) = bedrock_app(SECRET_KEY).await;
    let body = json!({"model": "claude-bedrock", "max_tokens": 100, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="}}
        ]}
    ]});
    let r = app.chat(&key, body.clone()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], BEDROCK_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(v["usage"]["completion_tokens"], BEDROCK_OUTPUT_TOKENS);
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"],
        BEDROCK_CACHE_READ_TOKENS
    );
    // The model id is percent-encoded in the path (and signed as such).
    assert_eq!(
        mock.last_path(),
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    let sent = mock.last_body();
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(sent["inferenceConfig"]["maxTokens"], 100);
    assert_eq!(sent["messages"][0]["content"][1]["image"]["format"], "png");
    assert!(sent.get("model").is_none());

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = app.chat(&key, streamed).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    assert_eq!(chunk_text(&data), BEDROCK_REPLY);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let finish: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(usage["usage"]["completion_tokens"], BEDROCK_OUTPUT_TOKENS);
    assert!(mock.last_path().ends_with("%3A0/converse-stream"));
    assert_eq!(mock.signature_failures(), 0);

    // Both calls billed from Bedrock's usage, cache reads and writes priced
    // as such.
    let logs = app.logs().await;
    assert_eq!(logs.len(), 2);
    for l in &logs {
        assert_eq!(l["prompt_tokens"], PROMPT_TOKENS, "{l}");
        assert_eq!(l["completion_tokens"], BEDROCK_OUTPUT_TOKENS, "{l}");
        assert_eq!(l["cached_tokens"], BEDROCK_CACHE_READ_TOKENS, "{l}");
        assert_eq!(l["quota"], CALL_COST, "{l}");
    }
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 2 * CALL_COST);
    assert_eq!(1_000_000 - quota, charged);
    assert_eq!(app.open_holds().await, 0);
}

#[tokio::test]
async fn tools_both_ways() {
    let (app, mock, _, key) = bedrock_app(SECRET_KEY).await;
    // The model calls a tool.
    let ask = json!({"model": "claude-bedrock", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tools(), "tool_choice": "required"});
    let v: Value = app.chat(&key, ask.clone()).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, bedrock_tool_input());
    let sent = mock.last_body();
    assert_eq!(sent["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"],
        json!(["location"])
    );

    // The client answers it: toolUse and toolResult blocks go back.
    let answer = json!({"model": "claude-bedrock", "tools": weather_tools(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees and sunny"}
    ]});
    let v: Value = app.chat(&key, answer).await.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("{BEDROCK_AFTER_TOOL}18 degrees and sunny"),
        "{v}"
    );
    let sent = mock.last_body();
    assert_eq!(
        sent["messages"][1]["content"][0]["toolUse"]["input"],
        bedrock_tool_input()
    );
    assert_eq!(
        sent["messages"][2]["content"][0]["toolResult"]["toolUseId"],
        call["id"]
    );

    // A streamed tool call arrives as tool_call deltas.
    let mut streamed = ask;
    streamed["stream"] = json!(true);
    let data = sse_data(app.chat(&key, streamed).await).await;
    let chunks: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas.iter().all(|d| d["index"] == 0));
    let arguments: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        bedrock_tool_input()
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn errors_reach_the_client_in_openai_shape() {
    // A wrong secret: the mock recomputes the signature and refuses it.
    let (app, mock, user, key) = bedrock_app("not-the-secret").await;
    for stream in [false, true] {
        let r = app.chat(&key, chat_body("claude-bedrock", stream)).await;
        assert_eq!(r.status(), 502);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "upstream_auth_failed", "{v}");
        assert!(!v.to_string().contains("not-the-secret"));
    }
    assert_eq!(mock.signature_failures(), 2);
    assert_eq!(app.ledger(user).await.1, 0, "nothing is charged");

    // A conversation Bedrock refuses: its message reaches the client as a 400.
    let (app, mock, _, key) = bedrock_app(SECRET_KEY).await;
    let r = app
        .chat(
            &key,
            json!({"model": "claude-bedrock", "messages": [
                {"role": "assistant", "content": "I speak first."},
                {"role": "user", "content": "Hi"}
            ]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("A conversation must start with a user message"),
        "{v}"
    );
    assert_eq!(mock.signature_failures(), 0);

    // A throttle inside the stream ends it with an error event.
    let r = app
        .chat(&key, chat_body(THROTTLED_STREAM_MODEL, true))
        .await;
    // Bedrock sends `messageStart` before the exception: the client has its
    // 200 and the role chunk, then an error event in OpenAI's envelope.
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    let error = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("error").is_some())
        .unwrap_or_else(|| panic!("no error event in {data:?}"));
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Too many requests"),
        "{error}"
    );
}

#[tokio::test]
async fn aws_channels_with_session_tokens_and_key_only_channels() {
    let app = spawn_app().await;
    let mock = MockBedrock::start(
        ACCESS_KEY,
        SECRET_KEY,
        Some("FQoGZXIvYXdzEXAMPLETOKEN"),
        "eu-central-1",
    )
    .await;
    app.channel(json!({"name": "aws", "type": "aws",
        "secret_key": format!("{ACCESS_KEY}|{SECRET_KEY}|FQoGZXIvYXdzEXAMPLETOKEN"),
        "base_url": mock.base_url(), "options": {"region": "eu-central-1"}, "models": ["mistral.mistral-large-2402-v1:0"]}))
        .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    let r = app
        .chat(&key, chat_body("mistral.mistral-large-2402-v1:0", false))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], BEDROCK_REPLY);
    assert_eq!(mock.signature_failures(), 0);

    // Only a key and a region: the registry's default base URL, which the
    // adapter turns into the region's endpoint.
    for kind in ["bedrock", "aws"] {
        let id = app
            .channel(json!({"name": format!("{kind}-key-only"), "type": kind,
                "secret_key": format!("{ACCESS_KEY}|{SECRET_KEY}"), "options": {"region": "ap-southeast-2"}}))
            .await;
        let v: Value = app.admin_json(&format!("/admin/channels/{id}")).await;
        assert_eq!(
            v["base_url"], "https://bedrock-runtime.us-east-1.amazonaws.com",
            "{v}"
        );
    }
}

/// The mock itself refuses what Bedrock refuses, so the tests above would
/// notice an adapter that sends something else.
#[tokio::test]
async fn the_mock_refuses_what_bedrock_refuses() {
    let mock = MockBedrock::start(ACCESS_KEY, SECRET_KEY, None, "us-west-2").await;
    let path = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse";
    let good: &'static [u8] = br#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#;
    let kind = |r: &reqwest::Response| {
        r.headers()
            .get("x-amzn-ErrorType")
            .map(|v| v.to_str().unwrap().split(':').next().unwrap().to_owned())
    };

    let r = mock.post(path, good, Some(good)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["output"]["message"]["content"][0]["text"], BEDROCK_REPLY);
    assert_eq!(v["usage"]["inputTokens"], BEDROCK_INPUT_TOKENS);

    let r = mock.post(path, good, None).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        kind(&r).as_deref(),
        Some("MissingAuthenticationTokenException")
    );
    // Signed over another body: the signature no longer matches.
    let r = mock
        .post(path, good, Some(br#"{"messages":[]}"#.as_slice()))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(kind(&r).as_deref(), Some("InvalidSignatureException"));
    let v: Value = r.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("The request signature we calculated does not match")
    );
    assert_eq!(mock.signature_failures(), 2);

    for (body, expected) in [
        (&br#"{"system":[{"text":"x"}]}"#[..], "Value null at 'messages'"),
        (
            br#"{"messages":[{"role":"assistant","content":[{"text":"x"}]}]}"#,
            "A conversation must start with a user message",
        ),
        (
            br#"{"messages":[{"role":"user","content":[{"text":"a"}]},{"role":"user","content":[{"text":"b"}]}]}"#,
            "A conversation must alternate",
        ),
        (
            br#"{"messages":[{"role":"user","content":[]}]}"#,
            "The content field in the Message object at messages.0 is empty",
        ),
        (
            br#"{"messages":[{"role":"user","content":[{"text":"  "}]}]}"#,
            "is blank",
        ),
        (
            br#"{"messages":[{"role":"user","content":[{"text":"a"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"t","name":"f","input":{}}}]}]}"#,
            "The toolConfig field must be defined",
        ),
        (
            br#"{"messages":[{"role":"user","content":[{"image":{"format":"tiff","source":{"bytes":"AAAA"}}}]}]}"#,
            "image.format",
        ),
        (
            br#"{"messages":[{"role":"user","content":[{"text":"a"}]}],"inferenceConfig":{"maxTokens":0}}"#,
            "maxTokens",
        ),
    ] {
        let r = mock.post(path, body, Some(body)).await;
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(kind(&r).as_deref(), Some("ValidationException"));
        let v: Value = r.json().await.unwrap();
        assert!(
            v["message"].as_str().unwrap().contains(expected),
            "{v} for {}",
            String::from_utf8_lossy(body)
        );
    }
    let r = mock.post(path, b"{not json", Some(b"{not json")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(kind(&r).as_deref(), Some("SerializationException"));
    assert_eq!(mock.requests(), 12);
}

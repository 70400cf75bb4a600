//! Chat relayed end to end through the OpenAI adapter component.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

async fn app_with_channel() -> (TestApp, MockUpstream, i64, String) {
    let app = spawn_app().await;
    let mock = MockUpstream::start("sk-upstream-1").await;
    let channel = app
        .channel(json!({
            "name": "mock", "type": "openai", "secret_key": "sk-upstream-1",
            "base_url": mock.base_url(), "models": ["gpt-4o-mini"],
        }))
        .await;
    let (user, key) = app.user_with_key(1_000_000).await;
    assert!(user > 0);
    (app, mock, channel, key)
}

#[tokio::test]
async fn non_stream_answer_and_usage_are_recorded() {
    let (app, mock, channel, key) = app_with_channel().await;
    let r = app.chat(&key, chat_body("gpt-4o-mini", false)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-request-id").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], MOCK_REPLY);
    assert_eq!(v["usage"]["prompt_tokens"], MOCK_PROMPT_TOKENS);
    // The adapter forwarded the client's request with the upstream's key.
    assert_eq!(mock.last_body()["model"], "gpt-4o-mini");
    assert!(mock.last_body().get("stream_options").is_none());

    let logs = app.logs().await;
    assert_eq!(logs.len(), 1);
    let log = &logs[0];
    assert_eq!(log["channel_id"], channel);
    assert_eq!(log["prompt_tokens"], MOCK_PROMPT_TOKENS);
    assert_eq!(log["completion_tokens"], MOCK_COMPLETION_TOKENS);
    let charged = (MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS) as i64;
    assert_eq!(log["quota"], charged);
    assert_eq!(log["is_stream"], 0);
    let user = app.user(log["user_id"].as_i64().unwrap()).await;
    assert_eq!(user["used_quota"], charged);
    assert_eq!(user["quota"], 1_000_000 - charged);
    assert_eq!(user["request_count"], 1);
}

/// A request's id is the client's `x-request-id` if it sent one, else one
/// the gateway makes; either way it is echoed in the answer (errors
/// included) and names the call's log row.
#[tokio::test]
async fn the_request_id_is_echoed_and_names_the_log_row() {
    let (app, _mock, _, key) = app_with_channel().await;
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-request-id", "client-chosen-7")
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "client-chosen-7");

    let r = app.chat(&key, chat_body("gpt-4o-mini", false)).await;
    assert_eq!(r.status(), 200);
    let made = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");

    let r = app
        .chat("sk-not-a-key", chat_body("gpt-4o-mini", false))
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("x-request-id").is_some());

    let mut logged: Vec<String> = app
        .logs()
        .await
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_owned())
        .collect();
    logged.sort();
    let mut sent = vec!["client-chosen-7".to_owned(), made];
    sent.sort();
    assert_eq!(logged, sent);
}

#[tokio::test]
async fn stream_with_usage_relays_chunks_and_bills_upstream_usage() {
    let (app, mock, _, key) = app_with_channel().await;
    let mut body = chat_body("gpt-4o-mini", true);
    body["stream_options"] = json!({"include_usage": true});
    let r = app.chat(&key, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let data = sse_data(r).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(chunk_text(&data), MOCK_REPLY);
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"],
        MOCK_COMPLETION_TOKENS
    );
    assert_eq!(mock.last_body()["stream_options"]["include_usage"], true);

    let logs = app.logs().await;
    assert_eq!(logs[0]["is_stream"], 1);
    assert_eq!(logs[0]["prompt_tokens"], MOCK_PROMPT_TOKENS);
    assert_eq!(logs[0]["completion_tokens"], MOCK_COMPLETION_TOKENS);
}

/// A long prompt grows the instance that prepares it past what is held
/// through a wait (`adapters::guest::HELD_MEMORY_GROWTH`): the answer is
/// translated by a fresh instance, streamed or not, and nothing is lost.
#[tokio::test]
async fn a_long_prompt_is_answered_through_a_fresh_instance() {
    let (app, mock, _, key) = app_with_channel().await;
    let prompt = "a long document, ".repeat(8_000);
    for stream in [true, false] {
        let mut body = chat_body("gpt-4o-mini", stream);
        body["messages"] = json!([{"role": "user", "content": prompt}]);
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = app.chat(&key, body).await;
        assert_eq!(r.status(), 200, "stream {stream}");
        if stream {
            let data = sse_data(r).await;
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
            assert_eq!(chunk_text(&data), MOCK_REPLY);
        } else {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["choices"][0]["message"]["content"], MOCK_REPLY);
        }
        assert_eq!(mock.last_body()["messages"][0]["content"], prompt.as_str());
    }
    let logs = app.logs().await;
    assert_eq!(logs.len(), 2);
    assert!(
        logs.iter()
            .all(|l| l["completion_tokens"] == MOCK_COMPLETION_TOKENS),
        "{logs:?}"
    );
}

/// OpenAI streams are read by the host (`answer::openai`): open ones hold
/// no adapter instance, and every stream gets its own answer and is billed
/// its own usage, the usage-only chunk reaching the clients who asked.
#[tokio::test]
async fn open_openai_streams_hold_no_adapter_instance() {
    let (app, mock, _, key) = app_with_channel().await;
    let (_, other_key) = app.user_with_key(1_000_000).await;
    mock.set(Behavior::SlowStream);
    let mut asked = chat_body("gpt-4o-mini", true);
    asked["stream_options"] = json!({"include_usage": true});
    let mut streams = Vec::new();
    for (key, body) in [
        (&key, &asked),
        (&key, &chat_body("gpt-4o-mini", true)),
        (&other_key, &asked),
    ] {
        let r = app.chat(key, body.clone()).await;
        assert_eq!(r.status(), 200);
        streams.push((r, body["stream_options"]["include_usage"] == true));
    }
    let openai = app.admin_adapter("openai").await;
    assert_eq!(
        (&openai["in_flight"], &openai["hosting"]),
        (&json!(0), &json!(0)),
        "{openai}"
    );
    for (r, asked) in streams {
        let data = sse_data(r).await;
        assert_eq!(chunk_text(&data), MOCK_REPLY);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        let usage_chunk = data.iter().any(|d| d.contains("\"usage\":{"));
        assert_eq!(usage_chunk, asked, "{data:?}");
    }
    let logs = app.logs().await;
    assert_eq!(logs.len(), 3);
    assert!(
        logs.iter()
            .all(|l| l["completion_tokens"] == MOCK_COMPLETION_TOKENS
                && l["prompt_tokens"] == MOCK_PROMPT_TOKENS),
        "{logs:?}"
    );
}

/// An OpenAI answer carrying an error object with a 200 is the upstream's
/// failure, plain or streamed: 502 with the upstream's message, nothing
/// billed, and another channel tried first.
#[tokio::test]
async fn an_error_object_in_a_200_answer_fails_the_attempt() {
    let (app, mock, _, key) = app_with_channel().await;
    mock.set(Behavior::ErrorIn200);
    for stream in [false, true] {
        let r = app.chat(&key, chat_body("gpt-4o-mini", stream)).await;
        assert_eq!(r.status(), 502, "stream {stream}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("The engine is currently overloaded.")),
            "{v}"
        );
    }
    let logs = app.logs().await;
    assert!(
        logs.iter()
            .all(|l| l["quota"] == 0 && l["completion_tokens"] == 0),
        "{logs:?}"
    );

    let healthy = MockUpstream::start("sk-upstream-2").await;
    app.channel(json!({
        "name": "second", "type": "openai", "secret_key": "sk-upstream-2",
        "base_url": healthy.base_url(), "models": ["gpt-4o-mini"], "priority": -1,
    }))
    .await;
    let r = app.chat(&key, chat_body("gpt-4o-mini", false)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], MOCK_REPLY);
}

/// A call holds no adapter instance while its upstream works on it: with
/// one place in the pool, a slow call does not keep a second one waiting.
#[tokio::test]
async fn no_adapter_instance_is_held_while_the_upstream_works() {
    let app = spawn_app_with(|c| c.adapters.max_instances = 5).await;
    let mock = MockUpstream::start("sk-upstream-1").await;
    app.channel(json!({
        "name": "mock", "type": "openai", "secret_key": "sk-upstream-1",
        "base_url": mock.base_url(), "models": ["gpt-4o-mini"],
    }))
    .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    let (_, other_key) = app.user_with_key(1_000_000).await;
    mock.set(Behavior::Slow);
    let slow = {
        let (url, key) = (app.url("/v1/chat/completions"), key.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&chat_body("gpt-4o-mini", false))
                .send()
                .await
                .unwrap()
        })
    };
    for _ in 0..100 {
        if mock.requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.requests(), 1);
    let adapter = app.app.state.runtime.get("openai").unwrap();
    assert_eq!(adapter.in_flight(), 0, "the waiting call holds no instance");
    // Another user's call takes the only place meanwhile (the slow call's
    // instance waits warm, and gives its place up).
    mock.set(Behavior::Normal);
    let r = app.chat(&other_key, chat_body("gpt-4o-mini", false)).await;
    assert_eq!(r.status(), 200);
    assert!(!slow.is_finished(), "the slow answer came early");
    let r = slow.await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], MOCK_REPLY);
}

/// A request head larger than a connection's read buffer may grow to is
/// refused with 431 (hyper's own default would take up to about 400 KB).
#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let (app, _mock, _, key) = app_with_channel().await;
    let huge = "x".repeat(3 * transit::server::READ_BUFFER_BYTES);
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-padding", huge)
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    // A head that fits, and a body far larger than the buffer, pass.
    let mut body = chat_body("gpt-4o-mini", false);
    body["messages"] = json!([{"role": "user", "content": "long ".repeat(40_000)}]);
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-padding", "x".repeat(16 * 1024))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A channel to `mock` that speaks HTTP/2 with prior knowledge.
async fn h2c_channel(app: &TestApp, mock: &MockUpstream) -> i64 {
    app.channel(json!({
        "name": "h2c", "type": "openai", "secret_key": "sk-upstream-1",
        "base_url": mock.base_url(), "models": ["gpt-4o-mini"],
        "options": {"http2_prior_knowledge": true},
    }))
    .await
}

/// `n` streamed calls at once, each answered 200 and relayed to its end.
async fn streams_side_by_side(app: &TestApp, key: &str, n: usize) {
    let calls = (0..n).map(|_| async {
        let r = app.chat(key, chat_body("gpt-4o-mini", true)).await;
        assert_eq!(r.status(), 200);
        sse_data(r).await
    });
    for data in futures_util::future::join_all(calls).await {
        assert!(data.last().is_some_and(|d| d == "[DONE]"), "{data:?}");
    }
}

/// A channel with `http2_prior_knowledge` speaks HTTP/2 to its plain-HTTP
/// upstream from the first byte: its calls, streamed or not, share one
/// connection, even side by side. Without the option the same upstream
/// gets HTTP/1.1, and an option that is not a boolean is refused.
#[tokio::test]
async fn a_channel_can_speak_http2_with_prior_knowledge() {
    let app = spawn_app().await;
    let mock = MockUpstream::start("sk-upstream-1").await;
    let channel = h2c_channel(&app, &mock).await;
    let (_, key) = app.user_with_key(1_000_000).await;
    for stream in [false, true] {
        let r = app.chat(&key, chat_body("gpt-4o-mini", stream)).await;
        assert_eq!(r.status(), 200);
        if stream {
            assert_eq!(chunk_text(&sse_data(r).await), MOCK_REPLY);
        } else {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["choices"][0]["message"]["content"], MOCK_REPLY);
        }
    }
    mock.set(Behavior::SlowStream);
    streams_side_by_side(&app, &key, 4).await;
    assert_eq!(mock.requests(), 6);
    assert_eq!(mock.http2_requests(), 6);
    assert_eq!(mock.connections(), 1);
    // The admin API shows the option as it was given.
    assert!(
        app.admin_json(&format!("/admin/channels/{channel}")).await["options"]["http2_prior_knowledge"]
            == true
    );

    let r = app
        .admin_patch(
            &format!("/admin/channels/{channel}"),
            json!({"options": {"http2_prior_knowledge": false}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    mock.set(Behavior::Normal);
    let r = app.chat(&key, chat_body("gpt-4o-mini", false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(mock.http2_requests(), 6);
    assert_eq!(mock.requests(), 7);

    let r = app
        .admin_patch(
            &format!("/admin/channels/{channel}"),
            json!({"options": {"http2_prior_knowledge": "yes"}}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "options");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http2_prior_knowledge"),
        "{v}"
    );
}

/// An HTTP/2 server takes a few calls at once on a connection; Transit
/// opens another connection for calls past
/// `upstream.http2_max_streams_per_connection` rather than queue them
/// behind the streams under way. Five slow streams on a server that takes
/// two per connection are all under way at once, on three connections.
#[tokio::test]
async fn calls_past_an_http2_connections_streams_go_on_another_connection() {
    let app = spawn_app_with(|c| c.upstream.http2_max_streams_per_connection = 2).await;
    let mock = MockUpstream::start_with_http2_limit("sk-upstream-1", 2).await;
    h2c_channel(&app, &mock).await;
    let (_, key) = app.user_with_key(1_000_000).await;
    mock.set(Behavior::SlowStream);
    streams_side_by_side(&app, &key, 5).await;
    assert_eq!(mock.http2_requests(), 5);
    assert_eq!(mock.max_in_flight("sk-upstream-1"), 5);
    assert_eq!(mock.connections(), 3);
}

/// A finished stream leaves its upstream connection open for the next call,
/// streamed or not: one connection serves them all in turn.
#[tokio::test]
async fn an_upstream_connection_is_reused_after_a_stream() {
    let (app, mock, _, key) = app_with_channel().await;
    for stream in [true, true, false, true] {
        let r = app.chat(&key, chat_body("gpt-4o-mini", stream)).await;
        assert_eq!(r.status(), 200);
        if stream {
            assert_eq!(chunk_text(&sse_data(r).await), MOCK_REPLY);
        } else {
            r.bytes().await.unwrap();
        }
    }
    assert_eq!(mock.requests(), 4);
    assert_eq!(mock.connections(), 1);
}

#[tokio::test]
async fn stream_without_client_usage_option_still_bills_and_hides_the_usage_chunk() {
    let (app, mock, _, key) = app_with_channel().await;
    let data = sse_data(app.chat(&key, chat_body("gpt-4o-mini", true)).await).await;
    assert_eq!(chunk_text(&data), MOCK_REPLY);
    // Transit asked the upstream for usage...
    assert_eq!(mock.last_body()["stream_options"]["include_usage"], true);
    // ...but the client, who did not, gets no usage-only chunk.
    assert!(data.iter().all(|d| !d.contains("\"usage\":{")));
    let logs = app.logs().await;
    assert_eq!(logs[0]["completion_tokens"], MOCK_COMPLETION_TOKENS);
}

#[tokio::test]
async fn stream_where_upstream_sends_no_usage_is_billed_by_count() {
    let (app, mock, _, key) = app_with_channel().await;
    mock.set(Behavior::NoUsage);
    let data = sse_data(app.chat(&key, chat_body("gpt-4o-mini", true)).await).await;
    assert_eq!(chunk_text(&data), MOCK_REPLY);
    let logs = app.logs().await;
    // Counted with the model's tokenizer.
    let expected_output = transit::billing::tokens::count("gpt-4o-mini", MOCK_REPLY) as i64;
    assert_eq!(expected_output, 6);
    assert_eq!(logs[0]["completion_tokens"], expected_output);
    assert!(logs[0]["prompt_tokens"].as_i64().unwrap() > 0);
    assert_eq!(
        logs[0]["quota"],
        logs[0]["prompt_tokens"].as_i64().unwrap() + expected_output
    );
}

#[tokio::test]
async fn stream_cut_by_the_upstream_ends_with_an_error_event_and_is_billed() {
    let (app, mock, _, key) = app_with_channel().await;
    mock.set(Behavior::CutMidStream);
    let r = app.chat(&key, chat_body("gpt-4o-mini", true)).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    assert!(data.last().unwrap().contains("\"error\""), "{data:?}");
    assert_ne!(data.last().map(String::as_str), Some("[DONE]"));
    let delivered = chunk_text(&data);
    assert!(!delivered.is_empty() && delivered.len() < MOCK_REPLY.len());
    let logs = app.logs().await;
    assert_eq!(
        logs[0]["completion_tokens"],
        delivered.len().div_ceil(4) as i64
    );
    assert_eq!(logs[0]["content"], "upstream failed mid-stream");
}

/// A stream the upstream labels `application/json` is still relayed as a
/// stream.
#[tokio::test]
async fn a_stream_labelled_json_is_relayed() {
    let (app, mock, _, key) = app_with_channel().await;
    mock.set(Behavior::StreamLabelledJson);
    let r = app.chat(&key, chat_body("gpt-4o-mini", true)).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    assert_eq!(chunk_text(&data), MOCK_REPLY);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

/// An upstream that answers a streamed call with a plain completion fails
/// over to the next channel, and the client never sees that answer as an
/// error message.
#[tokio::test]
async fn an_upstream_ignoring_stream_fails_over() {
    let app = spawn_app().await;
    let plain = MockUpstream::start("sk-a").await;
    plain.set(Behavior::IgnoresStream);
    let healthy = MockUpstream::start("sk-b").await;
    app.channel(json!({"name": "plain", "secret_key": "sk-a", "base_url": plain.base_url(), "models": "m", "priority": 10}))
        .await;
    let (_, key) = app.user_with_key(10_000).await;
    let r = app.chat(&key, chat_body("m", true)).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("without a stream"), "{v}");
    assert!(!message.contains(MOCK_REPLY), "{v}");

    app.channel(json!({"name": "healthy", "secret_key": "sk-b", "base_url": healthy.base_url(), "models": "m", "priority": 0}))
        .await;
    let r = app.chat(&key, chat_body("m", true)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(chunk_text(&sse_data(r).await), MOCK_REPLY);
    assert_eq!(plain.requests(), 2);
    assert_eq!(healthy.requests(), 1);
}

#[tokio::test]
async fn upstream_500_fails_over_to_the_next_channel() {
    let app = spawn_app().await;
    let broken = MockUpstream::start("sk-a").await;
    broken.set(Behavior::ServerError);
    let healthy = MockUpstream::start("sk-b").await;
    let first = app
        .channel(json!({"name": "broken", "secret_key": "sk-a", "base_url": broken.base_url(), "models": "m", "priority": 10}))
        .await;
    let second = app
        .channel(json!({"name": "healthy", "secret_key": "sk-b", "base_url": healthy.base_url(), "models": "m", "priority": 0}))
        .await;
    let (_, key) = app.user_with_key(10_000).await;
    for stream in [false, true] {
        let r = app.chat(&key, chat_body("m", stream)).await;
        assert_eq!(r.status(), 200);
        if stream {
            assert_eq!(chunk_text(&sse_data(r).await), MOCK_REPLY);
        }
    }
    assert_eq!(broken.requests(), 2);
    assert_eq!(healthy.requests(), 2);
    let logs = app.logs().await;
    assert!(
        logs.iter()
            .all(|l| l["channel_id"] == second && l["channel_id"] != first)
    );
}

#[tokio::test]
async fn upstream_401_is_a_gateway_error_that_does_not_leak_the_upstream_message() {
    let app = spawn_app().await;
    let mock = MockUpstream::start("sk-right").await;
    app.channel(json!({"name": "wrong key", "secret_key": "sk-wrong-key", "base_url": mock.base_url(), "models": "m"}))
        .await;
    let (user, key) = app.user_with_key(10_000).await;
    let r = app.chat(&key, chat_body("m", false)).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert!(!v.to_string().contains("sk-wron"), "{v}");
    // Nothing was charged.
    app.settled().await;
    assert_eq!(app.user(user).await["used_quota"], 0);
}

#[tokio::test]
async fn upstream_client_errors_pass_through_in_openai_shape() {
    let (app, mock, _, key) = app_with_channel().await;
    mock.set(Behavior::BadRequest);
    let r = app.chat(&key, chat_body("gpt-4o-mini", false)).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "Invalid value for 'temperature': must be <= 2."
    );
    assert_eq!(v["error"]["code"], "invalid_value");
    assert_eq!(mock.requests(), 1, "a client error is not retried");

    mock.set(Behavior::RateLimited);
    let r = app.chat(&key, chat_body("gpt-4o-mini", false)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
}

#[tokio::test]
async fn model_mapping_rewrites_the_upstream_model() {
    let app = spawn_app().await;
    let mock = MockUpstream::start("k").await;
    app.channel(
        json!({"name": "mapped", "secret_key": "k", "base_url": mock.base_url(),
                       "models": ["gpt-4o"], "model_mapping": {"gpt-4o": "gpt-4o-2024-08-06"}}),
    )
    .await;
    let (_, key) = app.user_with_key(10_000).await;
    let r = app.chat(&key, chat_body("gpt-4o", false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(mock.last_body()["model"], "gpt-4o-2024-08-06");
    let logs = app.logs().await;
    assert_eq!(logs[0]["model"], "gpt-4o");
}

#[tokio::test]
async fn models_lists_what_the_token_may_call() {
    let app = spawn_app().await;
    let mock = MockUpstream::start("k").await;
    app.channel(json!({"name": "a", "secret_key": "k", "base_url": mock.base_url(), "models": "gpt-a,gpt-b"}))
        .await;
    let (user, key) = app.user_with_key(10).await;
    let v: Value = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gpt-a", "gpt-b"]);
    assert_eq!(v["object"], "list");

    let one: Value = app
        .client
        .get(app.url("/v1/models/gpt-a"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "gpt-a");
    let missing = app
        .client
        .get(app.url("/v1/models/nope"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let limited = app.key_for(user, json!({"models": ["gpt-b"]})).await;
    let v: Value = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(&limited)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let r = app.chat(&limited, chat_body("gpt-a", false)).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_channel_change_through_one_instance_reaches_another() {
    let a = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let b = spawn_app_on(dir, a.database_url.clone(), |_| {}).await;
    let mock = MockUpstream::start("k").await;
    let id = a
        .channel(json!({"name": "shared", "secret_key": "k", "base_url": mock.base_url(), "models": "m"}))
        .await;
    let (_, key) = a.user_with_key(10_000).await;
    // Instance b notices the new channel without being told.
    let mut ok = false;
    for _ in 0..40 {
        if b.chat(&key, chat_body("m", false)).await.status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "instance b never saw the channel");
    let r = a
        .admin_patch(
            &format!("/admin/channels/{id}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut stopped = false;
    for _ in 0..40 {
        if b.chat(&key, chat_body("m", false)).await.status() == 503 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "instance b kept using a disabled channel");
}

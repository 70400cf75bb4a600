//! Containment: a trapping, looping or memory-hungry adapter fails only the
//! request that hit it (and the streams sharing its instance), with an
//! OpenAI-shaped 502.

use serde_json::{Value, json};

use crate::helpers::*;

async fn misbehaving_app() -> (TestApp, MockUpstream, String) {
    let app = spawn_app().await;
    app.install_misbehave_adapter().await;
    let mock = MockUpstream::start("k").await;
    app.channel(
        json!({"name": "bad", "type": "misbehave", "secret_key": "k", "base_url": mock.base_url(),
                       "models": ["trap", "loop", "oom", "stream-trap", "fine"]}),
    )
    .await;
    app.channel(json!({"name": "good", "type": "openai", "secret_key": "k", "base_url": mock.base_url(), "models": ["healthy"]}))
        .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    (app, mock, key)
}

async fn adapter_failure(app: &TestApp, key: &str, model: &str, stream: bool) -> String {
    let r = app.chat(key, chat_body(model, stream)).await;
    assert_eq!(r.status(), 502, "{model}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "adapter_error", "{v}");
    assert_eq!(v["error"]["code"], "adapter_failure");
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn traps_loops_and_memory_bombs_are_contained() {
    let (app, mock, key) = misbehaving_app().await;
    let m = adapter_failure(&app, &key, "trap", false).await;
    assert!(m.contains("misbehave") && m.contains("trapped"), "{m}");
    let m = adapter_failure(&app, &key, "loop", false).await;
    assert!(m.contains("time limit"), "{m}");
    let m = adapter_failure(&app, &key, "oom", false).await;
    assert!(m.contains("memory limit"), "{m}");
    // A trap on the first stream batch happens before anything was sent.
    let m = adapter_failure(&app, &key, "stream-trap", true).await;
    assert!(m.contains("trapped"), "{m}");

    // The same adapter still serves well-behaved calls, and so do others.
    let r = app.chat(&key, chat_body("fine", false)).await;
    assert_eq!(r.status(), 200);
    let r = app.chat(&key, chat_body("healthy", true)).await;
    assert_eq!(chunk_text(&sse_data(r).await), MOCK_REPLY);
    // Only the two good calls went upstream, and no instance was leaked.
    assert_eq!(mock.requests(), 3);
    for adapter in app.app.state.runtime.adapters() {
        assert_eq!(adapter.in_flight(), 0, "{}", adapter.info.name);
    }
}

#[tokio::test]
async fn many_concurrent_traps_leave_the_gateway_serving() {
    let (app, _mock, key) = misbehaving_app().await;
    let mut calls = Vec::new();
    for i in 0..40 {
        let model = if i % 2 == 0 { "trap" } else { "healthy" };
        calls.push(app.chat(&key, chat_body(model, false)));
    }
    let results = futures_util::future::join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        if i % 2 == 0 {
            // A trap, or — once the crash-loop guard tripped — refused.
            assert!([502, 503].contains(&r.status().as_u16()), "{}", r.status());
        } else {
            assert_eq!(r.status(), 200);
        }
    }
}

/// Open streams of one user keep their translators in one adapter
/// instance; another user's stream gets an instance of its own.
#[tokio::test]
async fn open_streams_of_one_user_share_an_adapter_instance() {
    let (app, mock, key) = misbehaving_app().await;
    let (_, other_key) = app.user_with_key(1_000_000).await;
    mock.set(Behavior::SlowStream);
    let mut open = Vec::new();
    for key in [&key, &key, &key, &other_key] {
        let r = app.chat(key, chat_body("fine", true)).await;
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let adapter = app.app.state.runtime.get("misbehave").unwrap();
    assert_eq!((adapter.hosting(), adapter.in_flight()), (2, 4));
    for r in open {
        let data = sse_data(r).await;
        assert_eq!(chunk_text(&data), MOCK_REPLY);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    }
    assert_eq!((adapter.hosting(), adapter.in_flight()), (0, 0));
}

/// A trap in one stream's translator ends the user's streams that share
/// its instance, and counts once against the adapter's health: five
/// streams lost to one trap do not take the adapter out of rotation.
#[tokio::test]
async fn a_trap_in_a_shared_stream_instance_counts_once() {
    let (app, mock, key) = misbehaving_app().await;
    mock.set(Behavior::SlowStream);
    let mut open = Vec::new();
    for _ in 0..4 {
        let r = app.chat(&key, chat_body("fine", true)).await;
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let adapter = app.app.state.runtime.get("misbehave").unwrap();
    assert_eq!(adapter.hosting(), 1, "the four streams share an instance");
    let m = adapter_failure(&app, &key, "stream-trap", true).await;
    assert!(m.contains("trapped"), "{m}");
    for r in open {
        let data = sse_data(r).await;
        assert_ne!(data.last().map(String::as_str), Some("[DONE]"));
        assert!(
            data.iter()
                .any(|d| d.contains("another stream sharing its instance")),
            "{data:?}"
        );
    }
    assert!(adapter.health.is_healthy(), "one trap counted once");
    // The user's next stream gets a fresh instance.
    mock.set(Behavior::Normal);
    let r = app.chat(&key, chat_body("fine", true)).await;
    assert_eq!(chunk_text(&sse_data(r).await), MOCK_REPLY);
    assert_eq!((adapter.hosting(), adapter.in_flight()), (0, 0));
}

#[tokio::test]
async fn an_adapter_that_keeps_trapping_is_taken_out_of_rotation() {
    let (app, mock, key) = misbehaving_app().await;
    for _ in 0..5 {
        adapter_failure(&app, &key, "trap", false).await;
    }
    // The guard tripped: the adapter's channels are skipped, without a call.
    let r = app.chat(&key, chat_body("fine", false)).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "adapter_unavailable");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("out of rotation")
    );
    // Other adapters keep serving.
    assert_eq!(
        app.chat(&key, chat_body("healthy", false)).await.status(),
        200
    );
    assert_eq!(mock.requests(), 1);
    let misbehave = app.admin_adapter("misbehave").await;
    assert_eq!(misbehave["healthy"], false);
    assert!(misbehave["unhealthy_until"].as_i64().is_some());
}

#[tokio::test]
async fn the_admin_api_lists_loaded_adapters() {
    let (app, _mock, _) = misbehaving_app().await;
    let v: Value = app.admin_json("/admin/adapters").await;
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "anthropic",
            "apimart",
            "bedrock",
            "cohere",
            "coze",
            "gemini",
            "jina-voyage",
            "kling",
            "misbehave",
            "openai",
            "openai-compat",
            "tencent",
        ]
    );
    let openai = &v["data"][names.iter().position(|n| *n == "openai").unwrap()];
    assert_eq!(openai["wit_version"], "0.3.0");
    assert_eq!(openai["builtin"], true);
    assert_eq!(openai["hash"].as_str().unwrap().len(), 64);
}

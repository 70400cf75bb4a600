//! Bad input gets a clear OpenAI-shaped answer with the right status.

use serde_json::{Value, json};

use crate::helpers::*;

async fn expect_error(r: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(r.status(), status);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    v
}

#[tokio::test]
async fn each_bad_input_has_its_status() {
    let app = spawn_app().await;
    let mock = MockUpstream::start("k").await;
    let channel = app
        .channel(json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["gpt-x", "gpt-off"]}))
        .await;
    let (user, key) = app.user_with_key(1_000).await;
    let post_raw = |body: &'static str| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    expect_error(
        post_raw("{not json").await.unwrap(),
        400,
        "invalid_request_error",
    )
    .await;
    let v = expect_error(
        post_raw(r#"{"messages":[{"role":"user","content":"x"}]}"#)
            .await
            .unwrap(),
        400,
        "invalid_request_error",
    )
    .await;
    assert_eq!(v["error"]["param"], "model");
    let v = expect_error(
        post_raw(r#"{"model":"gpt-x"}"#).await.unwrap(),
        400,
        "invalid_request_error",
    )
    .await;
    assert_eq!(v["error"]["param"], "messages");

    let huge = "x".repeat(300 * 1024);
    let r = app
        .chat(
            &key,
            json!({"model": "gpt-x", "messages": [{"role": "user", "content": huge}]}),
        )
        .await;
    expect_error(r, 413, "invalid_request_error").await;
    // The same without a length ahead: sent in pieces, refused as it passes
    // the cap; what follows is read and thrown away, so the answer arrives.
    let pieces = (0..300).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024]));
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "invalid_request_error").await;

    let v = expect_error(
        app.chat(&key, chat_body("no-such-model", false)).await,
        404,
        "invalid_request_error",
    )
    .await;
    assert_eq!(v["error"]["code"], "model_not_found");

    // A model that exists, but whose only channel is disabled.
    app.channel(json!({"name": "off", "secret_key": "k", "base_url": mock.base_url(), "models": "gpt-only-off", "status": "disabled"}))
        .await;
    let v = expect_error(
        app.chat(&key, chat_body("gpt-only-off", false)).await,
        503,
        "service_unavailable",
    )
    .await;
    assert_eq!(v["error"]["code"], "no_available_channel");

    // Tokens: missing, unknown, disabled, expired.
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&chat_body("gpt-x", false))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "authentication_error").await;
    let v = expect_error(
        app.chat("sk-not-a-real-key-0000000000", chat_body("gpt-x", false))
            .await,
        401,
        "authentication_error",
    )
    .await;
    assert!(!v.to_string().contains("sk-not-a-real-key-0000000000"));
    let disabled = app.key_for(user, json!({})).await;
    let tokens: Value = app
        .admin_json(&format!("/admin/tokens?user_id={user}"))
        .await;
    let disabled_id = tokens["data"].as_array().unwrap().last().unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        app.admin_patch(
            &format!("/admin/tokens/{disabled_id}"),
            json!({"status": "disabled"})
        )
        .await
        .status(),
        200
    );
    expect_error(
        app.chat(&disabled, chat_body("gpt-x", false)).await,
        401,
        "authentication_error",
    )
    .await;
    let expired = app.key_for(user, json!({"expires_at": 1_000})).await;
    let v = expect_error(
        app.chat(&expired, chat_body("gpt-x", false)).await,
        401,
        "authentication_error",
    )
    .await;
    assert_eq!(v["error"]["code"], "expired_api_key");

    // Quota: a user with nothing left, a token with nothing left.
    let (_, broke) = app.user_with_key(0).await;
    let v = expect_error(
        app.chat(&broke, chat_body("gpt-x", false)).await,
        403,
        "insufficient_quota",
    )
    .await;
    assert_eq!(v["error"]["code"], "insufficient_quota");
    let capped = app
        .key_for(user, json!({"remain_quota": 0, "unlimited_quota": false}))
        .await;
    expect_error(
        app.chat(&capped, chat_body("gpt-x", false)).await,
        403,
        "insufficient_quota",
    )
    .await;

    // Admin: missing and wrong tokens.
    let r = app
        .client
        .get(app.url("/admin/channels"))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "authentication_error").await;
    let r = app
        .client
        .get(app.url("/admin/channels"))
        .header("X-Admin-Token", "nope")
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "authentication_error").await;

    // Unknown routes answer in the same shape.
    let r = app.client.get(app.url("/v1/nope")).send().await.unwrap();
    expect_error(r, 404, "invalid_request_error").await;

    // None of this reached the upstream or charged anything.
    assert_eq!(mock.requests(), 0);
    app.settled().await;
    assert_eq!(app.user(user).await["used_quota"], 0);
    assert!(channel > 0);
}

#[tokio::test]
async fn admin_input_is_validated() {
    let app = spawn_app().await;
    let r = app
        .admin_post("/admin/channels", json!({"name": "x"}))
        .await;
    let v = expect_error(r, 400, "invalid_request_error").await;
    assert_eq!(v["error"]["param"], "secret_key");
    let r = app
        .admin_post(
            "/admin/channels",
            json!({"name": "x", "secret_key": "k", "type": "nonsense"}),
        )
        .await;
    expect_error(r, 400, "invalid_request_error").await;
    let r = app
        .admin_post(
            "/admin/channels",
            json!({"name": "x", "secret_key": "k", "type": "custom"}),
        )
        .await;
    let v = expect_error(r, 400, "invalid_request_error").await;
    assert_eq!(v["error"]["param"], "base_url");
    let r = app
        .admin_post(
            "/admin/channels",
            json!({"name": "x", "secret_key": "k", "bogus": 1}),
        )
        .await;
    expect_error(r, 400, "invalid_request_error").await;
    let r = app
        .client
        .post(app.url("/admin/users"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .body("{")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_request_error").await;
    let r = app
        .admin_post("/admin/tokens", json!({"user_id": 999_999}))
        .await;
    expect_error(r, 404, "invalid_request_error").await;
    assert_eq!(app.admin_get("/admin/channels/424242").await.status(), 404);
    let (_, _) = app.user_with_key(1).await;
}

/// Keys are cached for `relay.token_cache_ms`: a key disabled through the
/// same instance is refused at once, through another instance within that
/// time; a refusal is never served from a stale cache.
#[tokio::test]
async fn a_cached_key_is_disabled_at_once_here_and_soon_elsewhere() {
    let app = spawn_app_with(|c| c.relay.token_cache_ms = 300).await;
    let mock = MockUpstream::start("k").await;
    app.channel(json!({"name": "c", "secret_key": "k", "base_url": mock.base_url()}))
        .await;
    let other = spawn_app_on(
        tempfile::tempdir().unwrap(),
        app.database_url.clone(),
        |c| {
            c.relay.token_cache_ms = 300;
        },
    )
    .await;
    let (user, key) = app.user_with_key(1_000_000).await;
    let token_id = |tokens: Value| tokens["data"][0]["id"].as_i64().unwrap();
    let id = token_id(
        app.admin_json(&format!("/admin/tokens?user_id={user}"))
            .await,
    );
    let status = |id: i64, s: &'static str| (format!("/admin/tokens/{id}"), json!({"status": s}));

    // Cached on both instances.
    assert_eq!(app.chat(&key, chat_body("m", false)).await.status(), 200);
    assert_eq!(other.chat(&key, chat_body("m", false)).await.status(), 200);

    // Disabled through this instance: refused here at once.
    let (path, body) = status(id, "disabled");
    assert_eq!(app.admin_patch(&path, body).await.status(), 200);
    expect_error(
        app.chat(&key, chat_body("m", false)).await,
        401,
        "authentication_error",
    )
    .await;
    // The other instance notices within its cache time.
    let mut refused = false;
    for _ in 0..50 {
        if other.chat(&key, chat_body("m", false)).await.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the other instance kept serving a disabled key");

    // Enabled again: the refusal was not cached, so it works at once on both.
    let (path, body) = status(id, "enabled");
    assert_eq!(app.admin_patch(&path, body).await.status(), 200);
    assert_eq!(app.chat(&key, chat_body("m", false)).await.status(), 200);
    assert_eq!(other.chat(&key, chat_body("m", false)).await.status(), 200);
}

/// A request refused before its body is read (a wrong key; a length over
/// the cap) gets its answer, not a broken connection, though its client is
/// still sending when the answer goes out. (With hyper's client this held
/// before the gateway read refused bodies on, too: the reset that closing
/// with unread bytes makes was seen only with other timings.)
#[tokio::test]
async fn a_client_still_sending_gets_the_refusal() {
    let app = spawn_app().await;
    let (_, key) = app.user_with_key(1_000).await;
    let huge = "x".repeat(4 * 1024 * 1024);
    let body = json!({"model": "gpt-x", "messages": [{"role": "user", "content": huge}]});
    for _ in 0..3 {
        let r = app.chat("sk-no-such-key", body.clone()).await;
        expect_error(r, 401, "authentication_error").await;
        let r = app.chat(&key, body.clone()).await;
        expect_error(r, 413, "invalid_request_error").await;
    }
    // The connection is still good for the next call.
    let r = app.chat(&key, chat_body("no-such-model", false)).await;
    expect_error(r, 404, "invalid_request_error").await;
}

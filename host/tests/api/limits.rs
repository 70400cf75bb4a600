//! Concurrency slots, rate limits and the monitor — in process, on Redis,
//! and across two gateway processes. The mock upstream counts calls in
//! flight per key itself: the gateway's own counters are not trusted here.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

async fn fire(app_url: String, key: String, n: usize, stream: bool) -> Vec<(u16, Option<String>)> {
    let client = reqwest::Client::new();
    let mut calls = Vec::new();
    for _ in 0..n {
        let client = client.clone();
        let url = app_url.clone();
        let key = key.clone();
        calls.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&chat_body("m", stream))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let _ = r.bytes().await;
            (status, retry)
        }));
    }
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

async fn concurrency_is_enforced(app: &TestApp) {
    let mock = MockUpstream::start_with_keys(&["k1", "k2"]).await;
    mock.set(Behavior::Slow);
    // Two upstream keys, two slots each.
    app.channel(json!({"name": "c", "secret_key": "k1\nk2", "base_url": mock.base_url(), "models": "m", "max_concurrency": 2}))
        .await;
    let (_, key) = app.user_with_key(1_000_000).await;

    // While calls run, the monitor shows the water level.
    let url = app.url("/v1/chat/completions");
    let load = tokio::spawn(fire(url.clone(), key.clone(), 12, false));
    // The slow calls take 600 ms; catch them in flight.
    let mut m = Value::Null;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        m = app.admin_json("/admin/monitor").await;
        if m["in_flight"] == 4 {
            break;
        }
    }
    assert_eq!(m["in_flight"], 4, "{m}");
    assert_eq!(m["capacity"], 4);
    assert_eq!(m["water_level"], 1.0);
    assert_eq!(m["channels"][0]["keys"][1]["in_flight"], 2);
    let results = load.await.unwrap();

    let served = results.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<_> = results.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(served + busy.len(), 12);
    assert_eq!(served, 4, "{results:?}");
    assert!(busy.iter().all(|(_, retry)| retry.as_deref() == Some("1")));
    assert_eq!(mock.max_in_flight("k1"), 2);
    assert_eq!(mock.max_in_flight("k2"), 2);

    // Slots come back when calls end (released just after the answer).
    let mut m = Value::Null;
    for _ in 0..20 {
        m = app.admin_json("/admin/monitor").await;
        if m["in_flight"] == 0 && m["channels"][0]["calls_5m"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m["in_flight"], 0, "{m}");
    assert_eq!(m["channels"][0]["calls_5m"], 4, "{m}");
    assert_eq!(mock.in_flight_now(), 0);
    let results = fire(url, key, 3, true).await;
    assert!(results.iter().all(|(s, _)| *s == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_concurrency_limits_hold() {
    let app = spawn_app().await;
    let m: Value = app.admin_json("/admin/monitor").await;
    assert_eq!(m["limiter"]["backend"], "in-process");
    concurrency_is_enforced(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrency_limits_hold() {
    let app = spawn_app_with(|c| {
        c.redis_url = Some(transit::config::Secret::new(REDIS_URL));
        c.limits.redis_prefix = redis_prefix();
    })
    .await;
    let m: Value = app.admin_json("/admin/monitor").await;
    assert_eq!(
        m["limiter"]["backend"], "redis",
        "Redis must be running on 127.0.0.1:6379"
    );
    concurrency_is_enforced(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_user_concurrency_limits() {
    let app = spawn_app().await;
    let mock = MockUpstream::start("k").await;
    mock.set(Behavior::Slow);
    app.channel(
        json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": "m"}),
    )
    .await;
    let (user, _) = app.user_with_key(1_000_000).await;
    let one_at_a_time = app.key_for(user, json!({"max_concurrency": 1})).await;
    let results = fire(app.url("/v1/chat/completions"), one_at_a_time, 3, false).await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 200).count(),
        1,
        "{results:?}"
    );
    assert_eq!(results.iter().filter(|(s, _)| *s == 429).count(), 2);

    let r = app
        .admin_patch(
            &format!("/admin/users/{user}"),
            json!({"max_concurrency": 2}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let free = app.key_for(user, json!({})).await;
    let results = fire(app.url("/v1/chat/completions"), free, 4, false).await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 200).count(),
        2,
        "{results:?}"
    );
}

async fn rate_limits_apply(app: &TestApp) {
    let mock = MockUpstream::start("k").await;
    app.channel(
        json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["m", "m2"]}),
    )
    .await;
    let (user, _) = app.user_with_key(1_000_000).await;
    let key = app.key_for(user, json!({"rpm": 2})).await;
    for remaining in ["1", "0"] {
        let r = app.chat(&key, chat_body("m", false)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "2");
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], remaining);
    }
    let r = app.chat(&key, chat_body("m", false)).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(mock.requests(), 2);

    // Tokens per minute count the prompt and the requested output.
    let tpm = app.key_for(user, json!({"tpm": 100})).await;
    let mut body = chat_body("m", false);
    body["max_tokens"] = json!(60);
    assert_eq!(app.chat(&tpm, body.clone()).await.status(), 200);
    let r = app.chat(&tpm, body).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("x-ratelimit-remaining-tokens"));

    // A model rule shares one budget between models, for everyone.
    let r = app
        .client
        .put(app.url("/admin/limits"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .json(&json!({"rules": [{"name": "family", "models": ["m", "m2"], "rpm": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fresh = app.key_for(user, json!({})).await;
    let r = app.chat(&fresh, chat_body("m2", false)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(app.chat(&fresh, chat_body("m", false)).await.status(), 429);
    let (_, other) = app.user_with_key(1_000_000).await;
    assert_eq!(app.chat(&other, chat_body("m", false)).await.status(), 429);
    let bad = app
        .client
        .put(app.url("/admin/limits"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .json(&json!({"rules": [{"name": "", "models": []}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn in_process_rate_limits() {
    let app = spawn_app().await;
    rate_limits_apply(&app).await;
}

#[tokio::test]
async fn redis_rate_limits() {
    let app = spawn_app_with(|c| {
        c.redis_url = Some(transit::config::Secret::new(REDIS_URL));
        c.limits.redis_prefix = redis_prefix();
    })
    .await;
    rate_limits_apply(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_in_process_and_recovers() {
    let proxy = RedisProxy::start().await;
    let app = spawn_app_with(|c| {
        c.redis_url = Some(transit::config::Secret::new(proxy.url()));
        c.limits.redis_prefix = redis_prefix();
        c.limits.redis_timeout_ms = 200;
    })
    .await;
    let mock = MockUpstream::start("k").await;
    app.channel(
        json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": "m"}),
    )
    .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    let backend = |app: &TestApp| {
        let url = app.url("/admin/monitor");
        let client = app.client.clone();
        async move {
            let m: Value = client
                .get(url)
                .header("X-Admin-Token", ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            m["limiter"]["backend"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(backend(&app).await, "redis");
    assert_eq!(app.chat(&key, chat_body("m", false)).await.status(), 200);

    proxy.cut();
    // Calls keep being served, on this instance's own counters.
    for _ in 0..3 {
        assert_eq!(app.chat(&key, chat_body("m", true)).await.status(), 200);
    }
    assert_eq!(backend(&app).await, "in-process (Redis unreachable)");

    proxy.restore().await;
    let mut back = false;
    for _ in 0..50 {
        if backend(&app).await == "redis" {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the limiter never went back to Redis");
    assert_eq!(app.chat(&key, chat_body("m", false)).await.status(), 200);
}

/// Two gateway processes sharing one database and one Redis enforce one
/// limit, free a killed process's slots within the lease, and see each
/// other's channel changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_limit() {
    let setup = spawn_app_with(|c| c.billing.hold_lease_secs = 600).await;
    let mock = MockUpstream::start("k").await;
    mock.set(Behavior::Slow);
    const N: usize = 3;
    let channel = setup
        .channel(json!({"name": "shared", "secret_key": "k", "base_url": mock.base_url(), "models": "m", "max_concurrency": N}))
        .await;
    let (_, key) = setup.user_with_key(1_000_000).await;
    let prefix = redis_prefix();
    let env = [
        ("REDIS_URL", REDIS_URL.to_owned()),
        ("TRANSIT_LIMITS__REDIS_PREFIX", prefix.clone()),
        ("TRANSIT_LIMITS__SLOT_LEASE_SECS", "2".to_owned()),
        ("TRANSIT_RELAY__CHANNEL_REFRESH_MS", "200".to_owned()),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = GatewayProcess::start_with(&setup.database_url, dir_a.path(), &env).await;
    let mut b = GatewayProcess::start_with(&setup.database_url, dir_b.path(), &env).await;

    // 3N concurrent slow calls, spread over both processes.
    let via_a = tokio::spawn(fire(
        a.url("/v1/chat/completions"),
        key.clone(),
        3 * N / 2 + 1,
        false,
    ));
    let via_b = tokio::spawn(fire(
        b.url("/v1/chat/completions"),
        key.clone(),
        3 * N / 2,
        false,
    ));
    let mut results = via_a.await.unwrap();
    results.extend(via_b.await.unwrap());
    assert_eq!(results.len(), 3 * N);
    let served = results.iter().filter(|(s, _)| *s == 200).count();
    assert!(served >= N, "{results:?}");
    assert!(
        mock.max_in_flight("k") <= N,
        "the upstream saw {} at once",
        mock.max_in_flight("k")
    );
    assert_eq!(mock.max_in_flight("k"), N);
    println!(
        "scale-out: {} calls, {served} served, upstream max in flight {}",
        results.len(),
        mock.max_in_flight("k")
    );

    // Kill b while it holds slots: they come back within the lease.
    mock.set(Behavior::SlowStream);
    let mut held = Vec::new();
    for _ in 0..N {
        let mut r = b
            .client
            .post(b.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("m", true))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.chunk().await.unwrap();
        held.push(r);
    }
    let full = a
        .client
        .post(a.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 429, "b's slots are seen by a");
    b.kill().await;
    drop(held);
    mock.set(Behavior::Normal);
    let mut freed = false;
    for _ in 0..60 {
        let r = a
            .client
            .post(a.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("m", false))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "a killed process's slots never came back");

    // A channel disabled through one instance stops being used by another.
    let r = setup
        .admin_patch(
            &format!("/admin/channels/{channel}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut stopped = false;
    for _ in 0..30 {
        let r = a
            .client
            .post(a.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("m", false))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped);
    drop(a);
}

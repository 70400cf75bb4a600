//! Asynchronous video tasks end to end: submit through the gateway, the
//! poller drives the task against a protocol mock, billing happens once at
//! the end (charged on success, refunded on failure, timeout or a failed
//! submit), and a task is visible only to its owner.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::task_mocks::{ApimartMock, KlingMock, OpenAiVideosMock, Outcome};

/// 0.01 USD per second of video at 500 000 units per USD.
const PER_SECOND: i64 = 5_000;

fn fast_tasks(config: &mut transit::Config) {
    config.tasks.poll_interval_ms = 50;
    config.tasks.lease_secs = 1;
}

async fn video_prices(app: &TestApp) {
    app.set_prices(json!({"models": {
        "sora-2": {"price_per_call": 0.01},
        "kling-v2-6": {"price_per_call": 0.01},
        "veo3": {"price_per_call": 0.01},
    }}))
    .await;
}

/// A gateway with an OpenAI channel for `sora-2`, and a user with `quota`.
async fn openai_video_app(quota: i64) -> (TestApp, OpenAiVideosMock, i64, String) {
    let app = spawn_app_with(fast_tasks).await;
    let mock = OpenAiVideosMock::start("sk-video").await;
    app.channel(json!({"name": "sora", "type": "openai", "secret_key": "sk-video", "base_url": mock.base_url(), "models": ["sora-2"]}))
        .await;
    video_prices(&app).await;
    let (user, key) = app.user_with_key(quota).await;
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

async fn get(app: &TestApp, path: &str, key: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// Poll `path` until the task's status is one of `done`; returns it.
async fn wait_until(app: &TestApp, path: &str, key: &str, done: &[&str]) -> Value {
    for _ in 0..200 {
        let v: Value = get(app, path, key).await.json().await.unwrap();
        if done.iter().any(|d| v["status"] == *d) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = path.rsplit('/').next().unwrap_or_default();
    let row: Value = app.admin_json(&format!("/admin/tasks/{id}")).await;
    panic!("the task at {path} never reached {done:?}: {row}");
}

fn sora_body(seconds: &str) -> Value {
    json!({"model": "sora-2", "prompt": "A cat playing the piano", "seconds": seconds, "size": "1280x720"})
}

#[tokio::test]
async fn a_video_task_progresses_completes_and_is_billed_once() {
    let (app, mock, user, key) = openai_video_app(1_000_000).await;
    mock.set(Outcome::SucceedAfter(3));

    let r = post(&app, "/v1/videos", &key, sora_body("8")).await;
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("task_") && id.len() > 30, "{id}");
    assert_eq!(created["object"], "video");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["seconds"], "8");
    assert_eq!(created["progress"], 0);
    // The price of 8 seconds is held while the upstream works.
    assert_eq!(app.user(user).await["quota"], 1_000_000 - 8 * PER_SECOND);
    assert_eq!(app.open_holds().await, 1);

    let path = format!("/v1/videos/{id}");
    let done = wait_until(&app, &path, &key, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], 100);
    assert!(done["completed_at"].as_i64().is_some());
    assert!(mock.polls() >= 3);
    assert_eq!(mock.submits(), 1);

    // Charged once, the hold gone, the ledger adds up.
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 8 * PER_SECOND);
    assert_eq!(balance, 1_000_000 - charged);
    assert_eq!(app.open_holds().await, 0);
    // More polls change nothing.
    transit::tasks::poll_due(&app.app.state).await.unwrap();
    assert_eq!(app.ledger(user).await.1, 8 * PER_SECOND);

    // The content is proxied from the upstream's content endpoint.
    let r = get(&app, &format!("/v1/videos/{id}/content"), &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"MP4-BYTES-"), "{bytes:?}");

    // And the list shows it.
    let list: Value = get(&app, "/v1/videos", &key).await.json().await.unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
}

#[tokio::test]
async fn a_failed_task_is_refunded_exactly_once() {
    let (app, mock, user, key) = openai_video_app(1_000_000).await;
    mock.set(Outcome::FailAfter(1));
    let created: Value = post(&app, "/v1/videos", &key, sora_body("4"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let done = wait_until(
        &app,
        &format!("/v1/videos/{id}"),
        &key,
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"], "failed");
    assert!(
        !done["error"]["message"].as_str().unwrap().is_empty(),
        "{done}"
    );
    for _ in 0..3 {
        transit::tasks::poll_due(&app.app.state).await.unwrap();
    }
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!((balance, charged), (1_000_000, 0));
    assert_eq!(app.open_holds().await, 0);
    // The content of a failed task does not exist.
    let r = get(&app, &format!("/v1/videos/{id}/content"), &key).await;
    assert_eq!(r.status(), 409);
}

#[tokio::test]
async fn a_task_that_never_finishes_times_out_and_is_refunded() {
    let app = spawn_app_with(|c| {
        fast_tasks(c);
        c.tasks.timeout_secs = 1;
    })
    .await;
    let mock = OpenAiVideosMock::start("sk-video").await;
    app.channel(json!({"name": "sora", "type": "openai", "secret_key": "sk-video", "base_url": mock.base_url(), "models": ["sora-2"],
                       "options": {"task_holds_slot": "true"}}))
        .await;
    video_prices(&app).await;
    let (user, key) = app.user_with_key(1_000_000).await;
    mock.set(Outcome::Never);
    let created: Value = post(&app, "/v1/videos", &key, sora_body("4"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    // The channel's slot stays taken while the upstream works.
    assert_eq!(app.app.state.tasks.slots_held(), 1);
    let done = wait_until(
        &app,
        &format!("/v1/videos/{id}"),
        &key,
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not finish"),
        "{done}"
    );
    assert_eq!(app.ledger(user).await, (1_000_000, 0, 0));
    assert_eq!(app.open_holds().await, 0);
    assert_eq!(app.app.state.tasks.slots_held(), 0);
}

#[tokio::test]
async fn a_rejected_submit_is_refunded_and_answered_in_openai_shape() {
    let (app, mock, user, key) = openai_video_app(1_000_000).await;
    mock.set(Outcome::RejectSubmit);
    let r = post(&app, "/v1/videos", &key, sora_body("4")).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(app.ledger(user).await, (1_000_000, 0, 0));
    assert_eq!(app.open_holds().await, 0);
}

#[tokio::test]
async fn bad_task_requests_are_refused_before_anything_is_held() {
    let (app, mock, user, key) = openai_video_app(1_000_000).await;
    let cases = [
        (json!({"model": "sora-2"}), 400, "prompt"),
        (
            json!({"model": "sora-2", "prompt": "x", "seconds": 8}),
            400,
            "seconds",
        ),
        (json!({"prompt": "x"}), 400, "model"),
    ];
    for (body, status, param) in cases {
        let r = post(&app, "/v1/videos", &key, body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let r = app
        .client
        .post(app.url("/v1/videos"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body("make a video")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Too poor for the hold.
    let (_, poor) = app.user_with_key(10).await;
    let r = post(&app, "/v1/videos", &poor, sora_body("4")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "insufficient_quota"
    );
    // A model whose channels cannot run tasks.
    let chat = MockUpstream::start("k").await;
    app.channel(json!({"name": "chat", "type": "anthropic", "secret_key": "k", "base_url": chat.base_url(), "models": ["veo3"]}))
        .await;
    let r = post(
        &app,
        "/v1/videos",
        &key,
        json!({"model": "veo3", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status(), 501);
    assert_eq!(mock.submits(), 0);
    assert_eq!(app.ledger(user).await, (1_000_000, 0, 0));
    assert_eq!(app.open_holds().await, 0);
}

#[tokio::test]
async fn a_task_is_visible_only_to_its_owner() {
    let (app, mock, _, key) = openai_video_app(1_000_000).await;
    mock.set(Outcome::Never);
    let created: Value = post(&app, "/v1/videos", &key, sora_body("4"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let (_, other) = app.user_with_key(1_000_000).await;
    for path in [
        format!("/v1/videos/{id}"),
        format!("/v1/videos/{id}/content"),
        format!("/v1/video/generations/{id}"),
    ] {
        let r = get(&app, &path, &other).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "task_not_found"
        );
    }
    let list: Value = get(&app, "/v1/videos", &other).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    // The owner sees it; the admin API sees it too.
    assert_eq!(
        get(&app, &format!("/v1/videos/{id}"), &key).await.status(),
        200
    );
    let admin: Value = app.admin_json(&format!("/admin/tasks/{id}")).await;
    assert_eq!(admin["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_polling_one_database_bill_each_task_once() {
    let a = spawn_app_with(fast_tasks).await;
    let b = spawn_app_on(
        tempfile::tempdir().unwrap(),
        a.database_url.clone(),
        fast_tasks,
    )
    .await;
    let mock = OpenAiVideosMock::start("sk-video").await;
    a.channel(json!({"name": "sora", "type": "openai", "secret_key": "sk-video", "base_url": mock.base_url(), "models": ["sora-2"]}))
        .await;
    video_prices(&a).await;
    b.app.state.billing.refresh_pricing().await.unwrap();
    let (user, key) = a.user_with_key(10_000_000).await;
    mock.set(Outcome::SucceedAfter(2));
    let mut ids = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        // Instance b learns about the channel within its refresh period.
        let mut created = None;
        for _ in 0..40 {
            let r = post(app, "/v1/videos", &key, sora_body("4")).await;
            if r.status() == 200 {
                created = Some(r.json::<Value>().await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ids.push(created.unwrap()["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let done = wait_until(
            &a,
            &format!("/v1/videos/{id}"),
            &key,
            &["completed", "failed"],
        )
        .await;
        assert_eq!(done["status"], "completed");
    }
    // Both pollers keep running over finished tasks: nothing moves again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (balance, charged, _) = a.ledger(user).await;
    assert_eq!(charged, 6 * 4 * PER_SECOND);
    assert_eq!(balance, 10_000_000 - charged);
    let consumed = a
        .logs()
        .await
        .iter()
        .filter(|l| l["kind"] == "consume" && l["user_id"] == user)
        .count();
    assert_eq!(consumed, 6);
    assert_eq!(a.open_holds().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_outlives_the_instance_that_took_it() {
    let first = spawn_app_with(fast_tasks).await;
    let mock = OpenAiVideosMock::start("sk-video").await;
    first
        .channel(json!({"name": "sora", "type": "openai", "secret_key": "sk-video", "base_url": mock.base_url(), "models": ["sora-2"]}))
        .await;
    video_prices(&first).await;
    let (user, key) = first.user_with_key(1_000_000).await;
    mock.set(Outcome::SucceedAfter(4));
    let created: Value = post(&first, "/v1/videos", &key, sora_body("4"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let database_url = first.database_url.clone();
    // The first instance stops (its poller with it) before the task ends.
    let _data = first.stop_keeping_data();
    let second = spawn_app_on(tempfile::tempdir().unwrap(), database_url, fast_tasks).await;
    let done = wait_until(
        &second,
        &format!("/v1/videos/{id}"),
        &key,
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"], "completed");
    let (balance, charged, _) = second.ledger(user).await;
    assert_eq!(
        (balance, charged),
        (1_000_000 - 4 * PER_SECOND, 4 * PER_SECOND)
    );
}

#[tokio::test]
async fn generic_video_generations_run_on_apimart_and_kling() {
    let app = spawn_app_with(fast_tasks).await;
    let apimart = ApimartMock::start("am-key").await;
    let kling = KlingMock::start("ak-1", "sk-1").await;
    app.channel(json!({"name": "apimart", "type": "apimart", "secret_key": "am-key", "base_url": apimart.base_url(), "models": ["veo3"]}))
        .await;
    app.channel(json!({"name": "kling", "type": "kling", "secret_key": "ak-1|sk-1", "base_url": kling.base_url(), "models": ["kling-v2-6"]}))
        .await;
    video_prices(&app).await;
    let (user, key) = app.user_with_key(1_000_000).await;
    apimart.set(Outcome::SucceedAfter(2));
    kling.set(Outcome::SucceedAfter(2));

    for (model, duration) in [("veo3", json!(8)), ("kling-v2-6", json!("5"))] {
        let r = post(
            &app,
            "/v1/video/generations",
            &key,
            json!({"model": model, "prompt": "A lighthouse at dusk", "duration": duration}),
        )
        .await;
        let status = r.status();
        let created: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["status"], "queued");
        let id = created["task_id"].as_str().unwrap();
        let done = wait_until(
            &app,
            &format!("/v1/video/generations/{id}"),
            &key,
            &["succeeded", "failed"],
        )
        .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let url = done["url"].as_str().unwrap();
        assert!(url.ends_with(".mp4"), "{url}");
        assert_eq!(done["result_urls"][0], url);
        // Public result URLs: the content endpoint redirects there.
        let r = app
            .client
            .get(app.url(&format!("/v1/videos/{id}/content")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert!(
            r.url().as_str().ends_with(".mp4") || r.status() == 302,
            "{}",
            r.url()
        );
    }
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, (8 + 5) * PER_SECOND);
    assert_eq!(balance, 1_000_000 - charged);
}

/// The official OpenAI SDK (`videos.create`, which always sends a
/// multipart form, `poll`, `download_content`, `list`) works unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_creates_polls_and_downloads_a_video() {
    let (app, mock, _, key) = openai_video_app(10_000_000).await;
    mock.set(Outcome::SucceedAfter(2));
    let python = tokio::task::spawn_blocking(crate::sdk::sdk_python)
        .await
        .unwrap();
    let env = [
        ("GATEWAY_BASE_URL", app.url("/v1")),
        ("GATEWAY_KEY", key),
        ("GATEWAY_MODEL", "sora-2".to_owned()),
    ];
    tokio::task::spawn_blocking(move || crate::sdk::pytest(&python, "test_openai_videos.py", &env))
        .await
        .unwrap();
}

/// `POST /v1/images/generations` for a model whose channel generates images
/// only as tasks (APIMart) answers a task, polled at
/// `/v1/images/generations/{id}` and billed per image when it ends.
#[tokio::test]
async fn async_image_models_answer_a_task() {
    let app = spawn_app_with(fast_tasks).await;
    let apimart = ApimartMock::start("am-key").await;
    app.channel(json!({"name": "apimart", "type": "apimart", "secret_key": "am-key", "base_url": apimart.base_url(), "models": ["seedream-4"]}))
        .await;
    app.set_prices(json!({"models": {"seedream-4": {"price_per_call": 0.02}}}))
        .await;
    let (user, key) = app.user_with_key(1_000_000).await;
    apimart.set(Outcome::SucceedAfter(1));
    let r = post(
        &app,
        "/v1/images/generations",
        &key,
        json!({"model": "seedream-4", "prompt": "A red fox", "n": 2, "size": "1:1"}),
    )
    .await;
    let status = r.status();
    let created: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["object"], "image.generation");
    // Two images at 0.02 USD are held.
    assert_eq!(app.user(user).await["quota"], 1_000_000 - 2 * 10_000);
    let id = created["task_id"].as_str().unwrap();
    let done = wait_until(
        &app,
        &format!("/v1/images/generations/{id}"),
        &key,
        &["succeeded", "failed"],
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(!done["result_urls"].as_array().unwrap().is_empty());
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(balance, 1_000_000 - charged);
    assert!(charged > 0 && charged <= 2 * 10_000, "{charged}");
    assert_eq!(app.open_holds().await, 0);
}

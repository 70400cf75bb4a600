//! Adapters replaced while traffic flows: through the watched directory and
//! through uploads shared by instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Write `bytes` to `path` the way a deploy should: a temporary file, then
/// an atomic rename.
fn deploy(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapping_under_load_fails_no_request() {
    let adapters = tempfile::tempdir().unwrap();
    let file = adapters.path().join("swap.wasm");
    deploy(&file, &TestApp::fixture_wasm("swap-v1.wasm"));
    let dir = adapters.path().to_path_buf();
    let app = spawn_app_with(move |c| c.adapters.dir = Some(dir)).await;
    assert_eq!(
        app.app.state.runtime.get("swap").unwrap().info.version,
        "1.0.0"
    );
    let mock = MockUpstream::start("k").await;
    app.channel(json!({"name": "hot", "type": "swap", "secret_key": "k", "base_url": mock.base_url(), "models": "m"}))
        .await;
    let (_, key) = app.user_with_key(100_000_000).await;

    // Plain and streamed calls, back to back, on four connections.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let (client, url, key) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            key.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let stream = (i + w) % 2 == 0;
                i += 1;
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&chat_body("m", stream))
                    .send()
                    .await
                    .unwrap();
                let good = r.status() == 200 && {
                    let text = r.text().await.unwrap();
                    !stream || text.ends_with("data: [DONE]\n\n")
                };
                if good { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let runtime = app.app.state.runtime.clone();
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    deploy(&file, &TestApp::fixture_wasm("swap-v2.wasm"));
    wait_for("version 2 to serve", || {
        mock.last_swap_version().as_deref() == Some("2.0.0")
    })
    .await;
    let swap_latency = started.elapsed() - Duration::from_millis(200);

    let errors_before = runtime.load_errors().len();
    deploy(&file, b"\0asm\x0d\0\x01\0 this is not a component");
    wait_for("the broken file to be refused", || {
        runtime.load_errors().len() > errors_before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        runtime.get("swap").unwrap().info.version,
        "2.0.0",
        "a broken file never replaces the working version"
    );
    assert_eq!(mock.last_swap_version().as_deref(), Some("2.0.0"));

    deploy(&file, &TestApp::fixture_wasm("swap-v1.wasm"));
    wait_for("version 1 to serve again", || {
        mock.last_swap_version().as_deref() == Some("1.0.0")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "swap under load: {ok} requests served, {failed} failed; file written → new version serving in {swap_latency:?}"
    );
    assert_eq!(failed, 0);
    assert!(ok > 20, "only {ok} requests ran");

    let v: Value = app.admin_json("/admin/adapters").await;
    assert!(
        v["errors"][0]["origin"]
            .as_str()
            .unwrap()
            .ends_with("swap.wasm")
    );
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("compiling")
    );

    // Deleting the file withdraws the adapter: its channels get a clear 503.
    std::fs::remove_file(&file).unwrap();
    wait_for("the adapter to be withdrawn", || {
        runtime.get("swap").is_none()
    })
    .await;
    let r = app.chat(&key, chat_body("m", false)).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "adapter_unavailable"
    );
}

async fn upload(app: &TestApp, bytes: Vec<u8>) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("adapter.wasm"),
    );
    app.client
        .post(app.url("/admin/adapters"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_through_one_instance_is_served_by_another() {
    let a = spawn_app().await;
    let b = spawn_app_on(tempfile::tempdir().unwrap(), a.database_url.clone(), |_| {}).await;
    let mock = MockUpstream::start("k").await;

    let r = upload(&a, TestApp::fixture_wasm("swap-v2.wasm")).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["name"].as_str(),
            v["version"].as_str(),
            v["source"].as_str()
        ),
        (Some("swap"), Some("2.0.0"), Some("uploaded"))
    );
    assert_eq!(v["wit_version"], "0.3.0");

    a.channel(json!({"name": "up", "type": "swap", "secret_key": "k", "base_url": mock.base_url(), "models": "m"}))
        .await;
    let (_, key) = a.user_with_key(1_000_000).await;
    let mut served = false;
    for _ in 0..40 {
        if b.chat(&key, chat_body("m", false)).await.status() == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "instance b never served the uploaded adapter");
    assert_eq!(mock.last_swap_version().as_deref(), Some("2.0.0"));

    // Refused uploads change nothing.
    let r = upload(&a, b"\0asm\x01\0\0\0".to_vec()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_adapter"
    );
    let r = a
        .client
        .post(a.url("/admin/adapters"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .multipart(reqwest::multipart::Form::new().text("note", "no file"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Built-in adapters cannot be deleted; uploads can, everywhere.
    let r = a
        .client
        .delete(a.url("/admin/adapters/openai"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = a
        .client
        .delete(a.url("/admin/adapters/swap"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let mut gone = false;
    for _ in 0..40 {
        if b.chat(&key, chat_body("m", false)).await.status() == 503 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "instance b kept serving a deleted adapter");
}

/// Interface versions: components built against the frozen
/// `transit:adapter@0.1.0` (before client headers, raw responses and tasks
/// existed) and `0.2.0` (before the host could read OpenAI answers itself)
/// are accepted, listed with their versions and serve plain and streamed
/// calls on a gateway whose current interface is newer.
#[tokio::test]
async fn components_built_against_older_wit_versions_keep_working() {
    let app = spawn_app().await;
    let mock = MockUpstream::start("k").await;
    let (_, key) = app.user_with_key(1_000_000).await;
    for (file, name, version, model) in [
        ("legacy-v0_1.wasm", "legacy", "0.1.0", "m1"),
        ("legacy-v0_2.wasm", "legacy2", "0.2.0", "m2"),
    ] {
        let r = upload(&app, TestApp::fixture_wasm(file)).await;
        assert_eq!(r.status(), 201, "{file}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["name"].as_str(), v["wit_version"].as_str()),
            (Some(name), Some(version))
        );
        app.channel(json!({"name": name, "type": name, "secret_key": "k", "base_url": mock.base_url(), "models": model}))
            .await;
        let r = app.chat(&key, chat_body(model, false)).await;
        assert_eq!(r.status(), 200, "{file}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], MOCK_REPLY);

        let r = app.chat(&key, chat_body(model, true)).await;
        assert_eq!(r.status(), 200, "{file}");
        let data = sse_data(r).await;
        assert_eq!(chunk_text(&data), MOCK_REPLY);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    }
}

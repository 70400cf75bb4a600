//! The rest of OpenAI's `/v1` surface through the gateway to a protocol
//! mock: images, audio (multipart uploads, streamed speech), moderations and
//! rerank — success with the billed amount checked, an upstream error, and
//! the bad input each endpoint refuses before anything is held.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::surface_mocks::{OpenAiSurfaceMock, RERANK_TOKENS, TRANSCRIPT, speech_audio};

/// Per-call prices: 0.04 USD per image, 0.000015 USD per character.
const PER_IMAGE: i64 = 20_000;

async fn surface_app() -> (TestApp, OpenAiSurfaceMock, i64, String) {
    let app = spawn_app().await;
    let mock = OpenAiSurfaceMock::start("sk-surface").await;
    app.channel(json!({"name": "oa", "type": "openai", "secret_key": "sk-surface", "base_url": mock.base_url(),
                       "models": ["dall-e-3", "gpt-image-1", "whisper-1", "tts-1", "omni-moderation-latest", "rerank-1"]}))
        .await;
    app.set_prices(json!({
        "models": {
            "dall-e-3": {"price_per_call": 0.04, "variant_prices": {"hd": 0.08, "1792x1024/hd": 0.12}},
            "tts-1": {"price_per_call": 0.00002},
            "whisper-1": {"price_per_call": 0.0001},
            "omni-moderation-latest": {"model_ratio": 0.0},
            "rerank-1": {"model_ratio": 1.0},
        },
        "allow_unpriced": true,
    }))
    .await;
    let (user, key) = app.user_with_key(10_000_000).await;
    (app, mock, user, key)
}

async fn post_json(app: &TestApp, path: &str, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn post_form(
    app: &TestApp,
    path: &str,
    key: &str,
    form: reqwest::multipart::Form,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// A real, tiny WAV file: 0.1 s of silence, 8 kHz mono 16-bit.
pub fn wav() -> Vec<u8> {
    let samples = 800u32;
    let data_len = samples * 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(out.len() + data_len as usize, 0);
    out
}

fn png() -> Vec<u8> {
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    p.extend_from_slice(&[0u8; 64]);
    p
}

#[tokio::test]
async fn image_generations_are_relayed_and_billed_per_image() {
    let (app, mock, user, key) = surface_app().await;
    let r = post_json(
        &app,
        "/v1/images/generations",
        &key,
        json!({"model": "dall-e-3", "prompt": "A lighthouse", "n": 2}),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(mock.last_path().as_deref(), Some("/v1/images/generations"));
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 2 * PER_IMAGE);
    assert_eq!(balance, 10_000_000 - charged);

    // Priced by size and quality: a 1792x1024 HD image is $0.12, three
    // standard ones.
    let r = post_json(
        &app,
        "/v1/images/generations",
        &key,
        json!({"model": "dall-e-3", "prompt": "A lighthouse", "size": "1792x1024", "quality": "hd"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.ledger(user).await.1, 5 * PER_IMAGE);

    // An upstream error passes through in OpenAI's shape and costs nothing.
    mock.fail_next(400);
    let r = post_json(
        &app,
        "/v1/images/generations",
        &key,
        json!({"model": "dall-e-3", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    assert_eq!(app.ledger(user).await.1, 5 * PER_IMAGE);

    // Refused before anything is held.
    for (body, param) in [
        (json!({"model": "dall-e-3"}), "prompt"),
        (json!({"model": "dall-e-3", "prompt": "x", "n": 11}), "n"),
    ] {
        let r = post_json(&app, "/v1/images/generations", &key, body).await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], param);
    }
}

#[tokio::test]
async fn image_edits_take_a_multipart_upload() {
    let (app, mock, user, key) = surface_app().await;
    let form = reqwest::multipart::Form::new()
        .text("model", "dall-e-3")
        .text("prompt", "Add a hat")
        .part(
            "image",
            reqwest::multipart::Part::bytes(png())
                .file_name("cat.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let r = post_form(&app, "/v1/images/edits", &key, form).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(mock.last_path().as_deref(), Some("/v1/images/edits"));
    let form = mock.last_form().unwrap();
    assert!(
        form.iter()
            .any(|f| f.0 == "image" && f.1.as_deref() == Some("cat.png") && f.2 == png().len()),
        "{form:?}"
    );
    assert_eq!(app.ledger(user).await.1, PER_IMAGE);

    // No file, or not multipart at all.
    let form = reqwest::multipart::Form::new()
        .text("model", "dall-e-3")
        .text("prompt", "x");
    let r = post_form(&app, "/v1/images/edits", &key, form).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], "image");
    let r = post_json(
        &app,
        "/v1/images/edits",
        &key,
        json!({"model": "dall-e-3", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn transcriptions_upload_a_wav_and_bill_its_seconds() {
    let (app, mock, user, key) = surface_app().await;
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(wav())
                .file_name("hello.wav")
                .mime_str("audio/wav")
                .unwrap(),
        );
    let r = post_form(&app, "/v1/audio/transcriptions", &key, form).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["text"], TRANSCRIPT);
    assert!(
        mock.last_content_type()
            .unwrap()
            .starts_with("multipart/form-data; boundary=")
    );
    // 3 seconds at 0.0001 USD.
    assert_eq!(app.ledger(user).await.1, 3 * 50);

    // Plain-text answers keep their content type.
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .text("response_format", "text")
        .part(
            "file",
            reqwest::multipart::Part::bytes(wav()).file_name("hello.wav"),
        );
    let r = post_form(&app, "/v1/audio/translations", &key, form).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    // A file the upstream cannot read is its error, passed through.
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"not audio".to_vec()).file_name("x.wav"),
        );
    let r = post_form(&app, "/v1/audio/transcriptions", &key, form).await;
    assert_eq!(r.status(), 400);
    // Missing file; oversized upload.
    let form = reqwest::multipart::Form::new().text("model", "whisper-1");
    assert_eq!(
        post_form(&app, "/v1/audio/transcriptions", &key, form)
            .await
            .status(),
        400
    );
    let big = vec![0u8; 300 * 1024];
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(big).file_name("big.wav"),
        );
    assert_eq!(
        post_form(&app, "/v1/audio/transcriptions", &key, form)
            .await
            .status(),
        413
    );
}

#[tokio::test]
async fn speech_streams_audio_and_bills_characters() {
    let (app, _mock, user, key) = surface_app().await;
    let input = "Hello there, general listener.";
    let r = post_json(
        &app,
        "/v1/audio/speech",
        &key,
        json!({"model": "tts-1", "input": input, "voice": "alloy"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), speech_audio(input).as_slice());
    // 0.00002 USD per character at 500 000 units per USD: 10 units each.
    assert_eq!(app.ledger(user).await.1, 10 * input.chars().count() as i64);
    let r = post_json(
        &app,
        "/v1/audio/speech",
        &key,
        json!({"model": "tts-1", "voice": "alloy"}),
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn moderations_and_rerank_are_relayed() {
    let (app, mock, user, key) = surface_app().await;
    let r = post_json(
        &app,
        "/v1/moderations",
        &key,
        json!({"input": ["hello", "world"]}),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert_eq!(app.ledger(user).await.1, 0, "moderations are free here");

    let r = post_json(&app, "/v1/rerank", &key, json!({"model": "rerank-1", "query": "capital of France", "documents": ["Paris", "Berlin", "Rome"], "top_n": 2})).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert_eq!(mock.last_json().unwrap()["model"], "rerank-1");
    assert_eq!(app.ledger(user).await.1, RERANK_TOKENS as i64);
    let r = post_json(
        &app,
        "/v1/rerank",
        &key,
        json!({"model": "rerank-1", "query": "x"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["param"],
        "documents"
    );
}

#[tokio::test]
async fn endpoints_a_channel_cannot_serve_are_501() {
    let app = spawn_app().await;
    let claude = MockAnthropic::start("k").await;
    app.channel(json!({"name": "c", "type": "anthropic", "secret_key": "k", "base_url": claude.base_url(), "models": ["claude-x"]}))
        .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    let r = post_json(
        &app,
        "/v1/images/generations",
        &key,
        json!({"model": "claude-x", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status(), 501);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "not_implemented"
    );
}

/// The official OpenAI SDK, unchanged, across the surface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_covers_the_surface() {
    let (app, _surface, _, key) = surface_app().await;
    let chat = MockUpstream::start("sk-chat").await;
    app.channel(json!({"name": "chat", "type": "openai", "secret_key": "sk-chat", "base_url": chat.base_url(),
                       "models": ["gpt-test", "text-embedding-3-small"]}))
        .await;
    let python = tokio::task::spawn_blocking(crate::sdk::sdk_python)
        .await
        .unwrap();
    let env = [
        ("GATEWAY_BASE_URL", app.url("/v1")),
        ("GATEWAY_KEY", key),
        ("CHAT_MODEL", "gpt-test".to_owned()),
        ("EMBED_MODEL", "text-embedding-3-small".to_owned()),
        ("EXPECTED_REPLY", MOCK_REPLY.to_owned()),
        ("EXPECTED_TRANSCRIPT", TRANSCRIPT.to_owned()),
    ];
    tokio::task::spawn_blocking(move || {
        crate::sdk::pytest(&python, "test_openai_surface.py", &env)
    })
    .await
    .unwrap();
}

//! The admin API, including the seed README's curl flow replayed as written.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn seed_readme_channel_flow() {
    let app = spawn_app().await;
    let mock = MockUpstream::start("your-apimart-key").await;
    // POST /admin/channels exactly as the seed README sends it (base URL
    // pointed at the mock instead of the real provider).
    let r = app
        .client
        .post(app.url("/admin/channels"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{
    "name": "APIMart-Key-1",
    "secret_key": "your-apimart-key",
    "base_url": "{}",
    "max_concurrency": 200,
    "weight": 10
  }}"#,
            mock.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["name"], "APIMart-Key-1");
    assert_eq!(created["type"], "openai");
    assert_eq!(created["weight"], 10);
    assert_eq!(created["max_concurrency"], 200);
    assert_eq!(created["models"], json!(["*"]));

    let r = app
        .client
        .get(app.url("/admin/channels"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("your-apimart-key"),
        "secrets never leave: {text}"
    );
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["data"][0]["name"], "APIMart-Key-1");

    // A channel with no model list serves any model.
    let (_, key) = app.user_with_key(10_000).await;
    let r = app.chat(&key, chat_body("any-model-at-all", false)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn channel_edits_take_effect_on_the_next_request() {
    let app = spawn_app().await;
    let old = MockUpstream::start("k1").await;
    let new = MockUpstream::start("k2").await;
    let id = app
        .channel(
            json!({"name": "c", "secret_key": "k1", "base_url": old.base_url(), "models": "m"}),
        )
        .await;
    let (_, key) = app.user_with_key(10_000).await;
    assert_eq!(app.chat(&key, chat_body("m", false)).await.status(), 200);

    let r = app
        .admin_patch(
            &format!("/admin/channels/{id}"),
            json!({"base_url": new.base_url(), "secret_key": "k2"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(!body.contains("k2\""), "{body}");
    assert_eq!(app.chat(&key, chat_body("m", false)).await.status(), 200);
    assert_eq!((old.requests(), new.requests()), (1, 1));

    let r = app
        .admin_patch(
            &format!("/admin/channels/{id}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "disabled");
    assert_eq!(app.chat(&key, chat_body("m", false)).await.status(), 503);
    app.admin_patch(
        &format!("/admin/channels/{id}"),
        json!({"status": "enabled"}),
    )
    .await;
    assert_eq!(app.chat(&key, chat_body("m", false)).await.status(), 200);

    let r = app
        .client
        .delete(app.url(&format!("/admin/channels/{id}")))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.chat(&key, chat_body("m", false)).await.status(), 404);
}

#[tokio::test]
async fn tokens_are_shown_once_and_stored_hashed() {
    let app = spawn_app().await;
    let user: Value = app
        .admin_post(
            "/admin/users",
            json!({"username": "alice", "quota": 500, "password": "correct horse"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["quota"], 500);
    assert!(user.get("password_hash").is_none());
    let dup = app
        .admin_post("/admin/users", json!({"username": "alice"}))
        .await;
    assert_eq!(dup.status(), 409);

    let key = app
        .key_for(user["id"].as_i64().unwrap(), json!({"name": "laptop"}))
        .await;
    assert!(key.starts_with("sk-") && key.len() == 51);
    let listed = app.admin_get("/admin/tokens").await.text().await.unwrap();
    assert!(!listed.contains(&key));
    assert!(listed.contains(&key[..6]), "a hint is shown: {listed}");
    let stored: Vec<(String,)> = sqlx::query_as("SELECT key_digest FROM tokens")
        .fetch_all(app.app.state.db.pool())
        .await
        .unwrap();
    assert!(stored.iter().all(|(d,)| !d.contains(&key[3..])));
}

#[tokio::test]
async fn channel_secrets_are_encrypted_at_rest() {
    let app = spawn_app().await;
    app.channel(json!({"name": "c", "secret_key": "sk-very-secret-upstream", "base_url": "http://127.0.0.1:9"}))
        .await;
    let stored: Vec<(String,)> = sqlx::query_as("SELECT secret_enc FROM channels")
        .fetch_all(app.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].0.contains("very-secret"));
}

#[tokio::test]
async fn a_generated_admin_token_is_stored_as_a_digest_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let mut config = test_config(dir.path(), &url);
    config.admin_token = None;
    let app = transit::build_app(config.clone()).await.unwrap();
    let token = app
        .generated_admin_token
        .clone()
        .expect("first start generates a token");
    assert!(app.state.admin.accepts(&token));
    assert!(!app.state.admin.accepts("transit-admin-wrong"));
    drop(app);
    // The second start does not print it again, and still accepts it.
    let again = transit::build_app(config).await.unwrap();
    assert!(again.generated_admin_token.is_none());
    assert!(again.state.admin.accepts(&token));
}

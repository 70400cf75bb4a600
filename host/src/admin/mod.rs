//! The admin API under `/admin`, guarded by `X-Admin-Token`.
//!
//! Changes take effect on the next request: a channel write rebuilds this
//! instance's routing table at once, and other instances notice the change
//! in the database within `relay.channel_refresh_ms`.

mod adapters;
mod money;
mod monitor;

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::channels::{self, STATUS_DISABLED, STATUS_ENABLED, types};
use crate::crypto;
use crate::error::GatewayError;
use crate::store::{ChannelRow, NewChannel, NewToken, NewUser};

pub fn routes(app: AppState) -> Router<AppState> {
    Router::new()
        .route("/channels", get(list_channels).post(create_channel))
        .route(
            "/channels/{id}",
            get(get_channel)
                .patch(update_channel)
                .delete(delete_channel),
        )
        .route("/channel-types", get(channel_types))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", get(get_user).patch(update_user))
        .route("/limits", get(monitor::get_limits).put(monitor::put_limits))
        .route("/monitor", get(monitor::monitor))
        .route("/users/{id}/usage", get(money::user_usage))
        .route("/users/{id}/topups", get(money::user_topups))
        .route("/tokens/{id}/usage", get(money::token_usage))
        .route("/pricing", get(money::get_pricing).put(money::put_pricing))
        .route("/recharge", axum::routing::post(money::recharge))
        .route(
            "/redemptions",
            get(money::list_redemptions).post(money::create_redemptions),
        )
        .route(
            "/redemptions/{id}",
            axum::routing::delete(money::disable_redemption),
        )
        .route("/tokens", get(list_tokens).post(create_token))
        .route(
            "/tokens/{id}",
            axum::routing::patch(update_token).delete(delete_token),
        )
        .route(
            "/adapters",
            get(adapters::list_adapters).post(adapters::upload_adapter),
        )
        .route(
            "/adapters/{name}",
            axum::routing::delete(adapters::delete_adapter),
        )
        .route("/logs", get(list_logs))
        .route("/tasks", get(list_tasks))
        .route("/tasks/{id}", get(get_task))
        .layer(axum::middleware::from_fn_with_state(app, require_admin))
}

/// How the admin token is checked.
#[derive(Clone)]
pub enum AdminAuth {
    /// The token set in the configuration.
    Configured(crate::config::Secret),
    /// The SHA-256 digest of a generated token, stored in the database.
    Digest(String),
}

impl AdminAuth {
    pub fn accepts(&self, presented: &str) -> bool {
        match self {
            Self::Configured(t) => {
                crypto::constant_time_eq(t.expose().as_bytes(), presented.as_bytes())
            }
            Self::Digest(d) => {
                crypto::constant_time_eq(crypto::key_digest(presented).as_bytes(), d.as_bytes())
            }
        }
    }
}

async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get("x-admin-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match presented {
        Some(token) if app.admin.accepts(token) => {
            let changes = request.method() != axum::http::Method::GET;
            let response = next.run(request).await;
            // Keys, users and balances may have changed: the relay reads
            // them afresh (other instances within `relay.token_cache_ms`).
            if changes {
                app.tokens.clear();
            }
            response
        }
        Some(_) => GatewayError::unauthenticated("The X-Admin-Token is not valid.")
            .with_code("invalid_admin_token")
            .into_response(),
        None => GatewayError::unauthenticated("Send the admin token in the X-Admin-Token header.")
            .with_code("missing_admin_token")
            .into_response(),
    }
}

pub(crate) type AdminResult = Result<Response, GatewayError>;

/// A JSON body, with a 400 in OpenAI's shape when it does not parse.
pub(crate) struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (_, bytes) = crate::relay::read_body(req, 1024 * 1024).await?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| GatewayError::invalid(format!("Invalid JSON body: {e}")))
    }
}

/// A list given either as a JSON array or as a comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ListField {
    One(String),
    Many(Vec<String>),
}

impl ListField {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => channels::split_list(&s),
            Self::Many(v) => v
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelInput {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    /// The upstream API key (`key` is accepted too).
    #[serde(alias = "key")]
    secret_key: Option<String>,
    base_url: Option<String>,
    models: Option<ListField>,
    model_mapping: Option<HashMap<String, String>>,
    #[serde(alias = "groups")]
    group: Option<ListField>,
    priority: Option<i64>,
    weight: Option<i64>,
    max_concurrency: Option<i64>,
    /// `enabled`/`disabled`, or 1/2.
    status: Option<Value>,
    options: Option<serde_json::Map<String, Value>>,
}

fn parse_status(v: &Value) -> Result<i64, GatewayError> {
    match v {
        Value::String(s) if s == "enabled" => Ok(STATUS_ENABLED),
        Value::String(s) if s == "disabled" => Ok(STATUS_DISABLED),
        Value::Number(n) if n.as_i64() == Some(STATUS_ENABLED) => Ok(STATUS_ENABLED),
        Value::Number(n) if n.as_i64() == Some(STATUS_DISABLED) => Ok(STATUS_DISABLED),
        _ => Err(
            GatewayError::invalid("`status` must be \"enabled\" or \"disabled\".")
                .with_param("status"),
        ),
    }
}

fn status_name(status: i64) -> &'static str {
    if status == STATUS_ENABLED {
        "enabled"
    } else {
        "disabled"
    }
}

fn channel_json(row: &ChannelRow) -> Value {
    json!({
        "id": row.id,
        "type": row.kind,
        "name": row.name,
        "base_url": row.base_url,
        "models": channels::split_list(&row.models),
        "model_mapping": serde_json::from_str::<Value>(&row.model_mapping).unwrap_or(json!({})),
        "group": channels::split_list(&row.group_names),
        "priority": row.priority,
        "weight": row.weight,
        "max_concurrency": row.max_concurrency,
        "status": status_name(row.status),
        "options": serde_json::from_str::<Value>(&row.options).unwrap_or(json!({})),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// A Vertex AI channel's keys must be service-account JSON keys with a
/// usable RSA key: refused when saved rather than at the first call. The
/// answer names the key by its position, never quotes it.
fn check_vertex_keys(kind: &str, secret: &str) -> Result<(), GatewayError> {
    if !crate::channels::vertex::is_vertex(kind) {
        return Ok(());
    }
    for (i, key) in crate::channels::vertex::split_keys(secret)
        .iter()
        .enumerate()
    {
        if let Err(why) = crate::channels::vertex::ServiceAccount::parse(key.expose()) {
            return Err(GatewayError::invalid(format!(
                "Key {} of `secret_key` is not a usable Vertex AI service-account key: {why}.",
                i + 1
            ))
            .with_param("secret_key"));
        }
    }
    Ok(())
}

/// Apply `input` over `base` (a new channel's defaults, or the stored one).
fn merge_channel(
    app: &AppState,
    base: Option<&ChannelRow>,
    input: ChannelInput,
) -> Result<NewChannel, GatewayError> {
    let kind = input
        .kind
        .or_else(|| base.map(|b| b.kind.clone()))
        .unwrap_or_else(|| "openai".to_owned());
    let adapter = types::adapter_for(&kind);
    if types::find(&kind).is_none() && app.runtime.get(adapter).is_none() {
        return Err(GatewayError::invalid(format!(
            "Unknown channel type `{kind}`: use one of GET /admin/channel-types or the name of a loaded adapter."
        ))
        .with_param("type"));
    }
    let name = input
        .name
        .or_else(|| base.map(|b| b.name.clone()))
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| GatewayError::invalid("`name` is required.").with_param("name"))?;
    let secret_enc = match (input.secret_key, base) {
        (Some(k), _) if !k.trim().is_empty() => {
            check_vertex_keys(&kind, k.trim())?;
            app.secrets.encrypt(k.trim())?
        }
        (Some(_), _) | (None, None) => {
            return Err(GatewayError::invalid("`secret_key` is required.").with_param("secret_key"));
        }
        (None, Some(b)) => {
            // A channel turned into a Vertex AI one keeps its key only if
            // that key is a service-account key.
            if crate::channels::vertex::is_vertex(&kind)
                && !crate::channels::vertex::is_vertex(&b.kind)
            {
                let stored = app.secrets.decrypt(&b.secret_enc).map_err(|_| {
                    GatewayError::invalid(format!(
                        "The channel's stored key cannot be read to check it for type `{kind}`: send its service-account key in `secret_key`."
                    ))
                    .with_param("secret_key")
                })?;
                check_vertex_keys(&kind, stored.expose().trim()).map_err(|e| {
                    GatewayError::invalid(format!(
                        "{} A channel changed to type `{kind}` keeps its key unless `secret_key` is sent with the change.",
                        e.message
                    ))
                    .with_param("secret_key")
                })?;
            }
            b.secret_enc.clone()
        }
    };
    let base_url = match input.base_url.or_else(|| base.map(|b| b.base_url.clone())) {
        Some(u) if !u.trim().is_empty() => u.trim().trim_end_matches('/').to_owned(),
        _ => types::default_base_url(&kind)
            .map(str::to_owned)
            .ok_or_else(|| {
                GatewayError::invalid(format!("Channel type `{kind}` needs a `base_url`."))
                    .with_param("base_url")
            })?,
    };
    if url::Url::parse(&base_url)
        .map(|u| u.scheme() != "http" && u.scheme() != "https")
        .unwrap_or(true)
    {
        return Err(
            GatewayError::invalid("`base_url` must be an http(s) URL.").with_param("base_url")
        );
    }
    let mut models = match input.models {
        Some(m) => m.into_vec(),
        None => base
            .map(|b| channels::split_list(&b.models))
            .unwrap_or_default(),
    };
    if models.is_empty() {
        models.push(channels::ANY_MODEL.to_owned());
    }
    let mut groups = match input.group {
        Some(g) => g.into_vec(),
        None => base
            .map(|b| channels::split_list(&b.group_names))
            .unwrap_or_default(),
    };
    if groups.is_empty() {
        groups.push("default".to_owned());
    }
    let model_mapping = match input.model_mapping {
        Some(m) => serde_json::to_string(&m).map_err(anyhow::Error::from)?,
        None => base.map_or_else(|| "{}".to_owned(), |b| b.model_mapping.clone()),
    };
    let options = match input.options {
        Some(o) => {
            if o.get(channels::HTTP2_PRIOR_KNOWLEDGE)
                .is_some_and(|v| !v.is_boolean())
            {
                return Err(GatewayError::invalid(format!(
                    "The option `{}` must be true or false.",
                    channels::HTTP2_PRIOR_KNOWLEDGE
                ))
                .with_param("options"));
            }
            Value::Object(o).to_string()
        }
        None => base.map_or_else(|| "{}".to_owned(), |b| b.options.clone()),
    };
    let status = match input.status {
        Some(s) => parse_status(&s)?,
        None => base.map_or(STATUS_ENABLED, |b| b.status),
    };
    let weight = input.weight.or(base.map(|b| b.weight)).unwrap_or(1);
    let max_concurrency = input
        .max_concurrency
        .or(base.map(|b| b.max_concurrency))
        .unwrap_or(200);
    if weight < 0 || max_concurrency < 1 {
        return Err(GatewayError::invalid(
            "`weight` must be ≥ 0 and `max_concurrency` ≥ 1.",
        ));
    }
    Ok(NewChannel {
        kind,
        name: name.trim().to_owned(),
        base_url,
        secret_enc,
        models,
        model_mapping,
        groups,
        priority: input.priority.or(base.map(|b| b.priority)).unwrap_or(0),
        weight,
        max_concurrency,
        status,
        options,
    })
}

async fn reload_channels(app: &AppState) -> Result<(), GatewayError> {
    app.router.reload().await.map_err(GatewayError::from)
}

async fn create_channel(
    State(app): State<AppState>,
    Body(input): Body<ChannelInput>,
) -> AdminResult {
    let new = merge_channel(&app, None, input)?;
    let id = app.db.create_channel(&new).await?;
    reload_channels(&app).await?;
    let row = app
        .db
        .channel(id)
        .await?
        .ok_or_else(|| GatewayError::internal("channel vanished"))?;
    tracing::info!(channel = id, kind = %row.kind, "channel created");
    Ok((StatusCode::CREATED, Json(channel_json(&row))).into_response())
}

async fn list_channels(State(app): State<AppState>) -> AdminResult {
    let rows = app.db.channels().await?;
    let data: Vec<Value> = rows.iter().map(channel_json).collect();
    Ok(Json(json!({ "data": data })).into_response())
}

async fn get_channel(State(app): State<AppState>, Path(id): Path<i64>) -> AdminResult {
    let row = app
        .db
        .channel(id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("No channel {id}.")))?;
    Ok(Json(channel_json(&row)).into_response())
}

async fn update_channel(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Body(input): Body<ChannelInput>,
) -> AdminResult {
    let current = app
        .db
        .channel(id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("No channel {id}.")))?;
    let new = merge_channel(&app, Some(&current), input)?;
    if !app.db.update_channel(id, &new).await? {
        return Err(GatewayError::not_found(format!("No channel {id}.")));
    }
    reload_channels(&app).await?;
    let row = app
        .db
        .channel(id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("No channel {id}.")))?;
    tracing::info!(channel = id, "channel updated");
    Ok(Json(channel_json(&row)).into_response())
}

async fn delete_channel(State(app): State<AppState>, Path(id): Path<i64>) -> AdminResult {
    if !app.db.delete_channel(id).await? {
        return Err(GatewayError::not_found(format!("No channel {id}.")));
    }
    reload_channels(&app).await?;
    tracing::info!(channel = id, "channel deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn channel_types() -> Json<Value> {
    let data: Vec<Value> = types::TYPES
        .iter()
        .map(|t| json!({ "type": t.name, "adapter": t.adapter, "base_url": t.base_url }))
        .collect();
    Json(json!({ "data": data }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserInput {
    username: String,
    display_name: Option<String>,
    password: Option<String>,
    role: Option<String>,
    group: Option<String>,
    quota: Option<i64>,
}

async fn create_user(State(app): State<AppState>, Body(input): Body<UserInput>) -> AdminResult {
    let username = input.username.trim().to_owned();
    if username.is_empty() || username.len() > 64 {
        return Err(
            GatewayError::invalid("`username` must be 1 to 64 characters.").with_param("username"),
        );
    }
    let role = input.role.unwrap_or_else(|| "user".to_owned());
    if role != "user" && role != "admin" {
        return Err(
            GatewayError::invalid("`role` must be \"user\" or \"admin\".").with_param("role"),
        );
    }
    let quota = input.quota.unwrap_or(0);
    if quota < 0 {
        return Err(GatewayError::invalid("`quota` cannot be negative.").with_param("quota"));
    }
    let password_hash = match input.password {
        Some(p) if !p.is_empty() => Some(
            tokio::task::spawn_blocking(move || crypto::hash_password(&p))
                .await
                .map_err(|e| GatewayError::internal(e.to_string()))??,
        ),
        _ => None,
    };
    let new = NewUser {
        display_name: input.display_name.unwrap_or_else(|| username.clone()),
        username,
        password_hash,
        role,
        group_name: input
            .group
            .filter(|g| !g.trim().is_empty())
            .unwrap_or_else(|| "default".to_owned()),
        quota,
    };
    match app.db.create_user(&new).await {
        Ok(user) => Ok((StatusCode::CREATED, Json(user)).into_response()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(GatewayError::invalid(
            format!("A user named `{}` already exists.", new.username),
        )
        .with_param("username")
        .with_status(StatusCode::CONFLICT)),
        Err(e) => Err(e.into()),
    }
}

async fn list_users(State(app): State<AppState>) -> AdminResult {
    Ok(Json(json!({ "data": app.db.users().await? })).into_response())
}

async fn get_user(State(app): State<AppState>, Path(id): Path<i64>) -> AdminResult {
    let user = app
        .db
        .user(id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("No user {id}.")))?;
    let per_usd = app.billing.config.quota_per_usd.max(1) as f64;
    let mut body = serde_json::to_value(&user).map_err(anyhow::Error::from)?;
    if let Value::Object(map) = &mut body {
        // Display only: the ledger itself is integer units.
        map.insert("quota_usd".into(), json!(user.quota as f64 / per_usd));
        map.insert(
            "used_quota_usd".into(),
            json!(user.used_quota as f64 / per_usd),
        );
    }
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenInput {
    user_id: i64,
    name: Option<String>,
    /// Quota this token may spend; ignored when `unlimited_quota` is true.
    remain_quota: Option<i64>,
    unlimited_quota: Option<bool>,
    models: Option<ListField>,
    allowed_ips: Option<String>,
    group: Option<String>,
    /// Unix seconds; absent or null = never.
    expires_at: Option<i64>,
    /// Concurrent calls allowed (0 or absent: no limit).
    max_concurrency: Option<i64>,
    /// Requests per minute (0 or absent: no limit).
    rpm: Option<i64>,
    /// Tokens per minute (0 or absent: no limit).
    tpm: Option<i64>,
}

fn limit(value: Option<i64>, name: &str) -> Result<i64, GatewayError> {
    match value {
        Some(v) if v < 0 => {
            Err(GatewayError::invalid(format!("`{name}` cannot be negative.")).with_param(name))
        }
        Some(v) => Ok(v),
        None => Ok(0),
    }
}

async fn create_token(State(app): State<AppState>, Body(input): Body<TokenInput>) -> AdminResult {
    if app.db.user(input.user_id).await?.is_none() {
        return Err(
            GatewayError::not_found(format!("No user {}.", input.user_id)).with_param("user_id"),
        );
    }
    let unlimited = input
        .unlimited_quota
        .unwrap_or(input.remain_quota.is_none());
    let remain = input.remain_quota.unwrap_or(0);
    if remain < 0 {
        return Err(
            GatewayError::invalid("`remain_quota` cannot be negative.").with_param("remain_quota")
        );
    }
    let key = crypto::new_api_key();
    let new = NewToken {
        user_id: input.user_id,
        name: input.name.unwrap_or_default(),
        key_digest: crypto::key_digest(&key),
        key_hint: crypto::key_hint(&key),
        remain_quota: remain,
        unlimited_quota: unlimited,
        models: input
            .models
            .map(|m| m.into_vec().join(","))
            .unwrap_or_default(),
        allowed_ips: input.allowed_ips.unwrap_or_default(),
        group_name: input.group.unwrap_or_default(),
        expires_at: input.expires_at,
        max_concurrency: limit(input.max_concurrency, "max_concurrency")?,
        rpm: limit(input.rpm, "rpm")?,
        tpm: limit(input.tpm, "tpm")?,
    };
    let token = app.db.create_token(&new).await?;
    let mut body = serde_json::to_value(&token).map_err(anyhow::Error::from)?;
    if let Value::Object(map) = &mut body {
        // The only time the key is ever shown.
        map.insert("key".to_owned(), Value::String(key));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
struct TokenFilter {
    user_id: Option<i64>,
}

async fn list_tokens(State(app): State<AppState>, Query(f): Query<TokenFilter>) -> AdminResult {
    let tokens = match f.user_id {
        Some(u) => app.db.tokens_of_user(u).await?,
        None => app.db.tokens().await?,
    };
    Ok(Json(json!({ "data": tokens })).into_response())
}

/// Limit fields a key or a user may change; absent ones keep their value.
#[derive(Debug)]
struct LimitsPatch {
    max_concurrency: Option<i64>,
    rpm: Option<i64>,
    tpm: Option<i64>,
}

impl LimitsPatch {
    fn is_empty(&self) -> bool {
        self.max_concurrency.is_none() && self.rpm.is_none() && self.tpm.is_none()
    }

    /// (max_concurrency, rpm, tpm) after the patch.
    fn apply(&self, current: (i64, i64, i64)) -> Result<(i64, i64, i64), GatewayError> {
        Ok((
            limit(self.max_concurrency.or(Some(current.0)), "max_concurrency")?,
            limit(self.rpm.or(Some(current.1)), "rpm")?,
            limit(self.tpm.or(Some(current.2)), "tpm")?,
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusAndLimits {
    status: Option<Value>,
    max_concurrency: Option<i64>,
    rpm: Option<i64>,
    tpm: Option<i64>,
}

impl StatusAndLimits {
    fn limits(&self) -> LimitsPatch {
        LimitsPatch {
            max_concurrency: self.max_concurrency,
            rpm: self.rpm,
            tpm: self.tpm,
        }
    }
}

async fn update_token(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Body(patch): Body<StatusAndLimits>,
) -> AdminResult {
    let current = app
        .db
        .token(id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("No token {id}.")))?;
    if let Some(status) = &patch.status {
        app.db.set_token_status(id, parse_status(status)?).await?;
    }
    let limits = patch.limits();
    if !limits.is_empty() {
        let (c, rpm, tpm) = limits.apply((current.max_concurrency, current.rpm, current.tpm))?;
        app.db.set_token_limits(id, c, rpm, tpm).await?;
    }
    let token = app
        .db
        .token(id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("No token {id}.")))?;
    Ok(Json(token).into_response())
}

async fn update_user(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Body(patch): Body<StatusAndLimits>,
) -> AdminResult {
    let current = app
        .db
        .user(id)
        .await?
        .ok_or_else(|| GatewayError::not_found(format!("No user {id}.")))?;
    let status = match &patch.status {
        Some(s) => parse_status(s)?,
        None => current.status,
    };
    let (c, rpm, tpm) =
        patch
            .limits()
            .apply((current.max_concurrency, current.rpm, current.tpm))?;
    app.db.update_user_limits(id, status, c, rpm, tpm).await?;
    get_user(State(app), Path(id)).await
}

async fn delete_token(State(app): State<AppState>, Path(id): Path<i64>) -> AdminResult {
    if !app.db.delete_token(id).await? {
        return Err(GatewayError::not_found(format!("No token {id}.")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct LogFilter {
    limit: Option<i64>,
}

async fn list_logs(State(app): State<AppState>, Query(f): Query<LogFilter>) -> AdminResult {
    let limit = f.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(json!({ "data": app.db.recent_logs(limit).await? })).into_response())
}

#[derive(Deserialize)]
struct TaskFilter {
    user_id: Option<i64>,
    limit: Option<i64>,
}

/// `GET /admin/tasks?user_id=&limit=`: async tasks, newest first.
async fn list_tasks(State(app): State<AppState>, Query(f): Query<TaskFilter>) -> AdminResult {
    let limit = f.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(json!({ "data": app.db.tasks(f.user_id, limit).await? })).into_response())
}

/// `GET /admin/tasks/{id}`: any user's task.
async fn get_task(State(app): State<AppState>, Path(id): Path<String>) -> AdminResult {
    match app.db.task(&id).await? {
        Some(task) => Ok(Json(task).into_response()),
        None => Err(
            GatewayError::not_found(format!("No task with id `{id}` exists."))
                .with_code("task_not_found"),
        ),
    }
}

pub use money::redeem;

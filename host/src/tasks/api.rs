//! The task endpoints, in the two shapes clients use:
//!
//! - OpenAI's videos API: `POST /v1/videos` → a `video` object;
//!   `GET /v1/videos/{id}`; `GET /v1/videos/{id}/content?variant=…`
//!   (proxied from the upstream, or a redirect to the result URL when the
//!   upstream publishes one); `GET /v1/videos` lists the caller's tasks.
//! - The generic task shape: `POST /v1/video/generations` and
//!   `GET /v1/video/generations/{id}` → `{task_id, status, progress, url,
//!   result_urls, error, …}`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{fail, now_ms, stored_task_call, task_call};
use crate::AppState;
use crate::adapters::{AdapterError, Usage};
use crate::auth::{self, Caller};
use crate::channels::{Channel, NoRoute};
use crate::error::{ErrorKind, GatewayError};
use crate::limits::Acquired;
use crate::relay::{self, admission};
use crate::store::tasks::{FAILED, QUEUED, RUNNING, SUCCEEDED};
use crate::store::{NewHold, NewTask, TaskRow, now};
use crate::upstream::Limit;

/// Holds of tasks are settled by the task's end, never by the sweeper that
/// settles holds of stopped instances: their lease never runs out.
const TASK_HOLD_LEASE: i64 = i64::MAX / 4;
const TASK_HOLD_OWNER: &str = "tasks";

/// The image endpoint, which runs as a task on channels whose adapter
/// lists [`IMAGES_ASYNC`] among its endpoints.
const IMAGES: &str = "images.generations";
/// How an adapter says it generates images as tasks only.
pub const IMAGES_ASYNC: &str = "images.generations.async";

/// What the submit body asked for.
struct Submit {
    model: String,
    /// (unit, count) the hold is priced for.
    units: Vec<(String, u64)>,
    /// Price variant keys (size, quality), most specific first.
    price_variant: Vec<String>,
    params: Value,
}

fn invalid(message: &str, param: &str) -> GatewayError {
    GatewayError::invalid(message).with_param(param)
}

/// A whole number of seconds from a JSON string or number.
fn seconds_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.ceil() as u64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f.ceil() as u64),
        _ => None,
    }
}

/// Read a submit body: JSON, or the multipart form OpenAI's SDK sends. A
/// form without files is handed to the adapter as JSON (one shape for
/// adapters to read); a form with a file goes as it came.
async fn read_submit(
    endpoint: &str,
    content_type: Option<&str>,
    body: axum::body::Bytes,
) -> Result<(Submit, axum::body::Bytes, String), GatewayError> {
    let ct = content_type.unwrap_or("application/json");
    let lower = ct.trim_start().to_ascii_lowercase();
    if lower.starts_with("multipart/form-data") {
        let form = relay::multipart_fields(ct, &body).await?;
        let fields = Value::Object(form.fields);
        let submit = parse_submit(endpoint, &fields)?;
        return Ok(if !form.files.is_empty() {
            (submit, body, ct.to_owned())
        } else {
            (
                submit,
                axum::body::Bytes::from(fields.to_string()),
                "application/json".to_owned(),
            )
        });
    }
    if !lower.starts_with("application/json") {
        return Err(GatewayError::invalid(format!(
            "Send the task as application/json or multipart/form-data (got `{ct}`)."
        ))
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .with_code("unsupported_content_type"));
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("The request body is not valid JSON: {e}")))?;
    let submit = parse_submit(endpoint, &value)?;
    Ok((submit, body, "application/json".to_owned()))
}

fn parse_submit(endpoint: &str, value: &Value) -> Result<Submit, GatewayError> {
    let obj = value
        .as_object()
        .ok_or_else(|| GatewayError::invalid("The request body must be a JSON object."))?;
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => {
            return Err(invalid(
                "`model` is required and must be a string.",
                "model",
            ));
        }
    };
    let prompt = match obj.get("prompt") {
        Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
        _ => {
            return Err(invalid(
                "`prompt` is required and must be a non-empty string.",
                "prompt",
            ));
        }
    };
    let size = obj.get("size").and_then(Value::as_str).map(str::to_owned);
    if endpoint == IMAGES {
        let n = match obj.get("n") {
            None | Some(Value::Null) => Some(1),
            Some(v) => seconds_of(v),
        }
        .filter(|n| (1..=10).contains(n))
        .ok_or_else(|| invalid("`n` must be a whole number from 1 to 10.", "n"))?;
        return Ok(Submit {
            model,
            units: vec![("images".to_owned(), n)],
            price_variant: crate::relay::surface::image_variant(obj),
            params: json!({"prompt": prompt, "n": n, "size": size}),
        });
    }
    let seconds = match endpoint {
        // OpenAI's API takes `seconds` as a string ("4", "8", "12").
        "videos" => match obj.get("seconds") {
            None => 4,
            Some(Value::String(s)) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=600).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "`seconds` must be a whole number of seconds, as a string.",
                        "seconds",
                    )
                })?,
            Some(_) => {
                return Err(invalid(
                    "`seconds` must be a string, such as \"8\".",
                    "seconds",
                ));
            }
        },
        _ => match obj.get("seconds").or_else(|| obj.get("duration")) {
            None => 5,
            Some(v) => seconds_of(v)
                .filter(|n| (1..=600).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "`duration` must be a number of seconds from 1 to 600.",
                        "duration",
                    )
                })?,
        },
    };
    Ok(Submit {
        model,
        units: vec![("seconds".to_owned(), seconds)],
        price_variant: size.iter().cloned().collect(),
        params: json!({"prompt": prompt, "seconds": seconds.to_string(), "size": size}),
    })
}

fn task_not_found(id: &str) -> GatewayError {
    GatewayError::not_found(format!("No task with id `{id}` exists.")).with_code("task_not_found")
}

/// The credentials a request carries, read before any await (a request
/// cannot be held across one).
struct Credentials {
    ip: Option<std::net::IpAddr>,
    key: Option<String>,
}

fn credentials(request: &Request) -> Credentials {
    Credentials {
        ip: relay::client_ip(request),
        key: auth::api_key(request.headers()).map(str::to_owned),
    }
}

/// Authenticate the caller of a task endpoint.
async fn caller_of(app: &AppState, c: Credentials) -> Result<Caller, GatewayError> {
    auth::authenticate(&app.tokens, c.key.as_deref(), c.ip).await
}

/// The caller's own task `id` (anyone else's is "not found").
async fn own_task(app: &AppState, caller: &Caller, id: &str) -> Result<TaskRow, GatewayError> {
    match app.db.task(id).await? {
        Some(task) if task.user_id == caller.user_id => Ok(task),
        _ => Err(task_not_found(id)),
    }
}

/// Channels that can take task `endpoint` for `model`.
fn task_channels(
    app: &AppState,
    caller: &Caller,
    endpoint: &str,
    model: &str,
) -> Result<Vec<Arc<Channel>>, GatewayError> {
    if !caller.may_use(model) {
        return Err(GatewayError::forbidden(format!(
            "This API key may not use the model `{model}`."
        ))
        .with_code("model_not_allowed"));
    }
    let all = app
        .router
        .snapshot()
        .candidates(&caller.group, model)
        .map_err(|no| match no {
            NoRoute::UnknownModel => GatewayError::not_found(format!(
                "The model `{model}` does not exist or you do not have access to it."
            ))
            .with_code("model_not_found"),
            NoRoute::NoChannel => GatewayError::unavailable(format!(
                "No channel is available for the model `{model}` in group `{}`.",
                caller.group
            ))
            .with_code("no_available_channel"),
        })?;
    let serving: Vec<_> = all
        .into_iter()
        .filter(|c| {
            app.runtime.get(&c.adapter).is_some_and(|a| {
                a.health.is_healthy() && a.info.endpoints.iter().any(|e| e == endpoint)
            })
        })
        .collect();
    if serving.is_empty() {
        return Err(GatewayError::new(
            ErrorKind::Unsupported,
            format!("No channel serving `{model}` offers the `{endpoint}` API."),
        )
        .with_code("unsupported_endpoint"));
    }
    Ok(serving)
}

/// Submit a task: hold its price, hand it to an upstream, answer at once.
async fn submit(
    app: &AppState,
    request: Request,
    endpoint: &'static str,
) -> Result<TaskRow, GatewayError> {
    let (caller, headers, body) = relay::authenticated_body(app, request).await?;
    submit_body(app, &caller, &headers, body, endpoint).await
}

/// Submit a task whose body was already read.
async fn submit_body(
    app: &AppState,
    caller: &Caller,
    headers: &axum::http::HeaderMap,
    body: axum::body::Bytes,
    endpoint: &'static str,
) -> Result<TaskRow, GatewayError> {
    let started = Instant::now();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (asked, body, body_type) = read_submit(endpoint, content_type, body).await?;
    let served_as = if endpoint == IMAGES {
        IMAGES_ASYNC
    } else {
        endpoint
    };
    let channels = task_channels(app, caller, served_as, &asked.model)?;
    let _rate = admission::rate_limit(app, caller, &asked.model, 0).await?;
    let _caller_slot = admission::caller_slots(app, caller).await?;

    let price = app
        .billing
        .quote(&asked.model, &caller.group, &asked.price_variant)?;
    let usage = Usage {
        input_tokens: 0,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        units: asked.units.clone(),
    };
    let held = price.cost(&usage);
    let id = format!("task_{}", crate::crypto::random_string(32));
    let hold = NewHold {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: caller.user_id,
        token_id: caller.token_id,
        amount: held,
        model: asked.model.clone(),
        prompt_tokens: 0,
        price: serde_json::to_string(&price).unwrap_or_default(),
        request_id: id.clone(),
        client_ip: String::new(),
        is_stream: false,
        instance: TASK_HOLD_OWNER.to_owned(),
        lease_until: TASK_HOLD_LEASE,
    };
    let task = NewTask {
        id: id.clone(),
        kind: if endpoint == IMAGES { "image" } else { "video" }.to_owned(),
        endpoint: endpoint.to_owned(),
        user_id: caller.user_id,
        token_id: caller.token_id,
        model: asked.model.clone(),
        hold_id: hold.id.clone(),
        held,
        units: serde_json::to_string(&asked.units).unwrap_or_default(),
        params: asked.params.to_string(),
        deadline: now() + app.config.tasks.timeout_secs as i64,
        first_look_ms: now_ms() + (app.config.upstream.request_timeout_secs as i64 + 30) * 1000,
    };
    if !app.db.create_task(&task, &hold).await? {
        return Err(GatewayError::new(
            ErrorKind::InsufficientQuota,
            format!("You exceeded your current quota: this task needs {held} units."),
        )
        .with_code("insufficient_quota"));
    }
    let row = app
        .db
        .task(&id)
        .await?
        .ok_or_else(|| GatewayError::internal("the task just created is missing"))?;
    let mut forwarded = relay::forwarded_headers(headers);
    forwarded.retain(|(k, _)| k != "content-type");
    forwarded.push(("content-type".to_owned(), body_type));

    let mut tried: Vec<i64> = Vec::new();
    let mut last_error = None;
    for _ in 0..=app.config.relay.max_retries {
        let open: Vec<Arc<Channel>> = channels
            .iter()
            .filter(|c| !tried.contains(&c.id))
            .cloned()
            .collect();
        if open.is_empty() {
            break;
        }
        let (slot_candidates, owners) = admission::candidates(&open);
        let (channel, key_index, mut guard) = match app.limiter.acquire(&[], &slot_candidates).await
        {
            Acquired::Slot(i, guard) => {
                let (channel, key_index) = owners[i].clone();
                (channel, key_index, guard)
            }
            Acquired::Full | Acquired::RequiredFull(_) => {
                last_error.get_or_insert_with(|| admission::all_busy(&asked.model));
                break;
            }
        };
        tried.push(channel.id);
        match submit_upstream(
            app,
            caller.user_id,
            &channel,
            key_index,
            endpoint,
            &asked.model,
            forwarded.clone(),
            &body,
        )
        .await
        {
            Ok((upstream_id, status)) => {
                let next = now_ms() + app.config.tasks.poll_interval_ms as i64;
                let recorded = app
                    .db
                    .task_submitted(
                        &id,
                        channel.id,
                        key_index as i64,
                        &upstream_id,
                        status,
                        next,
                    )
                    .await?;
                if !recorded {
                    return Err(GatewayError::internal(
                        "the task changed while it was submitted",
                    ));
                }
                if channel
                    .options
                    .iter()
                    .any(|(k, v)| k == "task_holds_slot" && v == "true")
                {
                    app.tasks.keep_slot(&id, guard);
                }
                tracing::info!(task = %id, channel = channel.id, elapsed_ms = started.elapsed().as_millis() as u64, "task submitted");
                return app
                    .db
                    .task(&id)
                    .await?
                    .ok_or_else(|| GatewayError::internal("the task just submitted is missing"));
            }
            Err(e) => {
                guard.mark_failed();
                tracing::info!(task = %id, channel = channel.id, status = e.status.as_u16(), error = %e.message, "task submit failed");
                let retry = e.retryable;
                last_error = Some(e);
                if !retry {
                    break;
                }
            }
        }
    }
    let error = last_error.unwrap_or_else(|| {
        GatewayError::unavailable(format!(
            "No channel is available for the model `{}`.",
            asked.model
        ))
    });
    fail(app, &row, &format!("submit failed: {}", error.message)).await;
    Err(error)
}

/// One submit attempt on one channel: the upstream's task id and status.
#[allow(clippy::too_many_arguments)]
async fn submit_upstream(
    app: &AppState,
    user_id: i64,
    channel: &Arc<Channel>,
    key_index: usize,
    endpoint: &str,
    model: &str,
    headers: Vec<(String, String)>,
    body: &[u8],
) -> Result<(String, &'static str), GatewayError> {
    let adapter = app.runtime.get(&channel.adapter).ok_or_else(|| {
        GatewayError::unavailable(format!("The adapter `{}` is not loaded.", channel.adapter))
            .retryable(true)
    })?;
    let call = task_call(app, endpoint, model, channel, key_index, headers).await?;
    let mut lease = app
        .runtime
        .instantiate_for(&adapter, user_id)
        .await
        .map_err(|e| {
            GatewayError::unavailable(format!("No adapter instance is free: {e}")).retryable(true)
        })?;
    lease.instance.set_log_name(&adapter.info.name);
    let req = lease
        .instance
        .prepare_submit(&call, body)
        .await
        .map_err(|f| relay::guest_failure(&lease.adapter, f))?
        .map_err(|e| relay::from_adapter_error(e, channel))?;
    let response = super::send(app, &adapter.info.name, channel, req).await?;
    if !(200..300).contains(&response.status) {
        let e = lease
            .instance
            .map_error(&call, &response)
            .await
            .map_err(|f| relay::guest_failure(&lease.adapter, f))?;
        return Err(relay::from_adapter_error(e, channel));
    }
    let submitted = lease
        .instance
        .parse_submit(&call, &response)
        .await
        .map_err(|f| relay::guest_failure(&lease.adapter, f))?
        .map_err(|e| relay::from_adapter_error(e, channel))?;
    if submitted.upstream_id.is_empty() {
        return Err(relay::adapter_bug(
            &lease,
            "returned an empty upstream task id",
        ));
    }
    let status = match submitted.status {
        crate::adapters::TaskStatus::Running => RUNNING,
        _ => QUEUED,
    };
    Ok((submitted.upstream_id, status))
}

fn params(task: &TaskRow) -> Value {
    serde_json::from_str(&task.params).unwrap_or(Value::Null)
}

fn results(task: &TaskRow) -> Vec<String> {
    serde_json::from_str(&task.results).unwrap_or_default()
}

fn nullable(ts: i64) -> Value {
    if ts > 0 { json!(ts) } else { Value::Null }
}

/// A task as OpenAI's `video` object.
fn openai_video(task: &TaskRow) -> Value {
    let p = params(task);
    let status = match task.status.as_str() {
        SUCCEEDED => "completed",
        FAILED => "failed",
        RUNNING => "in_progress",
        _ => "queued",
    };
    let error =
        (task.status == FAILED).then(|| json!({"code": "task_failed", "message": task.error}));
    json!({
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": status,
        "progress": task.progress,
        "created_at": task.created_at,
        "completed_at": nullable(task.completed_at),
        "expires_at": Value::Null,
        "prompt": p["prompt"],
        "seconds": p["seconds"],
        "size": p["size"],
        "remixed_from_video_id": Value::Null,
        "error": error,
        "result_urls": result_urls(task),
    })
}

/// Where a finished task's results are: the upstream's URLs, or this
/// gateway's content endpoint when the upstream serves content through its API.
fn result_urls(task: &TaskRow) -> Vec<String> {
    if task.status != SUCCEEDED {
        return Vec::new();
    }
    let urls = results(task);
    if urls.is_empty() {
        vec![format!("/v1/videos/{}/content", task.id)]
    } else {
        urls
    }
}

/// A task in the generic task shape.
fn generic(task: &TaskRow) -> Value {
    let status = match task.status.as_str() {
        SUCCEEDED => "succeeded",
        FAILED => "failed",
        RUNNING => "in_progress",
        _ => "queued",
    };
    let urls = result_urls(task);
    let error =
        (task.status == FAILED).then(|| json!({"code": "task_failed", "message": task.error}));
    json!({
        "id": task.id,
        "task_id": task.id,
        "object": format!("{}.generation", task.kind),
        "model": task.model,
        "status": status,
        "progress": task.progress,
        "url": urls.first(),
        "result_urls": urls,
        "error": error,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "completed_at": nullable(task.completed_at),
    })
}

fn respond(result: Result<Value, GatewayError>) -> Response {
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/videos`
pub async fn create_video(State(app): State<AppState>, request: Request) -> Response {
    respond(
        submit(&app, request, "videos")
            .await
            .map(|t| openai_video(&t)),
    )
}

/// `GET /v1/videos/{id}`
pub async fn get_video(
    State(app): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let c = credentials(&request);
    let r = async {
        let caller = caller_of(&app, c).await?;
        own_task(&app, &caller, &id).await.map(|t| openai_video(&t))
    };
    respond(r.await)
}

/// `GET /v1/videos`: the caller's tasks, newest first.
pub async fn list_videos(State(app): State<AppState>, request: Request) -> Response {
    let c = credentials(&request);
    let r = async {
        let caller = caller_of(&app, c).await?;
        let tasks = app.db.tasks(Some(caller.user_id), 100).await?;
        let data: Vec<Value> = tasks.iter().map(openai_video).collect();
        Ok(json!({
            "object": "list",
            "first_id": data.first().map(|v| v["id"].clone()),
            "last_id": data.last().map(|v| v["id"].clone()),
            "has_more": false,
            "data": data,
        }))
    };
    respond(r.await)
}

/// `POST /v1/images/generations` for a model whose channels generate
/// images as tasks: answers a task in the generic shape.
pub async fn create_image_task(
    app: &AppState,
    caller: &Caller,
    headers: &axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    respond(
        submit_body(app, caller, headers, body, IMAGES)
            .await
            .map(|t| generic(&t)),
    )
}

/// Whether `model` is generated as a task for `caller`: every channel that
/// could serve it has an adapter that generates images only as tasks.
pub fn images_are_tasks(app: &AppState, caller: &Caller, model: &str) -> bool {
    let Ok(channels) = app.router.snapshot().candidates(&caller.group, model) else {
        return false;
    };
    let adapters: Vec<_> = channels
        .iter()
        .filter_map(|c| app.runtime.get(&c.adapter))
        .collect();
    !adapters.is_empty()
        && adapters.iter().all(|a| {
            a.info.endpoints.iter().any(|e| e == IMAGES_ASYNC)
                && !a.info.endpoints.iter().any(|e| e == IMAGES)
        })
}

/// `GET /v1/images/generations/{id}`: an image task.
pub async fn get_image_task(
    State(app): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    get_generation(State(app), Path(id), request).await
}

/// `POST /v1/video/generations`
pub async fn create_generation(State(app): State<AppState>, request: Request) -> Response {
    respond(
        submit(&app, request, "video.generations")
            .await
            .map(|t| generic(&t)),
    )
}

/// `GET /v1/video/generations/{id}`
pub async fn get_generation(
    State(app): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let c = credentials(&request);
    let r = async {
        let caller = caller_of(&app, c).await?;
        own_task(&app, &caller, &id).await.map(|t| generic(&t))
    };
    respond(r.await)
}

#[derive(serde::Deserialize)]
pub struct ContentQuery {
    variant: Option<String>,
}

/// `GET /v1/videos/{id}/content?variant=video|thumbnail|spritesheet`: the
/// bytes, streamed from the upstream when its API serves them; otherwise a
/// redirect to the result URL the upstream published.
pub async fn video_content(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ContentQuery>,
    request: Request,
) -> Response {
    let c = credentials(&request);
    let r = async {
        let caller = caller_of(&app, c).await?;
        let task = own_task(&app, &caller, &id).await?;
        if task.status != SUCCEEDED {
            return Err(GatewayError::invalid(format!(
                "The task `{id}` has not completed (it is {}).",
                task.status
            ))
            .with_status(StatusCode::CONFLICT)
            .with_code("task_not_completed"));
        }
        let variant = q.variant.unwrap_or_else(|| "video".to_owned());
        if !matches!(variant.as_str(), "video" | "thumbnail" | "spritesheet") {
            return Err(invalid(
                "`variant` must be video, thumbnail or spritesheet.",
                "variant",
            ));
        }
        content(&app, &task, &variant).await
    };
    match r.await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn content(app: &AppState, task: &TaskRow, variant: &str) -> Result<Response, GatewayError> {
    let channel = app.router.snapshot().channel(task.channel_id);
    let adapter = channel.as_ref().and_then(|c| app.runtime.get(&c.adapter));
    let (Some(channel), Some(adapter)) = (channel, adapter) else {
        return redirect(task, variant);
    };
    let call = stored_task_call(app, task, &channel).await?;
    let mut lease = app
        .runtime
        .instantiate_for(&adapter, task.user_id)
        .await
        .map_err(|e| GatewayError::unavailable(format!("No adapter instance is free: {e}")))?;
    lease.instance.set_log_name(&adapter.info.name);
    let mut req = match lease
        .instance
        .prepare_content(&call, &task.upstream_id, variant)
        .await
        .map_err(|f| relay::guest_failure(&lease.adapter, f))?
    {
        Ok(req) => req,
        Err(AdapterError::Unsupported(_)) => return redirect(task, variant),
        Err(e) => return Err(relay::from_adapter_error(e, &channel)),
    };
    let upstream = app
        .upstream
        .send(
            relay::upstream_request(&adapter.info.name, &channel, &mut req)?,
            Limit::Idle,
        )
        .await
        .map_err(|e| relay::upstream_unreachable(&e, &channel))?;
    if !upstream.status().is_success() {
        let response = relay::collect_response(upstream, 1024 * 1024, &channel).await?;
        let e = lease
            .instance
            .map_error(&call, &response)
            .await
            .map_err(|f| relay::guest_failure(&lease.adapter, f))?;
        return Err(relay::from_adapter_error(e, &channel));
    }
    lease.recycle();
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let length = upstream.headers().get(header::CONTENT_LENGTH).cloned();
    let mut out = Response::new(Body::from_stream(upstream.bytes_stream()));
    out.headers_mut().insert(header::CONTENT_TYPE, content_type);
    if let Some(length) = length {
        out.headers_mut().insert(header::CONTENT_LENGTH, length);
    }
    Ok(out)
}

fn redirect(task: &TaskRow, variant: &str) -> Result<Response, GatewayError> {
    let urls = results(task);
    match urls.first() {
        Some(url) if variant == "video" => {
            let location = HeaderValue::from_str(url)
                .map_err(|_| GatewayError::internal("the result URL is not a valid header"))?;
            let mut out = StatusCode::FOUND.into_response();
            out.headers_mut().insert(header::LOCATION, location);
            Ok(out)
        }
        _ => Err(GatewayError::not_found(format!(
            "The task `{}` has no `{variant}` content.",
            task.id
        ))
        .with_code("content_not_found")),
    }
}

//! Asynchronous generation tasks: video and image jobs that take minutes.
//!
//! ```text
//! submit   auth → body checked (model, prompt, seconds / n) → rate limits
//!          → the price of the units asked for held, and the task recorded,
//!          in one transaction → adapter.prepare-submit → upstream →
//!          adapter.parse-submit → the client gets the local task at once
//! poll     each instance's poller claims due tasks through a lease in the
//!          database (one instance polls a task at a time), asks the
//!          adapter for the poll request, and reads the state back
//! end      succeeded: the held price (or the usage the adapter reported)
//!          charged; failed, timed out or never submitted: refunded. The
//!          task's status and its settlement change in one transaction
//!          guarded by the status, so a task is billed or refunded once.
//! ```
//!
//! Local ids are random and unguessable; a task is visible only to its
//! owner (and the admin API). The upstream's id never leaves the gateway.
//! A channel with the option `task_holds_slot=true` keeps its concurrency
//! slot while the upstream works on a task (released at the end; the slot's
//! lease frees it if the instance stops).

pub mod api;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::adapters::{Call, TaskState, TaskStatus, Usage};
use crate::billing::PriceSnapshot;
use crate::channels::Channel;
use crate::error::GatewayError;
use crate::limits::SlotGuard;
use crate::relay;
use crate::store::tasks::{FAILED, QUEUED, RUNNING, SUBMITTING, SUCCEEDED};
use crate::store::{ConsumeLog, Settlement, TaskEnd, TaskRow, now};
use crate::upstream::Limit;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// How long after a poll the next one is due.
    pub poll_interval_ms: u64,
    /// A task not finished this long after its submission is failed and
    /// refunded.
    pub timeout_secs: u64,
    /// How long an instance may hold a task's poll lease.
    pub lease_secs: u64,
    /// Polls that fail in a row (upstream down, unreadable answers) before
    /// the task is failed and refunded.
    pub max_poll_errors: u32,
    /// Tasks polled at once by one instance.
    pub batch: u32,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 5_000,
            timeout_secs: 2 * 3600,
            lease_secs: 60,
            max_poll_errors: 20,
            batch: 16,
        }
    }
}

/// The task service of one instance.
pub struct Tasks {
    /// This instance's name on the leases it takes.
    instance: String,
    /// Concurrency slots kept while upstreams work on tasks.
    slots: Mutex<HashMap<String, SlotGuard>>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("instance", &self.instance)
            .finish()
    }
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            instance: uuid::Uuid::new_v4().to_string(),
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl Tasks {
    fn keep_slot(&self, task: &str, guard: SlotGuard) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(task.to_owned(), guard);
        }
    }

    fn release_slot(&self, task: &str) {
        let guard = self.slots.lock().ok().and_then(|mut s| s.remove(task));
        drop(guard);
    }

    /// Slots currently kept for tasks (for the monitor and tests).
    pub fn slots_held(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The adapter's view of a call for task `endpoint` on `channel`.
/// The call a stored task's poll or download makes, through the key it was
/// submitted with.
async fn stored_task_call(
    app: &AppState,
    task: &TaskRow,
    channel: &Channel,
) -> Result<Call, GatewayError> {
    let key_index = usize::try_from(task.key_index).unwrap_or(0);
    task_call(
        app,
        &task.endpoint,
        &task.model,
        channel,
        key_index,
        Vec::new(),
    )
    .await
}

/// A task call through `channel`'s key `key_index` (or, for Vertex AI, the
/// access token it stands for; fetched before an adapter instance is
/// leased, so a slow token endpoint holds no instance).
async fn task_call(
    app: &AppState,
    endpoint: &str,
    model: &str,
    channel: &Channel,
    key_index: usize,
    headers: Vec<(String, String)>,
) -> Result<Call, GatewayError> {
    Ok(Call {
        endpoint: endpoint.to_owned(),
        model: channel.upstream_model(model).to_owned(),
        stream: false,
        include_usage: false,
        headers,
        channel: crate::channels::vertex::channel_info(app, channel, key_index).await?,
    })
}

fn status_str(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Queued => QUEUED,
        TaskStatus::Running => RUNNING,
        TaskStatus::Succeeded => SUCCEEDED,
        TaskStatus::Failed => FAILED,
    }
}

/// What a task's end costs and how it is logged.
fn settlement(
    task: &TaskRow,
    cost: i64,
    status: u16,
    price: Option<String>,
    note: &str,
) -> Settlement {
    Settlement {
        hold_id: task.hold_id.clone(),
        lease_expired_by: None,
        cost,
        counts_as_request: i64::from(cost > 0 || status < 400),
        log: ConsumeLog {
            kind: if status < 400 { "consume" } else { "error" },
            user_id: task.user_id,
            token_id: task.token_id,
            channel_id: task.channel_id,
            model: task.model.clone(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            quota: 0,
            price,
            latency_ms: (now() - task.created_at).max(0) * 1000,
            first_token_ms: 0,
            is_stream: false,
            status_code: i64::from(status),
            request_id: task.id.clone(),
            client_ip: String::new(),
            content: format!("task {} {}: {note}", task.endpoint, task.id),
        },
    }
}

/// End `task` as failed, refunding everything held. Returns whether this
/// call ended it.
pub(crate) async fn fail(app: &AppState, task: &TaskRow, reason: &str) -> bool {
    let s = settlement(task, 0, 500, None, reason);
    let end = TaskEnd {
        status: FAILED,
        results: "[]".to_owned(),
        error: reason.to_owned(),
        settlement: &s,
    };
    app.tasks.release_slot(&task.id);
    match app.db.finish_task(&task.id, &end).await {
        Ok(ended) => {
            if ended.is_some() {
                tracing::info!(task = %task.id, reason, "task failed; its hold was refunded");
            }
            ended.is_some()
        }
        Err(e) => {
            tracing::error!(task = %task.id, error = %e, "recording a failed task failed; it will be retried");
            false
        }
    }
}

/// End `task` as succeeded with `results`, charging the reported usage at
/// the held price, or the held amount when the adapter reported none.
async fn succeed(app: &AppState, task: &TaskRow, results: &[String], usage: Option<&Usage>) {
    let price_json = app.db.hold_price(&task.hold_id).await.ok().flatten();
    let price: Option<PriceSnapshot> = price_json
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok());
    let cost = match (usage, &price) {
        (Some(u), Some(p)) if u.input_tokens + u.output_tokens > 0 || !u.units.is_empty() => {
            p.cost(u)
        }
        _ => task.held,
    };
    let s = settlement(task, cost, 200, price_json, "succeeded");
    let end = TaskEnd {
        status: SUCCEEDED,
        results: serde_json::to_string(results).unwrap_or_else(|_| "[]".to_owned()),
        error: String::new(),
        settlement: &s,
    };
    app.tasks.release_slot(&task.id);
    match app.db.finish_task(&task.id, &end).await {
        Ok(Some(charged)) => tracing::info!(task = %task.id, charged, "task succeeded"),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(task = %task.id, error = %e, "recording a finished task failed; it will be retried")
        }
    }
}

/// The poller: claims due tasks and polls them, until the app stops.
pub fn spawn_poller(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tick = Duration::from_millis(app.config.tasks.poll_interval_ms.clamp(20, 1000));
        loop {
            tokio::time::sleep(tick).await;
            if let Err(e) = poll_due(&app).await {
                tracing::warn!(error = %e, "polling tasks failed");
            }
        }
    })
}

/// Poll every task that is due now (one batch).
pub async fn poll_due(app: &AppState) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let ids = app
        .db
        .due_tasks(now_ms(), i64::from(app.config.tasks.batch.max(1)))
        .await?;
    futures_util::stream::iter(ids)
        .for_each_concurrent(4, |id| async move {
            poll_one(app, &id).await;
        })
        .await;
    Ok(())
}

async fn poll_one(app: &AppState, id: &str) {
    let cfg = &app.config.tasks;
    let start = now_ms();
    match app
        .db
        .claim_task(
            id,
            &app.tasks.instance,
            start,
            start + cfg.lease_secs as i64 * 1000,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(task = id, error = %e, "claiming a task failed");
            return;
        }
    }
    let task = match app.db.task(id).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(task = id, error = %e, "reading a task failed");
            return;
        }
    };
    if now() > task.deadline {
        fail(
            app,
            &task,
            &format!(
                "the task did not finish within {} seconds",
                cfg.timeout_secs
            ),
        )
        .await;
        return;
    }
    if task.status == SUBMITTING {
        // Its instance stopped between the hold and the upstream's answer:
        // whether the upstream took it is unknown, and it cannot be polled.
        fail(app, &task, "the gateway stopped while submitting the task").await;
        return;
    }
    match poll_upstream(app, &task).await {
        Ok(state) => match state.status {
            TaskStatus::Succeeded => {
                succeed(app, &task, &state.results, state.usage.as_ref()).await
            }
            TaskStatus::Failed => {
                let reason = state
                    .error
                    .unwrap_or_else(|| "the upstream reported the task failed".to_owned());
                fail(app, &task, &reason).await;
            }
            status => {
                let next = now_ms() + cfg.poll_interval_ms as i64;
                let progress = i64::from(state.progress.min(99));
                if let Err(e) = app
                    .db
                    .task_polled(
                        id,
                        &app.tasks.instance,
                        status_str(status),
                        progress,
                        0,
                        next,
                    )
                    .await
                {
                    tracing::warn!(task = id, error = %e, "recording a poll failed");
                }
            }
        },
        Err(e) => {
            let attempts = task.attempts + 1;
            tracing::info!(task = id, attempts, error = %e.message, "polling the upstream failed");
            if attempts >= i64::from(cfg.max_poll_errors) {
                fail(
                    app,
                    &task,
                    &format!("the upstream could not be polled: {}", e.message),
                )
                .await;
                return;
            }
            // Back off: the interval doubled per failure, at most 64 times.
            let backoff = cfg.poll_interval_ms as i64 * (1i64 << attempts.min(6));
            if let Err(e) = app
                .db
                .task_polled(
                    id,
                    &app.tasks.instance,
                    &task.status,
                    task.progress,
                    attempts,
                    now_ms() + backoff,
                )
                .await
            {
                tracing::warn!(task = id, error = %e, "recording a poll failed");
            }
        }
    }
}

/// Ask the upstream how `task` is doing, through its channel's adapter.
async fn poll_upstream(app: &AppState, task: &TaskRow) -> Result<TaskState, GatewayError> {
    let channel = app
        .router
        .snapshot()
        .channel(task.channel_id)
        .ok_or_else(|| {
            GatewayError::unavailable(format!("channel {} no longer exists", task.channel_id))
        })?;
    let adapter = app.runtime.get(&channel.adapter).ok_or_else(|| {
        GatewayError::unavailable(format!("the adapter `{}` is not loaded", channel.adapter))
    })?;
    let call = stored_task_call(app, task, &channel).await?;
    let mut lease = app
        .runtime
        .instantiate_for(&adapter, task.user_id)
        .await
        .map_err(|e| GatewayError::unavailable(format!("no adapter instance is free: {e}")))?;
    lease.instance.set_log_name(&adapter.info.name);
    let req = lease
        .instance
        .prepare_poll(&call, &task.upstream_id)
        .await
        .map_err(|f| relay::guest_failure(&lease.adapter, f))?
        .map_err(|e| relay::from_adapter_error(e, &channel))?;
    let response = send(app, &adapter.info.name, &channel, req).await?;
    if !(200..300).contains(&response.status) {
        let e = lease
            .instance
            .map_error(&call, &response)
            .await
            .map_err(|f| relay::guest_failure(&lease.adapter, f))?;
        return Err(relay::from_adapter_error(e, &channel));
    }
    lease
        .instance
        .parse_poll(&call, &response)
        .await
        .map_err(|f| relay::guest_failure(&lease.adapter, f))?
        .map_err(|e| relay::from_adapter_error(e, &channel))
}

/// Send an adapter-built request and read the whole answer.
async fn send(
    app: &AppState,
    adapter: &str,
    channel: &Channel,
    mut req: crate::adapters::UpstreamRequest,
) -> Result<crate::adapters::UpstreamResponse, GatewayError> {
    let limit = Limit::Total(Duration::from_secs(
        app.config.upstream.request_timeout_secs,
    ));
    let response = app
        .upstream
        .send(relay::upstream_request(adapter, channel, &mut req)?, limit)
        .await
        .map_err(|e| relay::upstream_unreachable(&e, channel))?;
    relay::collect_response(response, app.config.upstream.max_response_bytes, channel).await
}

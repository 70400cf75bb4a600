//! Asynchronous generation tasks. A task and its hold are created in one
//! transaction; a task ends (succeeded, failed, timed out) in one
//! transaction with its settlement, guarded by its status, so whichever
//! instance ends it first moves the money and every other attempt changes
//! nothing.

use sqlx::FromRow;

use super::{Db, NewHold, Settlement, now};

/// Task statuses as stored. `submitting`: the hold is placed and the
/// upstream not yet answered (a task left there by a crash is failed and
/// refunded by the poller).
pub const SUBMITTING: &str = "submitting";
pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";

/// Statuses a task can still leave, as SQL.
macro_rules! open {
    () => {
        "('submitting', 'queued', 'running')"
    };
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    /// "video" or "image".
    pub kind: String,
    /// The API the client called ("videos", "video.generations", ...).
    pub endpoint: String,
    pub user_id: i64,
    pub token_id: i64,
    pub model: String,
    pub hold_id: String,
    pub held: i64,
    /// Units the hold was computed for, JSON (`[["seconds", 8]]`).
    pub units: String,
    /// What the client asked for that task responses echo (size, seconds,
    /// prompt), JSON.
    pub params: String,
    /// Unix seconds after which the task is given up and refunded.
    pub deadline: i64,
    /// When the poller may first look at it (ms): after the submit had
    /// every chance to finish, so a task still `submitting` then was
    /// abandoned by a stopped instance.
    pub first_look_ms: i64,
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TaskRow {
    pub id: String,
    pub kind: String,
    pub endpoint: String,
    pub user_id: i64,
    pub token_id: i64,
    pub model: String,
    pub channel_id: i64,
    pub key_index: i64,
    #[serde(skip)]
    pub upstream_id: String,
    pub status: String,
    pub progress: i64,
    pub results: String,
    pub error: String,
    pub hold_id: String,
    pub held: i64,
    pub units: String,
    pub charged: i64,
    pub params: String,
    pub attempts: i64,
    pub next_poll_ms: i64,
    pub deadline: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: i64,
}

macro_rules! columns {
    () => {
        "id, kind, endpoint, user_id, token_id, model, channel_id, key_index, upstream_id, status, progress, results, error, hold_id, held, units, charged, params, attempts, next_poll_ms, deadline, created_at, updated_at, completed_at"
    };
}

/// How a task ends.
pub struct TaskEnd<'a> {
    pub status: &'static str,
    /// Result URLs, JSON.
    pub results: String,
    pub error: String,
    pub settlement: &'a Settlement,
}

impl Db {
    /// Place `hold` and record `task` (status `submitting`) together.
    /// `Ok(false)`: the balance cannot cover the hold; nothing changed.
    pub async fn create_task(&self, task: &NewTask, hold: &NewHold) -> sqlx::Result<bool> {
        let mut tx = self.pool().begin().await?;
        if !self.place_hold_in(&mut tx, hold).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        let ts = now();
        self.q(concat!(
            "INSERT INTO tasks (id, kind, endpoint, user_id, token_id, model, status, results, error, hold_id, held, units, params, next_poll_ms, deadline, created_at, updated_at) ",
            "VALUES (?, ?, ?, ?, ?, ?, 'submitting', '[]', '', ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(task.id.clone())
        .bind(task.kind.clone())
        .bind(task.endpoint.clone())
        .bind(task.user_id)
        .bind(task.token_id)
        .bind(task.model.clone())
        .bind(task.hold_id.clone())
        .bind(task.held)
        .bind(task.units.clone())
        .bind(task.params.clone())
        .bind(task.first_look_ms)
        .bind(task.deadline)
        .bind(ts)
        .bind(ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The upstream accepted the task: remember where, and when to poll.
    pub async fn task_submitted(
        &self,
        id: &str,
        channel_id: i64,
        key_index: i64,
        upstream_id: &str,
        status: &str,
        next_poll_ms: i64,
    ) -> sqlx::Result<bool> {
        let r = self
            .q(concat!("UPDATE tasks SET channel_id = ?, key_index = ?, upstream_id = ?, status = ?, next_poll_ms = ?, updated_at = ? \
                 WHERE id = ? AND status = '", "submitting", "'"))
            .bind(channel_id)
            .bind(key_index)
            .bind(upstream_id.to_owned())
            .bind(status.to_owned())
            .bind(next_poll_ms)
            .bind(now())
            .bind(id.to_owned())
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn task(&self, id: &str) -> sqlx::Result<Option<TaskRow>> {
        self.qa::<TaskRow>(concat!("SELECT ", columns!(), " FROM tasks WHERE id = ?"))
            .bind(id.to_owned())
            .fetch_optional(self.pool())
            .await
    }

    /// Tasks, newest first; of one user when `user_id` is set.
    pub async fn tasks(&self, user_id: Option<i64>, limit: i64) -> sqlx::Result<Vec<TaskRow>> {
        match user_id {
            Some(user) => {
                self.qa::<TaskRow>(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM tasks WHERE user_id = ? ORDER BY created_at DESC, id LIMIT ?"
                ))
                .bind(user)
                .bind(limit)
                .fetch_all(self.pool())
                .await
            }
            None => {
                self.qa::<TaskRow>(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM tasks ORDER BY created_at DESC, id LIMIT ?"
                ))
                .bind(limit)
                .fetch_all(self.pool())
                .await
            }
        }
    }

    /// Open tasks due for a poll whose lease is free.
    pub async fn due_tasks(&self, now_ms: i64, limit: i64) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> = self
            .qa(concat!(
                "SELECT id FROM tasks WHERE status IN ",
                open!(),
                " AND next_poll_ms <= ? AND lease_until_ms < ? \
                 ORDER BY next_poll_ms LIMIT ?"
            ))
            .bind(now_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Take the poll lease of task `id` for `owner` until `until_ms`, if no
    /// other instance holds it. Exactly one of several racing instances wins.
    pub async fn claim_task(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> sqlx::Result<bool> {
        let r = self
            .q(concat!(
                "UPDATE tasks SET lease_owner = ?, lease_until_ms = ? WHERE id = ? AND status IN ",
                open!(),
                " AND lease_until_ms < ?"
            ))
            .bind(owner.to_owned())
            .bind(until_ms)
            .bind(id.to_owned())
            .bind(now_ms)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Record a poll that did not end the task, and give the lease back.
    pub async fn task_polled(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        progress: i64,
        attempts: i64,
        next_poll_ms: i64,
    ) -> sqlx::Result<()> {
        self.q(concat!("UPDATE tasks SET status = ?, progress = ?, attempts = ?, next_poll_ms = ?, lease_until_ms = 0, updated_at = ? \
             WHERE id = ? AND lease_owner = ? AND status IN ", open!()))
        .bind(status.to_owned())
        .bind(progress)
        .bind(attempts)
        .bind(next_poll_ms)
        .bind(now())
        .bind(id.to_owned())
        .bind(owner.to_owned())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// End task `id` and settle its hold, in one transaction. `Some(charged)`
    /// if this call ended it; `None` if it had already ended (nothing changes).
    pub async fn finish_task(&self, id: &str, end: &TaskEnd<'_>) -> sqlx::Result<Option<i64>> {
        let mut tx = self.pool().begin().await?;
        let ts = now();
        let ended = self
            .q(concat!("UPDATE tasks SET status = ?, progress = 100, results = ?, error = ?, lease_until_ms = 0, updated_at = ?, completed_at = ? \
                 WHERE id = ? AND status IN ", open!()))
            .bind(end.status)
            .bind(end.results.clone())
            .bind(end.error.clone())
            .bind(ts)
            .bind(ts)
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        if ended.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        // The hold goes with the task; if it is already gone the ledger
        // was settled elsewhere and must not move again.
        let charged = self
            .settle_hold_in(&mut tx, end.settlement)
            .await?
            .unwrap_or(0);
        self.q("UPDATE tasks SET charged = ? WHERE id = ?")
            .bind(charged)
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(charged))
    }
}

//! Request logs and the quota movements they record.

use sqlx::FromRow;

use super::{AnyQuery, Db, now};

/// One relayed call, as it is logged and charged.
#[derive(Debug, Clone, Default)]
pub struct ConsumeLog {
    /// `consume` for a billed call, `error` for a failed one, `topup` for
    /// money in.
    pub kind: &'static str,
    pub user_id: i64,
    pub token_id: i64,
    pub channel_id: i64,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub quota: i64,
    /// The price snapshot the charge was computed with, JSON.
    pub price: Option<String>,
    pub latency_ms: i64,
    pub first_token_ms: i64,
    pub is_stream: bool,
    pub status_code: i64,
    pub request_id: String,
    pub client_ip: String,
    pub content: String,
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct LogRow {
    pub id: i64,
    pub created_at: i64,
    pub kind: String,
    pub user_id: i64,
    pub token_id: i64,
    pub channel_id: i64,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub quota: i64,
    pub price: Option<String>,
    pub latency_ms: i64,
    pub first_token_ms: i64,
    pub is_stream: i64,
    pub status_code: i64,
    pub request_id: String,
    pub client_ip: String,
    pub content: String,
}

/// The start of an insert into `logs`, up to its `VALUES`.
macro_rules! insert_logs {
    () => {
        "INSERT INTO logs (created_at, kind, user_id, token_id, channel_id, model, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, quota, price, latency_ms, first_token_ms, is_stream, status_code, request_id, client_ip, content) VALUES"
    };
}

/// The placeholders of one row of [`insert_logs`], in [`bind_log`]'s order.
macro_rules! log_row {
    () => {
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    };
}

/// Bind one row of a `logs` insert, created at `ts`.
fn bind_log<'a>(query: AnyQuery<'a>, log: &ConsumeLog, ts: i64) -> AnyQuery<'a> {
    query
        .bind(ts)
        .bind(log.kind)
        .bind(log.user_id)
        .bind(log.token_id)
        .bind(log.channel_id)
        .bind(log.model.clone())
        .bind(log.prompt_tokens)
        .bind(log.completion_tokens)
        .bind(log.cached_tokens)
        .bind(log.cache_write_tokens)
        .bind(log.reasoning_tokens)
        .bind(log.quota)
        .bind(log.price.clone())
        .bind(log.latency_ms)
        .bind(log.first_token_ms)
        .bind(i64::from(log.is_stream))
        .bind(log.status_code)
        .bind(log.request_id.clone())
        .bind(log.client_ip.clone())
        .bind(log.content.clone())
}

impl Db {
    pub(super) async fn insert_log(
        &self,
        log: &ConsumeLog,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> sqlx::Result<()> {
        let query = self.q(concat!(insert_logs!(), " ", log_row!()));
        bind_log(query, log, now()).execute(&mut **tx).await?;
        Ok(())
    }

    /// Several log rows, in multi-row inserts.
    pub(super) async fn insert_logs(
        &self,
        logs: &[ConsumeLog],
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> sqlx::Result<()> {
        let ts = now();
        for chunk in super::runs(logs) {
            let rows = vec![log_row!(); chunk.len()].join(", ");
            let mut query = self.multi_row(format!("{} {rows}", insert_logs!()));
            for log in chunk {
                query = bind_log(query, log, ts);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The most recent log rows, newest first.
    pub async fn recent_logs(&self, limit: i64) -> sqlx::Result<Vec<LogRow>> {
        self.qa::<LogRow>("SELECT id, created_at, kind, user_id, token_id, channel_id, model, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, quota, price, latency_ms, first_token_ms, is_stream, status_code, request_id, client_ip, content FROM logs ORDER BY id DESC LIMIT ?")
            .bind(limit)
            .fetch_all(self.pool())
            .await
    }
}

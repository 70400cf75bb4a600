//! Money in (top-ups, redemption codes) and usage summaries.

use sqlx::FromRow;

use super::{Backend, ConsumeLog, Db, now};

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TopupRow {
    pub id: i64,
    pub user_id: i64,
    pub quota: i64,
    /// The amount paid, in the currency, as entered.
    pub amount: String,
    pub remark: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct RedemptionRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub quota: i64,
    pub status: i64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub redeemed_by: i64,
    pub redeemed_at: i64,
}

pub const REDEMPTION_UNUSED: i64 = 1;
pub const REDEMPTION_DISABLED: i64 = 2;
pub const REDEMPTION_USED: i64 = 3;

/// One day × model line of a usage summary.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct UsageLine {
    /// Unix time of the day's start (UTC).
    pub day: i64,
    pub model: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub quota: i64,
}

impl Db {
    /// Credit `quota` units to a user and record the top-up and its log row.
    /// `None` if the user does not exist.
    pub async fn recharge(
        &self,
        user_id: i64,
        quota: i64,
        amount: &str,
        remark: &str,
    ) -> sqlx::Result<Option<TopupRow>> {
        let mut tx = self.pool().begin().await?;
        let topup = self.credit(&mut tx, user_id, quota, amount, remark).await?;
        if topup.is_some() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(topup)
    }

    /// Within `tx`: add `quota` to the user's balance and record the top-up
    /// and its log row. `None` if the user does not exist.
    async fn credit(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        user_id: i64,
        quota: i64,
        amount: &str,
        remark: &str,
    ) -> sqlx::Result<Option<TopupRow>> {
        let ts = now();
        let updated = self
            .q("UPDATE users SET quota = quota + ?, updated_at = ? WHERE id = ?")
            .bind(quota)
            .bind(ts)
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let q = self
            .insert_query(
                "INSERT INTO topups (user_id, quota, amount, remark, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(user_id)
            .bind(quota)
            .bind(amount.to_owned())
            .bind(remark.to_owned())
            .bind(ts);
        let id = self.insert_id(q, &mut **tx).await?;
        self.insert_log(
            &ConsumeLog {
                kind: "topup",
                user_id,
                quota,
                content: remark.to_owned(),
                ..ConsumeLog::default()
            },
            tx,
        )
        .await?;
        Ok(Some(TopupRow {
            id,
            user_id,
            quota,
            amount: amount.to_owned(),
            remark: remark.to_owned(),
            created_at: ts,
        }))
    }

    pub async fn topups_of_user(&self, user_id: i64) -> sqlx::Result<Vec<TopupRow>> {
        self.qa::<TopupRow>(
            "SELECT id, user_id, quota, amount, remark, created_at FROM topups WHERE user_id = ? ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await
    }

    pub async fn create_redemptions(
        &self,
        name: &str,
        quota: i64,
        expires_at: Option<i64>,
        codes: &[String],
    ) -> sqlx::Result<Vec<RedemptionRow>> {
        let mut tx = self.pool().begin().await?;
        let ts = now();
        let mut rows = Vec::with_capacity(codes.len());
        for code in codes {
            let q = self
                .insert_query(
                    "INSERT INTO redemptions (code, name, quota, status, created_at, expires_at, redeemed_by, redeemed_at) VALUES (?, ?, ?, 1, ?, ?, 0, 0)",
                )
                .bind(code.clone())
                .bind(name.to_owned())
                .bind(quota)
                .bind(ts)
                .bind(expires_at);
            let id = self.insert_id(q, &mut *tx).await?;
            rows.push(RedemptionRow {
                id,
                code: code.clone(),
                name: name.to_owned(),
                quota,
                status: REDEMPTION_UNUSED,
                created_at: ts,
                expires_at,
                redeemed_by: 0,
                redeemed_at: 0,
            });
        }
        tx.commit().await?;
        Ok(rows)
    }

    pub async fn redemptions(&self) -> sqlx::Result<Vec<RedemptionRow>> {
        self.qa::<RedemptionRow>(
            "SELECT id, code, name, quota, status, created_at, expires_at, redeemed_by, redeemed_at FROM redemptions ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
    }

    /// Disable an unused code. `false` if there is no such unused code.
    pub async fn disable_redemption(&self, id: i64) -> sqlx::Result<bool> {
        let r = self
            .q("UPDATE redemptions SET status = ? WHERE id = ? AND status = ?")
            .bind(REDEMPTION_DISABLED)
            .bind(id)
            .bind(REDEMPTION_UNUSED)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Redeem `code` for `user_id`: `Some(quota)` credited, or `None` if the
    /// code does not exist, was used, disabled or has expired. The claim is
    /// one conditional update, so of two concurrent redemptions exactly one
    /// wins.
    pub async fn redeem(&self, code: &str, user_id: i64) -> sqlx::Result<Option<i64>> {
        let mut tx = self.pool().begin().await?;
        let ts = now();
        let claimed = self
            .q(
                "UPDATE redemptions SET status = ?, redeemed_by = ?, redeemed_at = ? \
                WHERE code = ? AND status = ? AND (expires_at IS NULL OR expires_at > ?)",
            )
            .bind(REDEMPTION_USED)
            .bind(user_id)
            .bind(ts)
            .bind(code.to_owned())
            .bind(REDEMPTION_UNUSED)
            .bind(ts)
            .execute(&mut *tx)
            .await?;
        if claimed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let (quota, name): (i64, String) = self
            .qa("SELECT quota, name FROM redemptions WHERE code = ?")
            .bind(code.to_owned())
            .fetch_one(&mut *tx)
            .await?;
        let remark = format!("redemption code {name}");
        if self
            .credit(&mut tx, user_id, quota, "", &remark)
            .await?
            .is_none()
        {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(quota))
    }

    /// Billed usage per UTC day and model since `since`, for a user or a token.
    pub async fn usage_summary(
        &self,
        user_id: Option<i64>,
        token_id: Option<i64>,
        since: i64,
    ) -> sqlx::Result<Vec<UsageLine>> {
        // SUM over BIGINT is NUMERIC in PostgreSQL and DECIMAL in MySQL:
        // cast back to a 64-bit integer in each dialect.
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT created_at - created_at % 86400 AS day, model, COUNT(*) AS requests, \
                 SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, SUM(quota) AS quota \
                 FROM logs WHERE kind = 'consume' AND (? = 0 OR user_id = ?) AND (? = 0 OR token_id = ?) AND created_at >= ? \
                 GROUP BY day, model ORDER BY day, model"
            }
            Backend::Postgres => {
                "SELECT created_at - created_at % 86400 AS day, model, COUNT(*) AS requests, \
                 SUM(prompt_tokens)::BIGINT AS prompt_tokens, SUM(completion_tokens)::BIGINT AS completion_tokens, SUM(quota)::BIGINT AS quota \
                 FROM logs WHERE kind = 'consume' AND (? = 0 OR user_id = ?) AND (? = 0 OR token_id = ?) AND created_at >= ? \
                 GROUP BY day, model ORDER BY day, model"
            }
            Backend::MySql => {
                "SELECT created_at - created_at % 86400 AS day, model, COUNT(*) AS requests, \
                 CAST(SUM(prompt_tokens) AS SIGNED) AS prompt_tokens, CAST(SUM(completion_tokens) AS SIGNED) AS completion_tokens, CAST(SUM(quota) AS SIGNED) AS quota \
                 FROM logs WHERE kind = 'consume' AND (? = 0 OR user_id = ?) AND (? = 0 OR token_id = ?) AND created_at >= ? \
                 GROUP BY day, model ORDER BY day, model"
            }
        };
        let user = user_id.unwrap_or(0);
        let token = token_id.unwrap_or(0);
        self.qa::<UsageLine>(sql)
            .bind(user)
            .bind(user)
            .bind(token)
            .bind(token)
            .bind(since)
            .fetch_all(self.pool())
            .await
    }
}

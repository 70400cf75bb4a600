//! API tokens: looked up by the SHA-256 digest of the key, never stored in
//! clear.

use sqlx::FromRow;

use super::{Db, now};

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TokenRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub key_hint: String,
    pub status: i64,
    pub remain_quota: i64,
    pub unlimited_quota: i64,
    pub used_quota: i64,
    pub models: String,
    pub allowed_ips: String,
    pub group_name: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub accessed_at: i64,
    /// Concurrent calls allowed (0: no limit).
    pub max_concurrency: i64,
    /// Requests per minute (0: no limit).
    pub rpm: i64,
    /// Tokens per minute (0: no limit).
    pub tpm: i64,
}

/// A token joined with what authentication needs of its user.
#[derive(Debug, Clone, FromRow)]
pub struct TokenWithUser {
    #[sqlx(flatten)]
    pub token: TokenRow,
    pub user_status: i64,
    pub user_group: String,
    pub user_quota: i64,
    pub user_role: String,
    pub user_max_concurrency: i64,
    pub user_rpm: i64,
    pub user_tpm: i64,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub user_id: i64,
    pub name: String,
    pub key_digest: String,
    pub key_hint: String,
    pub remain_quota: i64,
    pub unlimited_quota: bool,
    pub models: String,
    pub allowed_ips: String,
    pub group_name: String,
    pub expires_at: Option<i64>,
    pub max_concurrency: i64,
    pub rpm: i64,
    pub tpm: i64,
}

macro_rules! token_columns {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "user_id, ",
            $p,
            "name, ",
            $p,
            "key_hint, ",
            $p,
            "status, ",
            $p,
            "remain_quota, ",
            $p,
            "unlimited_quota, ",
            $p,
            "used_quota, ",
            $p,
            "models, ",
            $p,
            "allowed_ips, ",
            $p,
            "group_name, ",
            $p,
            "expires_at, ",
            $p,
            "created_at, ",
            $p,
            "accessed_at, ",
            $p,
            "max_concurrency, ",
            $p,
            "rpm, ",
            $p,
            "tpm"
        )
    };
}

impl Db {
    pub async fn create_token(&self, new: &NewToken) -> sqlx::Result<TokenRow> {
        let q = self
            .insert_query(
                "INSERT INTO tokens (user_id, name, key_digest, key_hint, status, remain_quota, unlimited_quota, used_quota, models, allowed_ips, group_name, expires_at, created_at, accessed_at, max_concurrency, rpm, tpm) \
                 VALUES (?, ?, ?, ?, 1, ?, ?, 0, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            )
            .bind(new.user_id)
            .bind(new.name.clone())
            .bind(new.key_digest.clone())
            .bind(new.key_hint.clone())
            .bind(new.remain_quota)
            .bind(i64::from(new.unlimited_quota))
            .bind(new.models.clone())
            .bind(new.allowed_ips.clone())
            .bind(new.group_name.clone())
            .bind(new.expires_at)
            .bind(now())
            .bind(new.max_concurrency)
            .bind(new.rpm)
            .bind(new.tpm);
        let id = self.insert_id(q, self.pool()).await?;
        self.token(id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    pub async fn token(&self, id: i64) -> sqlx::Result<Option<TokenRow>> {
        self.qa::<TokenRow>(concat!(
            "SELECT ",
            token_columns!(""),
            " FROM tokens WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
    }

    pub async fn tokens_of_user(&self, user_id: i64) -> sqlx::Result<Vec<TokenRow>> {
        self.qa::<TokenRow>(concat!(
            "SELECT ",
            token_columns!(""),
            " FROM tokens WHERE user_id = ? ORDER BY id"
        ))
        .bind(user_id)
        .fetch_all(self.pool())
        .await
    }

    pub async fn tokens(&self) -> sqlx::Result<Vec<TokenRow>> {
        self.qa::<TokenRow>(concat!(
            "SELECT ",
            token_columns!(""),
            " FROM tokens ORDER BY id"
        ))
        .fetch_all(self.pool())
        .await
    }

    /// The token whose key hashes to `digest`, with its user.
    pub async fn token_by_digest(&self, digest: &str) -> sqlx::Result<Option<TokenWithUser>> {
        self.qa::<TokenWithUser>(concat!(
            "SELECT ",
            token_columns!("t."),
            ", u.status AS user_status, u.group_name AS user_group, u.quota AS user_quota, u.role AS user_role, \
             u.max_concurrency AS user_max_concurrency, u.rpm AS user_rpm, u.tpm AS user_tpm \
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.key_digest = ?"
        ))
        .bind(digest.to_owned())
        .fetch_optional(self.pool())
        .await
    }

    /// Change a token's limits (0: no limit).
    pub async fn set_token_limits(
        &self,
        id: i64,
        max_concurrency: i64,
        rpm: i64,
        tpm: i64,
    ) -> sqlx::Result<bool> {
        let r = self
            .q("UPDATE tokens SET max_concurrency = ?, rpm = ?, tpm = ? WHERE id = ?")
            .bind(max_concurrency)
            .bind(rpm)
            .bind(tpm)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn set_token_status(&self, id: i64, status: i64) -> sqlx::Result<bool> {
        let r = self
            .q("UPDATE tokens SET status = ? WHERE id = ?")
            .bind(status)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn delete_token(&self, id: i64) -> sqlx::Result<bool> {
        let r = self
            .q("DELETE FROM tokens WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

//! Users: accounts that own tokens and hold quota.

use sqlx::FromRow;

use super::{Db, now};

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub status: i64,
    pub group_name: String,
    pub quota: i64,
    pub used_quota: i64,
    pub request_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub max_concurrency: i64,
    pub rpm: i64,
    pub tpm: i64,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub role: String,
    pub group_name: String,
    pub quota: i64,
}

macro_rules! user_columns {
    () => {
        "id, username, display_name, role, status, group_name, quota, used_quota, request_count, created_at, updated_at, max_concurrency, rpm, tpm"
    };
}

impl Db {
    pub async fn create_user(&self, new: &NewUser) -> sqlx::Result<UserRow> {
        let ts = now();
        let q = self
            .insert_query(
                "INSERT INTO users (username, display_name, password_hash, role, status, group_name, quota, used_quota, request_count, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, 1, ?, ?, 0, 0, ?, ?)",
            )
            .bind(new.username.clone())
            .bind(new.display_name.clone())
            .bind(new.password_hash.clone())
            .bind(new.role.clone())
            .bind(new.group_name.clone())
            .bind(new.quota)
            .bind(ts)
            .bind(ts);
        let id = self.insert_id(q, self.pool()).await?;
        self.user(id).await?.ok_or_else(|| sqlx::Error::RowNotFound)
    }

    pub async fn user(&self, id: i64) -> sqlx::Result<Option<UserRow>> {
        self.qa::<UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
    }

    pub async fn users(&self) -> sqlx::Result<Vec<UserRow>> {
        self.qa::<UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY id"
        ))
        .fetch_all(self.pool())
        .await
    }

    /// Change a user's status and limits (0: no limit).
    pub async fn update_user_limits(
        &self,
        id: i64,
        status: i64,
        max_concurrency: i64,
        rpm: i64,
        tpm: i64,
    ) -> sqlx::Result<bool> {
        let r = self
            .q("UPDATE users SET status = ?, max_concurrency = ?, rpm = ?, tpm = ?, updated_at = ? WHERE id = ?")
            .bind(status)
            .bind(max_concurrency)
            .bind(rpm)
            .bind(tpm)
            .bind(now())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

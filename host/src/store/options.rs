//! The `options` table: small named settings shared by every instance.

use super::Db;

impl Db {
    pub async fn option(&self, name: &str) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> = self
            .qa("SELECT value FROM options WHERE name = ?")
            .bind(name.to_owned())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Set `name` only if it has no value yet. Returns whether this call set
    /// it (so exactly one of several racing instances wins).
    pub async fn set_option_if_absent(&self, name: &str, value: &str) -> sqlx::Result<bool> {
        let result = self
            .q("INSERT INTO options (name, value) VALUES (?, ?)")
            .bind(name.to_owned())
            .bind(value.to_owned())
            .execute(self.pool())
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

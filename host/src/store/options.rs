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

    /// Set `name` to `value`, creating it if needed.
    pub async fn set_option(&self, name: &str, value: &str) -> sqlx::Result<()> {
        let sql = match self.backend() {
            super::Backend::MySql => {
                "INSERT INTO options (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)"
            }
            _ => {
                "INSERT INTO options (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
            }
        };
        self.q(sql)
            .bind(name.to_owned())
            .bind(value.to_owned())
            .execute(self.pool())
            .await?;
        Ok(())
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

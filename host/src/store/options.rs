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

    /// Store a document shared by every instance, with a fresh version stamp
    /// so the others notice (see [`Db::versioned_option_if_changed`]).
    pub async fn set_versioned_option(&self, name: &str, value: &str) -> sqlx::Result<String> {
        let version = uuid::Uuid::new_v4().to_string();
        self.set_option(name, value).await?;
        self.set_option(&format!("{name}.version"), &version)
            .await?;
        Ok(version)
    }

    /// The document `name` and its version, if its version differs from
    /// `known` (`None` also when it was never stored).
    pub async fn versioned_option_if_changed(
        &self,
        name: &str,
        known: &str,
    ) -> sqlx::Result<Option<(String, String)>> {
        let version = self
            .option(&format!("{name}.version"))
            .await?
            .unwrap_or_default();
        if version == known {
            return Ok(None);
        }
        Ok(self.option(name).await?.map(|v| (version, v)))
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

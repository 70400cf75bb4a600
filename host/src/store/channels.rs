//! Channels (upstream endpoints with their credentials) and the abilities
//! derived from them (group × model → channel).

use sqlx::FromRow;

use super::{Db, now};

#[derive(Debug, Clone, FromRow)]
pub struct ChannelRow {
    pub id: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub name: String,
    pub base_url: String,
    /// Encrypted; see `crypto::SecretBox`.
    pub secret_enc: String,
    pub models: String,
    pub model_mapping: String,
    pub group_names: String,
    pub priority: i64,
    pub weight: i64,
    pub max_concurrency: i64,
    pub status: i64,
    pub options: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Every editable field of a channel, as stored.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub kind: String,
    pub name: String,
    pub base_url: String,
    pub secret_enc: String,
    pub models: Vec<String>,
    pub model_mapping: String,
    pub groups: Vec<String>,
    pub priority: i64,
    pub weight: i64,
    pub max_concurrency: i64,
    pub status: i64,
    pub options: String,
}

impl Db {
    pub async fn create_channel(&self, new: &NewChannel) -> sqlx::Result<i64> {
        let mut tx = self.pool().begin().await?;
        let ts = now();
        let q = self
            .insert_query(
                "INSERT INTO channels (type, name, base_url, secret_enc, models, model_mapping, group_names, priority, weight, max_concurrency, status, options, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(new.kind.clone())
            .bind(new.name.clone())
            .bind(new.base_url.clone())
            .bind(new.secret_enc.clone())
            .bind(new.models.join(","))
            .bind(new.model_mapping.clone())
            .bind(new.groups.join(","))
            .bind(new.priority)
            .bind(new.weight)
            .bind(new.max_concurrency)
            .bind(new.status)
            .bind(new.options.clone())
            .bind(ts)
            .bind(ts);
        let id = self.insert_id(q, &mut *tx).await?;
        self.write_abilities(&mut tx, id, new).await?;
        self.bump_channels_version(&mut tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn update_channel(&self, id: i64, new: &NewChannel) -> sqlx::Result<bool> {
        let mut tx = self.pool().begin().await?;
        let r = self
            .q("UPDATE channels SET type = ?, name = ?, base_url = ?, secret_enc = ?, models = ?, model_mapping = ?, group_names = ?, priority = ?, weight = ?, max_concurrency = ?, status = ?, options = ?, updated_at = ? WHERE id = ?")
            .bind(new.kind.clone())
            .bind(new.name.clone())
            .bind(new.base_url.clone())
            .bind(new.secret_enc.clone())
            .bind(new.models.join(","))
            .bind(new.model_mapping.clone())
            .bind(new.groups.join(","))
            .bind(new.priority)
            .bind(new.weight)
            .bind(new.max_concurrency)
            .bind(new.status)
            .bind(new.options.clone())
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.q("DELETE FROM abilities WHERE channel_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.write_abilities(&mut tx, id, new).await?;
        self.bump_channels_version(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn delete_channel(&self, id: i64) -> sqlx::Result<bool> {
        let mut tx = self.pool().begin().await?;
        self.q("DELETE FROM abilities WHERE channel_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let r = self
            .q("DELETE FROM channels WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.bump_channels_version(&mut tx).await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn channel(&self, id: i64) -> sqlx::Result<Option<ChannelRow>> {
        self.qa::<ChannelRow>(
            "SELECT id, type, name, base_url, secret_enc, models, model_mapping, group_names, priority, weight, max_concurrency, status, options, created_at, updated_at FROM channels WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
    }

    pub async fn channels(&self) -> sqlx::Result<Vec<ChannelRow>> {
        self.qa::<ChannelRow>(
            "SELECT id, type, name, base_url, secret_enc, models, model_mapping, group_names, priority, weight, max_concurrency, status, options, created_at, updated_at FROM channels ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
    }

    /// A stamp replaced by every channel change: an instance that sees it
    /// differ from the one it loaded with reloads its channels.
    pub async fn channels_version(&self) -> sqlx::Result<String> {
        let v: Option<(String,)> = self
            .qa("SELECT value FROM options WHERE name = 'channels_version'")
            .fetch_optional(self.pool())
            .await?;
        Ok(v.map(|(s,)| s).unwrap_or_default())
    }

    async fn write_abilities(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        channel_id: i64,
        new: &NewChannel,
    ) -> sqlx::Result<()> {
        let mut seen = std::collections::HashSet::new();
        for group in &new.groups {
            for model in &new.models {
                if !seen.insert((group.clone(), model.clone())) {
                    continue;
                }
                self.q("INSERT INTO abilities (group_name, model, channel_id, priority, weight, enabled) VALUES (?, ?, ?, ?, ?, ?)")
                    .bind(group.clone())
                    .bind(model.clone())
                    .bind(channel_id)
                    .bind(new.priority)
                    .bind(new.weight)
                    .bind(i64::from(new.status == 1))
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    async fn bump_channels_version(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> sqlx::Result<()> {
        // A fresh random stamp, not a counter: two concurrent changes must
        // never leave the same value another instance already saw.
        self.q("UPDATE options SET value = ? WHERE name = 'channels_version'")
            .bind(uuid::Uuid::new_v4().to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

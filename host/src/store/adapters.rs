//! Uploaded adapter components, shared by every instance.

use super::{Backend, Db, now};

const VERSION_KEY: &str = "adapters";

impl Db {
    /// Store (or replace) an uploaded adapter and tell the other instances.
    pub async fn put_adapter(&self, name: &str, hash: &str, wasm: &[u8]) -> sqlx::Result<()> {
        let sql = match self.backend() {
            Backend::MySql => {
                "INSERT INTO adapters (name, hash, wasm, uploaded_at) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE hash = VALUES(hash), wasm = VALUES(wasm), uploaded_at = VALUES(uploaded_at)"
            }
            _ => {
                "INSERT INTO adapters (name, hash, wasm, uploaded_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, wasm = excluded.wasm, uploaded_at = excluded.uploaded_at"
            }
        };
        self.q(sql)
            .bind(name.to_owned())
            .bind(hash.to_owned())
            .bind(wasm.to_vec())
            .bind(now())
            .execute(self.pool())
            .await?;
        self.set_versioned_option(VERSION_KEY, "").await?;
        Ok(())
    }

    pub async fn delete_adapter(&self, name: &str) -> sqlx::Result<bool> {
        let r = self
            .q("DELETE FROM adapters WHERE name = ?")
            .bind(name.to_owned())
            .execute(self.pool())
            .await?;
        self.set_versioned_option(VERSION_KEY, "").await?;
        Ok(r.rows_affected() > 0)
    }

    /// (name, hash) of every uploaded adapter, if the set changed since
    /// `known` (with the new version stamp).
    pub async fn adapter_hashes_if_changed(
        &self,
        known: &str,
    ) -> sqlx::Result<Option<(String, Vec<(String, String)>)>> {
        let Some((version, _)) = self.versioned_option_if_changed(VERSION_KEY, known).await? else {
            return Ok(None);
        };
        let rows: Vec<(String, String)> = self
            .qa("SELECT name, hash FROM adapters ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        Ok(Some((version, rows)))
    }

    pub async fn adapter_wasm(&self, name: &str) -> sqlx::Result<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>,)> = self
            .qa("SELECT wasm FROM adapters WHERE name = ?")
            .bind(name.to_owned())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|(w,)| w))
    }
}

//! Where adapters come from, and how a change reaches the registry.
//!
//! A name can be provided by three sources; the highest one present is
//! served: an adapter **uploaded** through the admin API (stored in the
//! database, so every instance serves it), one dropped in the watched
//! **adapters directory**, or the **built-in** one. Every new version goes
//! through the same pipeline — header check, compile off the async threads,
//! smoke call of `info()`, then an atomic swap — and a file that fails any
//! step never replaces the working version: the error is logged and listed
//! by `GET /admin/adapters`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{LoadedAdapter, Runtime};
use crate::store::Db;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Builtin,
    Directory,
    Uploaded,
}

/// A version that was refused.
#[derive(Debug, Clone, Serialize)]
pub struct LoadError {
    /// The file, or `upload:<name>`.
    pub origin: String,
    pub message: String,
    pub at: i64,
}

#[derive(Default)]
struct Layers {
    builtin: Option<Arc<LoadedAdapter>>,
    directory: Option<Arc<LoadedAdapter>>,
    uploaded: Option<Arc<LoadedAdapter>>,
}

#[derive(Default)]
pub(super) struct Sources {
    layers: Mutex<HashMap<String, Layers>>,
    /// Directory file → (adapter name, content hash) it provided.
    files: Mutex<HashMap<PathBuf, (String, String)>>,
    /// Stamp of the uploaded set this instance has loaded.
    uploaded_version: Mutex<String>,
    errors: Mutex<VecDeque<LoadError>>,
}

const MAX_ERRORS: usize = 20;

impl Sources {
    pub(super) fn set(&self, name: &str, source: Source, adapter: Option<Arc<LoadedAdapter>>) {
        if let Ok(mut layers) = self.layers.lock() {
            let l = layers.entry(name.to_owned()).or_default();
            match source {
                Source::Builtin => l.builtin = adapter,
                Source::Directory => l.directory = adapter,
                Source::Uploaded => l.uploaded = adapter,
            }
        }
    }

    pub(super) fn effective(&self, name: &str) -> Option<Arc<LoadedAdapter>> {
        let layers = self.layers.lock().ok()?;
        let l = layers.get(name)?;
        l.uploaded
            .clone()
            .or_else(|| l.directory.clone())
            .or_else(|| l.builtin.clone())
    }

    fn layer(&self, name: &str, source: Source) -> Option<Arc<LoadedAdapter>> {
        let layers = self.layers.lock().ok()?;
        let l = layers.get(name)?;
        match source {
            Source::Builtin => l.builtin.clone(),
            Source::Directory => l.directory.clone(),
            Source::Uploaded => l.uploaded.clone(),
        }
    }

    fn uploaded_names(&self) -> Vec<String> {
        self.layers
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(_, v)| v.uploaded.is_some())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn record_error(&self, origin: String, message: String) {
        tracing::error!(%origin, error = %message, "adapter refused; the working version stays");
        if let Ok(mut e) = self.errors.lock() {
            e.push_front(LoadError {
                origin,
                message,
                at: crate::store::now(),
            });
            e.truncate(MAX_ERRORS);
        }
    }

    pub(super) fn errors(&self) -> Vec<LoadError> {
        self.errors
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Refuse what is not a WebAssembly component before spending a compile on
/// it (precompiled native code is never accepted).
pub(super) fn check_header(bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(anyhow!("not a WebAssembly binary (no \\0asm header)"));
    }
    // Bytes 4..8: version 0x0d and layer 1 for components; a core module is
    // version 1, layer 0.
    if bytes[4..8] != [0x0d, 0x00, 0x01, 0x00] {
        return Err(anyhow!(
            "a WebAssembly core module, not a component: build it for wasm32-wasip2 with transit-adapter-sdk"
        ));
    }
    Ok(())
}

pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Runtime {
    /// Compile and install `bytes` from `source`; on failure the error is
    /// recorded and the working version stays.
    pub async fn load(
        &self,
        bytes: &[u8],
        source: Source,
        origin: &str,
    ) -> anyhow::Result<Arc<LoadedAdapter>> {
        match self.compile(bytes, source).await {
            Ok(adapter) => Ok(self.install(adapter)),
            Err(e) => {
                self.sources
                    .record_error(origin.to_owned(), format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// Bring the directory layer in line with the `*.wasm` files in `dir`.
    pub async fn scan_dir(&self, dir: &Path) {
        let mut present = HashMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the adapters directory");
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("wasm") || !path.is_file() {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            present.insert(path, bytes);
        }
        let known: HashMap<PathBuf, (String, String)> = self
            .sources
            .files
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        for (path, bytes) in &present {
            let hash = content_hash(bytes);
            if known.get(path).is_some_and(|(_, h)| *h == hash) {
                continue;
            }
            let origin = path.display().to_string();
            if let Ok(adapter) = self.load(bytes, Source::Directory, &origin).await
                && let Ok(mut files) = self.sources.files.lock()
            {
                if let Some((old_name, _)) = files.get(path)
                    && *old_name != adapter.info.name
                {
                    // The file now provides another adapter.
                    let old = old_name.clone();
                    files.remove(path);
                    drop(files);
                    self.withdraw_file_name(&old);
                    if let Ok(mut files) = self.sources.files.lock() {
                        files.insert(path.clone(), (adapter.info.name.clone(), hash));
                    }
                    continue;
                }
                files.insert(path.clone(), (adapter.info.name.clone(), hash));
            }
        }
        for (path, (name, _)) in known {
            if !present.contains_key(&path) {
                if let Ok(mut files) = self.sources.files.lock() {
                    files.remove(&path);
                }
                self.withdraw_file_name(&name);
            }
        }
    }

    /// Remove `name` from the directory layer unless another file provides it.
    fn withdraw_file_name(&self, name: &str) {
        let still = self
            .sources
            .files
            .lock()
            .map(|f| f.values().any(|(n, _)| n == name))
            .unwrap_or(false);
        if !still {
            self.remove(name, Source::Directory);
        }
    }

    /// Watch `dir` and rescan it (debounced) whenever it changes.
    pub fn watch_dir(
        self: &Arc<Self>,
        dir: PathBuf,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    // A full channel means a rescan is already due.
                    let _ = tx.try_send(());
                }
            })?;
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        let runtime = Arc::downgrade(self);
        Ok(tokio::spawn(async move {
            let _watcher = watcher;
            while rx.recv().await.is_some() {
                // Let a burst of events (a file being written) settle.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                let Some(runtime) = runtime.upgrade() else {
                    return;
                };
                runtime.scan_dir(&dir).await;
            }
        }))
    }

    /// Bring the uploaded layer in line with the database.
    pub async fn sync_uploaded(&self, db: &Db) -> anyhow::Result<()> {
        let known = self
            .sources
            .uploaded_version
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let Some((version, rows)) = db.adapter_hashes_if_changed(&known).await? else {
            return Ok(());
        };
        for (name, hash) in &rows {
            if self
                .sources
                .layer(name, Source::Uploaded)
                .is_some_and(|a| a.hash == *hash)
            {
                continue;
            }
            if let Some(bytes) = db.adapter_wasm(name).await? {
                // An upload that does not load here stays recorded as an error.
                let _ = self
                    .load(&bytes, Source::Uploaded, &format!("upload:{name}"))
                    .await;
            }
        }
        for name in self.sources.uploaded_names() {
            if !rows.iter().any(|(n, _)| *n == name) {
                self.remove(&name, Source::Uploaded);
            }
        }
        if let Ok(mut v) = self.sources.uploaded_version.lock() {
            *v = version;
        }
        Ok(())
    }

    /// Follow uploads made through other instances.
    pub fn spawn_upload_sync(
        self: &Arc<Self>,
        db: Db,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let runtime = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(runtime) = runtime.upgrade() else {
                    return;
                };
                if let Err(e) = runtime.sync_uploaded(&db).await {
                    tracing::warn!(error = %e, "checking for uploaded adapters failed");
                }
            }
        })
    }

    /// The uploaded version of `name`, if any.
    pub fn uploaded(&self, name: &str) -> Option<Arc<LoadedAdapter>> {
        self.sources.layer(name, Source::Uploaded)
    }
}

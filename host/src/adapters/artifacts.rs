//! Compiled adapters on disk, mapped into memory rather than read.
//!
//! An adapter is compiled once per component and engine configuration into a
//! `.cwasm` file named by both (`<sha256 of the component>-<engine>.cwasm`).
//! Loading maps that file: the machine code stays file-backed, so only the
//! pages an adapter actually runs become resident, and pages the kernel
//! drops come back from the file. (Read into memory instead, every loaded
//! adapter's code would count in full against the process, about 1 MB each,
//! whether or not any channel uses it.) A restart with the same data
//! directory loads its adapters without compiling them.
//!
//! Files are written to a temporary name and renamed into place, so a
//! mapped file is never written to and an interrupted write is never seen
//! under its final name. A file the engine refuses (another wasmtime, other
//! settings, damage) is compiled again and replaced. Files unused for
//! [`UNUSED_FOR`] are removed when the runtime starts.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::AdapterInfo;

/// Artifacts not loaded for this long are removed at start.
const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// A temporary file this old was left by a process that died mid-write.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);
const EXTENSION: &str = "cwasm";
const INFO_EXTENSION: &str = "info";

/// The artifact directory of one engine configuration.
#[derive(Clone, Debug)]
pub(super) struct Artifacts {
    dir: PathBuf,
    /// Names the engine's configuration in file names: artifacts of another
    /// configuration are never even tried.
    engine: String,
}

impl Artifacts {
    /// The directory `dir` (created if missing) for artifacts of `engine`,
    /// swept of artifacts unused for [`UNUSED_FOR`] and abandoned writes.
    pub(super) fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating the adapter cache {}", dir.display()))?;
        // Kept absolute (the data directory is usually given relative to
        // where Transit started), so logs name artifacts unambiguously.
        let dir = &std::path::absolute(dir)
            .with_context(|| format!("resolving the adapter cache {}", dir.display()))?;
        let mut hasher = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let artifacts = Self {
            dir: dir.to_owned(),
            engine: hex::encode(&hasher.0.finalize()[..8]),
        };
        artifacts.sweep();
        Ok(artifacts)
    }

    /// `bytes` (whose SHA-256 in hex is `digest`) compiled for `engine`:
    /// mapped from its artifact, which `compiler` (configured like `engine`)
    /// makes first if there is none. `bytes` are only read to compile.
    pub(super) fn load(
        &self,
        engine: &Engine,
        compiler: impl FnOnce() -> anyhow::Result<Engine>,
        bytes: &[u8],
        digest: &str,
    ) -> anyhow::Result<Component> {
        let path = self.path_for(digest);
        if path.exists() {
            match map(engine, &path) {
                Ok(component) => {
                    touch(&path);
                    return Ok(component);
                }
                // The artifact is sound; the engine's instance pool is too
                // small for the component, and compiling it again would not
                // change that.
                Err(e) if exceeds_pool(&e) => return Err(e),
                Err(e) => tracing::warn!(
                    artifact = %path.display(),
                    error = format!("{e:#}"),
                    "a compiled adapter could not be loaded; compiling it again"
                ),
            }
        }
        let compiled = compiler()?
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
            .context("compiling the component")?;
        // An artifact that cannot be written (a full disk) or mapped (a
        // `noexec` mount) is loaded from memory: the adapter still serves.
        let mapped = self
            .write(&path, &compiled)
            .and_then(|()| map(engine, &path));
        match mapped {
            Ok(component) => Ok(component),
            Err(e) if exceeds_pool(&e) => Err(e),
            Err(e) => {
                tracing::warn!(
                    artifact = %path.display(),
                    error = format!("{e:#}"),
                    "a compiled adapter could not be stored and mapped; loading it into memory"
                );
                // SAFETY: `compiled` was produced just now by an engine
                // configured like `engine`, and is owned here, unchanged.
                #[allow(unsafe_code)]
                unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)
            }
        }
    }

    fn path_for(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.{EXTENSION}", self.engine))
    }

    /// The engine configuration's name in file names.
    #[cfg(test)]
    pub(super) fn engine_tag(&self) -> &str {
        &self.engine
    }

    fn info_path_for(&self, digest: &str) -> PathBuf {
        self.path_for(digest).with_extension(INFO_EXTENSION)
    }

    /// What the component of `digest` answered to `info()` when it was
    /// first loaded, if that was kept and reads back whole.
    pub(super) fn info(&self, digest: &str) -> Option<AdapterInfo> {
        let path = self.info_path_for(digest);
        let kept: Value = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
        let text = |field: &str| kept.get(field)?.as_str().map(str::to_owned);
        let endpoints = kept
            .get("endpoints")?
            .as_array()?
            .iter()
            .map(|e| e.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?;
        let info = AdapterInfo {
            name: text("name").filter(|n| !n.is_empty())?,
            version: text("version")?,
            endpoints,
            description: text("description")?,
        };
        touch(&path);
        Some(info)
    }

    /// Keep what the component of `digest` answered to `info()`. Best
    /// effort: without the file, the next start asks the adapter again.
    pub(super) fn keep_info(&self, digest: &str, info: &AdapterInfo) {
        let kept = json!({
            "name": info.name,
            "version": info.version,
            "endpoints": info.endpoints,
            "description": info.description,
        });
        let path = self.info_path_for(digest);
        if let Err(e) = self.write(&path, kept.to_string().as_bytes()) {
            tracing::debug!(
                error = format!("{e:#}"),
                "cannot keep an adapter's info beside its artifact"
            );
        }
    }

    /// Write `compiled` under `path` without ever exposing a partial file.
    fn write(&self, path: &Path, compiled: &[u8]) -> anyhow::Result<()> {
        let tmp = self.dir.join(format!(
            ".{}.{}-{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("artifact"),
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(compiled)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.with_context(|| format!("writing {}", path.display()))
    }

    /// Remove artifacts unused for [`UNUSED_FOR`] and temporary files left
    /// by interrupted writes. Best effort: a file that cannot be removed
    /// stays.
    fn sweep(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let limit = if name.starts_with('.') && name.ends_with(".tmp") {
                ABANDONED_AFTER
            } else if path
                .extension()
                .is_some_and(|e| e == EXTENSION || e == INFO_EXTENSION)
            {
                UNUSED_FOR
            } else {
                continue;
            };
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok());
            if age.is_some_and(|age| age > limit)
                && let Err(e) = fs::remove_file(&path)
            {
                tracing::debug!(artifact = %path.display(), error = %e, "cannot remove an old compiled adapter");
            }
        }
    }
}

/// Map the artifact at `path`.
fn map(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: wasmtime runs the machine code in this file as it finds it.
    // The file was written by `Artifacts::write` from the output of an
    // engine configured like `engine` (the engine checks that again when
    // it loads), in a directory that belongs to Transit (the operator keeps
    // others from writing there, as for the database and the secret key).
    // Artifacts are only ever replaced by a rename, never written in place,
    // so the mapped file does not change while it is in use.
    #[allow(unsafe_code)]
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
}

/// Whether the engine refused a component because its instance pool
/// reserves less per instance than the component needs (memories, tables).
pub(super) fn exceeds_pool(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("in the pooling allocator")
}

/// Mark the artifact at `path` as used now, for the sweep.
fn touch(path: &Path) {
    if let Ok(file) = fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// A [`Hasher`] over SHA-256: the engine's configuration hash is the same
/// in every process and every Rust release, unlike `DefaultHasher`'s.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Unused: the digest is read with `finalize`.
    fn finish(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    /// The smallest component there is: the header of an empty one.
    fn component() -> Vec<u8> {
        b"\0asm\x0d\0\x01\0".to_vec()
    }

    /// An empty artifact directory, an engine, and a component to load.
    fn fresh() -> (tempfile::TempDir, Engine, Artifacts, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let artifacts = Artifacts::open(dir.path(), &engine).unwrap();
        (dir, engine, artifacts, component())
    }

    /// Load `bytes`; whether the compiler was asked for.
    fn load_compiles(artifacts: &Artifacts, engine: &Engine, bytes: &[u8]) -> bool {
        let mut compiled = false;
        artifacts
            .load(
                engine,
                || {
                    compiled = true;
                    Ok(engine.clone())
                },
                bytes,
                &digest(bytes),
            )
            .unwrap();
        compiled
    }

    fn digest(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_component_is_compiled_once_and_then_mapped() {
        let (dir, engine, artifacts, bytes) = fresh();
        let compiled = (0..2)
            .filter(|_| load_compiles(&artifacts, &engine, &bytes))
            .count();
        assert_eq!(compiled, 1);
        let files: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one artifact, no temporary file left");
    }

    #[test]
    fn a_damaged_artifact_is_compiled_again_and_replaced() {
        let (_dir, engine, artifacts, bytes) = fresh();
        let path = artifacts.path_for(&digest(&bytes));
        fs::write(&path, b"not an artifact").unwrap();
        assert!(load_compiles(&artifacts, &engine, &bytes));
        assert!(fs::metadata(&path).unwrap().len() > 100);
    }

    #[test]
    fn an_artifact_that_cannot_be_stored_is_loaded_from_memory() {
        let (dir, engine, artifacts, bytes) = fresh();
        // A directory where the artifact should go: it can be neither
        // mapped nor replaced.
        fs::create_dir(artifacts.path_for(&digest(&bytes))).unwrap();
        load_compiles(&artifacts, &engine, &bytes);
        let files: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "no temporary file left");
    }

    #[test]
    fn the_sweep_removes_unused_artifacts_and_abandoned_writes_only() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - UNUSED_FOR - Duration::from_secs(60);
        let aged = |name: &str, when: SystemTime| {
            let path = dir.path().join(name);
            fs::write(&path, b"x").unwrap();
            fs::File::options()
                .append(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        aged("old-e.cwasm", old);
        aged("old-e.info", old);
        aged("fresh-e.cwasm", SystemTime::now());
        aged("fresh-e.info", SystemTime::now());
        aged(".old-e.cwasm.1-a.tmp", old);
        aged("notes.txt", old);
        Artifacts::open(dir.path(), &engine()).unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["fresh-e.cwasm", "fresh-e.info", "notes.txt"]);
    }
}

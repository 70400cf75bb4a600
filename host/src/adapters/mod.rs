//! The adapter runtime: one wasmtime [`Engine`] for the process, adapters
//! compiled once into pre-linked instances held in a registry, and a fresh
//! [`wasmtime::Store`] for every request or stream.
//!
//! Containment: every call into a guest runs under an epoch deadline (a
//! ticker thread advances the epoch; a call over budget traps) and a memory
//! cap (a guest whose allocation fails aborts, which is a trap). A trap fails
//! only the request that hit it; the store is dropped with it.

mod builtin;
mod guest;
mod health;
pub mod kit;
pub mod scaffold;
mod sources;
mod v0_1_0;
mod v0_2_0;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use crate::config::AdapterConfig;

pub use guest::{GuestFailure, Instance, StreamTranslator};
pub use v0_2_0::{
    AdapterError, AdapterInfo, Call, Channel as ChannelInfo, ChunkBatch, Event, Framing, Submitted,
    TaskState, TaskStatus, Translated, UpstreamRequest, UpstreamResponse, Usage,
};

/// How long one epoch tick lasts. Deadlines are whole ticks.
const TICK: Duration = Duration::from_millis(5);

/// WIT versions of `transit:adapter` this host serves.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.2.0", "0.1.0"];

pub use self::health::Health;
pub use self::sources::{LoadError, Source};

/// A compiled adapter, ready to instantiate.
pub struct LoadedAdapter {
    pub info: AdapterInfo,
    pub wit_version: &'static str,
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    pub loaded_at: i64,
    pub source: Source,
    pre: guest::Pre,
    /// Requests and streams currently holding an instance of this version.
    in_flight: AtomicUsize,
    /// The crash-loop guard.
    pub health: Health,
}

impl LoadedAdapter {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The process-wide adapter runtime.
pub struct Runtime {
    engine: Engine,
    /// The compiled-artifact cache, shared with the engines that compile.
    cache: Option<wasmtime::Cache>,
    linker: Linker<guest::GuestState>,
    registry: ArcSwap<HashMap<String, Arc<LoadedAdapter>>>,
    sources: sources::Sources,
    limits: AdapterConfig,
    deadline_ticks: u64,
    stop_ticker: Arc<AtomicBool>,
    /// One permit per instance the pool can hold (less a few kept for load
    /// checks): a call waits for a free instance instead of failing when
    /// every one is in use.
    instances: Arc<tokio::sync::Semaphore>,
}

/// Pool slots kept for the smoke call that checks a newly loaded adapter.
const RESERVED_INSTANCES: u32 = 4;

/// How long a call waits for a free adapter instance before it is refused.
const INSTANCE_WAIT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("adapters", &self.registry.load().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Build the engine and load the built-in adapters.
    pub async fn new(
        limits: &AdapterConfig,
        cache_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let cache = cache_dir.map(artifact_cache).transpose()?;
        let engine = build_engine(limits, cache.clone(), Allocation::Pooled)?;
        let mut linker = Linker::new(&engine);
        guest::add_to_linker(&mut linker)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), stop_ticker.clone())?;
        let deadline_ticks = (limits.call_timeout_ms / TICK.as_millis() as u64).max(1);
        let runtime = Self {
            engine,
            cache,
            linker,
            registry: ArcSwap::from_pointee(HashMap::new()),
            sources: sources::Sources::default(),
            limits: limits.clone(),
            deadline_ticks,
            stop_ticker,
            instances: Arc::new(tokio::sync::Semaphore::new(
                limits
                    .max_instances
                    .max(1)
                    .saturating_sub(RESERVED_INSTANCES)
                    .max(1) as usize,
            )),
        };
        for (file, bytes) in builtin::ADAPTERS {
            let adapter = runtime
                .compile(bytes, Source::Builtin)
                .await
                .with_context(|| format!("loading built-in adapter {file}"))?;
            runtime.install(adapter);
        }
        Ok(runtime)
    }

    /// Validate and compile a component (on a blocking thread: it takes
    /// tens of milliseconds or more), then smoke-call its `info()`.
    ///
    /// With an artifact cache, the component is compiled by an engine of
    /// its own, configured alike: an engine keeps its compiler's working
    /// buffers for good once it has compiled (about 10 MB for the built-in
    /// adapters), and this one drops them with itself. The serving engine
    /// then loads the artifact from the cache.
    pub async fn compile(&self, bytes: &[u8], source: Source) -> anyhow::Result<LoadedAdapter> {
        sources::check_header(bytes)?;
        let engine = self.engine.clone();
        let (cache, limits) = (self.cache.clone(), self.limits.clone());
        let owned = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || {
            if let Some(cache) = cache {
                let compiler = build_engine(&limits, Some(cache), Allocation::OnDemand)?;
                Component::new(&compiler, &owned)?;
                drop(compiler);
                crate::heap::trim();
            }
            Component::new(&engine, &owned).map_err(anyhow::Error::from)
        })
        .await
        .context("the compiler thread panicked")?
        .context("compiling the component")?;
        let wit_version = wit_version_of(&component, &self.engine)?;
        let pre = guest::Pre::new(&self.linker, &component, wit_version)?;
        let mut instance =
            Instance::new(&self.engine, &pre, &self.limits, self.deadline_ticks).await?;
        let info = instance
            .info()
            .await
            .map_err(|e| anyhow!("the adapter's info() failed: {e}"))?;
        if info.name.is_empty() {
            return Err(anyhow!("the adapter's info() returned an empty name"));
        }
        Ok(LoadedAdapter {
            info,
            wit_version,
            hash: hex::encode(Sha256::digest(bytes)),
            loaded_at: crate::store::now(),
            source,
            pre,
            in_flight: AtomicUsize::new(0),
            health: Health::default(),
        })
    }

    /// Make `adapter` the version served under its name from its source.
    /// The name serves the uploaded version if there is one, else the one
    /// from the adapters directory, else the built-in one. Requests already
    /// running keep the version they started with.
    pub fn install(&self, adapter: LoadedAdapter) -> Arc<LoadedAdapter> {
        let adapter = Arc::new(adapter);
        let name = adapter.info.name.clone();
        self.sources
            .set(&name, adapter.source, Some(adapter.clone()));
        self.publish(&name);
        tracing::info!(adapter = %name, version = %adapter.info.version, source = ?adapter.source, hash = %&adapter.hash[..12], "adapter installed");
        adapter
    }

    /// Withdraw `name`'s version from `source`; the name falls back to a
    /// lower source, or stops being served.
    pub fn remove(&self, name: &str, source: Source) {
        self.sources.set(name, source, None);
        self.publish(name);
        tracing::info!(adapter = %name, source = ?source, "adapter removed");
    }

    fn publish(&self, name: &str) {
        let effective = self.sources.effective(name);
        self.registry.rcu(|current| {
            let mut next = HashMap::clone(current);
            match &effective {
                Some(a) => {
                    next.insert(name.to_owned(), a.clone());
                }
                None => {
                    next.remove(name);
                }
            }
            next
        });
    }

    /// Recent load failures, newest first.
    pub fn load_errors(&self) -> Vec<LoadError> {
        self.sources.errors()
    }

    pub fn get(&self, name: &str) -> Option<Arc<LoadedAdapter>> {
        self.registry.load().get(name).cloned()
    }

    pub fn adapters(&self) -> Vec<Arc<LoadedAdapter>> {
        let mut all: Vec<_> = self.registry.load().values().cloned().collect();
        all.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        all
    }

    /// A fresh instance of `adapter` for one request or stream.
    pub async fn instantiate(&self, adapter: &Arc<LoadedAdapter>) -> anyhow::Result<Lease> {
        let permit = tokio::time::timeout(INSTANCE_WAIT, self.instances.clone().acquire_owned())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "all {} adapter instances stayed busy for {}s",
                    self.limits.max_instances,
                    INSTANCE_WAIT.as_secs()
                )
            })?
            .map_err(|_| anyhow::anyhow!("the adapter runtime is shutting down"))?;
        let instance = Instance::new(
            &self.engine,
            &adapter.pre,
            &self.limits,
            self.deadline_ticks,
        )
        .await?;
        adapter.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            instance,
            adapter: adapter.clone(),
            _permit: permit,
        })
    }
}

/// An adapter instance held by one request; counts as in flight until dropped.
pub struct Lease {
    pub instance: Instance,
    pub adapter: Arc<LoadedAdapter>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.adapter.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How an engine allocates instances: the serving engine from its pool, an
/// engine that only compiles on demand (it never instantiates, and a pool
/// would reserve its address space for nothing).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allocation {
    Pooled,
    OnDemand,
}

/// The on-disk cache of compiled adapters in `dir`.
fn artifact_cache(dir: &std::path::Path) -> anyhow::Result<wasmtime::Cache> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the adapter cache {}", dir.display()))?;
    // The cache wants an absolute path; data_dir is usually relative.
    let dir = std::path::absolute(dir)
        .with_context(|| format!("resolving the adapter cache {}", dir.display()))?;
    let mut config = wasmtime::CacheConfig::new();
    config.with_directory(&dir);
    Ok(wasmtime::Cache::new(config)?)
}

/// An engine. Everything that shapes compiled code is the same whatever
/// the allocation, so engines of both kinds share cached artifacts.
fn build_engine(
    limits: &AdapterConfig,
    cache: Option<wasmtime::Cache>,
    allocation: Allocation,
) -> anyhow::Result<Engine> {
    let memory = limits.memory_limit_mib.max(1) * 1024 * 1024;
    let mut config = EngineConfig::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        // Reserve only what the cap allows instead of 4 GiB per memory, so a
        // large pool stays cheap in address space; bounds checks are explicit.
        .memory_reservation(memory)
        .memory_guard_size(64 * 1024)
        .memory_reservation_for_growth(0)
        .max_wasm_stack(1024 * 1024)
        .cache(cache);
    if allocation == Allocation::Pooled {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(limits, memory)));
    }
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the WebAssembly engine")
}

/// The serving engine's instance pool: `max_instances` instances whose
/// memories are capped at `memory` bytes.
fn pool(limits: &AdapterConfig, memory: u64) -> PoolingAllocationConfig {
    let instances = limits.max_instances.max(1);
    let keep_resident = usize::try_from(limits.keep_resident_kib.saturating_mul(1024))
        .unwrap_or(usize::MAX)
        .min(memory as usize);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        // A Rust wasip2 component is a handful of core instances (the
        // program plus shims) with one memory and a few tables.
        .max_core_instances_per_component(32)
        .total_core_instances(instances.saturating_mul(16))
        .max_memories_per_component(4)
        .total_memories(instances.saturating_mul(2))
        .max_tables_per_component(16)
        .total_tables(instances.saturating_mul(8))
        .max_memory_size(memory as usize)
        // Fiber stacks for guest calls in flight.
        .total_stacks(instances)
        // What a request touches stays mapped for the next one: zeroing a
        // few pages in place is cheaper than returning them (madvise, TLB
        // shootdowns) and faulting them back in.
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(keep_resident.min(64 * 1024))
        // Pages beyond that are returned to the kernel sixteen instances
        // at a time: one madvise round (and its TLB shootdowns) instead of
        // one per request. A slot waiting in the batch is flushed early if
        // the pool needs it.
        .decommit_batch_size(16);
    pool
}

fn spawn_ticker(engine: Engine, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("transit-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        })
        .context("starting the epoch ticker")?;
    Ok(())
}

/// The `transit:adapter` version a component exports, if the host serves it.
fn wit_version_of(component: &Component, engine: &Engine) -> anyhow::Result<&'static str> {
    let ty = component.component_type();
    let mut found = Vec::new();
    for (name, _) in ty.exports(engine) {
        if let Some(version) = name.strip_prefix("transit:adapter/adapter@") {
            if let Some(v) = SUPPORTED_WIT_VERSIONS.iter().find(|v| **v == version) {
                return Ok(v);
            }
            found.push(version.to_owned());
        }
    }
    if found.is_empty() {
        Err(anyhow!(
            "the component does not export transit:adapter/adapter; build it with transit-adapter-sdk"
        ))
    } else {
        Err(anyhow!(
            "the component targets transit:adapter@{}, this gateway serves {}",
            found.join(", "),
            SUPPORTED_WIT_VERSIONS.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(stream: bool) -> Call {
        Call {
            endpoint: "chat.completions".into(),
            model: "gpt-4o-mini".into(),
            stream,
            include_usage: false,
            headers: vec![],
            channel: ChannelInfo {
                kind: "openai".into(),
                base_url: "https://api.openai.com".into(),
                api_key: "sk-channel".into(),
                options: vec![],
            },
        }
    }

    /// The built-in OpenAI adapter, as the compiled component, through the
    /// host bindings: prepare, parse, stream and error mapping.
    #[tokio::test]
    async fn builtin_openai_component_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(&AdapterConfig::default(), Some(dir.path()))
            .await
            .unwrap();
        let adapter = runtime.get("openai").expect("built in");
        assert_eq!(adapter.wit_version, "0.2.0");
        assert_eq!(adapter.source, Source::Builtin);
        let mut lease = runtime.instantiate(&adapter).await.unwrap();
        assert_eq!(adapter.in_flight(), 1);

        let req = lease
            .instance
            .prepare_request(
                &call(true),
                br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(req.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(req.framing, Framing::Sse);
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream_options"]["include_usage"], true);

        let bad = lease
            .instance
            .prepare_request(&call(false), b"not json")
            .await
            .unwrap();
        assert!(matches!(bad, Err(AdapterError::InvalidRequest(_))));

        let stream = lease.instance.open_stream(&call(true)).await.unwrap();
        let events = vec![
            Event { name: None, data: br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#.to_vec() },
            Event { name: None, data: br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#.to_vec() },
            Event { name: None, data: b"[DONE]".to_vec() },
        ];
        let batch = lease
            .instance
            .push(&stream, &events)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            batch.chunks.len(),
            1,
            "usage-only chunk hidden from a client that did not ask"
        );
        assert!(batch.done);
        assert_eq!(
            batch.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((3, 1))
        );

        let err = lease
            .instance
            .map_error(
                &call(false),
                &UpstreamResponse {
                    status: 429,
                    headers: vec![("retry-after".into(), "7".into())],
                    body: b"{}".to_vec(),
                },
            )
            .await
            .unwrap();
        assert!(matches!(err, AdapterError::RateLimited(r) if r.retry_after_ms == Some(7000)));
        drop(lease);
        assert_eq!(adapter.in_flight(), 0);
    }

    /// While the development WIT carries the newest released version's
    /// number, it is that version, byte for byte: a change to it needs a new
    /// version (see wit/README.md).
    #[test]
    fn the_development_wit_matches_its_frozen_copy() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let dev = std::fs::read_to_string(root.join("adapter.wit")).unwrap();
        let newest = SUPPORTED_WIT_VERSIONS[0];
        let frozen =
            std::fs::read_to_string(root.join(format!("since_v{newest}/adapter.wit"))).unwrap();
        if dev.starts_with(&format!("package transit:adapter@{newest};")) {
            assert!(
                dev == frozen,
                "wit/adapter.wit differs from since_v{newest}: bump the version"
            );
        }
    }

    /// A component built against 0.1.0 is served through the 0.1.0
    /// bindings: calls convert both ways, and what 0.1.0 lacks (tasks)
    /// answers `unsupported` instead of trapping.
    #[tokio::test]
    async fn a_0_1_0_component_runs_through_its_own_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(&AdapterConfig::default(), Some(dir.path()))
            .await
            .unwrap();
        let bytes = std::fs::read(
            std::path::Path::new(env!("BUILT_ADAPTERS_DIR")).join("legacy-v0_1.wasm"),
        )
        .unwrap();
        let adapter = runtime.compile(&bytes, Source::Uploaded).await.unwrap();
        assert_eq!(adapter.wit_version, "0.1.0");
        assert_eq!(adapter.info.name, "legacy");
        let adapter = runtime.install(adapter);
        let mut lease = runtime.instantiate(&adapter).await.unwrap();
        let req = lease
            .instance
            .prepare_request(&call(false), b"{}")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(req.url, "https://api.openai.com/v1/chat/completions");
        assert!(req.usage.is_none());
        assert!(
            req.headers
                .iter()
                .any(|(k, v)| k == "x-legacy-adapter" && v == "0.1.0")
        );
        let err = lease
            .instance
            .prepare_submit(&call(false), b"{}")
            .await
            .unwrap();
        assert!(matches!(err, Err(AdapterError::Unsupported(m)) if m.contains("0.2.0")));
    }

    #[tokio::test]
    async fn components_that_are_not_adapters_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(&AdapterConfig::default(), Some(dir.path()))
            .await
            .unwrap();
        // A core module, not a component.
        let err = runtime
            .compile(b"\0asm\x01\0\0\0", Source::Uploaded)
            .await
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("component"), "{err:#}");
        let err = runtime
            .compile(b"garbage", Source::Uploaded)
            .await
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("WebAssembly"), "{err:#}");
        // A component whose body is broken.
        let err = runtime
            .compile(b"\0asm\x0d\0\x01\0\xff\xff", Source::Uploaded)
            .await
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("compiling"), "{err:#}");
    }
}

//! The adapter runtime: one wasmtime [`Engine`] for the process, adapters
//! compiled once into pre-linked instances held in a registry, and an
//! instance in a [`wasmtime::Store`] of its own for each request.
//! An instance whose request went well waits, warm, for the next request of
//! the same user to the same adapter version (up to `adapters.reuse_calls`
//! requests), which skips instantiating and faulting in a fresh memory. An
//! instance never serves two users: whatever an adapter keeps between calls
//! stays with the user it came from.
//!
//! Open streams of one user share instances ([`shared`]): their
//! translators live minutes, while a call takes microseconds.
//!
//! Containment: every call into a guest runs under an epoch deadline (a
//! ticker thread advances the epoch; a call over budget traps) and a memory
//! cap (a guest whose allocation fails aborts, which is a trap). A trap fails
//! only the request that hit it, and the streams sharing its instance; the
//! store is dropped with it.

mod artifacts;
mod builtin;
mod clock;
mod guest;
mod health;
pub mod kit;
pub mod scaffold;
mod shared;
mod sources;

/// The host's imports as every WIT version's binding module implements
/// them: `types` has no functions, `host` has the log. Expanded inside each
/// module, where the names are that version's.
macro_rules! host_imports {
    () => {
        impl self::transit::adapter::types::Host for GuestState {}

        impl self::transit::adapter::host::Host for GuestState {
            fn log(&mut self, level: self::transit::adapter::host::LogLevel, message: String) {
                use self::transit::adapter::host::LogLevel;
                let level = match level {
                    LogLevel::Trace => Level::Trace,
                    LogLevel::Debug => Level::Debug,
                    LogLevel::Info => Level::Info,
                    LogLevel::Warn => Level::Warn,
                    LogLevel::Error => Level::Error,
                };
                GuestState::log(self, level, message);
            }
        }
    };
}

/// The conversions every older WIT version's binding module needs between
/// its types and the host's own (`current`), for the records no version
/// since 0.1.0 has changed. Expanded inside each module, where the names
/// are that version's types.
macro_rules! conversions_of_unchanged_records {
    () => {
        impl From<&current::UpstreamResponse> for UpstreamResponse {
            fn from(r: &current::UpstreamResponse) -> Self {
                Self {
                    status: r.status,
                    headers: r.headers.clone(),
                    body: r.body.clone(),
                }
            }
        }

        impl From<&current::Event> for Event {
            fn from(e: &current::Event) -> Self {
                Self {
                    name: e.name.clone(),
                    data: e.data.clone(),
                }
            }
        }

        impl From<Usage> for current::Usage {
            fn from(u: Usage) -> Self {
                Self {
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                    cache_read_tokens: u.cache_read_tokens,
                    cache_write_tokens: u.cache_write_tokens,
                    reasoning_tokens: u.reasoning_tokens,
                    units: u.units,
                }
            }
        }

        impl From<Translated> for current::Translated {
            fn from(t: Translated) -> Self {
                Self {
                    body: t.body,
                    content_type: t.content_type,
                    usage: t.usage.map(Into::into),
                }
            }
        }

        impl From<ChunkBatch> for current::ChunkBatch {
            fn from(b: ChunkBatch) -> Self {
                Self {
                    chunks: b.chunks,
                    usage: b.usage.map(Into::into),
                    done: b.done,
                }
            }
        }

        impl From<AdapterError> for current::AdapterError {
            fn from(e: AdapterError) -> Self {
                match e {
                    AdapterError::InvalidRequest(m) => Self::InvalidRequest(m),
                    AdapterError::Unsupported(m) => Self::Unsupported(m),
                    AdapterError::Auth(m) => Self::Auth(m),
                    AdapterError::RateLimited(r) => Self::RateLimited(current::RateLimit {
                        retry_after_ms: r.retry_after_ms,
                        message: r.message,
                    }),
                    AdapterError::Upstream(u) => Self::Upstream(current::UpstreamError {
                        status: u.status,
                        retryable: u.retryable,
                        message: u.message,
                        code: u.code,
                    }),
                    AdapterError::Internal(m) => Self::Internal(m),
                }
            }
        }

        impl From<AdapterInfo> for current::AdapterInfo {
            fn from(i: AdapterInfo) -> Self {
                Self {
                    name: i.name,
                    version: i.version,
                    endpoints: i.endpoints,
                    description: i.description,
                }
            }
        }
    };
}

mod v0_1_0;
mod v0_2_0;
mod v0_3_0;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use crate::config::AdapterConfig;

pub use guest::{GuestFailure, Instance, StreamTranslator};
pub use shared::StreamSeat;
pub use v0_3_0::{
    AdapterError, AdapterInfo, Answer, Call, Channel as ChannelInfo, ChunkBatch, Event, Framing,
    Submitted, TaskState, TaskStatus, Translated, UpstreamError, UpstreamRequest, UpstreamResponse,
    Usage,
};

/// WIT versions of `transit:adapter` this host serves.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.3.0", "0.2.0", "0.1.0"];

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
    /// Calls this version is working on (preparing or translating) and
    /// streams open on it.
    in_flight: AtomicUsize,
    /// Instances waiting for this version's next request.
    idle: Mutex<Idle>,
    /// Calls waiting for a place in the runtime's instance pool.
    waiting: Arc<AtomicUsize>,
    /// Instances hosting the translators of open streams.
    hosts: shared::Hosts,
    /// The crash-loop guard.
    pub health: Health,
}

/// Warm instances of one adapter version.
#[derive(Default)]
struct Idle {
    instances: Vec<Warm>,
    /// The version is no longer served: instances are not kept any more.
    retired: bool,
}

/// A kept instance, with the pool place it holds and the user it serves.
struct Warm {
    instance: Instance,
    permit: tokio::sync::OwnedSemaphorePermit,
    owner: i64,
}

/// The owner of instances serving the gateway itself (load checks, the
/// conformance kit): no user has this id.
pub const GATEWAY: i64 = 0;

/// Instances kept per adapter version between requests. Enough for the
/// concurrency one adapter sees in steady state; a burst beyond it
/// instantiates afresh.
const IDLE_PER_ADAPTER: usize = 64;

impl LoadedAdapter {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Instances waiting for a request.
    pub fn idle(&self) -> usize {
        self.idle_list().instances.len()
    }

    /// Instances hosting open streams.
    pub fn hosting(&self) -> usize {
        self.hosts.count()
    }

    fn idle_list(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The warm instance `owner` used last, if one waits.
    fn take_idle(&self, owner: i64) -> Option<Warm> {
        let mut idle = self.idle_list();
        let at = idle.instances.iter().rposition(|w| w.owner == owner)?;
        Some(idle.instances.remove(at))
    }

    /// The instance that has waited longest, whoever it served.
    fn take_oldest(&self) -> Option<Warm> {
        let mut idle = self.idle_list();
        (!idle.instances.is_empty()).then(|| idle.instances.remove(0))
    }

    /// Keep `instance` for `owner`'s next request, if it may serve one. When
    /// as many wait already, the one that waited longest makes room. While
    /// calls wait for a place in the pool, the instance is dropped instead:
    /// its place goes to the call that waited longest.
    fn keep(&self, instance: Instance, permit: tokio::sync::OwnedSemaphorePermit, owner: i64) {
        if !instance.reusable() {
            return;
        }
        let mut idle = self.idle_list();
        // Read under the lock: a call that starts waiting after this either
        // finds the instance kept here when it looks for warm ones to evict,
        // or is seen waiting.
        if idle.retired || self.waiting.load(Ordering::SeqCst) > 0 {
            return;
        }
        let evicted = (idle.instances.len() >= IDLE_PER_ADAPTER).then(|| idle.instances.remove(0));
        idle.instances.push(Warm {
            instance,
            permit,
            owner,
        });
        drop(idle);
        drop(evicted);
    }

    /// Keep instances again: this version is served (again).
    fn unretire(&self) {
        self.idle_list().retired = false;
    }

    /// Stop keeping instances: this version is no longer served.
    fn retire(&self) {
        let dropped = {
            let mut idle = self.idle_list();
            idle.retired = true;
            std::mem::take(&mut idle.instances)
        };
        drop(dropped);
    }
}

/// The process-wide adapter runtime.
pub struct Runtime {
    engine: Engine,
    /// Compiled adapters on disk, mapped when loaded.
    artifacts: Option<artifacts::Artifacts>,
    linker: Linker<guest::GuestState>,
    registry: ArcSwap<HashMap<String, Arc<LoadedAdapter>>>,
    sources: sources::Sources,
    limits: AdapterConfig,
    /// The serving engine's memory layout, which engines compiling for it
    /// share.
    layout: Layout,
    deadline_ticks: u64,
    clock: Arc<clock::Clock>,
    /// One permit per instance the pool can hold (less a few kept for load
    /// checks): a call waits for a free instance instead of failing when
    /// every one is in use.
    instances: Arc<tokio::sync::Semaphore>,
    /// Calls waiting for a permit; while there are any, leases give their
    /// permits back instead of keeping their instances warm.
    waiting: Arc<AtomicUsize>,
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
        self.clock.stop();
    }
}

impl Runtime {
    /// Build the engine and load the built-in adapters.
    pub async fn new(
        limits: &AdapterConfig,
        cache_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let (engine, layout) = serving_engine(limits)?;
        Self::with_engine(engine, layout, limits, cache_dir).await
    }

    /// [`Runtime::new`] on a serving engine of `layout`.
    async fn with_engine(
        engine: Engine,
        layout: Layout,
        limits: &AdapterConfig,
        cache_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let artifacts = cache_dir
            .map(|dir| artifacts::Artifacts::open(dir, &engine))
            .transpose()?;
        let mut linker = Linker::new(&engine);
        guest::add_to_linker(&mut linker)?;
        let clock = clock::Clock::start(engine.clone())?;
        let deadline_ticks = (limits.call_timeout_ms / clock::TICK.as_millis() as u64).max(1);
        let runtime = Self {
            engine,
            artifacts,
            linker,
            registry: ArcSwap::from_pointee(HashMap::new()),
            sources: sources::Sources::default(),
            limits: limits.clone(),
            layout,
            deadline_ticks,
            clock,
            instances: Arc::new(tokio::sync::Semaphore::new(
                limits
                    .max_instances
                    .max(1)
                    .saturating_sub(RESERVED_INSTANCES)
                    .max(1) as usize,
            )),
            waiting: Arc::default(),
        };
        for &(file, bytes, digest) in builtin::ADAPTERS {
            let adapter = runtime
                .compile_digested(
                    Bytes::from_static(bytes),
                    digest.to_owned(),
                    Source::Builtin,
                )
                .await
                .with_context(|| format!("loading built-in adapter {file}"))?;
            runtime.install(adapter);
        }
        Ok(runtime)
    }

    /// Validate and compile a component (on a blocking thread: it takes
    /// tens of milliseconds or more), then smoke-call its `info()` (or,
    /// for a component loaded before, read the answer kept beside its
    /// artifact: [`artifacts`]).
    ///
    /// With an artifact directory, the serving engine maps the component's
    /// compiled artifact ([`artifacts`]). An artifact that is missing is
    /// compiled by an engine of its own, configured alike: an engine keeps
    /// its compiler's working buffers for good once it has compiled (about
    /// 10 MB for the built-in adapters), and this one drops them with itself.
    pub async fn compile(&self, bytes: &[u8], source: Source) -> anyhow::Result<LoadedAdapter> {
        let digest = hex::encode(Sha256::digest(bytes));
        self.compile_digested(Bytes::copy_from_slice(bytes), digest, source)
            .await
    }

    /// [`Runtime::compile`] of bytes whose SHA-256 (`digest`, in hex) is
    /// known. The bytes are read only if there is no artifact to map: the
    /// built-in adapters embedded in the binary are then never paged in.
    async fn compile_digested(
        &self,
        bytes: Bytes,
        digest: String,
        source: Source,
    ) -> anyhow::Result<LoadedAdapter> {
        sources::check_header(&bytes)?;
        let engine = self.engine.clone();
        let (artifacts, limits, layout) =
            (self.artifacts.clone(), self.limits.clone(), self.layout);
        let key = digest.clone();
        let component = tokio::task::spawn_blocking(move || match artifacts {
            Some(artifacts) => artifacts.load(
                &engine,
                || build_engine(&limits, Allocation::OnDemand, layout),
                &bytes,
                &key,
            ),
            None => Component::new(&engine, &bytes).map_err(anyhow::Error::from),
        })
        .await
        .context("the compiler thread panicked")?
        .context("compiling the component")
        .map_err(with_pool_hint)?;
        let wit_version = wit_version_of(&component, &self.engine)?;
        let pre = guest::Pre::new(&self.linker, &component, wit_version)?;
        let kept = self.artifacts.as_ref().and_then(|a| a.info(&digest));
        let info = match kept {
            Some(info) => info,
            None => {
                let mut instance = Instance::new(
                    &self.engine,
                    &pre,
                    &self.limits,
                    self.deadline_ticks,
                    &self.clock,
                )
                .await?;
                let info = instance
                    .info()
                    .await
                    .map_err(|e| anyhow!("the adapter's info() failed: {e}"))?;
                if info.name.is_empty() {
                    return Err(anyhow!("the adapter's info() returned an empty name"));
                }
                if let Some(artifacts) = &self.artifacts {
                    artifacts.keep_info(&digest, &info);
                }
                info
            }
        };
        Ok(LoadedAdapter {
            info,
            wit_version,
            hash: digest,
            loaded_at: crate::store::now(),
            source,
            pre,
            in_flight: AtomicUsize::new(0),
            idle: Mutex::default(),
            waiting: self.waiting.clone(),
            hosts: shared::Hosts::default(),
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
        let before = self.registry.rcu(|current| {
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
        if let Some(new) = &effective {
            new.unretire();
        }
        // The version served until now keeps no instances any more.
        if let Some(old) = before.get(name)
            && !effective.as_ref().is_some_and(|new| Arc::ptr_eq(old, new))
        {
            old.retire();
        }
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

    /// An instance of `adapter` for the gateway's own calls (see
    /// [`Runtime::instantiate_for`]).
    pub async fn instantiate(&self, adapter: &Arc<LoadedAdapter>) -> anyhow::Result<Lease> {
        self.instantiate_for(adapter, GATEWAY).await
    }

    /// An instance of `adapter` for one request or stream of user `owner`:
    /// the one that served the user's last request to this version if it
    /// waits warm, else a fresh one.
    pub async fn instantiate_for(
        &self,
        adapter: &Arc<LoadedAdapter>,
        owner: i64,
    ) -> anyhow::Result<Lease> {
        let mut place = None;
        while let Some(mut warm) = adapter.take_idle(owner) {
            if warm.instance.reset().await {
                return Ok(Lease::new(warm.instance, adapter, warm.permit, owner));
            }
            place = Some(warm.permit);
        }
        let permit = match place {
            Some(permit) => permit,
            None => self.place().await?,
        };
        let instance = Instance::new(
            &self.engine,
            &adapter.pre,
            &self.limits,
            self.deadline_ticks,
            &self.clock,
        )
        .await?;
        Ok(Lease::new(instance, adapter, permit, owner))
    }

    /// A translator for `call`'s stream of user `owner`, in an instance
    /// hosting other streams of the user that has room (see
    /// [`StreamSeat`]); `None` if none has.
    pub async fn join_stream(
        &self,
        adapter: &Arc<LoadedAdapter>,
        owner: i64,
        call: &Call,
    ) -> Option<Result<StreamSeat, GuestFailure>> {
        StreamSeat::join(adapter, owner, call, self.streams_per_instance()).await
    }

    /// A translator for `call`'s stream: in an instance hosting other
    /// streams of the user if one has room, else in `lease`'s instance,
    /// which later streams of the user may join. A lease whose stream
    /// joined another instance goes back to wait warm.
    pub async fn open_stream(&self, lease: Lease, call: &Call) -> Result<StreamSeat, GuestFailure> {
        let adapter = lease.adapter.clone();
        if let Some(joined) = self.join_stream(&adapter, lease.owner, call).await {
            lease.recycle();
            return joined;
        }
        StreamSeat::host(lease, call, self.streams_per_instance()).await
    }

    fn streams_per_instance(&self) -> usize {
        self.limits.streams_per_instance.max(1) as usize
    }

    /// A place in the instance pool: a free one, else one that a warm
    /// instance of any adapter gives up, else the first freed within
    /// `INSTANCE_WAIT`.
    async fn place(&self) -> anyhow::Result<tokio::sync::OwnedSemaphorePermit> {
        if let Some(permit) = self.free_place()? {
            return Ok(permit);
        }
        // While this call waits, finished calls give their places back
        // instead of keeping their instances warm (`LoadedAdapter::keep`).
        // One kept between the look above and this count is found by the
        // second look.
        let _waiting = Counted::new(&self.waiting);
        if let Some(permit) = self.free_place()? {
            return Ok(permit);
        }
        tokio::time::timeout(INSTANCE_WAIT, self.instances.clone().acquire_owned())
            .await
            .map_err(|_| {
                anyhow!(
                    "all {} adapter instances stayed busy for {}s",
                    self.limits.max_instances,
                    INSTANCE_WAIT.as_secs()
                )
            })?
            .map_err(|_| anyhow!("the adapter runtime is shutting down"))
    }

    /// A free place in the pool, or one a warm instance gives up.
    fn free_place(&self) -> anyhow::Result<Option<tokio::sync::OwnedSemaphorePermit>> {
        loop {
            match self.instances.clone().try_acquire_owned() {
                Ok(permit) => return Ok(Some(permit)),
                Err(tokio::sync::TryAcquireError::Closed) => {
                    return Err(anyhow!("the adapter runtime is shutting down"));
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {}
            }
            let evicted = self.registry.load().values().find_map(|a| a.take_oldest());
            match evicted {
                Some(warm) => drop(warm),
                None => return Ok(None),
            }
        }
    }
}

/// One more in a count until dropped (calls waiting for a place, guest
/// calls running).
pub(super) struct Counted<'a> {
    count: &'a AtomicUsize,
    /// The count before this one was added.
    pub before: usize,
}

impl<'a> Counted<'a> {
    pub(super) fn new(count: &'a AtomicUsize) -> Self {
        let before = count.fetch_add(1, Ordering::SeqCst);
        Self { count, before }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An adapter instance held by one request or stream; counts as in flight
/// until it is dropped or given back with [`Lease::recycle`].
pub struct Lease {
    pub instance: Instance,
    pub adapter: Arc<LoadedAdapter>,
    permit: tokio::sync::OwnedSemaphorePermit,
    owner: i64,
    /// Counts the lease in its adapter's `in_flight`; an instance hosting
    /// streams counts them by their seats instead.
    in_flight: Option<InFlight>,
}

impl Lease {
    fn new(
        mut instance: Instance,
        adapter: &Arc<LoadedAdapter>,
        permit: tokio::sync::OwnedSemaphorePermit,
        owner: i64,
    ) -> Self {
        instance.serve();
        Self {
            instance,
            adapter: adapter.clone(),
            permit,
            owner,
            in_flight: Some(InFlight::new(adapter)),
        }
    }

    /// The request is over: the instance waits for the adapter's next
    /// request if it may serve one, and is dropped otherwise. A lease that
    /// is simply dropped (an error path) drops its instance.
    pub fn recycle(self) {
        let Self {
            instance,
            adapter,
            permit,
            owner,
            in_flight,
        } = self;
        drop(in_flight);
        adapter.keep(instance, permit, owner);
    }
}

/// Counts a lease in its adapter's `in_flight`.
struct InFlight(Arc<LoadedAdapter>);

impl InFlight {
    fn new(adapter: &Arc<LoadedAdapter>) -> Self {
        adapter.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(adapter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
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

/// Where a guest's linear memory lies in the host's address space, which
/// decides the code the compiler emits for each load and store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Each memory reserves the whole 32-bit index space and a guard region
    /// behind it: an access out of bounds faults on the guard pages, so
    /// loads and stores carry no bounds checks. Address space only (never
    /// resident): about 4 GiB per pool slot.
    Guarded,
    /// Each memory reserves only what the cap allows, so a large pool
    /// stays small in address space; every load and store checks its
    /// bounds. For a host whose address space is limited (`ulimit -v`).
    Compact,
}

/// Guard region after a guarded memory: wasmtime's default, which covers
/// the static offsets compiled code uses.
const GUARD_BYTES: u64 = 32 << 20;

/// An engine. Everything that shapes compiled code is the same whatever
/// the allocation, so engines of both kinds share compiled artifacts.
fn build_engine(
    limits: &AdapterConfig,
    allocation: Allocation,
    layout: Layout,
) -> anyhow::Result<Engine> {
    let memory = limits.memory_limit_mib.max(1) * 1024 * 1024;
    let mut config = EngineConfig::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .memory_reservation_for_growth(0)
        .max_wasm_stack(1024 * 1024);
    match layout {
        Layout::Guarded => config
            .memory_reservation(1 << 32)
            .memory_guard_size(GUARD_BYTES),
        Layout::Compact => config
            .memory_reservation(memory)
            .memory_guard_size(64 * 1024),
    };
    if allocation == Allocation::Pooled {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(limits, memory)));
    }
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the WebAssembly engine")
}

/// The serving engine: guarded memories if the host's address space holds
/// the pool's reservation, compact ones otherwise.
fn serving_engine(limits: &AdapterConfig) -> anyhow::Result<(Engine, Layout)> {
    match build_engine(limits, Allocation::Pooled, Layout::Guarded) {
        Ok(engine) => Ok((engine, Layout::Guarded)),
        Err(e) => {
            tracing::warn!(
                "the adapter instance pool could not reserve guarded memories ({e:#}); \
                 using compact memories with bounds checks, which run adapter code more slowly"
            );
            Ok((
                build_engine(limits, Allocation::Pooled, Layout::Compact)?,
                Layout::Compact,
            ))
        }
    }
}

/// Core module instances one adapter instance may create.
const CORE_INSTANCES_PER_INSTANCE: u32 = 16;

/// The serving engine's instance pool: `max_instances` instances whose
/// memories are capped at `memory` bytes.
fn pool(limits: &AdapterConfig, memory: u64) -> PoolingAllocationConfig {
    let instances = limits.max_instances.max(1);
    let keep_resident = usize::try_from(limits.keep_resident_kib.saturating_mul(1024))
        .unwrap_or(usize::MAX)
        .min(memory as usize);
    // Each memory and table slot costs the pool its bookkeeping (about
    // 100 bytes of heap) whether it is ever used or not, so the pool holds
    // exactly what `max_instances` instances of the configured shape need,
    // and a component that needs more is refused when it loads. A Rust
    // wasip2 component (the SDK's) is three core instances (its program,
    // the canonical ABI shim and its fixups) with one memory and two
    // tables; core instances are only counted, so they get room to spare.
    let memories = limits.memories_per_instance.max(1);
    let tables = limits.tables_per_instance.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .max_core_instances_per_component(CORE_INSTANCES_PER_INSTANCE)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_INSTANCE))
        .max_memories_per_component(memories)
        .total_memories(instances.saturating_mul(memories))
        .max_tables_per_component(tables)
        .total_tables(instances.saturating_mul(tables))
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

/// A compile error that says the component needs more than the instance
/// pool holds per instance (the engine checks this as it loads a component)
/// names the settings that raise it.
fn with_pool_hint(e: anyhow::Error) -> anyhow::Error {
    if artifacts::exceeds_pool(&e) {
        e.context(
            "the component needs more than an adapter instance holds: see adapters.memories_per_instance and adapters.tables_per_instance",
        )
    } else {
        e
    }
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

    /// A runtime with the default limits (its cache in a temporary
    /// directory) and its built-in OpenAI adapter.
    async fn builtin_openai() -> (tempfile::TempDir, Runtime, Arc<LoadedAdapter>) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(&AdapterConfig::default(), Some(dir.path()))
            .await
            .unwrap();
        let adapter = runtime.get("openai").expect("built in");
        (dir, runtime, adapter)
    }

    /// Preparing a long prompt grows an instance's memory past what is
    /// held through a wait or kept warm; a short one does not.
    #[tokio::test]
    async fn an_instance_a_long_prompt_grew_is_neither_held_nor_kept() {
        let (_dir, runtime, adapter) = builtin_openai().await;
        let prompt = |chars: usize| {
            serde_json::to_vec(&serde_json::json!({
                "model": "x",
                "messages": [{"role": "user", "content": "word ".repeat(chars / 5)}],
            }))
            .unwrap()
        };

        let mut lease = runtime.instantiate(&adapter).await.unwrap();
        assert!(lease.instance.small_enough_to_hold());
        for _ in 0..3 {
            lease
                .instance
                .prepare_request(&call(true), &prompt(2_000))
                .await
                .unwrap()
                .unwrap();
        }
        assert!(lease.instance.small_enough_to_hold());
        lease.recycle();
        assert_eq!(adapter.idle(), 1);

        let mut lease = runtime.instantiate(&adapter).await.unwrap();
        lease
            .instance
            .prepare_request(&call(true), &prompt(300_000))
            .await
            .unwrap()
            .unwrap();
        assert!(!lease.instance.small_enough_to_hold());
        lease.recycle();
        assert_eq!(adapter.idle(), 0, "a grown instance is not kept warm");
    }

    /// The built-in OpenAI adapter, as the compiled component, through the
    /// host bindings: prepare, parse, stream and error mapping.
    #[tokio::test]
    async fn builtin_openai_component_round_trip() {
        let (_dir, runtime, adapter) = builtin_openai().await;
        assert_eq!(adapter.wit_version, "0.3.0");
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

    /// A runtime serving the `misbehave` fixture, with `config`.
    async fn misbehave(config: AdapterConfig) -> (tempfile::TempDir, Runtime, Arc<LoadedAdapter>) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(&config, Some(dir.path())).await.unwrap();
        let adapter = runtime.install(compile_misbehave(&runtime).await);
        (dir, runtime, adapter)
    }

    /// A runtime with one place for requests (the rest is kept for load
    /// checks), and the fixture adapter.
    async fn misbehave_with_one_place() -> (tempfile::TempDir, Runtime, Arc<LoadedAdapter>) {
        misbehave(AdapterConfig {
            max_instances: RESERVED_INSTANCES + 1,
            ..AdapterConfig::default()
        })
        .await
    }

    async fn compile_misbehave(runtime: &Runtime) -> LoadedAdapter {
        let bytes =
            std::fs::read(std::path::Path::new(env!("BUILT_ADAPTERS_DIR")).join("misbehave.wasm"))
                .unwrap();
        runtime.compile(&bytes, Source::Uploaded).await.unwrap()
    }

    fn model_call(model: &str) -> Call {
        Call {
            model: model.into(),
            ..call(true)
        }
    }

    /// A guest that reads past the end of its memory traps, whichever the
    /// layout: on the guard pages of a guarded memory (the default), on the
    /// bounds check of a compact one (a host short of address space: see
    /// `binary::starts_with_compact_adapter_memories_when_address_space_is_short`).
    #[tokio::test]
    async fn a_read_out_of_guest_memory_traps_in_either_layout() {
        let config = AdapterConfig::default();
        for layout in [Layout::Guarded, Layout::Compact] {
            let dir = tempfile::tempdir().unwrap();
            let runtime = if layout == Layout::Guarded {
                Runtime::new(&config, Some(dir.path())).await.unwrap()
            } else {
                let engine = build_engine(&config, Allocation::Pooled, layout).unwrap();
                Runtime::with_engine(engine, layout, &config, Some(dir.path()))
                    .await
                    .unwrap()
            };
            assert_eq!(runtime.layout, layout);
            let adapter = runtime.install(compile_misbehave(&runtime).await);
            let mut lease = runtime.instantiate(&adapter).await.unwrap();
            let trapped = lease
                .instance
                .prepare_request(&model_call("out-of-bounds"), b"{}")
                .await;
            match trapped {
                Err(GuestFailure::Trap(message)) => {
                    assert!(message.contains("out of bounds"), "{layout:?}: {message}");
                }
                other => panic!("{layout:?}: {:?}", other.map(|r| r.is_ok())),
            }
            drop(lease);
            let mut lease = runtime.instantiate(&adapter).await.unwrap();
            assert_eq!(remembered(&mut lease).await, (1, 0), "{layout:?}");
        }
    }

    /// What the instance behind `lease` remembers, as the fixture's `count`
    /// model reports it: (requests prepared, stream translators alive).
    async fn remembered(lease: &mut Lease) -> (u32, u32) {
        let req = lease
            .instance
            .prepare_request(&model_call("count"), br#"{"model":"x","messages":[]}"#)
            .await
            .unwrap()
            .unwrap();
        let header = |name: &str| -> u32 {
            req.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.parse().unwrap())
                .unwrap()
        };
        (header("x-prepared"), header("x-live-streams"))
    }

    /// An instance whose request went well serves the adapter's next
    /// request, its finished streams' translators dropped first; one that
    /// trapped is never reused.
    #[tokio::test]
    async fn a_warm_instance_serves_the_next_request_and_forgets_its_streams() {
        let (_dir, runtime, adapter) = misbehave(AdapterConfig::default()).await;

        let mut lease = runtime.instantiate(&adapter).await.unwrap();
        assert_eq!(remembered(&mut lease).await, (1, 0));
        let stream = lease
            .instance
            .open_stream(&model_call("count"))
            .await
            .unwrap();
        assert_eq!(remembered(&mut lease).await, (2, 1));
        lease.instance.close_stream(stream);
        lease.recycle();
        assert_eq!((adapter.idle(), adapter.in_flight()), (1, 0));

        let mut lease = runtime.instantiate(&adapter).await.unwrap();
        assert_eq!(adapter.idle(), 0);
        assert_eq!(
            remembered(&mut lease).await,
            (3, 0),
            "the same instance, its stream gone"
        );

        // A trap spoils the instance: the next request gets a fresh one.
        let trapped = lease
            .instance
            .prepare_request(&model_call("trap"), b"{}")
            .await;
        assert!(
            matches!(trapped, Err(GuestFailure::Trap(_))),
            "{:?}",
            trapped.err()
        );
        lease.recycle();
        assert_eq!(adapter.idle(), 0);
        let mut lease = runtime.instantiate(&adapter).await.unwrap();
        assert_eq!(remembered(&mut lease).await, (1, 0));

        // A lease dropped on an error path drops its instance too.
        drop(lease);
        assert_eq!((adapter.idle(), adapter.in_flight()), (0, 0));
    }

    /// An instance serves one user only: another user's request gets a
    /// fresh one, and each user gets back the instance that served them.
    #[tokio::test]
    async fn a_warm_instance_serves_only_the_user_it_served() {
        let (_dir, runtime, adapter) = misbehave(AdapterConfig::default()).await;
        for (user, expected) in [(7, 1), (8, 1), (7, 2), (8, 2), (9, 1)] {
            let mut lease = runtime.instantiate_for(&adapter, user).await.unwrap();
            assert_eq!(remembered(&mut lease).await.0, expected, "user {user}");
            lease.recycle();
        }
        assert_eq!(adapter.idle(), 3);
    }

    /// A chunk of an OpenAI stream saying `text`.
    fn text_event(text: &str) -> Event {
        let data = serde_json::json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}],
        });
        Event {
            name: None,
            data: data.to_string().into_bytes(),
        }
    }

    /// Push `text` through `seat` and check that its own chunk comes back.
    async fn says(seat: &mut StreamSeat, text: &str) {
        let batch = seat.push(&[text_event(text)]).await.unwrap().unwrap();
        let chunks = String::from_utf8(batch.chunks.concat()).unwrap();
        assert!(
            chunks.contains(&format!("\"content\":\"{text}\"")),
            "{chunks}"
        );
    }

    /// Streams of one user keep their translators in one instance, up to
    /// `streams_per_instance`; the lease of a stream that joined another
    /// instance waits warm, and a stream of another user never joins. Four
    /// streams run in two pool places.
    #[tokio::test]
    async fn open_streams_of_one_user_share_an_instance() {
        let (_dir, runtime, adapter) = misbehave(AdapterConfig {
            max_instances: RESERVED_INSTANCES + 2,
            streams_per_instance: 3,
            ..AdapterConfig::default()
        })
        .await;
        let call = model_call("count");
        let mut seats = Vec::new();
        for _ in 0..3 {
            let lease = runtime.instantiate_for(&adapter, 7).await.unwrap();
            seats.push(runtime.open_stream(lease, &call).await.unwrap());
        }
        assert_eq!(
            (adapter.hosting(), adapter.idle(), adapter.in_flight()),
            (1, 1, 3),
            "one instance hosts three streams; the leases that joined it wait warm"
        );
        // The instance is full: the next stream of the user gets its own.
        let lease = runtime.instantiate_for(&adapter, 7).await.unwrap();
        let mut fourth = runtime.open_stream(lease, &call).await.unwrap();
        assert_eq!((adapter.hosting(), adapter.idle()), (2, 0));

        // Translations interleave, each stream its own.
        for round in 0..2 {
            for (i, seat) in seats.iter_mut().enumerate() {
                says(seat, &format!("stream {i} round {round}")).await;
            }
            says(&mut fourth, &format!("fourth round {round}")).await;
        }
        seats[0].finish().await.unwrap().unwrap();

        // Another user's stream never joins: no place is left for it
        // while the first user's instances are all busy.
        let other = tokio::time::timeout(
            Duration::from_millis(200),
            runtime.instantiate_for(&adapter, 8),
        )
        .await;
        assert!(other.is_err(), "both places are taken by user 7's streams");

        // The streams end: the hosting instances wait warm, their
        // translators dropped before their next call.
        seats.clear();
        drop(fourth);
        assert_eq!(
            (adapter.hosting(), adapter.in_flight(), adapter.idle()),
            (0, 0, 2)
        );
        let mut lease = runtime.instantiate_for(&adapter, 7).await.unwrap();
        let (_, live) = remembered(&mut lease).await;
        assert_eq!(live, 0, "the ended streams' translators were dropped");
        let lease = runtime.instantiate_for(&adapter, 8).await;
        assert!(lease.is_ok(), "the other warm instance gave its place up");
    }

    /// A trap in one stream's translator ends the streams sharing its
    /// instance, without counting again; the user's next stream gets a
    /// fresh instance.
    #[tokio::test]
    async fn a_trap_ends_the_streams_sharing_its_instance_and_no_more() {
        let (_dir, runtime, adapter) = misbehave(AdapterConfig::default()).await;
        let lease = runtime.instantiate_for(&adapter, 7).await.unwrap();
        let mut fine = runtime
            .open_stream(lease, &model_call("count"))
            .await
            .unwrap();
        let lease = runtime.instantiate_for(&adapter, 7).await.unwrap();
        let mut trapping = runtime
            .open_stream(lease, &model_call("stream-trap"))
            .await
            .unwrap();
        assert_eq!(adapter.hosting(), 1);
        let trapped = trapping.push(&[text_event("boom")]).await;
        assert!(matches!(trapped, Err(GuestFailure::Trap(_))), "{trapped:?}");
        let lost = fine.push(&[text_event("after")]).await;
        assert_eq!(lost.err(), Some(GuestFailure::Spoiled));

        let lease = runtime.instantiate_for(&adapter, 7).await.unwrap();
        let mut next = runtime
            .open_stream(lease, &model_call("count"))
            .await
            .unwrap();
        assert_eq!(adapter.hosting(), 2, "the spoiled instance takes no stream");
        says(&mut next, "fresh").await;
        drop((fine, trapping, next));
        assert_eq!(adapter.hosting(), 0);
    }

    /// `reuse_calls` bounds the requests one instance serves; 1 gives every
    /// request a fresh instance.
    #[tokio::test]
    async fn reuse_calls_bounds_what_an_instance_serves() {
        for (reuse, expected) in [(2, [1, 2, 1, 2]), (1, [1, 1, 1, 1])] {
            let config = AdapterConfig {
                reuse_calls: reuse,
                ..AdapterConfig::default()
            };
            let (_dir, runtime, adapter) = misbehave(config).await;
            let mut seen = Vec::new();
            for _ in 0..4 {
                let mut lease = runtime.instantiate(&adapter).await.unwrap();
                seen.push(remembered(&mut lease).await.0);
                lease.recycle();
            }
            assert_eq!(seen, expected, "reuse_calls = {reuse}");
        }
    }

    /// A version replaced by a hot reload keeps no instances, and gets them
    /// again once it is served again.
    #[tokio::test]
    async fn a_replaced_version_keeps_no_instances() {
        let (_dir, runtime, old) = misbehave(AdapterConfig::default()).await;
        let held = runtime.instantiate(&old).await.unwrap();
        runtime.instantiate(&old).await.unwrap().recycle();
        assert_eq!(old.idle(), 1);

        let new = runtime.install(compile_misbehave(&runtime).await);
        assert_eq!(old.idle(), 0, "dropped when replaced");
        held.recycle();
        assert_eq!(
            old.idle(),
            0,
            "a request still running on it gives its instance up"
        );
        runtime.instantiate(&new).await.unwrap().recycle();
        assert_eq!(new.idle(), 1);

        // The directory layer below the upload is served once the upload
        // is withdrawn.
        let mut below = compile_misbehave(&runtime).await;
        below.source = Source::Directory;
        let below = runtime.install(below);
        assert_eq!(
            runtime.get("misbehave").map(|a| Arc::ptr_eq(&a, &new)),
            Some(true)
        );
        runtime.remove("misbehave", Source::Uploaded);
        assert_eq!(new.idle(), 0);
        runtime.instantiate(&below).await.unwrap().recycle();
        assert_eq!(below.idle(), 1);
    }

    /// When every place in the pool is taken by warm instances, a request
    /// for another adapter takes the place of one of them.
    #[tokio::test]
    async fn warm_instances_give_way_to_other_adapters() {
        let (_dir, runtime, misbehave) = misbehave_with_one_place().await;
        runtime.instantiate(&misbehave).await.unwrap().recycle();
        assert_eq!(misbehave.idle(), 1);
        let openai = runtime.get("openai").unwrap();
        let lease = tokio::time::timeout(Duration::from_secs(2), runtime.instantiate(&openai))
            .await
            .expect("not kept waiting")
            .unwrap();
        assert_eq!(misbehave.idle(), 0);
        drop(lease);
    }

    /// A call waiting for a place gets the place of the next call to
    /// finish: that call's instance is not kept warm, holding it, while
    /// another waits.
    #[tokio::test]
    async fn a_finished_call_gives_its_place_to_one_waiting() {
        let (_dir, runtime, misbehave) = misbehave_with_one_place().await;
        let runtime = Arc::new(runtime);
        let busy = runtime.instantiate_for(&misbehave, 1).await.unwrap();
        let waiter = tokio::spawn({
            let (runtime, misbehave) = (runtime.clone(), misbehave.clone());
            async move { runtime.instantiate_for(&misbehave, 2).await.map(drop) }
        });
        while runtime.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        busy.recycle();
        assert_eq!(misbehave.idle(), 0, "not kept while a call waits");
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("the waiting call got the place")
            .unwrap()
            .unwrap();
        // With nobody waiting, a finished call's instance is kept again.
        runtime
            .instantiate_for(&misbehave, 1)
            .await
            .unwrap()
            .recycle();
        assert_eq!(misbehave.idle(), 1);
        assert_eq!(runtime.waiting.load(Ordering::SeqCst), 0);
    }

    /// The pool holds per instance exactly what the built-in adapters need:
    /// no less (they would not load) and no more (every slot costs heap).
    #[tokio::test]
    async fn the_pool_holds_what_the_builtin_adapters_need_and_their_digests_are_right() {
        let defaults = AdapterConfig::default();
        let engine = build_engine(&defaults, Allocation::OnDemand, Layout::Guarded).unwrap();
        let (mut memories, mut tables) = (0, 0);
        for (file, bytes, digest) in builtin::ADAPTERS {
            // The digest the build took is the bytes' (the cache key).
            assert_eq!(*digest, hex::encode(Sha256::digest(bytes)), "{file}");
            let needs = Component::new(&engine, bytes)
                .unwrap()
                .resources_required()
                .unwrap_or_else(|| panic!("{file} imports core modules"));
            memories = memories.max(needs.num_memories);
            tables = tables.max(needs.num_tables);
        }
        assert_eq!(
            (memories, tables),
            (defaults.memories_per_instance, defaults.tables_per_instance)
        );
    }

    #[tokio::test]
    async fn a_component_that_needs_more_than_an_instance_holds_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let small = AdapterConfig {
            tables_per_instance: 1,
            ..AdapterConfig::default()
        };
        let e = Runtime::new(&small, Some(dir.path())).await.unwrap_err();
        let message = format!("{e:#}");
        assert!(
            message.contains("2 tables") && message.contains("adapters.tables_per_instance"),
            "{message}"
        );

        // With the artifacts cached (by a gateway with the default pool),
        // the refusal comes from the cached artifact: it is not compiled
        // and written again.
        drop(
            Runtime::new(&AdapterConfig::default(), Some(dir.path()))
                .await
                .unwrap(),
        );
        let inodes = || {
            use std::os::unix::fs::MetadataExt;
            let mut inodes: Vec<u64> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|f| f.unwrap().metadata().unwrap().ino())
                .collect();
            inodes.sort_unstable();
            inodes
        };
        let cached = inodes();
        assert!(!cached.is_empty());
        let e = Runtime::new(&small, Some(dir.path())).await.unwrap_err();
        assert!(format!("{e:#}").contains("adapters.tables_per_instance"));
        assert_eq!(inodes(), cached, "a cached artifact was written again");
    }

    /// A restart installs the built-in adapters from the `info()` answers
    /// kept beside their artifacts, without running them; an answer that
    /// does not read back whole is asked for again and kept anew.
    #[tokio::test]
    async fn a_restart_installs_adapters_from_their_kept_info() {
        let (dir, runtime, adapter) = builtin_openai().await;
        let kept = dir.path().join(format!(
            "{}-{}.info",
            adapter.hash,
            runtime.artifacts.as_ref().unwrap().engine_tag()
        ));
        let answer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
        assert_eq!(answer["name"], "openai");
        assert_eq!(answer["version"], adapter.info.version);
        assert_eq!(
            answer["endpoints"],
            serde_json::json!(adapter.info.endpoints)
        );
        drop(runtime);

        // Only what is kept can have told the new runtime this description.
        let mut changed = answer.clone();
        changed["description"] = "kept beside the artifact".into();
        std::fs::write(&kept, changed.to_string()).unwrap();
        let restarted = Runtime::new(&AdapterConfig::default(), Some(dir.path()))
            .await
            .unwrap();
        let openai = restarted.get("openai").unwrap();
        assert_eq!(openai.info.description, "kept beside the artifact");
        assert_eq!(openai.info.endpoints, adapter.info.endpoints);
        drop(restarted);

        // Damaged: the adapter is asked again, and its answer kept anew.
        std::fs::write(&kept, b"{\"name\": \"openai\"").unwrap();
        let restarted = Runtime::new(&AdapterConfig::default(), Some(dir.path()))
            .await
            .unwrap();
        assert_eq!(
            restarted.get("openai").unwrap().info.description,
            adapter.info.description
        );
        let again: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
        assert_eq!(again, answer);
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

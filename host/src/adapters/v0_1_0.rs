//! Host bindings for `transit:adapter@0.1.0`, generated from the frozen copy
//! of that version (`wit/since_v0.1.0`): the development WIT can move on
//! without changing what a 0.1.0 component is offered.

use wasmtime::component::{HasSelf, Linker, ResourceAny, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::config::AdapterConfig;

// Guest calls are async: the guest runs on a fiber polled by the request's
// task, so WASI calls it makes (a panic message written to stderr, say) are
// served by the async WASI implementation instead of blocking a runtime
// thread.
wasmtime::component::bindgen!({
    path: "../wit/since_v0.1.0",
    world: "transit-adapter",
    exports: { default: async },
});

pub use self::transit::adapter::types::{
    AdapterError, AdapterInfo, Call, Channel, ChunkBatch, Event, Framing, Translated,
    UpstreamRequest, UpstreamResponse, Usage,
};

use self::transit::adapter::host::LogLevel;

/// Per-store state: an empty WASI context (no files, sockets, environment
/// or stdio) and the memory limiter.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
    adapter: String,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl self::transit::adapter::types::Host for GuestState {}

impl self::transit::adapter::host::Host for GuestState {
    fn log(&mut self, level: LogLevel, message: String) {
        const MAX: usize = 4096;
        let mut message = message;
        if message.len() > MAX {
            let mut end = MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let adapter = self.adapter.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(adapter, "{message}"),
            LogLevel::Debug => tracing::debug!(adapter, "{message}"),
            LogLevel::Info => tracing::info!(adapter, "{message}"),
            LogLevel::Warn => tracing::warn!(adapter, "{message}"),
            LogLevel::Error => tracing::error!(adapter, "{message}"),
        }
    }
}

/// Caps linear memory and remembers whether it had to refuse a growth, so a
/// trap that follows can be reported as what it is.
struct MemoryCap {
    max_bytes: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

pub fn add_to_linker(linker: &mut Linker<GuestState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    TransitAdapter::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)?;
    Ok(())
}

/// A component pre-linked against the host, ready to instantiate cheaply.
#[derive(Clone)]
pub struct Pre(TransitAdapterPre<GuestState>);

impl Pre {
    pub fn new(
        linker: &Linker<GuestState>,
        component: &wasmtime::component::Component,
    ) -> anyhow::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        Ok(Self(TransitAdapterPre::new(pre)?))
    }
}

/// Why a call into the guest did not return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// The call ran past its time budget.
    Timeout,
    /// The guest needed more memory than its cap.
    OutOfMemory,
    /// Any other trap: a panic, an out-of-bounds access, ...
    Trap(String),
}

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("exceeded its time limit"),
            Self::OutOfMemory => f.write_str("exceeded its memory limit"),
            Self::Trap(t) => write!(f, "trapped: {t}"),
        }
    }
}

/// One instance of an adapter in its own store. Not shared between requests.
pub struct Instance {
    store: Store<GuestState>,
    bindings: TransitAdapter,
    deadline_ticks: u64,
}

/// A stream translator living in an [`Instance`].
pub struct StreamTranslator(ResourceAny);

impl Instance {
    pub async fn new(
        engine: &Engine,
        pre: &Pre,
        limits: &AdapterConfig,
        deadline_ticks: u64,
    ) -> anyhow::Result<Self> {
        let state = GuestState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            limiter: MemoryCap {
                max_bytes: (limits.memory_limit_mib.max(1) * 1024 * 1024) as usize,
                refused: false,
            },
            adapter: String::new(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks);
        let bindings = pre.0.instantiate_async(&mut store).await?;
        Ok(Self {
            store,
            bindings,
            deadline_ticks,
        })
    }

    /// Name the adapter in the guest's log lines.
    pub fn set_log_name(&mut self, name: &str) {
        name.clone_into(&mut self.store.data_mut().adapter);
    }

    fn arm(&mut self) {
        self.store.set_epoch_deadline(self.deadline_ticks);
    }

    fn failure(&self, error: wasmtime::Error) -> GuestFailure {
        if self.store.data().limiter.refused {
            return GuestFailure::OutOfMemory;
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => GuestFailure::Timeout,
            Some(trap) => GuestFailure::Trap(trap.to_string()),
            None => GuestFailure::Trap(format!("{error:#}")),
        }
    }

    pub async fn info(&mut self) -> Result<AdapterInfo, GuestFailure> {
        self.arm();
        let r = self
            .bindings
            .transit_adapter_adapter()
            .call_info(&mut self.store)
            .await;
        r.map_err(|e| self.failure(e))
    }

    pub async fn prepare_request(
        &mut self,
        call: &Call,
        body: &[u8],
    ) -> Result<Result<UpstreamRequest, AdapterError>, GuestFailure> {
        self.arm();
        let r = self
            .bindings
            .transit_adapter_adapter()
            .call_prepare_request(&mut self.store, call, body)
            .await;
        r.map_err(|e| self.failure(e))
    }

    pub async fn parse_response(
        &mut self,
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Result<Translated, AdapterError>, GuestFailure> {
        self.arm();
        let r = self
            .bindings
            .transit_adapter_adapter()
            .call_parse_response(&mut self.store, call, response)
            .await;
        r.map_err(|e| self.failure(e))
    }

    pub async fn map_error(
        &mut self,
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<AdapterError, GuestFailure> {
        self.arm();
        let r = self
            .bindings
            .transit_adapter_adapter()
            .call_map_error(&mut self.store, call, response)
            .await;
        r.map_err(|e| self.failure(e))
    }

    pub async fn open_stream(&mut self, call: &Call) -> Result<StreamTranslator, GuestFailure> {
        self.arm();
        let r = self
            .bindings
            .transit_adapter_adapter()
            .stream_translator()
            .call_constructor(&mut self.store, call)
            .await;
        r.map(StreamTranslator).map_err(|e| self.failure(e))
    }

    pub async fn push(
        &mut self,
        stream: &StreamTranslator,
        events: &[Event],
    ) -> Result<Result<ChunkBatch, AdapterError>, GuestFailure> {
        self.arm();
        let r = self
            .bindings
            .transit_adapter_adapter()
            .stream_translator()
            .call_push(&mut self.store, stream.0, events)
            .await;
        r.map_err(|e| self.failure(e))
    }

    pub async fn finish(
        &mut self,
        stream: &StreamTranslator,
    ) -> Result<Result<ChunkBatch, AdapterError>, GuestFailure> {
        self.arm();
        let r = self
            .bindings
            .transit_adapter_adapter()
            .stream_translator()
            .call_finish(&mut self.store, stream.0)
            .await;
        r.map_err(|e| self.failure(e))
    }
}

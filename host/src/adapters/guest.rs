//! What every adapter instance shares whatever WIT version it was built
//! against: the store state (an empty WASI context and the memory cap), the
//! failure classification, and [`Instance`], which speaks the host's own
//! (newest) types and converts for components built against older versions.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceAny, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::clock::Clock;
use super::v0_3_0::{
    AdapterError, AdapterInfo, Call, ChunkBatch, Event, Submitted, TaskState, Translated,
    UpstreamRequest, UpstreamResponse,
};
use super::{v0_1_0, v0_2_0, v0_3_0};
use crate::config::AdapterConfig;

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

/// Log levels, as every WIT version defines them.
#[derive(Debug, Clone, Copy)]
pub(super) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl GuestState {
    /// A guest's log line, truncated, tagged with the adapter's name.
    pub(super) fn log(&self, level: Level, message: String) {
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
            Level::Trace => tracing::trace!(adapter, "{message}"),
            Level::Debug => tracing::debug!(adapter, "{message}"),
            Level::Info => tracing::info!(adapter, "{message}"),
            Level::Warn => tracing::warn!(adapter, "{message}"),
            Level::Error => tracing::error!(adapter, "{message}"),
        }
    }
}

/// Caps linear memory and remembers whether it had to refuse a growth, so a
/// trap that follows can be reported as what it is.
struct MemoryCap {
    max_bytes: usize,
    refused: bool,
    /// The largest any memory of the instance has grown to.
    peak: usize,
    /// Its size when the instance was created.
    initial: usize,
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
        if self.initial == 0 {
            self.initial = desired;
        }
        self.peak = self.peak.max(desired);
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

/// One linker serves every version: WASI once, then each version's `host`
/// import under its own versioned name.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    v0_1_0::TransitAdapter::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)?;
    v0_2_0::TransitAdapter::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)?;
    v0_3_0::TransitAdapter::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)?;
    Ok(())
}

/// A component pre-linked against the host, ready to instantiate cheaply,
/// for the WIT version it was built against.
#[derive(Clone)]
pub enum Pre {
    V0_1(v0_1_0::TransitAdapterPre<GuestState>),
    V0_2(v0_2_0::TransitAdapterPre<GuestState>),
    V0_3(v0_3_0::TransitAdapterPre<GuestState>),
}

impl Pre {
    pub fn new(
        linker: &Linker<GuestState>,
        component: &wasmtime::component::Component,
        wit_version: &str,
    ) -> anyhow::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match wit_version {
            "0.1.0" => Self::V0_1(v0_1_0::TransitAdapterPre::new(pre)?),
            "0.2.0" => Self::V0_2(v0_2_0::TransitAdapterPre::new(pre)?),
            _ => Self::V0_3(v0_3_0::TransitAdapterPre::new(pre)?),
        })
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
    /// The instance failed in a call of another stream sharing it (see
    /// [`super::StreamSeat`]), taking this stream's translator with it.
    Spoiled,
}

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("exceeded its time limit"),
            Self::OutOfMemory => f.write_str("exceeded its memory limit"),
            Self::Trap(t) => write!(f, "trapped: {t}"),
            Self::Spoiled => f.write_str("failed on another stream sharing its instance"),
        }
    }
}

enum Bindings {
    V0_1(v0_1_0::TransitAdapter),
    V0_2(v0_2_0::TransitAdapter),
    V0_3(v0_3_0::TransitAdapter),
}

/// One instance of an adapter in its own store, used by one request at a
/// time; it may serve several in turn (see [`Instance::reusable`]).
pub struct Instance {
    store: Store<GuestState>,
    bindings: Bindings,
    deadline_ticks: u64,
    /// The epoch clock, kept ticking while a guest call runs.
    clock: Arc<Clock>,
    /// Requests and streams served, and how many the instance may serve.
    served: u32,
    max_served: u32,
    /// A guest call trapped, or was abandoned mid-way (its future dropped):
    /// the guest's state cannot be trusted any more.
    spoiled: bool,
    /// Stream translators whose streams ended, to be dropped in the guest
    /// before the next call.
    closed: Vec<ResourceAny>,
}

/// How far an instance's linear memory may have grown beyond its initial
/// size for it to be held while a call waits (on the upstream's answer, or
/// through a stream that may last minutes) or kept warm for the next call:
/// every page the guest touched stays resident while it is held. Preparing
/// a long prompt grows it by about twice the prompt's size with the
/// OpenAI adapter, which splices the body it sends from the one it got.
pub const HELD_MEMORY_GROWTH: usize = 256 * 1024;

/// A stream translator living in an [`Instance`].
pub struct StreamTranslator(ResourceAny);

/// What an older component answers for a function its version lacks.
fn missing(function: &str) -> AdapterError {
    AdapterError::Unsupported(format!(
        "{function} needs transit:adapter@0.2.0 or later; this adapter was built against 0.1.0"
    ))
}

/// Run one guest call under a fresh deadline, classifying a trap. The
/// instance counts as spoiled while the call runs, so one whose call is
/// abandoned half-way (its future dropped) is never reused.
macro_rules! guest_call {
    ($self:ident, $call:expr) => {{
        let _running = $self.clock.call();
        $self.store.set_epoch_deadline($self.deadline_ticks);
        $self.spoiled = true;
        let r = $call.await;
        $self.spoiled = r.is_err();
        r.map_err(|e| $self.failure(e))
    }};
}

impl Instance {
    pub(super) async fn new(
        engine: &Engine,
        pre: &Pre,
        limits: &AdapterConfig,
        deadline_ticks: u64,
        clock: &Arc<Clock>,
    ) -> anyhow::Result<Self> {
        let state = GuestState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            limiter: MemoryCap {
                max_bytes: (limits.memory_limit_mib.max(1) * 1024 * 1024) as usize,
                refused: false,
                peak: 0,
                initial: 0,
            },
            adapter: String::new(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks);
        let running = clock.call();
        let bindings = match pre {
            Pre::V0_1(pre) => Bindings::V0_1(pre.instantiate_async(&mut store).await?),
            Pre::V0_2(pre) => Bindings::V0_2(pre.instantiate_async(&mut store).await?),
            Pre::V0_3(pre) => Bindings::V0_3(pre.instantiate_async(&mut store).await?),
        };
        drop(running);
        Ok(Self {
            store,
            bindings,
            deadline_ticks,
            clock: clock.clone(),
            served: 0,
            max_served: limits.reuse_calls.max(1),
            spoiled: false,
            closed: Vec::new(),
        })
    }

    /// Count one more request or stream served.
    pub(super) fn serve(&mut self) {
        self.served = self.served.saturating_add(1);
    }

    /// Whether the instance may serve another request once the pending
    /// stream translators are dropped: every guest call returned, it has
    /// requests left and its memory stayed small.
    pub fn reusable(&self) -> bool {
        !self.spoiled && self.may_serve_more() && self.small_enough_to_hold()
    }

    /// A guest call trapped or was abandoned half-way.
    pub fn spoiled(&self) -> bool {
        self.spoiled
    }

    /// Whether the instance has requests or streams left to serve.
    pub fn may_serve_more(&self) -> bool {
        self.served < self.max_served
    }

    /// Whether the instance's memory has grown by at most
    /// [`HELD_MEMORY_GROWTH`]; a larger one is not held through a wait.
    pub fn small_enough_to_hold(&self) -> bool {
        let limiter = &self.store.data().limiter;
        limiter.peak.saturating_sub(limiter.initial) <= HELD_MEMORY_GROWTH
    }

    /// The stream `translator` is over; it is dropped in the guest before the
    /// instance's next call (see [`Instance::reset`]).
    pub fn close_stream(&mut self, translator: StreamTranslator) {
        self.closed.push(translator.0);
    }

    /// Ready a kept instance for its next call: drop the translators of
    /// the streams it served. False if the guest failed doing so.
    pub async fn reset(&mut self) -> bool {
        while let Some(translator) = self.closed.pop() {
            let _running = self.clock.call();
            self.store.set_epoch_deadline(self.deadline_ticks);
            self.spoiled = true;
            if translator
                .resource_drop_async(&mut self.store)
                .await
                .is_err()
            {
                return false;
            }
            self.spoiled = false;
        }
        true
    }

    /// Name the adapter in the guest's log lines.
    pub fn set_log_name(&mut self, name: &str) {
        name.clone_into(&mut self.store.data_mut().adapter);
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
        match &self.bindings {
            Bindings::V0_1(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(self, a.call_info(&mut self.store)).map(Into::into)
            }
            Bindings::V0_2(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(self, a.call_info(&mut self.store)).map(Into::into)
            }
            Bindings::V0_3(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(self, a.call_info(&mut self.store))
            }
        }
    }

    pub async fn prepare_request(
        &mut self,
        call: &Call,
        body: &[u8],
    ) -> Result<Result<UpstreamRequest, AdapterError>, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(b) => {
                let a = b.transit_adapter_adapter();
                let call = v0_1_0::Call::from(call);
                guest_call!(self, a.call_prepare_request(&mut self.store, &call, body))
                    .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_2(b) => {
                let a = b.transit_adapter_adapter();
                let call = v0_2_0::Call::from(call);
                guest_call!(self, a.call_prepare_request(&mut self.store, &call, body))
                    .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_3(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(self, a.call_prepare_request(&mut self.store, call, body))
            }
        }
    }

    pub async fn parse_response(
        &mut self,
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Result<Translated, AdapterError>, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(b) => {
                let a = b.transit_adapter_adapter();
                let call = v0_1_0::Call::from(call);
                let response = v0_1_0::UpstreamResponse::from(response);
                guest_call!(
                    self,
                    a.call_parse_response(&mut self.store, &call, &response)
                )
                .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_2(b) => {
                let a = b.transit_adapter_adapter();
                let call = v0_2_0::Call::from(call);
                let response = v0_2_0::UpstreamResponse::from(response);
                guest_call!(
                    self,
                    a.call_parse_response(&mut self.store, &call, &response)
                )
                .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_3(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(self, a.call_parse_response(&mut self.store, call, response))
            }
        }
    }

    pub async fn map_error(
        &mut self,
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<AdapterError, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(b) => {
                let a = b.transit_adapter_adapter();
                let call = v0_1_0::Call::from(call);
                let response = v0_1_0::UpstreamResponse::from(response);
                guest_call!(self, a.call_map_error(&mut self.store, &call, &response))
                    .map(Into::into)
            }
            Bindings::V0_2(b) => {
                let a = b.transit_adapter_adapter();
                let call = v0_2_0::Call::from(call);
                let response = v0_2_0::UpstreamResponse::from(response);
                guest_call!(self, a.call_map_error(&mut self.store, &call, &response))
                    .map(Into::into)
            }
            Bindings::V0_3(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(self, a.call_map_error(&mut self.store, call, response))
            }
        }
    }

    pub async fn open_stream(&mut self, call: &Call) -> Result<StreamTranslator, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(b) => {
                let a = b.transit_adapter_adapter();
                let call = v0_1_0::Call::from(call);
                guest_call!(
                    self,
                    a.stream_translator()
                        .call_constructor(&mut self.store, &call)
                )
            }
            Bindings::V0_2(b) => {
                let a = b.transit_adapter_adapter();
                let call = v0_2_0::Call::from(call);
                guest_call!(
                    self,
                    a.stream_translator()
                        .call_constructor(&mut self.store, &call)
                )
            }
            Bindings::V0_3(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(
                    self,
                    a.stream_translator()
                        .call_constructor(&mut self.store, call)
                )
            }
        }
        .map(StreamTranslator)
    }

    pub async fn push(
        &mut self,
        stream: &StreamTranslator,
        events: &[Event],
    ) -> Result<Result<ChunkBatch, AdapterError>, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(b) => {
                let a = b.transit_adapter_adapter();
                let events: Vec<v0_1_0::Event> = events.iter().map(Into::into).collect();
                guest_call!(
                    self,
                    a.stream_translator()
                        .call_push(&mut self.store, stream.0, &events)
                )
                .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_2(b) => {
                let a = b.transit_adapter_adapter();
                let events: Vec<v0_2_0::Event> = events.iter().map(Into::into).collect();
                guest_call!(
                    self,
                    a.stream_translator()
                        .call_push(&mut self.store, stream.0, &events)
                )
                .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_3(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(
                    self,
                    a.stream_translator()
                        .call_push(&mut self.store, stream.0, events)
                )
            }
        }
    }

    pub async fn finish(
        &mut self,
        stream: &StreamTranslator,
    ) -> Result<Result<ChunkBatch, AdapterError>, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(
                    self,
                    a.stream_translator().call_finish(&mut self.store, stream.0)
                )
                .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_2(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(
                    self,
                    a.stream_translator().call_finish(&mut self.store, stream.0)
                )
                .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_3(b) => {
                let a = b.transit_adapter_adapter();
                guest_call!(
                    self,
                    a.stream_translator().call_finish(&mut self.store, stream.0)
                )
            }
        }
    }

    pub async fn prepare_submit(
        &mut self,
        call: &Call,
        body: &[u8],
    ) -> Result<Result<UpstreamRequest, AdapterError>, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(_) => Ok(Err(missing("prepare-submit"))),
            Bindings::V0_2(b) => {
                let t = b.transit_adapter_tasks();
                let call = v0_2_0::Call::from(call);
                guest_call!(self, t.call_prepare_submit(&mut self.store, &call, body))
                    .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_3(b) => {
                let t = b.transit_adapter_tasks();
                guest_call!(self, t.call_prepare_submit(&mut self.store, call, body))
            }
        }
    }

    pub async fn parse_submit(
        &mut self,
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Result<Submitted, AdapterError>, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(_) => Ok(Err(missing("parse-submit"))),
            Bindings::V0_2(b) => {
                let t = b.transit_adapter_tasks();
                let call = v0_2_0::Call::from(call);
                let response = v0_2_0::UpstreamResponse::from(response);
                guest_call!(self, t.call_parse_submit(&mut self.store, &call, &response))
                    .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_3(b) => {
                let t = b.transit_adapter_tasks();
                guest_call!(self, t.call_parse_submit(&mut self.store, call, response))
            }
        }
    }

    pub async fn prepare_poll(
        &mut self,
        call: &Call,
        upstream_id: &str,
    ) -> Result<Result<UpstreamRequest, AdapterError>, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(_) => Ok(Err(missing("prepare-poll"))),
            Bindings::V0_2(b) => {
                let t = b.transit_adapter_tasks();
                let call = v0_2_0::Call::from(call);
                guest_call!(
                    self,
                    t.call_prepare_poll(&mut self.store, &call, upstream_id)
                )
                .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_3(b) => {
                let t = b.transit_adapter_tasks();
                guest_call!(
                    self,
                    t.call_prepare_poll(&mut self.store, call, upstream_id)
                )
            }
        }
    }

    pub async fn parse_poll(
        &mut self,
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Result<TaskState, AdapterError>, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(_) => Ok(Err(missing("parse-poll"))),
            Bindings::V0_2(b) => {
                let t = b.transit_adapter_tasks();
                let call = v0_2_0::Call::from(call);
                let response = v0_2_0::UpstreamResponse::from(response);
                guest_call!(self, t.call_parse_poll(&mut self.store, &call, &response))
                    .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_3(b) => {
                let t = b.transit_adapter_tasks();
                guest_call!(self, t.call_parse_poll(&mut self.store, call, response))
            }
        }
    }

    pub async fn prepare_content(
        &mut self,
        call: &Call,
        upstream_id: &str,
        variant: &str,
    ) -> Result<Result<UpstreamRequest, AdapterError>, GuestFailure> {
        match &self.bindings {
            Bindings::V0_1(_) => Ok(Err(missing("prepare-content"))),
            Bindings::V0_2(b) => {
                let t = b.transit_adapter_tasks();
                let call = v0_2_0::Call::from(call);
                guest_call!(
                    self,
                    t.call_prepare_content(&mut self.store, &call, upstream_id, variant)
                )
                .map(|r| r.map(Into::into).map_err(Into::into))
            }
            Bindings::V0_3(b) => {
                let t = b.transit_adapter_tasks();
                guest_call!(
                    self,
                    t.call_prepare_content(&mut self.store, call, upstream_id, variant)
                )
            }
        }
    }
}

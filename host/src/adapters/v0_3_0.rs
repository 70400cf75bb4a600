//! Host bindings for `transit:adapter@0.3.0`, generated from its frozen copy
//! (`wit/since_v0.3.0`). Its types are the host's own: the relay, the task
//! poller and the conformance kit speak them, and older versions convert.

wasmtime::component::bindgen!({
    path: "../wit/since_v0.3.0",
    world: "transit-adapter",
    exports: { default: async },
});

pub use self::exports::transit::adapter::tasks::{Submitted, TaskState, TaskStatus};
pub use self::transit::adapter::types::{
    AdapterError, AdapterInfo, Answer, Call, Channel, ChunkBatch, Event, Framing, RateLimit,
    Translated, UpstreamError, UpstreamRequest, UpstreamResponse, Usage,
};

use super::guest::{GuestState, Level};

host_imports!();

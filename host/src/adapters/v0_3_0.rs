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

use self::transit::adapter::host::LogLevel;
use super::guest::{GuestState, Level};

impl self::transit::adapter::types::Host for GuestState {}

impl self::transit::adapter::host::Host for GuestState {
    fn log(&mut self, level: LogLevel, message: String) {
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

//! Host bindings for `transit:adapter@0.1.0`, generated from the frozen copy
//! of that version (`wit/since_v0.1.0`), and the conversions between its
//! types and the host's own (the newest version's). A 0.1.0 component never
//! sees what later versions added: client headers, raw framing, tasks, the
//! host reading OpenAI answers.

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

use super::guest::{GuestState, Level};
use super::v0_3_0 as current;

host_imports!();
conversions_of_unchanged_records!();

impl From<&current::Call> for Call {
    fn from(c: &current::Call) -> Self {
        Self {
            endpoint: c.endpoint.clone(),
            model: c.model.clone(),
            stream: c.stream,
            include_usage: c.include_usage,
            channel: Channel {
                kind: c.channel.kind.clone(),
                base_url: c.channel.base_url.clone(),
                api_key: c.channel.api_key.clone(),
                options: c.channel.options.clone(),
            },
        }
    }
}

impl From<Framing> for current::Framing {
    fn from(f: Framing) -> Self {
        match f {
            Framing::Sse => Self::Sse,
            Framing::Ndjson => Self::Ndjson,
            Framing::AwsEventstream => Self::AwsEventstream,
        }
    }
}

impl From<UpstreamRequest> for current::UpstreamRequest {
    fn from(r: UpstreamRequest) -> Self {
        Self {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
            framing: r.framing.into(),
            usage: None,
            answer: current::Answer::Adapter,
        }
    }
}

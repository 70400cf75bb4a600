//! Host bindings for `transit:adapter@0.2.0`, generated from its frozen copy
//! (`wit/since_v0.2.0`), and the conversions between its types and the
//! host's own (the newest version's). A 0.2.0 component never sees what
//! later versions added; its answers are always its own to read
//! (`answer::adapter`).

wasmtime::component::bindgen!({
    path: "../wit/since_v0.2.0",
    world: "transit-adapter",
    exports: { default: async },
});

pub use self::exports::transit::adapter::tasks::{Submitted, TaskState, TaskStatus};
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
            headers: c.headers.clone(),
        }
    }
}

impl From<Framing> for current::Framing {
    fn from(f: Framing) -> Self {
        match f {
            Framing::Sse => Self::Sse,
            Framing::Ndjson => Self::Ndjson,
            Framing::AwsEventstream => Self::AwsEventstream,
            Framing::Raw => Self::Raw,
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
            usage: r.usage.map(Into::into),
            answer: current::Answer::Adapter,
        }
    }
}

impl From<TaskStatus> for current::TaskStatus {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Queued => Self::Queued,
            TaskStatus::Running => Self::Running,
            TaskStatus::Succeeded => Self::Succeeded,
            TaskStatus::Failed => Self::Failed,
        }
    }
}

impl From<Submitted> for current::Submitted {
    fn from(s: Submitted) -> Self {
        Self {
            upstream_id: s.upstream_id,
            status: s.status.into(),
        }
    }
}

impl From<TaskState> for current::TaskState {
    fn from(t: TaskState) -> Self {
        Self {
            status: t.status.into(),
            progress: t.progress,
            results: t.results,
            error: t.error,
            usage: t.usage.map(Into::into),
        }
    }
}

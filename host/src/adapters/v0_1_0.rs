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

use self::transit::adapter::host::LogLevel;
use super::guest::{GuestState, Level};
use super::v0_3_0 as current;

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

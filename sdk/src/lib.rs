//! Write Transit provider adapters.
//!
//! An adapter is a WebAssembly component that translates between the
//! client-facing API (OpenAI's, canonically) and one provider's API. The
//! gateway does all I/O: an adapter describes the upstream request, and
//! translates the response — whole bodies, or streams delivered as whole
//! events in batches.
//!
//! ```ignore
//! use transit_adapter_sdk::prelude::*;
//!
//! struct Echo;
//!
//! impl Adapter for Echo {
//!     type Stream = openai::PassthroughStream;
//!     fn info() -> AdapterInfo { AdapterInfo::new("echo", "0.1.0", &["chat.completions"]) }
//!     fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
//!         openai::prepare_chat(call, body, &format!("{}/v1/chat/completions", call.channel.base_url))
//!     }
//!     fn parse_response(_: &Call, r: &UpstreamResponse) -> Result<Translated, AdapterError> {
//!         openai::parse_chat(r)
//!     }
//! }
//!
//! export_adapter!(Echo);
//! ```
//!
//! See `sdk/README.md` for the contract, the limits a component runs under,
//! and the versioning policy.

// Lets the generated code name this crate by its public path, the same one
// it uses when expanded in an adapter crate.
extern crate self as transit_adapter_sdk;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "transit-adapter",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        export_macro_name: "__export_transit_adapter",
        default_bindings_module: "transit_adapter_sdk::__private::bindings",
        runtime_path: "transit_adapter_sdk::__private::wit_bindgen::rt",
    });
}

pub mod crypto;
pub mod errors;
pub mod json;
pub mod openai;
pub mod sse;
pub mod testing;
pub mod time;
pub mod url;

use std::cell::RefCell;
use std::marker::PhantomData;

pub use bindings::exports::transit::adapter::tasks::{Submitted, TaskState, TaskStatus};
pub use bindings::transit::adapter::types::{
    AdapterError, AdapterInfo, Answer, Call, Channel, ChunkBatch, Event, Framing, RateLimit,
    Translated, UpstreamError, UpstreamRequest, UpstreamResponse, Usage,
};

/// The version of the `transit:adapter` WIT package this SDK builds against.
pub const WIT_VERSION: &str = "0.3.0";

/// Everything an adapter usually needs, in one import.
pub mod prelude {
    pub use crate::errors;
    pub use crate::openai;
    pub use crate::{
        Adapter, AdapterError, AdapterInfo, Answer, Call, Channel, ChunkBatch, Event, Framing,
        StreamTranslator, Submitted, TaskState, TaskStatus, Translated, UpstreamRequest,
        UpstreamResponse, Usage, export_adapter, log,
    };
}

/// A provider adapter. Implement it on a unit struct and pass that struct to
/// [`export_adapter!`].
///
/// An instance serves one request at a time, and may then serve more of the
/// same user's (see the guide's Limits): keep nothing in statics that a
/// request needs to find or that the next must not see, and keep per-stream
/// state in [`Adapter::Stream`].
pub trait Adapter: 'static {
    /// State of one streamed response.
    type Stream: StreamTranslator;

    /// Name, version and endpoints. Called once when the gateway loads the
    /// component; must not fail.
    fn info() -> AdapterInfo;

    /// Build the upstream request for a client call.
    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError>;

    /// Translate a successful non-streamed upstream response.
    fn parse_response(call: &Call, response: &UpstreamResponse)
    -> Result<Translated, AdapterError>;

    /// Classify a failed upstream response. The default reads OpenAI-shaped
    /// error bodies and maps the status code (see [`errors::from_response`]).
    fn map_error(_call: &Call, response: &UpstreamResponse) -> AdapterError {
        errors::from_response(response)
    }

    /// Asynchronous tasks (video, image generation): build the submit
    /// request. `call.endpoint` says which API the client called ("videos",
    /// "video.generations", "images.generations"). The default: no tasks.
    fn prepare_submit(call: &Call, _body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        Err(errors::unsupported_endpoint(call))
    }

    /// Read the upstream's 2xx answer to a submit: its task id.
    fn parse_submit(call: &Call, _response: &UpstreamResponse) -> Result<Submitted, AdapterError> {
        Err(errors::unsupported_endpoint(call))
    }

    /// Build the request that asks how task `upstream_id` is doing.
    fn prepare_poll(call: &Call, _upstream_id: &str) -> Result<UpstreamRequest, AdapterError> {
        Err(errors::unsupported_endpoint(call))
    }

    /// Read the upstream's 2xx answer to a poll.
    fn parse_poll(call: &Call, _response: &UpstreamResponse) -> Result<TaskState, AdapterError> {
        Err(errors::unsupported_endpoint(call))
    }

    /// Build the request that downloads a finished task's content
    /// (`variant`: "video", "thumbnail", ...). Adapters whose results are
    /// public URLs keep the default.
    fn prepare_content(
        call: &Call,
        _upstream_id: &str,
        _variant: &str,
    ) -> Result<UpstreamRequest, AdapterError> {
        Err(errors::unsupported_endpoint(call))
    }
}

/// Translates one streamed upstream response into client-facing chunks.
pub trait StreamTranslator: 'static {
    /// Called when the upstream answered 2xx and the body starts streaming.
    fn new(call: Call) -> Self;

    /// Translate a batch of whole upstream events.
    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError>;

    /// Called once after the last event (or when the upstream closed the
    /// connection). Emit whatever was buffered.
    fn finish(&mut self) -> Result<ChunkBatch, AdapterError> {
        Ok(ChunkBatch::empty())
    }
}

/// Write a line to the gateway's log. It is tagged with the adapter's name and
/// the request id; never log the channel's key.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::transit::adapter::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

pub use bindings::transit::adapter::host::LogLevel;

impl AdapterInfo {
    /// Info for an adapter serving `endpoints`.
    pub fn new(name: &str, version: &str, endpoints: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            description: String::new(),
        }
    }

    /// Add a one-line description.
    pub fn with_description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }
}

impl Usage {
    /// Usage of `input` prompt tokens and `output` completion tokens.
    pub fn tokens(input: u64, output: u64) -> Self {
        Self {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            units: Vec::new(),
        }
    }

    /// Usage of `amount` of a per-call unit (`images`, `seconds`), priced
    /// by models with a per-call price.
    pub fn units(name: &str, amount: u64) -> Self {
        let mut usage = Self::tokens(0, 0);
        usage.units = vec![(name.to_owned(), amount)];
        usage
    }
}

impl ChunkBatch {
    /// A batch with nothing in it.
    pub fn empty() -> Self {
        Self {
            chunks: Vec::new(),
            usage: None,
            done: false,
        }
    }
}

impl UpstreamResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Call {
    /// The client header named `name` (lower-case), if it was forwarded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Channel {
    /// The channel option named `name`, if the operator set it.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The extra request headers the operator set as `header.NAME` options,
    /// as `(NAME, value)` in the options' order. An option named just
    /// `header.` (no header name) is skipped.
    pub fn option_headers(&self) -> Vec<(String, String)> {
        self.options
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("header.")
                    .filter(|name| !name.is_empty())
                    .map(|name| (name.to_owned(), v.clone()))
            })
            .collect()
    }
}

impl UpstreamRequest {
    /// A JSON `POST` to `url`, framed as SSE when it streams.
    pub fn post_json(url: String, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        let mut headers = headers;
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        Self {
            method: "POST".to_owned(),
            url,
            headers,
            body,
            framing: Framing::Sse,
            usage: None,
            answer: Answer::Adapter,
        }
    }

    /// The 2xx answer is in OpenAI's shape, already the client's: the host
    /// relays it and reads its usage itself, with no `parse_response` call
    /// and no stream translator (see [`Answer::Openai`]). For upstreams
    /// that speak OpenAI's dialect as it is, on `chat.completions`,
    /// `completions` and `embeddings`.
    pub fn with_openai_answer(mut self) -> Self {
        self.answer = Answer::Openai;
        self
    }

    /// A `GET` of `url` (task polls, downloads).
    pub fn get(url: String, headers: Vec<(String, String)>) -> Self {
        Self {
            method: "GET".to_owned(),
            url,
            headers,
            body: Vec::new(),
            framing: Framing::Sse,
            usage: None,
            answer: Answer::Adapter,
        }
    }
}

impl TaskState {
    /// A task that is still being worked on.
    pub fn running(status: TaskStatus, progress: u8) -> Self {
        Self {
            status,
            progress: progress.min(100),
            results: Vec::new(),
            error: None,
            usage: None,
        }
    }

    /// A task that finished with `results` (URLs; empty when the content is
    /// downloaded through [`Adapter::prepare_content`]).
    pub fn succeeded(results: Vec<String>) -> Self {
        Self {
            status: TaskStatus::Succeeded,
            progress: 100,
            results,
            error: None,
            usage: None,
        }
    }

    /// A task that failed, and why.
    pub fn failed(error: String) -> Self {
        Self {
            status: TaskStatus::Failed,
            progress: 100,
            results: Vec::new(),
            error: Some(error),
            usage: None,
        }
    }
}

/// Export `$adapter` (a type implementing [`Adapter`]) as the component's
/// `transit:adapter/adapter` interface. Use it once per adapter crate.
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        // Exports only exist in the component; a native build of the crate
        // (for its unit tests) has nothing to export.
        #[cfg(target_arch = "wasm32")]
        type __TransitAdapterGlue = $crate::__private::Glue<$adapter>;
        #[cfg(target_arch = "wasm32")]
        $crate::__private::bindings::__export_transit_adapter!(
            __TransitAdapterGlue with_types_in $crate::__private::bindings
        );
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use wit_bindgen;

    use super::*;
    use crate::bindings::exports::transit::adapter::adapter::{Guest, GuestStreamTranslator};
    use crate::bindings::exports::transit::adapter::tasks::Guest as TasksGuest;

    /// Connects an [`Adapter`] to the generated export traits.
    pub struct Glue<A>(PhantomData<A>);

    /// The resource representation of one stream.
    pub struct TranslatorCell<S>(RefCell<S>);

    impl<A: Adapter> Guest for Glue<A> {
        type StreamTranslator = TranslatorCell<A::Stream>;

        fn info() -> AdapterInfo {
            A::info()
        }

        fn prepare_request(call: Call, body: Vec<u8>) -> Result<UpstreamRequest, AdapterError> {
            A::prepare_request(&call, &body)
        }

        fn parse_response(
            call: Call,
            response: UpstreamResponse,
        ) -> Result<Translated, AdapterError> {
            A::parse_response(&call, &response)
        }

        fn map_error(call: Call, response: UpstreamResponse) -> AdapterError {
            A::map_error(&call, &response)
        }
    }

    impl<A: Adapter> TasksGuest for Glue<A> {
        fn prepare_submit(call: Call, body: Vec<u8>) -> Result<UpstreamRequest, AdapterError> {
            A::prepare_submit(&call, &body)
        }

        fn parse_submit(call: Call, response: UpstreamResponse) -> Result<Submitted, AdapterError> {
            A::parse_submit(&call, &response)
        }

        fn prepare_poll(call: Call, upstream_id: String) -> Result<UpstreamRequest, AdapterError> {
            A::prepare_poll(&call, &upstream_id)
        }

        fn parse_poll(call: Call, response: UpstreamResponse) -> Result<TaskState, AdapterError> {
            A::parse_poll(&call, &response)
        }

        fn prepare_content(
            call: Call,
            upstream_id: String,
            variant: String,
        ) -> Result<UpstreamRequest, AdapterError> {
            A::prepare_content(&call, &upstream_id, &variant)
        }
    }

    impl<S: StreamTranslator> GuestStreamTranslator for TranslatorCell<S> {
        fn new(call: Call) -> Self {
            Self(RefCell::new(S::new(call)))
        }

        fn push(&self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
            match self.0.try_borrow_mut() {
                Ok(mut s) => s.push(events),
                Err(_) => Err(AdapterError::Internal(
                    "stream translator re-entered".into(),
                )),
            }
        }

        fn finish(&self) -> Result<ChunkBatch, AdapterError> {
            match self.0.try_borrow_mut() {
                Ok(mut s) => s.finish(),
                Err(_) => Err(AdapterError::Internal(
                    "stream translator re-entered".into(),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_headers_are_the_header_options() {
        let mut call = testing::call("chat.completions", "m", false);
        call.channel.options = vec![
            ("organization".into(), "org".into()),
            ("header.X-Trace".into(), "t1".into()),
            ("header.".into(), "nameless".into()),
            ("Header.X-Case".into(), "no".into()),
            ("header.x-second".into(), "".into()),
        ];
        assert_eq!(
            call.channel.option_headers(),
            vec![
                ("X-Trace".to_owned(), "t1".to_owned()),
                ("x-second".to_owned(), String::new()),
            ]
        );
        call.channel.options.clear();
        assert!(call.channel.option_headers().is_empty());
    }
}

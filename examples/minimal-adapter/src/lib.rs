//! A complete Transit adapter: an OpenAI-compatible provider that wants its
//! key in an `x-api-key` header instead of a bearer token.

use transit_adapter_sdk::prelude::*;

struct Minimal;

impl Adapter for Minimal {
    type Stream = openai::PassthroughStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("minimal", "0.1.0", &["chat.completions"])
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        let url = openai::endpoint_url(&call.channel.base_url, "chat/completions");
        let mut request = openai::prepare_chat(call, body, &url)?;
        request.headers.retain(|(name, _)| name != "authorization");
        request.headers.push(("x-api-key".into(), call.channel.api_key.clone()));
        Ok(request)
    }

    fn parse_response(_: &Call, response: &UpstreamResponse) -> Result<Translated, AdapterError> {
        openai::parse_chat(response)
    }
}

export_adapter!(Minimal);

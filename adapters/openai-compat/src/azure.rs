//! Azure OpenAI (channel types `azure`, `azure-openai`).
//!
//! - URL: `{base}/openai/deployments/{deployment}/{path}?api-version={v}`
//!   for `chat/completions`, `embeddings` and `images/generations`. The base
//!   URL is the resource endpoint the operator gives
//!   (`https://{resource}.openai.azure.com`; a trailing `/openai` is
//!   accepted); there is no default.
//! - The deployment is the channel option `deployment`, else the upstream
//!   (mapped) model name. `api-version` comes from the channel option
//!   `api-version` (default [`DEFAULT_API_VERSION`]); the value `v1` selects
//!   Azure's v1 API instead: `{base}/openai/v1/{path}`, no `api-version`,
//!   the deployment named in the body's `model`.
//! - Auth: the `api-key` header (not a bearer token).
//! - Errors: `{"error":{"code","message",...}}` with Azure's codes:
//!   `content_filter` (and `innererror.code` `ResponsibleAIPolicyViolation`)
//!   → 400 `content_filter`; `DeploymentNotFound` and the bare `404
//!   Resource not found` (a wrong `api-version` or path) → 404, retryable
//!   (the channel is misconfigured, another may serve); 401 → credentials;
//!   429 → rate limit with `retry-after(-ms)` or the "retry after N seconds"
//!   of the message.
//!
//! Responses are OpenAI's with Azure's `prompt_filter_results` /
//! `content_filter_results` annotations, which pass through; a stream's
//! leading annotation-only chunk is dropped (see [`crate::CompatStream`]).
//! `finish_reason: "content_filter"` is already OpenAI's value.

use serde_json::{Map, Value};
use transit_adapter_sdk::prelude::*;

use transit_adapter_sdk::url::{encode, segment};

use crate::{Provider, fail};

/// The `api-version` used when the channel sets none (the latest GA data
/// plane version).
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

fn api_version(call: &Call) -> &str {
    call.channel
        .option("api-version")
        .or_else(|| call.channel.option("api_version"))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_API_VERSION)
}

fn deployment(call: &Call) -> &str {
    call.channel
        .option("deployment")
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(&call.model)
}

/// The request URL of `path`.
pub fn url(call: &Call, path: &str) -> Result<String, AdapterError> {
    let base = call.channel.base_url.trim_end_matches('/');
    if base.is_empty() {
        return Err(errors::internal(
            "Azure OpenAI channels need a base_url: https://{resource}.openai.azure.com",
        ));
    }
    let base = base.strip_suffix("/openai").unwrap_or(base);
    let version = api_version(call);
    if version.eq_ignore_ascii_case("v1") {
        return Ok(format!("{base}/openai/v1/{path}"));
    }
    Ok(format!(
        "{base}/openai/deployments/{}/{path}?api-version={}",
        segment("Azure deployment", deployment(call))?,
        encode(version)
    ))
}

/// `api-key: KEY`.
pub fn headers(call: &Call) -> Vec<(String, String)> {
    vec![("api-key".to_owned(), call.channel.api_key.clone())]
}

/// With the v1 API the body's `model` names the deployment.
pub fn adjust_model(call: &Call, request: &mut Map<String, Value>) {
    if api_version(call).eq_ignore_ascii_case("v1") {
        request.insert(
            "model".to_owned(),
            Value::String(deployment(call).to_owned()),
        );
    }
}

/// Chat bodies go as the client sent them (Azure reads OpenAI's chat
/// parameters, `max_completion_tokens` and `stream_options` included).
pub fn adjust_chat(call: &Call, request: &mut Map<String, Value>) {
    adjust_model(call, request);
}

/// Classify an Azure error answer.
pub fn map_error(response: &UpstreamResponse) -> AdapterError {
    let body = fail::body_json(response);
    let error = body.as_ref().and_then(|b| b.get("error"));
    let code = fail::code_text(error.and_then(|e| e.get("code")));
    let inner = fail::code_text(
        error
            .and_then(|e| e.get("innererror"))
            .and_then(|i| i.get("code")),
    );
    let message = fail::text(error.and_then(|e| e.get("message")))
        .unwrap_or_else(|| fail::fallback_message(response));
    if code.as_deref() == Some("content_filter")
        || inner.as_deref() == Some("ResponsibleAIPolicyViolation")
    {
        return fail::content_filter(message);
    }
    match (response.status, code.as_deref()) {
        (_, Some("DeploymentNotFound")) | (404, _) => fail::upstream(
            404,
            true,
            format!("{message} (check the channel's deployment, api-version and base URL)"),
            code,
        ),
        (401 | 403, _) => fail::auth(Provider::Azure, code.as_deref(), &message),
        (429, _) => fail::rate_limited(response, message),
        _ => fail::by_status(response, message, code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::{CompatStream, OpenAiCompat};
    use transit_adapter_sdk::testing::{response, sse_events};

    const REQUEST: &[u8] = include_bytes!("../fixtures/chat_request_tools.json");

    fn azure_call(endpoint: &str, stream: bool) -> Call {
        let mut c = call("azure", endpoint, "gpt-4o", stream);
        c.channel.base_url = "https://contoso.openai.azure.com/".into();
        c
    }

    #[test]
    fn chat_goes_to_the_deployment_with_api_key_and_version() {
        let c = azure_call("chat.completions", false);
        let req = OpenAiCompat::prepare_request(&c, REQUEST).unwrap();
        assert_eq!(
            req.url,
            "https://contoso.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(header(&req, "api-key"), Some("sk-test"));
        assert_eq!(header(&req, "authorization"), None);
        let sent = body(&req);
        assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(sent["response_format"]["type"], "json_object");
        assert_eq!(sent["max_completion_tokens"], 512);
    }

    #[test]
    fn options_pick_deployment_version_and_v1() {
        let mut c = azure_call("embeddings", false);
        c.channel.base_url = "https://contoso.openai.azure.com/openai".into();
        c.channel.options = vec![
            ("deployment".into(), "embed prod".into()),
            ("api-version".into(), "2025-04-01-preview".into()),
        ];
        let req = OpenAiCompat::prepare_request(&c, br#"{"model":"x","input":"hi"}"#).unwrap();
        assert_eq!(
            req.url,
            "https://contoso.openai.azure.com/openai/deployments/embed%20prod/embeddings?api-version=2025-04-01-preview"
        );
        c.channel.options = vec![
            ("deployment".into(), "embed-prod".into()),
            ("api-version".into(), "v1".into()),
        ];
        let req = OpenAiCompat::prepare_request(&c, br#"{"model":"x","input":"hi"}"#).unwrap();
        assert_eq!(
            req.url,
            "https://contoso.openai.azure.com/openai/v1/embeddings"
        );
        assert_eq!(body(&req)["model"], "embed-prod");
    }

    #[test]
    fn images_use_the_same_scheme_and_count_images() {
        let mut c = azure_call("images.generations", false);
        c.model = "dall-e-3".into();
        let req = OpenAiCompat::prepare_request(
            &c,
            br#"{"model":"dall-e-3","prompt":"a lighthouse","n":1,"size":"1024x1024"}"#,
        )
        .unwrap();
        assert!(
            req.url.ends_with(
                "/openai/deployments/dall-e-3/images/generations?api-version=2024-10-21"
            )
        );
        let fixture = include_bytes!("../fixtures/azure/images_response.json");
        let t = OpenAiCompat::parse_response(&c, &response(200, fixture)).unwrap();
        assert_eq!(t.body, fixture.to_vec());
        assert_eq!(t.usage.unwrap().units, vec![("images".to_owned(), 1)]);
        let streamed = OpenAiCompat::prepare_request(
            &c,
            br#"{"model":"gpt-image-1","prompt":"a lighthouse","stream":true}"#,
        );
        assert!(matches!(streamed, Err(AdapterError::Unsupported(_))));
    }

    #[test]
    fn responses_pass_through_with_cached_tokens() {
        let c = azure_call("chat.completions", false);
        let fixture = include_bytes!("../fixtures/azure/chat_response_tools.json");
        let t = OpenAiCompat::parse_response(&c, &response(200, fixture)).unwrap();
        assert_eq!(t.body, fixture.to_vec());
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens),
            (1282, 17, 1024)
        );
        let e = OpenAiCompat::parse_response(
            &azure_call("embeddings", false),
            &response(
                200,
                include_bytes!("../fixtures/azure/embeddings_response.json"),
            ),
        )
        .unwrap();
        assert_eq!(e.usage, Some(Usage::tokens(6, 0)));
    }

    #[test]
    fn stream_drops_the_annotation_chunk_and_keeps_usage() {
        let transcript = include_str!("../fixtures/azure/chat_stream.sse");
        let mut quiet = CompatStream::new(azure_call("chat.completions", true));
        let batch = quiet.push(sse_events(transcript)).unwrap();
        let chunks = chunks(&batch);
        assert!(batch.done);
        assert_eq!(chunks.len(), 4, "annotation and usage chunks dropped");
        assert!(chunks.iter().all(|c| c["id"] != ""));
        assert_eq!(delta_text(&chunks, "content"), "Hello there!");
        assert_eq!(batch.usage, Some(Usage::tokens(19, 3)));
        assert!(quiet.finish().unwrap().chunks.is_empty());

        let mut c = azure_call("chat.completions", true);
        c.include_usage = true;
        let mut loud = CompatStream::new(c);
        let chunks = chunks_of(loud.push(sse_events(transcript)).unwrap());
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[4]["choices"], serde_json::json!([]));
        assert_eq!(chunks[4]["usage"]["total_tokens"], 22);
        assert!(loud.finish().unwrap().chunks.is_empty(), "sent once");
    }

    fn chunks_of(batch: transit_adapter_sdk::ChunkBatch) -> Vec<serde_json::Value> {
        chunks(&batch)
    }

    #[test]
    fn errors_are_mapped() {
        let c = azure_call("chat.completions", false);
        let filtered = OpenAiCompat::map_error(
            &c,
            &response(
                400,
                include_bytes!("../fixtures/azure/error_content_filter.json"),
            ),
        );
        assert!(matches!(&filtered, AdapterError::Upstream(e)
            if e.status == 400 && !e.retryable && e.code.as_deref() == Some("content_filter")
               && e.message.contains("content management policy")));
        assert!(matches!(
            OpenAiCompat::map_error(
                &c,
                &response(401, include_bytes!("../fixtures/azure/error_401.json"))
            ),
            AdapterError::Auth(_)
        ));
        let limited = OpenAiCompat::map_error(
            &c,
            &response(429, include_bytes!("../fixtures/azure/error_429.json")),
        );
        assert!(matches!(limited, AdapterError::RateLimited(r) if r.retry_after_ms == Some(6000)));
        let mut with_header = response(429, include_bytes!("../fixtures/azure/error_429.json"));
        with_header
            .headers
            .push(("retry-after-ms".into(), "1500".into()));
        assert!(matches!(
            OpenAiCompat::map_error(&c, &with_header),
            AdapterError::RateLimited(r) if r.retry_after_ms == Some(1500)
        ));
        for fixture in [
            &include_bytes!("../fixtures/azure/error_deployment_not_found.json")[..],
            &include_bytes!("../fixtures/azure/error_resource_not_found.json")[..],
        ] {
            assert!(matches!(
                OpenAiCompat::map_error(&c, &response(404, fixture)),
                AdapterError::Upstream(e) if e.status == 404 && e.retryable
            ));
        }
    }
}

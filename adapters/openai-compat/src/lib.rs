//! The OpenAI-compatible families whose differences are more than a base URL:
//! Azure OpenAI, Zhipu (GLM), Alibaba DashScope (Qwen), Cloudflare Workers AI
//! and Baidu Qianfan (ERNIE).
//!
//! All five speak OpenAI's chat wire format (bodies, SSE chunks, tools,
//! `response_format`, `reasoning_content`), so one crate serves them and
//! switches on the channel's type (`channel.kind`, or the channel option
//! `provider` when a channel names this adapter directly). What differs, and
//! lives in one module per provider:
//!
//! | provider | channel types | module |
//! |---|---|---|
//! | Azure OpenAI | `azure`, `azure-openai` | [`azure`]: deployment URLs, `api-version`, `api-key` header, content-filter errors; chat, embeddings, image generations |
//! | Zhipu | `zhipu`, `glm` | [`zhipu`]: HS256 JWT from `id.secret` keys, `tool_choice` and `thinking` rules, numeric business error codes, `sensitive` finish reasons |
//! | DashScope | `ali`, `dashscope`, `qwen` | [`ali`]: compatible-mode paths, `enable_thinking`, native rerank, DashScope error codes |
//! | Workers AI | `cloudflare`, `workers-ai` | [`cloudflare`]: account path, `ACCOUNT_ID\|TOKEN` keys, Cloudflare's error envelope |
//! | Qianfan | `baidu`, `qianfan`, `ernie` | [`baidu`]: v2 paths, `appid` header, v2 and legacy error bodies |
//!
//! One crate rather than five: the request and stream handling they share
//! (model mapping, usage reporting on streams, finish-reason and chunk
//! normalisation, usage held back into its own chunk) is most of the code,
//! and one component is one compile and one instance pool in the gateway.
//! It does not link `transit-adapter-openai`: that crate exports its own
//! component when built for wasm, and the two would clash in one binary.
//!
//! Streams go through [`CompatStream`]: chunks pass through in OpenAI's
//! shape, with upstream quirks ironed out — Azure's prompt-filter annotation
//! chunk (no choices, no id) is dropped; Zhipu's chunks get their `object`;
//! provider finish reasons (`sensitive`, `model_context_window_exceeded`)
//! become OpenAI's; usage that arrives inside the last content chunk (Zhipu)
//! is moved into the separate usage chunk OpenAI clients expect, sent only
//! when the client asked for it with `stream_options.include_usage`.
//!
//! Channel options read by every provider: `provider` (see above) and
//! `header.NAME` (an extra header sent upstream).

use serde_json::{Map, Value};
use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

pub mod ali;
pub mod azure;
pub mod baidu;
pub mod cloudflare;
pub mod fail;
pub mod zhipu;

/// The adapter.
pub struct OpenAiCompat;

const ENDPOINTS: &[&str] = &[
    "chat.completions",
    "embeddings",
    "images.generations",
    "rerank",
];

/// The provider a channel talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Azure,
    Zhipu,
    Ali,
    Cloudflare,
    Baidu,
}

impl Provider {
    /// The provider a channel type (or `provider` option) names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "azure" | "azure-openai" => Some(Self::Azure),
            "zhipu" | "glm" | "bigmodel" => Some(Self::Zhipu),
            "ali" | "dashscope" | "qwen" | "aliyun" => Some(Self::Ali),
            "cloudflare" | "workers-ai" => Some(Self::Cloudflare),
            "baidu" | "qianfan" | "ernie" => Some(Self::Baidu),
            _ => None,
        }
    }

    /// The provider of a channel: its `provider` option, else its type.
    pub fn of(channel: &Channel) -> Result<Self, AdapterError> {
        let name = channel
            .option("provider")
            .filter(|p| !p.trim().is_empty())
            .unwrap_or(&channel.kind);
        Self::from_name(name).ok_or_else(|| {
            errors::unsupported(format!(
                "the openai-compat adapter does not know the provider `{name}`: use a channel \
                 type azure, zhipu, ali, cloudflare or baidu, or set the channel option `provider`"
            ))
        })
    }

    /// A display name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Azure => "Azure OpenAI",
            Self::Zhipu => "Zhipu",
            Self::Ali => "DashScope",
            Self::Cloudflare => "Cloudflare Workers AI",
            Self::Baidu => "Baidu Qianfan",
        }
    }

    /// Whether this provider serves `endpoint` through this adapter.
    pub fn serves(self, endpoint: &str) -> bool {
        matches!(
            (self, endpoint),
            (_, "chat.completions" | "embeddings")
                | (Self::Azure, "images.generations")
                | (Self::Ali, "rerank")
        )
    }

    /// The URL of an OpenAI-style `path` (`chat/completions`, `embeddings`,
    /// `images/generations`).
    fn url(self, call: &Call, path: &str) -> Result<String, AdapterError> {
        match self {
            Self::Azure => azure::url(call, path),
            Self::Zhipu => Ok(zhipu::url(&call.channel.base_url, path)),
            Self::Ali => Ok(ali::compatible_url(&call.channel.base_url, path)),
            Self::Cloudflare => cloudflare::url(call, path),
            Self::Baidu => Ok(baidu::url(&call.channel.base_url, path)),
        }
    }

    /// The auth headers (and provider headers) of a request.
    fn auth_headers(self, call: &Call) -> Result<Vec<(String, String)>, AdapterError> {
        match self {
            Self::Azure => Ok(azure::headers(call)),
            Self::Zhipu => zhipu::headers(call),
            Self::Ali => Ok(ali::headers(call)),
            Self::Cloudflare => cloudflare::headers(call),
            Self::Baidu => baidu::headers(call),
        }
    }

    /// Provider rules for a chat body (after the model is set).
    fn adjust_chat(self, call: &Call, request: &mut Map<String, Value>) {
        match self {
            Self::Azure => azure::adjust_chat(call, request),
            Self::Zhipu => zhipu::adjust_chat(request),
            Self::Ali => ali::adjust_chat(call, request),
            Self::Cloudflare => cloudflare::adjust_chat(request),
            Self::Baidu => {}
        }
    }

    /// Whether streamed chats may ask for a usage chunk with
    /// `stream_options.include_usage`. Zhipu reports usage in its last chunk
    /// unasked, and the option is not part of its API.
    fn takes_stream_options(self) -> bool {
        !matches!(self, Self::Zhipu)
    }

    /// Classify a failed answer (or a 2xx body that carries an error).
    pub fn map_error(self, response: &UpstreamResponse) -> AdapterError {
        match self {
            Self::Azure => azure::map_error(response),
            Self::Zhipu => zhipu::map_error(response),
            Self::Ali => ali::map_error(response),
            Self::Cloudflare => cloudflare::map_error(response),
            Self::Baidu => baidu::map_error(response),
        }
    }

    /// Whether a 2xx JSON body is really an error in this provider's shape.
    fn is_error_body(self, value: &Value) -> bool {
        if value.get("error").is_some_and(|e| !e.is_null()) {
            return true;
        }
        match self {
            Self::Cloudflare => value.get("success") == Some(&Value::Bool(false)),
            Self::Baidu => value
                .get("error_code")
                .is_some_and(|c| c.as_i64().is_some_and(|c| c != 0)),
            Self::Ali => {
                value
                    .get("code")
                    .and_then(Value::as_str)
                    .is_some_and(|c| !c.is_empty())
                    && value.get("output").is_none()
                    && value.get("choices").is_none()
                    && value.get("data").is_none()
            }
            _ => false,
        }
    }
}

/// `Authorization: Bearer KEY`.
pub(crate) fn bearer(token: &str) -> (String, String) {
    ("authorization".to_owned(), format!("Bearer {token}"))
}

/// Whether a base URL has a path after its host.
pub(crate) fn has_path(base: &str) -> bool {
    let base = base.trim_end_matches('/');
    base.split_once("://")
        .map_or(base, |(_, rest)| rest)
        .contains('/')
}

/// Map `max_completion_tokens` to `max_tokens` for upstreams that only read
/// the older name.
pub(crate) fn max_tokens_from_completion(request: &mut Map<String, Value>) {
    if let Some(v) = request.remove("max_completion_tokens")
        && !request.contains_key("max_tokens")
    {
        request.insert("max_tokens".to_owned(), v);
    }
}

impl Adapter for OpenAiCompat {
    type Stream = CompatStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("openai-compat", env!("CARGO_PKG_VERSION"), ENDPOINTS).with_description(
            "Azure OpenAI, Zhipu GLM, Alibaba DashScope, Cloudflare Workers AI and Baidu Qianfan",
        )
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        let provider = Provider::of(&call.channel)?;
        if !provider.serves(&call.endpoint) {
            return Err(errors::unsupported_endpoint(call));
        }
        if call.endpoint == "rerank" {
            return ali::prepare_rerank(call, body);
        }
        let path = match call.endpoint.as_str() {
            "chat.completions" => "chat/completions",
            "embeddings" => "embeddings",
            _ => "images/generations",
        };
        let mut request = json::parse_object(body)?;
        request.insert("model".to_owned(), Value::String(call.model.clone()));
        if call.endpoint == "chat.completions" {
            if call.stream {
                request.insert("stream".to_owned(), Value::Bool(true));
                if provider.takes_stream_options() {
                    let options = request
                        .entry("stream_options")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !options.is_object() {
                        *options = Value::Object(Map::new());
                    }
                    if let Some(o) = options.as_object_mut() {
                        o.insert("include_usage".to_owned(), Value::Bool(true));
                    }
                } else {
                    request.remove("stream_options");
                }
            } else {
                request.remove("stream_options");
            }
            provider.adjust_chat(call, &mut request);
        } else {
            if call.stream || request.get("stream").and_then(Value::as_bool) == Some(true) {
                return Err(errors::unsupported(format!(
                    "streamed {} are not supported on {} channels",
                    call.endpoint,
                    provider.name()
                )));
            }
            request.remove("stream");
            request.remove("stream_options");
            if provider == Provider::Azure {
                azure::adjust_model(call, &mut request);
            }
        }
        let url = provider.url(call, path)?;
        let mut headers = provider.auth_headers(call)?;
        headers.extend(call.channel.option_headers());
        Ok(UpstreamRequest::post_json(
            url,
            headers,
            json::to_vec(&request)?,
        ))
    }

    fn parse_response(
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        let provider = Provider::of(&call.channel)?;
        match call.endpoint.as_str() {
            "rerank" => ali::parse_rerank(call, response),
            endpoint => parse_openai(provider, endpoint, response),
        }
    }

    fn map_error(call: &Call, response: &UpstreamResponse) -> AdapterError {
        match Provider::of(&call.channel) {
            Ok(provider) => provider.map_error(response),
            Err(_) => errors::from_response(response),
        }
    }
}

/// Translate a 2xx answer in OpenAI's shape (chat, embeddings, images).
fn parse_openai(
    provider: Provider,
    endpoint: &str,
    response: &UpstreamResponse,
) -> Result<Translated, AdapterError> {
    let mut value = json::parse_upstream(&response.body)?;
    if provider.is_error_body(&value) {
        return Err(provider.map_error(response));
    }
    let mut changed = false;
    if provider == Provider::Cloudflare
        && let Some(inner) = cloudflare::unwrap_envelope(&mut value)
    {
        value = inner;
        changed = true;
    }
    let Some(object) = value.as_object_mut() else {
        return Err(errors::upstream(
            502,
            true,
            "upstream answered with a JSON value that is not an object",
        ));
    };
    let mut usage = object.get("usage").and_then(openai::usage_from_json);
    match endpoint {
        "chat.completions" => {
            if !object.contains_key("object") {
                object.insert(
                    "object".to_owned(),
                    Value::String("chat.completion".to_owned()),
                );
                changed = true;
            }
            changed |= normalize_choices(object, "message")?;
        }
        "images.generations" => {
            let images = object
                .get("data")
                .and_then(Value::as_array)
                .map(|d| d.len() as u64);
            if let Some(images) = images {
                let mut u = usage.unwrap_or_else(|| Usage::tokens(0, 0));
                u.units.push(("images".to_owned(), images));
                usage = Some(u);
            }
        }
        _ => {}
    }
    let body = if changed {
        json::to_vec(&value)?
    } else {
        response.body.clone()
    };
    Ok(Translated {
        body,
        content_type: "application/json".to_owned(),
        usage,
    })
}

/// OpenAI's finish reason for a provider's. `Err` for a stop that means the
/// answer broke off (Zhipu's `network_error`).
fn finish_reason(reason: &str) -> Result<Option<&'static str>, AdapterError> {
    Ok(match reason {
        // Zhipu: generation stopped by its content safety checks.
        "sensitive" => Some("content_filter"),
        // Zhipu: the context window filled up.
        "model_context_window_exceeded" => Some("length"),
        "network_error" => {
            return Err(errors::upstream(
                502,
                true,
                "the upstream stopped generating because of an internal network error",
            ));
        }
        _ => None,
    })
}

/// Map every choice's finish reason to OpenAI's; `key` is `message` or
/// `delta`. Returns whether anything changed.
fn normalize_choices(object: &mut Map<String, Value>, key: &str) -> Result<bool, AdapterError> {
    let mut changed = false;
    let Some(choices) = object.get_mut("choices").and_then(Value::as_array_mut) else {
        return Ok(false);
    };
    for choice in choices {
        let Some(choice) = choice.as_object_mut() else {
            continue;
        };
        let mapped = match choice.get("finish_reason").and_then(Value::as_str) {
            Some(reason) => finish_reason(reason)?,
            None => None,
        };
        if let Some(mapped) = mapped {
            choice.insert("finish_reason".to_owned(), Value::String(mapped.to_owned()));
            changed = true;
        }
        // Legacy `function_call` finish with tool calls present.
        let has_tool_calls = choice
            .get(key)
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        if has_tool_calls
            && choice.get("finish_reason").and_then(Value::as_str) == Some("function_call")
        {
            choice.insert(
                "finish_reason".to_owned(),
                Value::String("tool_calls".to_owned()),
            );
            changed = true;
        }
    }
    Ok(changed)
}

/// Stream translator: OpenAI chunks in, OpenAI chunks out (see the crate
/// docs for what is normalised).
pub struct CompatStream {
    provider: Option<Provider>,
    include_usage: bool,
    /// The latest usage object, held back for the usage chunk.
    usage: Option<Value>,
    usage_sent: bool,
    /// `id`, `created`, `model` of the latest chunk.
    meta: (Value, Value, Value),
}

impl CompatStream {
    /// The usage-only chunk, if one is due.
    fn usage_chunk(&mut self) -> Result<Option<Vec<u8>>, AdapterError> {
        if !self.include_usage || self.usage_sent {
            return Ok(None);
        }
        let Some(usage) = self.usage.clone() else {
            return Ok(None);
        };
        self.usage_sent = true;
        let chunk = serde_json::json!({
            "id": self.meta.0,
            "object": "chat.completion.chunk",
            "created": self.meta.1,
            "model": self.meta.2,
            "choices": [],
            "usage": usage,
        });
        Ok(Some(json::to_vec(&chunk)?))
    }

    fn event_error(&self, data: &[u8]) -> AdapterError {
        let response = UpstreamResponse {
            status: 200,
            headers: Vec::new(),
            body: data.to_vec(),
        };
        let err = match self.provider {
            Some(p) => p.map_error(&response),
            None => errors::from_response(&response),
        };
        // A stream that already started cannot be retried elsewhere.
        match err {
            AdapterError::Upstream(mut e) => {
                e.retryable = false;
                AdapterError::Upstream(e)
            }
            other => other,
        }
    }
}

impl StreamTranslator for CompatStream {
    fn new(call: Call) -> Self {
        Self {
            provider: Provider::of(&call.channel).ok(),
            include_usage: call.include_usage,
            usage: None,
            usage_sent: false,
            meta: (
                Value::String(String::new()),
                Value::from(0),
                Value::String(call.model.clone()),
            ),
        }
    }

    fn push(&mut self, events: Vec<Event>) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        for event in events {
            let data = event.data.trim_ascii();
            if data.is_empty() {
                continue;
            }
            if data == b"[DONE]" {
                if let Some(chunk) = self.usage_chunk()? {
                    batch.chunks.push(chunk);
                }
                batch.done = true;
                continue;
            }
            let mut value: Value = serde_json::from_slice(data).map_err(|e| {
                errors::upstream(
                    502,
                    false,
                    format!("upstream sent a stream event that is not JSON: {e}"),
                )
            })?;
            let is_error = match self.provider {
                Some(p) => p.is_error_body(&value),
                None => value.get("error").is_some_and(|e| !e.is_null()),
            };
            if is_error {
                return Err(self.event_error(data));
            }
            let Some(object) = value.as_object_mut() else {
                return Err(errors::upstream(
                    502,
                    false,
                    "upstream sent a stream event that is not a JSON object",
                ));
            };
            let mut carries_usage = false;
            if let Some(usage) = object.remove("usage").filter(|u| !u.is_null())
                && let Some(parsed) = openai::usage_from_json(&usage)
            {
                batch.usage = Some(parsed);
                self.usage = Some(usage);
                carries_usage = true;
            }
            let has_choices = object
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty());
            if !has_choices {
                // A usage-only chunk (sent as the usage chunk, if asked
                // for), or an annotation chunk such as Azure's
                // `prompt_filter_results` (dropped: it has no choices and
                // no id, which OpenAI clients do not expect).
                if carries_usage {
                    self.remember_meta(object);
                    if let Some(chunk) = self.usage_chunk()? {
                        batch.chunks.push(chunk);
                    }
                }
                continue;
            }
            normalize_choices(object, "delta").map_err(|e| match e {
                AdapterError::Upstream(mut u) => {
                    u.retryable = false;
                    AdapterError::Upstream(u)
                }
                other => other,
            })?;
            if !object.contains_key("object") {
                object.insert(
                    "object".to_owned(),
                    Value::String("chat.completion.chunk".to_owned()),
                );
            }
            self.remember_meta(object);
            batch.chunks.push(json::to_vec(&value)?);
        }
        Ok(batch)
    }

    fn finish(&mut self) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch::empty();
        if let Some(chunk) = self.usage_chunk()? {
            batch.chunks.push(chunk);
        }
        Ok(batch)
    }
}

impl CompatStream {
    fn remember_meta(&mut self, object: &Map<String, Value>) {
        let field = |k: &str| object.get(k).filter(|v| !v.is_null()).cloned();
        if let Some(id) = field("id").filter(|v| v.as_str() != Some("")) {
            self.meta.0 = id;
        }
        if let Some(created) = field("created").filter(|v| v.as_u64() != Some(0)) {
            self.meta.1 = created;
        }
        if let Some(model) = field("model").filter(|v| v.as_str() != Some("")) {
            self.meta.2 = model;
        }
    }
}

export_adapter!(OpenAiCompat);

#[cfg(test)]
pub(crate) mod test_support {
    use transit_adapter_sdk::testing;
    use transit_adapter_sdk::{Call, ChunkBatch, UpstreamRequest};

    /// A call on a channel of type `kind`.
    pub fn call(kind: &str, endpoint: &str, model: &str, stream: bool) -> Call {
        let mut c = testing::call(endpoint, model, stream);
        c.channel.kind = kind.to_owned();
        c
    }

    pub fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body(req: &UpstreamRequest) -> serde_json::Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    /// The chunks of a batch as JSON.
    pub fn chunks(batch: &ChunkBatch) -> Vec<serde_json::Value> {
        batch
            .chunks
            .iter()
            .map(|c| serde_json::from_slice(c).unwrap())
            .collect()
    }

    /// Text of the `field` deltas of chunks.
    pub fn delta_text(chunks: &[serde_json::Value], field: &str) -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][field].as_str().map(str::to_owned))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use transit_adapter_sdk::testing::response;

    #[test]
    fn channel_types_and_provider_option_pick_the_provider() {
        for (kind, provider) in [
            ("azure", Provider::Azure),
            ("azure-openai", Provider::Azure),
            ("zhipu", Provider::Zhipu),
            ("glm", Provider::Zhipu),
            ("ali", Provider::Ali),
            ("dashscope", Provider::Ali),
            ("qwen", Provider::Ali),
            ("cloudflare", Provider::Cloudflare),
            ("workers-ai", Provider::Cloudflare),
            ("baidu", Provider::Baidu),
            ("qianfan", Provider::Baidu),
            ("ernie", Provider::Baidu),
        ] {
            let c = call(kind, "chat.completions", "m", false);
            assert_eq!(Provider::of(&c.channel).unwrap(), provider, "{kind}");
        }
        let mut c = call("openai-compat", "chat.completions", "m", false);
        assert!(matches!(
            OpenAiCompat::prepare_request(&c, b"{}"),
            Err(AdapterError::Unsupported(_))
        ));
        c.channel.options = vec![("provider".into(), "qwen".into())];
        assert_eq!(Provider::of(&c.channel).unwrap(), Provider::Ali);
    }

    #[test]
    fn endpoints_outside_a_provider_are_unsupported() {
        for (kind, endpoint) in [
            ("zhipu", "rerank"),
            ("cloudflare", "images.generations"),
            ("baidu", "rerank"),
            ("azure", "audio.speech"),
        ] {
            let c = call(kind, endpoint, "m", false);
            assert!(
                matches!(
                    OpenAiCompat::prepare_request(&c, br#"{"model":"m"}"#),
                    Err(AdapterError::Unsupported(_))
                ),
                "{kind} {endpoint}"
            );
        }
    }

    #[test]
    fn streams_force_usage_except_on_zhipu() {
        let body = br#"{"model":"x","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":false}}"#;
        let c = call("baidu", "chat.completions", "ernie-4.5-turbo-128k", true);
        let sent = body_of(&OpenAiCompat::prepare_request(&c, body).unwrap());
        assert_eq!(sent["stream_options"]["include_usage"], true);
        assert_eq!(sent["model"], "ernie-4.5-turbo-128k");
        let c = call("zhipu", "chat.completions", "glm-4.5", true);
        let sent = body_of(&OpenAiCompat::prepare_request(&c, body).unwrap());
        assert!(sent.get("stream_options").is_none());
        assert_eq!(sent["stream"], true);
    }

    fn body_of(req: &UpstreamRequest) -> Value {
        body(req)
    }

    #[test]
    fn option_headers_are_added_and_bodies_never_carry_the_key() {
        for kind in ["azure", "zhipu", "ali", "cloudflare", "baidu"] {
            let mut c = call(kind, "chat.completions", "m", false);
            c.channel.base_url = "https://example.test".into();
            c.channel.options = vec![
                ("header.X-Trace".into(), "t1".into()),
                ("account_id".into(), "acc".into()),
            ];
            let req = OpenAiCompat::prepare_request(
                &c,
                br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            )
            .unwrap();
            assert_eq!(header(&req, "X-Trace"), Some("t1"), "{kind}");
            assert!(!String::from_utf8_lossy(&req.body).contains("sk-test"));
        }
    }

    #[test]
    fn finish_reasons_are_mapped_and_errors_in_bodies_detected() {
        let c = call("zhipu", "chat.completions", "glm-4.5", false);
        let body = br#"{"id":"1","created":1,"model":"glm-4.5","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"sensitive"}],"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}"#;
        let t = OpenAiCompat::parse_response(&c, &response(200, body)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["object"], "chat.completion");
        let broken = br#"{"id":"1","choices":[{"index":0,"message":{"role":"assistant","content":"Hal"},"finish_reason":"network_error"}]}"#;
        assert!(matches!(
            OpenAiCompat::parse_response(&c, &response(200, broken)),
            Err(AdapterError::Upstream(e)) if e.retryable
        ));
        assert!(OpenAiCompat::parse_response(&c, &response(200, b"[1]")).is_err());
        assert!(OpenAiCompat::parse_response(&c, &response(200, b"<html>")).is_err());
    }

    #[test]
    fn unchanged_bodies_pass_through_byte_for_byte() {
        let c = call("ali", "embeddings", "text-embedding-v3", false);
        let body = br#"{"data":[{"embedding":[0.1],"index":0,"object":"embedding"}],"model":"text-embedding-v3","object":"list","usage":{"prompt_tokens":4,"total_tokens":4},"id":"e-1"}"#;
        let t = OpenAiCompat::parse_response(&c, &response(200, body)).unwrap();
        assert_eq!(t.body, body.to_vec());
        assert_eq!(t.usage, Some(Usage::tokens(4, 0)));
    }

    #[test]
    fn helpers() {
        assert!(has_path("https://open.bigmodel.cn/api/paas/v4"));
        assert!(!has_path("http://127.0.0.1:9000/"));
        let mut m: Map<String, Value> =
            serde_json::from_str(r#"{"max_completion_tokens":9}"#).unwrap();
        max_tokens_from_completion(&mut m);
        assert_eq!(Value::Object(m), serde_json::json!({"max_tokens": 9}));
    }
}

//! The `jina-voyage` adapter: OpenAI embeddings and rerank served by Jina AI
//! (`https://api.jina.ai`) and Voyage AI (`https://api.voyageai.com`), both
//! with the channel's key as a bearer token.
//!
//! Which provider a channel speaks: the channel option `provider`
//! (`jina` / `voyage`), else the channel type (`voyage` is Voyage), else a
//! base URL on `voyageai.com`; anything else is Jina.
//!
//! The client-facing rerank shape is Jina's (Cohere's too):
//! `{model, query, documents, top_n, return_documents}` answered with
//! `{model, results: [{index, relevance_score, document?: {text}}], usage}`.
//!
//! | | Jina | Voyage |
//! |---|---|---|
//! | embeddings | `POST /v1/embeddings`: `model`, `input`, `dimensions`, `task` (or the channel option `task`), `normalized`, `late_chunking`, `truncate`, `embedding_type` | `POST /v1/embeddings`: `model`, `input`, `input_type` (or the channel option `input_type`), `dimensions` → `output_dimension`, `truncation`, `output_dtype` |
//! | rerank | `POST /v1/rerank`, the client's shape | `POST /v1/rerank`: `top_n` → `top_k`, document objects → their text; `data` → `results`, each document → `{text}` |
//!
//! Fields a provider does not know (`encoding_format`, `user`, …) are not
//! sent. Usage is the provider's `usage.total_tokens` (or
//! `prompt_tokens`), billed as input tokens; answers carry it as OpenAI's
//! `usage.prompt_tokens` / `total_tokens`.
//!
//! Errors: both answer `{"detail": "…"}` (validation failures: a list of
//! `{loc, msg}`), classified by status.
//!
//! Channel options: `provider`, `task` (Jina), `input_type` (Voyage),
//! `header.NAME`.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::{RateLimit, UpstreamError, json};

/// The adapter.
pub struct JinaVoyage;

/// OpenAI embeddings.
pub const EMBEDDINGS: &str = "embeddings";
/// Rerank.
pub const RERANK: &str = "rerank";

/// Which API a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Jina,
    Voyage,
}

impl Provider {
    /// The provider of `channel`.
    pub fn of(channel: &Channel) -> Self {
        match channel.option("provider").map(str::to_ascii_lowercase) {
            Some(p) if p == "voyage" => return Self::Voyage,
            Some(p) if p == "jina" => return Self::Jina,
            _ => {}
        }
        if channel.kind == "voyage" || channel.base_url.contains("voyageai.com") {
            Self::Voyage
        } else {
            Self::Jina
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Jina => "Jina",
            Self::Voyage => "Voyage",
        }
    }
}

impl Adapter for JinaVoyage {
    type Stream = openai::PassthroughStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new(
            "jina-voyage",
            env!("CARGO_PKG_VERSION"),
            &[EMBEDDINGS, RERANK],
        )
        .with_description("Jina AI and Voyage AI embeddings and rerank")
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        let req = json::parse_object(body)?;
        let provider = Provider::of(&call.channel);
        let (path, translated) = match (call.endpoint.as_str(), provider) {
            (EMBEDDINGS, Provider::Jina) => ("embeddings", jina_embeddings(call, &req)?),
            (EMBEDDINGS, Provider::Voyage) => ("embeddings", voyage_embeddings(call, &req)?),
            (RERANK, Provider::Jina) => ("rerank", jina_rerank(call, &req)?),
            (RERANK, Provider::Voyage) => ("rerank", voyage_rerank(call, &req)?),
            _ => return Err(errors::unsupported_endpoint(call)),
        };
        let mut headers = vec![
            (
                "authorization".to_owned(),
                format!("Bearer {}", call.channel.api_key),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
            ("accept".to_owned(), "application/json".to_owned()),
        ];
        headers.extend(call.channel.option_headers());
        Ok(UpstreamRequest::post_json(
            openai::endpoint_url(&call.channel.base_url, path),
            headers,
            json::to_vec(&translated)?,
        ))
    }

    fn parse_response(
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        let provider = Provider::of(&call.channel);
        let answer = match json::parse_upstream(&response.body)? {
            Value::Object(o) => o,
            _ => {
                return Err(errors::upstream(
                    502,
                    true,
                    format!(
                        "{} answered with a JSON value that is not an object",
                        provider.name()
                    ),
                ));
            }
        };
        let (body, usage) = match (call.endpoint.as_str(), provider) {
            (EMBEDDINGS, _) => embeddings_answer(call, answer, provider)?,
            (RERANK, Provider::Jina) => jina_rerank_answer(call, answer)?,
            (RERANK, Provider::Voyage) => voyage_rerank_answer(call, answer)?,
            _ => return Err(errors::unsupported_endpoint(call)),
        };
        Ok(Translated {
            body: json::to_vec(&body)?,
            content_type: "application/json".to_owned(),
            usage,
        })
    }

    fn map_error(call: &Call, response: &UpstreamResponse) -> AdapterError {
        classify(Provider::of(&call.channel), response)
    }
}

/// Copy the fields in `keys` that are set (not null) from `from` to `to`.
fn copy(from: &Map<String, Value>, to: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(v) = from.get(*key).filter(|v| !v.is_null()) {
            to.insert((*key).to_owned(), v.clone());
        }
    }
}

/// `input`: a non-empty string, or a non-empty array (of strings, or of
/// the objects Jina takes for multimodal models).
fn input(req: &Map<String, Value>, objects_allowed: bool) -> Result<Value, AdapterError> {
    match req.get("input") {
        Some(Value::String(s)) if !s.is_empty() => Ok(json!([s])),
        Some(Value::Array(items))
            if !items.is_empty()
                && items
                    .iter()
                    .all(|i| i.is_string() || (objects_allowed && i.is_object())) =>
        {
            Ok(Value::Array(items.clone()))
        }
        Some(Value::Array(items)) if items.iter().any(Value::is_array) => Err(
            errors::invalid_request("token arrays are not supported: send `input` as text"),
        ),
        _ => Err(errors::invalid_request(
            "`input` must be a non-empty string or array of strings",
        )),
    }
}

fn jina_embeddings(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let mut out = Map::new();
    out.insert("model".into(), json!(call.model));
    out.insert("input".into(), input(req, true)?);
    copy(
        req,
        &mut out,
        &[
            "task",
            "dimensions",
            "normalized",
            "late_chunking",
            "truncate",
            "embedding_type",
        ],
    );
    if !out.contains_key("task")
        && let Some(task) = call.channel.option("task")
    {
        out.insert("task".into(), json!(task));
    }
    Ok(Value::Object(out))
}

fn voyage_embeddings(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let mut out = Map::new();
    out.insert("input".into(), input(req, false)?);
    out.insert("model".into(), json!(call.model));
    copy(
        req,
        &mut out,
        &[
            "input_type",
            "truncation",
            "output_dimension",
            "output_dtype",
        ],
    );
    if !out.contains_key("input_type")
        && let Some(kind) = call
            .channel
            .option("input_type")
            .or_else(|| call.channel.option("input-type"))
    {
        out.insert("input_type".into(), json!(kind));
    }
    if !out.contains_key("output_dimension")
        && let Some(d) = req.get("dimensions").filter(|d| !d.is_null())
    {
        out.insert("output_dimension".into(), d.clone());
    }
    Ok(Value::Object(out))
}

/// The query and documents every rerank request needs.
fn query_and_documents(req: &Map<String, Value>) -> Result<(&str, &[Value]), AdapterError> {
    let query = req
        .get("query")
        .and_then(Value::as_str)
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| errors::invalid_request("`query` must be a non-empty string"))?;
    let documents = req
        .get("documents")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| errors::invalid_request("`documents` must be a non-empty array"))?;
    Ok((query, documents))
}

/// A document's text: a string, or an object's `text`.
fn document_text(doc: &Value) -> Result<&str, AdapterError> {
    match doc {
        Value::String(s) => Ok(s),
        Value::Object(o) => o
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| errors::invalid_request("a document object needs `text`")),
        _ => Err(errors::invalid_request(
            "each document must be a string or an object with `text`",
        )),
    }
}

fn jina_rerank(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let (query, documents) = query_and_documents(req)?;
    for doc in documents {
        // Jina also ranks images given as `{"image": …}`.
        if !(doc.is_string() || doc.get("text").is_some() || doc.get("image").is_some()) {
            return Err(errors::invalid_request(
                "each document must be a string or an object with `text` or `image`",
            ));
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(call.model));
    out.insert("query".into(), json!(query));
    out.insert("documents".into(), Value::Array(documents.to_vec()));
    copy(req, &mut out, &["top_n", "return_documents"]);
    if !out.contains_key("top_n") {
        copy(req, &mut out, &["top_k"]);
        if let Some(k) = out.remove("top_k") {
            out.insert("top_n".into(), k);
        }
    }
    Ok(Value::Object(out))
}

fn voyage_rerank(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let (query, documents) = query_and_documents(req)?;
    let documents = documents
        .iter()
        .map(|d| document_text(d).map(|t| Value::String(t.to_owned())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Map::new();
    out.insert("query".into(), json!(query));
    out.insert("documents".into(), Value::Array(documents));
    out.insert("model".into(), json!(call.model));
    if let Some(k) = req
        .get("top_n")
        .filter(|v| !v.is_null())
        .or_else(|| req.get("top_k").filter(|v| !v.is_null()))
    {
        out.insert("top_k".into(), k.clone());
    }
    copy(req, &mut out, &["return_documents", "truncation"]);
    Ok(Value::Object(out))
}

/// `usage.total_tokens` (or `prompt_tokens`) of an answer.
fn tokens_of(answer: &Map<String, Value>) -> Option<u64> {
    let usage = answer.get("usage")?;
    usage
        .get("total_tokens")
        .and_then(Value::as_u64)
        .or_else(|| usage.get("prompt_tokens").and_then(Value::as_u64))
}

/// The answer's usage as OpenAI's, and as typed usage.
fn with_usage(body: &mut Map<String, Value>, tokens: Option<u64>) -> Option<Usage> {
    let tokens = tokens?;
    body.insert(
        "usage".into(),
        json!({"prompt_tokens": tokens, "total_tokens": tokens}),
    );
    Some(Usage::tokens(tokens, 0))
}

/// Both providers answer embeddings in OpenAI's shape; the usage gets
/// OpenAI's `prompt_tokens`, and missing `object`s are filled in.
fn embeddings_answer(
    call: &Call,
    mut answer: Map<String, Value>,
    provider: Provider,
) -> Result<(Value, Option<Usage>), AdapterError> {
    let Some(Value::Array(data)) = answer.get_mut("data") else {
        return Err(errors::upstream(
            502,
            true,
            format!("{}'s embeddings answer has no `data`", provider.name()),
        ));
    };
    for (i, item) in data.iter_mut().enumerate() {
        if let Value::Object(o) = item {
            o.entry("object").or_insert_with(|| json!("embedding"));
            o.entry("index").or_insert_with(|| json!(i));
        }
    }
    answer.insert("object".into(), json!("list"));
    answer.entry("model").or_insert_with(|| json!(call.model));
    let tokens = tokens_of(&answer);
    let usage = with_usage(&mut answer, tokens);
    Ok((Value::Object(answer), usage))
}

fn check_results(
    results: Option<&Value>,
    provider: Provider,
    key: &str,
) -> Result<(), AdapterError> {
    if results.is_some_and(Value::is_array) {
        Ok(())
    } else {
        Err(errors::upstream(
            502,
            true,
            format!("{}'s rerank answer has no `{key}`", provider.name()),
        ))
    }
}

/// Jina's rerank answer is the client's shape already.
fn jina_rerank_answer(
    call: &Call,
    mut answer: Map<String, Value>,
) -> Result<(Value, Option<Usage>), AdapterError> {
    check_results(answer.get("results"), Provider::Jina, "results")?;
    answer.entry("model").or_insert_with(|| json!(call.model));
    let tokens = tokens_of(&answer);
    let usage = with_usage(&mut answer, tokens);
    Ok((Value::Object(answer), usage))
}

/// Voyage's `data` → `results`, each document a `{text}` object.
fn voyage_rerank_answer(
    call: &Call,
    answer: Map<String, Value>,
) -> Result<(Value, Option<Usage>), AdapterError> {
    check_results(answer.get("data"), Provider::Voyage, "data")?;
    let results: Vec<Value> = answer
        .get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| {
            let mut out = json!({
                "index": r.get("index").cloned().unwrap_or(Value::Null),
                "relevance_score": r.get("relevance_score").cloned().unwrap_or(Value::Null),
            });
            match r.get("document") {
                Some(Value::String(text)) => out["document"] = json!({ "text": text }),
                Some(doc @ Value::Object(_)) => out["document"] = doc.clone(),
                _ => {}
            }
            out
        })
        .collect();
    let mut body = Map::new();
    body.insert(
        "model".into(),
        answer
            .get("model")
            .cloned()
            .unwrap_or_else(|| json!(call.model)),
    );
    body.insert("results".into(), Value::Array(results));
    let usage = with_usage(&mut body, tokens_of(&answer));
    Ok((Value::Object(body), usage))
}

/// The message of a `{"detail": …}` body: a string, or the `msg`s of a
/// validation failure list (with where they point).
fn detail_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && let Some(Value::Array(items)) = value.get("detail")
    {
        let messages: Vec<String> = items
            .iter()
            .filter_map(|item| {
                let msg = item.get("msg").and_then(Value::as_str)?;
                let at: Vec<String> = item
                    .get("loc")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|l| l.as_str() != Some("body"))
                    .map(|l| match l {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                Some(if at.is_empty() {
                    msg.to_owned()
                } else {
                    format!("{}: {msg}", at.join("."))
                })
            })
            .collect();
        if !messages.is_empty() {
            return messages.join("; ");
        }
    }
    errors::error_message(body).0
}

/// Classify a failed answer by status.
pub fn classify(provider: Provider, response: &UpstreamResponse) -> AdapterError {
    let message = detail_message(&response.body);
    let message = if message.is_empty() {
        format!("{} answered HTTP {}", provider.name(), response.status)
    } else {
        message
    };
    match response.status {
        401 | 403 => AdapterError::Auth(message),
        429 => AdapterError::RateLimited(RateLimit {
            retry_after_ms: errors::retry_after_ms(response),
            message,
        }),
        // The account's balance, not the client's request.
        402 => AdapterError::Upstream(UpstreamError {
            status: 502,
            retryable: true,
            message,
            code: Some("payment_required".to_owned()),
        }),
        422 => AdapterError::Upstream(UpstreamError {
            status: 400,
            retryable: false,
            message,
            code: None,
        }),
        status => AdapterError::Upstream(UpstreamError {
            status,
            retryable: matches!(status, 404 | 408 | 409) || status >= 500,
            message,
            code: None,
        }),
    }
}

export_adapter!(JinaVoyage);

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, response};

    const JINA_EMBED_REQUEST: &[u8] = include_bytes!("../fixtures/jina_embeddings_request.json");
    const JINA_EMBED_RESPONSE: &[u8] = include_bytes!("../fixtures/jina_embeddings_response.json");
    const JINA_RERANK_REQUEST: &[u8] = include_bytes!("../fixtures/jina_rerank_request.json");
    const JINA_RERANK_RESPONSE: &[u8] = include_bytes!("../fixtures/jina_rerank_response.json");
    const JINA_ERROR_VALIDATION: &[u8] = include_bytes!("../fixtures/jina_error_validation.json");
    const JINA_ERROR_AUTH: &[u8] = include_bytes!("../fixtures/jina_error_auth.json");
    const VOYAGE_EMBED_REQUEST: &[u8] =
        include_bytes!("../fixtures/voyage_embeddings_request.json");
    const VOYAGE_EMBED_RESPONSE: &[u8] =
        include_bytes!("../fixtures/voyage_embeddings_response.json");
    const VOYAGE_RERANK_REQUEST: &[u8] = include_bytes!("../fixtures/voyage_rerank_request.json");
    const VOYAGE_RERANK_RESPONSE: &[u8] = include_bytes!("../fixtures/voyage_rerank_response.json");
    const VOYAGE_ERROR_AUTH: &[u8] = include_bytes!("../fixtures/voyage_error_auth.json");
    const VOYAGE_ERROR_BAD: &[u8] = include_bytes!("../fixtures/voyage_error_bad_request.json");

    fn on(kind: &str, endpoint: &str, model: &str) -> Call {
        let mut c = call(endpoint, model, false);
        c.channel.kind = kind.to_owned();
        c
    }

    fn body(req: &UpstreamRequest) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    fn fixture(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn provider_by_option_kind_or_url() {
        let mut c = on("jina", EMBEDDINGS, "m");
        assert_eq!(Provider::of(&c.channel), Provider::Jina);
        c.channel.kind = "voyage".into();
        assert_eq!(Provider::of(&c.channel), Provider::Voyage);
        c.channel.kind = "jina-voyage".into();
        c.channel.base_url = "https://api.voyageai.com".into();
        assert_eq!(Provider::of(&c.channel), Provider::Voyage);
        c.channel.options = vec![("provider".into(), "jina".into())];
        assert_eq!(Provider::of(&c.channel), Provider::Jina);
    }

    #[test]
    fn jina_embeddings_request_and_answer() {
        let mut c = on("jina", EMBEDDINGS, "jina-embeddings-v3");
        c.channel.options = vec![("task".into(), "retrieval.passage".into())];
        let client = json!({"model": "alias", "input": fixture(JINA_EMBED_REQUEST)["input"],
            "dimensions": 256, "encoding_format": "float", "user": "u1"});
        let req = JinaVoyage::prepare_request(&c, client.to_string().as_bytes()).unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/embeddings");
        assert!(
            req.headers
                .iter()
                .any(|(k, v)| k == "authorization" && v == "Bearer sk-test")
        );
        assert_eq!(body(&req), fixture(JINA_EMBED_REQUEST));

        let t = JinaVoyage::parse_response(&c, &response(200, JINA_EMBED_RESPONSE)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"][0], -0.1208);
        assert_eq!(v["usage"]["prompt_tokens"], 24);
        assert_eq!(t.usage, Some(Usage::tokens(24, 0)));
    }

    #[test]
    fn jina_rerank_passes_the_shape_through() {
        let c = on("jina", RERANK, "jina-reranker-v2-base-multilingual");
        let req = JinaVoyage::prepare_request(&c, JINA_RERANK_REQUEST).unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/rerank");
        assert_eq!(body(&req), fixture(JINA_RERANK_REQUEST));
        let t = JinaVoyage::parse_response(&c, &response(200, JINA_RERANK_RESPONSE)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["results"].as_array().unwrap().len(), 3);
        assert_eq!(v["results"][1]["index"], 3);
        assert!(
            v["results"][0]["document"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Organic skincare")
        );
        assert_eq!(v["usage"]["total_tokens"], 815);
        assert_eq!(t.usage, Some(Usage::tokens(815, 0)));
    }

    #[test]
    fn voyage_embeddings_request_and_answer() {
        let mut c = on("voyage", EMBEDDINGS, "voyage-3.5");
        c.channel.options = vec![("input_type".into(), "document".into())];
        let client = json!({"model": "alias", "input": ["Sample text 1", "Sample text 2"],
            "dimensions": 512, "encoding_format": "float", "user": "u1"});
        let req = JinaVoyage::prepare_request(&c, client.to_string().as_bytes()).unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/embeddings");
        assert_eq!(body(&req), fixture(VOYAGE_EMBED_REQUEST));
        // The request's own input_type wins.
        let client = json!({"input": "q", "input_type": "query"});
        let req = JinaVoyage::prepare_request(&c, client.to_string().as_bytes()).unwrap();
        assert_eq!(body(&req)["input_type"], "query");
        assert_eq!(body(&req)["input"], json!(["q"]));

        let t = JinaVoyage::parse_response(&c, &response(200, VOYAGE_EMBED_RESPONSE)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["model"], "voyage-3.5");
        assert_eq!(v["usage"], json!({"prompt_tokens": 10, "total_tokens": 10}));
        assert_eq!(t.usage, Some(Usage::tokens(10, 0)));
    }

    #[test]
    fn voyage_rerank_is_translated_both_ways() {
        let c = on("voyage", RERANK, "rerank-2.5");
        let mut client = fixture(VOYAGE_RERANK_REQUEST);
        let o = client.as_object_mut().unwrap();
        o.remove("top_k");
        o.insert("top_n".into(), json!(2));
        let second = o["documents"][1].clone();
        o["documents"][1] = json!({ "text": second });
        let req = JinaVoyage::prepare_request(&c, client.to_string().as_bytes()).unwrap();
        assert_eq!(body(&req), fixture(VOYAGE_RERANK_REQUEST));

        let t = JinaVoyage::parse_response(&c, &response(200, VOYAGE_RERANK_RESPONSE)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert!(v.get("data").is_none());
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["index"], 2);
        assert_eq!(results[0]["relevance_score"], 0.9296875);
        assert!(
            results[0]["document"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Apple's conference call")
        );
        assert_eq!(v["model"], "rerank-2.5");
        assert_eq!(v["usage"]["total_tokens"], 94);
        assert_eq!(t.usage, Some(Usage::tokens(94, 0)));
    }

    #[test]
    fn bad_requests_and_answers() {
        for kind in ["jina", "voyage"] {
            let c = on(kind, RERANK, "m");
            for bad in [
                json!({"documents": ["a"]}),
                json!({"query": " ", "documents": ["a"]}),
                json!({"query": "q"}),
                json!({"query": "q", "documents": []}),
                json!({"query": "q", "documents": [3]}),
            ] {
                assert!(
                    matches!(
                        JinaVoyage::prepare_request(&c, bad.to_string().as_bytes()),
                        Err(AdapterError::InvalidRequest(_))
                    ),
                    "{kind} {bad}"
                );
            }
            let e = on(kind, EMBEDDINGS, "m");
            for bad in [json!({}), json!({"input": ""}), json!({"input": [[1, 2]]})] {
                assert!(matches!(
                    JinaVoyage::prepare_request(&e, bad.to_string().as_bytes()),
                    Err(AdapterError::InvalidRequest(_))
                ));
            }
            assert!(matches!(
                JinaVoyage::parse_response(&c, &response(200, b"{}")),
                Err(AdapterError::Upstream(_))
            ));
            assert!(matches!(
                JinaVoyage::parse_response(&e, &response(200, b"[1]")),
                Err(AdapterError::Upstream(_))
            ));
            assert!(matches!(
                JinaVoyage::prepare_request(&on(kind, "chat.completions", "m"), b"{}"),
                Err(AdapterError::Unsupported(_))
            ));
        }
    }

    #[test]
    fn error_bodies() {
        let jina = on("jina", RERANK, "m");
        assert_eq!(
            JinaVoyage::map_error(&jina, &response(422, JINA_ERROR_VALIDATION)),
            AdapterError::Upstream(UpstreamError {
                status: 400,
                retryable: false,
                message: "query: field required".into(),
                code: None
            })
        );
        assert!(matches!(
            JinaVoyage::map_error(&jina, &response(401, JINA_ERROR_AUTH)),
            AdapterError::Auth(m) if m.starts_with("Failed to authenticate")
        ));
        let voyage = on("voyage", RERANK, "m");
        assert_eq!(
            JinaVoyage::map_error(&voyage, &response(401, VOYAGE_ERROR_AUTH)),
            AdapterError::Auth("Provided API key is invalid.".into())
        );
        assert!(matches!(
            JinaVoyage::map_error(&voyage, &response(400, VOYAGE_ERROR_BAD)),
            AdapterError::Upstream(UpstreamError { status: 400, retryable: false, ref message, .. })
                if message.starts_with("Value 'rerank-9'")
        ));
        let mut limited = response(429, br#"{"detail":"Rate limit exceeded"}"#);
        limited.headers.push(("retry-after".into(), "3".into()));
        assert_eq!(
            JinaVoyage::map_error(&voyage, &limited),
            AdapterError::RateLimited(RateLimit {
                retry_after_ms: Some(3000),
                message: "Rate limit exceeded".into()
            })
        );
        assert!(matches!(
            JinaVoyage::map_error(&voyage, &response(502, b"")),
            AdapterError::Upstream(UpstreamError { retryable: true, ref message, .. }) if message.contains("Voyage")
        ));
        assert!(matches!(
            JinaVoyage::map_error(
                &jina,
                &response(402, br#"{"detail":"Insufficient balance"}"#)
            ),
            AdapterError::Upstream(UpstreamError {
                status: 502,
                retryable: true,
                ..
            })
        ));
    }
}

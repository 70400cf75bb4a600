//! OpenAI embeddings ↔ Cohere `POST /v2/embed`, and rerank ↔ Cohere
//! `POST /v2/rerank`.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;

use crate::count;

/// The `input_type` when neither the request nor the channel names one.
pub const DEFAULT_INPUT_TYPE: &str = "search_document";
/// Cohere's limit on texts per embed call.
const MAX_TEXTS: usize = 96;

/// An OpenAI embeddings request → Cohere's embed request.
pub fn to_embed_request(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let texts: Vec<Value> = match req.get("input") {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(Value::String(s.clone())),
                _ => Err(errors::invalid_request(
                    "Cohere embeds text: `input` must be a string or an array of strings (token arrays are not supported)",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(errors::invalid_request(
                "`input` must be a non-empty string or array of strings",
            ));
        }
    };
    if texts.len() > MAX_TEXTS {
        return Err(errors::invalid_request(format!(
            "Cohere embeds at most {MAX_TEXTS} texts per call; got {}",
            texts.len()
        )));
    }
    let input_type = req
        .get("input_type")
        .and_then(Value::as_str)
        .or_else(|| call.channel.option("input_type"))
        .or_else(|| call.channel.option("input-type"))
        .unwrap_or(DEFAULT_INPUT_TYPE);
    let mut out = Map::new();
    out.insert("model".into(), json!(call.model));
    out.insert("texts".into(), Value::Array(texts));
    out.insert("input_type".into(), json!(input_type));
    out.insert("embedding_types".into(), json!(["float"]));
    if let Some(d) = req
        .get("dimensions")
        .or_else(|| req.get("output_dimension"))
        .filter(|d| !d.is_null())
    {
        out.insert("output_dimension".into(), d.clone());
    }
    if let Some(t) = req.get("truncate").filter(|t| t.is_string()) {
        out.insert("truncate".into(), t.clone());
    }
    Ok(Value::Object(out))
}

/// Cohere's embed answer → an OpenAI embeddings list, and its usage.
pub fn to_openai_embeddings(
    call: &Call,
    answer: &Value,
) -> Result<(Value, Option<Usage>), AdapterError> {
    let vectors = answer
        .pointer("/embeddings/float")
        .and_then(Value::as_array)
        // v1-style answers (`embeddings` as a plain list of vectors).
        .or_else(|| answer.get("embeddings").and_then(Value::as_array))
        .ok_or_else(|| {
            errors::upstream(502, true, "Cohere's embed answer has no float embeddings")
        })?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    let tokens = meta_tokens(answer);
    let mut body = json!({"object": "list", "data": data, "model": call.model});
    if let Some(tokens) = tokens {
        body["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    }
    Ok((body, tokens.map(|t| Usage::tokens(t, 0))))
}

/// Input tokens from `meta.billed_units`, else `meta.tokens`.
fn meta_tokens(answer: &Value) -> Option<u64> {
    let meta = answer.get("meta");
    count(meta.and_then(|m| m.get("billed_units")), "input_tokens")
        .or_else(|| count(meta.and_then(|m| m.get("tokens")), "input_tokens"))
}

/// A rerank request (Jina / Cohere shape) → Cohere's v2 rerank request.
/// Documents may be strings or objects with `text`.
pub fn to_rerank_request(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let query = req
        .get("query")
        .and_then(Value::as_str)
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| errors::invalid_request("`query` must be a non-empty string"))?;
    let documents: Vec<Value> = match req.get("documents") {
        Some(Value::Array(docs)) if !docs.is_empty() => docs
            .iter()
            .map(|d| match d {
                Value::String(s) => Ok(Value::String(s.clone())),
                Value::Object(o) => o
                    .get("text")
                    .and_then(Value::as_str)
                    .map(|t| Value::String(t.to_owned()))
                    .ok_or_else(|| errors::invalid_request("a document object needs `text`")),
                _ => Err(errors::invalid_request(
                    "each document must be a string or an object with `text`",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(errors::invalid_request(
                "`documents` must be a non-empty array",
            ));
        }
    };
    let mut out = Map::new();
    out.insert("model".into(), json!(call.model));
    out.insert("query".into(), json!(query));
    out.insert("documents".into(), Value::Array(documents));
    if let Some(n) = req
        .get("top_n")
        .or_else(|| req.get("top_k"))
        .filter(|n| !n.is_null())
    {
        out.insert("top_n".into(), n.clone());
    }
    if let Some(m) = req.get("max_tokens_per_doc").filter(|m| !m.is_null()) {
        out.insert("max_tokens_per_doc".into(), m.clone());
    }
    Ok(Value::Object(out))
}

/// Cohere's rerank answer, with the model and (when Cohere counted them)
/// the tokens as `usage`. Cohere's search units ride along as the unit
/// `searches`; without a token count no usage is reported, so the gateway
/// bills the prompt tokens it counted.
pub fn to_rerank_answer(call: &Call, answer: &Value) -> (Value, Option<Usage>) {
    let mut body = answer.clone();
    body["model"] = json!(call.model);
    let tokens = meta_tokens(answer);
    let usage = tokens.map(|tokens| {
        body["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
        let mut usage = Usage::tokens(tokens, 0);
        if let Some(searches) = count(answer.pointer("/meta/billed_units"), "search_units") {
            usage.units.push(("searches".to_owned(), searches));
        }
        usage
    });
    (body, usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cohere;
    use transit_adapter_sdk::testing::{call, response};

    const EMBED_REQUEST: &[u8] = include_bytes!("../fixtures/embed_request.json");
    const EMBED_RESPONSE: &[u8] = include_bytes!("../fixtures/embed_response.json");
    const RERANK_REQUEST: &[u8] = include_bytes!("../fixtures/rerank_request.json");
    const RERANK_RESPONSE: &[u8] = include_bytes!("../fixtures/rerank_response.json");

    #[test]
    fn embed_request_matches_the_documented_shape() {
        let c = call("embeddings", "embed-v4.0", false);
        let req = Cohere::prepare_request(
            &c,
            br#"{"model":"alias","input":["hello","goodbye"],"dimensions":1024,"encoding_format":"float","user":"u1"}"#,
        )
        .unwrap();
        assert_eq!(req.url, "http://upstream.test/v2/embed");
        let got: Value = serde_json::from_slice(&req.body).unwrap();
        let want: Value = serde_json::from_slice(EMBED_REQUEST).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn input_type_from_request_or_channel() {
        let mut c = call("embeddings", "embed-v4.0", false);
        c.channel.options = vec![("input_type".into(), "search_query".into())];
        let req = json!({"input": "hi"});
        let out = to_embed_request(&c, req.as_object().unwrap()).unwrap();
        assert_eq!(out["input_type"], "search_query");
        assert_eq!(out["texts"], json!(["hi"]));
        let req = json!({"input": "hi", "input_type": "clustering"});
        let out = to_embed_request(&c, req.as_object().unwrap()).unwrap();
        assert_eq!(out["input_type"], "clustering");
        for bad in [json!({}), json!({"input": []}), json!({"input": [[1, 2]]})] {
            assert!(matches!(
                to_embed_request(&c, bad.as_object().unwrap()),
                Err(AdapterError::InvalidRequest(_))
            ));
        }
        let many = json!({"input": vec!["x"; 97]});
        assert!(to_embed_request(&c, many.as_object().unwrap()).is_err());
    }

    #[test]
    fn embed_answer_becomes_an_openai_list() {
        let t = Cohere::parse_response(
            &call("embeddings", "embed-v4.0", false),
            &response(200, EMBED_RESPONSE),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "embed-v4.0");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[1]["index"], 1);
        assert_eq!(data[1]["object"], "embedding");
        assert_eq!(data[0]["embedding"][0], 0.016296387);
        assert_eq!(v["usage"]["prompt_tokens"], 2);
        assert_eq!(t.usage, Some(Usage::tokens(2, 0)));
        assert!(matches!(
            Cohere::parse_response(&call("embeddings", "m", false), &response(200, b"{}")),
            Err(AdapterError::Upstream(_))
        ));
    }

    #[test]
    fn rerank_request_and_answer() {
        let c = call("rerank", "rerank-v3.5", false);
        let mut client: Value = serde_json::from_slice(RERANK_REQUEST).unwrap();
        // Clients may send document objects and Jina's return_documents.
        client["documents"][0] = json!({"text": client["documents"][0]});
        client["return_documents"] = json!(true);
        let req = Cohere::prepare_request(&c, client.to_string().as_bytes()).unwrap();
        assert_eq!(req.url, "http://upstream.test/v2/rerank");
        let got: Value = serde_json::from_slice(&req.body).unwrap();
        let want: Value = serde_json::from_slice(RERANK_REQUEST).unwrap();
        assert_eq!(got, want);

        let t = Cohere::parse_response(&c, &response(200, RERANK_RESPONSE)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["results"].as_array().unwrap().len(), 3);
        assert_eq!(
            v["results"][0],
            json!({"index": 3, "relevance_score": 0.999071})
        );
        assert_eq!(v["model"], "rerank-v3.5");
        assert_eq!(v["meta"]["billed_units"]["search_units"], 1);
        // Only search units: the gateway bills the tokens it counted.
        assert_eq!(t.usage, None);

        let mut counted: Value = serde_json::from_slice(RERANK_RESPONSE).unwrap();
        counted["meta"]["tokens"] = json!({"input_tokens": 120, "output_tokens": 0});
        let t = Cohere::parse_response(&c, &response(200, counted.to_string().as_bytes())).unwrap();
        let usage = t.usage.unwrap();
        assert_eq!(usage.input_tokens, 120);
        assert_eq!(usage.units, vec![("searches".to_owned(), 1)]);
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 120);

        for bad in [
            json!({"query": "q"}),
            json!({"query": "", "documents": ["a"]}),
            json!({"query": "q", "documents": []}),
            json!({"query": "q", "documents": [1]}),
            json!({"query": "q", "documents": [{"title": "x"}]}),
        ] {
            assert!(matches!(
                Cohere::prepare_request(&c, bad.to_string().as_bytes()),
                Err(AdapterError::InvalidRequest(_))
            ));
        }
    }
}

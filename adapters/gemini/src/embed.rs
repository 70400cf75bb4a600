//! OpenAI embeddings ↔ Gemini `batchEmbedContents`.
//!
//! Every input becomes one `EmbedContentRequest` of a batch, in order;
//! `dimensions` becomes `outputDimensionality`. Gemini counts no tokens for
//! embeddings, so none are reported. The vectors come back as floats
//! whatever `encoding_format` asked: the answer is translated without the
//! request at hand (OpenAI's Python client, which asks for base64 unless
//! told otherwise, reads floats as well).

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;

/// An OpenAI embeddings request → a `BatchEmbedContentsRequest`.
pub fn to_batch_request(call: &Call, req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let inputs = inputs(req)?;
    let model = crate::model_name(&call.model);
    let dimensions = req.get("dimensions").and_then(Value::as_u64);
    let requests: Vec<Value> = inputs
        .into_iter()
        .map(|text| {
            let mut r = Map::new();
            r.insert("model".into(), Value::String(model.clone()));
            r.insert("content".into(), json!({"parts": [{"text": text}]}));
            if let Some(d) = dimensions {
                r.insert("outputDimensionality".into(), json!(d));
            }
            Value::Object(r)
        })
        .collect();
    Ok(json!({ "requests": requests }))
}

/// The texts of an embeddings request's `input` (a string or an array of
/// strings; token arrays are refused).
pub fn inputs(req: &Map<String, Value>) -> Result<Vec<&str>, AdapterError> {
    match req.get("input") {
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_str().ok_or_else(|| {
                    errors::invalid_request(
                        "`input` must be a string or an array of strings: token arrays are not supported by Gemini channels",
                    )
                })
            })
            .collect(),
        _ => Err(errors::invalid_request(
            "`input` must be a string or a non-empty array of strings",
        )),
    }
}

/// A `BatchEmbedContentsResponse` → OpenAI's embeddings list.
pub fn to_openai(call: &Call, response: &Value) -> Result<Value, AdapterError> {
    let embeddings = response
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| errors::upstream(502, true, "Gemini's answer has no `embeddings`"))?;
    let data: Vec<Value> = embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "object": "embedding",
                "index": i,
                "embedding": e.get("values").cloned().unwrap_or_else(|| json!([])),
            })
        })
        .collect();
    Ok(json!({"object": "list", "data": data, "model": call.model}))
}

#[cfg(test)]
mod tests {
    use crate::{EMBEDDINGS, Gemini};
    use serde_json::{Value, json};
    use transit_adapter_sdk::prelude::*;
    use transit_adapter_sdk::testing::{call, response};

    const BATCH: &[u8] = include_bytes!("../fixtures/batch_embed_response.json");

    #[test]
    fn inputs_become_one_batch() {
        let mut c = call(EMBEDDINGS, "gemini-embedding-001", false);
        c.channel.base_url = "https://generativelanguage.googleapis.com".into();
        let req = Gemini::prepare_request(
            &c,
            br#"{"model":"alias","input":["hello","world"],"dimensions":768,"encoding_format":"float"}"#,
        )
        .unwrap();
        assert_eq!(
            req.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"
        );
        let b: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            b,
            json!({"requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 768},
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "world"}]}, "outputDimensionality": 768}
            ]})
        );
        let req = Gemini::prepare_request(&c, br#"{"input":"one"}"#).unwrap();
        let b: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(b["requests"].as_array().unwrap().len(), 1);
        assert!(b["requests"][0].get("outputDimensionality").is_none());
    }

    #[test]
    fn token_arrays_and_missing_input_are_refused() {
        let c = call(EMBEDDINGS, "gemini-embedding-001", false);
        for body in [
            &br#"{"input":[[1,2,3]]}"#[..],
            br#"{"input":[]}"#,
            br#"{"model":"m"}"#,
        ] {
            assert!(matches!(
                Gemini::prepare_request(&c, body),
                Err(AdapterError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn answer_becomes_an_openai_list_without_usage() {
        let c = call(EMBEDDINGS, "gemini-embedding-001", false);
        let t = Gemini::parse_response(&c, &response(200, BATCH)).unwrap();
        assert!(t.usage.is_none());
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "gemini-embedding-001");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][1]["object"], "embedding");
        assert_eq!(v["data"][0]["embedding"][2], -0.026918784);
        assert!(matches!(
            Gemini::parse_response(&c, &response(200, b"{}")),
            Err(AdapterError::Upstream(_))
        ));
    }
}

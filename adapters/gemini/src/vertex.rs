//! Gemini on Google Cloud Vertex AI (channel types `vertex`, `vertex-ai`).
//!
//! Vertex serves the same `GenerateContentRequest` / `Response` shapes as
//! AI Studio (stream events, `usageMetadata` and the error envelope
//! included), under a project and a location:
//! `POST {base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
//! (`:streamGenerateContent?alt=sse` for streams). What differs:
//!
//! - the credential is an OAuth access token, sent as
//!   `Authorization: Bearer …`. The gateway turns the channel's
//!   service-account key into that token and hands it over as the channel's
//!   key, so this adapter never sees the private key;
//! - the project comes from the channel option `project` (the gateway sets
//!   it from the service account's `project_id` when the operator did not),
//!   the location from `location` (alias `region`, default `us-central1`);
//! - the host is the location's endpoint: `https://{location}-aiplatform.googleapis.com`,
//!   or `https://aiplatform.googleapis.com` for `global`. A channel whose
//!   base URL is any `aiplatform.googleapis.com` host gets the one of its
//!   location; any other base URL (a proxy, a private endpoint) is used as it
//!   is, with `/v1` added unless it ends in a version;
//! - every content must carry its role (`user` or `model`): translated
//!   requests always do, and native bodies get `user` where they name none;
//! - embeddings are `:predict` with `{"instances": [{"content": …}]}`,
//!   answered with `{"predictions": [{"embeddings": {"values", "statistics":
//!   {"token_count"}}}]}` (the token counts are reported as usage). Gemini's
//!   native `embedContent` is refused on these channels.

use serde_json::{Map, Value, json};
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::url;

/// Channel types that are Vertex AI.
pub const KINDS: &[&str] = &["vertex", "vertex-ai"];
/// The location used when the channel names none.
pub const DEFAULT_LOCATION: &str = "us-central1";
/// The API version added to a base URL that names none.
const API_VERSION: &str = "v1";

/// Whether `call` goes to Vertex AI.
pub fn is_vertex(call: &Call) -> bool {
    KINDS.contains(&call.channel.kind.as_str())
}

fn option<'a>(call: &'a Call, name: &str) -> Option<&'a str> {
    call.channel
        .option(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The channel's location (`location`, or `region`, or `us-central1`).
pub fn location(call: &Call) -> &str {
    option(call, "location")
        .or_else(|| option(call, "region"))
        .unwrap_or(DEFAULT_LOCATION)
}

/// The channel's project.
pub fn project(call: &Call) -> Result<&str, AdapterError> {
    option(call, "project").ok_or_else(|| {
        errors::invalid_request(
            "this Vertex AI channel names no project: set the channel option `project` or use a service-account key with a `project_id`",
        )
    })
}

/// A path segment from a channel option: only what a project id or a
/// location can hold, so an option cannot redirect the call.
fn segment<'a>(what: &str, value: &'a str) -> Result<&'a str, AdapterError> {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        Ok(value)
    } else {
        Err(errors::invalid_request(format!(
            "the Vertex AI {what} `{value}` is not valid"
        )))
    }
}

/// The endpoint of `location` on Google Cloud.
fn google_endpoint(location: &str) -> String {
    if location == "global" {
        "https://aiplatform.googleapis.com".to_owned()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    }
}

/// Whether a base URL is one of Google's own Vertex endpoints.
fn is_google_host(base: &str) -> bool {
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    let host = after_scheme.split('/').next().unwrap_or_default();
    let host = host.to_ascii_lowercase();
    host == "aiplatform.googleapis.com" || host.ends_with("-aiplatform.googleapis.com")
}

/// The versioned API base: `https://{location}-aiplatform.googleapis.com/v1`
/// or the operator's base URL with a version.
pub fn api_base(call: &Call) -> Result<String, AdapterError> {
    let location = segment("location", location(call))?;
    let base = call.channel.base_url.trim().trim_end_matches('/');
    let base = if base.is_empty() || is_google_host(base) {
        google_endpoint(location)
    } else {
        base.to_owned()
    };
    let after_scheme = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
    let versioned = after_scheme
        .split_once('/')
        .and_then(|(_, path)| path.rsplit('/').next())
        .is_some_and(crate::is_version);
    if versioned {
        return Ok(base);
    }
    let version = option(call, "api-version")
        .map(|v| v.trim_matches('/'))
        .filter(|v| !v.is_empty())
        .unwrap_or(API_VERSION);
    Ok(format!("{base}/{}", url::segment("api-version", version)?))
}

/// The model's resource path under the location: `publishers/google/models/NAME`
/// (a name given as `models/NAME` loses its prefix; one given as
/// `publishers/…/models/…` is kept), the name percent-encoded.
pub fn model_path(model: &str) -> Result<String, AdapterError> {
    let model = model.trim().trim_matches('/');
    let model = model.strip_prefix("models/").unwrap_or(model);
    let (publisher, id) = match model.strip_prefix("publishers/") {
        Some(rest) => match rest.split_once("/models/") {
            Some((publisher, id)) => (publisher, id),
            None => {
                return Err(errors::invalid_request(format!(
                    "the Vertex AI model `{model}` is not valid"
                )));
            }
        },
        None => ("google", model),
    };
    if id.is_empty() || publisher.is_empty() {
        return Err(errors::invalid_request("the channel names no model"));
    }
    Ok(format!(
        "publishers/{}/models/{}",
        url::segment("model publisher", publisher)?,
        url::segment("model", id)?
    ))
}

/// The URL of `action` (`generateContent`, `predict`, …) on the call's model.
pub fn url(call: &Call, action: &str) -> Result<String, AdapterError> {
    let project = segment("project", project(call)?)?;
    let location = segment("location", location(call))?;
    Ok(format!(
        "{}/projects/{project}/locations/{location}/{}:{action}",
        api_base(call)?,
        model_path(&call.model)?
    ))
}

/// The bearer token, the JSON content type and any `header.NAME` option.
pub fn headers(call: &Call) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "authorization".to_owned(),
            format!("Bearer {}", call.channel.api_key),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    headers.extend(call.channel.option_headers());
    headers
}

/// A native `GenerateContentRequest` made fit for Vertex: every content gets
/// a role (`user` where it has none), and a body `model` (which Vertex reads
/// from the URL only) is dropped. Sent as it came when nothing changes.
pub fn native_generate_body(body: &[u8]) -> Result<Vec<u8>, AdapterError> {
    let mut request = transit_adapter_sdk::json::parse_object(body)?;
    let mut changed = request.remove("model").is_some();
    if let Some(contents) = request.get_mut("contents").and_then(Value::as_array_mut) {
        for content in contents.iter_mut().filter_map(Value::as_object_mut) {
            let has_role = content
                .get("role")
                .and_then(Value::as_str)
                .is_some_and(|r| !r.is_empty());
            if !has_role {
                content.insert("role".to_owned(), Value::String("user".to_owned()));
                changed = true;
            }
        }
    }
    if changed {
        transit_adapter_sdk::json::to_vec(&request)
    } else {
        Ok(body.to_vec())
    }
}

/// An OpenAI embeddings request → a Vertex `predict` request.
pub fn to_predict_request(req: &Map<String, Value>) -> Result<Value, AdapterError> {
    let inputs = crate::embed::inputs(req)?;
    let instances: Vec<Value> = inputs
        .into_iter()
        .map(|text| json!({ "content": text }))
        .collect();
    let mut out = Map::new();
    out.insert("instances".into(), Value::Array(instances));
    if let Some(d) = req.get("dimensions").and_then(Value::as_u64) {
        out.insert("parameters".into(), json!({ "outputDimensionality": d }));
    }
    Ok(Value::Object(out))
}

/// A Vertex `predict` answer → OpenAI's embeddings list, with the input
/// tokens Vertex counted.
pub fn predictions_to_openai(
    call: &Call,
    response: &Value,
) -> Result<(Value, Option<Usage>), AdapterError> {
    let predictions = response
        .get("predictions")
        .and_then(Value::as_array)
        .ok_or_else(|| errors::upstream(502, true, "Vertex AI's answer has no `predictions`"))?;
    let mut tokens: Option<u64> = None;
    let data: Vec<Value> = predictions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let embeddings = p.get("embeddings");
            if let Some(n) = embeddings
                .and_then(|e| e.get("statistics"))
                .and_then(|s| s.get("token_count"))
                .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)))
            {
                tokens = Some(tokens.unwrap_or(0) + n);
            }
            json!({
                "object": "embedding",
                "index": i,
                "embedding": embeddings
                    .and_then(|e| e.get("values"))
                    .cloned()
                    .unwrap_or_else(|| json!([])),
            })
        })
        .collect();
    let mut out = json!({"object": "list", "data": data, "model": call.model});
    if let Some(n) = tokens {
        out["usage"] = json!({"prompt_tokens": n, "total_tokens": n});
    }
    Ok((out, tokens.map(|n| Usage::tokens(n, 0))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CHAT, EMBEDDINGS, Gemini, NATIVE_EMBED, NATIVE_GENERATE};
    use transit_adapter_sdk::testing::{call, response, sse_events};

    const RESPONSE: &[u8] = include_bytes!("../fixtures/vertex/response.json");
    const STREAM: &str = include_str!("../fixtures/vertex/stream.sse");
    const PREDICT: &[u8] = include_bytes!("../fixtures/vertex/predict_response.json");
    const UNAUTHENTICATED: &[u8] = include_bytes!("../fixtures/vertex/error_unauthenticated.json");
    const PERMISSION_DENIED: &[u8] =
        include_bytes!("../fixtures/vertex/error_permission_denied.json");
    const RESOURCE_EXHAUSTED: &[u8] =
        include_bytes!("../fixtures/vertex/error_resource_exhausted.json");
    const INVALID_ROLE: &[u8] = include_bytes!("../fixtures/vertex/error_invalid_role.json");

    fn vertex(endpoint: &str, model: &str, stream: bool) -> Call {
        let mut c = call(endpoint, model, stream);
        c.channel.kind = "vertex".into();
        c.channel.base_url = "https://us-central1-aiplatform.googleapis.com".into();
        c.channel.api_key = "ya29.test-token".into();
        c.channel.options = vec![("project".into(), "my-project".into())];
        c
    }

    fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn chat_goes_to_the_project_and_location_with_a_bearer_token() {
        let c = vertex(CHAT, "gemini-2.5-flash", false);
        let body = br#"{"model":"alias","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"Again"}]}"#;
        let req = Gemini::prepare_request(&c, body).unwrap();
        assert_eq!(
            req.url,
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            header(&req, "authorization"),
            Some("Bearer ya29.test-token")
        );
        assert_eq!(header(&req, "x-goog-api-key"), None);
        assert!(!req.url.contains("key="));
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        let contents = sent["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3);
        assert!(
            contents
                .iter()
                .all(|c| matches!(c["role"].as_str(), Some("user" | "model"))),
            "{sent}"
        );
        assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");

        let mut s = vertex(CHAT, "gemini-2.5-flash", true);
        s.channel.kind = "vertex-ai".into();
        let req = Gemini::prepare_request(&s, body).unwrap();
        assert!(
            req.url.ends_with(
                "/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
            ),
            "{}",
            req.url
        );
        assert_eq!(req.framing, Framing::Sse);
    }

    #[test]
    fn endpoints_follow_the_location_unless_the_base_is_foreign() {
        let mut c = vertex(CHAT, "gemini-2.5-pro", false);
        for (options, base, expected) in [
            (
                vec![("location", "europe-west4")],
                "https://us-central1-aiplatform.googleapis.com",
                "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/europe-west4/",
            ),
            (
                vec![("region", "asia-northeast1")],
                "",
                "https://asia-northeast1-aiplatform.googleapis.com/v1/projects/my-project/locations/asia-northeast1/",
            ),
            (
                vec![("location", "global")],
                "https://aiplatform.googleapis.com/",
                "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/",
            ),
            (
                vec![("location", "us-east5")],
                "http://127.0.0.1:9000",
                "http://127.0.0.1:9000/v1/projects/my-project/locations/us-east5/",
            ),
            (
                vec![("api-version", "v1beta1")],
                "https://proxy.example/vertex",
                "https://proxy.example/vertex/v1beta1/projects/my-project/locations/us-central1/",
            ),
            (
                vec![],
                "https://proxy.example/vertex/v1/",
                "https://proxy.example/vertex/v1/projects/my-project/locations/us-central1/",
            ),
        ] {
            c.channel.base_url = base.into();
            c.channel.options = vec![("project".into(), "my-project".into())];
            c.channel
                .options
                .extend(options.iter().map(|(k, v)| ((*k).into(), (*v).into())));
            let req =
                Gemini::prepare_request(&c, br#"{"messages":[{"role":"user","content":"x"}]}"#)
                    .unwrap();
            assert!(req.url.starts_with(expected), "{base}: {}", req.url);
        }
    }

    #[test]
    fn models_projects_and_locations_are_checked() {
        assert_eq!(
            model_path("models/gemini-2.0-flash-001").unwrap(),
            "publishers/google/models/gemini-2.0-flash-001"
        );
        assert_eq!(
            model_path("publishers/anthropic/models/claude-sonnet-4@20250514").unwrap(),
            "publishers/anthropic/models/claude-sonnet-4@20250514"
        );
        assert_eq!(model_path("a b").unwrap(), "publishers/google/models/a%20b");
        assert!(model_path(" ").is_err());
        let mut c = vertex(CHAT, "gemini-2.5-flash", false);
        c.channel.options.clear();
        let body = br#"{"messages":[{"role":"user","content":"x"}]}"#;
        assert!(matches!(
            Gemini::prepare_request(&c, body),
            Err(AdapterError::InvalidRequest(m)) if m.contains("project")
        ));
        c.channel.options = vec![("project".into(), "evil.example/x?".into())];
        assert!(Gemini::prepare_request(&c, body).is_err());
        c.channel.options = vec![
            ("project".into(), "p".into()),
            ("location".into(), "us/../../x".into()),
        ];
        assert!(Gemini::prepare_request(&c, body).is_err());
    }

    #[test]
    fn native_bodies_get_roles_and_lose_their_model() {
        let c = vertex(NATIVE_GENERATE, "gemini-2.5-flash", false);
        let body = br#"{"model":"models/x","contents":[{"parts":[{"text":"hi"}]}]}"#;
        let req = Gemini::prepare_request(&c, body).unwrap();
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            sent,
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        );
        assert!(
            req.url
                .ends_with("/publishers/google/models/gemini-2.5-flash:generateContent")
        );
        let ok = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
        assert_eq!(Gemini::prepare_request(&c, ok).unwrap().body, ok.to_vec());

        let e = vertex(NATIVE_EMBED, "gemini-embedding-001", false);
        assert!(matches!(
            Gemini::prepare_request(&e, br#"{"content":{"parts":[{"text":"x"}]}}"#),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn answers_and_streams_read_as_on_ai_studio() {
        let c = vertex(CHAT, "gemini-2.5-flash", false);
        let t = Gemini::parse_response(&c, &response(200, RESPONSE)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "The sky is blue because of Rayleigh scattering."
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let u = t.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (8, 10));

        let s = vertex(CHAT, "gemini-2.5-flash", true);
        let mut stream = crate::stream::GeminiStream::new(s);
        let mut text = String::new();
        let mut usage = None;
        let mut done = false;
        for event in sse_events(STREAM) {
            let b = stream.push(vec![event]).unwrap();
            for chunk in &b.chunks {
                let v: Value = serde_json::from_slice(chunk).unwrap();
                if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                    text.push_str(t);
                }
            }
            usage = b.usage.or(usage);
            done |= b.done;
        }
        stream.finish().unwrap();
        assert!(done);
        assert_eq!(text, "The sky is blue because of Rayleigh scattering.");
        let u = usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (8, 10));
    }

    #[test]
    fn embeddings_are_predictions() {
        let c = vertex(EMBEDDINGS, "text-embedding-005", false);
        let req = Gemini::prepare_request(
            &c,
            br#"{"model":"alias","input":["hello","world"],"dimensions":256}"#,
        )
        .unwrap();
        assert_eq!(
            req.url,
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/publishers/google/models/text-embedding-005:predict"
        );
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            sent,
            json!({"instances": [{"content": "hello"}, {"content": "world"}],
                   "parameters": {"outputDimensionality": 256}})
        );
        let req = Gemini::prepare_request(&c, br#"{"input":"one"}"#).unwrap();
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent, json!({"instances": [{"content": "one"}]}));
        assert!(matches!(
            Gemini::prepare_request(&c, br#"{"input":[[1,2]]}"#),
            Err(AdapterError::InvalidRequest(_))
        ));

        let t = Gemini::parse_response(&c, &response(200, PREDICT)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"][0], 0.0123);
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(t.usage.unwrap().input_tokens, 3);
        assert!(matches!(
            Gemini::parse_response(&c, &response(200, b"{}")),
            Err(AdapterError::Upstream(_))
        ));
    }

    #[test]
    fn vertex_errors_are_classified() {
        let c = vertex(CHAT, "gemini-2.5-flash", false);
        let mapped = |status, body: &[u8]| Gemini::map_error(&c, &response(status, body));
        assert!(matches!(
            mapped(401, UNAUTHENTICATED),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            mapped(403, PERMISSION_DENIED),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            mapped(429, RESOURCE_EXHAUSTED),
            AdapterError::RateLimited(r) if r.message.starts_with("Resource exhausted")
        ));
        assert!(matches!(
            mapped(400, INVALID_ROLE),
            AdapterError::InvalidRequest(m) if m.contains("valid role")
        ));
    }
}

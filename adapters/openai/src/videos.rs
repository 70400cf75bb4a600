//! OpenAI's Videos API (Sora) as asynchronous tasks.
//!
//! - Submit: `POST /v1/videos`. A client that called OpenAI's own shape
//!   (endpoint `videos`) has its body passed through with the model mapped;
//!   a multipart upload (a file as `input_reference`) passes through byte
//!   for byte with the client's `content-type`, boundary included. A client
//!   that called the generic `video/generations` shape has it translated:
//!   `prompt`, `seconds` (a string, from `seconds` or `duration`), `size`
//!   (from `size`, `width` × `height` or a 16:9 / 9:16 `aspect_ratio`),
//!   `image` as `input_reference.image_url`, and `metadata` merged in.
//! - Poll: `GET /v1/videos/{id}`, whose `status` is `queued`,
//!   `in_progress`, `completed` or `failed` (with `error.message`).
//! - Content: `GET /v1/videos/{id}/content?variant=video|thumbnail|spritesheet`,
//!   relayed as raw bytes; a finished task reports no result URLs.
//!
//! Usage: a finished video reports its length as the unit `seconds`.

use serde_json::{Map, Value};
use transit_adapter_sdk::json::{self, present, seconds_of};
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::url;

/// OpenAI's default clip length, in seconds, when a request names none.
const DEFAULT_SECONDS: u64 = 4;

/// The variants `GET /v1/videos/{id}/content` serves.
const VARIANTS: &[&str] = &["video", "thumbnail", "spritesheet"];

/// The submit request for `call.endpoint` "videos" or "video.generations".
pub fn prepare_submit(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
    let url = openai::endpoint_url(&call.channel.base_url, "videos");
    match call.endpoint.as_str() {
        "videos" => {
            if let Some(content_type) = call.header("content-type").filter(|ct| is_multipart(ct)) {
                // The model cannot be remapped without rewriting the form;
                // the upload goes as the client built it.
                let mut headers = auth_headers(call);
                headers.push(("content-type".to_owned(), content_type.to_owned()));
                return Ok(UpstreamRequest::post_json(url, headers, body.to_vec()));
            }
            let mut request = json::parse_object(body)?;
            request.insert("model".to_owned(), Value::String(call.model.clone()));
            let seconds = match request.get("seconds") {
                Some(value) if !value.is_null() => seconds_of(value, "seconds").ok(),
                _ => Some(DEFAULT_SECONDS),
            };
            let mut upstream = UpstreamRequest::post_json(
                url,
                openai::bearer_headers(call),
                json::to_vec(&request)?,
            );
            upstream.usage = seconds.map(seconds_usage);
            Ok(upstream)
        }
        "video.generations" => {
            let request = json::parse_object(body)?;
            let (translated, seconds) = from_generic(call, &request)?;
            let mut upstream = UpstreamRequest::post_json(
                url,
                openai::bearer_headers(call),
                json::to_vec(&translated)?,
            );
            upstream.usage = Some(seconds_usage(seconds));
            Ok(upstream)
        }
        _ => Err(errors::unsupported_endpoint(call)),
    }
}

/// Translate the generic `video/generations` shape into OpenAI's create body.
/// Returns the body and the clip length it asks for.
fn from_generic(
    call: &Call,
    request: &Map<String, Value>,
) -> Result<(Map<String, Value>, u64), AdapterError> {
    let prompt = request
        .get("prompt")
        .and_then(Value::as_str)
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| errors::invalid_request("`prompt` is required"))?;
    let mut out = Map::new();
    out.insert("model".to_owned(), Value::String(call.model.clone()));
    out.insert("prompt".to_owned(), Value::String(prompt.to_owned()));

    let seconds = match present(request, "seconds").or_else(|| present(request, "duration")) {
        Some((field, value)) => seconds_of(value, field)?,
        None => DEFAULT_SECONDS,
    };
    out.insert("seconds".to_owned(), Value::String(seconds.to_string()));

    if let Some(size) = size_of(request) {
        out.insert("size".to_owned(), Value::String(size));
    }

    let reference = request
        .get("input_reference")
        .filter(|v| !v.is_null())
        .or_else(|| request.get("image").filter(|v| !v.is_null()));
    match reference {
        Some(Value::String(image)) if !image.is_empty() => {
            let mut reference = Map::new();
            reference.insert("image_url".to_owned(), Value::String(image.clone()));
            out.insert("input_reference".to_owned(), Value::Object(reference));
        }
        Some(reference @ Value::Object(_)) => {
            out.insert("input_reference".to_owned(), reference.clone());
        }
        Some(Value::String(_)) | None => {}
        Some(_) => {
            return Err(errors::invalid_request(
                "`image` must be an image URL or a base64 data URL",
            ));
        }
    }

    for (key, value) in metadata_of(request)? {
        if key != "model" {
            out.insert(key, value);
        }
    }
    Ok((out, seconds))
}

/// The `size` of a generic request: `size` as given, `width` × `height`, or
/// the Sora size of a 16:9 / 9:16 `aspect_ratio`.
fn size_of(request: &Map<String, Value>) -> Option<String> {
    if let Some(size) = request
        .get("size")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Some(size.to_owned());
    }
    let dimension = |k: &str| request.get(k).and_then(Value::as_u64).filter(|v| *v > 0);
    if let (Some(width), Some(height)) = (dimension("width"), dimension("height")) {
        return Some(format!("{width}x{height}"));
    }
    match request.get("aspect_ratio").and_then(Value::as_str)? {
        "16:9" => Some("1280x720".to_owned()),
        "9:16" => Some("720x1280".to_owned()),
        _ => None,
    }
}

/// The vendor extras of a generic request: `metadata`, an object or a JSON
/// string holding one.
fn metadata_of(request: &Map<String, Value>) -> Result<Map<String, Value>, AdapterError> {
    match request.get("metadata") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(Map::new()),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(errors::invalid_request("`metadata` must be a JSON object")),
        },
        Some(_) => Err(errors::invalid_request("`metadata` must be a JSON object")),
    }
}

fn seconds_usage(seconds: u64) -> Usage {
    let mut usage = Usage::tokens(0, 0);
    usage.units = vec![("seconds".to_owned(), seconds)];
    usage
}

fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
}

/// The channel's authentication headers, without a content type (for GETs
/// and uploads that carry their own).
fn auth_headers(call: &Call) -> Vec<(String, String)> {
    let mut headers = openai::bearer_headers(call);
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
    headers
}

/// Read the Video object OpenAI answers a create with.
pub fn parse_submit(response: &UpstreamResponse) -> Result<Submitted, AdapterError> {
    let video = video_object(response)?;
    let upstream_id = video
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            // The job may exist upstream: another channel must not start a
            // second one.
            errors::upstream(502, false, "the upstream accepted the video but sent no id")
        })?;
    let status = match video.get("status").and_then(Value::as_str) {
        Some(status) => status_of(status)?,
        None => TaskStatus::Queued,
    };
    Ok(Submitted {
        upstream_id: upstream_id.to_owned(),
        status,
    })
}

/// `GET /v1/videos/{id}`.
pub fn prepare_poll(call: &Call, upstream_id: &str) -> Result<UpstreamRequest, AdapterError> {
    let url = openai::endpoint_url(
        &call.channel.base_url,
        &format!("videos/{}", url::id_segment(upstream_id)?),
    );
    Ok(UpstreamRequest::get(url, auth_headers(call)))
}

/// Read a Video object into the task's state.
pub fn parse_poll(response: &UpstreamResponse) -> Result<TaskState, AdapterError> {
    let video = video_object(response)?;
    let status = video
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| errors::upstream(502, true, "the upstream's video has no status"))?;
    let progress = video
        .get("progress")
        .and_then(Value::as_u64)
        .map(|p| p.min(100) as u8);
    Ok(match status_of(status)? {
        TaskStatus::Queued => TaskState::running(TaskStatus::Queued, progress.unwrap_or(0)),
        TaskStatus::Running => TaskState::running(TaskStatus::Running, progress.unwrap_or(50)),
        TaskStatus::Succeeded => {
            let mut state = TaskState::succeeded(Vec::new());
            state.usage = video
                .get("seconds")
                .and_then(|s| seconds_of(s, "seconds").ok())
                .map(seconds_usage);
            state
        }
        TaskStatus::Failed => {
            let message = video
                .get("error")
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .unwrap_or("the video generation failed upstream");
            TaskState::failed(message.to_owned())
        }
    })
}

/// `GET /v1/videos/{id}/content?variant=…`, relayed as raw bytes.
pub fn prepare_content(
    call: &Call,
    upstream_id: &str,
    variant: &str,
) -> Result<UpstreamRequest, AdapterError> {
    let variant = if variant.is_empty() { "video" } else { variant };
    if !VARIANTS.contains(&variant) {
        return Err(errors::invalid_request(format!(
            "unknown content variant `{variant}`; expected one of {}",
            VARIANTS.join(", ")
        )));
    }
    let url = openai::endpoint_url(
        &call.channel.base_url,
        &format!(
            "videos/{}/content?variant={variant}",
            url::id_segment(upstream_id)?
        ),
    );
    let mut headers = auth_headers(call);
    headers.push(("accept".to_owned(), "application/binary".to_owned()));
    let mut request = UpstreamRequest::get(url, headers);
    request.framing = Framing::Raw;
    Ok(request)
}

/// The JSON object of a Video answer; an `error` in a 2xx body is the
/// upstream's failure.
fn video_object(response: &UpstreamResponse) -> Result<Map<String, Value>, AdapterError> {
    match json::parse_upstream(&response.body)? {
        Value::Object(map) => match map.get("error") {
            Some(err) if !err.is_null() && map.get("status").is_none() => {
                let (message, code) = errors::error_message(&json::to_vec(err)?);
                Err(AdapterError::Upstream(transit_adapter_sdk::UpstreamError {
                    status: 502,
                    retryable: true,
                    message,
                    code,
                }))
            }
            _ => Ok(map),
        },
        _ => Err(errors::upstream(
            502,
            true,
            "the upstream's video answer is not a JSON object",
        )),
    }
}

fn status_of(status: &str) -> Result<TaskStatus, AdapterError> {
    match status {
        "queued" => Ok(TaskStatus::Queued),
        "in_progress" => Ok(TaskStatus::Running),
        "completed" => Ok(TaskStatus::Succeeded),
        "failed" | "cancelled" | "expired" => Ok(TaskStatus::Failed),
        other => Err(errors::upstream(
            502,
            true,
            format!("the upstream reported an unknown video status `{other}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenAi;
    use transit_adapter_sdk::testing::{call, response};

    const CREATE: &[u8] = include_bytes!("../fixtures/video_create_request.json");
    const GENERIC: &[u8] = include_bytes!("../fixtures/video_generations_request.json");
    const QUEUED: &[u8] = include_bytes!("../fixtures/video_queued.json");
    const IN_PROGRESS: &[u8] = include_bytes!("../fixtures/video_in_progress.json");
    const COMPLETED: &[u8] = include_bytes!("../fixtures/video_completed.json");
    const FAILED: &[u8] = include_bytes!("../fixtures/video_failed.json");
    const ERROR: &[u8] = include_bytes!("../fixtures/video_error.json");
    const ID: &str = "video_68d7512d07848190b3e45da0ecbebcde004da08e1e0678d5";

    fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn body(req: &UpstreamRequest) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    fn seconds(usage: Option<&Usage>) -> Option<u64> {
        usage.and_then(|u| {
            u.units
                .iter()
                .find(|(k, _)| k == "seconds")
                .map(|(_, v)| *v)
        })
    }

    #[test]
    fn openai_shape_passes_through_with_the_model_mapped() {
        let mut c = call("videos", "sora-2-2025-10-06", false);
        c.channel.base_url = "https://api.openai.com".into();
        let req = OpenAi::prepare_submit(&c, CREATE).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.url, "https://api.openai.com/v1/videos");
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
        assert_eq!(header(&req, "content-type"), Some("application/json"));
        let sent = body(&req);
        assert_eq!(sent["model"], "sora-2-2025-10-06");
        assert_eq!(sent["seconds"], "8");
        assert_eq!(sent["size"], "1280x720");
        assert_eq!(seconds(req.usage.as_ref()), Some(8));
    }

    #[test]
    fn multipart_uploads_pass_through_byte_for_byte() {
        let mut c = call("videos", "sora-2", false);
        let content_type = "multipart/form-data; boundary=----x123";
        c.headers = vec![("content-type".into(), content_type.into())];
        let form = b"------x123\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nA cat\r\n------x123--\r\n";
        let req = OpenAi::prepare_submit(&c, form).unwrap();
        assert_eq!(req.body, form);
        assert_eq!(header(&req, "content-type"), Some(content_type));
        assert_eq!(
            req.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
    }

    #[test]
    fn generic_shape_is_translated() {
        let c = call("video.generations", "sora-2-pro", false);
        let req = OpenAi::prepare_submit(&c, GENERIC).unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/videos");
        let sent = body(&req);
        assert_eq!(sent["model"], "sora-2-pro");
        assert_eq!(sent["seconds"], "8", "seconds must be a JSON string");
        assert_eq!(sent["size"], "720x1280");
        assert_eq!(
            sent["input_reference"]["image_url"],
            "https://example.com/first_frame.png"
        );
        assert_eq!(sent["character_ids"][0], "char_123");
        assert!(sent.get("duration").is_none() && sent.get("aspect_ratio").is_none());
        assert!(sent.get("metadata").is_none() && sent.get("image").is_none());
        assert_eq!(seconds(req.usage.as_ref()), Some(8));
        assert!(!String::from_utf8_lossy(&req.body).contains("sk-test"));
    }

    #[test]
    fn generic_durations_and_sizes() {
        let c = call("video.generations", "sora-2", false);
        for (input, expected) in [
            (r#"{"prompt":"p","duration":"12"}"#, "12"),
            (r#"{"prompt":"p","duration":4.0}"#, "4"),
            (r#"{"prompt":"p","seconds":8,"duration":4}"#, "8"),
            (r#"{"prompt":"p"}"#, "4"),
        ] {
            let sent = body(&OpenAi::prepare_submit(&c, input.as_bytes()).unwrap());
            assert_eq!(sent["seconds"], expected, "{input}");
        }
        let sent = body(
            &OpenAi::prepare_submit(&c, br#"{"prompt":"p","width":1792,"height":1024}"#).unwrap(),
        );
        assert_eq!(sent["size"], "1792x1024");
        let sent = body(
            &OpenAi::prepare_submit(
                &c,
                br#"{"prompt":"p","metadata":"{\"size\":\"1024x1792\"}"}"#,
            )
            .unwrap(),
        );
        assert_eq!(sent["size"], "1024x1792");
    }

    #[test]
    fn generic_shape_rejects_bad_input() {
        let c = call("video.generations", "sora-2", false);
        for input in [
            r#"{"model":"sora-2"}"#,
            r#"{"prompt":"  "}"#,
            r#"{"prompt":"p","duration":5.5}"#,
            r#"{"prompt":"p","duration":"five"}"#,
            r#"{"prompt":"p","metadata":[1]}"#,
            r#"[1,2]"#,
            "not json",
        ] {
            assert!(
                matches!(
                    OpenAi::prepare_submit(&c, input.as_bytes()),
                    Err(AdapterError::InvalidRequest(_))
                ),
                "{input}"
            );
        }
    }

    #[test]
    fn other_task_endpoints_are_unsupported() {
        let c = call("images.generations", "dall-e-3", false);
        assert!(matches!(
            OpenAi::prepare_submit(&c, br#"{"prompt":"p"}"#),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn submit_answer_gives_the_video_id() {
        let c = call("videos", "sora-2", false);
        let submitted = OpenAi::parse_submit(&c, &response(200, QUEUED)).unwrap();
        assert_eq!(submitted.upstream_id, ID);
        assert_eq!(submitted.status, TaskStatus::Queued);
        let err = OpenAi::parse_submit(&c, &response(200, br#"{"object":"video"}"#)).unwrap_err();
        assert!(matches!(err, AdapterError::Upstream(e) if !e.retryable));
    }

    #[test]
    fn poll_reads_every_status() {
        let c = call("videos", "sora-2", false);
        let req = OpenAi::prepare_poll(&c, ID).unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.url, format!("http://upstream.test/v1/videos/{ID}"));
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
        assert!(req.body.is_empty());

        let queued = OpenAi::parse_poll(&c, &response(200, QUEUED)).unwrap();
        assert_eq!((queued.status, queued.progress), (TaskStatus::Queued, 0));
        let running = OpenAi::parse_poll(&c, &response(200, IN_PROGRESS)).unwrap();
        assert_eq!(
            (running.status, running.progress),
            (TaskStatus::Running, 42)
        );
        let done = OpenAi::parse_poll(&c, &response(200, COMPLETED)).unwrap();
        assert_eq!((done.status, done.progress), (TaskStatus::Succeeded, 100));
        assert!(
            done.results.is_empty(),
            "content comes through prepare_content"
        );
        assert_eq!(seconds(done.usage.as_ref()), Some(8));
        let failed = OpenAi::parse_poll(&c, &response(200, FAILED)).unwrap();
        assert_eq!(failed.status, TaskStatus::Failed);
        assert_eq!(
            failed.error.as_deref(),
            Some("Your request was blocked by our moderation system.")
        );
    }

    #[test]
    fn poll_rejects_unreadable_answers() {
        let c = call("videos", "sora-2", false);
        for bad in [&b"{}"[..], b"[]", b"", br#"{"status":"melting"}"#, ERROR] {
            assert!(OpenAi::parse_poll(&c, &response(200, bad)).is_err());
        }
    }

    #[test]
    fn ids_are_escaped_into_the_path() {
        let c = call("videos", "sora-2", false);
        let req = OpenAi::prepare_poll(&c, "a/b?c").unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/videos/a%2Fb%3Fc");
        assert!(OpenAi::prepare_poll(&c, "").is_err());
    }

    #[test]
    fn content_download_is_raw() {
        let mut c = call("videos", "sora-2", false);
        c.channel.base_url = "https://api.openai.com/v1".into();
        let req = OpenAi::prepare_content(&c, ID, "thumbnail").unwrap();
        assert_eq!(
            req.url,
            format!("https://api.openai.com/v1/videos/{ID}/content?variant=thumbnail")
        );
        assert_eq!(req.method, "GET");
        assert_eq!(req.framing, Framing::Raw);
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
        let default = OpenAi::prepare_content(&c, ID, "").unwrap();
        assert!(default.url.ends_with("?variant=video"));
        assert!(matches!(
            OpenAi::prepare_content(&c, ID, "../../x"),
            Err(AdapterError::InvalidRequest(_))
        ));
    }

    #[test]
    fn video_errors_are_classified() {
        let c = call("videos", "sora-2", false);
        let err = OpenAi::map_error(&c, &response(400, ERROR));
        assert!(matches!(err, AdapterError::Upstream(e) if e.status == 400 && !e.retryable));
    }
}

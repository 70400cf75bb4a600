//! The APIMart adapter: asynchronous video and image generation through
//! APIMart (`https://api.apimart.ai`), which fronts many vendors' models
//! (Sora, Veo, Kling, Seedance, Grok, Seedream, Nano Banana, GPT Image, ...)
//! behind one task API. It serves tasks only; chat and the other
//! synchronous endpoints are unsupported.
//!
//! Submit:
//! - `videos` (OpenAI's `POST /v1/videos` shape) and `video.generations`
//!   (the generic shape) → `POST /v1/videos/generations`: `model`, `prompt`,
//!   `duration` as an integer (from `seconds` or `duration`), `aspect_ratio`
//!   and `resolution` (given, or derived from a `WIDTHxHEIGHT` `size` or
//!   `width` × `height`; a `size` that is not a pixel size, such as Grok's
//!   `16:9`, passes as `size`), `image_urls` (from `image`, `images`,
//!   `image_urls` or `input_reference`), then `metadata` merged over the
//!   body for any vendor field (`negative_prompt`, `watermark`,
//!   `video_urls`, ...).
//! - `images.generations` → `POST /v1/images/generations`: `model`,
//!   `prompt`, `n`, `size` as a ratio (`1024x1536` → `2:3`; ratios pass
//!   through; `auto` is dropped), `resolution`, `image_urls`, `metadata`.
//! - The answer, `{"code":200,"data":[{"task_id","status"}]}` or
//!   `{"code":200,"data":{"id"|"task_id","status",...}}`, gives the task id,
//!   which is the upstream id as is.
//!
//! Poll: `GET /v1/tasks/{id}?language=en`. Statuses `submitted`/`pending`
//! are queued, `processing` running, `completed` succeeded (results from
//! `result.videos[].url` / `result.images[].url`, each a string or a list;
//! a completed task without a URL is reported failed), `failed` and
//! `cancelled` failed with `error.message`. Progress is APIMart's own.
//!
//! Errors: APIMart answers failures with a `code` other than 200 in the
//! body, sometimes under HTTP 200; both are classified by that code
//! (400/422 → invalid request, 401/403 → credentials, 429 → rate limit,
//! 402 → the channel's balance, retried elsewhere).
//!
//! Usage: images report `("images", count)` when they finish. Videos report
//! `("seconds", duration)` at submit time (`UpstreamRequest::usage`, from
//! the requested duration), and at completion when the task answer carries
//! a duration.
//!
//! Channel options: `language` (the poll's message language, default `en`)
//! and `header.NAME` (any extra header).

use serde_json::{Map, Value};
use transit_adapter_sdk::json::{self, present, seconds_of, string};
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::{LogLevel, RateLimit, UpstreamError, url};

pub struct ApiMart;

/// Images are generated as tasks only: `images.generations.async` tells
/// the gateway to answer `/v1/images/generations` with a task.
const ENDPOINTS: &[&str] = &["videos", "video.generations", "images.generations.async"];

/// Aspect ratios a pixel size is rounded to, for videos and images.
const VIDEO_RATIOS: &[(u64, u64)] = &[(16, 9), (9, 16), (1, 1), (4, 3), (3, 4)];
const IMAGE_RATIOS: &[(u64, u64)] = &[
    (1, 1),
    (16, 9),
    (9, 16),
    (4, 3),
    (3, 4),
    (3, 2),
    (2, 3),
    (21, 9),
];

impl Adapter for ApiMart {
    type Stream = openai::PassthroughStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("apimart", env!("CARGO_PKG_VERSION"), ENDPOINTS)
            .with_description("APIMart asynchronous video and image generation")
    }

    fn prepare_request(call: &Call, _body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        Err(errors::unsupported_endpoint(call))
    }

    fn parse_response(
        call: &Call,
        _response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        Err(errors::unsupported_endpoint(call))
    }

    fn map_error(_call: &Call, response: &UpstreamResponse) -> AdapterError {
        match response.status {
            402 => out_of_balance(errors::error_message(&response.body).0),
            _ => errors::from_response(response),
        }
    }

    fn prepare_submit(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        let (path, request, usage) = match call.endpoint.as_str() {
            "videos" | "video.generations" => {
                reject_multipart(call)?;
                let (request, seconds) = video_body(call, &json::parse_object(body)?)?;
                (
                    "videos/generations",
                    request,
                    seconds.map(|s| Usage::units("seconds", s)),
                )
            }
            "images.generations" => {
                reject_multipart(call)?;
                let (request, n) = image_body(call, &json::parse_object(body)?)?;
                (
                    "images/generations",
                    request,
                    Some(Usage::units("images", n)),
                )
            }
            _ => return Err(errors::unsupported_endpoint(call)),
        };
        let url = openai::endpoint_url(&call.channel.base_url, path);
        let mut upstream =
            UpstreamRequest::post_json(url, openai::bearer_headers(call), json::to_vec(&request)?);
        upstream.usage = usage;
        Ok(upstream)
    }

    fn parse_submit(_call: &Call, response: &UpstreamResponse) -> Result<Submitted, AdapterError> {
        let value = envelope(response)?;
        let (task, upstream_id) = submitted_task(&value).ok_or_else(|| {
            // The task may exist upstream: another channel must not start a
            // second one.
            errors::upstream(502, false, "APIMart accepted the task but sent no task id")
        })?;
        let status = match task.get("status").and_then(Value::as_str) {
            Some(status) => status_of(status)?,
            None => TaskStatus::Queued,
        };
        Ok(Submitted {
            upstream_id: upstream_id.to_owned(),
            status,
        })
    }

    fn prepare_poll(call: &Call, upstream_id: &str) -> Result<UpstreamRequest, AdapterError> {
        let language = call.channel.option("language").unwrap_or("en");
        let url = openai::endpoint_url(
            &call.channel.base_url,
            &format!(
                "tasks/{}?language={}",
                url::id_segment(upstream_id)?,
                url::encode(language)
            ),
        );
        let mut headers = openai::bearer_headers(call);
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        Ok(UpstreamRequest::get(url, headers))
    }

    fn parse_poll(_call: &Call, response: &UpstreamResponse) -> Result<TaskState, AdapterError> {
        let value = envelope(response)?;
        let task = match value.get("data") {
            Some(data @ Value::Object(_)) => data,
            _ if value.get("status").is_some() => &value,
            _ => {
                return Err(errors::upstream(
                    502,
                    true,
                    "APIMart's task answer has no `data` object",
                ));
            }
        };
        let status = task
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| errors::upstream(502, true, "APIMart's task answer has no status"))?;
        let progress = progress_of(task.get("progress"));
        Ok(match status_of(status)? {
            TaskStatus::Queued => TaskState::running(TaskStatus::Queued, progress.unwrap_or(0)),
            TaskStatus::Running => TaskState::running(TaskStatus::Running, progress.unwrap_or(50)),
            TaskStatus::Succeeded => finished(task),
            TaskStatus::Failed => {
                let message = failure_message(task).unwrap_or_else(|| {
                    if status.eq_ignore_ascii_case("cancelled")
                        || status.eq_ignore_ascii_case("canceled")
                    {
                        "the task was cancelled upstream".to_owned()
                    } else {
                        "the generation failed upstream".to_owned()
                    }
                });
                TaskState::failed(message)
            }
        })
    }
}

export_adapter!(ApiMart);

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// APIMart takes JSON only; an upload must name its image by URL.
fn reject_multipart(call: &Call) -> Result<(), AdapterError> {
    match call.header("content-type") {
        Some(ct)
            if ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/") =>
        {
            Err(errors::invalid_request(
                "APIMart takes JSON bodies only: send the reference image as a URL \
                 (`input_reference.image_url` or `image`) instead of a file upload",
            ))
        }
        _ => Ok(()),
    }
}

/// The `POST /v1/videos/generations` body, and the duration it asks for.
fn video_body(
    call: &Call,
    request: &Map<String, Value>,
) -> Result<(Map<String, Value>, Option<u64>), AdapterError> {
    let mut out = base_body(call, request)?;
    let duration = match present(request, "seconds").or_else(|| present(request, "duration")) {
        Some((field, value)) => Some(seconds_of(value, field)?),
        None => None,
    };
    if let Some(duration) = duration {
        out.insert("duration".to_owned(), Value::from(duration));
    }
    let aspect_ratio = string(request, "aspect_ratio");
    let resolution = string(request, "resolution");
    let pixels = pixel_size(request);
    if let Some(ratio) = aspect_ratio.or_else(|| pixels.map(|(w, h)| ratio_of(w, h, VIDEO_RATIOS)))
    {
        out.insert("aspect_ratio".to_owned(), Value::String(ratio));
    }
    if let Some(resolution) = resolution.or_else(|| pixels.map(|(w, h)| resolution_of(w, h))) {
        out.insert("resolution".to_owned(), Value::String(resolution));
    }
    if pixels.is_none()
        && let Some(size) = string(request, "size")
    {
        out.insert("size".to_owned(), Value::String(size));
    }
    finish_body(&mut out, request)?;
    Ok((out, duration))
}

/// The `POST /v1/images/generations` body, and how many images it asks for.
fn image_body(
    call: &Call,
    request: &Map<String, Value>,
) -> Result<(Map<String, Value>, u64), AdapterError> {
    let mut out = base_body(call, request)?;
    let n = match request.get("n") {
        None | Some(Value::Null) => 1,
        Some(value) => value
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| errors::invalid_request("`n` must be a positive integer"))?,
    };
    if request.get("n").is_some_and(|v| !v.is_null()) {
        out.insert("n".to_owned(), Value::from(n));
    }
    let size = match pixel_size(request) {
        Some((w, h)) => Some(ratio_of(w, h, IMAGE_RATIOS)),
        None => string(request, "size")
            .filter(|s| s != "auto")
            .or_else(|| string(request, "aspect_ratio")),
    };
    if let Some(size) = size {
        out.insert("size".to_owned(), Value::String(size));
    }
    if let Some(resolution) = string(request, "resolution") {
        out.insert("resolution".to_owned(), Value::String(resolution));
    }
    finish_body(&mut out, request)?;
    Ok((out, n))
}

/// `model` (the channel's upstream name) and the required `prompt`.
fn base_body(
    call: &Call,
    request: &Map<String, Value>,
) -> Result<Map<String, Value>, AdapterError> {
    let prompt = request
        .get("prompt")
        .and_then(Value::as_str)
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| errors::invalid_request("`prompt` is required"))?;
    let mut out = Map::new();
    out.insert("model".to_owned(), Value::String(call.model.clone()));
    out.insert("prompt".to_owned(), Value::String(prompt.to_owned()));
    Ok(out)
}

/// Reference images, then the vendor extras of `metadata` over everything
/// but the model.
fn finish_body(
    out: &mut Map<String, Value>,
    request: &Map<String, Value>,
) -> Result<(), AdapterError> {
    let images = image_urls(request)?;
    if !images.is_empty() {
        out.insert(
            "image_urls".to_owned(),
            Value::Array(images.into_iter().map(Value::String).collect()),
        );
    }
    for (key, value) in metadata_of(request)? {
        if key != "model" {
            out.insert(key, value);
        }
    }
    Ok(())
}

/// Image URLs from `image_urls`, `images`, `image` and OpenAI's
/// `input_reference` (a URL or `{"image_url": …}`), in that order.
fn image_urls(request: &Map<String, Value>) -> Result<Vec<String>, AdapterError> {
    let mut urls = Vec::new();
    for key in ["image_urls", "images", "image", "input_reference"] {
        match request.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(url)) if url.is_empty() => {}
            Some(Value::String(url)) => urls.push(url.clone()),
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_str() {
                        Some(url) => urls.push(url.to_owned()),
                        None => {
                            return Err(errors::invalid_request(format!(
                                "`{key}` must hold image URLs"
                            )));
                        }
                    }
                }
            }
            Some(Value::Object(reference)) => match reference.get("image_url") {
                Some(Value::String(url)) => urls.push(url.clone()),
                Some(Value::Object(inner)) => {
                    if let Some(url) = inner.get("url").and_then(Value::as_str) {
                        urls.push(url.to_owned());
                    }
                }
                _ => {
                    return Err(errors::invalid_request(format!(
                        "`{key}` must give an `image_url`; APIMart cannot use uploaded file ids"
                    )));
                }
            },
            Some(_) => {
                return Err(errors::invalid_request(format!(
                    "`{key}` must be an image URL"
                )));
            }
        }
    }
    Ok(urls)
}

/// A `WIDTHxHEIGHT` `size`, or `width` and `height`.
fn pixel_size(request: &Map<String, Value>) -> Option<(u64, u64)> {
    if let Some(size) = request.get("size").and_then(Value::as_str) {
        let (w, h) = size.split_once(['x', 'X', '*', '×'])?;
        let (w, h) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
        return (w > 0 && h > 0).then_some((w, h));
    }
    let dimension = |k: &str| request.get(k).and_then(Value::as_u64).filter(|v| *v > 0);
    Some((dimension("width")?, dimension("height")?))
}

/// The ratio among `ratios` closest to `width`:`height`, as "W:H".
fn ratio_of(width: u64, height: u64, ratios: &[(u64, u64)]) -> String {
    let target = (width as f64 / height as f64).ln();
    let distance = |(a, b): (u64, u64)| ((a as f64 / b as f64).ln() - target).abs();
    let (a, b) = ratios
        .iter()
        .copied()
        .min_by(|x, y| distance(*x).total_cmp(&distance(*y)))
        .unwrap_or((1, 1));
    format!("{a}:{b}")
}

/// The named resolution of a pixel size, by its short side.
fn resolution_of(width: u64, height: u64) -> String {
    match width.min(height) {
        1000.. => "1080p",
        700.. => "720p",
        _ => "480p",
    }
    .to_owned()
}

/// The vendor extras of a request: `metadata`, an object or a JSON string
/// holding one.
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

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

/// The JSON of a 2xx answer whose `code` says it succeeded.
fn envelope(response: &UpstreamResponse) -> Result<Value, AdapterError> {
    let value = json::parse_upstream(&response.body)?;
    let code = match value.get("code") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match code {
        Some(200) => Ok(value),
        Some(code) => {
            let (message, _) = errors::error_message(&response.body);
            Err(code_error(code, message))
        }
        None if value.get("error").is_some_and(|e| !e.is_null()) && value.get("data").is_none() => {
            let (message, _) = errors::error_message(&response.body);
            Err(errors::upstream(502, true, message))
        }
        None => Ok(value),
    }
}

/// Classify an APIMart failure `code` (HTTP-like).
fn code_error(code: i64, message: String) -> AdapterError {
    let message = if message.is_empty() {
        format!("APIMart answered code {code}")
    } else {
        message
    };
    match code {
        400 | 422 => errors::invalid_request(message),
        401 | 403 => AdapterError::Auth(message),
        402 => out_of_balance(message),
        429 => AdapterError::RateLimited(RateLimit {
            retry_after_ms: None,
            message,
        }),
        404 => AdapterError::Upstream(UpstreamError {
            status: 404,
            retryable: false,
            message,
            code: Some(code.to_string()),
        }),
        _ => AdapterError::Upstream(UpstreamError {
            status: 502,
            retryable: true,
            message,
            code: Some(code.to_string()),
        }),
    }
}

/// The channel's APIMart account cannot pay: another channel may. The
/// upstream's words (which quote the account's balance) go to the log, not
/// to the client.
fn out_of_balance(message: String) -> AdapterError {
    log(
        LogLevel::Warn,
        &format!("APIMart refused the task for the account's balance: {message}"),
    );
    AdapterError::Upstream(UpstreamError {
        status: 502,
        retryable: true,
        message: "the upstream account cannot pay for this task".to_owned(),
        code: Some("insufficient_balance".to_owned()),
    })
}

/// The object describing the submitted task (`data[0]`, `data`, or the
/// answer itself, whichever carries an id) and its id.
fn submitted_task(value: &Value) -> Option<(&Value, &str)> {
    let data = value.get("data");
    [
        data.and_then(|d| d.as_array())
            .and_then(|items| items.first()),
        data.filter(|d| d.is_object()),
        Some(value),
    ]
    .into_iter()
    .flatten()
    .find_map(|task| task_id(task).map(|id| (task, id)))
}

fn task_id(task: &Value) -> Option<&str> {
    ["task_id", "id"]
        .iter()
        .find_map(|k| task.get(*k).and_then(Value::as_str))
        .filter(|id| !id.is_empty())
}

fn status_of(status: &str) -> Result<TaskStatus, AdapterError> {
    match status.to_ascii_lowercase().as_str() {
        "submitted" | "pending" | "queued" => Ok(TaskStatus::Queued),
        "processing" | "in_progress" | "running" => Ok(TaskStatus::Running),
        "completed" | "succeeded" | "success" => Ok(TaskStatus::Succeeded),
        "failed" | "failure" | "cancelled" | "canceled" => Ok(TaskStatus::Failed),
        _ => Err(errors::upstream(
            502,
            true,
            format!("APIMart reported an unknown task status `{status}`"),
        )),
    }
}

/// `progress` as a number or a "30%" string.
fn progress_of(progress: Option<&Value>) -> Option<u8> {
    let value = match progress? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => json::decimal(s.trim().trim_end_matches('%'))?,
        _ => return None,
    };
    Some(value.clamp(0.0, 100.0) as u8)
}

/// A completed task: its result URLs and what it consumed.
fn finished(task: &Value) -> TaskState {
    let result = task.get("result");
    let videos = urls_of(result.and_then(|r| r.get("videos")));
    let images = urls_of(result.and_then(|r| r.get("images")));
    let mut urls: Vec<String> = videos.iter().chain(images.iter()).cloned().collect();
    if urls.is_empty() {
        urls.extend(
            ["video_url", "image_url", "url"]
                .iter()
                .filter_map(|k| task.get(*k).and_then(Value::as_str))
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
        );
    }
    if urls.is_empty() {
        return TaskState::failed(
            "the task completed but APIMart returned no result URL".to_owned(),
        );
    }
    let usage = if !images.is_empty() {
        Some(Usage::units("images", images.len() as u64))
    } else {
        duration_of(task).map(|seconds| Usage::units("seconds", seconds))
    };
    let mut state = TaskState::succeeded(urls);
    state.usage = usage;
    state
}

/// Every URL of `result.videos` / `result.images`: items whose `url` is a
/// string or a list of strings (or bare strings).
fn urls_of(items: Option<&Value>) -> Vec<String> {
    let Some(items) = items.and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for item in items {
        match item.get("url").unwrap_or(item) {
            Value::String(url) if !url.is_empty() => urls.push(url.clone()),
            Value::Array(list) => urls.extend(
                list.iter()
                    .filter_map(Value::as_str)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    urls
}

/// A finished video's length, when the answer gives one.
fn duration_of(task: &Value) -> Option<u64> {
    let first_video = task
        .get("result")
        .and_then(|r| r.get("videos"))
        .and_then(Value::as_array)
        .and_then(|v| v.first());
    [
        first_video.and_then(|v| v.get("duration")),
        task.get("result").and_then(|r| r.get("duration")),
        task.get("duration"),
    ]
    .into_iter()
    .flatten()
    .find_map(|d| match d {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => json::decimal(s),
        _ => None,
    })
    .filter(|d| d.is_finite() && *d > 0.0)
    .map(|d| d.round() as u64)
}

/// Why a task failed: `error.message`, `error` as text, or `fail_reason`.
fn failure_message(task: &Value) -> Option<String> {
    let error = task.get("error");
    [
        error.and_then(|e| e.get("message")),
        error,
        task.get("fail_reason"),
        task.get("message"),
    ]
    .into_iter()
    .flatten()
    .find_map(Value::as_str)
    .filter(|m| !m.is_empty())
    .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, response};

    const VIDEO_REQUEST: &[u8] = include_bytes!("../fixtures/video_request.json");
    const IMAGE_REQUEST: &[u8] = include_bytes!("../fixtures/image_request.json");
    const SUBMIT_LIST: &[u8] = include_bytes!("../fixtures/submit_list.json");
    const SUBMIT_OBJECT: &[u8] = include_bytes!("../fixtures/submit_object.json");
    const PROCESSING: &[u8] = include_bytes!("../fixtures/task_processing.json");
    const VIDEO_DONE: &[u8] = include_bytes!("../fixtures/task_video_completed.json");
    const IMAGE_DONE: &[u8] = include_bytes!("../fixtures/task_image_completed.json");
    const FAILED: &[u8] = include_bytes!("../fixtures/task_failed.json");
    const ENVELOPE_ERROR: &[u8] = include_bytes!("../fixtures/envelope_error.json");
    const BALANCE: &[u8] = include_bytes!("../fixtures/error_balance.json");

    fn body(req: &UpstreamRequest) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn unit(usage: Option<&Usage>, name: &str) -> Option<u64> {
        usage.and_then(|u| u.units.iter().find(|(k, _)| k == name).map(|(_, v)| *v))
    }

    #[test]
    fn info_lists_the_task_endpoints() {
        let info = ApiMart::info();
        assert_eq!(info.name, "apimart");
        assert_eq!(
            info.endpoints,
            ["videos", "video.generations", "images.generations.async"]
        );
    }

    #[test]
    fn generic_video_is_translated() {
        let mut c = call("video.generations", "sora-2-pro", false);
        c.channel.base_url = "https://api.apimart.ai".into();
        let req = ApiMart::prepare_submit(&c, VIDEO_REQUEST).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.url, "https://api.apimart.ai/v1/videos/generations");
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
        let sent = body(&req);
        assert_eq!(sent["model"], "sora-2-pro");
        assert_eq!(sent["duration"], 10, "duration must be a JSON integer");
        assert_eq!(sent["aspect_ratio"], "9:16");
        assert_eq!(sent["image_urls"][0], "https://example.com/boat.png");
        assert_eq!(sent["watermark"], false);
        assert_eq!(sent["resolution"], "1080p");
        assert!(sent.get("image").is_none() && sent.get("metadata").is_none());
        assert_eq!(unit(req.usage.as_ref(), "seconds"), Some(10));
        assert!(!String::from_utf8_lossy(&req.body).contains("sk-test"));
    }

    #[test]
    fn openai_video_shape_is_translated() {
        let c = call("videos", "veo3.1-fast", false);
        let req = ApiMart::prepare_submit(
            &c,
            br#"{"model":"sora-2","prompt":"p","seconds":"8","size":"1280x720",
                "input_reference":{"image_url":"https://x.test/a.png"}}"#,
        )
        .unwrap();
        let sent = body(&req);
        assert_eq!(sent["model"], "veo3.1-fast");
        assert_eq!(sent["duration"], 8);
        assert_eq!(sent["aspect_ratio"], "16:9");
        assert_eq!(sent["resolution"], "720p");
        assert_eq!(sent["image_urls"][0], "https://x.test/a.png");
        assert!(sent.get("size").is_none() && sent.get("seconds").is_none());

        // A ratio `size` (Grok's) passes as is.
        let sent = body(
            &ApiMart::prepare_submit(&c, br#"{"prompt":"p","size":"3:2","duration":6}"#).unwrap(),
        );
        assert_eq!(sent["size"], "3:2");
        assert!(sent.get("aspect_ratio").is_none());
    }

    #[test]
    fn multipart_and_bad_input_are_rejected() {
        let mut c = call("videos", "sora-2", false);
        c.headers = vec![(
            "content-type".into(),
            "multipart/form-data; boundary=x".into(),
        )];
        assert!(matches!(
            ApiMart::prepare_submit(&c, b"--x--"),
            Err(AdapterError::InvalidRequest(_))
        ));
        let c = call("video.generations", "sora-2", false);
        for input in [
            r#"{"duration":5}"#,
            r#"{"prompt":"p","duration":"5.5"}"#,
            r#"{"prompt":"p","image_urls":[1]}"#,
            r#"{"prompt":"p","input_reference":{"file_id":"file_1"}}"#,
            r#"{"prompt":"p","metadata":"nope"}"#,
        ] {
            assert!(
                matches!(
                    ApiMart::prepare_submit(&c, input.as_bytes()),
                    Err(AdapterError::InvalidRequest(_))
                ),
                "{input}"
            );
        }
        let c = call("images.generations", "m", false);
        assert!(matches!(
            ApiMart::prepare_submit(&c, br#"{"prompt":"p","n":0}"#),
            Err(AdapterError::InvalidRequest(_))
        ));
    }

    #[test]
    fn images_are_translated() {
        let c = call("images.generations", "gpt-image-1", false);
        let req = ApiMart::prepare_submit(&c, IMAGE_REQUEST).unwrap();
        assert_eq!(req.url, "http://upstream.test/v1/images/generations");
        let sent = body(&req);
        assert_eq!(sent["model"], "gpt-image-1");
        assert_eq!(sent["n"], 2);
        assert_eq!(sent["size"], "2:3");
        assert_eq!(unit(req.usage.as_ref(), "images"), Some(2));
        for (size, ratio) in [
            ("1024x1024", "1:1"),
            ("1792x1024", "16:9"),
            ("16:9", "16:9"),
        ] {
            let input = format!(r#"{{"prompt":"p","size":"{size}"}}"#);
            let sent = body(&ApiMart::prepare_submit(&c, input.as_bytes()).unwrap());
            assert_eq!(sent["size"], ratio, "{size}");
        }
        let sent = body(&ApiMart::prepare_submit(&c, br#"{"prompt":"p","size":"auto"}"#).unwrap());
        assert!(sent.get("size").is_none());
    }

    #[test]
    fn chat_is_unsupported() {
        let c = call("chat.completions", "m", false);
        assert!(matches!(
            ApiMart::prepare_request(&c, b"{}"),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn both_submit_answer_forms_are_read() {
        let c = call("video.generations", "sora-2", false);
        let s = ApiMart::parse_submit(&c, &response(200, SUBMIT_LIST)).unwrap();
        assert_eq!(s.upstream_id, "task_01K8SGYNNNVBQTXNR4MM964S7K");
        assert_eq!(s.status, TaskStatus::Queued);
        let s = ApiMart::parse_submit(&c, &response(200, SUBMIT_OBJECT)).unwrap();
        assert_eq!(s.upstream_id, "task_01K4ZQ8TJ4F1PBMX0XK7GSW1FQ");
        let s = ApiMart::parse_submit(
            &c,
            &response(
                200,
                br#"{"code":200,"data":{"id":"a","task_id":"b","status":"submitted"}}"#,
            ),
        )
        .unwrap();
        assert_eq!(s.upstream_id, "b");
        let err =
            ApiMart::parse_submit(&c, &response(200, br#"{"code":200,"data":[]}"#)).unwrap_err();
        assert!(matches!(err, AdapterError::Upstream(e) if !e.retryable));
    }

    #[test]
    fn failing_envelopes_under_http_200_are_errors() {
        let c = call("video.generations", "sora-2", false);
        assert_eq!(
            ApiMart::parse_submit(&c, &response(200, ENVELOPE_ERROR)).unwrap_err(),
            AdapterError::InvalidRequest("duration must be one of 10, 15".into())
        );
        for (code, check) in [(401, "auth"), (429, "rate"), (402, "retry"), (500, "retry")] {
            let answer = format!(r#"{{"code":{code},"message":"m"}}"#);
            let err = ApiMart::parse_submit(&c, &response(200, answer.as_bytes())).unwrap_err();
            let ok = match check {
                "auth" => matches!(err, AdapterError::Auth(_)),
                "rate" => matches!(err, AdapterError::RateLimited(_)),
                _ => matches!(err, AdapterError::Upstream(ref e) if e.retryable),
            };
            assert!(ok, "{code}: {err:?}");
        }
        assert!(ApiMart::parse_poll(&c, &response(200, ENVELOPE_ERROR)).is_err());
    }

    #[test]
    fn http_errors_are_classified() {
        let c = call("video.generations", "sora-2", false);
        assert!(matches!(
            ApiMart::map_error(
                &c,
                &response(401, br#"{"error":{"message":"invalid key"}}"#)
            ),
            AdapterError::Auth(_)
        ));
        assert!(matches!(
            ApiMart::map_error(&c, &response(402, BALANCE)),
            AdapterError::Upstream(e) if e.retryable && !e.message.contains("USD")
        ));
        assert!(matches!(
            ApiMart::map_error(&c, &response(400, br#"{"code":400,"message":"bad size"}"#)),
            AdapterError::Upstream(e) if e.status == 400 && !e.retryable && e.message == "bad size"
        ));
    }

    #[test]
    fn poll_goes_to_the_task_path() {
        let mut c = call("video.generations", "sora-2", false);
        let req = ApiMart::prepare_poll(&c, "task_01K8SGYNNNVBQTXNR4MM964S7K").unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(
            req.url,
            "http://upstream.test/v1/tasks/task_01K8SGYNNNVBQTXNR4MM964S7K?language=en"
        );
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
        c.channel.options = vec![("language".into(), "zh".into())];
        let req = ApiMart::prepare_poll(&c, "a/b").unwrap();
        assert!(
            req.url.ends_with("/v1/tasks/a%2Fb?language=zh"),
            "{}",
            req.url
        );
    }

    #[test]
    fn poll_reads_progress_results_and_failures() {
        let c = call("video.generations", "sora-2", false);
        let running = ApiMart::parse_poll(&c, &response(200, PROCESSING)).unwrap();
        assert_eq!(
            (running.status, running.progress),
            (TaskStatus::Running, 35)
        );

        let video = ApiMart::parse_poll(&c, &response(200, VIDEO_DONE)).unwrap();
        assert_eq!(video.status, TaskStatus::Succeeded);
        assert_eq!(
            video.results,
            ["https://upload.apimart.ai/f/video/9f0c2a7e-boat.mp4"]
        );
        assert_eq!(video.usage, None, "APIMart's answer carries no duration");

        let images = ApiMart::parse_poll(&c, &response(200, IMAGE_DONE)).unwrap();
        assert_eq!(images.results.len(), 2);
        assert_eq!(
            images.results[1],
            "https://upload.apimart.ai/f/image/crane-2.png"
        );
        assert_eq!(unit(images.usage.as_ref(), "images"), Some(2));

        let failed = ApiMart::parse_poll(&c, &response(200, FAILED)).unwrap();
        assert_eq!(failed.status, TaskStatus::Failed);
        assert_eq!(
            failed.error.as_deref(),
            Some("The prompt was rejected by the content policy")
        );

        let cancelled = ApiMart::parse_poll(
            &c,
            &response(
                200,
                br#"{"code":200,"data":{"id":"t","status":"cancelled"}}"#,
            ),
        )
        .unwrap();
        assert_eq!(cancelled.status, TaskStatus::Failed);
        assert!(cancelled.error.unwrap().contains("cancelled"));

        let queued = ApiMart::parse_poll(
            &c,
            &response(
                200,
                br#"{"code":200,"data":{"id":"t","status":"pending","progress":"0%"}}"#,
            ),
        )
        .unwrap();
        assert_eq!((queued.status, queued.progress), (TaskStatus::Queued, 0));
    }

    #[test]
    fn completed_without_url_is_a_failure() {
        let c = call("video.generations", "sora-2", false);
        let state = ApiMart::parse_poll(
            &c,
            &response(200, br#"{"code":200,"data":{"id":"t","status":"completed","result":{"videos":[{"url":[]}]}}}"#),
        )
        .unwrap();
        assert_eq!(state.status, TaskStatus::Failed);
        assert!(state.error.unwrap().contains("no result URL"));
    }

    #[test]
    fn video_duration_is_reported_when_present() {
        let c = call("video.generations", "m", false);
        let state = ApiMart::parse_poll(
            &c,
            &response(200, br#"{"code":200,"data":{"status":"completed","result":{"videos":[{"url":"https://x/v.mp4","duration":"5.04"}]}}}"#),
        )
        .unwrap();
        assert_eq!(state.results, ["https://x/v.mp4"]);
        assert_eq!(unit(state.usage.as_ref(), "seconds"), Some(5));
    }

    #[test]
    fn hostile_answers_do_not_panic() {
        let c = call("video.generations", "m", false);
        for bad in [
            &b""[..],
            b"[]",
            b"null",
            b"{\"code\":200}",
            &[0xff, 0xfe][..],
        ] {
            assert!(ApiMart::parse_poll(&c, &response(200, bad)).is_err());
            assert!(ApiMart::parse_submit(&c, &response(200, bad)).is_err());
        }
    }
}

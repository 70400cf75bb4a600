//! The Kling adapter: asynchronous video and image generation through
//! Kling's official API (`https://api-singapore.klingai.com`, or
//! `https://api.klingai.com` in China). It serves tasks only; chat and the
//! other synchronous endpoints are unsupported.
//!
//! Credentials: the channel key is `ACCESS_KEY|SECRET_KEY`. Every request
//! carries a fresh HS256 JWT (`{"iss": ACCESS_KEY, "exp": now + 1800,
//! "nbf": now - 5}`, signed with the secret key) as `Authorization: Bearer`.
//! A key without the `|` is a credential error, reported before anything is
//! sent.
//!
//! Submit:
//! - `videos` (OpenAI's `POST /v1/videos` shape) and `video.generations`
//!   (the generic shape) → `POST /v1/videos/text2video`, or
//!   `POST /v1/videos/image2video` when a reference image is given
//!   (`image`, `images[0]` or `input_reference`; a base64 data URL loses its
//!   `data:` prefix, as Kling wants). The body: `model_name`, `prompt`,
//!   `duration` as a string (from `seconds` or `duration`), `mode` (from the
//!   request or the channel), `aspect_ratio` (text-to-video only: given, or
//!   the nearest of 16:9 / 9:16 / 1:1 to a `WIDTHxHEIGHT` `size`),
//!   `negative_prompt`, `image_tail`, `cfg_scale`, then `metadata` merged
//!   over the body for any other Kling field (`sound`, `camera_control`,
//!   ...).
//! - `images.generations` → `POST /v1/images/generations` with
//!   `model_name`, `prompt`, `negative_prompt`, `image`, `n`,
//!   `aspect_ratio` (from `aspect_ratio` or `size`), `metadata`.
//!
//! Upstream ids: Kling queries a task under the path it was created on, so
//! the id handed to the gateway is `KIND:TASK_ID` with KIND one of
//! `text2video`, `image2video`, `images`. The submit answer does not say
//! which path it came from, so an image-to-video submit marks itself by its
//! `external_task_id` (`transit-i2v-…`, which Kling echoes back); a client's
//! own `external_task_id` is kept after that prefix.
//!
//! Poll: `GET /v1/videos/{text2video|image2video}/{id}` or
//! `GET /v1/images/generations/{id}`. `task_status` `submitted` is queued,
//! `processing` running (Kling reports no progress: 0, then 50),
//! `succeed` succeeded with `task_result.videos[].url` /
//! `task_result.images[].url` (none is a failure), `failed` failed with
//! `task_status_msg`.
//!
//! Errors: Kling's envelope is `{code, message, request_id}`, code 0 on
//! success. 401 / codes 1000–1004 are credential failures, 429 (codes
//! 1100–1102 account, 1302–1304 rate and concurrency) rate limits, codes
//! 12xx invalid requests, 5xxx retryable upstream failures. A 2xx answer with
//! a code other than 0 is classified the same way.
//!
//! Usage: a finished video reports `("seconds", its duration)`, finished
//! images `("images", count)`; the submit request carries the requested
//! amount as `UpstreamRequest::usage` (5 seconds or 1 image by default).
//!
//! Channel options: `mode` (`std` or `pro`, for requests that name none)
//! and `header.NAME` (any extra header).

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

// The tests decode the minted tokens with an independent base64.
#[cfg(test)]
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;
use serde_json::{Map, Value};
use transit_adapter_sdk::crypto::jwt_hs256;
use transit_adapter_sdk::json::{self, present, seconds_of, string};
use transit_adapter_sdk::prelude::*;
use transit_adapter_sdk::{RateLimit, UpstreamError, url};

pub struct Kling;

/// Images are generated as tasks only: `images.generations.async` tells
/// the gateway to answer `/v1/images/generations` with a task.
const ENDPOINTS: &[&str] = &["videos", "video.generations", "images.generations.async"];

/// How long a minted token is valid, and how far back it starts being valid
/// (clock skew), in seconds.
const TOKEN_LIFETIME: u64 = 1800;
const TOKEN_LEEWAY: u64 = 5;

/// The `external_task_id` prefix that marks an image-to-video submit.
const IMAGE2VIDEO_MARK: &str = "transit-i2v-";

/// Kling's default clip length, in seconds.
const DEFAULT_SECONDS: u64 = 5;

const VIDEO_RATIOS: &[(u64, u64)] = &[(16, 9), (9, 16), (1, 1)];
const IMAGE_RATIOS: &[(u64, u64)] = &[
    (16, 9),
    (9, 16),
    (1, 1),
    (4, 3),
    (3, 4),
    (3, 2),
    (2, 3),
    (21, 9),
];

/// The Kling API a task lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text2Video,
    Image2Video,
    Images,
}

impl Kind {
    /// The path a task of this kind is created at, and queried under.
    fn path(self) -> &'static str {
        match self {
            Kind::Text2Video => "videos/text2video",
            Kind::Image2Video => "videos/image2video",
            Kind::Images => "images/generations",
        }
    }

    /// The prefix of the upstream id.
    fn tag(self) -> &'static str {
        match self {
            Kind::Text2Video => "text2video",
            Kind::Image2Video => "image2video",
            Kind::Images => "images",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        [Kind::Text2Video, Kind::Image2Video, Kind::Images]
            .into_iter()
            .find(|kind| kind.tag() == tag)
    }
}

impl Adapter for Kling {
    type Stream = openai::PassthroughStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("kling", env!("CARGO_PKG_VERSION"), ENDPOINTS)
            .with_description("Kling video and image generation (AK/SK JWT)")
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
        let (code, message) = code_and_message(&response.body);
        classify(
            response.status,
            code,
            message,
            errors::retry_after_ms(response),
        )
    }

    fn prepare_submit(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        if call.header("content-type").is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        }) {
            return Err(errors::invalid_request(
                "Kling takes JSON bodies only: send the reference image as a URL or a \
                 base64 data URL (`image` or `input_reference.image_url`) instead of a file upload",
            ));
        }
        let request = json::parse_object(body)?;
        let (kind, upstream_body, usage) = match call.endpoint.as_str() {
            "videos" | "video.generations" => {
                let (kind, body, seconds) = video_body(call, &request)?;
                (kind, body, Usage::units("seconds", seconds))
            }
            "images.generations" => {
                let (body, n) = image_body(call, &request)?;
                (Kind::Images, body, Usage::units("images", n))
            }
            _ => return Err(errors::unsupported_endpoint(call)),
        };
        let url = openai::endpoint_url(&call.channel.base_url, kind.path());
        let mut headers = auth_headers(call)?;
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        let mut upstream = UpstreamRequest::post_json(url, headers, json::to_vec(&upstream_body)?);
        upstream.usage = Some(usage);
        Ok(upstream)
    }

    fn parse_submit(call: &Call, response: &UpstreamResponse) -> Result<Submitted, AdapterError> {
        let data = envelope(response)?;
        let task_id = data
            .get("task_id")
            .and_then(|id| match id {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                // The task may exist upstream: another channel must not
                // start a second one.
                errors::upstream(502, false, "Kling accepted the task but sent no task_id")
            })?;
        let kind = if call.endpoint == "images.generations" {
            Kind::Images
        } else if data
            .get("task_info")
            .and_then(|info| info.get("external_task_id"))
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with(IMAGE2VIDEO_MARK))
        {
            Kind::Image2Video
        } else {
            Kind::Text2Video
        };
        let status = match data.get("task_status").and_then(Value::as_str) {
            Some(status) => status_of(status)?,
            None => TaskStatus::Queued,
        };
        Ok(Submitted {
            upstream_id: format!("{}:{task_id}", kind.tag()),
            status,
        })
    }

    fn prepare_poll(call: &Call, upstream_id: &str) -> Result<UpstreamRequest, AdapterError> {
        let (kind, task_id) = match upstream_id.split_once(':') {
            Some((tag, id)) => match Kind::from_tag(tag) {
                Some(kind) => (kind, id),
                None => (default_kind(call), upstream_id),
            },
            None => (default_kind(call), upstream_id),
        };
        let url = openai::endpoint_url(
            &call.channel.base_url,
            &format!("{}/{}", kind.path(), url::id_segment(task_id)?),
        );
        Ok(UpstreamRequest::get(url, auth_headers(call)?))
    }

    fn parse_poll(_call: &Call, response: &UpstreamResponse) -> Result<TaskState, AdapterError> {
        let data = envelope(response)?;
        let status = data
            .get("task_status")
            .and_then(Value::as_str)
            .ok_or_else(|| errors::upstream(502, true, "Kling's task answer has no task_status"))?;
        Ok(match status_of(status)? {
            TaskStatus::Queued => TaskState::running(TaskStatus::Queued, 0),
            TaskStatus::Running => TaskState::running(TaskStatus::Running, 50),
            TaskStatus::Succeeded => finished(&data),
            TaskStatus::Failed => TaskState::failed(
                data.get("task_status_msg")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .unwrap_or("the generation failed upstream")
                    .to_owned(),
            ),
        })
    }
}

export_adapter!(Kling);

/// A task id that carries no kind: the endpoint decides.
fn default_kind(call: &Call) -> Kind {
    if call.endpoint == "images.generations" {
        Kind::Images
    } else {
        Kind::Text2Video
    }
}

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

/// The access and secret keys of a `ACCESS_KEY|SECRET_KEY` channel key.
fn credentials(call: &Call) -> Result<(&str, &str), AdapterError> {
    call.channel
        .api_key
        .split_once('|')
        .map(|(access, secret)| (access.trim(), secret.trim()))
        .filter(|(access, secret)| !access.is_empty() && !secret.is_empty())
        .ok_or_else(|| {
            AdapterError::Auth(
                "the Kling channel key must be `ACCESS_KEY|SECRET_KEY` \
                 (the access key and the secret key joined by `|`)"
                    .to_owned(),
            )
        })
}

/// The JWT claims Kling reads: issuer (the access key), expiry, not-before.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    exp: u64,
    nbf: u64,
}

/// An HS256 JWT for `access_key`, valid from `now - 5` to `now + 1800`.
fn mint_token(access_key: &str, secret_key: &str, now: u64) -> Result<String, AdapterError> {
    let claims = Claims {
        iss: access_key,
        exp: now.saturating_add(TOKEN_LIFETIME),
        nbf: now.saturating_sub(TOKEN_LEEWAY),
    };
    jwt_hs256(
        br#"{"alg":"HS256","typ":"JWT"}"#,
        &json::to_vec(&claims)?,
        secret_key.as_bytes(),
    )
}

/// The bearer token header, and the operator's extra headers.
fn auth_headers(call: &Call) -> Result<Vec<(String, String)>, AdapterError> {
    let (access_key, secret_key) = credentials(call)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| errors::internal("the clock reads before 1970"))?
        .as_secs();
    let mut headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {}", mint_token(access_key, secret_key, now)?),
    )];
    headers.extend(call.channel.option_headers());
    Ok(headers)
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// The text-to-video or image-to-video body, its kind, and the clip length
/// it asks for.
fn video_body(
    call: &Call,
    request: &Map<String, Value>,
) -> Result<(Kind, Map<String, Value>, u64), AdapterError> {
    let image = reference_image(request)?;
    let kind = if image.is_some() {
        Kind::Image2Video
    } else {
        Kind::Text2Video
    };
    let mut out = Map::new();
    out.insert("model_name".to_owned(), Value::String(call.model.clone()));
    match prompt_of(request) {
        Some(prompt) => {
            out.insert("prompt".to_owned(), Value::String(prompt.to_owned()));
        }
        // Image-to-video may animate the image without words.
        None if kind == Kind::Image2Video => {}
        None => return Err(errors::invalid_request("`prompt` is required")),
    }
    if let Some(image) = image {
        out.insert("image".to_owned(), Value::String(image));
    }
    let seconds = match present(request, "seconds").or_else(|| present(request, "duration")) {
        Some((field, value)) => {
            let seconds = seconds_of(value, field)?;
            out.insert("duration".to_owned(), Value::String(seconds.to_string()));
            seconds
        }
        None => DEFAULT_SECONDS,
    };
    if let Some(mode) =
        string(request, "mode").or_else(|| call.channel.option("mode").map(str::to_owned))
    {
        out.insert("mode".to_owned(), Value::String(mode));
    }
    if kind == Kind::Text2Video
        && let Some(ratio) = aspect_ratio_of(request, VIDEO_RATIOS)
    {
        out.insert("aspect_ratio".to_owned(), Value::String(ratio));
    }
    for key in ["negative_prompt", "image_tail", "cfg_scale"] {
        if let Some(value) = request.get(key).filter(|v| !v.is_null()) {
            let value = match (key, value) {
                ("image_tail", Value::String(s)) => Value::String(strip_data_url(s)),
                _ => value.clone(),
            };
            out.insert(key.to_owned(), value);
        }
    }
    merge_metadata(&mut out, request)?;
    if kind == Kind::Image2Video {
        // Marks the kind in Kling's answer (see the crate docs).
        let own = out
            .get("external_task_id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(unique_suffix);
        out.insert(
            "external_task_id".to_owned(),
            Value::String(format!("{IMAGE2VIDEO_MARK}{own}")),
        );
    }
    Ok((kind, out, seconds))
}

/// The `POST /v1/images/generations` body and how many images it asks for.
fn image_body(
    call: &Call,
    request: &Map<String, Value>,
) -> Result<(Map<String, Value>, u64), AdapterError> {
    let prompt =
        prompt_of(request).ok_or_else(|| errors::invalid_request("`prompt` is required"))?;
    let mut out = Map::new();
    out.insert("model_name".to_owned(), Value::String(call.model.clone()));
    out.insert("prompt".to_owned(), Value::String(prompt.to_owned()));
    if let Some(image) = reference_image(request)? {
        out.insert("image".to_owned(), Value::String(image));
    }
    let n = match request.get("n") {
        None | Some(Value::Null) => 1,
        Some(value) => {
            let n = value
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| errors::invalid_request("`n` must be a positive integer"))?;
            out.insert("n".to_owned(), Value::from(n));
            n
        }
    };
    if let Some(ratio) = aspect_ratio_of(request, IMAGE_RATIOS) {
        out.insert("aspect_ratio".to_owned(), Value::String(ratio));
    }
    if let Some(negative) = request.get("negative_prompt").filter(|v| !v.is_null()) {
        out.insert("negative_prompt".to_owned(), negative.clone());
    }
    merge_metadata(&mut out, request)?;
    Ok((out, n))
}

fn prompt_of(request: &Map<String, Value>) -> Option<&str> {
    request
        .get("prompt")
        .and_then(Value::as_str)
        .filter(|p| !p.trim().is_empty())
}

/// The reference image: `image`, the first of `images`, or OpenAI's
/// `input_reference` (a URL or `{"image_url": …}`), as Kling wants it.
fn reference_image(request: &Map<String, Value>) -> Result<Option<String>, AdapterError> {
    let found = [
        request.get("image"),
        request
            .get("images")
            .and_then(Value::as_array)
            .and_then(|images| images.first()),
        request.get("input_reference"),
    ];
    for value in found.into_iter().flatten() {
        let url = match value {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s,
            Value::Object(reference) => match reference.get("image_url") {
                Some(Value::String(s)) => s,
                _ => {
                    return Err(errors::invalid_request(
                        "`input_reference` must give an `image_url`; Kling cannot use uploaded file ids",
                    ));
                }
            },
            _ => {
                return Err(errors::invalid_request(
                    "the reference image must be a URL or a base64 data URL",
                ));
            }
        };
        return Ok(Some(strip_data_url(url)));
    }
    Ok(None)
}

/// Kling takes raw base64, without a `data:…;base64,` prefix.
fn strip_data_url(image: &str) -> String {
    match image
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        Some((_, data)) => data.to_owned(),
        None => image.to_owned(),
    }
}

/// `aspect_ratio` as given, a ratio `size`, or the nearest of `ratios` to a
/// `WIDTHxHEIGHT` `size` or `width` × `height`.
fn aspect_ratio_of(request: &Map<String, Value>, ratios: &[(u64, u64)]) -> Option<String> {
    if let Some(ratio) = string(request, "aspect_ratio") {
        return Some(ratio);
    }
    let size = string(request, "size");
    if let Some(size) = size.as_deref() {
        if size.contains(':') {
            return Some(size.to_owned());
        }
        let (w, h) = size.split_once(['x', 'X', '*', '×'])?;
        let (w, h) = (w.trim().parse::<u64>().ok()?, h.trim().parse::<u64>().ok()?);
        return (w > 0 && h > 0).then(|| ratio_of(w, h, ratios));
    }
    let dimension = |k: &str| request.get(k).and_then(Value::as_u64).filter(|v| *v > 0);
    Some(ratio_of(dimension("width")?, dimension("height")?, ratios))
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

/// `metadata` (an object or a JSON string holding one) merged over the body,
/// the model excepted.
fn merge_metadata(
    out: &mut Map<String, Value>,
    request: &Map<String, Value>,
) -> Result<(), AdapterError> {
    let metadata = match request.get("metadata") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(map)) => map.clone(),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(()),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(errors::invalid_request("`metadata` must be a JSON object")),
        },
        Some(_) => return Err(errors::invalid_request("`metadata` must be a JSON object")),
    };
    for (key, value) in metadata {
        if key != "model" && key != "model_name" {
            out.insert(key, value);
        }
    }
    Ok(())
}

/// A suffix unique enough for an `external_task_id`: the clock and WASI
/// randomness (through the standard library's hasher seed).
fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    format!("{:x}{:016x}", nanos, hasher.finish())
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

/// The `data` of a 2xx answer whose `code` is 0.
fn envelope(response: &UpstreamResponse) -> Result<Value, AdapterError> {
    let value = json::parse_upstream(&response.body)?;
    let (code, message) = code_and_message(&response.body);
    match code {
        Some(0) | None => match value.get("data") {
            Some(data @ Value::Object(_)) => Ok(data.clone()),
            _ => Err(errors::upstream(
                502,
                true,
                "Kling's answer has no `data` object",
            )),
        },
        Some(code) => Err(classify(0, Some(code), message, None)),
    }
}

/// Kling's `code` and `message`.
fn code_and_message(body: &[u8]) -> (Option<i64>, String) {
    let (message, _) = errors::error_message(body);
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| match v.get("code") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        });
    (code, message)
}

/// Classify a failure by HTTP status (0 when the answer was a 2xx) and
/// Kling's code.
fn classify(
    status: u16,
    code: Option<i64>,
    message: String,
    retry_after_ms: Option<u64>,
) -> AdapterError {
    let message = match (message.is_empty(), code) {
        (false, _) => message,
        (true, Some(code)) => format!("Kling answered code {code}"),
        (true, None) => format!("Kling answered HTTP {status}"),
    };
    let code_text = code.map(|c| c.to_string());
    let upstream = |status: u16, retryable: bool, message: String| {
        AdapterError::Upstream(UpstreamError {
            status,
            retryable,
            message,
            code: code_text.clone(),
        })
    };
    match (status, code) {
        (401, _) | (_, Some(1000..=1004)) => AdapterError::Auth(message),
        (429, _) | (_, Some(1100..=1199 | 1302..=1399)) => AdapterError::RateLimited(RateLimit {
            retry_after_ms,
            message,
        }),
        (0 | 400, Some(1200..=1299)) => errors::invalid_request(message),
        (_, Some(1300..=1301)) => upstream(400, false, message),
        (403, _) => AdapterError::Auth(message),
        (s @ (408 | 409), _) => upstream(s, true, message),
        (s @ 400..=499, _) => upstream(s, false, message),
        (s @ 500.., _) => upstream(s, true, message),
        _ => upstream(502, true, message),
    }
}

fn status_of(status: &str) -> Result<TaskStatus, AdapterError> {
    match status {
        "submitted" => Ok(TaskStatus::Queued),
        "processing" => Ok(TaskStatus::Running),
        "succeed" => Ok(TaskStatus::Succeeded),
        "failed" => Ok(TaskStatus::Failed),
        other => Err(errors::upstream(
            502,
            true,
            format!("Kling reported an unknown task status `{other}`"),
        )),
    }
}

/// A task with `task_status` `succeed`: its URLs and what it consumed.
fn finished(data: &Value) -> TaskState {
    let result = data.get("task_result");
    let items = |key: &str| {
        result
            .and_then(|r| r.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (videos, images) = (items("videos"), items("images"));
    let urls: Vec<String> = videos
        .iter()
        .chain(images.iter())
        .filter_map(|item| item.get("url").and_then(Value::as_str))
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return TaskState::failed("the task succeeded but Kling returned no result URL".to_owned());
    }
    let usage = if !videos.is_empty() {
        let seconds: f64 = videos
            .iter()
            .filter_map(|v| match v.get("duration") {
                Some(Value::String(s)) => json::decimal(s),
                Some(Value::Number(n)) => n.as_f64(),
                _ => None,
            })
            .filter(|d| d.is_finite() && *d > 0.0)
            .sum();
        (seconds > 0.0).then(|| Usage::units("seconds", seconds.round() as u64))
    } else {
        Some(Usage::units("images", urls.len() as u64))
    };
    let mut state = TaskState::succeeded(urls);
    state.usage = usage;
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use transit_adapter_sdk::testing::{call, response};

    const TEXT2VIDEO: &[u8] = include_bytes!("../fixtures/text2video_request.json");
    const IMAGE2VIDEO: &[u8] = include_bytes!("../fixtures/image2video_request.json");
    const SUBMITTED: &[u8] = include_bytes!("../fixtures/submit_response.json");
    const SUBMITTED_I2V: &[u8] = include_bytes!("../fixtures/submit_image2video_response.json");
    const PROCESSING: &[u8] = include_bytes!("../fixtures/task_processing.json");
    const SUCCEED: &[u8] = include_bytes!("../fixtures/task_succeed.json");
    const FAILED: &[u8] = include_bytes!("../fixtures/task_failed.json");
    const IMAGES: &[u8] = include_bytes!("../fixtures/images_succeed.json");
    const AUTH: &[u8] = include_bytes!("../fixtures/error_auth.json");
    const PARAMS: &[u8] = include_bytes!("../fixtures/error_params.json");
    const RATE: &[u8] = include_bytes!("../fixtures/error_rate.json");

    fn kling_call(endpoint: &str, model: &str) -> Call {
        let mut c = call(endpoint, model, false);
        c.channel.api_key = "ak-test|sk-secret".into();
        c.channel.base_url = "https://api-singapore.klingai.com".into();
        c
    }

    fn body(req: &UpstreamRequest) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    fn bearer(req: &UpstreamRequest) -> String {
        req.headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .and_then(|(_, v)| v.strip_prefix("Bearer "))
            .unwrap()
            .to_owned()
    }

    fn unit(usage: Option<&Usage>, name: &str) -> Option<u64> {
        usage.and_then(|u| u.units.iter().find(|(k, _)| k == name).map(|(_, v)| *v))
    }

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn token_matches_an_independent_hs256() {
        // Computed outside Rust (Python's hmac + hashlib) for these inputs.
        let token = mint_token("ak-test", "sk-secret", 1_700_000_000).unwrap();
        assert_eq!(token, EXPECTED_TOKEN);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode(parts[0]), json!({"alg": "HS256", "typ": "JWT"}));
        assert_eq!(
            decode(parts[1]),
            json!({"iss": "ak-test", "exp": 1_700_001_800u64, "nbf": 1_699_999_995u64})
        );
    }

    const EXPECTED_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhay10ZXN0IiwiZXhwIjoxNzAwMDAxODAwLCJuYmYiOjE2OTk5OTk5OTV9.dSz_izJ3tN86eghsog4MjSHkztilw_mCfolTUp5rlZ0";

    #[test]
    fn every_request_carries_a_fresh_valid_token() {
        let c = kling_call("video.generations", "kling-v2-6");
        let req = Kling::prepare_submit(&c, TEXT2VIDEO).unwrap();
        let token = bearer(&req);
        let claims = decode(token.split('.').nth(1).unwrap());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(claims["iss"], "ak-test");
        let (nbf, exp) = (
            claims["nbf"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert!(nbf <= now && now < exp && exp - nbf == TOKEN_LIFETIME + TOKEN_LEEWAY);
        let poll = Kling::prepare_poll(&c, "text2video:1").unwrap();
        assert!(bearer(&poll).starts_with("eyJ"));
        let sent = String::from_utf8_lossy(&req.body).into_owned();
        assert!(!sent.contains("sk-secret") && !sent.contains("ak-test"));
    }

    #[test]
    fn malformed_keys_are_credential_errors() {
        for key in ["no-separator", "|secret", "access|", ""] {
            let mut c = kling_call("video.generations", "kling-v2-6");
            c.channel.api_key = key.into();
            assert!(
                matches!(Kling::prepare_submit(&c, TEXT2VIDEO), Err(AdapterError::Auth(ref m)) if m.contains("ACCESS_KEY|SECRET_KEY")),
                "{key}"
            );
            assert!(matches!(
                Kling::prepare_poll(&c, "text2video:1"),
                Err(AdapterError::Auth(_))
            ));
        }
    }

    #[test]
    fn text_to_video_is_translated() {
        let c = kling_call("video.generations", "kling-v2-6");
        let req = Kling::prepare_submit(&c, TEXT2VIDEO).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.url,
            "https://api-singapore.klingai.com/v1/videos/text2video"
        );
        let sent = body(&req);
        assert_eq!(sent["model_name"], "kling-v2-6");
        assert_eq!(sent["duration"], "10", "duration must be a JSON string");
        assert_eq!(sent["mode"], "pro");
        assert_eq!(sent["aspect_ratio"], "16:9");
        assert_eq!(sent["negative_prompt"], "blurry");
        assert_eq!(sent["sound"], "off");
        assert_eq!(sent["cfg_scale"], 0.5);
        assert!(sent.get("model").is_none() && sent.get("size").is_none());
        assert!(sent.get("external_task_id").is_none());
        assert_eq!(unit(req.usage.as_ref(), "seconds"), Some(10));
    }

    #[test]
    fn image_to_video_is_translated_and_marked() {
        let mut c = kling_call("video.generations", "kling-v2-1");
        c.channel.options = vec![("mode".into(), "std".into())];
        let req = Kling::prepare_submit(&c, IMAGE2VIDEO).unwrap();
        assert_eq!(
            req.url,
            "https://api-singapore.klingai.com/v1/videos/image2video"
        );
        let sent = body(&req);
        assert_eq!(sent["duration"], "5");
        assert_eq!(sent["mode"], "std");
        assert!(sent["image"].as_str().unwrap().starts_with("iVBORw0KGgo"));
        assert!(sent.get("aspect_ratio").is_none());
        let marker = sent["external_task_id"].as_str().unwrap();
        assert!(marker.starts_with(IMAGE2VIDEO_MARK) && marker.len() > IMAGE2VIDEO_MARK.len());
        let again = body(&Kling::prepare_submit(&c, IMAGE2VIDEO).unwrap());
        assert_ne!(again["external_task_id"], sent["external_task_id"]);

        // A client's own external id survives behind the mark, and the
        // prompt is optional when there is an image.
        let sent = body(
            &Kling::prepare_submit(
                &c,
                br#"{"input_reference":{"image_url":"https://x.test/a.png"},"metadata":{"external_task_id":"mine"}}"#,
            )
            .unwrap(),
        );
        assert_eq!(sent["image"], "https://x.test/a.png");
        assert_eq!(sent["external_task_id"], "transit-i2v-mine");
        assert!(sent.get("prompt").is_none());
    }

    #[test]
    fn openai_video_shape_is_translated() {
        let c = kling_call("videos", "kling-v2-6");
        let sent = body(
            &Kling::prepare_submit(
                &c,
                br#"{"model":"sora-2","prompt":"p","seconds":"10","size":"720x1280"}"#,
            )
            .unwrap(),
        );
        assert_eq!(sent["duration"], "10");
        assert_eq!(sent["aspect_ratio"], "9:16");
    }

    #[test]
    fn bad_requests_are_rejected_before_sending() {
        let c = kling_call("video.generations", "kling-v2-6");
        for input in [
            r#"{"duration":5}"#,
            r#"{"prompt":"p","duration":"five"}"#,
            r#"{"prompt":"p","image":42}"#,
            r#"{"prompt":"p","input_reference":{"file_id":"f"}}"#,
            r#"{"prompt":"p","metadata":[]}"#,
        ] {
            assert!(
                matches!(
                    Kling::prepare_submit(&c, input.as_bytes()),
                    Err(AdapterError::InvalidRequest(_))
                ),
                "{input}"
            );
        }
        let mut c = kling_call("videos", "kling-v2-6");
        c.headers = vec![(
            "content-type".into(),
            "multipart/form-data; boundary=b".into(),
        )];
        assert!(matches!(
            Kling::prepare_submit(&c, b"--b--"),
            Err(AdapterError::InvalidRequest(_))
        ));
        let c = kling_call("chat.completions", "kling-v2-6");
        assert!(matches!(
            Kling::prepare_request(&c, b"{}"),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn images_are_translated() {
        let c = kling_call("images.generations", "kling-v1");
        let req = Kling::prepare_submit(
            &c,
            br#"{"model":"dall-e-3","prompt":"a crane","n":2,"size":"1536x1024"}"#,
        )
        .unwrap();
        assert_eq!(
            req.url,
            "https://api-singapore.klingai.com/v1/images/generations"
        );
        let sent = body(&req);
        assert_eq!(sent["model_name"], "kling-v1");
        assert_eq!(sent["n"], 2);
        assert_eq!(sent["aspect_ratio"], "3:2");
        assert_eq!(unit(req.usage.as_ref(), "images"), Some(2));
    }

    #[test]
    fn submit_encodes_the_kind_into_the_id() {
        let c = kling_call("video.generations", "kling-v2-6");
        let s = Kling::parse_submit(&c, &response(200, SUBMITTED)).unwrap();
        assert_eq!(s.upstream_id, "text2video:867283741759111202");
        assert_eq!(s.status, TaskStatus::Queued);
        let s = Kling::parse_submit(&c, &response(200, SUBMITTED_I2V)).unwrap();
        assert_eq!(s.upstream_id, "image2video:867283741759111377");
        let c = kling_call("images.generations", "kling-v1");
        let s = Kling::parse_submit(&c, &response(200, SUBMITTED)).unwrap();
        assert_eq!(s.upstream_id, "images:867283741759111202");
    }

    #[test]
    fn poll_uses_the_kind_path() {
        let c = kling_call("video.generations", "kling-v2-6");
        for (id, path) in [
            ("text2video:86", "/v1/videos/text2video/86"),
            ("image2video:87", "/v1/videos/image2video/87"),
            ("images:88", "/v1/images/generations/88"),
            ("89", "/v1/videos/text2video/89"),
        ] {
            let req = Kling::prepare_poll(&c, id).unwrap();
            assert_eq!(req.method, "GET");
            assert_eq!(req.url, format!("https://api-singapore.klingai.com{path}"));
        }
        assert!(Kling::prepare_poll(&c, "text2video:").is_err());
    }

    #[test]
    fn poll_reads_statuses_results_and_usage() {
        let c = kling_call("video.generations", "kling-v2-6");
        let queued = Kling::parse_poll(&c, &response(200, SUBMITTED)).unwrap();
        assert_eq!((queued.status, queued.progress), (TaskStatus::Queued, 0));
        let running = Kling::parse_poll(&c, &response(200, PROCESSING)).unwrap();
        assert_eq!(
            (running.status, running.progress),
            (TaskStatus::Running, 50)
        );
        let done = Kling::parse_poll(&c, &response(200, SUCCEED)).unwrap();
        assert_eq!(done.status, TaskStatus::Succeeded);
        assert_eq!(
            done.results,
            ["https://cdn.klingai.com/bs2/upload-kling-api/fox.mp4"]
        );
        assert_eq!(unit(done.usage.as_ref(), "seconds"), Some(10));
        let failed = Kling::parse_poll(&c, &response(200, FAILED)).unwrap();
        assert_eq!(failed.status, TaskStatus::Failed);
        assert_eq!(
            failed.error.as_deref(),
            Some("Failure to pass the risk control system")
        );
        let images = Kling::parse_poll(&c, &response(200, IMAGES)).unwrap();
        assert_eq!(images.results.len(), 2);
        assert_eq!(unit(images.usage.as_ref(), "images"), Some(2));
        let empty = Kling::parse_poll(
            &c,
            &response(
                200,
                br#"{"code":0,"data":{"task_status":"succeed","task_result":{"videos":[]}}}"#,
            ),
        )
        .unwrap();
        assert_eq!(empty.status, TaskStatus::Failed);
        assert!(empty.error.unwrap().contains("no result URL"));
    }

    #[test]
    fn errors_follow_klings_codes() {
        let c = kling_call("video.generations", "kling-v2-6");
        assert!(matches!(
            Kling::map_error(&c, &response(401, AUTH)),
            AdapterError::Auth(m) if m == "Authorization has expired"
        ));
        assert_eq!(
            Kling::map_error(&c, &response(400, PARAMS)),
            AdapterError::InvalidRequest("duration value 7 is invalid".into())
        );
        let mut limited = response(429, RATE);
        limited.headers.push(("retry-after".into(), "3".into()));
        assert!(matches!(
            Kling::map_error(&c, &limited),
            AdapterError::RateLimited(RateLimit {
                retry_after_ms: Some(3000),
                ..
            })
        ));
        assert!(matches!(
            Kling::map_error(&c, &response(500, br#"{"code":5000,"message":"internal"}"#)),
            AdapterError::Upstream(e) if e.retryable && e.code.as_deref() == Some("5000")
        ));
        assert!(matches!(
            Kling::map_error(&c, &response(404, br#"{"code":1203,"message":"task not found"}"#)),
            AdapterError::Upstream(e) if e.status == 404 && !e.retryable
        ));
        // A failing envelope under HTTP 200.
        assert_eq!(
            Kling::parse_submit(&c, &response(200, PARAMS)).unwrap_err(),
            AdapterError::InvalidRequest("duration value 7 is invalid".into())
        );
        assert!(matches!(
            Kling::parse_poll(&c, &response(200, AUTH)),
            Err(AdapterError::Auth(_))
        ));
    }

    #[test]
    fn hostile_answers_do_not_panic() {
        let c = kling_call("video.generations", "kling-v2-6");
        for bad in [
            &b""[..],
            b"[]",
            b"null",
            br#"{"code":0}"#,
            br#"{"code":0,"data":{"task_status":"dancing"}}"#,
            &[0xff, 0xfe][..],
        ] {
            assert!(Kling::parse_poll(&c, &response(200, bad)).is_err());
            assert!(Kling::parse_submit(&c, &response(200, bad)).is_err());
            let _ = Kling::map_error(&c, &response(502, bad));
        }
    }
}

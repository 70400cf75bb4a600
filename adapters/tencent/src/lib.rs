//! The Tencent Hunyuan adapter: OpenAI chat completions served by Tencent
//! Cloud API 3.0's `ChatCompletions` action (`hunyuan.tencentcloudapi.com`,
//! version `2023-09-01`).
//!
//! Credentials: the channel key is `SecretId|SecretKey`. Every request is a
//! `POST /` signed with `TC3-HMAC-SHA256` ([`sign`]) over `content-type`
//! and `host`, with the headers `X-TC-Action: ChatCompletions`,
//! `X-TC-Version: 2023-09-01`, `X-TC-Timestamp` and, when the channel has a
//! `region` option, `X-TC-Region`. A key without the `|` is a credential
//! error, reported before anything is sent.
//!
//! Requests ([`chat`]) become Hunyuan's PascalCase body: messages with
//! `Role` / `Content` (or `Contents` with `image_url` parts for images in
//! user messages), assistant `ToolCalls`, tool results' `ToolCallId`;
//! `temperature`, `top_p`, `stop`, `seed`; function tools with their JSON
//! Schema as a string, `tool_choice` as `ToolChoice` (`custom` with
//! `CustomTool` for a named function; `required` forces the only tool, or
//! is `auto` when there are several: Hunyuan has no "any tool"). Hunyuan
//! has no JSON mode: `response_format` `json_object` / `json_schema`
//! becomes an instruction in the system message. `max_tokens` and `n` have
//! no Hunyuan counterpart and are not sent. `enable_enhancement` in the
//! body, or the channel option `enable-enhancement`, sets
//! `EnableEnhancement`.
//!
//! Answers ([`reply`], [`stream`]) come back as OpenAI objects: content,
//! `ReasoningContent` (hunyuan-t1) as `reasoning_content`, tool calls,
//! finish reasons (`sensitive` → `content_filter`), usage (cached and
//! reasoning token details when given).
//!
//! Errors ([`error`]) come as HTTP 200 with `Response.Error {Code,
//! Message}` and are classified by code.
//!
//! Channel options: `region`, `enable-enhancement`, `header.NAME`.

use std::time::{SystemTime, UNIX_EPOCH};

use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

pub mod chat;
pub mod error;
pub mod reply;
pub mod sign;
pub mod stream;

pub struct Tencent;

pub const CHAT: &str = "chat.completions";
pub const ACTION: &str = "ChatCompletions";
pub const VERSION: &str = "2023-09-01";
/// The service a credential scope names.
pub const SERVICE: &str = "hunyuan";
const CONTENT_TYPE: &str = "application/json";

impl Adapter for Tencent {
    type Stream = stream::HunyuanStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("tencent", env!("CARGO_PKG_VERSION"), &[CHAT])
            .with_description("Tencent Hunyuan ChatCompletions (Tencent Cloud API 3.0, TC3 signed)")
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        if call.endpoint != CHAT {
            return Err(errors::unsupported_endpoint(call));
        }
        let request = json::parse_object(body)?;
        let translated = json::to_vec(&chat::to_hunyuan(call, &request)?)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| errors::internal("the clock reads before 1970"))?
            .as_secs();
        signed_request(call, translated, timestamp)
    }

    fn parse_response(
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        let value = json::parse_upstream(&response.body)?;
        let (completion, usage) = reply::to_completion(call, &value)?;
        Ok(Translated {
            body: json::to_vec(&completion)?,
            content_type: "application/json".to_owned(),
            usage,
        })
    }

    fn map_error(_call: &Call, response: &UpstreamResponse) -> AdapterError {
        error::classify_response(response)
    }
}

/// The signed `POST` of `body` at `timestamp`.
pub fn signed_request(
    call: &Call,
    body: Vec<u8>,
    timestamp: u64,
) -> Result<UpstreamRequest, AdapterError> {
    let (secret_id, secret_key) = credentials(call)?;
    let target = Target::of(&call.channel.base_url)?;
    let authorization = sign::authorization(&sign::Signing {
        secret_id,
        secret_key,
        service: SERVICE,
        host: &target.host,
        content_type: CONTENT_TYPE,
        path: &target.path,
        query: "",
        body: &body,
        timestamp,
    })?;
    let mut headers = vec![
        ("authorization".to_owned(), authorization),
        ("content-type".to_owned(), CONTENT_TYPE.to_owned()),
        ("x-tc-action".to_owned(), ACTION.to_owned()),
        ("x-tc-version".to_owned(), VERSION.to_owned()),
        ("x-tc-timestamp".to_owned(), timestamp.to_string()),
    ];
    if let Some(region) = call
        .channel
        .option("region")
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        headers.push(("x-tc-region".to_owned(), region.to_owned()));
    }
    headers.extend(call.channel.option_headers());
    // Streams are server-sent events, the default framing.
    Ok(UpstreamRequest::post_json(target.url, headers, body))
}

/// `SecretId|SecretKey`.
fn credentials(call: &Call) -> Result<(&str, &str), AdapterError> {
    call.channel
        .api_key
        .split_once('|')
        .map(|(id, key)| (id.trim(), key.trim()))
        .filter(|(id, key)| !id.is_empty() && !key.is_empty())
        .ok_or_else(|| {
            AdapterError::Auth(
                "the Tencent Cloud channel key must be `SecretId|SecretKey` \
                 (the two parts of an API key joined by `|`)"
                    .to_owned(),
            )
        })
}

/// Where the request goes, and the `Host` and path it is signed with.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    url: String,
    /// `host[:port]`, lower-cased, the port only when not the scheme's
    /// default (what the HTTP client sends as `Host`).
    host: String,
    /// The URL path, `/` at least.
    path: String,
}

impl Target {
    fn of(base_url: &str) -> Result<Self, AdapterError> {
        let base = base_url.trim().trim_end_matches('/');
        let (scheme, rest) = base
            .split_once("://")
            .ok_or_else(|| errors::internal("the channel's base URL has no scheme"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let authority = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host)
            .to_ascii_lowercase();
        if authority.is_empty() {
            return Err(errors::internal("the channel's base URL has no host"));
        }
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "https" => ":443",
            "http" => ":80",
            _ => "",
        };
        let host = authority
            .strip_suffix(default_port)
            .filter(|_| !default_port.is_empty())
            .unwrap_or(&authority)
            .to_owned();
        let path = format!("{path}/");
        Ok(Self {
            url: format!("{base}/"),
            host,
            path,
        })
    }
}

export_adapter!(Tencent);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use transit_adapter_sdk::testing::{call, response, sse_events};

    fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn tencent_call(stream: bool) -> Call {
        let mut c = call(CHAT, "hunyuan-turbos-latest", stream);
        c.channel.kind = "tencent".into();
        c.channel.base_url = "https://hunyuan.tencentcloudapi.com".into();
        c.channel.api_key = "AKIDtest|s3cret".into();
        c
    }

    #[test]
    fn requests_are_signed_api3_posts() {
        let mut c = tencent_call(false);
        c.channel.options = vec![("region".into(), "ap-guangzhou".into())];
        let body = br#"{"model":"alias","messages":[{"role":"user","content":"hi"}]}"#;
        let req = Tencent::prepare_request(&c, body).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.url, "https://hunyuan.tencentcloudapi.com/");
        assert_eq!(header(&req, "x-tc-action"), Some("ChatCompletions"));
        assert_eq!(header(&req, "x-tc-version"), Some("2023-09-01"));
        assert_eq!(header(&req, "x-tc-region"), Some("ap-guangzhou"));
        assert_eq!(header(&req, "content-type"), Some("application/json"));
        let timestamp: u64 = header(&req, "x-tc-timestamp").unwrap().parse().unwrap();
        let auth = header(&req, "authorization").unwrap();
        let date = sign::utc_date(timestamp);
        assert!(
            auth.starts_with(&format!(
                "TC3-HMAC-SHA256 Credential=AKIDtest/{date}/hunyuan/tc3_request, SignedHeaders=content-type;host, Signature="
            )),
            "{auth}"
        );
        // The secret never travels.
        let all = format!("{:?}{}", req.headers, String::from_utf8_lossy(&req.body));
        assert!(!all.contains("s3cret"));
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent["Model"], "hunyuan-turbos-latest");
        assert_eq!(sent["Messages"][0]["Content"], "hi");
        assert_eq!(sent["Stream"], false);
    }

    #[test]
    fn the_signature_covers_host_and_body() {
        let c = tencent_call(false);
        let body = br#"{"Model":"m"}"#.to_vec();
        let req = signed_request(&c, body.clone(), 1_715_076_839).unwrap();
        let expected = sign::authorization(&sign::Signing {
            secret_id: "AKIDtest",
            secret_key: "s3cret",
            service: "hunyuan",
            host: "hunyuan.tencentcloudapi.com",
            content_type: "application/json",
            path: "/",
            query: "",
            body: &body,
            timestamp: 1_715_076_839,
        })
        .unwrap();
        assert_eq!(header(&req, "authorization"), Some(expected.as_str()));
        let other = signed_request(&c, br#"{"Model":"n"}"#.to_vec(), 1_715_076_839).unwrap();
        assert_ne!(
            header(&other, "authorization"),
            header(&req, "authorization")
        );
    }

    #[test]
    fn targets() {
        let t = Target::of("https://hunyuan.tencentcloudapi.com").unwrap();
        assert_eq!(
            (t.url.as_str(), t.host.as_str(), t.path.as_str()),
            (
                "https://hunyuan.tencentcloudapi.com/",
                "hunyuan.tencentcloudapi.com",
                "/"
            )
        );
        let t = Target::of("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            (t.url.as_str(), t.host.as_str(), t.path.as_str()),
            ("http://127.0.0.1:9000/", "127.0.0.1:9000", "/")
        );
        let t = Target::of("https://Hunyuan.Example:443/proxy").unwrap();
        assert_eq!(
            (t.url.as_str(), t.host.as_str(), t.path.as_str()),
            (
                "https://Hunyuan.Example:443/proxy/",
                "hunyuan.example",
                "/proxy/"
            )
        );
        assert!(Target::of("no-scheme").is_err());
    }

    #[test]
    fn keys_must_have_both_parts() {
        for key in ["AKIDonly", "|secret", "id|", ""] {
            let mut c = tencent_call(false);
            c.channel.api_key = key.into();
            assert!(
                matches!(
                    Tencent::prepare_request(
                        &c,
                        br#"{"messages":[{"role":"user","content":"x"}]}"#
                    ),
                    Err(AdapterError::Auth(_))
                ),
                "{key}"
            );
        }
    }

    #[test]
    fn other_endpoints_are_unsupported() {
        let mut c = tencent_call(false);
        c.endpoint = "embeddings".into();
        assert!(matches!(
            Tencent::prepare_request(&c, b"{}"),
            Err(AdapterError::Unsupported(_))
        ));
        assert_eq!(Tencent::info().endpoints, vec![CHAT.to_owned()]);
    }

    #[test]
    fn a_full_round_trip() {
        let c = tencent_call(false);
        let t = Tencent::parse_response(
            &c,
            &response(200, include_bytes!("../fixtures/response.json")),
        )
        .unwrap();
        assert_eq!(t.usage, Some(Usage::tokens(3, 11)));
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        // An error answered with 200 is an error.
        assert!(matches!(
            Tencent::parse_response(
                &c,
                &response(200, include_bytes!("../fixtures/error_rate_limited.json"))
            ),
            Err(AdapterError::RateLimited(_))
        ));
        assert!(matches!(
            Tencent::map_error(
                &c,
                &response(
                    400,
                    include_bytes!("../fixtures/error_invalid_parameter.json")
                )
            ),
            AdapterError::InvalidRequest(_)
        ));
        let mut s = stream::HunyuanStream::new(tencent_call(true));
        let b = s
            .push(sse_events(include_str!("../fixtures/stream.sse")))
            .unwrap();
        assert!(b.done);
    }
}

//! The Amazon Bedrock adapter: OpenAI chat completions served by Bedrock
//! Runtime's Converse API (`POST /model/{modelId}/converse`) and
//! ConverseStream (`POST /model/{modelId}/converse-stream`, answered in the
//! binary AWS eventstream framing, which the gateway cuts into events).
//!
//! - Requests ([`request`]): system messages → `system`, turns merged to
//!   alternate, images and documents as base64 blocks, tool calls and
//!   results as `toolUse` / `toolResult`, tools and `tool_choice` →
//!   `toolConfig`, sampling and stops → `inferenceConfig`, JSON schemas →
//!   `outputConfig`.
//! - Responses and streams ([`reply`], [`stream`]): text, reasoning as
//!   `reasoning_content`, tool calls, stop reasons mapped, usage with cache
//!   reads and writes.
//! - Errors ([`error`]) are read from Bedrock's `{"message"}` bodies and the
//!   `x-amzn-ErrorType` header.
//!
//! Authentication is AWS Signature Version 4 ([`sigv4`]), computed here: the
//! channel key is `ACCESS_KEY_ID|SECRET_ACCESS_KEY` or
//! `ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN`; the service is
//! `bedrock`.
//!
//! Region and URL:
//! - the region is the channel option `region`; without it, the region
//!   named by a base URL of the form `https://bedrock-runtime[-fips].REGION
//!   .amazonaws.com`; else `us-east-1`;
//! - a base URL that is empty or is the channel-type registry's default
//!   ([`DEFAULT_BASE_URL`], the `us-east-1` endpoint) is replaced by the
//!   region's endpoint, `https://bedrock-runtime.{region}.amazonaws.com`,
//!   so a channel needs only a key and a `region`. Any other base URL (a
//!   VPC endpoint, a proxy, a test double) is used as it is, a path prefix
//!   included, and signed for the region.
//!
//! Other options: `header.NAME` adds a request header (not signed).

use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

pub mod error;
pub mod reply;
pub mod request;
pub mod sigv4;
pub mod stream;

/// The adapter.
pub struct Bedrock;

/// OpenAI chat completions, translated.
pub const CHAT: &str = "chat.completions";
/// The region signed for when the channel names none.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The base URL the gateway's channel-type registry gives `aws` and
/// `bedrock` channels; it stands for "the region's endpoint".
pub const DEFAULT_BASE_URL: &str = "https://bedrock-runtime.us-east-1.amazonaws.com";
/// The SigV4 service name of Bedrock Runtime.
pub const SERVICE: &str = "bedrock";

impl Adapter for Bedrock {
    type Stream = stream::BedrockStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("bedrock", env!("CARGO_PKG_VERSION"), &[CHAT])
            .with_description("Amazon Bedrock Converse API (SigV4, AWS eventstream)")
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        if call.endpoint != CHAT {
            return Err(errors::unsupported_endpoint(call));
        }
        let credentials = sigv4::Credentials::parse(&call.channel.api_key)?;
        let client = json::parse_object(body)?;
        let converse = request::to_converse(&call.model, &client)?;
        let body = json::to_vec(&converse)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| errors::internal("the clock reads before 1970"))?
            .as_secs();
        build(call, &credentials, body, now)
    }

    fn parse_response(
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        let value = json::parse_upstream(&response.body)?;
        let usage = reply::usage_of(value.get("usage"));
        let completion = reply::to_completion(
            call,
            &value,
            usage.as_ref(),
            response.header("x-amzn-requestid"),
        )?;
        Ok(Translated {
            body: json::to_vec(&completion)?,
            content_type: "application/json".to_owned(),
            usage,
        })
    }

    fn map_error(_call: &Call, response: &UpstreamResponse) -> AdapterError {
        error::classify(response)
    }
}

/// The signed request for a Converse body, at `now` (seconds since 1970).
pub fn build(
    call: &Call,
    credentials: &sigv4::Credentials<'_>,
    body: Vec<u8>,
    now: u64,
) -> Result<UpstreamRequest, AdapterError> {
    let region = region(call)?;
    let base = base_url(call, &region);
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| errors::internal("the channel's base URL has no scheme"))?;
    let (authority, prefix) = match rest.find('/') {
        Some(p) => rest.split_at(p),
        None => (rest, ""),
    };
    let model = call.model.trim();
    if model.is_empty() {
        return Err(errors::invalid_request("the channel names no model"));
    }
    let action = if call.stream {
        "converse-stream"
    } else {
        "converse"
    };
    let path = format!(
        "{}/model/{}/{action}",
        prefix.trim_end_matches('/'),
        sigv4::uri_encode(model)
    );
    let host = host_header(scheme, authority);
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let signed = sigv4::sign(
        &sigv4::Request {
            method: "POST",
            path: &path,
            query: "",
            host: &host,
            headers: &headers,
            body: &body,
        },
        credentials,
        &region,
        SERVICE,
        &sigv4::amz_date(now),
    )?;
    headers.extend(signed);
    headers.push((
        "accept".to_owned(),
        if call.stream {
            "application/vnd.amazon.eventstream"
        } else {
            "application/json"
        }
        .to_owned(),
    ));
    headers.extend(call.channel.option_headers());
    let mut request =
        UpstreamRequest::post_json(format!("{scheme}://{authority}{path}"), headers, body);
    if call.stream {
        request.framing = Framing::AwsEventstream;
    }
    Ok(request)
}

/// The `host` header an HTTP client sends for `authority`: without user
/// info, lower-cased, the port dropped when it is the scheme's default.
fn host_header(scheme: &str, authority: &str) -> String {
    let host = authority
        .rsplit('@')
        .next()
        .unwrap_or(authority)
        .to_ascii_lowercase();
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    host.strip_suffix(default_port).unwrap_or(&host).to_owned()
}

/// The region to sign for: the `region` option, the region of a standard
/// Bedrock Runtime base URL, or `us-east-1`.
pub fn region(call: &Call) -> Result<String, AdapterError> {
    let region = match call
        .channel
        .option("region")
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        Some(r) => r.to_ascii_lowercase(),
        None => region_of_url(&call.channel.base_url).unwrap_or_else(|| DEFAULT_REGION.to_owned()),
    };
    if region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(region)
    } else {
        Err(errors::internal(
            "the channel option `region` must look like `us-east-1`",
        ))
    }
}

/// `https://bedrock-runtime.eu-west-1.amazonaws.com` → `eu-west-1`.
fn region_of_url(base: &str) -> Option<String> {
    let host = base
        .split_once("://")?
        .1
        .split('/')
        .next()?
        .to_ascii_lowercase();
    let rest = host
        .strip_prefix("bedrock-runtime-fips.")
        .or_else(|| host.strip_prefix("bedrock-runtime."))?;
    let (region, domain) = rest.split_once('.')?;
    domain.starts_with("amazonaws.").then(|| region.to_owned())
}

/// The base URL requests go to: the region's endpoint when the channel has
/// no base URL of its own (empty, or the registry's default).
pub fn base_url(call: &Call, region: &str) -> String {
    let base = call.channel.base_url.trim().trim_end_matches('/');
    if base.is_empty() || base.eq_ignore_ascii_case(DEFAULT_BASE_URL) {
        format!("https://bedrock-runtime.{region}.amazonaws.com")
    } else {
        base.to_owned()
    }
}

export_adapter!(Bedrock);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use transit_adapter_sdk::testing::{call, response};

    fn bedrock_call(stream: bool) -> Call {
        let mut c = call(CHAT, "anthropic.claude-3-haiku-20240307-v1:0", stream);
        c.channel.kind = "bedrock".into();
        c.channel.base_url = DEFAULT_BASE_URL.into();
        c.channel.api_key = "AKIDEXAMPLE|wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into();
        c
    }

    fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    const BODY: &[u8] = br#"{"model":"alias","messages":[{"role":"user","content":"Hi"}]}"#;

    #[test]
    fn converse_is_signed_for_the_region() {
        let mut c = bedrock_call(false);
        c.channel.options = vec![
            ("region".into(), "eu-west-3".into()),
            ("header.x-amzn-bedrock-trace".into(), "ENABLED".into()),
        ];
        let req = Bedrock::prepare_request(&c, BODY).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.url,
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        let auth = header(&req, "authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-3/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="));
        assert_eq!(header(&req, "x-amz-date").unwrap().len(), 16);
        assert_eq!(header(&req, "accept"), Some("application/json"));
        assert_eq!(header(&req, "x-amzn-bedrock-trace"), Some("ENABLED"));
        let everything = format!("{req:?}");
        assert!(
            !everything.contains("wJalrXUtnFEMI"),
            "the secret never leaves"
        );
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["messages"][0]["content"][0]["text"], "Hi");
        assert!(body.get("model").is_none());
    }

    #[test]
    fn streams_use_converse_stream_and_eventstream_framing() {
        let mut c = bedrock_call(true);
        c.channel.api_key = "AKID|SECRET|SESSIONTOKEN".into();
        let req = Bedrock::prepare_request(&c, BODY).unwrap();
        assert!(req.url.ends_with("/converse-stream"));
        assert!(
            req.url
                .starts_with("https://bedrock-runtime.us-east-1.amazonaws.com/")
        );
        assert_eq!(req.framing, Framing::AwsEventstream);
        assert_eq!(
            header(&req, "accept"),
            Some("application/vnd.amazon.eventstream")
        );
        assert_eq!(header(&req, "x-amz-security-token"), Some("SESSIONTOKEN"));
        assert!(
            header(&req, "authorization")
                .unwrap()
                .contains("x-amz-security-token")
        );
    }

    /// The signature of a fixed request at a fixed time, checked against
    /// one computed outside Rust.
    #[test]
    fn a_fixed_request_signs_as_python_does() {
        let c = {
            let mut c = bedrock_call(false);
            c.channel.base_url = "https://bedrock-runtime.us-west-2.amazonaws.com".into();
            c.channel.api_key = "AKIDEXAMPLE|secret/key+1|TOKEN123".into();
            c
        };
        assert_eq!(region(&c).unwrap(), "us-west-2");
        let credentials = sigv4::Credentials::parse(&c.channel.api_key).unwrap();
        let body = br#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#.to_vec();
        let req = build(&c, &credentials, body, 1_717_200_000).unwrap();
        assert_eq!(header(&req, "x-amz-date"), Some("20240601T000000Z"));
        assert!(
            header(&req, "authorization")
                .unwrap()
                .ends_with(include_str!("../fixtures/sigv4_bedrock_signature.txt").trim())
        );
    }

    #[test]
    fn base_urls_and_regions() {
        let mut c = bedrock_call(false);
        let url = |c: &Call| base_url(c, &region(c).unwrap());
        assert_eq!(url(&c), "https://bedrock-runtime.us-east-1.amazonaws.com");
        c.channel.base_url = String::new();
        c.channel.options = vec![("region".into(), " AP-Northeast-1 ".into())];
        assert_eq!(
            url(&c),
            "https://bedrock-runtime.ap-northeast-1.amazonaws.com"
        );
        c.channel.base_url = "https://bedrock-runtime.us-east-1.amazonaws.com/".into();
        assert_eq!(
            url(&c),
            "https://bedrock-runtime.ap-northeast-1.amazonaws.com"
        );
        c.channel.options.clear();
        c.channel.base_url = "https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com".into();
        assert_eq!(region(&c).unwrap(), "us-gov-west-1");
        assert_eq!(
            url(&c),
            "https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com"
        );
        c.channel.base_url = "http://127.0.0.1:9000/proxy/".into();
        assert_eq!(region(&c).unwrap(), "us-east-1");
        let req = Bedrock::prepare_request(&c, BODY).unwrap();
        assert_eq!(
            req.url,
            "http://127.0.0.1:9000/proxy/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        c.channel.options = vec![("region".into(), "us-east-1/../x".into())];
        assert!(matches!(region(&c), Err(AdapterError::Internal(_))));
        assert_eq!(host_header("https", "Host.example:443"), "host.example");
        assert_eq!(host_header("http", "u:p@127.0.0.1:8080"), "127.0.0.1:8080");
    }

    #[test]
    fn arn_models_are_encoded() {
        let mut c = bedrock_call(false);
        c.model = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0".into();
        let req = Bedrock::prepare_request(&c, BODY).unwrap();
        assert!(req.url.contains(
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        ));
        c.model = " ".into();
        assert!(matches!(
            Bedrock::prepare_request(&c, BODY),
            Err(AdapterError::InvalidRequest(_))
        ));
    }

    #[test]
    fn bad_keys_bodies_and_endpoints() {
        let mut c = bedrock_call(false);
        c.channel.api_key = "just-one-part".into();
        assert!(
            matches!(Bedrock::prepare_request(&c, BODY), Err(AdapterError::Auth(m)) if !m.contains("just-one-part"))
        );
        let c = bedrock_call(false);
        assert!(matches!(
            Bedrock::prepare_request(&c, b"{"),
            Err(AdapterError::InvalidRequest(_))
        ));
        assert!(matches!(
            Bedrock::prepare_request(&c, b"[]"),
            Err(AdapterError::InvalidRequest(_))
        ));
        let e = call("embeddings", "m", false);
        assert!(matches!(
            Bedrock::prepare_request(&e, b"{}"),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn responses_and_errors_go_through_the_adapter() {
        let c = bedrock_call(false);
        let mut r = response(200, include_bytes!("../fixtures/converse_response.json"));
        r.headers
            .push(("x-amzn-RequestId".into(), "4f1a2b3c".into()));
        let t = Bedrock::parse_response(&c, &r).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["id"], "chatcmpl-4f1a2b3c");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(t.usage.unwrap().cache_read_tokens, 1024);
        assert!(matches!(
            Bedrock::parse_response(&c, &response(200, b"<html>")),
            Err(AdapterError::Upstream(_))
        ));
        let mut e = response(400, include_bytes!("../fixtures/error_validation.json"));
        e.headers.push((
            "x-amzn-ErrorType".into(),
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/".into(),
        ));
        assert!(matches!(
            Bedrock::map_error(&c, &e),
            AdapterError::InvalidRequest(_)
        ));
    }

    #[test]
    fn info_names_the_adapter() {
        let info = Bedrock::info();
        assert_eq!(info.name, "bedrock");
        assert_eq!(info.endpoints, vec![CHAT.to_owned()]);
    }
}

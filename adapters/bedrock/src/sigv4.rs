//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) for one request, computed
//! inside the adapter from the channel's key.
//!
//! The channel key is `ACCESS_KEY_ID|SECRET_ACCESS_KEY`, optionally followed
//! by `|SESSION_TOKEN` for temporary credentials. The signature covers the
//! method, the canonical URI (every path segment URI-encoded once more, as
//! AWS does for every service but S3), the query, the `content-type`, `host`,
//! `x-amz-date` (and `x-amz-security-token`) headers and the SHA-256 of the
//! body, scoped to `DATE/REGION/SERVICE/aws4_request`.

use transit_adapter_sdk::crypto::{hex, hmac_sha256, sha256_hex};
use transit_adapter_sdk::prelude::*;

/// `YYYYMMDDTHHMMSSZ` for `secs` since the Unix epoch (UTC).
pub use transit_adapter_sdk::time::utc_datetime_basic as amz_date;

/// The signing algorithm's name, as it appears in the `authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parts of a channel key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// Split `ACCESS_KEY_ID|SECRET_ACCESS_KEY[|SESSION_TOKEN]`. The error
    /// never quotes the key.
    pub fn parse(key: &'a str) -> Result<Self, AdapterError> {
        let parts: Vec<&str> = key.trim().split('|').map(str::trim).collect();
        let shape = || {
            AdapterError::Auth(
                "the channel key must be ACCESS_KEY_ID|SECRET_ACCESS_KEY (optionally |SESSION_TOKEN)"
                    .to_owned(),
            )
        };
        match parts.as_slice() {
            [id, secret] if !id.is_empty() && !secret.is_empty() => Ok(Self {
                access_key_id: id,
                secret_access_key: secret,
                session_token: None,
            }),
            [id, secret, token] if !id.is_empty() && !secret.is_empty() => Ok(Self {
                access_key_id: id,
                secret_access_key: secret,
                session_token: (!token.is_empty()).then_some(*token),
            }),
            _ => Err(shape()),
        }
    }
}

/// What is signed: everything but the credentials and the clock.
pub struct Request<'r> {
    pub method: &'r str,
    /// The path as it is sent (already percent-encoded), e.g.
    /// `/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse`.
    pub path: &'r str,
    /// The query as it is sent, without `?` (empty for Bedrock).
    pub query: &'r str,
    /// The `host` header: host, and port when it is not the scheme's default.
    pub host: &'r str,
    /// Other headers to sign, such as `content-type`.
    pub headers: &'r [(String, String)],
    pub body: &'r [u8],
}

/// The headers to add to the request: `x-amz-date`, `x-amz-security-token`
/// when the credentials carry one, and `authorization`.
pub fn sign(
    request: &Request<'_>,
    credentials: &Credentials<'_>,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Result<Vec<(String, String)>, AdapterError> {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let mut added = vec![("x-amz-date".to_owned(), amz_date.to_owned())];
    if let Some(token) = credentials.session_token {
        added.push(("x-amz-security-token".to_owned(), token.to_owned()));
    }
    let mut signed: Vec<(String, String)> = request
        .headers
        .iter()
        .chain(added.iter())
        .map(|(k, v)| (k.to_ascii_lowercase(), canonical_value(v)))
        .collect();
    signed.push(("host".to_owned(), request.host.to_ascii_lowercase()));
    signed.sort();
    let signed_names = signed
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_names}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query),
        sha256_hex(request.body),
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = signing_key(credentials.secret_access_key, date, region, service)?;
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes())?);
    added.push((
        "authorization".to_owned(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    Ok(added)
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> Result<[u8; 32], AdapterError> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes())?;
    let k_region = hmac_sha256(&k_date, region.as_bytes())?;
    let k_service = hmac_sha256(&k_region, service.as_bytes())?;
    hmac_sha256(&k_service, b"aws4_request")
}

/// A header value as signed: trimmed, runs of spaces made one.
fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// URI-encode with AWS's rules: every byte but `A-Z a-z 0-9 - _ . ~`, as
/// `%XX` in upper case.
pub fn uri_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical URI of a path as sent: each segment encoded once more, so a
/// `%3A` in the path is signed as `%253A`.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// The canonical query: parameters sorted by name, then value, each encoded.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&decode(k)), uri_encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Undo percent-encoding (a malformed escape is kept as it is).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_at = |j: usize| {
            bytes
                .get(j)
                .and_then(|c| char::from(*c).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match (bytes.get(i), hex_at(i + 1), hex_at(i + 2)) {
            (Some(b'%'), Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (Some(b), _, _) => {
                out.push(*b);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example (Signature Version 4, "Examples of the
    /// complete Signature Version 4 signing process"): IAM `ListUsers`.
    #[test]
    fn aws_documented_example() {
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: None,
        };
        let headers = vec![(
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        )];
        let request = Request {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            host: "iam.amazonaws.com",
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            hex(&signing_key(
                credentials.secret_access_key,
                "20150830",
                "us-east-1",
                "iam"
            )
            .unwrap()),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let added = sign(
            &request,
            &credentials,
            "us-east-1",
            "iam",
            "20150830T123600Z",
        )
        .unwrap();
        assert_eq!(
            added,
            vec![
                ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
                (
                    "authorization".to_owned(),
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-date, \
                     Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
                        .to_owned()
                )
            ]
        );
    }

    /// A Bedrock request: the `:` of the model id is `%3A` in the path and
    /// `%253A` in the canonical URI; a session token is signed. The expected
    /// signature was computed outside Rust (Python's hmac and hashlib).
    #[test]
    fn bedrock_request_with_session_token() {
        let credentials = Credentials::parse("AKIDEXAMPLE|secret/key+1|TOKEN123").unwrap();
        assert_eq!(credentials.session_token, Some("TOKEN123"));
        let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
        assert_eq!(
            canonical_uri(path),
            "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse"
        );
        let request = Request {
            method: "POST",
            path,
            query: "",
            host: "bedrock-runtime.us-west-2.amazonaws.com",
            headers: &headers,
            body: br#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#,
        };
        let added = sign(
            &request,
            &credentials,
            "us-west-2",
            "bedrock",
            "20240601T000000Z",
        )
        .unwrap();
        assert_eq!(added[1], ("x-amz-security-token".into(), "TOKEN123".into()));
        assert_eq!(
            added[2].1,
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240601/us-west-2/bedrock/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature={}",
                include_str!("../fixtures/sigv4_bedrock_signature.txt").trim()
            )
        );
    }

    #[test]
    fn keys_parse_without_leaking() {
        let c = Credentials::parse(" AKID | SECRET ").unwrap();
        assert_eq!((c.access_key_id, c.secret_access_key), ("AKID", "SECRET"));
        assert_eq!(c.session_token, None);
        assert_eq!(
            Credentials::parse("AKID|SECRET|").unwrap().session_token,
            None
        );
        for bad in ["", "akidonly", "|s3cr3t", "akid|", "akid|s3cr3t|tok|extra"] {
            match Credentials::parse(bad) {
                Err(AdapterError::Auth(m)) => {
                    assert!(!m.contains("s3cr3t") && !m.contains("akid"), "{m}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        match Credentials::parse("AKIDONLYsecretvalue") {
            Err(AdapterError::Auth(m)) => assert!(!m.contains("secretvalue")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
        assert_eq!(uri_encode("a:b/c d~"), "a%3Ab%2Fc%20d~");
        assert_eq!(canonical_query("b=2&a=%20x&a=1"), "a=%20x&a=1&b=2");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(decode("%zz%41"), "%zzA");
    }
}

//! Tencent Cloud API 3.0 request signing, `TC3-HMAC-SHA256`.
//!
//! The documented algorithm, for a `POST` of a JSON body:
//!
//! 1. Canonical request: `POST\n{path}\n{query}\n{canonical headers}\n
//!    {signed headers}\n{hex sha256 of the body}`, where the canonical
//!    headers are `content-type:{value}\nhost:{value}\n` (names and values
//!    lower-cased and trimmed) and the signed headers `content-type;host`.
//! 2. String to sign: `TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/
//!    tc3_request\n{hex sha256 of the canonical request}`, `date` being the
//!    UTC day of the timestamp (`YYYY-MM-DD`).
//! 3. Signing key: `HMAC("TC3" + SecretKey, date)`, then HMAC of the
//!    service name, then of `tc3_request`.
//! 4. Signature: hex `HMAC(signing key, string to sign)`, sent as
//!    `Authorization: TC3-HMAC-SHA256 Credential={SecretId}/{date}/
//!    {service}/tc3_request, SignedHeaders=content-type;host,
//!    Signature={signature}`.

use transit_adapter_sdk::crypto::{hex, hmac_sha256, sha256_hex};
use transit_adapter_sdk::prelude::*;

/// The UTC calendar day of a Unix timestamp, `YYYY-MM-DD`.
pub use transit_adapter_sdk::time::utc_date;

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
pub const SIGNED_HEADERS: &str = "content-type;host";

/// What one signature covers.
pub struct Signing<'a> {
    pub secret_id: &'a str,
    pub secret_key: &'a str,
    /// The service the credential scope names (`hunyuan`).
    pub service: &'a str,
    /// The `Host` header the request carries (`hunyuan.tencentcloudapi.com`).
    pub host: &'a str,
    /// The `Content-Type` header the request carries.
    pub content_type: &'a str,
    /// The URL path (`/`) and query (empty for a `POST`).
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    /// Unix seconds, also sent as `X-TC-Timestamp`.
    pub timestamp: u64,
}

/// The `Authorization` header value for `s`.
pub fn authorization(s: &Signing<'_>) -> Result<String, AdapterError> {
    let date = utc_date(s.timestamp);
    let canonical_request = format!(
        "POST\n{}\n{}\ncontent-type:{}\nhost:{}\n\n{SIGNED_HEADERS}\n{}",
        s.path,
        s.query,
        s.content_type.trim().to_ascii_lowercase(),
        s.host.trim().to_ascii_lowercase(),
        sha256_hex(s.body),
    );
    let scope = format!("{date}/{}/tc3_request", s.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        s.timestamp,
        sha256_hex(canonical_request.as_bytes())
    );
    let secret_date = hmac_sha256(format!("TC3{}", s.secret_key).as_bytes(), date.as_bytes())?;
    let secret_service = hmac_sha256(&secret_date, s.service.as_bytes())?;
    let secret_signing = hmac_sha256(&secret_service, b"tc3_request")?;
    let signature = hex(&hmac_sha256(&secret_signing, string_to_sign.as_bytes())?);
    Ok(format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}",
        s.secret_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_551_113_065), "2019-02-25");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_709_251_199), "2024-02-29");
        assert_eq!(utc_date(1_709_251_200), "2024-03-01");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31");
    }

    /// The worked example of Tencent's signature v3 documentation (CVM's
    /// `DescribeInstances`, signed with only `content-type;host`, the keys
    /// masked with `*` as the documentation prints them): the same inputs
    /// give the documented signature.
    #[test]
    fn matches_the_documented_example() {
        let body = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let auth = authorization(&Signing {
            secret_id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
            secret_key: "Gu5t9xGARNpq86cd98joQYCN3*******",
            service: "cvm",
            host: "cvm.tencentcloudapi.com",
            content_type: "application/json; charset=utf-8",
            path: "/",
            query: "",
            body,
            timestamp: 1_551_113_065,
        })
        .unwrap();
        assert_eq!(
            auth,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, \
             SignedHeaders=content-type;host, \
             Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f, 0xf0]), "00ab0ff0");
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

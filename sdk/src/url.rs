//! Pieces of upstream URLs built from values a call carries (model names,
//! upstream task ids, options), so that no value can change the URL's
//! shape: add a path segment, walk up the path, or start a query.

use crate::AdapterError;
use crate::errors;

/// `value` percent-encoded for a URL path segment or query value: every
/// byte but RFC 3986's unreserved characters (`A–Z a–z 0–9 - . _ ~`) and
/// `@` (model versions such as `name@20240620`) becomes `%XX`. A path
/// segment also needs [`segment`]'s check: URL parsers read `%2E%2E` as
/// `..`, so no encoding keeps a value of dots from walking up the path.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `value` as one URL path segment, [`encode`]d; an empty value, `.` or
/// `..` is refused (as the client's or operator's mistake: `what` names
/// the value in the message).
pub fn segment(what: &str, value: &str) -> Result<String, AdapterError> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(errors::invalid_request(format!(
            "`{value}` cannot be used as the {what}"
        )));
    }
    Ok(encode(value))
}

/// An upstream id (a task's, a file's) as one path segment: an empty id is
/// the adapter's bug; `.` and `..` are refused like any bad id.
pub fn id_segment(id: &str) -> Result<String, AdapterError> {
    if id.is_empty() {
        return Err(errors::internal("empty upstream id"));
    }
    segment("upstream id", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_pass_and_the_rest_is_encoded() {
        assert_eq!(encode("gpt-4o_mini.v1~x"), "gpt-4o_mini.v1~x");
        assert_eq!(encode("gpt-4o prod/1"), "gpt-4o%20prod%2F1");
        assert_eq!(encode("a?b#c&d=e%f"), "a%3Fb%23c%26d%3De%25f");
        assert_eq!(encode("claude@20240620"), "claude@20240620");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn dot_segments_are_refused() {
        for bad in ["", ".", ".."] {
            assert!(segment("model", bad).is_err(), "{bad:?}");
        }
        assert_eq!(segment("model", "...").ok().as_deref(), Some("..."));
        assert_eq!(segment("model", "v1.5").ok().as_deref(), Some("v1.5"));
        assert_eq!(segment("model", "../x").ok().as_deref(), Some("..%2Fx"));
    }

    #[test]
    fn ids_are_segments() {
        assert!(id_segment("").is_err());
        assert!(id_segment("..").is_err());
        assert_eq!(id_segment("task 1").ok().as_deref(), Some("task%201"));
    }
}

//! Just enough of `multipart/form-data` (RFC 7578) to set one text field of
//! a client's upload, leaving every other byte as the client sent it.
//!
//! The reader is strict on purpose. The gateway bills the model it read
//! from the form and the upstream serves the model it reads from the form
//! this module wrote; a lenient reader could disagree with the upstream's
//! about where a field starts or what it is called. So a form this module
//! cannot read unambiguously is refused rather than passed on: a missing or
//! invalid boundary, a missing closing delimiter, a part without a header
//! block, two `Content-Disposition` headers, an RFC 5987 `name*` parameter,
//! a repeated `name` parameter, or a field whose name means the target only
//! under one reading of its backslash escapes.

use std::borrow::Cow;

/// The longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// Whether `content_type` is `multipart/form-data` (with any parameters).
pub fn is_form(content_type: &str) -> bool {
    Params { rest: content_type }
        .token()
        .eq_ignore_ascii_case("multipart/form-data")
}

/// The `boundary` parameter of a `multipart/form-data` content type, if it
/// is present once and valid (1 to 70 bytes, no line breaks). Parameters
/// are read as quoted strings where quoted, so a `;` or `boundary=` inside
/// another parameter's quotes is not mistaken for the boundary.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = Params { rest: content_type };
    if !params.token().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let mut found = None;
    while let Some(param) = params.next_param().ok()? {
        if param.key.eq_ignore_ascii_case("boundary") {
            if found.is_some() {
                return None;
            }
            found = Some(param.value);
        }
    }
    found.filter(|value| {
        !value.is_empty()
            && value.len() <= MAX_BOUNDARY
            && !value.bytes().any(|b| b == b'\r' || b == b'\n')
    })
}

/// `body` with the value of every text field called `name` set to `value`.
///
/// Borrows `body` when there was nothing to change (no such field, or every
/// one already holds `value`). Fails, with a message fit for the client,
/// when the form cannot be read unambiguously (see the module
/// documentation), when a part called `name` is a file, or when `value`
/// holds a line break (it could then forge a delimiter).
pub fn set_text_field<'a>(
    body: &'a [u8],
    content_type: &str,
    name: &str,
    value: &str,
) -> Result<Cow<'a, [u8]>, String> {
    if value.contains(['\r', '\n']) {
        return Err(format!(
            "the value for form field `{name}` holds a line break"
        ));
    }
    let boundary = boundary(content_type)
        .ok_or("the multipart/form-data content type has no valid boundary")?;
    let mut targets = Vec::new();
    for part in parts(body, &boundary)? {
        let disposition = part.disposition(body)?;
        if disposition.names(name)? {
            if disposition.file_name {
                return Err(format!("form field `{name}` must be text, not a file"));
            }
            let content = body.get(part.content.clone()).unwrap_or_default();
            if content != value.as_bytes() {
                targets.push(part.content);
            }
        }
    }
    if targets.is_empty() {
        return Ok(Cow::Borrowed(body));
    }
    let replaced: usize = targets.iter().map(|r| r.len()).sum();
    let mut out = Vec::with_capacity(body.len() - replaced + targets.len() * value.len());
    let mut at = 0;
    for range in targets {
        out.extend_from_slice(body.get(at..range.start).unwrap_or_default());
        out.extend_from_slice(value.as_bytes());
        at = range.end;
    }
    out.extend_from_slice(body.get(at..).unwrap_or_default());
    Ok(Cow::Owned(out))
}

/// Where one part's header block and content lie in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    headers: std::ops::Range<usize>,
    content: std::ops::Range<usize>,
}

/// What a part's `Content-Disposition` says about it.
#[derive(Debug, Default)]
struct Disposition {
    /// The `name` parameter, unescaped, and whether its quoted form held a
    /// backslash (another reader might not unescape it).
    name: Option<(String, String)>,
    /// Whether a `filename` (or `filename*`) parameter is present.
    file_name: bool,
}

impl Disposition {
    /// Whether the part is the field called `target`; an error if that
    /// depends on how a reader treats backslashes.
    fn names(&self, target: &str) -> Result<bool, String> {
        let Some((unescaped, raw)) = &self.name else {
            return Ok(false);
        };
        match (unescaped == target, raw == target) {
            (true, true) => Ok(true),
            (false, false) => Ok(false),
            _ => Err(format!(
                "the multipart form has a field name that may or may not be `{target}`"
            )),
        }
    }
}

impl Part {
    /// Read the part's `Content-Disposition` header. A part without one is
    /// nobody's field, and is skipped.
    fn disposition(&self, body: &[u8]) -> Result<Disposition, String> {
        let block = body.get(self.headers.clone()).unwrap_or_default();
        let block = String::from_utf8_lossy(block);
        let mut found: Option<&str> = None;
        for line in block.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                if found.is_some() {
                    return Err("a multipart part has two Content-Disposition headers".to_owned());
                }
                found = Some(value);
            }
        }
        match found {
            Some(value) => parse_disposition(value),
            None => Ok(Disposition::default()),
        }
    }
}

/// Parse `form-data; name="x"; filename="y"`.
fn parse_disposition(value: &str) -> Result<Disposition, String> {
    let mut params = Params { rest: value };
    let kind = params.token();
    if !kind.eq_ignore_ascii_case("form-data") {
        return Ok(Disposition::default());
    }
    let mut out = Disposition::default();
    while let Some(param) = params.next_param()? {
        match param.key.to_ascii_lowercase().as_str() {
            "name" => {
                if out.name.is_some() {
                    return Err("a multipart part names its field twice".to_owned());
                }
                out.name = Some((param.value, param.raw));
            }
            "name*" => {
                return Err(
                    "multipart field names in RFC 5987 form (name*) are not supported".to_owned(),
                );
            }
            "filename" | "filename*" => out.file_name = true,
            _ => {}
        }
    }
    Ok(out)
}

/// One `key=value` parameter of a header value.
#[derive(Debug, Default)]
struct Param {
    key: String,
    /// The value, unescaped when it was quoted.
    value: String,
    /// The value as written (between the quotes, when quoted).
    raw: String,
}

/// A cursor over the `; key=value` parameters of a header value.
struct Params<'a> {
    rest: &'a str,
}

impl<'a> Params<'a> {
    /// The token up to the next `;`, trimmed.
    fn token(&mut self) -> &'a str {
        let end = self.rest.find(';').unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        token.trim()
    }

    /// The next parameter as its key and its value (unescaped, and as
    /// written between the quotes). A bare word without `=` is a parameter
    /// with an empty value.
    fn next_param(&mut self) -> Result<Option<Param>, String> {
        let rest = self.rest.trim_start_matches([';', ' ', '\t']);
        if rest.trim().is_empty() {
            self.rest = "";
            return Ok(None);
        }
        let key_end = rest.find([';', '=']).unwrap_or(rest.len());
        let key = rest[..key_end].trim().to_owned();
        let Some(after) = rest[key_end..].strip_prefix('=') else {
            self.rest = &rest[key_end..];
            return Ok(Some(Param {
                key,
                ..Param::default()
            }));
        };
        let after = after.trim_start();
        if let Some(quoted) = after.strip_prefix('"') {
            let mut unescaped = String::new();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                if escaped {
                    unescaped.push(c);
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    let raw = quoted[..i].to_owned();
                    self.rest = &quoted[i + 1..];
                    return Ok(Some(Param {
                        key,
                        value: unescaped,
                        raw,
                    }));
                } else {
                    unescaped.push(c);
                }
            }
            Err("a multipart header has an unterminated quoted value".to_owned())
        } else {
            let end = after.find(';').unwrap_or(after.len());
            let value = after[..end].trim().to_owned();
            self.rest = &after[end..];
            Ok(Some(Param {
                key,
                raw: value.clone(),
                value,
            }))
        }
    }
}

/// Cut `body` into its parts. Every part must be properly delimited and the
/// form closed by `--boundary--`; the preamble and epilogue are skipped.
fn parts(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let malformed = |what: &str| format!("malformed multipart/form-data body: {what}");
    let dash = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let mut pos = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        find(body, delimiter.as_bytes(), 0).ok_or_else(|| malformed("no boundary line"))?
            + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = body.get(pos..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding may follow a delimiter before its line break.
        let padding = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if !rest.get(padding..).unwrap_or_default().starts_with(b"\r\n") {
            return Err(malformed(if rest.is_empty() {
                "the closing boundary is missing"
            } else {
                "a boundary line is not followed by a line break"
            }));
        }
        let start = pos + padding + 2;
        let after = body.get(start..).unwrap_or_default();
        let (headers, content_start) = if after.starts_with(b"\r\n") {
            (start..start, start + 2)
        } else {
            let end = find(body, b"\r\n\r\n", start)
                .ok_or_else(|| malformed("a part has no end to its headers"))?;
            (start..end, end + 4)
        };
        // A delimiter inside the header block means the part had no blank
        // line after its headers; content that opens with the boundary may
        // be read as an empty part by a lenient reader.
        if find(body, delimiter.as_bytes(), start).is_some_and(|d| d < headers.end)
            || body
                .get(content_start..)
                .unwrap_or_default()
                .starts_with(dash.as_bytes())
        {
            return Err(malformed("a part has no end to its headers"));
        }
        let next = find(body, delimiter.as_bytes(), content_start)
            .ok_or_else(|| malformed("the closing boundary is missing"))?;
        parts.push(Part {
            headers,
            content: content_start..next,
        });
        pos = next + delimiter.len();
    }
}

/// The first index at or after `from` where `needle` occurs in `haystack`.
/// Skips ahead by the needle's first byte, so binary uploads are scanned
/// quickly.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let last_start = haystack.len().checked_sub(needle.len())?;
    let mut at = from;
    while at <= last_start {
        at += haystack
            .get(at..=last_start)?
            .iter()
            .position(|b| *b == first)?;
        if haystack.get(at..)?.starts_with(needle) {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    /// A form of `(name, file name, content)` parts, delimited as reqwest
    /// and curl do.
    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, file, content) in parts {
            out.extend_from_slice(b"--XyZ\r\n");
            match file {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    #[test]
    fn boundaries_are_read_from_the_content_type() {
        assert_eq!(boundary(CT).as_deref(), Some("XyZ"));
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"----a b\"").as_deref(),
            Some("----a b")
        );
        assert_eq!(
            boundary("multipart/form-data; x=\"a;boundary=evil\"; boundary=real").as_deref(),
            Some("real")
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=a=b").as_deref(),
            Some("a=b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
        assert_eq!(
            boundary("multipart/form-data; boundary=a; boundary=b"),
            None
        );
        assert_eq!(boundary("multipart/form-data; boundary=\"abc"), None);
        assert_eq!(boundary("application/json; boundary=x"), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "b".repeat(71))),
            None
        );
        assert!(is_form("multipart/form-data; boundary=x"));
        assert!(!is_form("multipart/mixed; boundary=x"));
    }

    #[test]
    fn the_field_is_rewritten_and_everything_else_kept() {
        let audio: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let body = form(&[
            ("file", Some("a.wav"), &audio),
            ("model", None, b"whisper-alias"),
            ("response_format", None, b"json"),
        ]);
        let out = set_text_field(&body, CT, "model", "whisper-1").unwrap();
        let expected = form(&[
            ("file", Some("a.wav"), &audio),
            ("model", None, b"whisper-1"),
            ("response_format", None, b"json"),
        ]);
        assert_eq!(out.as_ref(), expected.as_slice());
    }

    #[test]
    fn nothing_changes_without_need() {
        let body = form(&[("model", None, b"whisper-1"), ("file", Some("a"), b"x")]);
        assert!(matches!(
            set_text_field(&body, CT, "model", "whisper-1").unwrap(),
            Cow::Borrowed(_)
        ));
        let body = form(&[("prompt", None, b"model"), ("image", Some("model"), b"x")]);
        assert!(matches!(
            set_text_field(&body, CT, "model", "dall-e-2").unwrap(),
            Cow::Borrowed(b) if b == body.as_slice()
        ));
    }

    #[test]
    fn every_copy_of_the_field_is_rewritten() {
        let body = form(&[
            ("model", None, b"a"),
            ("x", None, b""),
            ("model", None, b""),
        ]);
        let out = set_text_field(&body, CT, "model", "m").unwrap();
        assert_eq!(
            out.as_ref(),
            form(&[
                ("model", None, b"m"),
                ("x", None, b""),
                ("model", None, b"m")
            ])
            .as_slice()
        );
    }

    #[test]
    fn preamble_padding_unquoted_names_and_epilogue_are_handled() {
        let body = b"preamble\r\n--XyZ \t\r\ncontent-disposition: FORM-DATA; NAME=model\r\n\r\nold\r\n--XyZ\r\n\r\nheaderless\r\n--XyZ--\r\nepilogue";
        let out = set_text_field(body, CT, "model", "new").unwrap();
        assert_eq!(
            out.as_ref(),
            &b"preamble\r\n--XyZ \t\r\ncontent-disposition: FORM-DATA; NAME=model\r\n\r\nnew\r\n--XyZ\r\n\r\nheaderless\r\n--XyZ--\r\nepilogue"[..]
        );
    }

    #[test]
    fn content_that_only_resembles_a_delimiter_is_content() {
        let tricky: &[u8] = b"a--XyZ b--XyZ\r\n-XyZ\r\n--Xy";
        let body = form(&[("file", Some("f"), tricky), ("model", None, b"a")]);
        let out = set_text_field(&body, CT, "model", "b").unwrap();
        assert_eq!(
            out.as_ref(),
            form(&[("file", Some("f"), tricky), ("model", None, b"b")]).as_slice()
        );
        // A delimiter inside content is not content (RFC 2046 forbids it).
        let body = form(&[("file", Some("f"), b"x\r\n--XyZx"), ("model", None, b"a")]);
        assert!(set_text_field(&body, CT, "model", "b").is_err());
    }

    #[test]
    fn bare_flags_do_not_hide_the_name() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; flag; name=\"model\"\r\n\r\na\r\n--XyZ--\r\n";
        let out = set_text_field(body, CT, "model", "b").unwrap();
        assert!(out.ends_with(b"\r\n\r\nb\r\n--XyZ--\r\n"));
    }

    #[test]
    fn ambiguous_or_broken_forms_are_refused() {
        let good = form(&[("model", None, b"a")]);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("no boundary", good.clone(), "multipart/form-data"),
            ("unclosed", good[..good.len() - 9].to_vec(), CT),
            ("no boundary line", b"just text".to_vec(), CT),
            ("bare LF", b"--XyZ\nContent-Disposition: form-data; name=model\n\na\n--XyZ--".to_vec(), CT),
            (
                "two dispositions",
                b"--XyZ\r\nContent-Disposition: form-data; name=x\r\nContent-Disposition: form-data; name=model\r\n\r\na\r\n--XyZ--\r\n".to_vec(),
                CT,
            ),
            (
                "two names",
                b"--XyZ\r\nContent-Disposition: form-data; name=x; name=model\r\n\r\na\r\n--XyZ--\r\n".to_vec(),
                CT,
            ),
            (
                "a flag hiding the name",
                b"--XyZ\r\nContent-Disposition: form-data; flag; name=model; name=x\r\n\r\na\r\n--XyZ--\r\n".to_vec(),
                CT,
            ),
            (
                "name*",
                b"--XyZ\r\nContent-Disposition: form-data; name*=utf-8''model\r\n\r\na\r\n--XyZ--\r\n".to_vec(),
                CT,
            ),
            (
                "escapes",
                b"--XyZ\r\nContent-Disposition: form-data; name=\"mod\\el\"\r\n\r\na\r\n--XyZ--\r\n".to_vec(),
                CT,
            ),
            (
                "unterminated quote",
                b"--XyZ\r\nContent-Disposition: form-data; name=\"model\r\n\r\na\r\n--XyZ--\r\n".to_vec(),
                CT,
            ),
            ("model as a file", form(&[("model", Some("m.txt"), b"a")]), CT),
            (
                "headers run into the next part",
                b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n--XyZ\r\nX: y\r\n\r\nv\r\n--XyZ--\r\n".to_vec(),
                CT,
            ),
            (
                "content opening with the boundary",
                b"--XyZ\r\nContent-Disposition: form-data; name=model\r\n\r\n--XyZ\r\n\r\nv\r\n--XyZ--\r\n".to_vec(),
                CT,
            ),
        ];
        for (what, body, content_type) in cases {
            assert!(
                set_text_field(&body, content_type, "model", "b").is_err(),
                "{what}"
            );
        }
        assert!(set_text_field(&good, CT, "model", "a\r\n--XyZ").is_err());
    }

    #[test]
    fn escaped_names_that_agree_are_fine() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n\r\nv\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nold\r\n--XyZ--\r\n";
        let out = set_text_field(body, CT, "model", "new").unwrap();
        assert!(out.ends_with(b"name=\"model\"\r\n\r\nnew\r\n--XyZ--\r\n"));
    }

    #[test]
    fn find_scans_binary_data() {
        assert_eq!(find(b"abcabd", b"abd", 0), Some(3));
        assert_eq!(find(b"abcabd", b"abd", 4), None);
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"", b"a", 0), None);
        assert_eq!(find(b"aaa", b"", 0), None);
        assert_eq!(find(b"abc", b"c", 9), None);
    }

    #[test]
    fn a_large_upload_is_rewritten() {
        let audio: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
        let body = form(&[("file", Some("a.wav"), &audio), ("model", None, b"x")]);
        let out = set_text_field(&body, CT, "model", "whisper-1").unwrap();
        assert_eq!(out.len(), body.len() + "whisper-1".len() - 1);
        assert!(out.ends_with(b"whisper-1\r\n--XyZ--\r\n"));
    }
}

//! JSON helpers that turn serde failures into [`AdapterError`]s.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::AdapterError;
use crate::errors;

/// Parse a client body that must be a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, AdapterError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(errors::invalid_request(
            "request body must be a JSON object",
        )),
        Err(e) => Err(errors::invalid_request(format!("invalid JSON body: {e}"))),
    }
}

/// The fields of a client body that must be a JSON object, each value left
/// as it was written (checked, not parsed): for adapters that pass most of a
/// body on and change a few fields.
pub fn raw_fields(body: &[u8]) -> Result<Vec<(Cow<'_, str>, &RawValue)>, AdapterError> {
    object_fields(body).map_err(|e| {
        if e.is_data() {
            errors::invalid_request("request body must be a JSON object")
        } else {
            errors::invalid_request(format!("invalid JSON body: {e}"))
        }
    })
}

/// The fields of an upstream body that must be a JSON object, each value
/// left as it was written: for adapters that pass the body on and read a
/// few fields of it. A failure is the upstream's.
pub fn upstream_fields(body: &[u8]) -> Result<Vec<(Cow<'_, str>, &RawValue)>, AdapterError> {
    object_fields(body).map_err(|e| {
        if e.is_data() {
            errors::upstream(
                502,
                true,
                "upstream answered with a JSON value that is not an object",
            )
        } else {
            not_json(&e)
        }
    })
}

/// The value of field `name` (its last, if given twice, as a parse would
/// keep it).
pub fn field<'a>(fields: &[(Cow<'_, str>, &'a RawValue)], name: &str) -> Option<&'a RawValue> {
    fields
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
}

/// A JSON object's fields as written; a data error if `body` is JSON but
/// not an object.
fn object_fields(body: &[u8]) -> serde_json::Result<Vec<(Cow<'_, str>, &RawValue)>> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some(name) = map.next_key::<Name<'de>>()? {
                fields.push((name.0, map.next_value()?));
            }
            Ok(fields)
        }
    }
    /// A field name, borrowed unless it has escapes.
    struct Name<'de>(Cow<'de, str>);
    impl<'de> Deserialize<'de> for Name<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Text;
            impl<'de> Visitor<'de> for Text {
                type Value = Name<'de>;

                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a field name")
                }

                fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                    Ok(Name(Cow::Borrowed(s)))
                }

                fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                    Ok(Name(Cow::Owned(s.to_owned())))
                }
            }
            d.deserialize_str(Text)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    de.deserialize_map(Fields)
        .and_then(|f| de.end().map(|()| f))
}

/// Parse an upstream body that must be JSON; a failure is the upstream's.
pub fn parse_upstream(body: &[u8]) -> Result<Value, AdapterError> {
    serde_json::from_slice(body).map_err(|e| not_json(&e))
}

/// The upstream's error for a body that is not JSON.
fn not_json(e: &serde_json::Error) -> AdapterError {
    errors::upstream(
        502,
        true,
        format!("upstream sent a body that is not valid JSON: {e}"),
    )
}

/// Serialize a value the adapter built.
pub fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, AdapterError> {
    serde_json::to_vec(value).map_err(|e| errors::internal(format!("serializing JSON: {e}")))
}

/// The non-empty string field `key` of a request object.
pub fn string(request: &Map<String, Value>, key: &str) -> Option<String> {
    request
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The field named `key` with its name, if it is present and not null.
pub fn present<'a>(
    request: &'a Map<String, Value>,
    key: &'static str,
) -> Option<(&'static str, &'a Value)> {
    request
        .get(key)
        .filter(|v| !v.is_null())
        .map(|value| (key, value))
}

/// A number written as text (`"1.5"`, `"30"`, a header's value), in JSON's
/// number syntax; `None` for anything else.
///
/// Read with the JSON reader every adapter carries anyway. `str::parse::<f64>`
/// would link the standard library's own float reader, whose tables add
/// about 8 KB to the adapter's memory image, and so to every instance
/// the gateway keeps (one per open stream).
pub fn decimal(text: &str) -> Option<f64> {
    serde_json::from_str::<f64>(text.trim()).ok()
}

/// A whole number of seconds, given as a number or a string of one
/// (`5`, `5.0`, `"5"`); anything else is the client's error, naming `field`.
pub fn seconds_of(value: &Value, field: &str) -> Result<u64, AdapterError> {
    let whole = |f: f64| (f.is_finite() && f >= 0.0 && f.fract() == 0.0).then_some(f as u64);
    let seconds = match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(whole)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| decimal(s).and_then(whole))
        }
        _ => None,
    };
    seconds.ok_or_else(|| {
        errors::invalid_request(format!("`{field}` must be a whole number of seconds"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_in_text() {
        assert_eq!(decimal("1.5"), Some(1.5));
        assert_eq!(decimal(" 30 "), Some(30.0));
        assert_eq!(decimal("-2e3"), Some(-2000.0));
        for bad in ["", "1.5s", "abc", "1,5", "NaN", "inf"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn whole_seconds() {
        for good in [json!(5), json!(5.0), json!("5"), json!(" 5.0 ")] {
            assert_eq!(seconds_of(&good, "seconds"), Ok(5), "{good}");
        }
        for bad in [
            json!(5.5),
            json!("5.5"),
            json!(-1),
            json!("five"),
            json!(null),
        ] {
            assert!(seconds_of(&bad, "seconds").is_err(), "{bad}");
        }
    }
}

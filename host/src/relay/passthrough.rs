//! Answers the host reads itself (`answer::openai`, since WIT 0.3.0): the
//! upstream speaks OpenAI's shape, which is already the client's, so a whole
//! answer or a stream's chunks are relayed as they come and only `usage` is
//! read from them. This is what an OpenAI-dialect adapter's `parse-response`
//! and stream translator would do, without a guest call per answer or per
//! batch of events, and without an instance seat held by each open stream.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::adapters::{AdapterError, ChunkBatch, Event, Translated, Usage};

/// Longest upstream error message passed on, in bytes.
const MAX_MESSAGE: usize = 1024;

/// A whole (non-streamed) 2xx answer: relayed as it is, with its usage.
pub(crate) fn whole(body: Vec<u8>) -> Result<Translated, AdapterError> {
    let [error, usage] = match top_fields(&body, ["error", "usage"]) {
        Ok(fields) => fields,
        Err(e) if e.is_data() => {
            return Err(upstream(
                true,
                "upstream answered with a JSON value that is not an object".to_owned(),
                None,
            ));
        }
        Err(e) => {
            return Err(upstream(
                true,
                format!("upstream sent a body that is not valid JSON: {e}"),
                None,
            ));
        }
    };
    if let Some(error) = error.filter(|e| e.get() != "null") {
        let (message, code) = error_message(error);
        return Err(upstream(true, message, code));
    }
    let usage = usage.and_then(read_usage);
    Ok(Translated {
        body,
        content_type: "application/json".to_owned(),
        usage,
    })
}

/// A streamed answer: each event's data is a `chat.completion.chunk` (or a
/// completion's) passed on unchanged; `[DONE]` ends it.
pub(crate) struct Stream {
    /// Whether the client asked for the usage-only chunk (the host always
    /// asks the upstream for it, to bill the call).
    include_usage: bool,
}

impl Stream {
    pub(crate) fn new(include_usage: bool) -> Self {
        Self { include_usage }
    }

    pub(crate) fn push(&mut self, events: &[Event]) -> Result<ChunkBatch, AdapterError> {
        let mut batch = ChunkBatch {
            chunks: Vec::with_capacity(events.len()),
            usage: None,
            done: false,
        };
        for event in events {
            let data = event.data.trim_ascii();
            if data.is_empty() {
                continue;
            }
            if data == b"[DONE]" {
                batch.done = true;
                continue;
            }
            let [error, usage, choices] = match top_fields(data, ["error", "usage", "choices"]) {
                Ok(fields) => fields,
                // JSON, but not an object: nothing to read in it.
                Err(e) if e.is_data() => [None, None, None],
                Err(e) => {
                    return Err(upstream(
                        false,
                        format!("upstream sent a stream event that is not JSON: {e}"),
                        None,
                    ));
                }
            };
            if let Some(error) = error.filter(|e| e.get() != "null") {
                let (message, code) = error_message(error);
                return Err(upstream(false, message, code));
            }
            let usage = usage.and_then(read_usage);
            // Usage without choices: the chunk the host asked for.
            let usage_only = usage.is_some()
                && choices.is_none_or(|c| {
                    !matches!(serde_json::from_str::<Vec<IgnoredAny>>(c.get()), Ok(c) if !c.is_empty())
                });
            if usage.is_some() {
                batch.usage = usage;
            }
            if usage_only && !self.include_usage {
                continue;
            }
            batch.chunks.push(data.to_vec());
        }
        Ok(batch)
    }
}

fn upstream(retryable: bool, message: String, code: Option<String>) -> AdapterError {
    AdapterError::Upstream(crate::adapters::UpstreamError {
        status: 502,
        retryable,
        message,
        code,
    })
}

/// OpenAI's usage object (or the Responses API's names for the same
/// counts), `None` if it is null or carries no counts.
fn read_usage(raw: &RawValue) -> Option<Usage> {
    let value: Value = serde_json::from_str(raw.get()).ok()?;
    let obj = value.as_object()?;
    let num = |v: Option<&Value>| v.and_then(Value::as_u64);
    let input = num(obj.get("prompt_tokens")).or(num(obj.get("input_tokens")));
    let output = num(obj.get("completion_tokens")).or(num(obj.get("output_tokens")));
    if input.is_none() && output.is_none() {
        return None;
    }
    let detail = |outer: &str, alt: &str, inner: &str| {
        obj.get(outer)
            .or(obj.get(alt))
            .and_then(|d| d.get(inner))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Some(Usage {
        input_tokens: input.unwrap_or(0),
        output_tokens: output.unwrap_or(0),
        cache_read_tokens: detail(
            "prompt_tokens_details",
            "input_tokens_details",
            "cached_tokens",
        ),
        cache_write_tokens: 0,
        reasoning_tokens: detail(
            "completion_tokens_details",
            "output_tokens_details",
            "reasoning_tokens",
        ),
        units: Vec::new(),
    })
}

/// The message and code of an `error` member: a string, or an object with
/// `message` (or `msg`, `detail`, `error_msg`) and `code` (or `type`,
/// `status`).
fn error_message(raw: &RawValue) -> (String, Option<String>) {
    let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
    let message = match &value {
        Value::String(s) => Some(s.clone()),
        other => ["message", "msg", "detail", "error_msg"]
            .iter()
            .find_map(|k| other.get(*k).and_then(Value::as_str).map(str::to_owned)),
    };
    let code = ["code", "type", "status"].iter().find_map(|k| {
        value.get(*k).and_then(|c| match c {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    });
    let message = message.unwrap_or_else(|| raw.get().to_owned());
    (truncate(message), code)
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The members `names` of a JSON object, each as written (the last, if
/// given twice), the others skipped without being kept. A data error if
/// `body` is JSON but not an object.
fn top_fields<'a, const N: usize>(
    body: &'a [u8],
    names: [&str; N],
) -> serde_json::Result<[Option<&'a RawValue>; N]> {
    struct Fields<'n, const N: usize>([&'n str; N]);

    impl<'de, const N: usize> Visitor<'de> for Fields<'_, N> {
        type Value = [Option<&'de RawValue>; N];

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = [None; N];
            while let Some(which) = map.next_key_seed(Which(&self.0))? {
                match which {
                    Some(i) => found[i] = Some(map.next_value::<&'de RawValue>()?),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }
    }

    /// Which of the names a member's name is, read without keeping it.
    struct Which<'s, 'n, const N: usize>(&'s [&'n str; N]);

    impl<'de, const N: usize> DeserializeSeed<'de> for Which<'_, '_, N> {
        type Value = Option<usize>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<const N: usize> Visitor<'_> for Which<'_, '_, N> {
        type Value = Option<usize>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a member name")
        }

        fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
            Ok(self.0.iter().position(|n| *n == name))
        }
    }

    let mut de = serde_json::Deserializer::from_slice(body);
    let found = de.deserialize_map(Fields(names))?;
    de.end()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> Event {
        Event {
            name: None,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_whole_answer_passes_through_with_its_usage() {
        let body = br#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":3}}}"#;
        let t = whole(body.to_vec()).unwrap();
        assert_eq!(t.body, body);
        assert_eq!(t.content_type, "application/json");
        let u = t.usage.unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.reasoning_tokens
            ),
            (19, 10, 4, 3)
        );
        // Embeddings report prompt tokens only; a null usage is none.
        let t =
            whole(br#"{"data":[],"usage":{"prompt_tokens":5,"total_tokens":5}}"#.to_vec()).unwrap();
        assert_eq!(
            t.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((5, 0))
        );
        assert!(
            whole(br#"{"usage":null}"#.to_vec())
                .unwrap()
                .usage
                .is_none()
        );
    }

    #[test]
    fn an_answer_carrying_an_error_or_not_an_object_is_the_upstreams_failure() {
        let e = whole(
            br#"{"error":{"message":"quota exhausted","type":"insufficient_quota"},"usage":null}"#
                .to_vec(),
        )
        .unwrap_err();
        assert!(matches!(&e, AdapterError::Upstream(u)
            if u.status == 502 && u.retryable && u.message == "quota exhausted"
                && u.code.as_deref() == Some("insufficient_quota")));
        // A null error is no error; the last of a repeated member counts.
        assert!(whole(br#"{"error":null,"choices":[]}"#.to_vec()).is_ok());
        assert!(whole(br#"{"error":"x","error":null}"#.to_vec()).is_ok());
        for body in [&b"[1,2]"[..], b"not json", b"{\"a\":1} trailing", b""] {
            assert!(
                matches!(whole(body.to_vec()), Err(AdapterError::Upstream(u)) if u.status == 502 && u.retryable),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_stream_passes_chunks_on_and_keeps_the_usage_chunk_for_clients_who_asked() {
        let events = [
            event(r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#),
            event(""),
            event(
                r#"{"id":"c","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            ),
            event(r#"{"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}"#),
            event("[DONE]"),
        ];
        let batch = Stream::new(false).push(&events).unwrap();
        assert_eq!(batch.chunks.len(), 2);
        assert_eq!(batch.chunks[1], events[2].data);
        assert!(batch.done);
        assert_eq!(
            batch.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((7, 2))
        );
        let batch = Stream::new(true).push(&events).unwrap();
        assert_eq!(batch.chunks.len(), 3);
        // A chunk with choices and usage (some vendors) is never dropped.
        let both = [event(
            r#"{"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        )];
        assert_eq!(Stream::new(false).push(&both).unwrap().chunks.len(), 1);
    }

    #[test]
    fn a_stream_event_carrying_an_error_or_not_json_fails_the_stream() {
        let e = Stream::new(false)
            .push(&[event(r#"{"error":{"message":"overloaded","code":529}}"#)])
            .unwrap_err();
        assert!(matches!(&e, AdapterError::Upstream(u)
            if u.status == 502 && !u.retryable && u.message == "overloaded" && u.code.as_deref() == Some("529")));
        let e = Stream::new(false).push(&[event("{oops")]).unwrap_err();
        assert!(matches!(&e, AdapterError::Upstream(u) if u.message.contains("not JSON")));
        // JSON that is not an object passes on, as a translator reading it
        // as a value would let it.
        assert_eq!(
            Stream::new(false).push(&[event("42")]).unwrap().chunks,
            vec![b"42".to_vec()]
        );
    }
}

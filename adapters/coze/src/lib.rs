//! The Coze adapter: OpenAI chat completions served by a Coze bot through
//! Chat v3 (`POST {base}/v3/chat`, `https://api.coze.com` or
//! `https://api.coze.cn`), authenticated with a personal access token as
//! `Authorization: Bearer`.
//!
//! **The OpenAI `model` is the bot id.** A channel lists the names clients
//! use as its models and maps them to bot ids (`model_mapping`), or lists
//! bot ids directly; the upstream model name the gateway hands the adapter
//! is sent as `bot_id`. The bot's own configuration (persona, model,
//! temperature, plugins, knowledge) is Coze's: sampling parameters, `stop`,
//! `response_format` and `max_tokens` have no Chat v3 counterpart and are
//! not sent, and system / developer messages are dropped (the persona is
//! the bot's prompt). `user` (or the channel option `user-id`, else
//! `transit`) is the Coze `user_id`.
//!
//! Messages become `additional_messages` (`auto_save_history: false`, so
//! nothing accumulates in a Coze conversation): user turns as `question`s,
//! assistant turns as `answer`s, text as `content_type: text`; a user turn
//! with images becomes `object_string` (`[{"type":"text","text"},
//! {"type":"image","file_url"}]`). Coze fetches images by URL; a base64
//! data URL is refused (it would need a file upload first). Coze bots take
//! no client-side tools: a request with `tools`, or with tool calls or tool
//! results in its history, is `unsupported` (another channel may serve it).
//!
//! **Always streamed upstream.** A non-streamed v3 chat answers only a chat
//! object in status `in_progress`, and the reply must then be polled for
//! with further requests; an adapter makes one upstream request per call.
//! So every call asks Coze to stream (`stream: true`). For a streaming
//! client the events are translated as they come ([`events::CozeStream`]).
//! For a non-streaming client the gateway reads the whole upstream body
//! before calling `parse_response` (it frames streams only for clients that
//! stream), so `parse_response` receives the complete event transcript and
//! assembles one `chat.completion` from it ([`events::complete`]).
//!
//! Answers: `answer` deltas are content, `reasoning_content` on them is
//! reasoning, `conversation.chat.completed` ends the chat (`stop`) with
//! usage (`input_count` → prompt, `output_count` → completion).
//!
//! Errors ([`error`]): `{code, msg}` bodies (HTTP 200 or 4xx),
//! `conversation.chat.failed` and `error` events.
//!
//! Channel options: `user-id`, `header.NAME`.

use serde::Serialize;
use serde_json::{Map, Value, json};
use transit_adapter_sdk::json;
use transit_adapter_sdk::prelude::*;

pub mod error;
pub mod events;

pub struct Coze;

pub const CHAT: &str = "chat.completions";
const DEFAULT_USER: &str = "transit";

impl Adapter for Coze {
    type Stream = events::CozeStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("coze", env!("CARGO_PKG_VERSION"), &[CHAT])
            .with_description("Coze bots through Chat v3 (the model is the bot id)")
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        if call.endpoint != CHAT {
            return Err(errors::unsupported_endpoint(call));
        }
        let request = json::parse_object(body)?;
        let translated = to_coze(call, &request)?;
        Ok(UpstreamRequest::post_json(
            chat_url(&call.channel.base_url),
            headers(call),
            json::to_vec(&translated)?,
        ))
    }

    fn parse_response(
        call: &Call,
        response: &UpstreamResponse,
    ) -> Result<Translated, AdapterError> {
        let body = response.body.trim_ascii();
        if body.first() == Some(&b'{') {
            // JSON where the event stream was due: an error, or a chat
            // object from a Coze that ignored `stream`.
            let value = json::parse_upstream(body)?;
            if let Some(e) = error::from_object(&value, errors::retry_after_ms(response)) {
                return Err(e);
            }
            return Err(errors::upstream(
                502,
                true,
                "Coze answered a chat object instead of the event stream it was asked for",
            ));
        }
        let (completion, usage) = events::complete(call, body)?;
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

/// `{base}/v3/chat` (a base URL already ending in `/v3` is not doubled).
fn chat_url(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        format!("{base}/chat")
    } else {
        format!("{base}/v3/chat")
    }
}

fn headers(call: &Call) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "authorization".to_owned(),
            format!("Bearer {}", call.channel.api_key.trim()),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("accept".to_owned(), "text/event-stream".to_owned()),
    ];
    headers.extend(call.channel.option_headers());
    headers
}

/// The Chat v3 body for the client's request.
pub fn to_coze(call: &Call, request: &Map<String, Value>) -> Result<Value, AdapterError> {
    let bot_id = call.model.trim();
    if bot_id.is_empty() {
        return Err(errors::invalid_request(
            "the channel maps this model to no Coze bot id",
        ));
    }
    if request
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
    {
        return Err(errors::unsupported(
            "Coze bots take no client-side tools (a bot's plugins are configured in Coze)",
        ));
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| errors::invalid_request("`messages` must be a non-empty array"))?;
    let mut additional = Vec::with_capacity(messages.len());
    for message in messages {
        if let Some(m) = message_of(message)? {
            additional.push(m);
        }
    }
    if additional.is_empty() {
        return Err(errors::invalid_request(
            "a Coze chat needs at least one user or assistant message",
        ));
    }
    let user_id = json::string(request, "user")
        .or_else(|| {
            call.channel
                .option("user-id")
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| DEFAULT_USER.to_owned());
    Ok(json!({
        "bot_id": bot_id,
        "user_id": user_id,
        "stream": true,
        "auto_save_history": false,
        "additional_messages": additional,
    }))
}

/// One OpenAI message → one additional message (`None`: dropped).
fn message_of(message: &Value) -> Result<Option<Value>, AdapterError> {
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| errors::invalid_request("every message needs a `role`"))?;
    let (role, kind) = match role {
        "system" | "developer" => return Ok(None),
        "user" => ("user", "question"),
        "assistant" => ("assistant", "answer"),
        "tool" | "function" => {
            return Err(errors::unsupported(
                "Coze bots take no client-side tools, so no tool results either",
            ));
        }
        other => {
            return Err(errors::invalid_request(format!(
                "Coze does not take messages of role `{other}`"
            )));
        }
    };
    if message
        .get("tool_calls")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
    {
        return Err(errors::unsupported(
            "Coze bots take no client-side tools, so no replayed tool calls either",
        ));
    }
    let (content, content_type) = match message.get("content") {
        None | Some(Value::Null) => (String::new(), "text"),
        Some(Value::String(s)) => (s.clone(), "text"),
        Some(Value::Array(parts)) => content_of(parts, role == "user")?,
        Some(_) => {
            return Err(errors::invalid_request(
                "message `content` must be a string or an array of parts",
            ));
        }
    };
    Ok(Some(json!({
        "role": role,
        "type": kind,
        "content": content,
        "content_type": content_type,
    })))
}

/// An item of an `object_string` message.
#[derive(Serialize)]
struct Item<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_url: Option<&'a str>,
}

/// A content array: text joined, or (a user's, with images) an
/// `object_string`.
fn content_of(parts: &[Value], user: bool) -> Result<(String, &'static str), AdapterError> {
    let mut items = Vec::with_capacity(parts.len());
    let mut images = false;
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => items.push(Item {
                kind: "text",
                text: Some(part.get("text").and_then(Value::as_str).unwrap_or("")),
                file_url: None,
            }),
            Some("image_url") => {
                if !user {
                    return Err(errors::invalid_request(
                        "Coze takes images in user messages only",
                    ));
                }
                let url = part
                    .get("image_url")
                    .and_then(|i| i.get("url").or(Some(i)))
                    .and_then(Value::as_str)
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| errors::invalid_request("an `image_url` part needs a `url`"))?;
                if url.starts_with("data:") {
                    return Err(errors::invalid_request(
                        "Coze takes images by URL: upload the image and pass its http(s) URL \
                         instead of a base64 data URL",
                    ));
                }
                images = true;
                items.push(Item {
                    kind: "image",
                    text: None,
                    file_url: Some(url),
                });
            }
            other => {
                return Err(errors::invalid_request(format!(
                    "Coze does not take content parts of type `{}`",
                    other.unwrap_or("(none)")
                )));
            }
        }
    }
    if images {
        let encoded = json::to_vec(&items)?;
        return Ok((
            String::from_utf8_lossy(&encoded).into_owned(),
            "object_string",
        ));
    }
    let text: String = items.iter().filter_map(|i| i.text).collect();
    Ok((text, "text"))
}

export_adapter!(Coze);

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, response};

    const OPENAI_REQUEST: &[u8] = include_bytes!("../fixtures/request_openai.json");
    const COZE_REQUEST: &[u8] = include_bytes!("../fixtures/request_coze.json");
    const STREAM: &[u8] = include_bytes!("../fixtures/stream.sse");
    const IN_PROGRESS: &[u8] = include_bytes!("../fixtures/chat_in_progress.json");

    fn coze_call(stream: bool) -> Call {
        let mut c = call(CHAT, "7348293334792339480", stream);
        c.channel.kind = "coze".into();
        c.channel.base_url = "https://api.coze.com".into();
        c.channel.api_key = "pat_test".into();
        c
    }

    fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_documented_shape_comes_out() {
        let req = Coze::prepare_request(&coze_call(false), OPENAI_REQUEST).unwrap();
        assert_eq!(req.url, "https://api.coze.com/v3/chat");
        assert_eq!(req.method, "POST");
        assert_eq!(header(&req, "authorization"), Some("Bearer pat_test"));
        assert_eq!(req.framing, Framing::Sse);
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        let expected: Value = serde_json::from_slice(COZE_REQUEST).unwrap();
        assert_eq!(sent, expected);
        // A streaming client gets the same upstream request.
        let streamed = Coze::prepare_request(&coze_call(true), OPENAI_REQUEST).unwrap();
        assert_eq!(streamed.body, req.body);
    }

    #[test]
    fn urls_and_users() {
        assert_eq!(
            chat_url("https://api.coze.cn/"),
            "https://api.coze.cn/v3/chat"
        );
        assert_eq!(
            chat_url("https://proxy.example/coze/v3"),
            "https://proxy.example/coze/v3/chat"
        );
        let mut c = coze_call(false);
        c.channel.options = vec![
            ("user-id".into(), "gateway".into()),
            ("header.X-Trace".into(), "1".into()),
        ];
        let req =
            Coze::prepare_request(&c, br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent["user_id"], "gateway");
        assert_eq!(header(&req, "X-Trace"), Some("1"));
        c.channel.options.clear();
        let req =
            Coze::prepare_request(&c, br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent["user_id"], "transit");
        assert_eq!(sent["additional_messages"][0]["content_type"], "text");
    }

    #[test]
    fn tools_are_unsupported() {
        let c = coze_call(false);
        for body in [
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}),
            json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}),
            json!({"messages": [{"role": "tool", "tool_call_id": "1", "content": "x"}]}),
        ] {
            assert!(
                matches!(
                    Coze::prepare_request(&c, &serde_json::to_vec(&body).unwrap()),
                    Err(AdapterError::Unsupported(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn bad_requests() {
        let c = coze_call(false);
        for body in [
            json!({"messages": []}),
            json!({"messages": [{"role": "system", "content": "only a persona"}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            json!({"messages": [{"role": "robot", "content": "x"}]}),
        ] {
            assert!(
                matches!(
                    Coze::prepare_request(&c, &serde_json::to_vec(&body).unwrap()),
                    Err(AdapterError::InvalidRequest(_))
                ),
                "{body}"
            );
        }
        let mut empty = coze_call(false);
        empty.model = " ".into();
        assert!(matches!(
            Coze::prepare_request(&empty, br#"{"messages":[{"role":"user","content":"x"}]}"#),
            Err(AdapterError::InvalidRequest(_))
        ));
        empty.endpoint = "embeddings".into();
        assert!(matches!(
            Coze::prepare_request(&empty, b"{}"),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn a_non_streamed_call_reads_the_whole_transcript() {
        let t = Coze::parse_response(&coze_call(false), &response(200, STREAM)).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Coze is a platform for building bots."
        );
        assert_eq!(v["model"], "7348293334792339480");
        assert_eq!(t.usage, Some(Usage::tokens(621, 12)));
    }

    #[test]
    fn json_where_the_stream_was_due() {
        let c = coze_call(false);
        assert!(matches!(
            Coze::parse_response(
                &c,
                &response(200, include_bytes!("../fixtures/error_auth.json"))
            ),
            Err(AdapterError::Auth(_))
        ));
        assert!(matches!(
            Coze::parse_response(
                &c,
                &response(200, include_bytes!("../fixtures/error_rate_limited.json"))
            ),
            Err(AdapterError::RateLimited(_))
        ));
        assert!(matches!(
            Coze::parse_response(&c, &response(200, IN_PROGRESS)),
            Err(AdapterError::Upstream(ref u)) if u.retryable
        ));
        assert!(matches!(
            Coze::map_error(
                &c,
                &response(401, include_bytes!("../fixtures/error_auth.json"))
            ),
            AdapterError::Auth(_)
        ));
    }

    #[test]
    fn info() {
        let info = Coze::info();
        assert_eq!(info.name, "coze");
        assert_eq!(info.endpoints, vec![CHAT.to_owned()]);
    }
}

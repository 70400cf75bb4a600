//! Helpers for testing adapters natively (`cargo test -p your-adapter`):
//! build calls and responses, and replay recorded SSE transcripts.

use crate::{Call, Channel, Event, UpstreamResponse};

/// A call to `model` on a channel at `http://upstream.test` with key `sk-test`.
pub fn call(endpoint: &str, model: &str, stream: bool) -> Call {
    Call {
        endpoint: endpoint.to_owned(),
        model: model.to_owned(),
        stream,
        include_usage: false,
        headers: Vec::new(),
        channel: Channel {
            kind: "test".to_owned(),
            base_url: "http://upstream.test".to_owned(),
            api_key: "sk-test".to_owned(),
            options: Vec::new(),
        },
    }
}

/// An upstream response with a JSON content type.
pub fn response(status: u16, body: &[u8]) -> UpstreamResponse {
    UpstreamResponse {
        status,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: body.to_vec(),
    }
}

/// Split a recorded `text/event-stream` transcript into events, the way the
/// gateway frames them (see [`crate::sse`]): blocks separated by a blank
/// line, `data:` lines joined by `\n`, `event:` as the name, comments and
/// other fields ignored.
pub fn sse_events(transcript: &str) -> Vec<Event> {
    crate::sse::parse(transcript.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_and_multiline_data() {
        let ev = sse_events("event: a\ndata: 1\ndata: 2\n\n: comment\n\ndata:3\r\n\r\n");
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].name.as_deref(), Some("a"));
        assert_eq!(ev[0].data, b"1\n2");
        assert_eq!(ev[1].data, b"3");
    }
}

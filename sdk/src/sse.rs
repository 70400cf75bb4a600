//! Server-sent events (`text/event-stream`), parsed from a whole body.
//!
//! The gateway frames streamed answers itself and hands `push` whole
//! [`Event`]s; an adapter needs this only when an upstream answers a
//! non-streamed call with an event stream anyway (and in tests, through
//! [`crate::testing::sse_events`]). The rules are the gateway's: lines end
//! with LF, CRLF or a lone CR; a blank line ends an event; `data:` lines are
//! joined with `\n`; `event:` names the event; one space after the colon is
//! dropped; comments (`:` lines, keep-alives) and other fields are ignored;
//! an event without data is not delivered, and one left unterminated at the
//! end of the body is.

use crate::Event;

/// The events of a whole `text/event-stream` body, in order.
pub fn parse(body: &[u8]) -> Vec<Event> {
    let mut parser = Parser::default();
    let mut start = 0;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\n' => {
                parser.line(&body[start..i]);
                start = i + 1;
            }
            b'\r' => {
                parser.line(&body[start..i]);
                if body.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < body.len() {
        parser.line(&body[start..]);
    }
    parser.dispatch();
    parser.events
}

#[derive(Default)]
struct Parser {
    events: Vec<Event>,
    name: Option<String>,
    data: Option<Vec<u8>>,
}

impl Parser {
    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => match &mut self.data {
                Some(data) => {
                    data.push(b'\n');
                    data.extend_from_slice(value);
                }
                None => self.data = Some(value.to_vec()),
            },
            b"event" => self.name = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let name = self.name.take();
        if let Some(data) = self.data.take() {
            self.events.push(Event { name, data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(body: &str) -> Vec<(Option<String>, String)> {
        parse(body.as_bytes())
            .into_iter()
            .map(|e| (e.name, String::from_utf8(e.data).unwrap()))
            .collect()
    }

    fn data(text: &str) -> (Option<String>, String) {
        (None, text.to_owned())
    }

    #[test]
    fn names_and_multi_line_data() {
        assert_eq!(
            pairs("event: a\ndata: 1\ndata: 2\n\ndata:3\n\n"),
            vec![(Some("a".to_owned()), "1\n2".to_owned()), data("3")]
        );
        // Only one space after the colon is dropped; an empty data line
        // still counts as a line.
        assert_eq!(pairs("data:  x\n\n"), vec![data(" x")]);
        assert_eq!(pairs("data\ndata: y\n\n"), vec![data("\ny")]);
        assert_eq!(pairs("data:\n\n"), vec![data("")]);
        // The name belongs to one event only.
        assert_eq!(
            pairs("event: e\ndata: 1\n\ndata: 2\n\n"),
            vec![(Some("e".to_owned()), "1".to_owned()), data("2")]
        );
    }

    #[test]
    fn comments_keep_alives_and_other_fields_are_skipped() {
        assert_eq!(
            pairs(": keep-alive\n\nid: 7\nretry: 10\ndata: x\n: note\n\nevent: empty\n\n"),
            vec![data("x")]
        );
        assert!(parse(b"").is_empty());
        assert!(parse(b"\n\n\r\n").is_empty());
    }

    #[test]
    fn every_line_ending_and_an_unterminated_last_event() {
        assert_eq!(
            pairs("data: a\r\n\r\ndata: b\r\rdata: c\ndata: d\r\n\ndata: e"),
            vec![data("a"), data("b"), data("c\nd"), data("e")]
        );
    }

    #[test]
    fn data_is_kept_byte_for_byte() {
        let events = parse(b"event: \xff\ndata: \xfe\x00\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, b"\xfe\x00");
        assert_eq!(events[0].name.as_deref(), Some("\u{fffd}"));
    }
}

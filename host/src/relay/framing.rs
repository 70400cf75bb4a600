//! Cutting streamed upstream bodies into whole events.
//!
//! TCP delivers bytes in arbitrary pieces: an SSE event can arrive split in
//! the middle of a line, or several events in one read. The framers buffer
//! until an event is complete, so adapters only ever see whole events.

use crate::adapters::Event;

/// Largest single event accepted before the stream is declared broken.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum FramingError {
    EventTooLarge,
}

/// Incremental `text/event-stream` parser.
#[derive(Default)]
pub struct SseFramer {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned for a line end.
    scanned: usize,
    name: Option<String>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseFramer {
    /// Feed bytes; get the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, FramingError> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b == b'\n' || b == b'\r' {
                let line_end = i;
                // A CR LF pair is one line end; a lone CR at the end of the
                // buffer may be the first half of one, so wait for more.
                if b == b'\r' {
                    if i + 1 == self.buf.len() {
                        break;
                    }
                    if self.buf[i + 1] == b'\n' {
                        i += 1;
                    }
                }
                let line = self.buf[start..line_end].to_vec();
                self.line(&line, &mut events);
                start = i + 1;
            }
            i += 1;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        // A CR left unconsumed at the end must be re-examined next time.
        if self.buf.last() == Some(&b'\r') {
            self.scanned -= 1;
        }
        if self.buf.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(FramingError::EventTooLarge);
        }
        Ok(events)
    }

    /// The upstream closed: dispatch an event left without its blank line.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = rest.strip_suffix(b"\r").unwrap_or(&rest).to_vec();
            self.line(&line, &mut events);
        }
        self.dispatch(&mut events);
        events
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<Event>) {
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.name = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<Event>) {
        if self.has_data {
            events.push(Event {
                name: self.name.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.name = None;
        self.has_data = false;
    }
}

/// Incremental newline-delimited JSON splitter.
#[derive(Default)]
pub struct NdjsonFramer {
    buf: Vec<u8>,
}

impl NdjsonFramer {
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, FramingError> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(p) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=p).collect();
            let trimmed = line.trim_ascii();
            if !trimmed.is_empty() {
                events.push(Event {
                    name: None,
                    data: trimmed.to_vec(),
                });
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(FramingError::EventTooLarge);
        }
        Ok(events)
    }

    pub fn finish(&mut self) -> Vec<Event> {
        let rest = std::mem::take(&mut self.buf);
        let trimmed = rest.trim_ascii();
        if trimmed.is_empty() {
            Vec::new()
        } else {
            vec![Event {
                name: None,
                data: trimmed.to_vec(),
            }]
        }
    }
}

/// Either framer, chosen by the adapter's `framing`.
pub enum Framer {
    Sse(SseFramer),
    Ndjson(NdjsonFramer),
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, FramingError> {
        match self {
            Self::Sse(f) => f.push(bytes),
            Self::Ndjson(f) => f.push(bytes),
        }
    }

    pub fn finish(&mut self) -> Vec<Event> {
        match self {
            Self::Sse(f) => f.finish(),
            Self::Ndjson(f) => f.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8(e.data.clone()).unwrap())
            .collect()
    }

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let stream = "event: a\ndata: {\"x\":1}\n\n: keep-alive\n\ndata: line1\ndata: line2\r\n\r\ndata: [DONE]\n\n";
        let whole = data(&SseFramer::default().push(stream.as_bytes()).unwrap());
        assert_eq!(whole, vec!["{\"x\":1}", "line1\nline2", "[DONE]"]);
        // Every split point, byte by byte, gives the same events.
        for split in 0..stream.len() {
            let mut f = SseFramer::default();
            let mut got = f.push(&stream.as_bytes()[..split]).unwrap();
            got.extend(f.push(&stream.as_bytes()[split..]).unwrap());
            got.extend(f.finish());
            assert_eq!(data(&got), whole, "split at {split}");
        }
        let mut f = SseFramer::default();
        let mut got = Vec::new();
        for b in stream.as_bytes() {
            got.extend(f.push(&[*b]).unwrap());
        }
        assert_eq!(data(&got), whole);
        assert_eq!(got[0].name.as_deref(), Some("a"));
    }

    #[test]
    fn lone_cr_line_endings() {
        let mut f = SseFramer::default();
        let mut got = f.push(b"data: a\r").unwrap();
        got.extend(f.push(b"\rdata: b\r\r").unwrap());
        // The last CR may be the first half of a CR LF: it waits for more.
        assert_eq!(data(&got), vec!["a"]);
        got.extend(f.finish());
        assert_eq!(data(&got), vec!["a", "b"]);
    }

    #[test]
    fn unterminated_last_event_is_delivered_on_finish() {
        let mut f = SseFramer::default();
        assert!(f.push(b"data: tail").unwrap().is_empty());
        assert_eq!(data(&f.finish()), vec!["tail"]);
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut f = SseFramer::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(f.push(&big).unwrap_err(), FramingError::EventTooLarge);
    }

    #[test]
    fn ndjson_lines() {
        let mut f = NdjsonFramer::default();
        let mut got = f.push(b"{\"a\":1}\n\n{\"b\"").unwrap();
        got.extend(f.push(b":2}\n{\"c\":3}").unwrap());
        got.extend(f.finish());
        assert_eq!(data(&got), vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }
}

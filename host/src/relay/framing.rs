//! Cutting streamed upstream bodies into whole events.
//!
//! TCP delivers bytes in arbitrary pieces: an SSE event can arrive split in
//! the middle of a line, or several events in one read. The framers buffer
//! until an event is complete, so adapters only ever see whole events.

use crate::adapters::Event;

/// Largest single event accepted before the stream is declared broken.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    EventTooLarge,
    /// An AWS eventstream message whose prelude or message CRC32 is wrong.
    BadChecksum,
    /// An AWS eventstream message that cannot be read (lengths or headers
    /// that do not add up).
    Malformed,
}

impl FramingError {
    /// What the client is told when the upstream's stream breaks so.
    pub fn message(&self) -> &'static str {
        match self {
            Self::EventTooLarge => "The upstream sent an event larger than 16 MiB.",
            Self::BadChecksum => "The upstream sent a stream message with a wrong checksum.",
            Self::Malformed => "The upstream sent a stream message that cannot be read.",
        }
    }
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

/// Incremental parser of the AWS binary eventstream framing
/// (`application/vnd.amazon.eventstream`, Bedrock's streams).
///
/// A message is a 12-byte prelude (total length, headers length, both
/// big-endian `u32`, and the CRC32 of those 8 bytes), the headers, the
/// payload, and the CRC32 of everything before it. A header is a 1-byte
/// name length, the name, a 1-byte value type and the value (types 0-9:
/// true, false, byte, short, int, long, bytes and string with a 2-byte
/// length, timestamp, uuid). Both checksums are verified before a message
/// is delivered.
///
/// Each message becomes one [`Event`]: its payload as `data`, and as `name`
/// the `:event-type` header of an event message, the `:exception-type` of
/// an exception message, or the `:error-code` of an error message (whose
/// `:error-message` header is the data when the payload is empty).
#[derive(Default)]
pub struct AwsEventstreamFramer {
    buf: Vec<u8>,
    /// A message that could not be read, after whole ones in the same
    /// chunk: those were handed on, and this is reported next.
    broken: Option<FramingError>,
}

/// Prelude (12 bytes) and message CRC (4 bytes).
const EVENTSTREAM_OVERHEAD: usize = 16;

impl AwsEventstreamFramer {
    /// The whole messages `bytes` completes. A message that cannot be read
    /// ends the stream: the messages before it are returned first, and the
    /// error by the next call (`push` or `finish`).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, FramingError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        loop {
            match self.next_message(start) {
                Ok(Some((event, len))) => {
                    events.push(event);
                    start += len;
                }
                Ok(None) => break,
                Err(e) => {
                    self.buf.clear();
                    if events.is_empty() {
                        self.broken = Some(e);
                        return Err(e);
                    }
                    self.broken = Some(e);
                    return Ok(events);
                }
            }
        }
        self.buf.drain(..start);
        Ok(events)
    }

    /// The message at `start` of the buffer and its length, or `None` if it
    /// has not fully arrived.
    fn next_message(&self, start: usize) -> Result<Option<(Event, usize)>, FramingError> {
        let Some(prelude) = self.buf.get(start..start + 12) else {
            return Ok(None);
        };
        let total = be_u32(&prelude[0..4]) as usize;
        let headers_len = be_u32(&prelude[4..8]) as usize;
        if crc32fast::hash(&prelude[0..8]) != be_u32(&prelude[8..12]) {
            return Err(FramingError::BadChecksum);
        }
        if total > MAX_EVENT_BYTES {
            return Err(FramingError::EventTooLarge);
        }
        if total < EVENTSTREAM_OVERHEAD || headers_len > total - EVENTSTREAM_OVERHEAD {
            return Err(FramingError::Malformed);
        }
        let Some(message) = self.buf.get(start..start + total) else {
            return Ok(None);
        };
        let (body, crc) = message.split_at(total - 4);
        if crc32fast::hash(body) != be_u32(crc) {
            return Err(FramingError::BadChecksum);
        }
        let headers = parse_eventstream_headers(&body[12..12 + headers_len])?;
        let payload = body[12 + headers_len..].to_vec();
        Ok(Some((eventstream_event(&headers, payload), total)))
    }

    /// The upstream closed. A partial message cannot be read: it is dropped
    /// (the adapter sees a stream that ended without its last events). A
    /// message found broken earlier is reported now.
    pub fn finish(&mut self) -> Result<Vec<Event>, FramingError> {
        self.buf.clear();
        match self.broken {
            Some(e) => Err(e),
            None => Ok(Vec::new()),
        }
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(b)
}

/// The string-valued headers of a message (other value types are read past).
fn parse_eventstream_headers(mut raw: &[u8]) -> Result<Vec<(String, Vec<u8>)>, FramingError> {
    fn take<'a>(raw: &mut &'a [u8], n: usize) -> Result<&'a [u8], FramingError> {
        if raw.len() < n {
            return Err(FramingError::Malformed);
        }
        let (head, tail) = raw.split_at(n);
        *raw = tail;
        Ok(head)
    }
    let mut headers = Vec::new();
    while !raw.is_empty() {
        let name_len = usize::from(take(&mut raw, 1)?[0]);
        let name = String::from_utf8_lossy(take(&mut raw, name_len)?).into_owned();
        let kind = take(&mut raw, 1)?[0];
        let fixed = match kind {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | 7 => None,
            _ => return Err(FramingError::Malformed),
        };
        match fixed {
            Some(n) => {
                take(&mut raw, n)?;
            }
            None => {
                let len = take(&mut raw, 2)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let value = take(&mut raw, len)?.to_vec();
                if kind == 7 {
                    headers.push((name, value));
                }
            }
        }
    }
    Ok(headers)
}

fn eventstream_event(headers: &[(String, Vec<u8>)], payload: Vec<u8>) -> Event {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    match header(":message-type").as_deref() {
        Some("exception") => Event {
            name: header(":exception-type"),
            data: payload,
        },
        Some("error") => {
            let data = if payload.is_empty() {
                header(":error-message").unwrap_or_default().into_bytes()
            } else {
                payload
            };
            Event {
                name: Some(header(":error-code").unwrap_or_else(|| "error".to_owned())),
                data,
            }
        }
        _ => Event {
            name: header(":event-type"),
            data: payload,
        },
    }
}

/// The framer chosen by the adapter's `framing`.
pub enum Framer {
    Sse(SseFramer),
    Ndjson(NdjsonFramer),
    AwsEventstream(AwsEventstreamFramer),
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, FramingError> {
        match self {
            Self::Sse(f) => f.push(bytes),
            Self::Ndjson(f) => f.push(bytes),
            Self::AwsEventstream(f) => f.push(bytes),
        }
    }

    pub fn finish(&mut self) -> Result<Vec<Event>, FramingError> {
        match self {
            Self::Sse(f) => Ok(f.finish()),
            Self::Ndjson(f) => Ok(f.finish()),
            Self::AwsEventstream(f) => f.finish(),
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

    fn pairs(events: &[Event]) -> Vec<(Option<String>, Vec<u8>)> {
        events
            .iter()
            .map(|e| (e.name.clone(), e.data.clone()))
            .collect()
    }

    /// One eventstream message with string headers.
    fn eventstream_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        for (name, value) in headers {
            h.push(u8::try_from(name.len()).unwrap());
            h.extend_from_slice(name.as_bytes());
            h.push(7);
            h.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
            h.extend_from_slice(value.as_bytes());
        }
        let total = u32::try_from(16 + h.len() + payload.len()).unwrap();
        let mut m = Vec::new();
        m.extend_from_slice(&total.to_be_bytes());
        m.extend_from_slice(&u32::try_from(h.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
        m.extend_from_slice(&h);
        m.extend_from_slice(payload);
        m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
        m
    }

    fn bedrock_event(kind: &str, payload: &str) -> Vec<u8> {
        eventstream_message(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    }

    #[test]
    fn eventstream_known_vector() {
        // The AWS eventstream test suite's `int32_header` message: one
        // header `event-type` of type int32 (value 40972) and the payload
        // `{'foo':'bar'}`.
        let bytes: [u8; 45] = [
            0x00, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x10, 0x41, 0xc4, 0x24, 0xb8, 0x0a, 0x65,
            0x76, 0x65, 0x6e, 0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x04, 0x00, 0x00, 0xa0, 0x0c,
            0x7b, 0x27, 0x66, 0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0x36,
            0xf4, 0x80, 0xa0,
        ];
        let got = AwsEventstreamFramer::default().push(&bytes).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, None, "only string headers name events");
        assert_eq!(got[0].data, b"{'foo':'bar'}");
    }

    #[test]
    fn eventstream_messages_split_anywhere_are_reassembled() {
        let mut stream = bedrock_event("messageStart", r#"{"p":"abc","role":"assistant"}"#);
        stream.extend(bedrock_event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"ab"}"#,
        ));
        stream.extend(eventstream_message(
            &[
                (":message-type", "event"),
                (":event-type", "contentBlockStop"),
            ],
            b"",
        ));
        stream.extend(eventstream_message(
            &[
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            br#"{"message":"Too many requests"}"#,
        ));
        stream.extend(eventstream_message(
            &[
                (":message-type", "error"),
                (":error-code", "InternalFailure"),
                (":error-message", "An internal error occurred"),
            ],
            b"",
        ));
        let whole = AwsEventstreamFramer::default().push(&stream).unwrap();
        let names: Vec<_> = whole.iter().map(|e| e.name.clone().unwrap()).collect();
        assert_eq!(
            names,
            vec![
                "messageStart",
                "contentBlockDelta",
                "contentBlockStop",
                "throttlingException",
                "InternalFailure"
            ]
        );
        assert_eq!(whole[0].data, br#"{"p":"abc","role":"assistant"}"#);
        assert!(whole[2].data.is_empty());
        assert_eq!(whole[3].data, br#"{"message":"Too many requests"}"#);
        assert_eq!(whole[4].data, b"An internal error occurred");
        for split in 0..=stream.len() {
            let mut f = AwsEventstreamFramer::default();
            let mut got = f.push(&stream[..split]).unwrap();
            got.extend(f.push(&stream[split..]).unwrap());
            got.extend(f.finish().unwrap());
            assert_eq!(pairs(&got), pairs(&whole), "split at {split}");
        }
        let mut f = AwsEventstreamFramer::default();
        let mut got = Vec::new();
        for b in &stream {
            got.extend(f.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(pairs(&got), pairs(&whole));
    }

    #[test]
    fn eventstream_checksums_and_lengths_are_enforced() {
        let good = bedrock_event("messageStart", r#"{"role":"assistant"}"#);
        // A flipped payload byte: the message CRC no longer matches.
        let mut bad = good.clone();
        bad[good.len() - 6] ^= 0x01;
        assert_eq!(
            AwsEventstreamFramer::default().push(&bad).unwrap_err(),
            FramingError::BadChecksum
        );
        // A flipped length byte: the prelude CRC no longer matches.
        let mut bad = good.clone();
        bad[3] ^= 0x01;
        assert_eq!(
            AwsEventstreamFramer::default().push(&bad).unwrap_err(),
            FramingError::BadChecksum
        );
        // A bad prelude is caught as soon as its 12 bytes are in.
        assert_eq!(
            AwsEventstreamFramer::default()
                .push(&bad[..12])
                .unwrap_err(),
            FramingError::BadChecksum
        );
        // Lengths that do not add up, with a valid prelude CRC.
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&20u32.to_be_bytes());
        prelude.extend_from_slice(&10u32.to_be_bytes());
        prelude.extend_from_slice(&crc32fast::hash(&prelude).to_be_bytes());
        assert_eq!(
            AwsEventstreamFramer::default().push(&prelude).unwrap_err(),
            FramingError::Malformed
        );
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.extend_from_slice(&crc32fast::hash(&huge).to_be_bytes());
        assert_eq!(
            AwsEventstreamFramer::default().push(&huge).unwrap_err(),
            FramingError::EventTooLarge
        );
        // A header whose value runs past the headers: malformed.
        let mut m = Vec::new();
        let headers = [1u8, b'x', 7, 0, 9, b'a'];
        m.extend_from_slice(&u32::try_from(16 + headers.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&u32::try_from(headers.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
        m.extend_from_slice(&headers);
        m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
        assert_eq!(
            AwsEventstreamFramer::default().push(&m).unwrap_err(),
            FramingError::Malformed
        );
        // A truncated last message is dropped at the end.
        let mut f = AwsEventstreamFramer::default();
        assert!(f.push(&good[..good.len() - 1]).unwrap().is_empty());
        assert!(f.finish().unwrap().is_empty());

        // A broken message after whole ones in the same chunk: the whole
        // ones are handed on, then the stream fails.
        let second = bedrock_event("contentBlockDelta", r#"{"delta":{"text":"hi"}}"#);
        let mut broken = second.clone();
        broken[second.len() - 6] ^= 0x01;
        let chunk = [good.clone(), second, broken].concat();
        let mut f = AwsEventstreamFramer::default();
        let got = f.push(&chunk).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].name.as_deref(), Some("contentBlockDelta"));
        assert_eq!(f.push(&good).unwrap_err(), FramingError::BadChecksum);
        assert_eq!(f.finish().unwrap_err(), FramingError::BadChecksum);
        // The same at the stream's very end is reported by `finish`.
        let mut f = AwsEventstreamFramer::default();
        assert_eq!(
            f.push(&[good.clone(), broken_tail(&good)].concat())
                .unwrap()
                .len(),
            1
        );
        assert_eq!(f.finish().unwrap_err(), FramingError::BadChecksum);
    }

    /// `message` with its last payload byte flipped.
    fn broken_tail(message: &[u8]) -> Vec<u8> {
        let mut m = message.to_vec();
        let at = m.len() - 5;
        m[at] ^= 0x01;
        m
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

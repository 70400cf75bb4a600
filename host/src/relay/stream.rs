//! Streamed responses: upstream bytes → whole events → the adapter's stream
//! translator (or the host's, for OpenAI streams) → `data:` lines to the
//! client.
//!
//! The first batch is read before the response is committed, so an upstream
//! that fails or closes before producing anything can still fail over to
//! another channel. After that the response body pumps the stream as the
//! client reads it (no task or channel of its own per stream); it stops
//! reading the upstream as soon as the client goes away, and settles the
//! call with what was actually delivered.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde::Deserialize;

use super::passthrough;
use super::{
    CallRecord, framer_for, from_adapter_error, guest_failure, lease_for_answer,
    upstream_unreachable,
};
use crate::adapters::{self, Answer, Call, ChunkBatch, Framing, StreamSeat, Usage};
use crate::billing::{self, Hold, Outcome};
use crate::channels::Channel;
use crate::error::{ErrorKind, GatewayError};
use crate::inbound::{Shape, SseEvent, StreamConverter};
use crate::limits::SlotGuard;
use crate::upstream;

type Upstream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, upstream::Error>> + Send>>;

/// Who translates a stream's events.
enum Translator {
    /// The adapter's stream translator, in a seat of one of its instances.
    Adapter(StreamSeat),
    /// The host: the upstream streams OpenAI's chunks (`answer::openai`).
    OpenAi(passthrough::Stream),
}

struct Pump {
    translator: Translator,
    framer: super::framing::Framer,
    upstream: Upstream,
    usage: Option<Usage>,
    /// Generated text sent to the client, for counting output tokens when
    /// the upstream reports none (kept up to `MAX_KEPT_TEXT` bytes; beyond
    /// that only its length).
    delivered: String,
    delivered_beyond: usize,
    upstream_done: bool,
    finished: bool,
    /// Events framed but not yet translated: until the client has its
    /// first chunk, events go to the adapter one at a time, so the first
    /// chunk waits for its own event only, not for the whole first read.
    pending: VecDeque<adapters::Event>,
    /// The adapter has produced a chunk.
    produced: bool,
}

enum Step {
    /// Chunks to send (possibly none); the stream goes on.
    Chunks(Vec<Vec<u8>>),
    /// The upstream is finished; these are the last chunks.
    End(Vec<Vec<u8>>),
}

impl Pump {
    /// Read the next piece of the upstream and translate it.
    async fn step(&mut self, channel: &Channel) -> Result<Step, GatewayError> {
        if self.upstream_done {
            return self.finish(channel).await.map(Step::End);
        }
        if !self.pending.is_empty() {
            let events = self.take_pending();
            return self.translate_events(&events, channel).await;
        }
        match self.upstream.next().await {
            Some(Ok(bytes)) => {
                let mut events = self
                    .framer
                    .push(&bytes)
                    .map_err(|e| GatewayError::new(ErrorKind::Upstream, e.message()))?;
                if events.is_empty() {
                    return Ok(Step::Chunks(Vec::new()));
                }
                if !self.produced && events.len() > 1 {
                    self.pending.extend(events.drain(1..));
                }
                self.translate_events(&events, channel).await
            }
            Some(Err(e)) => Err(upstream_unreachable(&e, channel)),
            None => {
                let events = self
                    .framer
                    .finish()
                    .map_err(|e| GatewayError::new(ErrorKind::Upstream, e.message()))?;
                let mut chunks = Vec::new();
                if !events.is_empty() {
                    chunks = self.translate(&events, channel).await?.chunks;
                }
                chunks.extend(self.finish(channel).await?);
                Ok(Step::End(chunks))
            }
        }
    }

    /// The events to translate next: one while nothing was produced yet,
    /// else all that wait.
    fn take_pending(&mut self) -> Vec<adapters::Event> {
        if self.produced {
            self.pending.drain(..).collect()
        } else {
            self.pending.pop_front().into_iter().collect()
        }
    }

    async fn translate_events(
        &mut self,
        events: &[adapters::Event],
        channel: &Channel,
    ) -> Result<Step, GatewayError> {
        let batch = self.translate(events, channel).await?;
        if batch.done {
            self.upstream_done = true;
        }
        Ok(Step::Chunks(batch.chunks))
    }

    async fn translate(
        &mut self,
        events: &[adapters::Event],
        channel: &Channel,
    ) -> Result<ChunkBatch, GatewayError> {
        let batch = match &mut self.translator {
            Translator::Adapter(seat) => seat
                .push(events)
                .await
                .map_err(|f| guest_failure(seat.adapter(), f))?,
            Translator::OpenAi(stream) => stream.push(events),
        }
        .map_err(|e| from_adapter_error(e, channel))?;
        self.absorb(&batch);
        Ok(batch)
    }

    async fn finish(&mut self, channel: &Channel) -> Result<Vec<Vec<u8>>, GatewayError> {
        if self.finished {
            return Ok(Vec::new());
        }
        self.finished = true;
        let batch = match &mut self.translator {
            Translator::Adapter(seat) => seat
                .finish()
                .await
                .map_err(|f| guest_failure(seat.adapter(), f))?
                .map_err(|e| from_adapter_error(e, channel))?,
            // An OpenAI stream has nothing left once its events are read.
            Translator::OpenAi(_) => return Ok(Vec::new()),
        };
        self.absorb(&batch);
        Ok(batch.chunks)
    }

    /// Give the stream's seat in its adapter instance back (if it has
    /// one), its translator to be dropped before the instance's next call.
    /// The upstream is handed back if the translator found its stream
    /// finished but its end has not arrived yet.
    fn release(self) -> Option<Upstream> {
        let Self {
            translator,
            mut upstream,
            upstream_done,
            ..
        } = self;
        drop(translator);
        (upstream_done && !drain(&mut upstream)).then_some(upstream)
    }

    fn absorb(&mut self, batch: &ChunkBatch) {
        self.produced |= !batch.chunks.is_empty();
        if let Some(u) = &batch.usage {
            self.usage = Some(u.clone());
        }
        for chunk in &batch.chunks {
            collect_generated(chunk, &mut self.delivered, &mut self.delivered_beyond);
        }
    }

    fn usage(&self, record: &CallRecord) -> Usage {
        self.usage.clone().unwrap_or_else(|| Usage {
            input_tokens: record.prompt.billed(&record.model),
            output_tokens: billing::tokens::count(&record.model, &self.delivered)
                + (self.delivered_beyond as u64).div_ceil(4),
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            units: Vec::new(),
        })
    }
}

/// Read what is left of an upstream stream the adapter found finished (the
/// end of its chunked encoding, usually), as far as it has already arrived:
/// a connection read to its end serves the next call, one dropped half-way
/// is closed. `false` if the end is still to come.
fn drain(upstream: &mut Upstream) -> bool {
    use futures_util::FutureExt;
    // Bounded: an upstream still sending after its end is not waited for.
    for _ in 0..DRAIN_PIECES {
        match upstream.next().now_or_never() {
            Some(Some(Ok(_))) => {}
            Some(None | Some(Err(_))) => return true,
            None => return false,
        }
    }
    true
}

/// [`drain`], waiting for the end to arrive (it usually follows the last
/// event within a moment), for up to [`DRAIN_WAIT`].
async fn drain_arriving(mut upstream: Upstream) {
    let _ = tokio::time::timeout(DRAIN_WAIT, async {
        for _ in 0..DRAIN_PIECES {
            if !matches!(upstream.next().await, Some(Ok(_))) {
                return;
            }
        }
    })
    .await;
}

/// Pieces read after a stream's last event, waiting for its end.
const DRAIN_PIECES: usize = 4;

/// How long the end of a finished stream is waited for before its
/// connection is closed instead.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// What the client's stream looks like.
pub(super) struct Output {
    /// The shape the client spoke: how events are framed and how the stream ends.
    pub shape: Shape,
    /// For a translated call: turns canonical chunks into the shape's events.
    pub converter: Option<StreamConverter>,
}

impl Output {
    /// The bytes of one chunk from the adapter.
    fn chunk(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        match &mut self.converter {
            Some(c) => c.push(chunk).iter().map(event).collect(),
            None => vec![named(self.shape.event_name(chunk).as_deref(), chunk)],
        }
    }

    /// The closing bytes of a stream that ended well.
    fn end(&mut self, usage: &Usage) -> Vec<Bytes> {
        let mut out: Vec<Bytes> = match &mut self.converter {
            Some(c) => c.finish(Some(usage)).iter().map(event).collect(),
            None => Vec::new(),
        };
        if self.shape.ends_with_done() {
            out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        out
    }

    /// An error event, in the shape's envelope.
    fn error(&self, e: &GatewayError) -> Bytes {
        let body = serde_json::to_vec(&self.shape.error_body(e)).unwrap_or_default();
        let name = (self.shape == Shape::Anthropic).then_some("error");
        named(name, &body)
    }
}

fn event(e: &SseEvent) -> Bytes {
    named(e.name.as_deref(), &e.data)
}

fn named(name: Option<&str>, data: &[u8]) -> Bytes {
    let Some(name) = name else {
        return frame(data);
    };
    let mut out = Vec::with_capacity(data.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn start(
    app: &crate::AppState,
    adapter: &Arc<adapters::LoadedAdapter>,
    call: Call,
    response: upstream::Response,
    framing: Framing,
    answer: Answer,
    output: Output,
    channel: &Arc<Channel>,
    record: &CallRecord,
    hold: &mut Option<Hold>,
    slots: &mut Vec<SlotGuard>,
) -> Result<Response, GatewayError> {
    let upstream: Upstream = if answered_without_events(&response, framing) {
        // Some upstreams (Tencent, Coze) report a refused call as 200 with
        // a JSON error body instead of a stream: the adapter reads it as
        // the error it is. A stream merely labelled JSON is read as one.
        let body = super::collect_response(response, 1024 * 1024, channel).await?;
        if matches!(framing, Framing::Sse) && looks_like_events(&body.body) {
            Box::pin(futures_util::stream::once(std::future::ready(Ok(
                Bytes::from(body.body),
            ))))
        } else {
            let mut lease = lease_for_answer(app, adapter, record.user_id).await?;
            let mapped = lease
                .instance
                .map_error(&call, &body)
                .await
                .map_err(|f| guest_failure(adapter, f))?;
            lease.recycle();
            return Err(match mapped {
                // Not an error the adapter knows: an answer without the
                // stream asked for (an upstream ignoring `stream`).
                adapters::AdapterError::Upstream(u) if (200..300).contains(&u.status) => {
                    GatewayError::new(
                        ErrorKind::Upstream,
                        format!(
                            "The upstream of channel {} answered a streamed call without a stream.",
                            channel.id
                        ),
                    )
                    .retryable(true)
                }
                other => from_adapter_error(other, channel),
            });
        }
    } else {
        Box::pin(response.bytes_stream())
    };
    let framer = framer_for(framing).ok_or_else(|| {
        GatewayError::new(
            ErrorKind::Unsupported,
            "AWS eventstream framing is not available in this build.",
        )
        .retryable(true)
    })?;
    let translator = match answer {
        Answer::Openai => Translator::OpenAi(passthrough::Stream::new(call.include_usage)),
        // A seat in an instance hosting the user's other streams, or else
        // in an instance of its own that later streams may join.
        Answer::Adapter => Translator::Adapter(
            match app
                .runtime
                .join_stream(adapter, record.user_id, &call)
                .await
            {
                Some(joined) => joined,
                None => {
                    let lease = lease_for_answer(app, adapter, record.user_id).await?;
                    app.runtime.open_stream(lease, &call).await
                }
            }
            .map_err(|f| guest_failure(adapter, f))?,
        ),
    };
    let mut pump = Pump {
        translator,
        framer,
        upstream,
        usage: None,
        delivered: String::new(),
        delivered_beyond: 0,
        upstream_done: false,
        finished: false,
        pending: VecDeque::new(),
        produced: false,
    };

    // Read until there is something to send: failures up to here may still
    // be retried on another channel.
    let mut first = Vec::new();
    let mut ended = false;
    while first.is_empty() && !ended {
        match pump.step(channel).await? {
            Step::Chunks(c) => first = c,
            Step::End(c) => {
                first = c;
                ended = true;
            }
        }
    }
    if first.is_empty() {
        return Err(GatewayError::new(
            ErrorKind::Upstream,
            format!(
                "The upstream of channel {} closed the stream without sending anything.",
                channel.id
            ),
        )
        .retryable(true));
    }
    let first_token = record.started.elapsed();

    // Committed: from here the call settles with what it delivered. The
    // response body drives the stream itself: each read by the client's
    // connection pulls the next piece from the upstream, and a client that
    // goes away drops the body, which stops the upstream and settles.
    let mut relay = Relay {
        pump: Some(pump),
        output,
        queue: VecDeque::new(),
        channel: channel.clone(),
        record: record.clone(),
        first_token,
        hold: hold.take(),
        slots: std::mem::take(slots),
        rest: None,
    };
    relay.queue_chunks(first);
    if ended {
        relay.end("");
    }
    let body = futures_util::stream::unfold(relay, |mut relay| async move {
        let bytes = relay.next().await?;
        Some((Ok::<_, Infallible>(bytes), relay))
    });

    let mut out = Response::new(Body::from_stream(body));
    let headers = out.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(out)
}

/// A committed stream: the upstream's pump, what is translated and not yet
/// sent, and what the call settles with when it ends.
struct Relay {
    /// Until the upstream is finished (or failed): then the adapter
    /// instance goes back at once, whatever the client still has to read.
    pump: Option<Pump>,
    output: Output,
    queue: VecDeque<Bytes>,
    channel: Arc<Channel>,
    record: CallRecord,
    first_token: Duration,
    hold: Option<Hold>,
    /// The concurrency slots, held until the upstream is done.
    slots: Vec<SlotGuard>,
    /// A finished upstream stream whose end is still to be read, so that
    /// its connection serves the next call: read before the client's
    /// stream ends (the client has every event by then).
    rest: Option<Upstream>,
}

impl Relay {
    fn queue_chunks(&mut self, chunks: Vec<Vec<u8>>) {
        for chunk in chunks {
            let bytes = self.output.chunk(&chunk);
            self.queue.extend(bytes);
        }
    }

    /// The next bytes for the client; `None` once the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.queue.pop_front() {
                return Some(bytes);
            }
            let Some(pump) = self.pump.as_mut() else {
                if let Some(rest) = self.rest.take() {
                    drain_arriving(rest).await;
                }
                return None;
            };
            match pump.step(&self.channel).await {
                Ok(Step::Chunks(c)) => self.queue_chunks(c),
                Ok(Step::End(c)) => {
                    // The last chunks, then the closing events; the call
                    // settles now, whatever the client still has to read.
                    self.queue_chunks(c);
                    self.end("");
                }
                Err(e) => {
                    tracing::warn!(request_id = %self.record.request_id, channel = self.channel.id, error = %e.message, "stream failed mid-way");
                    let bytes = self.output.error(&e);
                    self.queue.push_back(bytes);
                    self.end("upstream failed mid-stream");
                }
            }
        }
    }

    /// Settle the call with what was delivered (once): a stream that ended
    /// well gets its closing events, and the adapter instance and slots go
    /// back.
    fn end(&mut self, outcome: &str) {
        let Some(pump) = self.pump.take() else {
            return;
        };
        let usage = pump.usage(&self.record);
        if outcome.is_empty() {
            let bytes = self.output.end(&usage);
            self.queue.extend(bytes);
        }
        // Release the adapter instance before the bookkeeping.
        self.rest = pump.release();
        if let Some(hold) = self.hold.take() {
            hold.settle(Outcome::Served {
                channel_id: self.channel.id,
                usage,
                first_token: Some(self.first_token),
                note: outcome.to_owned(),
            });
        }
        self.slots.clear();
    }
}

impl Drop for Relay {
    /// The client went away (or the shutdown cut the stream) before it was
    /// over: the upstream is dropped with the pump, and the call settles for
    /// what was delivered.
    fn drop(&mut self) {
        if self.hold.as_ref().is_some_and(Hold::cut_by_shutdown) {
            self.end("the gateway shut down");
        } else {
            self.end("client disconnected");
        }
        // Gone before the end arrived: it is still read, in the background.
        if let Some(rest) = self.rest.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(drain_arriving(rest));
        }
    }
}

/// A 2xx answer to a streamed call that is a JSON document, not the event
/// stream asked for.
fn answered_without_events(response: &upstream::Response, framing: Framing) -> bool {
    if !matches!(framing, Framing::Sse | Framing::AwsEventstream) {
        return false;
    }
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether a body starts the way an event stream does.
fn looks_like_events(body: &[u8]) -> bool {
    let start = body.trim_ascii_start();
    [b"data:".as_slice(), b"event:", b"id:", b":"]
        .iter()
        .any(|p| start.starts_with(p))
}

fn frame(chunk: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(chunk.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(chunk);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[derive(Deserialize)]
struct ChunkText<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChoiceText<'a>>,
}

#[derive(Deserialize)]
struct ChoiceText<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaText<'a>>,
    /// Legacy completions stream text here.
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaText<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<std::borrow::Cow<'a, str>>,
}

/// Generated text kept for counting; beyond this only its length is kept.
const MAX_KEPT_TEXT: usize = 1024 * 1024;

/// Append the generated text of one `chat.completion.chunk`.
fn collect_generated(chunk: &[u8], text: &mut String, beyond: &mut usize) {
    let Ok(c) = serde_json::from_slice::<ChunkText<'_>>(chunk) else {
        return;
    };
    for choice in &c.choices {
        let delta = choice.delta.as_ref();
        let pieces = [
            delta.and_then(|d| d.content.as_ref()),
            delta.and_then(|d| d.reasoning_content.as_ref()),
            choice.text.as_ref(),
        ];
        for piece in pieces.into_iter().flatten() {
            if text.len() + piece.len() <= MAX_KEPT_TEXT {
                text.push_str(piece);
            } else {
                *beyond += piece.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_text_is_collected() {
        let mut text = String::new();
        let mut beyond = 0;
        collect_generated(
            br#"{"choices":[{"index":0,"delta":{"content":"Hello","reasoning_content":"ab"}}]}"#,
            &mut text,
            &mut beyond,
        );
        collect_generated(br#"{"choices":[]}"#, &mut text, &mut beyond);
        collect_generated(b"not json", &mut text, &mut beyond);
        collect_generated(
            "{\"choices\":[{\"delta\":{\"content\":\" caf\\u00e9\"}}]}".as_bytes(),
            &mut text,
            &mut beyond,
        );
        assert_eq!(text, "Helloab café");
        assert_eq!(beyond, 0);
    }
}

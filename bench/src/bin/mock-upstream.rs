//! A fast mock upstream for benchmarks. Answers, after a fixed latency and
//! with usage:
//! - OpenAI chat completions (`POST …/chat/completions`), plain and streamed;
//! - Anthropic Messages (`POST …/v1/messages`), plain and streamed.
//!
//! ```text
//! mock-upstream [--port 9100] [--h2c-port 0] [--latency-ms 0] [--chunks 20] [--chunk-interval-ms 0]
//! ```
//!
//! `--port` speaks HTTP/1.1. `--h2c-port`, when given, speaks HTTP/2 with
//! prior knowledge (h2c), with no limit of its own on the streams of one
//! connection (Transit puts at most 100 on each).
//!
//! A request can override the stream shape through its model name:
//! `bench-i10-n200` streams 200 chunks 10 ms apart (the harness uses this to
//! serve fast, slow and very slow streams from one process, whoever relays
//! the call).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use transit_bench::arg;

#[derive(Clone, Copy)]
struct Settings {
    latency: Duration,
    chunks: usize,
    interval: Duration,
}

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
const CHUNK: &str = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}"#;

const MESSAGE: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-bench","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":9}}"#;
const MESSAGE_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-bench\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
const MESSAGE_DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"token \"}}\n\n";

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The value of a top-level string field, found without parsing the body
/// (tolerating the space some clients put after the colon).
fn string_field<'a>(body: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let key = format!("\"{name}\"");
    let at = body.windows(key.len()).position(|w| w == key.as_bytes())?;
    let rest = &body[at + key.len()..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

fn streams(body: &[u8]) -> bool {
    let key = b"\"stream\"";
    body.windows(key.len())
        .position(|w| w == key)
        .and_then(|at| {
            let rest = body[at + key.len()..]
                .trim_ascii_start()
                .strip_prefix(b":")?;
            Some(rest.trim_ascii_start().starts_with(b"true"))
        })
        .unwrap_or(false)
}

/// `bench-i10-n200`: 200 chunks, 10 ms apart.
fn shape_from_model(model: &[u8], mut s: Settings) -> Settings {
    let Ok(model) = std::str::from_utf8(model) else {
        return s;
    };
    for part in model.split('-') {
        if let Some(ms) = part.strip_prefix('i').and_then(|v| v.parse().ok()) {
            s.interval = Duration::from_millis(ms);
        } else if let Some(n) = part.strip_prefix('n').and_then(|v| v.parse().ok()) {
            s.chunks = n;
        }
    }
    s
}

fn respond(body: Body, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

async fn handle(req: Request<Incoming>, s: Settings) -> Result<Response<Body>, Infallible> {
    let anthropic = req.uri().path().ends_with("/messages");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !s.latency.is_zero() {
        tokio::time::sleep(s.latency).await;
    }
    let s = string_field(&body, "model").map_or(s, |m| shape_from_model(m, s));
    if !streams(&body) {
        let answer = if anthropic { MESSAGE } else { COMPLETION };
        return Ok(respond(
            Full::new(Bytes::from_static(answer.as_bytes())).boxed(),
            "application/json",
        ));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        if anthropic {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(
                    MESSAGE_START.as_bytes(),
                ))))
                .await;
        }
        for _ in 0..s.chunks {
            if !s.interval.is_zero() {
                tokio::time::sleep(s.interval).await;
            }
            let frame = if anthropic {
                Bytes::from_static(MESSAGE_DELTA.as_bytes())
            } else {
                Bytes::from(format!("{CHUNK}\n\n"))
            };
            if tx.send(Ok(Frame::data(frame))).await.is_err() {
                return;
            }
        }
        let tail = if anthropic {
            format!(
                "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\nevent: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
                s.chunks
            )
        } else {
            format!(
                "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":{},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
                s.chunks,
                s.chunks + 12
            )
        };
        let _ = tx.send(Ok(Frame::data(Bytes::from(tail)))).await;
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(respond(
        BodyExt::boxed(StreamBody::new(stream)),
        "text/event-stream",
    ))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port = arg(&args, "--port", 9100) as u16;
    let settings = Settings {
        latency: Duration::from_millis(arg(&args, "--latency-ms", 0)),
        chunks: arg(&args, "--chunks", 20) as usize,
        interval: Duration::from_millis(arg(&args, "--chunk-interval-ms", 0)),
    };
    let h2c_port = arg(&args, "--h2c-port", 0) as u16;
    if h2c_port != 0 {
        let listener = listen(h2c_port)?;
        eprintln!("mock upstream (h2c) on 127.0.0.1:{h2c_port}");
        tokio::spawn(serve_h2c(listener, settings));
    }
    let listener = listen(port)?;
    eprintln!("mock upstream on 127.0.0.1:{port}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            // Out of file descriptors under a connection storm: wait, retry.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, settings));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A listener with a deep accept queue: the memory scenario opens thousands
/// of streams within a second, each a new upstream connection over HTTP/1.1
/// (the kernel caps the queue at net.core.somaxconn).
fn listen(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(65_535)
}

async fn serve_h2c(listener: tokio::net::TcpListener, settings: Settings) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, settings));
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(None)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

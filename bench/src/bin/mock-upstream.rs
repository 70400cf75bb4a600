//! A fast mock upstream for benchmarks: answers OpenAI chat completions,
//! plain and streamed, after a fixed latency, with usage.
//!
//! ```text
//! mock-upstream [--port 9100] [--latency-ms 0] [--chunks 20] [--chunk-interval-ms 0]
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Clone, Copy)]
struct Settings {
    latency: Duration,
    chunks: usize,
    interval: Duration,
}

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
const CHUNK: &str = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}"#;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(req: Request<Incoming>, s: Settings) -> Result<Response<Body>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !s.latency.is_zero() {
        tokio::time::sleep(s.latency).await;
    }
    let streamed = body.windows(13).any(|w| w == b"\"stream\":true");
    if !streamed {
        let mut r = Response::new(Full::new(Bytes::from_static(COMPLETION.as_bytes())).boxed());
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        for _ in 0..s.chunks {
            if !s.interval.is_zero() {
                tokio::time::sleep(s.interval).await;
            }
            let frame = Frame::data(Bytes::from(format!("{CHUNK}\n\n")));
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
        }
        let tail = format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":{},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
            s.chunks,
            s.chunks + 12
        );
        let _ = tx.send(Ok(Frame::data(Bytes::from(tail)))).await;
    });
    let mut rx = rx;
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    Ok(r)
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    eprintln!("mock upstream on 127.0.0.1:{port}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, settings));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

//! A bare reverse proxy on Transit's own stack (tokio's shared runtime,
//! hyper's HTTP/1.1 server and pooled client): every request is passed to
//! the upstream as it is and the answer streamed back, chunk by chunk.
//!
//! ```text
//! bare-proxy [--port 9105] [--upstream-port 9100]
//! ```
//!
//! It does nothing else, so what it costs is the floor of any gateway built
//! on these crates, and what Transit costs beyond it is Transit's own work
//! (authentication, limits, billing, the adapter), where nginx's figures
//! also hold its different design (an event loop per process, no task
//! hand-overs).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use transit_bench::arg;

type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: u16,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri: Result<Uri, _> = format!("http://127.0.0.1:{upstream}{path}").parse();
    let Ok(uri) = uri else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    *req.uri_mut() = uri;
    Ok(match client.request(req).await {
        Ok(answer) => answer.map(|body| body.boxed()),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    })
}

fn status(code: StatusCode) -> Response<Body> {
    let mut answer = Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *answer.status_mut() = code;
    answer
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port = arg(&args, "--port", 9105) as u16;
    let upstream = arg(&args, "--upstream-port", 9100) as u16;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(connector);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("bare proxy on 127.0.0.1:{port} to 127.0.0.1:{upstream}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), upstream, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

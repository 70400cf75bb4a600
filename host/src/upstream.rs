//! The HTTP client for upstream calls.
//!
//! Plain `http://` upstreams (a model server on the same host or network:
//! vLLM, Ollama, an internal gateway) are called over pooled HTTP/1.1
//! connections that the calling task drives itself. A call then costs no
//! hand-off to a connection task and back: the request is written, and the
//! answer read, by the task that relays it. `https://` upstreams (and every
//! upstream when an `HTTP_PROXY`/`ALL_PROXY` is set in the environment) go
//! through reqwest, for TLS, HTTP/2 and proxies; so do the calls of a
//! channel that speaks HTTP/2 from the first byte (h2c), over reqwest
//! clients of their own.
//!
//! Over HTTP/2 a connection carries many calls at once, but a server takes
//! at most its `SETTINGS_MAX_CONCURRENT_STREAMS` on one (100 to 256 at most
//! providers), and a reqwest client keeps one connection per origin: calls
//! past the server's limit would wait, behind streams that may last
//! minutes. So no reqwest client carries more than
//! `upstream.http2_max_streams_per_connection` calls at once; more calls
//! are spread over further clients, each with its own connections
//! ([`Shards`]).
//!
//! A pooled connection is reused only after its answer was read to the end.
//! An answer abandoned half-way (a client that went away mid-stream) closes
//! its connection. A request that an idle connection could not take (its
//! server closed it meanwhile) is sent again on a new connection; one that
//! was written is never sent twice.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use http::header::{HOST, HeaderMap, HeaderValue, USER_AGENT};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Idle connections kept per upstream host.
const MAX_IDLE_PER_HOST: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_LIFETIME: Duration = Duration::from_secs(90);

/// An upstream request, checked.
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Speak HTTP/2 from the first byte (h2c to a plain-HTTP server).
    pub http2_prior_knowledge: bool,
}

/// How long a call may take.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// The whole call, the answer's body included, within this time.
    Total(Duration),
    /// No bound on the whole; only on the silence between reads (a stream).
    Idle,
}

/// Why a call failed. Its text never names the URL (which may carry a key).
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    cause: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    Timeout,
    Other,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            Kind::Connect => "could not connect",
            Kind::Timeout => "timed out",
            Kind::Other => "failed",
        };
        write!(f, "the upstream call {what}: {}", self.cause)
    }
}

impl std::error::Error for Error {}

impl Error {
    fn new(kind: Kind, cause: impl std::fmt::Display) -> Self {
        Self {
            kind,
            cause: cause.to_string(),
        }
    }

    fn from_hyper(e: &hyper::Error) -> Self {
        let mut cause = e.to_string();
        if let Some(source) = std::error::Error::source(e) {
            cause = format!("{cause}: {source}");
        }
        Self::new(Kind::Other, cause)
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            Kind::Timeout
        } else if e.is_connect() {
            Kind::Connect
        } else {
            Kind::Other
        };
        // reqwest's own message names the URL: only the underlying cause.
        let cause = std::error::Error::source(e)
            .map(ToString::to_string)
            .unwrap_or_default();
        Self { kind, cause }
    }

    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    pub fn is_connect(&self) -> bool {
        self.kind == Kind::Connect
    }

    /// What went wrong underneath, for the log.
    pub fn cause(&self) -> &str {
        &self.cause
    }
}

/// An upstream's answer: its head, and its body to read.
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body, piece by piece as it arrives.
    pub fn bytes_stream(self) -> Body {
        self.body
    }
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: Arc<Shards>,
    /// The same, speaking HTTP/2 with prior knowledge.
    h2c: Arc<Shards>,
    pool: Arc<Pool>,
    /// Whether plain-HTTP upstreams use the pooled connections (no proxy
    /// is configured for them).
    direct: bool,
    connect_timeout: Duration,
    idle_timeout: Duration,
    user_agent: HeaderValue,
}

impl Client {
    /// `make` gives the settings of the reqwest clients that serve what the
    /// pooled connections do not (the timeouts are the same as theirs);
    /// each carries at most `streams_per_client` calls at once.
    pub fn new(
        make: impl Fn() -> reqwest::ClientBuilder + Send + Sync + Clone + 'static,
        streams_per_client: usize,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> reqwest::Result<Self> {
        let proxied = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
        let h2c = make.clone();
        Ok(Self {
            http: Arc::new(Shards::new(
                Box::new(move || make().build()),
                streams_per_client,
            )?),
            h2c: Arc::new(Shards::new(
                Box::new(move || h2c().http2_prior_knowledge().build()),
                streams_per_client,
            )?),
            pool: Arc::default(),
            direct: !proxied,
            connect_timeout,
            idle_timeout,
            user_agent: HeaderValue::from_static(concat!("transit/", env!("CARGO_PKG_VERSION"))),
        })
    }

    /// Send a request; the answer's head is read, its body is the caller's.
    pub async fn send(&self, request: Request, limit: Limit) -> Result<Response, Error> {
        if request.http2_prior_knowledge {
            return Self::send_reqwest(&self.h2c, request, limit).await;
        }
        let target = if self.direct {
            Target::parse(&request.url)
        } else {
            None
        };
        match target {
            Some(target) => self.send_direct(target, request, limit).await,
            None => Self::send_reqwest(&self.http, request, limit).await,
        }
    }

    async fn send_reqwest(
        shards: &Shards,
        request: Request,
        limit: Limit,
    ) -> Result<Response, Error> {
        // Held until the answer is read or dropped: its stream is open
        // until then.
        let seat = shards.seat()?;
        let mut builder = seat
            .client()
            .request(request.method, &request.url)
            .headers(request.headers)
            .body(request.body);
        if let Limit::Total(total) = limit {
            builder = builder.timeout(total);
        }
        let mut response = builder.send().await.map_err(|e| Error::from_reqwest(&e))?;
        let status = response.status();
        // Taken, not copied: the body stream does not need them.
        let headers = std::mem::take(response.headers_mut());
        let stream = response.bytes_stream().map(move |piece| {
            let _seat = &seat;
            piece.map_err(|e| Error::from_reqwest(&e))
        });
        Ok(Response {
            status,
            headers,
            body: Body(Inner::Reqwest(Box::pin(stream))),
        })
    }

    async fn send_direct(
        &self,
        target: Target,
        request: Request,
        limit: Limit,
    ) -> Result<Response, Error> {
        let deadline = match limit {
            Limit::Total(total) => Some(Instant::now() + total),
            Limit::Idle => None,
        };
        // Waiting for the answer's head is silence too.
        let head_by = Instant::now() + self.idle_timeout;
        let head_by = deadline.map_or(head_by, |d| d.min(head_by));
        let mut http_request = http::Request::new(Full::new(request.body));
        *http_request.method_mut() = request.method;
        *http_request.uri_mut() = target.path.clone();
        *http_request.headers_mut() = request.headers;
        let headers = http_request.headers_mut();
        if !headers.contains_key(HOST) {
            headers.insert(HOST, target.host_header.clone());
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, self.user_agent.clone());
        }
        let (head, conn) = tokio::time::timeout_at(head_by, self.exchange(&target, http_request))
            .await
            .map_err(|_| Error::new(Kind::Timeout, "no answer in time"))??;
        let (parts, incoming) = head.into_parts();
        let timer = match deadline {
            Some(d) => Timer::Deadline(Box::pin(tokio::time::sleep_until(d))),
            None => Timer::Idle(
                Box::pin(tokio::time::sleep(self.idle_timeout)),
                self.idle_timeout,
            ),
        };
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: Body(Inner::Direct(Box::new(DirectBody {
                incoming,
                conn: Some(conn),
                pool: self.pool.clone(),
                key: target.key,
                timer,
                done: false,
            }))),
        })
    }

    /// Write the request on a pooled or new connection and read the
    /// answer's head.
    async fn exchange(
        &self,
        target: &Target,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, Conn), Error> {
        let mut request = request;
        while let Some(mut conn) = self.pool.take(&target.key) {
            match conn.send(request).await {
                Ok(head) => return Ok((head, conn)),
                Err(mut e) => {
                    let error = Error::from_hyper(e.error());
                    match e.take_message() {
                        // Not written: the connection was closed while idle.
                        Some(unsent) => request = unsent,
                        None => return Err(error),
                    }
                }
            }
        }
        let mut conn = self.connect(target).await?;
        match conn.send(request).await {
            Ok(head) => Ok((head, conn)),
            Err(e) => Err(Error::from_hyper(e.error())),
        }
    }

    async fn connect(&self, target: &Target) -> Result<Conn, Error> {
        let (host, port) = (&target.key.0, target.key.1);
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| Error::new(Kind::Timeout, "connecting timed out"))?
        .map_err(|e| Error::new(Kind::Connect, e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::new(Kind::Connect, e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::new(Kind::Connect, e))?;
        Ok(Conn { sender, connection })
    }
}

/// Where a plain-HTTP request goes.
struct Target {
    key: Key,
    host_header: HeaderValue,
    path: Uri,
}

/// An upstream host: its name and port.
type Key = (String, u16);

impl Target {
    /// A plain `http://` URL's parts; `None` for any other URL.
    fn parse(url: &str) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let host = authority.host();
        // `[::1]` connects as `::1`.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let host_header = HeaderValue::from_str(authority.as_str()).ok()?;
        let path = match uri.path_and_query() {
            Some(pq) => Uri::try_from(pq.as_str()).ok()?,
            None => Uri::from_static("/"),
        };
        Some(Self {
            key: (bare.to_owned(), port),
            host_header,
            path,
        })
    }
}

/// One HTTP/1.1 connection, driven by whoever holds it.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    connection: http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
}

impl Conn {
    /// Write a request and read the answer's head, driving the connection.
    async fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<
        http::Response<Incoming>,
        hyper::client::conn::TrySendError<http::Request<Full<Bytes>>>,
    > {
        let mut answer = pin!(self.sender.try_send_request(request));
        let connection = &mut self.connection;
        let mut closed = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = answer.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            // A finished connection has answered every request it took
            // (with an error if it had to give up).
            if !closed && connection.poll_without_shutdown(cx).is_ready() {
                closed = true;
            }
            answer.as_mut().poll(cx)
        })
        .await
    }

    /// Whether the connection can take another request now. It is polled
    /// without a waker: a connection its server closed while it sat idle
    /// finishes here.
    fn reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.connection.poll_without_shutdown(&mut cx).is_pending()
            && self.sender.is_ready()
            && !self.sender.is_closed()
    }
}

/// Idle connections by host.
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<Key, Vec<(Conn, Instant)>>>,
}

impl Pool {
    /// The most recently used idle connection to `key` that is still open.
    fn take(&self, key: &Key) -> Option<Conn> {
        loop {
            let (mut conn, since) = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.get_mut(key)?.pop()?
            };
            if since.elapsed() < IDLE_LIFETIME && conn.reusable() {
                return Some(conn);
            }
        }
    }

    fn put(&self, key: Key, mut conn: Conn) {
        if !conn.reusable() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.entry(key).or_default();
        // The oldest are the likeliest to have been closed by their server.
        conns.retain(|(_, since)| since.elapsed() < IDLE_LIFETIME);
        if conns.len() >= MAX_IDLE_PER_HOST {
            conns.remove(0);
        }
        conns.push((conn, Instant::now()));
    }
}

/// reqwest clients that each carry at most `per_client` calls at once: a
/// call takes a seat on the first client with one free, and a new client
/// is made when none has. A client keeps its own connections (one per
/// origin over HTTP/2), so calls past the limit go on another connection
/// rather than wait for a stream on a full one. Clients are kept once
/// made; their idle connections close on their own.
pub struct Shards {
    make: Box<dyn Fn() -> reqwest::Result<reqwest::Client> + Send + Sync>,
    per_client: usize,
    clients: Mutex<Vec<Arc<Shard>>>,
}

struct Shard {
    client: reqwest::Client,
    calls: AtomicUsize,
}

/// A call's place on a client, given back when dropped.
struct Seat(Arc<Shard>);

impl Seat {
    fn client(&self) -> &reqwest::Client {
        &self.0.client
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shards {
    /// The first client is made at once, so settings it refuses show at
    /// start.
    fn new(
        make: Box<dyn Fn() -> reqwest::Result<reqwest::Client> + Send + Sync>,
        per_client: usize,
    ) -> reqwest::Result<Self> {
        let first = Arc::new(Shard {
            client: make()?,
            calls: AtomicUsize::new(0),
        });
        Ok(Self {
            make,
            per_client: per_client.max(1),
            clients: Mutex::new(vec![first]),
        })
    }

    fn seat(&self) -> Result<Seat, Error> {
        // Seats are taken under the lock, so no client takes more than its
        // share; they are given back without it.
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(shard) = clients
            .iter()
            .find(|s| s.calls.load(Ordering::Relaxed) < self.per_client)
        {
            shard.calls.fetch_add(1, Ordering::Relaxed);
            return Ok(Seat(shard.clone()));
        }
        let client = (self.make)().map_err(|e| Error::new(Kind::Other, e))?;
        let shard = Arc::new(Shard {
            client,
            calls: AtomicUsize::new(1),
        });
        clients.push(shard.clone());
        tracing::debug!(
            clients = clients.len(),
            "a further upstream client: the others carry their most calls"
        );
        Ok(Seat(shard))
    }
}

/// An answer's body: a stream of byte pieces.
pub struct Body(Inner);

enum Inner {
    Direct(Box<DirectBody>),
    Reqwest(Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>),
}

impl Stream for Body {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.0 {
            Inner::Direct(body) => body.poll_piece(cx),
            Inner::Reqwest(stream) => stream.as_mut().poll_next(cx),
        }
    }
}

enum Timer {
    /// The call's end: not moved.
    Deadline(Pin<Box<Sleep>>),
    /// Moved on by every piece that arrives.
    Idle(Pin<Box<Sleep>>, Duration),
}

/// A body read from a pooled connection, which it drives while it is read
/// and gives back to the pool once it is read to the end.
struct DirectBody {
    incoming: Incoming,
    /// `None` once the connection finished (closed by the server).
    conn: Option<Conn>,
    pool: Arc<Pool>,
    key: Key,
    timer: Timer,
    done: bool,
}

impl DirectBody {
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(piece) = self.poll_frame(cx) {
            return Poll::Ready(piece);
        }
        let sleep = match &mut self.timer {
            Timer::Deadline(s) | Timer::Idle(s, _) => s,
        };
        if sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            self.conn = None;
            return Poll::Ready(Some(Err(Error::new(
                Kind::Timeout,
                "the answer stalled or took too long",
            ))));
        }
        Poll::Pending
    }

    /// The next piece of data: the body first (it asks the connection for
    /// more), then the connection (which reads it), then the body again.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        let mut driven = false;
        loop {
            match self.incoming.frame().poll_unpin(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers carry nothing the relay reads.
                    if let Ok(data) = frame.into_data() {
                        if let Timer::Idle(sleep, idle) = &mut self.timer {
                            sleep.as_mut().reset(Instant::now() + *idle);
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    self.conn = None;
                    return Poll::Ready(Some(Err(Error::from_hyper(&e))));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    if let Some(conn) = self.conn.take() {
                        self.pool.put(self.key.clone(), conn);
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            if driven {
                return Poll::Pending;
            }
            driven = true;
            if let Some(conn) = &mut self.conn
                && conn.connection.poll_without_shutdown(cx).is_ready()
            {
                self.conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// What the test server does with each request it reads.
    #[derive(Clone, Copy)]
    enum Answer {
        /// A JSON answer; the connection stays open.
        KeepAlive,
        /// A chunked answer; the connection stays open.
        Chunked,
        /// A JSON answer with `Connection: close`.
        Close,
        /// A JSON answer, then the server closes the connection.
        ThenHangUp,
        /// A chunked answer: one piece, then silence.
        OnePieceThenStall,
        /// Nothing at all.
        Silence,
    }

    struct Server {
        url: String,
        accepted: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    async fn server(answer: Answer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // One request: its head, then its body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut piece = [0u8; 4096];
                            match socket.read(&mut piece).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&piece[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        while buf.len() < head_end + length {
                            let mut piece = [0u8; 4096];
                            let n = socket.read(&mut piece).await.unwrap();
                            buf.extend_from_slice(&piece[..n]);
                        }
                        let body =
                            String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
                        buf.drain(..head_end + length);
                        seen.lock().unwrap().push(format!("{head}{body}"));
                        let json = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n";
                        let out = match answer {
                            Answer::KeepAlive | Answer::ThenHangUp => format!("{json}\r\n{{\"ok\":true}}"),
                            Answer::Chunked => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\n{\"ok\":\r\n5\r\ntrue}\r\n0\r\n\r\n".to_owned(),
                            Answer::Close => format!("{json}connection: close\r\n\r\n{{\"ok\":true}}"),
                            Answer::OnePieceThenStall => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n".to_owned(),
                            Answer::Silence => String::new(),
                        };
                        socket.write_all(out.as_bytes()).await.unwrap();
                        match answer {
                            Answer::KeepAlive | Answer::Chunked => {}
                            Answer::Close | Answer::ThenHangUp => return,
                            Answer::OnePieceThenStall | Answer::Silence => {
                                tokio::time::sleep(Duration::from_secs(60)).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Server {
            url,
            accepted,
            heads,
        }
    }

    fn client() -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::new(
            reqwest::Client::builder,
            100,
            Duration::from_secs(2),
            Duration::from_millis(300),
        )
        .unwrap()
    }

    fn post(url: &str) -> Request {
        Request {
            method: Method::POST,
            url: format!("{url}/v1/chat/completions?api-version=1"),
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{\"model\":\"m\"}"),
            http2_prior_knowledge: false,
        }
    }

    async fn read_all(response: Response) -> Result<Vec<u8>, Error> {
        let mut body = response.bytes_stream();
        let mut all = Vec::new();
        while let Some(piece) = body.next().await {
            all.extend_from_slice(&piece?);
        }
        Ok(all)
    }

    const TOTAL: Limit = Limit::Total(Duration::from_secs(5));

    /// Send `n` requests one after the other, each answered in full.
    async fn send_ok(client: &Client, url: &str, limit: Limit, n: usize) {
        for _ in 0..n {
            let response = client.send(post(url), limit).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(read_all(response).await.unwrap(), b"{\"ok\":true}");
        }
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_serves_the_next_request() {
        let chunked = server(Answer::Chunked).await;
        send_ok(&client(), &chunked.url, Limit::Idle, 3).await;
        assert_eq!(chunked.accepted.load(Ordering::SeqCst), 1);
        let server = server(Answer::KeepAlive).await;
        send_ok(&client(), &server.url, TOTAL, 3).await;
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        let heads = server.heads.lock().unwrap().clone();
        let head = heads[0].to_ascii_lowercase();
        assert!(
            head.starts_with("post /v1/chat/completions?api-version=1 http/1.1\r\n"),
            "{head}"
        );
        let authority = server.url.trim_start_matches("http://");
        assert!(head.contains(&format!("host: {authority}\r\n")), "{head}");
        assert!(head.contains("user-agent: transit/"), "{head}");
        assert!(head.contains("content-length: 13\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n{\"model\":\"m\"}"), "{head}");
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_not_reused() {
        for answer in [Answer::Close, Answer::ThenHangUp] {
            let server = server(answer).await;
            let client = client();
            for _ in 0..3 {
                send_ok(&client, &server.url, TOTAL, 1).await;
                // The hang-up reaches the idle connection.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
        }
    }

    #[tokio::test]
    async fn an_answer_abandoned_half_way_closes_its_connection() {
        let server = server(Answer::OnePieceThenStall).await;
        let client = client();
        for _ in 0..2 {
            let response = client.send(post(&server.url), Limit::Idle).await.unwrap();
            let mut body = response.bytes_stream();
            assert_eq!(&body.next().await.unwrap().unwrap()[..], b"hello");
            drop(body);
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_silent_stream_times_out_after_its_idle_time() {
        let server = server(Answer::OnePieceThenStall).await;
        let response = client().send(post(&server.url), Limit::Idle).await.unwrap();
        let started = Instant::now();
        let mut body = response.bytes_stream();
        assert_eq!(&body.next().await.unwrap().unwrap()[..], b"hello");
        let e = body.next().await.unwrap().unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn a_call_past_its_total_time_times_out() {
        let server = server(Answer::Silence).await;
        let limit = Limit::Total(Duration::from_millis(100));
        let e = client().send(post(&server.url), limit).await.err().unwrap();
        assert!(e.is_timeout(), "{e:?}");
        // Waiting for the head is bounded by the idle time too.
        let e = client()
            .send(post(&server.url), Limit::Idle)
            .await
            .err()
            .unwrap();
        assert!(e.is_timeout(), "{e:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let e = client().send(post(&url), TOTAL).await.err().unwrap();
        assert!(e.is_connect(), "{e:?}");
        assert!(!e.cause().contains("127.0.0.1"), "{e:?}");
    }

    #[test]
    fn only_plain_http_urls_go_direct() {
        let t = Target::parse("http://[::1]:8080/v1/x?y=1").unwrap();
        assert_eq!(t.key, ("::1".to_owned(), 8080));
        assert_eq!(t.host_header, "[::1]:8080");
        assert_eq!(t.path, "/v1/x?y=1");
        let t = Target::parse("http://example.com").unwrap();
        assert_eq!(t.key, ("example.com".to_owned(), 80));
        assert_eq!(t.path, "/");
        assert!(Target::parse("https://example.com/v1").is_none());
        assert!(Target::parse("http://user:pw@example.com/v1").is_none());
        assert!(Target::parse("not a url").is_none());
    }
}

//! The accept loop: HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on
//! one listener, with graceful shutdown.
//!
//! Transit runs its own loop rather than `axum::serve` for the settings a
//! gateway needs on its client connections:
//! - `TCP_NODELAY`: without it a stream's second small write waits for the
//!   client's delayed ACK (about 40 ms), so every chunk after the first
//!   would lag;
//! - a bounded read buffer ([`READ_BUFFER_BYTES`]): by default hyper grows
//!   a connection's buffer to take a request body in as few reads as it
//!   can, up to about 400 KB, and keeps it at that size for the
//!   connection's life, which for a stream is minutes;
//! - a header read timeout ([`HEADER_READ_TIMEOUT`]): a client that opens a
//!   connection and sends its request head slowly, or never, is dropped,
//!   and so is a keep-alive connection idle for as long.
//!
//! Connections are served on the main runtime, whose threads take work
//! from each other, or, with `workers` set, by [`Workers`]: threads each
//! running a single-threaded tokio runtime, where a connection lives on
//! one of them for good. A request then runs from its first byte to its
//! last on one thread: nothing hands it to another, and no idle thread is
//! woken to look for work it could take, which on the shared runtime costs
//! about a third more CPU per request at low concurrency. The price: a
//! request that keeps its worker busy (an adapter translating a prompt of
//! megabytes) holds up the worker's other connections, where on the shared
//! runtime another thread would serve them (bench/README.md).

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What a client connection's read buffer grows to at most, give or take:
/// hyper reads into all the room an allocation has, so the buffer may
/// reach twice this. A request head must fit in it (a larger one gets
/// 431), and a long body is read through it in pieces instead of growing
/// it to the body's size.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How long a client has to send a request head, from the moment the
/// connection is ready for one (opened, or done with its last request).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve `router` on `listener` until `shutdown` resolves; then accept no
/// more connections, let each one finish the request it is serving (idle
/// keep-alive connections close at once), and return when all are closed.
/// With `workers`, each connection is served on the worker serving the
/// fewest; without, on the current runtime. Requests see the client's
/// address as [`ConnectInfo<SocketAddr>`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
    workers: Option<&Workers>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(READ_BUFFER_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after_accept_error(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (router, builder, closing) = (router.clone(), builder.clone(), closing.clone());
        let Some(workers) = workers else {
            connections.spawn(serve_connection(tcp, remote, router, builder, closing));
            continue;
        };
        // Taken off this runtime's reactor: the worker registers it with its own.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand a connection to a worker");
                continue;
            }
        };
        let worker = workers.pick();
        let load = Load::count(&worker.connections);
        worker.runtime.spawn(connections.track_future(async move {
            let _load = load;
            match TcpStream::from_std(tcp) {
                Ok(tcp) => serve_connection(tcp, remote, router, builder, closing).await,
                Err(e) => {
                    tracing::debug!(error = %e, client = %remote, "cannot serve a connection");
                }
            }
        }));
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
}

/// One client connection.
async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    closing: CancellationToken,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
    }
    let service = TowerToHyperService::new(router.map_request(
        move |request: axum::http::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            request
        },
    ));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = closing.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::trace!(error = %e, client = %remote, "connection ended with an error");
    }
}

/// One connection counted against its worker while it lives.
struct Load(Arc<AtomicUsize>);

impl Load {
    fn count(connections: &Arc<AtomicUsize>) -> Self {
        connections.fetch_add(1, Ordering::Relaxed);
        Self(connections.clone())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// The worker thread this code runs on, if it runs on one. Something
/// bound to a worker's reactor (a connection opened there) is best used
/// on that worker again: elsewhere, each of its wake-ups crosses threads.
pub fn current_worker() -> Option<std::thread::ThreadId> {
    ON_WORKER
        .with(Cell::get)
        .then(|| std::thread::current().id())
}

/// The threads that serve client connections, each with a
/// single-threaded tokio runtime. Cheap to clone; the threads stop when
/// [`Workers::stop`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Workers(Arc<WorkerSet>);

struct WorkerSet {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

struct Worker {
    runtime: tokio::runtime::Handle,
    connections: Arc<AtomicUsize>,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Workers {
    /// Start `count` workers (at least one).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let count = count.max(1);
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("transit-worker-{i}"))
                .spawn(move || {
                    ON_WORKER.with(|w| w.set(true));
                    // The runtime runs what is spawned onto it while this
                    // waits; dropping it ends what is left.
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            workers.push(Worker {
                runtime: handle,
                connections: Arc::default(),
                stop: std::sync::Mutex::new(Some(stop)),
                thread: std::sync::Mutex::new(Some(thread)),
            });
        }
        Ok(Self(Arc::new(WorkerSet {
            workers,
            next: AtomicUsize::new(0),
        })))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.workers.len()
    }

    /// Whether there are none (never: there is at least one).
    pub fn is_empty(&self) -> bool {
        self.0.workers.is_empty()
    }

    /// The worker serving the fewest connections; among equals, the next
    /// in turn.
    fn pick(&self) -> &Worker {
        let set = &self.0;
        let first = set.next.fetch_add(1, Ordering::Relaxed);
        let n = set.workers.len();
        (0..n)
            .map(|i| &set.workers[(first + i) % n])
            .min_by_key(|w| w.connections.load(Ordering::Relaxed))
            .unwrap_or(&set.workers[first % n])
    }

    /// Stop the workers and wait for their threads to end. Call it last:
    /// database and Redis connections opened while serving a request are
    /// driven by the worker that opened them, and stop working with it.
    pub async fn stop(&self) {
        self.0.signal_stop();
        let threads: Vec<JoinHandle<()>> = self
            .0
            .workers
            .iter()
            .filter_map(|w| w.thread.lock().ok().and_then(|mut t| t.take()))
            .collect();
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a worker thread panicked");
                }
            }
        });
        if joined.await.is_err() {
            tracing::error!("waiting for the worker threads failed");
        }
    }
}

#[cfg(test)]
impl Workers {
    /// Worker `i`'s runtime, to run test code on it.
    pub(crate) fn runtime(&self, i: usize) -> tokio::runtime::Handle {
        self.0.workers[i].runtime.clone()
    }
}

impl WorkerSet {
    fn signal_stop(&self) {
        for worker in &self.workers {
            if let Some(stop) = worker.stop.lock().ok().and_then(|mut s| s.take()) {
                let _ = stop.send(());
            }
        }
    }
}

impl Drop for WorkerSet {
    /// The threads end on their own; they are not waited for here.
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// After a failed accept: running out of file descriptors (or memory) is
/// not fixed by trying again at once, so wait a moment; errors of the one
/// connection (reset before it was accepted) are retried at once.
async fn pause_after_accept_error(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Answers with the name of the thread that served the request.
    fn router() -> Router {
        Router::new().route(
            "/",
            get(|| async { std::thread::current().name().unwrap_or("?").to_owned() }),
        )
    }

    /// One keep-alive connection; `get` returns what the server answered.
    struct Connection(TcpStream);

    impl Connection {
        async fn open(addr: SocketAddr) -> Self {
            Self(TcpStream::connect(addr).await.unwrap())
        }

        async fn get(&mut self) -> String {
            self.0
                .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let n = self.0.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection closed");
                answer.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() == length {
                        return body.to_owned();
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn connections_are_spread_over_the_workers_and_stay_on_theirs() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn({
            let workers = workers.clone();
            async move {
                serve(
                    listener,
                    router(),
                    async { drop(stopped.await) },
                    Some(&workers),
                )
                .await;
            }
        });
        let mut connections = Vec::new();
        for _ in 0..4 {
            connections.push(Connection::open(addr).await);
        }
        let mut homes = Vec::new();
        for connection in &mut connections {
            let home = connection.get().await;
            assert!(home.starts_with("transit-worker-"), "{home}");
            homes.push(home);
        }
        // The fewest-served worker takes the next connection: two each.
        let distinct: HashSet<&String> = homes.iter().collect();
        assert_eq!(distinct.len(), 2, "{homes:?}");
        for home in distinct {
            assert_eq!(homes.iter().filter(|h| *h == home).count(), 2, "{homes:?}");
        }
        // Every request of a connection is served where its first was.
        for _ in 0..3 {
            for (connection, home) in connections.iter_mut().zip(&homes) {
                assert_eq!(&connection.get().await, home);
            }
        }
        // A connection that closes makes room: the next one goes there.
        let freed = homes.remove(0);
        drop(connections.remove(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut newcomer = Connection::open(addr).await;
        assert_eq!(newcomer.get().await, freed);

        // Shutdown: serve returns once the connections are closed (idle
        // keep-alive connections at once), and the threads end.
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), workers.stop())
            .await
            .expect("the worker threads end");
    }

    #[tokio::test]
    async fn code_on_a_worker_knows_it() {
        let workers = Workers::start(0).unwrap();
        assert_eq!(workers.len(), 1);
        assert!(!workers.is_empty());
        assert_eq!(current_worker(), None);
        let on_worker = workers
            .runtime(0)
            .spawn(async { current_worker() })
            .await
            .unwrap();
        assert!(on_worker.is_some());
        assert_ne!(on_worker, Some(std::thread::current().id()));
    }
}

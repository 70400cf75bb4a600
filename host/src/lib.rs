//! Transit: an AI API gateway. See the README for what it does and how to
//! run it; [`build_app`] assembles the whole gateway for a configuration,
//! which is how the binary and the tests start it.
#![deny(unsafe_code)]

pub mod adapters;
pub mod admin;
pub mod auth;
pub mod billing;
pub mod channels;
pub mod config;
pub mod crypto;
pub mod error;
#[cfg(feature = "jemalloc")]
pub mod heap;
pub mod http;
pub mod inbound;
pub mod limits;
pub mod relay;
pub mod server;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod upstream;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::admin::AdminAuth;
pub use crate::config::Config;
use crate::crypto::SecretBox;
use crate::store::Db;

/// Shared state of one gateway instance. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub router: Arc<channels::Router>,
    pub runtime: Arc<adapters::Runtime>,
    pub http: reqwest::Client,
    /// Upstream calls of the relay and of async tasks.
    pub upstream: upstream::Client,
    pub secrets: SecretBox,
    pub admin: AdminAuth,
    pub billing: Arc<billing::Billing>,
    pub limiter: Arc<limits::Limiter>,
    pub tasks: tasks::Tasks,
    /// API keys' rows, cached for the relay's authentication.
    pub tokens: auth::TokenCache,
    /// Vertex AI access tokens, by channel and service-account key.
    pub vertex_tokens: channels::vertex::TokenCache,
    /// Cancelled when a shutdown's grace period is over: requests and
    /// response bodies still running are cut (see [`http::cut_at_shutdown`]).
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A built gateway: its router and state, and the admin token if this start
/// generated one (it is shown once).
pub struct App {
    pub router: axum::Router,
    pub state: AppState,
    pub generated_admin_token: Option<String>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

/// Connect to the database, load adapters and channels, and assemble the
/// HTTP application.
/// Install the process-wide TLS crypto provider (ring). Idempotent: the
/// first call wins, later ones change nothing.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn build_app(config: Config) -> anyhow::Result<App> {
    init_tls();

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let db = Db::connect(&config.database_url()).await?;
    let secrets = SecretBox::load(config.secret_key.as_ref(), &config.data_dir)?;
    let (admin, generated_admin_token) = admin_auth(&config, &db).await?;

    let adapter_config = config.adapters.clone();
    let cache_dir = config.adapter_cache_dir();
    let runtime = Arc::new(adapters::Runtime::new(&adapter_config, Some(&cache_dir)).await?);
    runtime.sync_uploaded(&db).await?;
    let upload_sync = runtime.spawn_upload_sync(
        db.clone(),
        Duration::from_millis(config.relay.channel_refresh_ms.max(100)),
    );
    let adapters_dir = config.adapters_dir();
    std::fs::create_dir_all(&adapters_dir)
        .with_context(|| format!("creating the adapters directory {}", adapters_dir.display()))?;
    runtime.scan_dir(&adapters_dir).await;
    let watcher = runtime
        .watch_dir(adapters_dir.clone())
        .with_context(|| format!("watching {}", adapters_dir.display()))?;

    let router = Arc::new(channels::Router::load(db.clone(), secrets.clone()).await?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let billing =
        billing::Billing::load(db.clone(), config.billing.clone(), shutdown.clone()).await?;
    // Holds left by an instance that stopped are settled as soon as their
    // lease runs out; anything already expired is settled now.
    billing.recover_expired().await?;
    let maintenance = billing.spawn_maintenance();
    let limiter = limits::Limiter::new(
        config.redis_url.as_ref().map(|u| u.expose()),
        config.limits.clone(),
    )
    .await?;
    limiter.refresh_rules(&db).await?;
    let limiter_maintenance = limiter.spawn_maintenance(db.clone());
    let refresher = router.spawn_refresher(Duration::from_millis(
        config.relay.channel_refresh_ms.max(100),
    ));

    let (connect, idle) = (
        Duration::from_secs(config.upstream.connect_timeout_secs),
        Duration::from_secs(config.upstream.stream_idle_timeout_secs),
    );
    let http_client = move || {
        reqwest::Client::builder()
            .connect_timeout(connect)
            .read_timeout(idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(concat!("transit/", env!("CARGO_PKG_VERSION")))
    };
    let http = http_client().build().context("building the HTTP client")?;
    let upstream = upstream::Client::new(
        http_client,
        config.upstream.http2_max_streams_per_connection,
        connect,
        idle,
    )
    .context("building the upstream HTTP client")?;

    let tokens = auth::TokenCache::new(
        db.clone(),
        Duration::from_millis(config.relay.token_cache_ms),
    );
    let state = AppState(Arc::new(Inner {
        tokens,
        billing,
        limiter,
        config,
        db,
        router,
        runtime,
        http,
        upstream,
        secrets,
        admin,
        tasks: tasks::Tasks::default(),
        vertex_tokens: channels::vertex::TokenCache::default(),
        shutdown,
    }));
    let poller = tasks::spawn_poller(state.clone());
    Ok(App {
        router: http::router(state.clone()),
        state,
        generated_admin_token,
        background: vec![
            refresher,
            maintenance,
            limiter_maintenance,
            upload_sync,
            watcher,
            poller,
        ],
    })
}

/// Resolve how admin requests are authenticated. Without a configured token,
/// the first instance to start generates one and stores only its digest.
async fn admin_auth(config: &Config, db: &Db) -> anyhow::Result<(AdminAuth, Option<String>)> {
    if let Some(token) = &config.admin_token {
        return Ok((AdminAuth::Configured(token.clone()), None));
    }
    const KEY: &str = "admin_token_digest";
    if let Some(digest) = db.option(KEY).await? {
        return Ok((AdminAuth::Digest(digest), None));
    }
    let token = format!("transit-admin-{}", crypto::random_string(32));
    let digest = crypto::key_digest(&token);
    if db.set_option_if_absent(KEY, &digest).await? {
        return Ok((AdminAuth::Digest(digest), Some(token)));
    }
    // Another instance won the race; use its token.
    let digest = db
        .option(KEY)
        .await?
        .context("the admin token digest disappeared")?;
    Ok((AdminAuth::Digest(digest), None))
}

/// Serve until Ctrl-C / SIGTERM, then finish in-flight writes.
pub async fn run(config: Config) -> anyhow::Result<()> {
    raise_open_file_limit();
    let listen = config.listen;
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let app = build_app(config).await?;
    if let Some(token) = &app.generated_admin_token {
        // Printed once, on the terminal only: it is not stored anywhere in clear.
        println!(
            "\n  Transit generated an admin token (shown only this once):\n\n    {token}\n\n  Send it as the X-Admin-Token header, or set TRANSIT_ADMIN_TOKEN.\n"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(address = %listen, "transit listening");
    // On the signal: no new connections, and what is in flight gets the
    // grace period to finish; then it is cut, so that usage is written
    // before a supervisor's kill timeout, whatever a stream still had to go.
    let cut = app.state.shutdown.clone();
    let connections_cut = cut.clone();
    server::serve(
        listener,
        app.router.clone(),
        async move {
            shutdown_signal().await;
            tracing::info!(
                grace_secs = grace.as_secs(),
                "shutting down: requests in flight may finish within the grace period"
            );
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                tracing::warn!("shutdown grace period over: cutting what is still in flight");
                cut.cancel();
            });
        },
        connections_cut,
    )
    .await;
    tracing::info!("shutting down: waiting for usage records to be written");
    app.state.billing.close_lines().await;
    app.state.billing.flush().await;
    let unwritten = app.state.billing.retry_dead_letters().await;
    if unwritten > 0 {
        tracing::error!(
            entries = unwritten,
            "ledger entries could not be written before shutdown: the recovery sweep settles their holds (calls drawn on a credit line are forgiven)"
        );
    }
    app.state.db.close().await;
    Ok(())
}

/// Every open stream holds two sockets (the client's and the upstream's),
/// and the usual soft limit of 1 024 open files would refuse connections
/// at a few hundred streams. The soft limit is raised to the hard limit,
/// which only the administrator sets.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(
            from = limit.current,
            to = limit.maximum,
            "raised the open-file limit"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            limit = limit.current,
            "cannot raise the open-file limit (each open stream takes two open files)"
        ),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

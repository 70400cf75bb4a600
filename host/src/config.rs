//! Configuration, in layers: built-in defaults → an optional `transit.toml`
//! (or the file named by `TRANSIT_CONFIG`) → `TRANSIT_*` environment
//! variables, plus the conventional `DATABASE_URL` and `REDIS_URL`.
//!
//! Nested keys use `__` in environment variables:
//! `TRANSIT_UPSTREAM__CONNECT_TIMEOUT_SECS=5`. Unknown keys are rejected with
//! the path of the offending field.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// A string that never prints: `Debug` and `Display` show `*****`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call sites are where secrets flow; keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// Token for the `/admin` API (`X-Admin-Token`). If unset, one is
    /// generated at first start, printed once, and stored (hashed).
    pub admin_token: Option<Secret>,
    /// `sqlite://…`, `postgres://…` or `mysql://…`. Default: a SQLite file
    /// in the data directory.
    pub database_url: Option<Secret>,
    /// Redis for shared limits and change notifications. Unset: in-process.
    pub redis_url: Option<Secret>,
    /// Where the SQLite database, the generated secret key and the compiled
    /// adapter cache live.
    pub data_dir: PathBuf,
    /// Key that encrypts channel secrets at rest (any string; hashed to an
    /// AES-256 key). Unset: a random key is generated in the data directory.
    /// Instances sharing a database must share this key.
    pub secret_key: Option<Secret>,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// On SIGTERM or Ctrl-C, how long requests and streams in flight may
    /// run on before they are cut; usage is written after that, so keep it
    /// below the time a supervisor waits before it kills the process.
    pub shutdown_grace_secs: u64,
    pub upstream: UpstreamConfig,
    pub adapters: AdapterConfig,
    pub relay: RelayConfig,
    pub billing: crate::billing::BillingConfig,
    pub limits: crate::limits::LimitsConfig,
    pub tasks: crate::tasks::TasksConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// TCP + TLS connect timeout.
    pub connect_timeout_secs: u64,
    /// Total time for a non-streamed upstream call, headers and body.
    pub request_timeout_secs: u64,
    /// A stream that sends nothing for this long is cut.
    pub stream_idle_timeout_secs: u64,
    /// Largest upstream response body read into memory (non-streamed).
    pub max_response_bytes: usize,
    /// Calls one HTTP/2 connection to an upstream carries at once; more
    /// open another connection. At most what the servers allow
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`: 100 is the least the HTTP/2
    /// specification recommends they allow), or calls past it wait.
    pub http2_max_streams_per_connection: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdapterConfig {
    /// Wall-clock budget of one adapter call (prepare, parse, one stream
    /// batch). A call over budget traps and the request answers 502.
    pub call_timeout_ms: u64,
    /// Linear memory one adapter instance may grow to.
    pub memory_limit_mib: u64,
    /// Adapter instances alive at once (a call holds one while its adapter
    /// prepares or translates, not while the upstream works; open streams
    /// one per `streams_per_instance` streams of a user).
    pub max_instances: u32,
    /// Linear memories one adapter instance may define. A component built
    /// with the SDK defines one; the pool reserves this many per instance
    /// and refuses (at load) a component that defines more.
    pub memories_per_instance: u32,
    /// Tables one adapter instance may define. A component built with the
    /// SDK defines two (its program's and the component shim's); the pool
    /// reserves this many per instance and refuses (at load) a component
    /// that defines more.
    pub tables_per_instance: u32,
    /// Guest memory (and tables) kept mapped when an instance ends, per
    /// instance slot, and zeroed in place for the next request instead of
    /// being handed back to the kernel and faulted in again. Faster
    /// instantiation for more resident memory: a slot used once keeps up to
    /// this much. 0 returns everything at once.
    pub keep_resident_kib: u64,
    /// Requests one adapter instance serves before it is replaced by a
    /// fresh one. Between requests an instance waits, warm, for the next
    /// request of the same user to the same adapter version, which skips
    /// instantiating (and the page faults of a fresh memory); it never
    /// serves another user. An instance that trapped, was interrupted or
    /// grew its memory by more than 256 KiB is never reused. 1 gives every request a
    /// fresh instance: an adapter then cannot carry anything from one call
    /// to the next, even by mistake.
    pub reuse_calls: u32,
    /// Open streams of one user to one adapter version that may keep
    /// their translators in one instance, taking turns calling it, instead
    /// of an instance each. A trap in one translator also ends the others
    /// sharing its instance. 1: an instance per stream.
    pub streams_per_instance: u32,
    /// Cache of compiled adapters, keyed by content hash. Default:
    /// `<data_dir>/adapter-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Watched directory: a `.wasm` component dropped here is loaded (or
    /// replaces the adapter of the same name) without a restart; deleting
    /// it removes it. Default: `<data_dir>/adapters`.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Further channels tried after a retryable upstream failure.
    pub max_retries: u32,
    /// How often each instance re-reads channels from the database, so a
    /// change made through another instance is seen.
    pub channel_refresh_ms: u64,
    /// How long an API key's database row is reused before it is read
    /// again (0: read on every call). A key disabled through another
    /// instance stops working within this time; through this instance, at
    /// once. A call the cached row would refuse is re-checked against the
    /// database, so a top-up is never refused from a stale cache.
    pub token_cache_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            admin_token: None,
            database_url: None,
            redis_url: None,
            data_dir: PathBuf::from("data"),
            secret_key: None,
            body_limit_bytes: 32 * 1024 * 1024,
            shutdown_grace_secs: 20,
            upstream: UpstreamConfig::default(),
            adapters: AdapterConfig::default(),
            relay: RelayConfig::default(),
            billing: crate::billing::BillingConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
            tasks: crate::tasks::TasksConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 10,
            request_timeout_secs: 600,
            stream_idle_timeout_secs: 300,
            max_response_bytes: 64 * 1024 * 1024,
            http2_max_streams_per_connection: 100,
        }
    }
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            call_timeout_ms: 1000,
            memory_limit_mib: 64,
            max_instances: 1000,
            memories_per_instance: 1,
            tables_per_instance: 2,
            keep_resident_kib: 64,
            reuse_calls: 1000,
            streams_per_instance: 16,
            cache_dir: None,
            dir: None,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            channel_refresh_ms: 1000,
            token_cache_ms: 2000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".to_owned(),
            level: "info".to_owned(),
        }
    }
}

impl Config {
    /// Load the layered configuration from the process environment.
    pub fn load() -> anyhow::Result<Self> {
        let file = std::env::var("TRANSIT_CONFIG").unwrap_or_else(|_| "transit.toml".to_owned());
        Self::figment(&file)
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))
    }

    fn figment(file: &str) -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("TRANSIT_").ignore(&["CONFIG"]).split("__"))
            .merge(Env::raw().only(&["DATABASE_URL", "REDIS_URL"]))
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("transit.db").display()
            ),
        }
    }

    pub fn adapters_dir(&self) -> PathBuf {
        self.adapters
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("adapters"))
    }

    pub fn adapter_cache_dir(&self) -> PathBuf {
        self.adapters
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("adapter-cache"))
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment's Jail closures return its own error type"
)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "transit.toml",
                "listen = \"127.0.0.1:4000\"\nbody_limit_bytes = 10\n[relay]\nmax_retries = 5\n",
            )?;
            jail.set_env("TRANSIT_BODY_LIMIT_BYTES", "20");
            jail.set_env("TRANSIT_UPSTREAM__CONNECT_TIMEOUT_SECS", "3");
            jail.set_env("DATABASE_URL", "postgres://db/x");
            let c: Config = Config::figment("transit.toml").extract()?;
            assert_eq!(c.listen.port(), 4000);
            assert_eq!(c.body_limit_bytes, 20);
            assert_eq!(c.relay.max_retries, 5);
            assert_eq!(c.upstream.connect_timeout_secs, 3);
            assert_eq!(c.database_url(), "postgres://db/x");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        Jail::expect_with(|jail| {
            jail.create_file("transit.toml", "[relay]\nmax_retrys = 5\n")?;
            let err = Config::figment("transit.toml")
                .extract::<Config>()
                .expect_err("typo must fail");
            assert!(err.to_string().contains("max_retrys"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_sample_configuration_parses() {
        Jail::expect_with(|_| {
            let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/transit.toml");
            let c: Config = Config::figment(sample).extract()?;
            assert_eq!(c.listen.port(), 3000);
            assert_eq!(c.adapters.memory_limit_mib, 64);
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config {
            admin_token: Some(Secret::new("hunter2")),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}

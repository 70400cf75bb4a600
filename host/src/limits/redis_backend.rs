//! The Redis limiter: one script call per decision.

use std::collections::HashMap;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use super::{Bucket, Candidate, LimitsConfig, RateDecision, Required};

static ACQUIRE: &str = include_str!("lua/acquire.lua");
static RENEW: &str = include_str!("lua/renew.lua");
static COUNT: &str = include_str!("lua/count.lua");
static RATE: &str = include_str!("lua/rate.lua");

pub(super) struct RedisBackend {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    timeout: Duration,
    lease_ms: u64,
    prefix: String,
    acquire: Script,
    renew: Script,
    count: Script,
    rate: Script,
}

type R<T> = Result<T, anyhow::Error>;

impl RedisBackend {
    pub(super) fn new(url: &str, config: &LimitsConfig) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            timeout: Duration::from_millis(config.redis_timeout_ms.max(10)),
            lease_ms: config.slot_lease_secs.max(1) * 1000,
            prefix: config.redis_prefix.clone(),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            count: Script::new(COUNT),
            rate: Script::new(RATE),
        })
    }

    /// The shared connection, made on first success (Redis may be down at
    /// start); it reconnects by itself afterwards.
    async fn conn(&self) -> R<ConnectionManager> {
        let timeout = self.timeout;
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                tokio::time::timeout(
                    timeout * 4,
                    self.client.get_connection_manager_with_config(config),
                )
                .await
                .map_err(|_| anyhow::anyhow!("connecting to Redis timed out"))?
                .map_err(anyhow::Error::from)
            })
            .await?;
        Ok(conn.clone())
    }

    async fn timed<T>(&self, f: impl std::future::Future<Output = redis::RedisResult<T>>) -> R<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::anyhow!(
                "Redis did not answer within {:?}",
                self.timeout
            )),
        }
    }

    pub(super) async fn ping(&self) -> R<()> {
        let mut c = self.conn().await?;
        let _: String = self.timed(redis::cmd("PING").query_async(&mut c)).await?;
        Ok(())
    }

    pub(super) async fn acquire(
        &self,
        holder: &str,
        required: &[Required],
        candidates: &[Candidate],
        roll: f64,
    ) -> R<i64> {
        let mut c = self.conn().await?;
        let mut inv = self.acquire.prepare_invoke();
        for r in required {
            inv.key(&r.name);
        }
        for cand in candidates {
            inv.key(cand.slot_key(&self.prefix));
        }
        inv.arg(holder)
            .arg(self.lease_ms)
            .arg(required.len())
            .arg(roll);
        for r in required {
            inv.arg(r.limit);
        }
        for cand in candidates {
            inv.arg(cand.limit).arg(cand.weight).arg(cand.tier);
        }
        self.timed(inv.invoke_async(&mut c)).await
    }

    /// Free a holder's slots and count the call for its channel's error
    /// rate, in one round trip.
    pub(super) async fn release(
        &self,
        keys: &[String],
        holder: &str,
        outcome: Option<(i64, bool)>,
    ) -> R<()> {
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.zrem(k, holder).ignore();
        }
        if let Some((channel, failed)) = outcome {
            let minute = crate::store::now().max(0) / 60;
            let stats = format!("{}:stats:ch:{channel}:{minute}", self.prefix);
            pipe.hincr(&stats, "calls", 1).ignore();
            if failed {
                pipe.hincr(&stats, "failures", 1).ignore();
            }
            pipe.expire(&stats, 600).ignore();
        }
        let _: () = self.timed(pipe.query_async(&mut c)).await?;
        Ok(())
    }

    pub(super) async fn renew(&self, pairs: &[(String, String)]) -> R<()> {
        let mut c = self.conn().await?;
        for chunk in pairs.chunks(500) {
            let mut inv = self.renew.prepare_invoke();
            inv.arg(self.lease_ms);
            for (key, holder) in chunk {
                inv.key(key).arg(holder);
            }
            let _: i64 = self.timed(inv.invoke_async(&mut c)).await?;
        }
        Ok(())
    }

    pub(super) async fn count(&self, keys: &[String]) -> R<Vec<u64>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let mut inv = self.count.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        self.timed(inv.invoke_async(&mut c)).await
    }

    pub(super) async fn rate(&self, buckets: &[Bucket]) -> R<RateDecision> {
        let mut c = self.conn().await?;
        let mut inv = self.rate.prepare_invoke();
        for b in buckets {
            let window = b.window.as_secs_f64() * 1000.0;
            inv.key(format!("{}:rate:{}", self.prefix, b.name))
                .arg(window / b.limit.max(1) as f64)
                .arg(window)
                .arg(b.cost.min(b.limit));
        }
        let out: Vec<i64> = self.timed(inv.invoke_async(&mut c)).await?;
        let get = |i: usize| out.get(i).copied().unwrap_or(0).max(0) as u64;
        Ok(RateDecision {
            allowed: get(0) == 1,
            retry_after: Duration::from_millis(get(1)),
            buckets: (0..buckets.len())
                .map(|i| (get(2 + i * 2), Duration::from_millis(get(3 + i * 2))))
                .collect(),
        })
    }

    pub(super) async fn stats(&self, channels: &[i64]) -> R<HashMap<i64, (u64, u64)>> {
        if channels.is_empty() {
            return Ok(HashMap::new());
        }
        let mut c = self.conn().await?;
        let minute = crate::store::now().max(0) / 60;
        let mut pipe = redis::pipe();
        for ch in channels {
            for m in (minute - 4)..=minute {
                pipe.hgetall(format!("{}:stats:ch:{ch}:{m}", self.prefix));
            }
        }
        let all: Vec<HashMap<String, u64>> = self.timed(pipe.query_async(&mut c)).await?;
        let mut out = HashMap::new();
        for (i, ch) in channels.iter().enumerate() {
            let (mut calls, mut fails) = (0, 0);
            for h in all.iter().skip(i * 5).take(5) {
                calls += h.get("calls").copied().unwrap_or(0);
                fails += h.get("failures").copied().unwrap_or(0);
            }
            out.insert(*ch, (calls, fails));
        }
        Ok(out)
    }
}

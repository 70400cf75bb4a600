//! Concurrency slots and rate limits, shared through Redis or kept in
//! process.
//!
//! **Slots.** Every upstream key has `max_concurrency` slots; a token or user
//! may have a limit too. A slot is a member of a Redis sorted set whose score
//! is its lease expiry, so a crashed instance's slots expire by themselves;
//! releasing is a `ZREM`, idempotent and never negative. One Lua script
//! (`lua/acquire.lua`) picks the upstream key and takes the slot in one round
//! trip: the highest priority tier with room, then at random in proportion
//! to weight × the key's free share (least-loaded keys preferred). Releasing
//! is one pipelined round trip. Leases of slots held by long streams are
//! renewed in the background, one round trip per tick for all of them.
//!
//! **Rate limits.** RPM and TPM buckets (per token, per user, per model rule)
//! are GCRA cells checked all-or-nothing by `lua/rate.lua`.
//!
//! **Without Redis** (`REDIS_URL` unset) the same logic runs in process. If
//! Redis becomes unreachable, calls fall back to the in-process state (and
//! the monitor says so) until a background probe finds it again.

mod local;
mod redis_backend;
pub mod rules;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use self::local::Local;
use self::redis_backend::RedisBackend;
pub use self::rules::{RateRule, RateRules};
use crate::store::Db;

const RULES_KEY: &str = "rate_rules";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// A slot not renewed for this long is free again (covers crashed
    /// instances). Held slots are renewed every third of it.
    pub slot_lease_secs: u64,
    /// Prefix of every Redis key Transit writes.
    pub redis_prefix: String,
    /// A Redis command slower than this counts as Redis being unreachable.
    pub redis_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            slot_lease_secs: 30,
            redis_prefix: "transit".to_owned(),
            redis_timeout_ms: 500,
        }
    }
}

/// One upstream key a call could use.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub channel_id: i64,
    pub key_index: usize,
    pub limit: u32,
    pub weight: u32,
    /// Lower is preferred (tier 0 = the highest priority).
    pub tier: u32,
}

impl Candidate {
    fn slot_key(&self, prefix: &str) -> String {
        channel_key(prefix, self.channel_id, self.key_index)
    }
}

fn channel_key(prefix: &str, channel_id: i64, key_index: usize) -> String {
    format!("{prefix}:slots:ch:{channel_id}:{key_index}")
}

/// A limit on concurrent calls that must also have room (a token's, a user's).
#[derive(Debug, Clone)]
pub struct Required {
    pub name: String,
    pub limit: u32,
}

impl Required {
    pub fn token(prefix: &str, id: i64, limit: u32) -> Self {
        Self {
            name: format!("{prefix}:slots:token:{id}"),
            limit,
        }
    }

    pub fn user(prefix: &str, id: i64, limit: u32) -> Self {
        Self {
            name: format!("{prefix}:slots:user:{id}"),
            limit,
        }
    }
}

/// The outcome of asking for a slot.
pub enum Acquired {
    /// The candidate at this index was chosen; the guard holds its slot.
    Slot(usize, SlotGuard),
    /// Every candidate is full.
    Full,
    /// The required limit at this index is full.
    RequiredFull(usize),
}

/// A bucket of a rate limit: `limit` units per `window`.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    pub limit: u64,
    pub window: Duration,
    pub cost: u64,
    /// `requests` or `tokens`, for the `x-ratelimit-*` headers.
    pub unit: &'static str,
}

/// What a rate-limit check found, per bucket in the order asked.
#[derive(Debug, Clone)]
pub struct RateDecision {
    pub allowed: bool,
    pub retry_after: Duration,
    /// (remaining units, time until the bucket is full again) per bucket.
    pub buckets: Vec<(u64, Duration)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Redis,
    InProcess,
}

/// The limiter of one instance.
pub struct Limiter {
    redis: Option<RedisBackend>,
    local: Local,
    redis_up: AtomicBool,
    /// Unix seconds since Redis has been unreachable (0: it is not).
    redis_down_since: AtomicU64,
    /// Slots held through Redis, for lease renewal: holder → keys.
    held: DashMap<String, Vec<String>>,
    rules: ArcSwap<RateRules>,
    rules_version: std::sync::Mutex<String>,
    pub config: LimitsConfig,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("backend", &self.backend())
            .finish()
    }
}

/// Holds a slot until dropped.
pub struct SlotGuard {
    limiter: Arc<Limiter>,
    holder: String,
    keys: Vec<String>,
    backend: Backend,
    /// The call's outcome, for the channel's error rate.
    failed: bool,
    channel_id: Option<i64>,
}

impl SlotGuard {
    /// Record that the call failed (feeds the channel's error rate).
    pub fn mark_failed(&mut self) {
        self.failed = true;
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        let outcome = self.channel_id.map(|c| (c, self.failed));
        match self.backend {
            Backend::InProcess => {
                self.limiter.local.release(&keys);
                if let Some((channel, failed)) = outcome {
                    self.limiter.local.record(channel, failed);
                }
            }
            Backend::Redis => {
                self.limiter.held.remove(&self.holder);
                let limiter = self.limiter.clone();
                let holder = std::mem::take(&mut self.holder);
                if tokio::runtime::Handle::try_current().is_ok() {
                    tokio::spawn(async move {
                        if let Some(redis) = &limiter.redis
                            && let Err(e) = redis.release(&keys, &holder, outcome).await
                        {
                            // The lease frees the slot anyway.
                            tracing::debug!(error = %e, "releasing a slot in Redis failed");
                        }
                    });
                }
            }
        }
    }
}

impl Limiter {
    /// A limiter on Redis at `redis_url`, or in process without one. A
    /// Redis that cannot be reached at start is retried in the background.
    pub async fn new(redis_url: Option<&str>, config: LimitsConfig) -> anyhow::Result<Arc<Self>> {
        let redis = match redis_url {
            Some(url) => Some(RedisBackend::new(url, &config)?),
            None => None,
        };
        let limiter = Arc::new(Self {
            redis,
            local: Local::default(),
            redis_up: AtomicBool::new(false),
            redis_down_since: AtomicU64::new(0),
            held: DashMap::new(),
            rules: ArcSwap::from_pointee(RateRules::default()),
            rules_version: std::sync::Mutex::new(String::new()),
            config,
        });
        if let Some(redis) = &limiter.redis {
            if redis.ping().await.is_ok() {
                limiter.redis_up.store(true, Ordering::Relaxed);
            } else {
                limiter.mark_down("unreachable at start");
            }
        }
        Ok(limiter)
    }

    /// The backend calls use right now.
    pub fn backend(&self) -> Backend {
        if self.redis.is_some() && self.redis_up.load(Ordering::Relaxed) {
            Backend::Redis
        } else {
            Backend::InProcess
        }
    }

    pub fn redis_configured(&self) -> bool {
        self.redis.is_some()
    }

    /// Unix seconds since Redis became unreachable, if it is.
    pub fn redis_down_since(&self) -> Option<u64> {
        match self.redis_down_since.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    fn mark_down(&self, why: &str) {
        if self.redis_up.swap(false, Ordering::Relaxed) || self.redis_down_since().is_none() {
            tracing::warn!(
                reason = why,
                "Redis unreachable: limits fall back to this instance's own counters"
            );
            let now = crate::store::now().max(1) as u64;
            let _ = self.redis_down_since.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Take a slot: all of `required`, and one of `candidates` (ordered by
    /// tier, preferred first).
    pub async fn acquire(
        self: &Arc<Self>,
        required: &[Required],
        candidates: &[Candidate],
    ) -> Acquired {
        let holder = uuid::Uuid::new_v4().to_string();
        let roll: f64 = rand::random();
        let prefix = &self.config.redis_prefix;
        if self.backend() == Backend::Redis
            && let Some(redis) = &self.redis
        {
            match redis.acquire(&holder, required, candidates, roll).await {
                Ok(result) => {
                    return self.guard(result, holder, required, candidates, Backend::Redis);
                }
                Err(e) => self.mark_down(&e.to_string()),
            }
        }
        let result = self.local.acquire(prefix, required, candidates, roll);
        self.guard(result, holder, required, candidates, Backend::InProcess)
    }

    fn guard(
        self: &Arc<Self>,
        result: i64,
        holder: String,
        required: &[Required],
        candidates: &[Candidate],
        backend: Backend,
    ) -> Acquired {
        if result < 0 {
            return Acquired::RequiredFull((-result - 1) as usize);
        }
        if result == 0 {
            return Acquired::Full;
        }
        let index = (result - 1) as usize;
        let chosen = candidates.get(index);
        if chosen.is_none() && !candidates.is_empty() {
            return Acquired::Full;
        }
        let mut keys: Vec<String> = required.iter().map(|r| r.name.clone()).collect();
        if let Some(c) = chosen {
            keys.push(c.slot_key(&self.config.redis_prefix));
        }
        if backend == Backend::Redis {
            self.held.insert(holder.clone(), keys.clone());
        }
        Acquired::Slot(
            index,
            SlotGuard {
                limiter: self.clone(),
                holder,
                keys,
                backend,
                failed: false,
                channel_id: chosen.map(|c| c.channel_id),
            },
        )
    }

    /// Take the required slots only (no upstream key): a token's or user's
    /// concurrency for the whole of a call, across its attempts.
    pub async fn acquire_required(self: &Arc<Self>, required: &[Required]) -> Acquired {
        self.acquire(required, &[]).await
    }

    /// Check and take rate-limit capacity, all-or-nothing.
    pub async fn rate(&self, buckets: &[Bucket]) -> RateDecision {
        if buckets.is_empty() {
            return RateDecision {
                allowed: true,
                retry_after: Duration::ZERO,
                buckets: Vec::new(),
            };
        }
        if self.backend() == Backend::Redis
            && let Some(redis) = &self.redis
        {
            match redis.rate(buckets).await {
                Ok(d) => return d,
                Err(e) => self.mark_down(&e.to_string()),
            }
        }
        self.local.rate(buckets)
    }

    /// Live holders of each channel key (shared numbers when on Redis).
    pub async fn in_flight(&self, keys: &[(i64, usize)]) -> Vec<u64> {
        let names: Vec<String> = keys
            .iter()
            .map(|(c, k)| channel_key(&self.config.redis_prefix, *c, *k))
            .collect();
        if self.backend() == Backend::Redis
            && let Some(redis) = &self.redis
        {
            match redis.count(&names).await {
                Ok(counts) => return counts,
                Err(e) => self.mark_down(&e.to_string()),
            }
        }
        self.local.count(&names)
    }

    /// Calls and failures per channel over the last five minutes.
    pub async fn channel_stats(&self, channels: &[i64]) -> HashMap<i64, (u64, u64)> {
        if self.backend() == Backend::Redis
            && let Some(redis) = &self.redis
        {
            match redis.stats(channels).await {
                Ok(s) => return s,
                Err(e) => self.mark_down(&e.to_string()),
            }
        }
        self.local.stats(channels)
    }

    /// Renew leases, watch Redis health and pick up rule changes, until the
    /// limiter is dropped.
    pub fn spawn_maintenance(self: &Arc<Self>, db: Db) -> tokio::task::JoinHandle<()> {
        let limiter = Arc::downgrade(self);
        let every =
            Duration::from_millis((self.config.slot_lease_secs * 1000 / 3).clamp(100, 10_000));
        let tick_every = every.min(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(tick_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut since_renewal = Duration::ZERO;
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                limiter.check_health().await;
                if let Err(e) = limiter.refresh_rules(&db).await {
                    tracing::warn!(error = %e, "checking for rate-limit rule changes failed");
                }
                since_renewal += tick_every;
                if since_renewal >= every {
                    since_renewal = Duration::ZERO;
                    limiter.renew().await;
                }
            }
        })
    }

    pub fn rules(&self) -> Arc<RateRules> {
        self.rules.load_full()
    }

    /// Replace the model rules, for every instance.
    pub async fn set_rules(&self, db: &Db, rules: RateRules) -> anyhow::Result<()> {
        let json = serde_json::to_string(&rules)?;
        let version = db.set_versioned_option(RULES_KEY, &json).await?;
        self.rules.store(Arc::new(rules));
        if let Ok(mut v) = self.rules_version.lock() {
            *v = version;
        }
        Ok(())
    }

    /// Load the model rules if another instance changed them.
    pub async fn refresh_rules(&self, db: &Db) -> anyhow::Result<()> {
        let known = self
            .rules_version
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        if let Some((version, json)) = db.versioned_option_if_changed(RULES_KEY, &known).await? {
            let rules: RateRules = serde_json::from_str(&json)?;
            self.rules.store(Arc::new(rules));
            if let Ok(mut v) = self.rules_version.lock() {
                *v = version;
            }
        }
        Ok(())
    }

    async fn check_health(&self) {
        let Some(redis) = &self.redis else { return };
        if self.redis_up.load(Ordering::Relaxed) {
            return;
        }
        if redis.ping().await.is_ok() {
            self.redis_up.store(true, Ordering::Relaxed);
            self.redis_down_since.store(0, Ordering::Relaxed);
            tracing::info!("Redis reachable again: limits are shared again");
        }
    }

    async fn renew(&self) {
        let Some(redis) = &self.redis else { return };
        if !self.redis_up.load(Ordering::Relaxed) || self.held.is_empty() {
            return;
        }
        let pairs: Vec<(String, String)> = self
            .held
            .iter()
            .flat_map(|e| {
                let holder = e.key().clone();
                e.value()
                    .iter()
                    .map(move |k| (k.clone(), holder.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Err(e) = redis.renew(&pairs).await {
            self.mark_down(&e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(channel: i64, limit: u32, weight: u32, tier: u32) -> Candidate {
        Candidate {
            channel_id: channel,
            key_index: 0,
            limit,
            weight,
            tier,
        }
    }

    #[tokio::test]
    async fn in_process_slots_fill_tiers_in_order() {
        let l = Limiter::new(None, LimitsConfig::default()).await.unwrap();
        let cands = [cand(1, 2, 1, 0), cand(2, 5, 1, 1)];
        let mut guards = Vec::new();
        let mut chosen = Vec::new();
        for _ in 0..7 {
            match l.acquire(&[], &cands).await {
                Acquired::Slot(i, g) => {
                    chosen.push(cands[i].channel_id);
                    guards.push(g);
                }
                _ => break,
            }
        }
        assert_eq!(chosen, vec![1, 1, 2, 2, 2, 2, 2]);
        assert!(matches!(l.acquire(&[], &cands).await, Acquired::Full));
        guards.pop();
        assert!(matches!(l.acquire(&[], &cands).await, Acquired::Slot(1, _)));
        drop(guards);
        assert_eq!(l.in_flight(&[(1, 0), (2, 0)]).await, vec![0, 0]);
    }

    #[tokio::test]
    async fn required_limits_are_all_or_nothing() {
        let l = Limiter::new(None, LimitsConfig::default()).await.unwrap();
        let token = Required::token("t", 1, 1);
        let cands = [cand(1, 10, 1, 0)];
        let first = l.acquire(std::slice::from_ref(&token), &cands).await;
        assert!(matches!(first, Acquired::Slot(..)));
        assert!(matches!(
            l.acquire(std::slice::from_ref(&token), &cands).await,
            Acquired::RequiredFull(0)
        ));
        // The refused call took nothing from the channel.
        assert_eq!(l.in_flight(&[(1, 0)]).await, vec![1]);
        drop(first);
        assert!(matches!(
            l.acquire(std::slice::from_ref(&token), &cands).await,
            Acquired::Slot(..)
        ));
    }

    #[tokio::test]
    async fn in_process_rate_limits() {
        let l = Limiter::new(None, LimitsConfig::default()).await.unwrap();
        let bucket = |cost| Bucket {
            name: "rpm".into(),
            limit: 3,
            window: Duration::from_secs(60),
            cost,
            unit: "requests",
        };
        for left in [2, 1, 0] {
            let d = l.rate(&[bucket(1)]).await;
            assert!(d.allowed);
            assert_eq!(d.buckets[0].0, left);
        }
        let d = l.rate(&[bucket(1)]).await;
        assert!(!d.allowed);
        assert!(
            d.retry_after > Duration::from_secs(15) && d.retry_after <= Duration::from_secs(20)
        );
    }
}

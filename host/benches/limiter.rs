//! The limiter's cost per call: acquire + release of a concurrency slot and
//! one rate-limit check, in process and on Redis (if one answers on
//! 127.0.0.1:6379). Run with `cargo bench -p transit --bench limiter`.
//!
//! Prints the median of 15 batches; on Redis each acquire is one round trip
//! and each release one pipelined round trip (sent in the background).

#![allow(clippy::panic, reason = "a benchmark stops on a broken invariant")]

mod common;

use std::time::Duration;

use common::median;
use transit::limits::{Acquired, Bucket, Candidate, Limiter, LimitsConfig};

fn candidates() -> Vec<Candidate> {
    (0..4)
        .map(|k| Candidate {
            channel_id: 1,
            key_index: k,
            limit: 200,
            weight: 1,
            tier: 0,
        })
        .collect()
}

async fn run(name: &str, limiter: std::sync::Arc<Limiter>, ops: usize) {
    let cands = candidates();
    let slot = median(15, ops, || {
        let limiter = limiter.clone();
        let cands = cands.clone();
        async move {
            match limiter.acquire(&[], &cands).await {
                Acquired::Slot(_, guard) => drop(guard),
                _ => panic!("the bench key filled up"),
            }
        }
    })
    .await;
    let bucket = Bucket {
        name: format!("bench:{}", uuid::Uuid::new_v4()),
        limit: u64::MAX / 4,
        window: Duration::from_secs(60),
        cost: 1,
        unit: "requests",
    };
    let rate = median(15, ops, || {
        let limiter = limiter.clone();
        let bucket = bucket.clone();
        async move {
            assert!(limiter.rate(std::slice::from_ref(&bucket)).await.allowed);
        }
    })
    .await;
    println!(
        "{name:<12} slot acquire+release {:>9.2?}   rate check {:>9.2?}",
        slot, rate
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = LimitsConfig {
        redis_prefix: format!("transit-bench-{}", uuid::Uuid::new_v4().simple()),
        ..LimitsConfig::default()
    };
    run(
        "in-process",
        Limiter::new(None, config.clone()).await?,
        20_000,
    )
    .await;
    let redis = Limiter::new(Some("redis://127.0.0.1:6379"), config).await?;
    if redis.backend() == transit::limits::Backend::Redis {
        run("redis", redis, 1_000).await;
    } else {
        println!("redis        (not reachable on 127.0.0.1:6379: skipped)");
    }
    Ok(())
}

//! The adapter call path: instantiating a component for a request, and the
//! calls a plain chat completion makes (prepare + parse) and a stream makes
//! per event batch. Run with `cargo bench -p transit --bench adapter`.
//! Prints medians of 15 batches, for guest memory handed back after each
//! instance (`keep_resident_kib` 0) and for the default, interleaved; other
//! sizes with `KEEP_RESIDENT_KIB=0,64,256`.
#![allow(clippy::panic, reason = "a benchmark stops on a broken invariant")]

mod common;

use std::time::{Duration, Instant};

use common::{chat_call, median};
use transit::adapters::{Event, Runtime, UpstreamResponse};
use transit::config::AdapterConfig;

const REQUEST: &[u8] =
    br#"{"model":"m","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}"#;
const RESPONSE: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
const CHUNK: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}"#;

/// Median per-request time of instantiating and of a whole plain call.
async fn instantiate_and_call(
    runtime: &Runtime,
    adapter: &std::sync::Arc<transit::adapters::LoadedAdapter>,
) -> (Duration, Duration) {
    let instantiate = median(15, 500, || async move {
        drop(
            runtime
                .instantiate(adapter)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    })
    .await;
    let plain = median(15, 500, || async move {
        let mut lease = runtime
            .instantiate(adapter)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let c = chat_call(false);
        let _ = lease.instance.prepare_request(&c, REQUEST).await;
        let response = UpstreamResponse {
            status: 200,
            headers: vec![],
            body: RESPONSE.to_vec(),
        };
        let _ = lease.instance.parse_response(&c, &response).await;
    })
    .await;
    (instantiate, plain)
}

/// Median per-request time of a plain call as the relay makes it: prepare
/// on a warm instance, given back, then parse on it again.
async fn warm_call(
    runtime: &Runtime,
    adapter: &std::sync::Arc<transit::adapters::LoadedAdapter>,
) -> Duration {
    median(15, 2000, || async move {
        let c = chat_call(false);
        let mut lease = runtime
            .instantiate(adapter)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = lease.instance.prepare_request(&c, REQUEST).await;
        lease.recycle();
        let response = UpstreamResponse {
            status: 200,
            headers: vec![],
            body: RESPONSE.to_vec(),
        };
        let mut lease = runtime
            .instantiate(adapter)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = lease.instance.parse_response(&c, &response).await;
        lease.recycle();
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cache = tempfile::tempdir()?;
    // The same calls with guest memory handed back after each instance
    // (keep_resident 0) and with the default kept resident, interleaved.
    let mut runtimes = Vec::new();
    // Other sizes to compare: KEEP_RESIDENT_KIB=0,256,1024 cargo bench ...
    let sizes: Vec<u64> = match std::env::var("KEEP_RESIDENT_KIB") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        Err(_) => vec![0, AdapterConfig::default().keep_resident_kib],
    };
    for keep_resident_kib in sizes {
        let config = AdapterConfig {
            keep_resident_kib,
            ..AdapterConfig::default()
        };
        let runtime = Runtime::new(&config, Some(cache.path())).await?;
        let adapter = runtime
            .get("openai")
            .ok_or_else(|| anyhow::anyhow!("no openai adapter"))?;
        runtimes.push((keep_resident_kib, runtime, adapter, Vec::new()));
    }
    for _ in 0..5 {
        for (_, runtime, adapter, samples) in &mut runtimes {
            samples.push(instantiate_and_call(runtime, adapter).await);
        }
    }
    for (kib, _, _, samples) in &mut runtimes {
        samples.sort_by_key(|s| s.0);
        let instantiate = samples[samples.len() / 2].0;
        samples.sort_by_key(|s| s.1);
        let plain = samples[samples.len() / 2].1;
        println!("keep_resident_kib = {kib}");
        println!("  instantiate (fresh store + instance)       {instantiate:>9.2?}");
        println!("  plain call: instantiate + prepare + parse  {plain:>9.2?}");
    }

    let (_, runtime, adapter, _) = &runtimes[runtimes.len() - 1];
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(warm_call(runtime, adapter).await);
    }
    warm.sort();
    println!(
        "plain call on a warm instance: prepare + parse {:>9.2?}",
        warm[2]
    );
    let mut lease = runtime.instantiate(adapter).await?;
    let c = chat_call(true);
    let stream = lease
        .instance
        .open_stream(&c)
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let events = vec![Event {
        name: None,
        data: CHUNK.to_vec(),
    }];
    // The instance is borrowed mutably by each push, so this loop cannot
    // go through `median`'s closure.
    let mut per_event = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        for _ in 0..5000 {
            let _ = lease.instance.push(&stream, &events).await;
        }
        per_event.push(start.elapsed() / 5000);
    }
    per_event.sort();
    println!(
        "stream: one event batch through push       {:>9.2?}",
        per_event[7]
    );
    Ok(())
}

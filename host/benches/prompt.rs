//! What a long prompt costs, stage by stage: the gateway's JSON parse, the
//! prompt's token count (whole, as when an upstream reports no usage, and as
//! estimated ahead of the call), and the adapter's translation in its guest
//! (the body copied in, checked, spliced and copied out). Run with
//! `cargo bench -p transit --bench prompt`; sizes in bytes with
//! `PROMPT_BYTES=1000,100000,1000000`. Prints the median of 9 runs.
#![allow(clippy::panic, reason = "a benchmark stops on a broken invariant")]

mod common;

use common::{chat_call, median};
use transit::adapters::Runtime;
use transit::billing::tokens;
use transit::config::AdapterConfig;

/// A chat request whose one message is `bytes` of English-like text, as
/// the harness's `mixed` scenario sends.
fn request(bytes: usize) -> Vec<u8> {
    let words = "the quick brown fox jumps over the lazy dog while gateways relay tokens ";
    let text: String = words.repeat(bytes / words.len() + 1)[..bytes].to_owned();
    serde_json::to_vec(&serde_json::json!({
        "model": "bench",
        "messages": [{"role": "user", "content": text}],
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = match std::env::var("PROMPT_BYTES") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        Err(_) => vec![1_000, 100_000, 1_000_000],
    };
    let cache = tempfile::tempdir()?;
    let runtime = Runtime::new(&AdapterConfig::default(), Some(cache.path())).await?;
    let adapter = runtime
        .get("openai")
        .ok_or_else(|| anyhow::anyhow!("no openai adapter"))?;
    tokens::warm_up();
    println!(
        "{:>10}  {:>10}  {:>12}  {:>10}  {:>12}  {:>10}",
        "bytes", "parse", "whole count", "estimate", "guest call", "copy"
    );
    for bytes in sizes {
        let body = request(bytes);
        let parse = median(9, 1, || async {
            let v: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}"));
            std::hint::black_box(v);
        })
        .await;
        let value: serde_json::Value = serde_json::from_slice(&body)?;
        let count = median(9, 1, || async {
            std::hint::black_box(tokens::count_chat("bench", &value));
        })
        .await;
        let estimate = median(9, 1, || async {
            std::hint::black_box(tokens::estimate_chat("bench", &value));
        })
        .await;
        let guest = median(9, 1, || async {
            let mut lease = runtime
                .instantiate(&adapter)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let prepared = lease
                .instance
                .prepare_request(&chat_call(false), &body)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e:?}"));
            std::hint::black_box(prepared);
        })
        .await;
        let copy = median(9, 1, || async {
            std::hint::black_box(body.to_vec());
        })
        .await;
        println!(
            "{bytes:>10}  {parse:>10.2?}  {count:>12.2?}  {estimate:>10.2?}  {guest:>12.2?}  {copy:>10.2?}"
        );
    }
    Ok(())
}

//! What the benches share: the call an OpenAI channel makes, and a median
//! over timed batches.
#![allow(dead_code, reason = "each bench uses part of it")]

use std::time::{Duration, Instant};

use transit::adapters::{Call, ChannelInfo};

/// A chat completion on an OpenAI channel at the bench's mock address.
pub fn chat_call(stream: bool) -> Call {
    Call {
        endpoint: "chat.completions".into(),
        model: "m".into(),
        stream,
        include_usage: false,
        headers: vec![],
        channel: ChannelInfo {
            kind: "openai".into(),
            base_url: "http://127.0.0.1:9100".into(),
            api_key: "sk-bench".into(),
            options: vec![],
        },
    }
}

/// The median time of one `f()`, over `batches` batches of `ops` calls each.
pub async fn median<F, Fut>(batches: usize, ops: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(batches);
    for _ in 0..batches {
        let start = Instant::now();
        for _ in 0..ops {
            f().await;
        }
        samples.push(start.elapsed() / ops as u32);
    }
    samples.sort();
    samples[samples.len() / 2]
}

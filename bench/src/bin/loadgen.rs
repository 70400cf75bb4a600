//! Load drivers the harness needs beyond wrk, printing one JSON object:
//!
//! ```text
//! loadgen rate    --url U --key K --body FILE --rate R --secs S
//! loadgen streams --url U --key K --body FILE --concurrency C --total T
//! loadgen hold    --url U --key K --body FILE --open N [--opening P]
//! ```
//!
//! - `rate`: open loop at a fixed request rate. Each request's latency is
//!   measured from the moment it was *scheduled*, so a slow server cannot
//!   hide its queueing (no coordinated omission).
//! - `streams`: `C` clients each run streamed calls back to back until `T`
//!   finished; reports time to first chunk, the gaps between chunks and the
//!   whole stream's duration.
//! - `hold`: opens `N` streams, at most `P` (500) being opened at a time,
//!   prints `{"open": n}` when every one has delivered its first chunk (the
//!   harness reads the server's memory then), and exits when they end. All
//!   at once, tens of thousands of SYNs overflow loopback's accept queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Target {
    url: hyper::Uri,
    key: String,
    body: Bytes,
}

impl Target {
    fn request(&self) -> Result<hyper::Request<Full<Bytes>>, String> {
        hyper::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.key))
            .body(Full::new(self.body.clone()))
            .map_err(|e| e.to_string())
    }
}

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build(connector)
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn number(args: &[String], name: &str, default: u64) -> u64 {
    flag(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Percentiles of microsecond samples, as a JSON object.
fn summary(samples: &mut [u64]) -> String {
    samples.sort_unstable();
    let pick = |p: f64| -> u64 {
        if samples.is_empty() {
            return 0;
        }
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i.min(samples.len() - 1)]
    };
    format!(
        "{{\"n\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        samples.len(),
        pick(0.50),
        pick(0.90),
        pick(0.99),
        samples.last().copied().unwrap_or(0)
    )
}

async fn rate(client: HttpClient, target: Arc<Target>, rate: u64, secs: u64) -> String {
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let (client, target, errors) = (client.clone(), target.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let ok = match target.request() {
                Ok(req) => match client.request(req).await {
                    Ok(resp) => {
                        let good = resp.status().is_success();
                        good && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            scheduled.elapsed().as_micros() as u64
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(us) = t.await {
            latencies.push(us);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    format!(
        "{{\"mode\":\"rate\",\"rate\":{rate},\"sent\":{total},\"errors\":{},\"rps\":{:.1},\"latency\":{}}}",
        errors.load(Ordering::Relaxed),
        total as f64 / elapsed,
        summary(&mut latencies)
    )
}

#[derive(Default)]
struct StreamStats {
    ttfc: Vec<u64>,
    gaps: Vec<u64>,
    total: Vec<u64>,
    chunks: u64,
    errors: u64,
}

/// One streamed call: time to first chunk, gaps, whole duration.
async fn one_stream(client: &HttpClient, target: &Target, stats: &mut StreamStats) {
    let started = Instant::now();
    let Ok(req) = target.request() else {
        stats.errors += 1;
        return;
    };
    let Ok(resp) = client.request(req).await else {
        stats.errors += 1;
        return;
    };
    if !resp.status().is_success() {
        stats.errors += 1;
        let _ = resp.into_body().collect().await;
        return;
    }
    let mut body = resp.into_body();
    let mut last: Option<Instant> = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            stats.errors += 1;
            return;
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let now = Instant::now();
        match last {
            None => stats.ttfc.push((now - started).as_micros() as u64),
            Some(prev) => stats.gaps.push((now - prev).as_micros() as u64),
        }
        last = Some(now);
        stats.chunks += 1;
    }
    stats.total.push(started.elapsed().as_micros() as u64);
}

async fn streams(client: HttpClient, target: Arc<Target>, concurrency: u64, total: u64) -> String {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, target, next) = (client.clone(), target.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut stats = StreamStats::default();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                one_stream(&client, &target, &mut stats).await;
            }
            stats
        }));
    }
    let mut all = StreamStats::default();
    for w in workers {
        if let Ok(s) = w.await {
            all.ttfc.extend(s.ttfc);
            all.gaps.extend(s.gaps);
            all.total.extend(s.total);
            all.chunks += s.chunks;
            all.errors += s.errors;
        }
    }
    format!(
        "{{\"mode\":\"streams\",\"streams\":{},\"errors\":{},\"frames\":{},\"ttfc\":{},\"gap\":{},\"duration\":{}}}",
        all.total.len(),
        all.errors,
        all.chunks,
        summary(&mut all.ttfc),
        summary(&mut all.gaps),
        summary(&mut all.total)
    )
}

async fn hold(client: HttpClient, target: Arc<Target>, open: u64, opening: u64) -> String {
    let gate = Arc::new(tokio::sync::Semaphore::new(opening.max(1) as usize));
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // Why streams failed, counted by reason ("status 429", "connect: ..."),
    // so a run that opens fewer streams than asked says why.
    let reasons = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    let mut tasks = Vec::new();
    for _ in 0..open {
        let (client, target) = (client.clone(), target.clone());
        let (opened, failed, reasons) = (opened.clone(), failed.clone(), reasons.clone());
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            // Held until the stream's first chunk (or its failure).
            let mut permit = gate.acquire_owned().await.ok();
            let fail = |reason: String| {
                failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut r) = reasons.lock() {
                    *r.entry(reason).or_default() += 1;
                }
            };
            let req = match target.request() {
                Ok(req) => req,
                Err(e) => return fail(format!("request: {e}")),
            };
            let resp = match client.request(req).await {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => return fail(format!("status {}", r.status().as_u16())),
                Err(e) => return fail(format!("send: {e}")),
            };
            let mut body = resp.into_body();
            let mut first = true;
            while let Some(frame) = body.frame().await {
                if let Err(e) = frame {
                    return fail(format!("body: {e}"));
                }
                if first {
                    first = false;
                    opened.fetch_add(1, Ordering::Relaxed);
                    permit.take();
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < open
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reasons_json = || {
        let r = reasons.lock().map(|r| r.clone()).unwrap_or_default();
        let fields: Vec<String> = r
            .iter()
            .map(|(k, v)| format!("{}:{v}", json_string(k)))
            .collect();
        format!("{{{}}}", fields.join(","))
    };
    println!(
        "{{\"open\":{},\"failed\":{},\"reasons\":{}}}",
        opened.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        reasons_json()
    );
    for t in tasks {
        let _ = t.await;
    }
    format!(
        "{{\"mode\":\"hold\",\"opened\":{},\"failed\":{},\"reasons\":{}}}",
        opened.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        reasons_json()
    )
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or_default();
    let url = flag(&args, "--url")
        .ok_or("--url is required")?
        .parse::<hyper::Uri>()
        .map_err(|e| format!("--url: {e}"))?;
    let body = match flag(&args, "--body") {
        Some(path) => std::fs::read(path).map_err(|e| format!("--body {path}: {e}"))?,
        None => return Err("--body is required".into()),
    };
    let target = Arc::new(Target {
        url,
        key: flag(&args, "--key").unwrap_or("none").to_owned(),
        body: Bytes::from(body),
    });
    let client = client();
    let out = match mode {
        "rate" => {
            rate(
                client,
                target,
                number(&args, "--rate", 100),
                number(&args, "--secs", 5),
            )
            .await
        }
        "streams" => {
            streams(
                client,
                target,
                number(&args, "--concurrency", 1),
                number(&args, "--total", 100),
            )
            .await
        }
        "hold" => {
            hold(
                client,
                target,
                number(&args, "--open", 100),
                number(&args, "--opening", 500),
            )
            .await
        }
        other => return Err(format!("unknown mode {other:?}: rate, streams or hold")),
    };
    println!("{out}");
    Ok(())
}

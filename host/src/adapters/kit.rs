//! The adapter conformance kit: `transit adapter test FILE.wasm`.
//!
//! Loads a component in the real runtime (same engine, limits and WASI
//! sandbox as the gateway) and checks what the gateway relies on: `info()`
//! is sane; requests are prepared without echoing the key into the body;
//! responses, stream transcripts and error bodies translate; and hostile
//! input (empty, huge, non-UTF-8 bodies, truncated events) gets an answer,
//! never a trap or a blown time or memory budget.
//!
//! Without `--fixtures`, the upstream side is played with OpenAI's wire
//! format; an adapter for another protocol passes a directory holding its
//! provider's `response.json` (a 2xx body), a streamed transcript framed
//! the way the adapter declares its streams (`stream.sse`, `stream.ndjson`,
//! or `stream.eventstream` for AWS eventstream) and optionally `error.json`
//! (a 4xx/5xx body). `--channel-type` sets the channel type the calls carry,
//! for adapters that serve several.

use std::path::{Path, PathBuf};

use super::{
    AdapterError, Answer, Call, ChannelInfo, Event, Framing, Runtime, Source, UpstreamResponse,
};
use crate::config::AdapterConfig;

/// The channel key the kit hands adapters. It has the `ACCESS|SECRET` form
/// some providers use (Kling), and is a plain opaque string to the rest.
const KEY: &str = "sk-conformance-kit-0123456789|kit-secret-abcdef";

pub struct KitOptions {
    pub file: PathBuf,
    pub fixtures: Option<PathBuf>,
    pub model: String,
    /// The channel type the calls carry (`ChannelInfo::kind`).
    pub channel_type: String,
}

impl KitOptions {
    /// The options' defaults for `file`.
    pub fn new(file: PathBuf) -> Self {
        Self {
            file,
            fixtures: None,
            model: "conformance-model".to_owned(),
            channel_type: "conformance".to_owned(),
        }
    }

    /// A chat call as the gateway would make it through this channel.
    fn call(&self, stream: bool) -> Call {
        Call {
            endpoint: "chat.completions".to_owned(),
            model: self.model.clone(),
            stream,
            include_usage: stream,
            headers: Vec::new(),
            channel: ChannelInfo {
                kind: self.channel_type.clone(),
                base_url: "https://upstream.example".to_owned(),
                api_key: KEY.to_owned(),
                options: Vec::new(),
            },
        }
    }
}

struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn check(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(note) if note.is_empty() => {
                self.passed += 1;
                println!("  ✓ {name}");
            }
            Ok(note) => {
                self.passed += 1;
                println!("  ✓ {name} ({note})");
            }
            Err(why) => {
                self.failed += 1;
                println!("  ✗ {name}: {why}");
            }
        }
    }
}

fn response(status: u16, body: &[u8]) -> UpstreamResponse {
    UpstreamResponse {
        status,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("retry-after".to_owned(), "3".to_owned()),
        ],
        body: body.to_vec(),
    }
}

const REQUEST: &[u8] = br#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello!"}],"max_tokens":32,"temperature":0.2}"#;
const RESPONSE: &[u8] = br#"{"id":"chatcmpl-kit","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;
const STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";
const ERROR: &[u8] = br#"{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","code":"invalid_value"}}"#;

/// Endpoints served as asynchronous tasks.
const TASK_ENDPOINTS: &[&str] = &["videos", "video.generations", "images.generations.async"];
const TASK_REQUEST: &[u8] =
    br#"{"model":"m","prompt":"A lighthouse at dusk","duration":5,"seconds":"4","n":1}"#;

/// The task functions: a submit and a poll request are built, and hostile
/// upstream answers are refused without a trap.
async fn task_checks(
    runtime: &Runtime,
    name: &str,
    endpoint: &str,
    options: &KitOptions,
    report: &mut Report,
) {
    // Adapters are called with the plain endpoint; `.async` only tells the
    // gateway how to answer clients.
    let endpoint = endpoint.trim_end_matches(".async");
    let mut task_call = options.call(false);
    task_call.endpoint = endpoint.to_owned();
    let result = async {
        let mut lease = fresh(runtime, name).await?;
        let req = lease
            .instance
            .prepare_submit(&task_call, TASK_REQUEST)
            .await
            .map_err(|f| format!("the component {f}"))?
            .map_err(|e| format!("refused a valid {endpoint} task: {e:?}"))?;
        let url = url::Url::parse(&req.url).map_err(|e| format!("url {:?}: {e}", req.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("url {:?} is not http(s)", req.url));
        }
        if String::from_utf8_lossy(&req.body).contains(KEY) {
            return Err("the channel key appears in the request body".to_owned());
        }
        let poll = lease
            .instance
            .prepare_poll(&task_call, "upstream-task-1")
            .await
            .map_err(|f| format!("the component {f}"))?
            .map_err(|e| format!("could not build a poll: {e:?}"))?;
        Ok(format!(
            "{} {}; poll {} {}",
            req.method, req.url, poll.method, poll.url
        ))
    }
    .await;
    report.check("tasks: prepare-submit and prepare-poll", result);
    let result = async {
        for body in [&b""[..], b"not json", b"{}", b"\xff\xfe", b"[]"] {
            let mut lease = fresh(runtime, name).await?;
            let r = response(200, body);
            // Refusing such an answer is right; only a trap fails the check.
            let _submitted = lease
                .instance
                .parse_submit(&task_call, &r)
                .await
                .map_err(|f| format!("parse-submit on {body:?}: the component {f}"))?;
            let _state = lease
                .instance
                .parse_poll(&task_call, &r)
                .await
                .map_err(|f| format!("parse-poll on {body:?}: the component {f}"))?;
        }
        Ok("no trap on empty, non-JSON, empty-object and non-UTF-8 answers".to_owned())
    }
    .await;
    report.check("tasks: hostile upstream answers", result);
}

/// The transcript fixture for streams framed as `framing`, and the one the
/// kit plays when there is none (OpenAI's, for SSE).
fn transcript_file(framing: Framing) -> (&'static str, Option<&'static str>) {
    match framing {
        Framing::Sse | Framing::Raw => ("stream.sse", Some(STREAM)),
        Framing::Ndjson => ("stream.ndjson", None),
        Framing::AwsEventstream => ("stream.eventstream", None),
    }
}

/// A transcript's events, framed as the gateway frames them.
fn events(transcript: &[u8], framing: Framing) -> Result<Vec<Event>, String> {
    let mut framer = crate::relay::framer_for(framing)
        .unwrap_or(crate::relay::framing::Framer::Sse(Default::default()));
    let framed = |e: crate::relay::framing::FramingError| {
        format!("the transcript cannot be framed: {}", e.message())
    };
    let mut out = framer.push(transcript).map_err(framed)?;
    out.extend(framer.finish().map_err(framed)?);
    Ok(out)
}

fn fixture(dir: Option<&Path>, name: &str) -> Option<Vec<u8>> {
    dir.and_then(|d| std::fs::read(d.join(name)).ok())
}

async fn fresh(runtime: &Runtime, name: &str) -> Result<super::Lease, String> {
    let adapter = runtime.get(name).ok_or("the adapter is not registered")?;
    runtime
        .instantiate(&adapter)
        .await
        .map_err(|e| format!("instantiating failed: {e:#}"))
}

/// Run the kit; returns whether every check passed.
pub async fn run(options: KitOptions) -> anyhow::Result<bool> {
    let bytes = std::fs::read(&options.file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", options.file.display()))?;
    let limits = AdapterConfig {
        max_instances: 16,
        ..AdapterConfig::default()
    };
    let runtime = Runtime::new(&limits, None).await?;
    let mut report = Report {
        passed: 0,
        failed: 0,
    };
    println!("transit adapter test {}", options.file.display());
    let adapter = match runtime.compile(&bytes, Source::Uploaded).await {
        Ok(a) => {
            report.check(
                "loads: a transit:adapter component that compiles and answers info()",
                Ok(format!("WIT {}", a.wit_version)),
            );
            runtime.install(a)
        }
        Err(e) => {
            report.check("loads", Err(format!("{e:#}")));
            println!("\n{} passed, {} failed", report.passed, report.failed);
            return Ok(false);
        }
    };
    let info = adapter.info.clone();
    report.check(
        "info: name, semantic version and endpoints",
        if info.name.trim().is_empty() || info.name.contains(char::is_whitespace) {
            Err(format!("name {:?} must be one word", info.name))
        } else if info.version.split('.').count() != 3 {
            Err(format!("version {:?} is not semver (x.y.z)", info.version))
        } else if info.endpoints.is_empty() {
            Err("lists no endpoints".to_owned())
        } else {
            Ok(format!(
                "{} {} serving {}",
                info.name,
                info.version,
                info.endpoints.join(", ")
            ))
        },
    );
    if let Some(endpoint) = info
        .endpoints
        .iter()
        .find(|e| TASK_ENDPOINTS.contains(&e.as_str()))
    {
        task_checks(&runtime, &info.name, endpoint, &options, &mut report).await;
    }
    if !info.endpoints.iter().any(|e| e == "chat.completions") {
        println!("  (no chat.completions: the chat checks are skipped)");
        println!("\n{} passed, {} failed", report.passed, report.failed);
        return Ok(report.failed == 0);
    }
    let fixtures = options.fixtures.as_deref();
    let name = info.name.clone();

    // How the adapter frames its streams (read off its streamed request).
    let mut framing = Framing::Sse;
    for stream in [false, true] {
        let label = if stream {
            "prepare-request (stream)"
        } else {
            "prepare-request"
        };
        let result = async {
            let mut lease = fresh(&runtime, &name).await?;
            let req = lease
                .instance
                .prepare_request(&options.call(stream), REQUEST)
                .await
                .map_err(|f| format!("the component {f}"))?
                .map_err(|e| format!("refused a valid chat request: {e:?}"))?;
            if stream {
                framing = req.framing;
            }
            let url = url::Url::parse(&req.url).map_err(|e| format!("url {:?}: {e}", req.url))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("url {:?} is not http(s)", req.url));
            }
            if req.method.is_empty() {
                return Err("empty HTTP method".to_owned());
            }
            if String::from_utf8_lossy(&req.body).contains(KEY) {
                return Err("the channel key appears in the request body".to_owned());
            }
            let reader = match req.answer {
                Answer::Adapter => "",
                Answer::Openai => " (its answer read by the gateway as OpenAI's)",
            };
            Ok(format!("{} {}{reader}", req.method, req.url))
        }
        .await;
        report.check(label, result);
    }

    let body = fixture(fixtures, "response.json").unwrap_or_else(|| RESPONSE.to_vec());
    let result = async {
        let mut lease = fresh(&runtime, &name).await?;
        let t = lease
            .instance
            .parse_response(&options.call(false), &response(200, &body))
            .await
            .map_err(|f| format!("the component {f}"))?
            .map_err(|e| format!("could not translate the response: {e:?}"))?;
        let v: serde_json::Value = serde_json::from_slice(&t.body)
            .map_err(|e| format!("the translated body is not JSON: {e}"))?;
        if v.get("choices").and_then(|c| c.as_array()).is_none() {
            return Err("the translated body has no `choices`".to_owned());
        }
        Ok(match t.usage {
            Some(u) => format!("usage {} in / {} out", u.input_tokens, u.output_tokens),
            None => "no usage reported".to_owned(),
        })
    }
    .await;
    report.check("parse-response: a chat completion with usage", result);

    let (transcript_name, played) = transcript_file(framing);
    let transcript = fixture(fixtures, transcript_name).or(played.map(|t| t.as_bytes().to_vec()));
    let result = async {
        let transcript = transcript.ok_or_else(|| {
            format!(
                "the adapter frames its streams as {framing:?}: give --fixtures a directory \
                 holding the provider's {transcript_name}"
            )
        })?;
        let mut lease = fresh(&runtime, &name).await?;
        let c = options.call(true);
        let stream = lease
            .instance
            .open_stream(&c)
            .await
            .map_err(|f| format!("the constructor {f}"))?;
        let mut chunks = Vec::new();
        let mut usage = None;
        // One event per batch: the hardest split for a translator's state.
        for event in events(&transcript, framing)? {
            let batch = lease
                .instance
                .push(&stream, std::slice::from_ref(&event))
                .await
                .map_err(|f| format!("push {f}"))?
                .map_err(|e| format!("push refused the transcript: {e:?}"))?;
            usage = batch.usage.or(usage);
            chunks.extend(batch.chunks);
        }
        let last = lease
            .instance
            .finish(&stream)
            .await
            .map_err(|f| format!("finish {f}"))?
            .map_err(|e| format!("finish failed: {e:?}"))?;
        usage = last.usage.or(usage);
        chunks.extend(last.chunks);
        for chunk in &chunks {
            let v: serde_json::Value =
                serde_json::from_slice(chunk).map_err(|e| format!("a chunk is not JSON: {e}"))?;
            if !v.is_object() {
                return Err("a chunk is not a JSON object".to_owned());
            }
        }
        if chunks.is_empty() {
            return Err("the transcript produced no chunks".to_owned());
        }
        Ok(format!(
            "{} chunks, usage {}",
            chunks.len(),
            if usage.is_some() {
                "reported"
            } else {
                "missing"
            }
        ))
    }
    .await;
    report.check(
        "stream-translator: a transcript, one event per batch",
        result,
    );

    let error_body = fixture(fixtures, "error.json").unwrap_or_else(|| ERROR.to_vec());
    for (status, expect) in [
        (400u16, "invalid or upstream"),
        (401, "auth"),
        (429, "rate-limited"),
        (503, "retryable upstream"),
    ] {
        let result = async {
            let mut lease = fresh(&runtime, &name).await?;
            let e = lease
                .instance
                .map_error(&options.call(false), &response(status, &error_body))
                .await
                .map_err(|f| format!("the component {f}"))?;
            let ok = match (status, &e) {
                (401, AdapterError::Auth(_)) => true,
                (429, AdapterError::RateLimited(_)) => true,
                (503, AdapterError::Upstream(u)) => u.retryable,
                (400, AdapterError::Upstream(u)) => !u.retryable,
                (400, AdapterError::InvalidRequest(_)) => true,
                _ => false,
            };
            if ok {
                Ok(String::new())
            } else {
                Err(format!("HTTP {status} mapped to {e:?}, expected {expect}"))
            }
        }
        .await;
        report.check(&format!("map-error: HTTP {status} → {expect}"), result);
    }

    let huge = {
        let mut b = br#"{"model":"m","messages":[{"role":"user","content":""#.to_vec();
        b.extend(std::iter::repeat_n(b'x', 8 * 1024 * 1024));
        b.extend_from_slice(br#""}]}"#);
        b
    };
    let hostile: [(&str, Vec<u8>); 4] = [
        ("an empty body", Vec::new()),
        ("a body that is not JSON", b"{\"model\": ".to_vec()),
        ("a body that is not UTF-8", vec![0xff, 0xfe, 0x00, 0x7b]),
        ("an 8 MiB body", huge),
    ];
    for (what, body) in hostile {
        let result = async {
            // Either verdict is fine; a trap or a blown budget is not.
            let mut lease = fresh(&runtime, &name).await?;
            let _verdict = lease
                .instance
                .prepare_request(&options.call(false), &body)
                .await
                .map_err(|f| format!("the component {f}"))?;
            let mut lease = fresh(&runtime, &name).await?;
            let _verdict = lease
                .instance
                .parse_response(&options.call(false), &response(200, &body))
                .await
                .map_err(|f| format!("parse-response {f}"))?;
            Ok(String::new())
        }
        .await;
        report.check(
            &format!("hostile input: {what} is answered, not trapped on"),
            result,
        );
    }
    let result = async {
        let mut lease = fresh(&runtime, &name).await?;
        let c = options.call(true);
        let stream = lease
            .instance
            .open_stream(&c)
            .await
            .map_err(|f| format!("the constructor {f}"))?;
        let broken = [
            Event {
                name: None,
                data: b"{\"id\":\"c\",\"choi".to_vec(),
            },
            Event {
                name: Some("weird".to_owned()),
                data: vec![0xff, 0x00],
            },
            Event {
                name: None,
                data: Vec::new(),
            },
        ];
        let _verdict = lease
            .instance
            .push(&stream, &broken)
            .await
            .map_err(|f| format!("push {f}"))?;
        let _verdict = lease
            .instance
            .finish(&stream)
            .await
            .map_err(|f| format!("finish {f}"))?;
        Ok(String::new())
    }
    .await;
    report.check("hostile input: truncated and binary stream events", result);

    println!("\n{} passed, {} failed", report.passed, report.failed);
    Ok(report.failed == 0)
}

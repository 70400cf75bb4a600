//! The `transit` binary as a newcomer runs it: defaults only, and the
//! adapter conformance kit.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

fn built(file: &str) -> String {
    std::path::Path::new(env!("BUILT_ADAPTERS_DIR"))
        .join(file)
        .display()
        .to_string()
}

/// One AWS eventstream message (as Bedrock streams them): string headers,
/// a JSON payload, and both checksums.
fn eventstream_message(event_type: &str, payload: &str) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7);
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + headers.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
    out.extend_from_slice(&headers);
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
    out
}

/// The kit plays a provider's own recordings, framed the way the adapter
/// declares its streams (here Bedrock's binary eventstream), and calls an
/// adapter that serves several channel types as the type given.
#[tokio::test]
async fn the_conformance_kit_replays_eventstreams_and_takes_a_channel_type() {
    let fixtures = tempfile::tempdir().unwrap();
    let (ok, report) = kit(&[&built("bedrock.wasm")]).await;
    assert!(!ok, "{report}");
    assert!(
        report.contains("give --fixtures a directory holding the provider's stream.eventstream"),
        "{report}"
    );

    std::fs::write(
        fixtures.path().join("response.json"),
        r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi!"}]}},"stopReason":"end_turn","usage":{"inputTokens":9,"outputTokens":2,"totalTokens":11},"metrics":{"latencyMs":120}}"#,
    )
    .unwrap();
    std::fs::write(
        fixtures.path().join("error.json"),
        r#"{"message":"The security token included in the request is invalid."}"#,
    )
    .unwrap();
    let stream: Vec<u8> = [
        ("messageStart", r#"{"role":"assistant"}"#),
        ("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#),
        ("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"!"}}"#),
        ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        ("messageStop", r#"{"stopReason":"end_turn"}"#),
        (
            "metadata",
            r#"{"usage":{"inputTokens":9,"outputTokens":2,"totalTokens":11},"metrics":{"latencyMs":120}}"#,
        ),
    ]
    .iter()
    .flat_map(|(event, payload)| eventstream_message(event, payload))
    .collect();
    std::fs::write(fixtures.path().join("stream.eventstream"), &stream).unwrap();
    let dir = fixtures.path().to_str().unwrap();
    let (ok, report) = kit(&[&built("bedrock.wasm"), "--fixtures", dir]).await;
    assert!(ok, "{report}");
    assert!(report.contains("chunks, usage reported"), "{report}");

    // A corrupted recording is reported as such.
    let mut corrupted = stream.clone();
    corrupted[20] ^= 0xff;
    std::fs::write(fixtures.path().join("stream.eventstream"), &corrupted).unwrap();
    let (ok, report) = kit(&[&built("bedrock.wasm"), "--fixtures", dir]).await;
    assert!(!ok);
    assert!(
        report.contains("the transcript cannot be framed"),
        "{report}"
    );

    // openai-compat serves several providers, chosen by the channel type.
    let (ok, report) = kit(&[&built("openai-compat.wasm")]).await;
    assert!(!ok);
    assert!(
        report.contains("does not know the provider `conformance`"),
        "{report}"
    );
    let (ok, report) = kit(&[&built("openai-compat.wasm"), "--channel-type", "zhipu"]).await;
    assert!(ok, "{report}");
}

/// The open-file limits (soft, hard) of a running process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut values = line["Max open files".len()..].split_whitespace();
    (
        values.next().unwrap().to_owned(),
        values.next().unwrap().to_owned(),
    )
}

/// The gateway started through `sh` under `ulimit LIMIT`, in `cwd`, on a
/// free local address, logging warnings to its piped stdout.
fn started_under_ulimit(
    limit: &str,
    cwd: &std::path::Path,
    env: &[(&str, &str)],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(r#"ulimit {limit} && exec "$0""#))
        .arg(env!("CARGO_BIN_EXE_transit"))
        .current_dir(cwd)
        .env("TRANSIT_LISTEN", addr.to_string())
        .env("TRANSIT_LOG__LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, addr)
}

/// Under a limit on address space too small for guarded adapter memories
/// (about 4 GiB of address space each), the gateway says so and starts with
/// compact ones: it loads and smoke-calls every built-in adapter in them.
#[tokio::test]
async fn starts_with_compact_adapter_memories_when_address_space_is_short() {
    let cwd = tempfile::tempdir().unwrap();
    // 200 GiB: the 1 000 guarded slots need about 4 TiB, the compact ones
    // (64 MiB each) about 64 GiB.
    let (mut child, addr) = started_under_ulimit(
        "-v 209715200",
        cwd.path(),
        &[("TRANSIT_ADMIN_TOKEN", "compact-admin")],
    );
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let warned = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("using compact memories") {
                return line;
            }
        }
        panic!("the gateway exited without a word on its adapter memories");
    })
    .await
    .unwrap();
    assert!(warned.contains("guarded memories"), "{warned}");
    transit::init_tls();
    let client = reqwest::Client::new();
    let mut adapters = None;
    for _ in 0..300 {
        if let Ok(r) = client
            .get(format!("http://{addr}/admin/adapters"))
            .header("X-Admin-Token", "compact-admin")
            .send()
            .await
        {
            adapters = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let adapters = adapters.expect("the gateway never answered");
    let listed = adapters.to_string();
    for name in ["openai", "anthropic", "gemini"] {
        assert!(listed.contains(&format!("\"{name}\"")), "{listed}");
    }
    child.kill().await.unwrap();
}

/// Started as a service manager would start it (here with a low soft limit
/// on open files, as systemd's default of 1 024 is): defaults only.
#[tokio::test]
async fn starts_with_defaults_in_an_empty_directory_and_prints_an_admin_token() {
    let cwd = tempfile::tempdir().unwrap();
    let (mut child, addr) = started_under_ulimit("-S -n 256", cwd.path(), &[]);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let token = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(t) = line.trim().strip_prefix("transit-admin-") {
                return format!("transit-admin-{t}");
            }
        }
        panic!("no admin token was printed");
    })
    .await
    .unwrap();
    transit::init_tls();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up);
    let r = client
        .get(format!("http://{addr}/admin/channels"))
        .header("X-Admin-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Defaults: a SQLite file, the adapters directory and the cache, in ./data.
    for made in [
        "data/transit.db",
        "data/adapters",
        "data/adapter-cache",
        "data/secret.key",
    ] {
        assert!(cwd.path().join(made).exists(), "{made} was not created");
    }
    // Each open stream takes two sockets: the soft limit is raised as far
    // as the hard limit allows.
    let (soft, hard) = open_file_limits(child.id().unwrap());
    assert_eq!(soft, hard);
    child.kill().await.unwrap();
}

async fn kit(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_transit"))
        .arg("adapter")
        .arg("test")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_conformance_kit_passes_good_adapters_and_explains_bad_ones() {
    for file in ["openai.wasm", "swap-v1.wasm", "apimart.wasm", "kling.wasm"] {
        let (ok, report) = kit(&[&built(file)]).await;
        assert!(ok, "{report}");
        assert!(report.contains(" passed, 0 failed"), "{report}");
    }
    // The task adapters are checked as task adapters.
    let (_, report) = kit(&[&built("kling.wasm")]).await;
    assert!(
        report.contains("✓ tasks: prepare-submit and prepare-poll"),
        "{report}"
    );
    assert!(
        report.contains("✓ tasks: hostile upstream answers"),
        "{report}"
    );
    // The misbehaving fixture traps when asked for the model `trap`.
    let (ok, report) = kit(&[&built("misbehave.wasm"), "--model", "trap"]).await;
    assert!(!ok);
    assert!(
        report.contains("✗ prepare-request: the component trapped"),
        "{report}"
    );
    // It spins forever when asked for `loop`: the time budget catches it.
    let (ok, report) = kit(&[&built("misbehave.wasm"), "--model", "loop"]).await;
    assert!(!ok);
    assert!(report.contains("exceeded its time limit"), "{report}");
    // Not a component at all.
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"\0asm\x01\0\0\0").unwrap();
    let (ok, report) = kit(&[junk.path().to_str().unwrap()]).await;
    assert!(!ok);
    assert!(report.contains("not a component"), "{report}");
}

#[tokio::test]
async fn a_scaffolded_adapter_builds_and_passes_the_kit() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_transit"))
        .current_dir(dir.path())
        .args(["adapter", "new", "acme"])
        .arg("--sdk")
        .arg(&sdk)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_dir = dir.path().join("acme");
    // Built exactly as an author would, into a target directory shared by
    // test runs (the first build compiles the SDK's dependencies).
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-test");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = tokio::process::Command::new(cargo)
        .current_dir(&crate_dir)
        .args(["build", "--quiet", "--target", "wasm32-wasip2", "--release"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .await
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = target.join("wasm32-wasip2/release/acme_adapter.wasm");
    let (ok, report) = kit(&[wasm.to_str().unwrap()]).await;
    assert!(ok, "{report}");
    // An existing directory is never overwritten.
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_transit"))
        .current_dir(dir.path())
        .args(["adapter", "new", "acme", "--sdk"])
        .arg(&sdk)
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
}

/// A gateway started from the binary with `grace_secs` of shutdown grace,
/// serving `mock`: the child, its address and a key for `gpt-4o-mini`.
async fn gateway_for(
    mock: &crate::helpers::MockUpstream,
    data: &std::path::Path,
    grace_secs: u64,
) -> (tokio::process::Child, std::net::SocketAddr, String) {
    use serde_json::{Value, json};

    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let admin = "transit-admin-shutdown-test";
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_transit"))
        .env("TRANSIT_CONFIG", data.join("none.toml"))
        .env("TRANSIT_LISTEN", addr.to_string())
        .env("TRANSIT_DATA_DIR", data)
        .env("TRANSIT_ADMIN_TOKEN", admin)
        .env("TRANSIT_SHUTDOWN_GRACE_SECS", grace_secs.to_string())
        .env("TRANSIT_LOG__LEVEL", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    transit::init_tls();
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let mut up = false;
    for _ in 0..600 {
        if client.get(url("/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up);
    let post = |path: &str, body: Value| {
        client
            .post(url(path))
            .header("X-Admin-Token", admin)
            .json(&body)
            .send()
    };
    let r = post(
        "/admin/channels",
        json!({"name": "slow", "secret_key": "sk-up", "base_url": mock.base_url(), "models": ["gpt-4o-mini"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let user: Value = post("/admin/users", json!({"username": "u", "quota": 1_000_000}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token: Value = post("/admin/tokens", json!({"user_id": user["id"], "name": "t"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (child, addr, token["key"].as_str().unwrap().to_owned())
}

/// Open a stream through the gateway (the mock streams for about half a
/// second), read its first piece, send the gateway SIGTERM, and read the
/// rest: what arrived, and whether the stream ended cleanly.
async fn stream_across_sigterm(
    child: &tokio::process::Child,
    addr: std::net::SocketAddr,
    key: &str,
) -> (String, bool) {
    let mut stream = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&crate::helpers::chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut received = stream.chunk().await.unwrap().unwrap().to_vec();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let clean = loop {
        match stream.chunk().await {
            Ok(Some(piece)) => received.extend_from_slice(&piece),
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&received).into_owned(), clean)
}

/// Calls and holds in a stopped gateway's SQLite database.
/// The notes of the usage logs in a stopped gateway's database, and how
/// many holds it left open.
async fn logs_and_holds(data: &std::path::Path) -> (Vec<String>, i64) {
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("transit.db").display()))
        .await
        .unwrap();
    let logs: Vec<String> = sqlx::query_scalar("SELECT content FROM logs")
        .fetch_all(&db)
        .await
        .unwrap();
    let holds: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM holds")
        .fetch_one(&db)
        .await
        .unwrap();
    (logs, holds)
}

/// SIGTERM: the gateway stops taking connections and lets a stream in
/// flight finish within `shutdown_grace_secs`; with no grace left it breaks
/// the stream off instead (the client sees an incomplete transfer, not a
/// clean end it could take for the whole answer). Either way it writes the
/// call's usage and exits cleanly.
#[tokio::test]
async fn sigterm_lets_streams_finish_within_the_grace_period_then_cuts_them() {
    use crate::helpers::{Behavior, MockUpstream};

    let mock = MockUpstream::start("sk-up").await;
    mock.set(Behavior::SlowStream);
    for (grace_secs, finishes) in [(30, true), (0, false)] {
        let data = tempfile::tempdir().unwrap();
        let (mut child, addr, key) = gateway_for(&mock, data.path(), grace_secs).await;
        let (received, clean) = stream_across_sigterm(&child, addr, &key).await;
        assert_eq!(clean, finishes, "grace {grace_secs} s: {received}");
        assert_eq!(received.contains("data: [DONE]"), finishes, "{received}");
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("the gateway did not exit")
            .unwrap();
        assert!(status.success(), "{status}");
        // The call was settled and written before the process ended, and
        // a cut one is logged as cut (not as left by its client).
        let (logs, holds) = logs_and_holds(data.path()).await;
        assert_eq!((logs.len(), holds), (1, 0), "grace {grace_secs} s");
        assert_eq!(
            logs[0].contains("the gateway shut down"),
            !finishes,
            "grace {grace_secs} s: {logs:?}"
        );
    }
}

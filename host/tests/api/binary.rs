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

#[tokio::test]
async fn starts_with_defaults_in_an_empty_directory_and_prints_an_admin_token() {
    let cwd = tempfile::tempdir().unwrap();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_transit"))
        .current_dir(cwd.path())
        .env("TRANSIT_LISTEN", addr.to_string())
        .env("TRANSIT_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
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

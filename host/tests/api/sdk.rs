//! Conformance with the official client SDKs: each runs, unchanged, against
//! the gateway as its users would run it. The SDKs live in a virtualenv at
//! `target/sdk-venv` (made here if missing; `.ci/run` makes it up front).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::helpers::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python, created (once per machine) from the pinned requirements.
pub fn sdk_python() -> PathBuf {
    let venv = workspace().join("target/sdk-venv");
    let python = venv.join("bin/python");
    let requirements = workspace().join("host/tests/sdk/requirements.txt");
    let stamp = venv.join("requirements.stamp");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return python;
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 -m venv failed: Python 3 with venv is required for the SDK tests"
    );
    let ok = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(&requirements)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "installing the SDKs from PyPI failed");
    std::fs::write(&stamp, wanted).unwrap();
    python
}

pub fn pytest(python: &Path, file: &str, env: &[(&str, String)]) {
    let out = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(workspace().join("host/tests/sdk").join(file))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "pytest {file} failed:\n{report}");
}

/// Run the official OpenAI SDK's conformance file against `app`.
pub async fn run_openai_sdk(
    app: &TestApp,
    key: String,
    model: &str,
    reply: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) {
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let env = [
        ("GATEWAY_BASE_URL", app.url("/v1")),
        ("GATEWAY_KEY", key),
        ("GATEWAY_MODEL", model.to_owned()),
        ("EXPECTED_REPLY", reply.to_owned()),
        ("EXPECTED_PROMPT_TOKENS", prompt_tokens.to_string()),
        ("EXPECTED_COMPLETION_TOKENS", completion_tokens.to_string()),
    ];
    tokio::task::spawn_blocking(move || pytest(&python, "test_openai_sdk.py", &env))
        .await
        .unwrap();
    // Everything the SDK did was logged and charged.
    let logs = app.logs().await;
    assert_eq!(logs.len(), 3, "one plain and two streamed completions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk() {
    let app = spawn_app().await;
    let mock = MockUpstream::start("sk-upstream").await;
    app.channel(json!({"name": "mock", "secret_key": "sk-upstream", "base_url": mock.base_url(), "models": ["gpt-4o-mini"]}))
        .await;
    let (_, key) = app.user_with_key(1_000_000).await;
    run_openai_sdk(
        &app,
        key,
        "gpt-4o-mini",
        MOCK_REPLY,
        MOCK_PROMPT_TOKENS,
        MOCK_COMPLETION_TOKENS,
    )
    .await;
}

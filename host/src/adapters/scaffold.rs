//! `transit adapter new NAME`: a new adapter crate that builds to a
//! component and passes the conformance kit as it stands — an
//! OpenAI-compatible starting point to edit.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

const LIB: &str = r##"//! The `{name}` adapter for Transit. It starts as an OpenAI-compatible
//! adapter: change `prepare_request`, `parse_response`, the stream
//! translator and `map_error` to speak your provider's protocol. See the
//! SDK's README for the contract, and run the conformance kit:
//!
//! ```text
//! cargo build --target wasm32-wasip2 --release
//! transit adapter test target/wasm32-wasip2/release/{crate_file}.wasm
//! ```

use transit_adapter_sdk::prelude::*;

pub struct Provider;

impl Adapter for Provider {
    type Stream = openai::PassthroughStream;

    fn info() -> AdapterInfo {
        AdapterInfo::new("{name}", env!("CARGO_PKG_VERSION"), &["chat.completions"])
    }

    fn prepare_request(call: &Call, body: &[u8]) -> Result<UpstreamRequest, AdapterError> {
        let url = openai::endpoint_url(&call.channel.base_url, "chat/completions");
        openai::prepare_chat(call, body, &url)
    }

    fn parse_response(_: &Call, response: &UpstreamResponse) -> Result<Translated, AdapterError> {
        openai::parse_chat(response)
    }
}

export_adapter!(Provider);

#[cfg(test)]
mod tests {
    use super::*;
    use transit_adapter_sdk::testing::{call, response};

    #[test]
    fn prepares_a_chat_request() {
        let req = Provider::prepare_request(
            &call("chat.completions", "m", false),
            br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert!(req.url.ends_with("/chat/completions"));
    }

    #[test]
    fn reads_usage() {
        let body = br#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let t = Provider::parse_response(&call("chat.completions", "m", false), &response(200, body)).unwrap();
        assert_eq!(t.usage, Some(Usage::tokens(1, 2)));
    }
}
"##;

const CARGO: &str = r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the component; rlib: native unit tests (cargo test).
crate-type = ["cdylib", "rlib"]

[dependencies]
transit-adapter-sdk = { path = "{sdk}" }

[profile.release]
opt-level = "s"
strip = true

# A crate of its own, even inside another workspace.
[workspace]
"#;

/// Create `dir` (its last component names the adapter) with a crate that
/// depends on the SDK at `sdk`.
pub fn create(dir: &Path, sdk: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .ok_or_else(|| anyhow!("the adapter name must be lowercase letters, digits and '-'"))?
        .to_owned();
    if dir.exists() {
        return Err(anyhow!("{} already exists", dir.display()));
    }
    let sdk = match sdk {
        Some(p) => p,
        None if Path::new("sdk/Cargo.toml").exists() => PathBuf::from("sdk"),
        None => {
            return Err(anyhow!(
                "where is transit-adapter-sdk? pass --sdk PATH (the `sdk` directory of a Transit checkout)"
            ));
        }
    };
    let sdk = std::path::absolute(&sdk)?;
    if !sdk.join("Cargo.toml").exists() {
        return Err(anyhow!("{} is not the SDK crate", sdk.display()));
    }
    let crate_name = format!("{name}-adapter");
    let crate_file = crate_name.replace('-', "_");
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        CARGO
            .replace("{crate_name}", &crate_name)
            .replace("{sdk}", &sdk.display().to_string().replace('\\', "/")),
    )?;
    std::fs::write(
        dir.join("src/lib.rs"),
        LIB.replace("{name}", &name)
            .replace("{crate_file}", &crate_file),
    )?;
    std::fs::write(dir.join(".gitignore"), "target/\n")?;
    Ok(dir
        .join("target/wasm32-wasip2/release")
        .join(format!("{crate_file}.wasm")))
}

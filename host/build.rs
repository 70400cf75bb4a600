//! Builds the built-in adapters (and the test-fixture adapter) for
//! `wasm32-wasip2`, so `cargo build` alone yields a gateway with its adapters
//! embedded. The adapters are built by a nested cargo into their own target
//! directory (`target/wasm-adapters`), which keeps the outer build's lock free
//! and lets every profile share one adapter build.
//!
//! It also writes the tokenizer vocabularies' tables
//! (`src/billing/vocab_table.rs`), which the binary reads where they lie.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[path = "src/billing/vocab_table.rs"]
#[allow(dead_code, reason = "the build only writes the tables")]
mod vocab_table;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm";

/// (crate name, file name in the gateway, embedded in the binary?)
const ADAPTERS: &[(&str, &str, bool)] = &[
    ("transit-adapter-openai", "openai.wasm", true),
    ("transit-adapter-anthropic", "anthropic.wasm", true),
    ("transit-adapter-gemini", "gemini.wasm", true),
    ("transit-adapter-apimart", "apimart.wasm", true),
    ("transit-adapter-kling", "kling.wasm", true),
    ("transit-adapter-tencent", "tencent.wasm", true),
    ("transit-adapter-coze", "coze.wasm", true),
    ("transit-adapter-openai-compat", "openai-compat.wasm", true),
    ("transit-adapter-cohere", "cohere.wasm", true),
    ("transit-adapter-rerank", "jina-voyage.wasm", true),
    ("transit-adapter-bedrock", "bedrock.wasm", true),
    ("transit-adapter-misbehave", "misbehave.wasm", false),
    ("transit-adapter-swap-v1", "swap-v1.wasm", false),
    ("transit-adapter-swap-v2", "swap-v2.wasm", false),
    ("transit-adapter-legacy-v0-1", "legacy-v0_1.wasm", false),
    ("transit-adapter-legacy-v0-2", "legacy-v0_2.wasm", false),
];

fn main() {
    if let Err(e) = run() {
        println!("cargo::error=building the built-in adapters failed: {e}");
        std::process::exit(1);
    }
    if let Err(e) = vocabularies() {
        println!("cargo::error=writing the tokenizer vocabularies failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir
        .parent()
        .ok_or("host crate has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);

    for watched in [
        "wit",
        "sdk",
        "adapters",
        "host/tests/fixtures",
        "host/src/billing/vocab_table.rs",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-adapters");

    ensure_target_installed()?;

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(&target_dir);
    for (krate, _, _) in ADAPTERS {
        cmd.args(["-p", krate]);
    }
    // The outer build's flags and wrappers are for the host target (and
    // `cargo clippy` sets a wrapper); none of them belong to the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo for the adapters: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of the adapters exited with {status}"));
    }

    let built = target_dir.join(TARGET).join(PROFILE);
    let mut generated = String::from(
        "/// Built-in adapters compiled into the binary: (file name, component\n\
         /// bytes, SHA-256 of the bytes in hex). The digest is taken here so that\n\
         /// a gateway whose adapter cache holds them never reads the bytes.\n\
         pub const ADAPTERS: &[(&str, &[u8], &str)] = &[\n",
    );
    for (krate, file, embedded) in ADAPTERS {
        let from = built.join(format!("{}.wasm", krate.replace('-', "_")));
        let to = out_dir.join(file);
        copy_if_changed(&from, &to)?;
        if *embedded {
            let bytes = fs::read(&to).map_err(|e| format!("reading {}: {e}", to.display()))?;
            let digest: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            generated.push_str(&format!(
                "    ({file:?}, include_bytes!({:?}), {digest:?}),\n",
                to.display().to_string()
            ));
        }
    }
    generated.push_str("];\n");
    fs::write(out_dir.join("builtin_adapters.rs"), generated)
        .map_err(|e| format!("writing builtin_adapters.rs: {e}"))?;
    // Tests load the fixture adapters from here.
    println!("cargo::rustc-env=BUILT_ADAPTERS_DIR={}", out_dir.display());
    Ok(())
}

/// Install the guest target through rustup when it is missing (a fresh
/// machine); `rust-toolchain.toml` names it too.
fn ensure_target_installed() -> Result<(), String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("running {rustc}: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map_err(|e| format!("the {TARGET} target is missing and rustup could not run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`rustup target add {TARGET}` failed"))
    }
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<(), String> {
    let new = fs::read(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
    write_if_changed(to, &new)
}

/// The built-in vocabularies' tables, and `vocabularies.rs` naming them:
/// (constant, `tiktoken-rs` encoder, ordinary tokens, ranks 0 to n - 1).
fn vocabularies() -> Result<(), String> {
    type Encoder = fn() -> anyhow::Result<tiktoken_rs::CoreBPE>;
    const VOCABULARIES: &[(&str, Encoder, u32)] = &[
        ("O200K_BASE", tiktoken_rs::o200k_base, 199_998),
        ("CL100K_BASE", tiktoken_rs::cl100k_base, 100_256),
    ];
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let mut generated = String::new();
    for &(name, encoder, size) in VOCABULARIES {
        let bpe = encoder().map_err(|e| format!("{name}: {e}"))?;
        let specials = bpe.special_tokens();
        let mut tokens = Vec::with_capacity(size as usize);
        for rank in 0..size {
            let bytes = bpe
                .decode_bytes(&[rank])
                .map_err(|_| format!("{name} has no token of rank {rank}"))?;
            if std::str::from_utf8(&bytes).is_ok_and(|t| specials.contains(t)) {
                return Err(format!("{name}: rank {rank} is a special token"));
            }
            tokens.push(bytes);
        }
        let (bytes, starts, slots) = vocab_table::build(tokens.iter().map(Vec::as_slice));
        let mut fields = String::new();
        for (table, data) in [("bytes", bytes), ("starts", starts), ("slots", slots)] {
            let file = out_dir.join(format!("{}.{table}", name.to_ascii_lowercase()));
            write_if_changed(&file, &data)?;
            fields.push_str(&format!(
                "    {table}: include_bytes!({:?}),\n",
                file.display().to_string()
            ));
        }
        generated.push_str(&format!(
            "pub const {name}: crate::billing::vocab_table::Tables<'static> = \
             crate::billing::vocab_table::Tables {{\n{fields}}};\n"
        ));
    }
    write_if_changed(&out_dir.join("vocabularies.rs"), generated.as_bytes())
}

fn write_if_changed(to: &Path, data: &[u8]) -> Result<(), String> {
    if fs::read(to).ok().as_deref() == Some(data) {
        return Ok(());
    }
    fs::write(to, data).map_err(|e| format!("writing {}: {e}", to.display()))
}

//! The `transit` binary.
//!
//! ```text
//! transit                                   serve (configuration: transit.toml, TRANSIT_*)
//! transit adapter test FILE.wasm [--fixtures DIR] [--model NAME] [--channel-type TYPE]
//!                                           run the adapter conformance kit
//! transit adapter new DIR [--sdk PATH]      start a new adapter crate
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use transit::Config;

const USAGE: &str = "usage:
  transit                                   start the gateway
  transit adapter test FILE.wasm [--fixtures DIR] [--model NAME] [--channel-type TYPE]
                                            check an adapter component
  transit adapter new DIR [--sdk PATH]      start a new adapter crate in DIR";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => serve().await,
        Some("adapter") => adapter_command(&args[1..]).await,
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("transit: unknown command {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn serve() -> ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("transit: {e:#}");
            return ExitCode::from(2);
        }
    };
    transit::telemetry::init(&config.log);
    match transit::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("transit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn adapter_command(args: &[String]) -> ExitCode {
    if let (Some("new"), Some(dir)) = (args.first().map(String::as_str), args.get(1)) {
        let sdk = match (args.get(2).map(String::as_str), args.get(3)) {
            (Some("--sdk"), Some(path)) => Some(PathBuf::from(path)),
            (None, _) => None,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        };
        return match transit::adapters::scaffold::create(std::path::Path::new(dir), sdk) {
            Ok(wasm) => {
                println!(
                    "created {dir}\n\n  cd {dir}\n  cargo build --target wasm32-wasip2 --release\n  transit adapter test {}",
                    wasm.strip_prefix(dir).unwrap_or(&wasm).display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("transit: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let (Some("test"), Some(file)) = (args.first().map(String::as_str), args.get(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut options = transit::adapters::kit::KitOptions::new(PathBuf::from(file));
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        match (flag.as_str(), rest.next()) {
            ("--fixtures", Some(dir)) => options.fixtures = Some(PathBuf::from(dir)),
            ("--model", Some(model)) => options.model = model.clone(),
            ("--channel-type", Some(kind)) => options.channel_type = kind.clone(),
            _ => {
                eprintln!("transit: unexpected argument {flag:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match transit::adapters::kit::run(options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("transit: {e:#}");
            ExitCode::from(2)
        }
    }
}

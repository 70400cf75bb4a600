//! The `transit` binary: load the configuration and serve.

use transit::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("transit: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    transit::telemetry::init(&config.log);
    match transit::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("transit: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

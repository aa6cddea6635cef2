//! The hotplane binary: parse config, set up logs, build the application, run it until a signal.

use std::process::ExitCode;

use clap::Parser;
use hotplane::{
    config::{Cli, Command},
    startup::{Application, open_store},
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config;
    if let Err(e) = telemetry::init(&config.log_filter, config.log_format) {
        eprintln!("hotplane: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => migrate(config).await,
        Command::Serve => serve(config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("hotplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: hotplane::config::Config) -> anyhow::Result<()> {
    config.validate()?;
    let store = open_store(&config).await?;
    store.migrate().await?;
    tracing::info!(backend = store.backend(), "migrations are up to date");
    store.close().await;
    Ok(())
}

async fn serve(config: hotplane::config::Config) -> anyhow::Result<()> {
    // Listening for signals before anything is bound: a SIGTERM during startup drains.
    let signal = hotplane::shutdown_signal();
    let app = Application::build(config).await?;
    app.run_until_stopped(async move {
        signal.await;
        // The first signal starts a graceful drain; a second one means "now".
        tokio::spawn(async {
            hotplane::shutdown_signal().await;
            tracing::warn!("second signal: exiting at once");
            std::process::exit(130);
        });
    })
    .await
}

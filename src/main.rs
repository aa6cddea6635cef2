//! The hotplane binary: parse config, set up logs, build the application, run it until a signal
//! (SIGTERM/SIGINT drain and stop; SIGHUP re-reads the config file). `hotplane ctl` and
//! `hotplane health` are answered first, by [`hotplane::ctl`] and [`hotplane::probe`], without
//! reading the config file.

use std::process::ExitCode;

use hotplane::{
    config::{Cli, Command},
    startup::{Application, open_store},
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    // `ctl` has a command line of its own: the server's settings (every one global, each with
    // its HOTPLANE_* variable) are neither parsed nor listed in its help.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|first| first == "ctl")
    {
        return hotplane::ctl::main(std::env::args_os().skip(1)).await;
    }
    let cli = Cli::parse_args();
    let command = cli.command.unwrap_or(Command::Serve);
    // The probe needs neither the config file nor logs nor a database: only an address. A
    // config file it cannot read (or a bad one) must not make a healthy server look sick.
    if let Command::Health(args) = &command {
        let server = hotplane::probe::ServerAddrs {
            listen: cli.config.listen,
            health_listen: cli.config.auth.health_listen,
        };
        return hotplane::probe::run(args, server).await;
    }
    let config = cli.config;
    // Logs start with the file's filter and format; `build` reads the file again as the live
    // config's first generation.
    let effective = match hotplane::config::live::startup_config(&config) {
        Ok((effective, _)) => effective,
        Err(e) => {
            eprintln!("hotplane: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(&effective.log_filter, effective.log_format) {
        eprintln!("hotplane: {e}");
        return ExitCode::from(2);
    }
    let result = match command {
        Command::Migrate => migrate(effective).await,
        Command::Serve => serve(config).await,
        Command::Health(_) => unreachable!("answered before the config was read"),
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
    let hangups = hotplane::Hangups::listen();
    let app = Application::build(config).await?;
    tokio::spawn(hotplane::reload_config_on_sighup(
        hangups,
        app.config_reloader(),
    ));
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

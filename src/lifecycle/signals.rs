//! Process signals (Unix; Ctrl-C elsewhere): SIGTERM and SIGINT start the graceful shutdown,
//! SIGHUP re-reads the config file. Each is listened for from the moment its handle is made, so
//! a signal that arrives during start-up is handled, not the default action (which kills).

use crate::{config::reload::ConfigReloader, engine};

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called, not
/// when the future is first polled: a signal that arrives between the two must start the
/// graceful shutdown, not kill the process with the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for {name}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                _ = wait(int, "SIGINT") => tracing::info!("SIGINT received"),
                _ = wait(term, "SIGTERM") => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received");
    }
}

/// SIGHUPs, listened for from the moment this is made: made before the application is built,
/// a SIGHUP during start-up (while the store migrates, say) waits here for the config reloader
/// instead of killing the process, which is the signal's default action.
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Starts listening (inside a Tokio runtime).
    pub fn listen() -> Hangups {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(s) => Hangups { signal: Some(s) },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; reload the config with Reload(TARGET_CONFIG)");
                    Hangups { signal: None }
                }
            }
        }
        #[cfg(not(unix))]
        Hangups {}
    }
}

/// Re-reads the config file on every SIGHUP, for as long as the process runs (one that came
/// during start-up included). A bad file is logged with every key at fault and counted in
/// status; it never stops the process.
pub async fn reload_config_on_sighup(hangups: Hangups, reloader: ConfigReloader) {
    #[cfg(unix)]
    {
        let Some(mut hup) = hangups.signal else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: re-reading the config file");
            // The outcome is logged, counted and announced by the reload itself.
            let _ = reloader
                .reload(engine::Source::Signal, false, "signal".into(), "SIGHUP")
                .await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (hangups, reloader);
        std::future::pending::<()>().await;
    }
}

//! hotplane: a gRPC control plane that owns hot, in-memory state (learned query patterns,
//! configuration, connections) and changes it without restarts, dropped requests or drift.
//!
//! Modules follow the data's path: `api` (thin gRPC handlers) → `engine` (the one place where
//! served state changes) → `store` (SQL). `normalize` and `snapshot` are pure logic.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod config;
pub mod config_file;
pub mod config_source;
pub mod engine;
pub mod events;
pub mod hits;
pub mod learn;
pub mod lifecycle;
pub mod live_config;
pub mod model;
pub mod normalize;
pub mod retry;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod telemetry;

/// Generated protobuf and gRPC code for `hotplane.v1`.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod pb {
    tonic::include_proto!("hotplane.v1");
    /// Encoded descriptor set of every hotplane proto (with comments), served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("hotplane_descriptor");
}

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
pub async fn reload_config_on_sighup(hangups: Hangups, reloader: startup::ConfigReloader) {
    #[cfg(unix)]
    {
        let Some(mut hup) = hangups.signal else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: re-reading the config file");
            // The outcome is logged, counted and announced by the reload itself.
            let _ = reloader.reload(engine::Source::Signal).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (hangups, reloader);
        std::future::pending::<()>().await;
    }
}

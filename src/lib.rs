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

/// Re-reads the config file on every SIGHUP, for as long as the process runs. A bad file is
/// logged with every key at fault and counted in status; it never stops the process.
pub async fn reload_config_on_sighup(reloader: startup::ConfigReloader) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload the config with Reload(TARGET_CONFIG)");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: re-reading the config file");
            // The outcome is logged, counted and announced by the reload itself.
            let _ = reloader.reload(engine::Source::Signal).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        std::future::pending::<()>().await;
    }
}

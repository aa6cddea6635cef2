//! gRPC health (`grpc.health.v1`): what probes and load balancers read.
//!
//! Every reported name (the overall `""` and each hotplane service) is SERVING exactly when the
//! first pattern load has succeeded and the replica is not draining. [`follow`] is the only
//! writer while serving, so the engine's readiness and the drain can never race each other;
//! the shutdown sequence sets NOT_SERVING once more on its way out.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tonic::transport::{
    Server,
    server::{Router, TcpIncoming},
};
use tonic_health::{
    ServingStatus,
    server::{HealthReporter, HealthService},
};
use tracing::{info, warn};

use super::Drain;
use crate::engine::Engine;

/// gRPC service names whose health is reported (besides the overall `""`).
pub const SERVICE_NAMES: [&str; 3] = [
    "hotplane.v1.HotReload",
    "hotplane.v1.Patterns",
    "hotplane.v1.Drain",
];

/// Binds the plaintext health-only listener (`--health-listen`), returning it and its address.
pub async fn bind(at: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(at)
        .await
        .with_context(|| format!("binding the health listener on {at} (--health-listen)"))?;
    let addr = listener
        .local_addr()
        .context("reading the health address")?;
    Ok((listener, addr))
}

/// A reporter with every name NOT_SERVING, as a process starts.
pub async fn reporter() -> HealthReporter {
    let health = HealthReporter::new();
    set(&health, ServingStatus::NotServing).await;
    health
}

/// Sets every reported name to `status`.
pub async fn set(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// The `grpc.health.v1.Health` service over `health`.
pub fn service(
    health: &HealthReporter,
) -> tonic_health::pb::health_server::HealthServer<HealthService> {
    tonic_health::pb::health_server::HealthServer::new(HealthService::from_health_reporter(
        health.clone(),
    ))
}

/// Serves `grpc.health.v1` alone, in plaintext, until the returned sender fires: for probes
/// that cannot speak TLS (`--health-listen`). Nothing else is reachable on this port.
pub fn serve_only(
    listener: TcpListener,
    health: &HealthReporter,
) -> (tokio::sync::oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router: Router = Server::builder().add_service(service(health));
    let task = tokio::spawn(async move {
        let served = router
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = stopped.await;
                },
            )
            .await;
        if let Err(e) = served {
            warn!(error = %e, "the plaintext health listener failed");
        }
    });
    (stop, task)
}

/// Keeps health in step with the engine and the drain until `stop`: SERVING exactly when the
/// first pattern load has succeeded and the replica is not draining.
pub async fn follow(
    engine: Engine,
    drain: Drain,
    health: HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    let mut ready = engine.ready();
    let mut draining = drain.subscribe();
    let mut last = None;
    loop {
        let serving = *ready.borrow_and_update() && !draining.borrow_and_update().draining;
        if last != Some(serving) {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set(&health, status).await;
            info!(
                serving,
                generation = engine.current().number,
                "health changed"
            );
            last = Some(serving);
        }
        tokio::select! {
            r = ready.changed() => if r.is_err() { return },
            r = draining.changed() => if r.is_err() { return },
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
    }
}

//! gRPC health (`grpc.health.v1`): what probes and load balancers read. Two meanings:
//!
//! - **Readiness**, the overall `""` and each hotplane service name ([`SERVICE_NAMES`]): SERVING
//!   exactly when the first pattern load has succeeded and the replica is not draining. [`follow`]
//!   is the only writer while serving, so the engine's readiness and the drain never race each
//!   other; the shutdown sequence sets NOT_SERVING once more on its way out. Point readiness
//!   probes and load balancers here.
//! - **Liveness**, the name [`LIVENESS`]: SERVING while the process runs and its engine is not
//!   wedged ([`crate::engine::Engine::wedged`]: its loader task died, or one load has run longer
//!   than `--liveness-load-timeout`). It stays SERVING before the first load, during a database
//!   outage and while draining, so a liveness probe never restarts a replica that is starting,
//!   waiting for its database or draining; [`watch_liveness`] writes it.

use std::{net::SocketAddr, time::Duration};

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

/// The health name liveness probes ask for.
pub const LIVENESS: &str = "liveness";

/// A reporter as a process starts: readiness NOT_SERVING, liveness SERVING.
pub async fn reporter() -> HealthReporter {
    let health = HealthReporter::new();
    set(&health, ServingStatus::NotServing).await;
    health
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    health
}

/// Sets every readiness name to `status` (liveness is [`watch_liveness`]'s).
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

/// Keeps [`LIVENESS`] in step with whether the engine is wedged, checking every quarter of
/// `limit` (at most every 5 s) until `stop`; `limit` zero turns the check off.
pub async fn watch_liveness(
    engine: Engine,
    limit: Duration,
    health: HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    if limit.is_zero() {
        return;
    }
    let every = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
        let wedged = engine.wedged(limit);
        if wedged.is_some() == live {
            live = wedged.is_none();
            let status = if live {
                info!("liveness SERVING again: the engine makes progress");
                ServingStatus::Serving
            } else {
                warn!(
                    reason = wedged.as_deref().unwrap_or_default(),
                    "liveness NOT_SERVING: the engine is wedged; a liveness probe will restart this process"
                );
                ServingStatus::NotServing
            };
            health.set_service_status(LIVENESS, status).await;
        }
    }
}

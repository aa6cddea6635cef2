//! The admin HTTP listener (`--admin-listen`, off by default): `GET /metrics` in the Prometheus
//! text format. It owns the listener and its router; what each route serves lives beside it
//! ([`metrics`] for `/metrics`), so another page adds a route to [`router`] and a module here.
//!
//! It never serves gRPC and never changes state. Off unless configured, since it has no
//! authentication of its own: bind it to an address only the scraper reaches (a pod IP that a
//! NetworkPolicy guards, or loopback behind a sidecar).

mod grpc;
pub mod metrics;
mod reloads;
mod status;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tracing::{info, warn};

pub use grpc::{GrpcMetrics, GrpcMetricsLayer, GrpcMetricsService};
pub use metrics::Metrics;
pub use status::StatusSource;

use crate::api::events::EventHub;

/// A bound, not yet serving, admin listener and the metrics it serves.
#[derive(Debug)]
pub struct Admin {
    listener: TcpListener,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
}

impl Admin {
    /// Binds `at` (port 0 allowed) and starts collecting metrics: `status` is read at each
    /// scrape, `hub` followed until `stop` turns true (the returned task).
    pub async fn bind(
        at: SocketAddr,
        status: StatusSource,
        hub: &EventHub,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<(Admin, JoinHandle<()>)> {
        let listener = TcpListener::bind(at).await.with_context(|| {
            format!(
                "binding the admin listener on {at}; check --admin-listen / HOTPLANE_ADMIN_LISTEN"
            )
        })?;
        let addr = listener
            .local_addr()
            .context("reading the admin listener's address")?;
        let (metrics, follower) = Metrics::start(status, hub, stop);
        Ok((
            Admin {
                listener,
                addr,
                metrics,
            },
            follower,
        ))
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The layer that records gRPC calls into these metrics.
    pub fn grpc_layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer::new(Some(self.metrics.grpc()))
    }

    /// Serves until `stop` turns true. It outlives the gRPC drain on purpose: a scrape during
    /// the drain shows it.
    pub fn serve(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let addr = self.addr;
        info!(%addr, "admin listening (/metrics)");
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(self.listener, router(self.metrics))
                .with_graceful_shutdown(shutdown)
                .await
            {
                warn!(%addr, error = %e, "the admin listener failed; /metrics is unavailable until restart");
            }
        })
    }
}

/// Every admin route.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
}

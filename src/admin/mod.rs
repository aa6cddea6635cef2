//! The admin HTTP listener (`--admin-listen`, off by default): `GET /metrics` in the Prometheus
//! text format, and the live status dashboard at `/` ([`dashboard`]). It owns the listener and
//! its router; what each route serves lives beside it ([`metrics`] for `/metrics`), so another
//! page adds a route to [`router`] and a module here.
//!
//! It never serves gRPC. `/metrics` has no authentication (scrapers): bind the listener where
//! only the scraper and operators reach it (a pod IP that a NetworkPolicy guards, or loopback
//! behind `kubectl port-forward`). The dashboard applies the gRPC port's credentials and scopes
//! itself, and changes state only through the gRPC handlers, for callers with `admin`.

pub mod dashboard;
mod grpc;
pub mod metrics;
mod reloads;
mod status;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tracing::{info, warn};

pub use dashboard::{Dashboard, DashboardParts};
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
    /// The dashboard, when wired ([`Admin::with_dashboard`]); without it only `/metrics`.
    dashboard: Option<Arc<Dashboard>>,
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
                dashboard: None,
            },
            follower,
        ))
    }

    /// Serves the dashboard at `/` too.
    pub fn with_dashboard(mut self, dashboard: Dashboard) -> Admin {
        self.dashboard = Some(Arc::new(dashboard));
        self
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
        let routes = if self.dashboard.is_some() {
            "/metrics, dashboard at /"
        } else {
            "/metrics"
        };
        info!(%addr, routes, "admin listening");
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            // The peer's address decides the dashboard's loopback rule.
            let app = router(self.metrics, self.dashboard)
                .into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(self.listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                warn!(%addr, error = %e, "the admin listener failed; /metrics is unavailable until restart");
            }
        })
    }
}

/// Every admin route: `/metrics`, and the dashboard's when given.
pub fn router(metrics: Arc<Metrics>, dashboard: Option<Arc<Dashboard>>) -> Router {
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    match dashboard {
        Some(d) => router.merge(dashboard::routes(d)),
        None => router,
    }
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
}

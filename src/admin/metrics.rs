//! The metrics registry behind `/metrics`: the gRPC server families (fed by the layer in
//! [`super::grpc`]), the reload families (fed from the status event hub, [`super::reloads`]) and
//! the status read at scrape time ([`super::status`]), encoded in the Prometheus text format
//! (0.0.4) by the official client library.

use std::{collections::HashMap, sync::Arc};

use prometheus_client::{encoding::prometheus_text, registry::Registry};
use tokio::{sync::watch, task::JoinHandle};

use super::{
    grpc::GrpcMetrics,
    reloads::ReloadMetrics,
    status::{StatusCollector, StatusSource},
};
use crate::api::events::EventHub;

/// The `Content-Type` of a scrape's answer.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Every metric this instance exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    grpc: Arc<GrpcMetrics>,
}

impl Metrics {
    /// Builds the registry and starts following `hub` (until `stop` turns true). Call it before
    /// the first load starts, so that load is counted too.
    pub fn start(
        status: StatusSource,
        hub: &EventHub,
        stop: watch::Receiver<bool>,
    ) -> (Arc<Metrics>, JoinHandle<()>) {
        let mut registry = Registry::default();
        let grpc = GrpcMetrics::register(&mut registry);
        let reloads = ReloadMetrics::register(&mut registry);
        // Subscribed here, synchronously: no event published after this returns is missed.
        let (_, rx, _) = hub.subscribe(0);
        let served: HashMap<i32, String> = status()
            .targets
            .iter()
            .filter_map(|t| Some((t.target, t.current.as_ref()?.content_hash.clone())))
            .collect();
        let follower = tokio::spawn(reloads.follow(rx, served, stop));
        registry.register_collector(Box::new(StatusCollector { status }));
        (Arc::new(Metrics { registry, grpc }), follower)
    }

    /// The gRPC server metrics, for [`super::GrpcMetricsLayer`].
    pub fn grpc(&self) -> Arc<GrpcMetrics> {
        Arc::clone(&self.grpc)
    }

    /// The exposition text of every metric, as of now.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoder error would be a bug in a label value.
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics failed; the scrape is incomplete");
        }
        out
    }
}

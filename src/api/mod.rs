//! The gRPC API layer: thin handlers that validate and translate requests, call the engine or
//! the store, and translate results back. No business logic lives here.

mod audit;
mod bus;
mod config_reload;
pub mod convert;
mod drain;
mod encoded;
mod error;
pub mod events;
mod hot_reload;
mod matching;
mod patterns;
mod status;
mod streams;
mod watch;
pub mod wire;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use audit::audit_status_pb;
pub use bus::bus_event_sink;
pub use drain::{DrainApi, drain_pb};
pub use error::{ApiError, ApiResult};
pub use hot_reload::HotReloadApi;
pub use patterns::PatternsApi;
pub use status::{generation_pb, status_pb as hot_reload_status};
pub use streams::StreamSlots;
pub use watch::WatchOptions;

use events::EventHub;

use crate::{config::live::LiveConfig, engine::Engine, hits::HitCounter, lifecycle::Drain};

/// Largest query accepted by MatchPattern and per item of BatchMatchPatterns, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Most queries in one BatchMatchPatterns call.
pub const MAX_BATCH_QUERIES: usize = 1000;
/// Longest free-text reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;
/// Largest ListPatterns page.
pub const MAX_PAGE_SIZE: i32 = 1000;
/// ListPatterns page size when none is given.
pub const DEFAULT_PAGE_SIZE: i32 = 100;
/// Largest decoded request message (a full batch of maximum-size queries fits).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The swap engine (served patterns and reloads).
    pub engine: Engine,
    /// The runtime settings (normalizer, learning rules, ...) and the config file reload.
    pub live: Arc<LiveConfig>,
    /// The config reload (`Reload(TARGET_CONFIG)`; SIGHUP runs the same one).
    pub config_reloader: crate::config::reload::ConfigReloader,
    /// Hit counters.
    pub hits: Arc<HitCounter>,
    /// This process's unique id.
    pub instance_id: String,
    /// When this process started.
    pub started_at: DateTime<Utc>,
    /// How to open a store (pool size, schema, ...): the template for `Reload(TARGET_STORE)`.
    pub store_options: crate::store::StoreOptions,
    /// Drain state and in-flight accounting.
    pub drain: Drain,
    /// Default wait for `StartDrain(wait)` and for shutdown.
    pub shutdown_grace: std::time::Duration,
    /// Status events for WatchStatus streams.
    pub events: EventHub,
    /// WatchStatus stream settings.
    pub watch: WatchOptions,
    /// Turns true when the server is about to close: streams send a final event and end.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The Redis bus (disabled without a Redis URL): announces this replica's changes.
    pub bus: crate::bus::Bus,
    /// The audit trail's recorder (the engine holds a clone and records every load).
    pub audit: crate::audit::Auditor,
    /// Audit rows older than this many days are deleted (0: never), for status.
    pub audit_retention_days: u32,
    /// Open WatchStatus streams per caller, bounded.
    pub watch_slots: StreamSlots,
    /// Largest encoded MatchPattern / BatchMatchPatterns answer (`--max-response-bytes`).
    pub max_response_bytes: usize,
}

/// Queues the announcement of a change this replica has applied and serves (it is published
/// after the answer, so a slow Redis never delays it), and returns the error text for the
/// response's `publish_error`: empty when queued or when there is no bus, the reason when the
/// queue is full. The bus counts and logs failures, later ones too; the change stands either way.
async fn publish_change(state: &AppState, pattern_id: Option<i64>) -> String {
    let revision = state.engine.current().store_revision;
    match state.bus.announce(pattern_id, revision).await {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

/// Rejects an over-long free-text reason.
fn check_reason(reason: &str) -> ApiResult<()> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Rejects ids that cannot exist.
fn check_id(id: i64) -> ApiResult<()> {
    if id <= 0 {
        return Err(ApiError::invalid("id", "must be a positive row id"));
    }
    Ok(())
}

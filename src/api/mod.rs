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
pub use drain::{DrainApi, drain_pb};
pub use error::{ApiError, ApiResult};
pub use hot_reload::HotReloadApi;
pub use patterns::PatternsApi;
pub use status::{generation_pb, status_pb as hot_reload_status};
pub use streams::StreamSlots;
pub use watch::WatchOptions;

use events::EventHub;

use crate::{
    audit::Auditor,
    broadcast::Fleetwide,
    bus::Bus,
    config::{live::LiveConfig, reload::ConfigReloader},
    engine::Engine,
    hits::HitCounter,
    lifecycle::Drain,
    pb,
    store::StoreOptions,
    writes::PatternWrites,
};

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

/// Every subsystem's state, read-only: what GetStatus, WatchStatus snapshots and the drain
/// events show. Each field is a cheap handle.
#[derive(Debug, Clone)]
pub struct StatusSources {
    /// The swap engine: the served generation, its health, the store.
    pub engine: Engine,
    /// The runtime settings and the config target's health.
    pub live: Arc<LiveConfig>,
    /// Drain state and in-flight accounting.
    pub drain: Drain,
    /// The Redis bus and the fleet view (disabled without a Redis URL).
    pub bus: Bus,
    /// Hit counters (their flush status).
    pub hits: Arc<HitCounter>,
    /// The audit trail's queue (its counters).
    pub audit: Auditor,
    /// Audit rows older than this many days are deleted (0: never).
    pub audit_retention_days: u32,
    /// This process's unique id.
    pub instance_id: String,
    /// When this process started.
    pub started_at: DateTime<Utc>,
}

/// What the HotReload service drives: reloads of every target, rollbacks, status and
/// WatchStatus streams.
#[derive(Debug)]
pub struct ReloadState {
    /// The swap engine.
    pub engine: Engine,
    /// The bus: swapped by `Reload(TARGET_BUS)`.
    pub bus: Bus,
    /// Reloads and rollbacks, told to the fleet with `broadcast`.
    pub fleetwide: Fleetwide,
    /// The config reload (`Reload(TARGET_CONFIG)`; SIGHUP runs the same one).
    pub config_reloader: ConfigReloader,
    /// How to open a store (pool size, schema, ...): the template for `Reload(TARGET_STORE)`.
    pub store_options: StoreOptions,
    /// Status events for WatchStatus streams.
    pub events: EventHub,
    /// WatchStatus stream settings.
    pub watch: WatchOptions,
    /// Open WatchStatus streams per caller, bounded.
    pub watch_slots: StreamSlots,
    /// Turns true when the server is about to close: streams send a final event and end.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// What status shows.
    pub status: StatusSources,
}

/// What the Patterns service drives: matching, learning and the pattern admin RPCs.
#[derive(Debug)]
pub struct PatternsState {
    /// The swap engine (the served snapshot, the store writes go to).
    pub engine: Engine,
    /// The runtime settings: normalizer, learning rules.
    pub live: Arc<LiveConfig>,
    /// Hit counters.
    pub hits: Arc<HitCounter>,
    /// The pattern writes (learn, approve, disable, delete).
    pub writes: PatternWrites,
    /// Largest encoded MatchPattern / BatchMatchPatterns answer (`--max-response-bytes`).
    pub max_response_bytes: usize,
}

/// What the Drain service drives.
#[derive(Debug)]
pub struct DrainState {
    /// Drain state and in-flight accounting.
    pub drain: Drain,
    /// Default wait for `StartDrain(wait)`.
    pub shutdown_grace: std::time::Duration,
}

/// A `Reload` field that applies to some targets only, and whether a request sets it.
#[derive(Debug, Clone, Copy)]
enum ReloadField {
    PatternId,
    Full,
    ValidateOnly,
    /// `broadcast` or `wait_for_fleet`.
    Broadcast,
    DatabaseUrl,
    RedisUrl,
}

impl ReloadField {
    fn name(self) -> &'static str {
        match self {
            ReloadField::PatternId => "pattern_id",
            ReloadField::Full => "full",
            ReloadField::ValidateOnly => "validate_only",
            ReloadField::Broadcast => "broadcast",
            ReloadField::DatabaseUrl => "database_url",
            ReloadField::RedisUrl => "redis_url",
        }
    }

    fn is_set(self, req: &pb::ReloadRequest) -> bool {
        match self {
            ReloadField::PatternId => req.pattern_id.is_some(),
            ReloadField::Full => req.full,
            ReloadField::ValidateOnly => req.validate_only,
            ReloadField::Broadcast => req.broadcast || req.wait_for_fleet.is_some(),
            ReloadField::DatabaseUrl => !req.database_url.is_empty(),
            ReloadField::RedisUrl => !req.redis_url.is_empty(),
        }
    }
}

/// Checks a `Reload` of `target`: its reason, and none of `fields` (which do not apply to it)
/// set; the first one set is named.
fn check_reload_fields(
    req: &pb::ReloadRequest,
    target: pb::Target,
    fields: &[ReloadField],
) -> ApiResult<()> {
    check_reason(&req.reason)?;
    match fields.iter().find(|f| f.is_set(req)) {
        Some(f) => Err(ApiError::invalid(
            f.name(),
            format!("does not apply to {}", target.as_str_name()),
        )),
        None => Ok(()),
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

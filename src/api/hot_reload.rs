//! HotReload service handlers: translate Reload / GetStatus to engine calls and back.

use std::{pin::Pin, sync::Arc, time::Instant};

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{
    ReloadState, check_reason, check_reload_fields, convert,
    error::{ApiError, ApiResult, Reason},
    status::{generation_pb, mode_pb, status_pb},
};
use crate::{
    audit::{self, Origin},
    broadcast::{FleetError, Tell},
    engine::{LoadReport, LoadRequest, Scope, Source, StoreSwapError},
    pb::{self, hot_reload_server::HotReload},
};

/// HotReload service.
#[derive(Debug, Clone)]
pub struct HotReloadApi {
    state: Arc<ReloadState>,
}

impl HotReloadApi {
    /// Handlers over the service's state.
    pub fn new(state: Arc<ReloadState>) -> Self {
        HotReloadApi { state }
    }

    /// `Reload(TARGET_STORE)`: checks the request and asks the engine to swap to
    /// `database_url` (or the current URL) blue/green; any failure keeps the current store
    /// serving and says why.
    async fn reload_store(
        &self,
        req: pb::ReloadRequest,
        started: Instant,
        caller: String,
    ) -> ApiResult<pb::ReloadResponse> {
        use super::ReloadField::*;
        let not_for_store = [PatternId, ValidateOnly, Broadcast, RedisUrl];
        check_reload_fields(&req, pb::Target::Store, &not_for_store)?;
        let mut opts = self.state.store_options.clone();
        if !req.database_url.is_empty() {
            opts.url = req.database_url.clone();
        }
        let reason = if req.reason.is_empty() {
            "store swap".to_owned()
        } else {
            req.reason
        };
        let report = self
            .state
            .engine
            .swap_store(&opts, reason, Origin::reload(caller))
            .await
            .map_err(|e| {
                // `stage` is the STORE_SWAP_FAILED metadata a client reads.
                let stage = match &e {
                    StoreSwapError::InvalidUrl(m) => {
                        return ApiError::invalid("database_url", m.clone());
                    }
                    StoreSwapError::Connect(_) => "connect",
                    StoreSwapError::Migrate(_) => "migrate",
                    StoreSwapError::Load(_) => "load",
                };
                ApiError::reasoned(
                    Reason::StoreSwapFailed,
                    e.to_string(),
                    vec![("stage", stage.to_owned())],
                )
            })?;
        let mut response = reload_response(&report, false, false, started);
        response.target = pb::Target::Store.into();
        Ok(response)
    }
}

/// A fleet-wide change's failure as answered: a reload of a row the store does not have is
/// PATTERN_NOT_FOUND.
fn fleet_error(e: FleetError) -> ApiError {
    match e {
        FleetError::Load(e) => e.into(),
        FleetError::Absent(id) => ApiError::pattern_not_found(id, e.to_string()),
    }
}

/// NOT_FOUND when the reload named a row the store does not have (the load itself ran: were
/// the id served before, it no longer is).
fn check_present(report: &LoadReport, pattern_id: Option<i64>) -> ApiResult<()> {
    match pattern_id {
        Some(id) if report.absent.contains(&id) => Err(fleet_error(FleetError::Absent(id))),
        _ => Ok(()),
    }
}

/// Checks a Reload request and turns it into the scope to load.
fn reload_scope(req: &pb::ReloadRequest) -> ApiResult<Scope> {
    match pb::Target::try_from(req.target) {
        Ok(pb::Target::Patterns) => {}
        Ok(pb::Target::Unspecified) => {
            return Err(ApiError::invalid("target", "is required (TARGET_PATTERNS)"));
        }
        Ok(other) => {
            return Err(ApiError::Unimplemented(format!(
                "reloading {} is not implemented; TARGET_PATTERNS, TARGET_STORE, TARGET_BUS \
                 and TARGET_CONFIG can be reloaded",
                other.as_str_name()
            )));
        }
        Err(_) => return Err(ApiError::invalid("target", "unknown target value")),
    }
    check_reason(&req.reason)?;
    if req.broadcast && req.validate_only {
        return Err(ApiError::invalid(
            "broadcast",
            "cannot be combined with validate_only (nothing is swapped to announce)",
        ));
    }
    if !req.database_url.is_empty() {
        return Err(ApiError::invalid(
            "database_url",
            "only applies to TARGET_STORE",
        ));
    }
    if !req.redis_url.is_empty() {
        return Err(ApiError::invalid("redis_url", "only applies to TARGET_BUS"));
    }
    match req.pattern_id {
        Some(id) if id <= 0 => Err(ApiError::invalid("pattern_id", "must be a positive row id")),
        Some(_) if req.full => Err(ApiError::invalid(
            "full",
            "cannot be combined with pattern_id",
        )),
        Some(id) => Ok(Scope::Ids(vec![id])),
        None if req.full => Ok(Scope::Full),
        None => Ok(Scope::Delta),
    }
}

fn reload_response(
    report: &LoadReport,
    coalesced: bool,
    validate_only: bool,
    started: Instant,
) -> pb::ReloadResponse {
    pb::ReloadResponse {
        target: pb::Target::Patterns.into(),
        generation_before: report.generation_before,
        generation_after: report.generation_after,
        changed: report.counts.any() || report.generation_before == 0,
        added: report.counts.added,
        updated: report.counts.updated,
        removed: report.counts.removed,
        duration: Some(convert::duration(started.elapsed())),
        mode: mode_pb(report.mode).into(),
        validate_only,
        coalesced,
        current: Some(generation_pb(&report.current)),
        publish_error: String::new(),
        fleet: Vec::new(),
        fleet_converged: false,
        fleet_error: String::new(),
        // Fields of other targets.
        ..Default::default()
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl HotReload for HotReloadApi {
    #[instrument(skip_all, fields(target = req.get_ref().target, pattern_id = ?req.get_ref().pattern_id))]
    async fn reload(
        &self,
        req: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let started = Instant::now();
        let caller = audit::caller_of(&req);
        let req = req.into_inner();
        if req.target == pb::Target::Store as i32 {
            return Ok(Response::new(
                self.reload_store(req, started, caller).await?,
            ));
        }
        if req.target == pb::Target::Bus as i32 {
            let response = super::bus::reload_bus(&self.state, req, started, caller).await?;
            return Ok(Response::new(response));
        }
        if req.target == pb::Target::Config as i32 {
            let response = super::config_reload::reload(&self.state, req, started, caller).await?;
            return Ok(Response::new(response));
        }
        let scope = reload_scope(&req)?;
        let wait = super::bus::fleet_wait(&req)?;
        if req.broadcast && !self.state.bus.enabled() {
            return Err(ApiError::reasoned(
                Reason::BusNotConfigured,
                "broadcast needs the Redis bus: start hotplane with --redis-url \
                 (HOTPLANE_REDIS_URL), or reload each replica",
                vec![],
            )
            .into());
        }
        let engine = &self.state.engine;
        let response = if req.validate_only {
            let report = engine.validate(scope).await.map_err(ApiError::from)?;
            check_present(&report, req.pattern_id)?;
            reload_response(&report, false, true, started)
        } else {
            let request = LoadRequest {
                scope,
                source: Source::Grpc,
                reason: req.reason,
            };
            let tell = Tell {
                broadcast: req.broadcast,
                wait,
            };
            let (report, coalesced, told) = self
                .state
                .fleetwide
                .reload(request, req.pattern_id, Origin::reload(caller), tell)
                .await
                .map_err(fleet_error)?;
            let mut response = reload_response(&report, coalesced, false, started);
            (
                response.publish_error,
                response.fleet,
                response.fleet_converged,
                response.fleet_error,
            ) = super::bus::told_fields(told);
            response
        };
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(to_generation = req.get_ref().to_generation))]
    async fn rollback(
        &self,
        req: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let caller = audit::caller_of(&req);
        let req = req.into_inner();
        match pb::Target::try_from(req.target) {
            Ok(pb::Target::Patterns) => {}
            Ok(pb::Target::Unspecified) => {
                return Err(ApiError::invalid("target", "is required (TARGET_PATTERNS)").into());
            }
            _ => {
                return Err(
                    ApiError::invalid("target", "only TARGET_PATTERNS can be rolled back").into(),
                );
            }
        }
        check_reason(&req.reason)?;
        let wait = super::bus::check_rollback(&self.state.bus, &req)?;
        let reason = if req.reason.is_empty() {
            "rollback".to_owned()
        } else {
            req.reason
        };
        let tell = Tell {
            broadcast: req.broadcast,
            wait,
        };
        let (report, told) = self
            .state
            .fleetwide
            .rollback(req.to_generation, reason, Origin::reload(caller), tell)
            .await
            .map_err(fleet_error)?;
        let mut response = pb::RollbackResponse {
            generation_before: report.generation_before,
            current: Some(generation_pb(&report.current)),
            pinned: true,
            ..Default::default()
        };
        (
            response.publish_error,
            response.fleet,
            response.fleet_converged,
            response.fleet_error,
        ) = super::bus::told_fields(told);
        Ok(Response::new(response))
    }

    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        Ok(Response::new(status_pb(&self.state.status)))
    }

    type WatchStatusStream = WatchStream;

    async fn watch_status(
        &self,
        req: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let slot = self.state.watch_slots.acquire(&audit::caller_of(&req))?;
        let stream = super::watch::open(
            Arc::clone(&self.state),
            req.into_inner(),
            self.state.watch,
            slot,
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let page = super::audit::list_audit(&self.state.engine, req.get_ref()).await?;
        Ok(Response::new(page))
    }
}

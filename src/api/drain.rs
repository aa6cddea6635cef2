//! Drain service handlers: start/stop draining and report in-flight work. The state and the
//! counting live in `lifecycle`; health follows the drain state (see `startup`).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::warn;

use super::{
    DrainState, check_reason, convert,
    error::{ApiError, Reason},
};
use crate::{
    audit,
    engine::Source,
    lifecycle::DrainSnapshot,
    pb::{self, drain_server::Drain},
};

/// Drain service.
#[derive(Debug, Clone)]
pub struct DrainApi {
    state: Arc<DrainState>,
}

impl DrainApi {
    /// Handlers over the service's state.
    pub fn new(state: Arc<DrainState>) -> Self {
        DrainApi { state }
    }
}

/// Status view of the drain state.
pub fn drain_pb(s: &DrainSnapshot) -> pb::DrainStatus {
    pb::DrainStatus {
        draining: s.draining,
        since: s.since.map(convert::timestamp),
        reason: s.reason.clone(),
        in_flight_requests: s.in_flight_requests,
        open_streams: s.open_streams,
    }
}

#[tonic::async_trait]
impl Drain for DrainApi {
    async fn start_drain(
        &self,
        req: Request<pb::StartDrainRequest>,
    ) -> Result<Response<pb::StartDrainResponse>, Status> {
        let caller = audit::caller_of(&req);
        let req = req.into_inner();
        check_reason(&req.reason)?;
        let grace = match &req.grace {
            None => self.state.shutdown_grace,
            Some(d) => convert::std_duration(d)
                .ok_or_else(|| ApiError::invalid("grace", "must be a non-negative duration"))?,
        };
        let reason = if req.reason.is_empty() {
            "StartDrain"
        } else {
            &req.reason
        };
        self.state.drain.start(reason, &caller, Source::Grpc);
        let (completed, still_running) = if req.wait {
            let (done, still) = self.state.drain.wait_idle(grace).await;
            if !done {
                warn!(
                    ?still,
                    grace_ms = grace.as_millis() as u64,
                    "drain grace expired with work running"
                );
            }
            (done, still)
        } else {
            (false, Vec::new())
        };
        Ok(Response::new(pb::StartDrainResponse {
            status: Some(drain_pb(&self.state.drain.snapshot())),
            completed,
            still_running,
        }))
    }

    async fn stop_drain(
        &self,
        req: Request<pb::StopDrainRequest>,
    ) -> Result<Response<pb::StopDrainResponse>, Status> {
        self.state
            .drain
            .stop(&audit::caller_of(&req))
            .map_err(|m| ApiError::reasoned(Reason::DrainFinal, m, vec![]))?;
        Ok(Response::new(pb::StopDrainResponse {
            status: Some(drain_pb(&self.state.drain.snapshot())),
        }))
    }

    async fn get_drain_status(
        &self,
        _req: Request<pb::GetDrainStatusRequest>,
    ) -> Result<Response<pb::GetDrainStatusResponse>, Status> {
        Ok(Response::new(pb::GetDrainStatusResponse {
            status: Some(drain_pb(&self.state.drain.snapshot())),
        }))
    }
}

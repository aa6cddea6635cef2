//! Drain service: designed in the API now, implemented by the lifecycle work (issue 4).

use tonic::{Request, Response, Status};

use crate::pb::{self, drain_server::Drain};

/// Answers every Drain RPC with UNIMPLEMENTED until drain lands.
#[derive(Debug, Default)]
pub struct DrainApi;

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "Drain.{rpc} is not implemented yet (it lands with the lifecycle work, issue 4); \
         SIGTERM already shuts down gracefully"
    ))
}

#[tonic::async_trait]
impl Drain for DrainApi {
    async fn start_drain(
        &self,
        _req: Request<pb::StartDrainRequest>,
    ) -> Result<Response<pb::StartDrainResponse>, Status> {
        Err(not_yet("StartDrain"))
    }

    async fn stop_drain(
        &self,
        _req: Request<pb::StopDrainRequest>,
    ) -> Result<Response<pb::StopDrainResponse>, Status> {
        Err(not_yet("StopDrain"))
    }

    async fn get_drain_status(
        &self,
        _req: Request<pb::GetDrainStatusRequest>,
    ) -> Result<Response<pb::GetDrainStatusResponse>, Status> {
        Err(not_yet("GetDrainStatus"))
    }
}

//! `drain start|stop|status`: taking a replica out of rotation and back (the Drain service).

use std::time::Duration;

use clap::Subcommand;

use super::{
    Ctx,
    error::{CtlError, Exit},
    json::to_json,
    output::drain_text,
    state::proto_duration,
};
use crate::pb;

/// `drain start|stop|status`.
#[derive(Debug, Clone, Subcommand)]
pub enum DrainAction {
    /// Start draining: health goes NOT_SERVING, new work is refused, running work finishes.
    Start {
        /// Why (shown in status, health and logs).
        #[arg(long, default_value = "hotplane ctl")]
        reason: String,
        /// Return only when running work reached zero or the grace expired (exit 1 then).
        #[arg(long)]
        wait: bool,
        /// With --wait: how long at most (default: the server's shutdown grace).
        #[arg(long, value_name = "DURATION", requires = "wait", value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
    },
    /// Stop draining and serve again.
    Stop,
    /// The drain state and the work running now.
    Status,
}

/// `drain start|stop|status`.
pub async fn drain(ctx: &Ctx, action: DrainAction) -> Result<Exit, CtlError> {
    let mut client = ctx.clients.drain.clone();
    match action {
        DrainAction::Start {
            reason,
            wait,
            grace,
        } => {
            // The server's own grace applies when none is given: allow a generous minute.
            let extra = if wait {
                grace.unwrap_or(Duration::from_secs(60))
            } else {
                Duration::ZERO
            };
            let req = pb::StartDrainRequest {
                reason,
                grace: proto_duration(grace),
                wait,
            };
            let r = client
                .start_drain(ctx.request(req, extra))
                .await?
                .into_inner();
            let text = || {
                let mut out = format!("{}\n", drain_text(r.status.as_ref()));
                if wait {
                    out.push_str(&if r.completed {
                        "running work finished\n".to_owned()
                    } else {
                        format!(
                            "still running at the end of the grace: {}\n",
                            r.still_running.join(", ")
                        )
                    });
                }
                out
            };
            ctx.answer(text, || to_json(&r, "hotplane.v1.StartDrainResponse"))?;
            Ok(if wait && !r.completed {
                Exit::Refused
            } else {
                Exit::Ok
            })
        }
        DrainAction::Stop => {
            let r = client
                .stop_drain(ctx.request(pb::StopDrainRequest {}, Duration::ZERO))
                .await?
                .into_inner();
            ctx.answer(
                || drain_text(r.status.as_ref()),
                || to_json(&r, "hotplane.v1.StopDrainResponse"),
            )?;
            Ok(Exit::Ok)
        }
        DrainAction::Status => {
            let r = client
                .get_drain_status(ctx.request(pb::GetDrainStatusRequest {}, Duration::ZERO))
                .await?
                .into_inner();
            ctx.answer(
                || drain_text(r.status.as_ref()),
                || to_json(&r, "hotplane.v1.GetDrainStatusResponse"),
            )?;
            Ok(Exit::Ok)
        }
    }
}

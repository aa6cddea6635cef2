//! Reloads and rollbacks for the whole fleet (`Reload` and `Rollback` with `broadcast`): the one
//! owner of their sequence. Always in this order:
//!
//! 1. the local change, through the engine (audited under the caller's origin): this replica
//!    serves it before anyone is told;
//! 2. a reload that named a row the store does not have stops here ([`FleetError::Absent`]):
//!    nothing is announced for it;
//! 3. with `broadcast`, the announcement is queued on the bus: a `reload` (of the row, or of
//!    whatever changed) or a `rollback` naming the content hash now served;
//! 4. with a wait, the fleet's heartbeats are followed until every live member serves the same
//!    store position (reload) or content (rollback), or the wait ends.
//!
//! Without `broadcast` only step 1 (and 2) runs. The API checks the request (the bus must be
//! configured for `broadcast`, the wait bounded) and translates the answer.

use std::time::Duration;

use crate::{
    audit::Origin,
    bus::{Bus, fleet::FleetWait},
    engine::{Engine, LoadError, LoadReport, LoadRequest},
    writes::announce_served,
};

/// Whether and how to tell the fleet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tell {
    /// Announce the change on the bus.
    pub broadcast: bool,
    /// Then wait this long, at most, for every live member to serve it.
    pub wait: Option<Duration>,
}

/// What telling the fleet gave.
#[derive(Debug, Default)]
pub struct Told {
    /// Why the announcement was not queued (`None`: queued, or not asked).
    pub publish_error: Option<String>,
    /// The fleet as the wait left it (`None`: no wait asked, or no fleet to read).
    pub fleet: Option<FleetWait>,
}

/// Why a fleet-wide change failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The local change failed: nothing was announced.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The reload ran, but the row it named is not in the store (were it served before, it
    /// no longer is): nothing was announced.
    #[error("pattern id {0} does not exist in the store: nothing is served under it")]
    Absent(i64),
}

/// Fleet-wide reloads and rollbacks (cheap to clone).
#[derive(Debug, Clone)]
pub struct Fleetwide {
    engine: Engine,
    bus: Bus,
}

impl Fleetwide {
    /// Changes served by `engine`, announced on `bus`.
    pub fn new(engine: Engine, bus: Bus) -> Fleetwide {
        Fleetwide { engine, bus }
    }

    /// Reloads (`pattern_id`: the row `request` names, if any), then tells the fleet. The load's
    /// report, whether it was served by a load another request started, and what telling gave.
    pub async fn reload(
        &self,
        request: LoadRequest,
        pattern_id: Option<i64>,
        origin: Origin,
        tell: Tell,
    ) -> Result<(LoadReport, bool, Told), FleetError> {
        let (report, coalesced) = self.engine.reload(request, Some(origin)).await?;
        if let Some(id) = pattern_id
            && report.absent.contains(&id)
        {
            return Err(FleetError::Absent(id));
        }
        let mut told = Told::default();
        if tell.broadcast {
            told.publish_error = announce_served(&self.bus, &self.engine, pattern_id).await;
        }
        if let Some(wait) = tell.wait
            && let Some(position) = &report.current.cursor
        {
            told.fleet = self.bus.wait_for_fleet(position, wait).await;
        }
        Ok((report, coalesced, told))
    }

    /// Rolls back to retained generation `to` (0: the previous one) and pins it, then tells the
    /// fleet the content hash now served.
    pub async fn rollback(
        &self,
        to: u64,
        reason: String,
        origin: Origin,
        tell: Tell,
    ) -> Result<(LoadReport, Told), FleetError> {
        let report = self.engine.rollback(to, reason, origin).await?;
        let mut told = Told::default();
        if tell.broadcast {
            let hash = report.current.snapshot.content_hash();
            let revision = report.current.store_revision;
            told.publish_error = self
                .bus
                .announce_rollback(&hash, revision)
                .await
                .err()
                .map(|e| e.to_string());
            if let Some(wait) = tell.wait {
                told.fleet = self.bus.wait_for_content(&hash, wait).await;
            }
        }
        Ok((report, told))
    }
}

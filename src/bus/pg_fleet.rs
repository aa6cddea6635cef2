//! Fleet membership for the PostgreSQL bus: a table instead of Redis keys.
//!
//! `hotplane_fleet` (in the store's schema, so one fleet per schema) holds one row per instance:
//! its [`Member`] state as JSON, `last_seen`, and `expires_at` = `last_seen` + its
//! `--fleet-ttl`, both by the database's clock. The heartbeat upserts our row and reads the
//! rows not expired; rows that did expire (a crashed instance) are deleted by the heartbeat
//! that notices. A stopping instance deletes its row. What is read, compared and waited for is
//! the Redis registry's ([`fleet`]): the same members, view, events and waits.
//!
//! Every statement goes through the engine's current store, so a store swap moves the fleet
//! along, and is bounded by `--bus-timeout`: an unreachable database must not delay shutdown.

use std::{sync::Arc, time::Duration};

use sqlx::types::Json;
use tokio::sync::watch;
use tracing::warn;

use super::{
    fleet::{self, FleetTiming, MAX_MEMBERS, Member, Next, Reporter, Schedule},
    pg::{PgBus, postgres},
};
use crate::engine::Engine;

impl PgBus {
    /// Reads the live members (sorted by id) and whether some were left out.
    pub(super) async fn read_fleet(&self) -> Result<(Vec<Member>, bool), String> {
        let store = self.engine.store();
        let (pool, _) = postgres(&store)?;
        let read = sqlx::query_scalar::<_, Json<Member>>(
            "SELECT state FROM hotplane_fleet WHERE expires_at > now() \
             ORDER BY instance_id COLLATE \"C\" LIMIT $1",
        )
        .bind(MAX_MEMBERS as i64 + 1)
        .fetch_all(pool);
        let rows = self.bounded("reading the fleet", read).await?;
        let mut members: Vec<Member> = rows.into_iter().map(|Json(m)| m).collect();
        // The order `fleet` compares lists in, whatever the database's collation.
        members.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        let truncated = members.len() > MAX_MEMBERS;
        members.truncate(MAX_MEMBERS);
        Ok((members, truncated))
    }

    /// Upserts `me`, live for `ttl`, and deletes the rows that expired.
    async fn beat(&self, me: &Member, ttl: Duration) -> Result<(), String> {
        let store = self.engine.store();
        let (pool, _) = postgres(&store)?;
        let upsert = sqlx::query(
            "INSERT INTO hotplane_fleet (instance_id, state, last_seen, expires_at) \
             VALUES ($1, $2, now(), now() + $3 * interval '1 millisecond') \
             ON CONFLICT (instance_id) DO UPDATE SET state = EXCLUDED.state, \
                 last_seen = EXCLUDED.last_seen, expires_at = EXCLUDED.expires_at",
        )
        .bind(&me.instance_id)
        .bind(Json(me))
        .bind(ttl.as_millis() as f64)
        .execute(pool);
        self.bounded("writing this instance's fleet row", upsert)
            .await?;
        let expired =
            sqlx::query("DELETE FROM hotplane_fleet WHERE expires_at <= now()").execute(pool);
        // Best effort: the next heartbeat (of any instance) retries.
        let _ = self.bounded("deleting expired fleet rows", expired).await;
        Ok(())
    }

    /// Deletes our row (at shutdown).
    async fn forget(&self, id: &str) -> Result<(), String> {
        let store = self.engine.store();
        let (pool, _) = postgres(&store)?;
        let delete = sqlx::query("DELETE FROM hotplane_fleet WHERE instance_id = $1")
            .bind(id)
            .execute(pool);
        self.bounded("removing this instance from the fleet", delete)
            .await
            .map(drop)
    }

    /// Runs a statement within `--bus-timeout`, flattening both failures into text.
    async fn bounded<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, String> {
        let limit = self.opts.timeout;
        match tokio::time::timeout(limit, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!("{what}: no answer within {limit:?}")),
        }
    }
}

/// Heartbeats on the [`Schedule`] until `stop`, then deletes this instance's row.
pub(super) async fn run(
    bus: Arc<PgBus>,
    reporter: Reporter,
    engine: Engine,
    timing: watch::Receiver<FleetTiming>,
    stop: watch::Receiver<bool>,
) {
    let mut schedule = Schedule::new(&engine, &bus.fleet_kick, timing, stop);
    loop {
        let ttl = match schedule.next().await {
            Next::Beat(ttl) => ttl,
            Next::Stop => break,
            Next::EngineGone => return,
        };
        let beat = async {
            let result = match bus.beat(&reporter(), ttl).await {
                Ok(()) => bus.read_fleet().await,
                Err(e) => Err(e),
            };
            fleet::record(&bus.fleet, result, |e| bus.emit(e));
        };
        if !schedule.during(beat).await {
            break;
        }
    }
    if bus.forget(&reporter().instance_id).await.is_err() {
        warn!(
            "could not remove this instance from the fleet table; it drops out after --fleet-ttl"
        );
    }
}

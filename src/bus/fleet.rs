//! Fleet membership over Redis: every instance heartbeats its state to a key of its own with a
//! TTL, so the live instances are exactly the keys that exist, and any instance can list them and
//! tell whether they serve the same thing.
//!
//! Keys (one fleet per bus channel): `<channel>:fleet` is a set of instance ids, and
//! `<channel>:fleet:<instance id>` holds that instance's JSON state; both expire after
//! `--fleet-ttl` unless refreshed. Reading
//! takes the set (no `SCAN` of a shared keyspace) and the states in one `MGET`; ids whose state
//! expired (a crashed instance) are removed from the set by whoever notices. A stopping instance
//! deletes its own key, so nobody waits for it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast::error::RecvError, watch};
use tracing::{info, warn};

use super::{Shared, link::Link};
use crate::engine::{Engine, EventKind};

/// Most members listed (the rest are left out, and the view says so).
pub const MAX_MEMBERS: usize = 1000;

/// One instance's state, as it heartbeats it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its unique instance id.
    pub instance_id: String,
    /// Where clients reach it (`--advertise-addr`, else its bound address).
    pub addr: String,
    /// Pattern generation served.
    pub generation: u64,
    /// Hash of the served patterns.
    pub content_hash: String,
    /// Store revision the served patterns reflect.
    pub store_revision: i64,
    /// Patterns served.
    pub item_count: u64,
    /// Whether it is draining.
    pub draining: bool,
    /// Its last pattern load error, if the last load failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it wrote this state, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// Produces this instance's current state for a heartbeat.
pub type Reporter = Arc<dyn Fn() -> Member + Send + Sync>;

/// The live instances, as last read.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    /// Members, by instance id.
    pub members: Vec<Member>,
    /// When the view was read.
    pub read_at: Option<DateTime<Utc>>,
    /// Why the last heartbeat or read failed (the members are then the last known ones).
    pub error: Option<String>,
    /// More than [`MAX_MEMBERS`] were live; the rest are not listed.
    pub truncated: bool,
}

impl FleetView {
    /// Whether every member serves the same content at the same store revision.
    pub fn agrees(&self) -> bool {
        match self.members.first() {
            None => false,
            Some(first) => self.members.iter().all(|m| {
                m.content_hash == first.content_hash && m.store_revision == first.store_revision
            }),
        }
    }
}

/// What `wait_for_fleet` found.
#[derive(Debug, Clone, Default)]
pub struct FleetWait {
    /// Every live member and whether it serves at least the awaited revision.
    pub members: Vec<(Member, bool)>,
    /// Whether all of them did before the deadline.
    pub converged: bool,
    /// Why the fleet could not be read, if it could not.
    pub error: Option<String>,
}

/// The Redis keys of one fleet.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    /// The set of member ids.
    set: String,
}

impl Keys {
    pub(super) fn new(channel: &str) -> Keys {
        Keys {
            set: format!("{channel}:fleet"),
        }
    }

    fn member(&self, id: &str) -> String {
        format!("{}:{id}", self.set)
    }

    /// Writes `me` with a TTL and adds it to the set.
    async fn beat(&self, link: &Link, me: &Member, ttl: Duration) -> Result<(), String> {
        let json = serde_json::to_string(me).map_err(|e| e.to_string())?;
        let mut set = redis::cmd("SET");
        set.arg(self.member(&me.instance_id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        link.query::<()>(&set).await?;
        let mut add = redis::cmd("SADD");
        add.arg(&self.set).arg(&me.instance_id);
        link.query::<()>(&add).await?;
        // The set lives as long as some member keeps beating: a fleet that is gone leaves
        // nothing behind in Redis.
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(&self.set).arg(ttl.as_millis() as u64);
        link.query::<()>(&expire).await
    }

    /// Removes `id` (at shutdown).
    async fn forget(&self, link: &Link, id: &str) -> Result<(), String> {
        let mut del = redis::cmd("DEL");
        del.arg(self.member(id));
        link.query::<()>(&del).await?;
        let mut rem = redis::cmd("SREM");
        rem.arg(&self.set).arg(id);
        link.query::<()>(&rem).await
    }

    /// Reads the live members (sorted by id) and whether some were left out.
    pub(super) async fn read(&self, link: &Link) -> Result<(Vec<Member>, bool), String> {
        let mut ids: Vec<String> = link.query(redis::cmd("SMEMBERS").arg(&self.set)).await?;
        ids.sort();
        let truncated = ids.len() > MAX_MEMBERS;
        ids.truncate(MAX_MEMBERS);
        if ids.is_empty() {
            return Ok((Vec::new(), false));
        }
        let keys: Vec<String> = ids.iter().map(|id| self.member(id)).collect();
        let states: Vec<Option<String>> = link.query(redis::cmd("MGET").arg(&keys)).await?;
        let mut members = Vec::with_capacity(ids.len());
        let mut expired = Vec::new();
        for (id, state) in ids.iter().zip(states) {
            match state.and_then(|s| serde_json::from_str::<Member>(&s).ok()) {
                Some(m) => members.push(m),
                None => expired.push(id.clone()),
            }
        }
        if !expired.is_empty() {
            // Best effort: the next reader retries.
            let mut rem = redis::cmd("SREM");
            rem.arg(&self.set).arg(&expired);
            let _ = link.query::<()>(&rem).await;
        }
        Ok((members, truncated))
    }
}

/// Heartbeats every `--fleet-heartbeat`, and at once after every successful load (so a fleet
/// wait sees new revisions quickly), until `stop`; then removes this instance. A heartbeat in
/// progress never holds up the stop, and the removal is bounded by the bus timeout: an
/// unreachable Redis must not delay shutdown.
pub(super) async fn run(
    shared: Arc<Shared>,
    reporter: Reporter,
    engine: Engine,
    mut stop: watch::Receiver<bool>,
) {
    let keys = Keys::new(&shared.opts.channel);
    let mut tick = tokio::time::interval(shared.opts.fleet_heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut loads = engine.subscribe();
    loop {
        let beat = async {
            tokio::select! {
                _ = tick.tick() => {}
                event = loads.recv() => match event {
                    Ok(e) if matches!(e.kind, EventKind::ReloadSucceeded { .. }) => {}
                    Ok(_) => return true,
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return false,
                },
            }
            heartbeat(&shared, &keys, &reporter()).await;
            true
        };
        tokio::select! {
            go_on = beat => if !go_on { return },
            // (The guard `wait_for` returns must not live across an await.)
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
        }
    }
    let id = reporter().instance_id;
    let removed = tokio::time::timeout(shared.opts.timeout, keys.forget(&shared.link, &id)).await;
    if !matches!(removed, Ok(Ok(()))) {
        warn!("could not remove this instance from the fleet; it drops out after --fleet-ttl");
    }
}

/// Writes our state, reads the fleet, and records the result for status.
async fn heartbeat(shared: &Shared, keys: &Keys, me: &Member) {
    let link = &shared.link;
    let result = match keys.beat(link, me, shared.opts.fleet_ttl).await {
        Ok(()) => keys.read(link).await,
        Err(e) => Err(e),
    };
    let mut view = shared.fleet();
    match result {
        Ok((members, truncated)) => {
            if view.error.take().is_some() {
                info!(members = members.len(), "fleet heartbeat works again");
            }
            view.members = members;
            view.truncated = truncated;
            view.read_at = Some(Utc::now());
        }
        Err(e) => {
            if view.error.is_none() {
                warn!(error = %e, "fleet heartbeat failed; other instances will stop listing \
                    this one after the TTL. Check Redis (see GetStatus.bus)");
            }
            view.error = Some(e);
        }
    }
}

/// Reads the fleet until every live member serves at least `revision`, or `wait` ends.
pub(super) async fn wait(shared: &Shared, revision: i64, wait: Duration) -> FleetWait {
    let keys = Keys::new(&shared.opts.channel);
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(20);
    loop {
        let read = keys.read(&shared.link).await;
        let timed_out = Instant::now() >= deadline;
        match read {
            Ok((members, _)) => {
                let converged =
                    !members.is_empty() && members.iter().all(|m| m.store_revision >= revision);
                if converged || timed_out {
                    return FleetWait {
                        members: members
                            .into_iter()
                            .map(|m| {
                                let ok = m.store_revision >= revision;
                                (m, ok)
                            })
                            .collect(),
                        converged,
                        error: None,
                    };
                }
            }
            Err(e) if timed_out => {
                return FleetWait {
                    error: Some(e),
                    ..FleetWait::default()
                };
            }
            Err(_) => {}
        }
        // Polling Redis (bounded by the caller's wait): members announce new revisions by
        // heartbeat, not by message.
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, hash: &str, revision: i64) -> Member {
        Member {
            instance_id: id.into(),
            addr: "127.0.0.1:1".into(),
            generation: 1,
            content_hash: hash.into(),
            store_revision: revision,
            item_count: 0,
            draining: false,
            last_error: None,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn agreement_needs_one_hash_and_one_revision() {
        let mut view = FleetView::default();
        assert!(!view.agrees(), "an empty fleet agrees on nothing");
        view.members = vec![member("a", "h", 3), member("b", "h", 3)];
        assert!(view.agrees());
        view.members.push(member("c", "h", 4));
        assert!(!view.agrees());
        view.members[2] = member("c", "other", 3);
        assert!(!view.agrees());
    }

    #[test]
    fn member_state_round_trips_and_tolerates_missing_optional_fields() {
        let m = member("a", "h", 3);
        let json = serde_json::to_string(&m).expect("json");
        assert_eq!(serde_json::from_str::<Member>(&json).expect("parse"), m);
        let without_error = json.replace(",\"last_error\":null", "");
        assert_eq!(
            serde_json::from_str::<Member>(&without_error).expect("parse"),
            m
        );
        assert_eq!(Keys::new("ch").member("x"), "ch:fleet:x");
    }
}

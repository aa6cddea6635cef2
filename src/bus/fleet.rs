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
//!
//! The heartbeat follows the bus's current connection: after a swap (`Reload(TARGET_BUS)`) it
//! beats at once on the new Redis, then removes this instance from the old one, unless both
//! URLs reach the same server (same `run_id`), where the fresh entry must stay. Each read is
//! compared with the previous one, and instances that appear or disappear are announced
//! (WatchStatus fleet member joined / left).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{
    Notify,
    broadcast::{self, error::RecvError},
    watch,
};
use tracing::{info, warn};

use super::{BusEvent, Conn, Shared, link::Link};
use crate::{
    engine::{Engine, EngineEvent, EventKind},
    lifecycle::Drain,
    snapshot::scheme::{self, Comparison},
    store::Cursor,
};

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
    /// The scheme of `content_hash` ([`crate::snapshot::scheme`]); `None` from versions that did
    /// not report one (scheme 1 or 2). Left out of the record when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash_scheme: Option<u32>,
    /// Store revision the served patterns reflect: the newest revision visible to its last
    /// store read. A label of the store state (equal for replicas that read the same state),
    /// not an order: PostgreSQL revisions are transaction ids.
    pub store_revision: i64,
    /// The store position of its last store read ([`crate::store::Cursor::position`]), which
    /// compares in commit order; `None` before the first load, while pinned by a rollback (it
    /// serves older content than its position says), and from versions that did not report it.
    #[serde(default)]
    pub store_position: Option<String>,
    /// Patterns served.
    pub item_count: u64,
    /// Whether it is draining.
    pub draining: bool,
    /// Its last pattern load error, if the last load failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Why it could not follow the last broadcast rollback, while it serves the generation it
    /// served then (filled in by the heartbeat, not by the reporter).
    #[serde(default)]
    pub rollback_error: Option<String>,
    /// The content hash of that rollback (a fleet wait for it stops waiting for this member).
    #[serde(default)]
    pub rollback_hash: Option<String>,
    /// When it wrote this state, Unix milliseconds.
    pub updated_at_ms: i64,
}

impl Member {
    /// Whether it serves `hash` (of scheme `scheme`) at `revision`: the same hash and store
    /// revision, or the same revision alone when the hashes are of different schemes and so
    /// cannot be compared ([`scheme::compare`]).
    pub fn serves(&self, hash: &str, scheme: Option<u32>, revision: i64) -> bool {
        self.store_revision == revision
            && scheme::compare(&self.content_hash, self.content_hash_scheme, hash, scheme)
                != Comparison::Differs
    }

    /// Whether the store state it serves includes every commit `position` includes, in commit
    /// order ([`Cursor::covers`]): never by comparing revisions, which on PostgreSQL are
    /// transaction ids. A member reporting no position has not (see `store_position`).
    pub fn has_read(&self, position: &Cursor) -> bool {
        self.store_position
            .as_deref()
            .and_then(Cursor::parse_position)
            .is_some_and(|at| at.covers(position))
    }
}

/// Produces this instance's current state for a heartbeat.
pub type Reporter = Arc<dyn Fn() -> Member + Send + Sync>;

/// This instance's state, as `engine` serves it and `drain` reports it, for its heartbeats.
pub fn reporter(engine: Engine, drain: Drain, instance_id: String, addr: String) -> Reporter {
    Arc::new(move || {
        let current = engine.current();
        let health = engine.health();
        Member {
            instance_id: instance_id.clone(),
            addr: addr.clone(),
            generation: current.number,
            content_hash: current.snapshot.content_hash(),
            content_hash_scheme: Some(scheme::CURRENT),
            store_revision: current.store_revision,
            // While pinned it serves an older generation than its last read: it claims no
            // position, so no fleet wait counts it as serving newer writes.
            store_position: match health.pinned {
                Some(_) => None,
                None => current.cursor.as_ref().map(|c| c.position()),
            },
            item_count: current.snapshot.len() as u64,
            draining: drain.snapshot().draining,
            last_error: health.last_error,
            rollback_error: None, // filled in by the heartbeat
            rollback_hash: None,
            updated_at_ms: Utc::now().timestamp_millis(),
        }
    })
}

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
    /// Whether every member serves the same content at the same store revision (as far as
    /// their hashes' schemes can tell: [`Member::serves`]).
    pub fn agrees(&self) -> bool {
        match self.members.first() {
            None => false,
            Some(first) => self.members.iter().all(|m| {
                m.serves(
                    &first.content_hash,
                    first.content_hash_scheme,
                    first.store_revision,
                )
            }),
        }
    }
}

/// Where one member stands in a fleet wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It serves what is awaited.
    Converged,
    /// It reported that it cannot get there: waiting longer is pointless.
    Failed,
    /// Not yet.
    Pending,
}

impl From<bool> for Verdict {
    fn from(converged: bool) -> Verdict {
        if converged {
            Verdict::Converged
        } else {
            Verdict::Pending
        }
    }
}

/// What a fleet wait found.
#[derive(Debug, Clone, Default)]
pub struct FleetWait {
    /// Every live member and whether it serves what was awaited.
    pub members: Vec<(Member, bool)>,
    /// Whether all of them did before the deadline (or before every other one failed).
    pub converged: bool,
    /// Why the fleet could not be read, if it could not.
    pub error: Option<String>,
}

/// The Redis keys of one fleet: `<channel>:fleet` (the set of member ids) and
/// `<channel>:fleet:<id>`; on a Redis Cluster the channel is a hash tag (`{<channel>}:fleet`),
/// so that every key of the fleet is in one slot (see `cluster`).
#[derive(Debug, Clone)]
pub(super) struct Keys {
    /// The channel.
    channel: String,
}

impl Keys {
    pub(super) fn new(channel: &str) -> Keys {
        Keys {
            channel: channel.to_owned(),
        }
    }

    /// The set of member ids, on the Redis `link` leads to.
    fn set(&self, link: &Link) -> String {
        format!(
            "{}:fleet",
            super::cluster::fleet_prefix(&self.channel, link.is_cluster())
        )
    }

    fn member(&self, link: &Link, id: &str) -> String {
        format!("{}:{id}", self.set(link))
    }

    /// Writes `me` with a TTL and adds it to the set.
    async fn beat(&self, link: &Link, me: &Member, ttl: Duration) -> Result<(), String> {
        let json = serde_json::to_string(me).map_err(|e| e.to_string())?;
        let mut set = redis::cmd("SET");
        set.arg(self.member(link, &me.instance_id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        link.query::<()>(&set).await?;
        let mut add = redis::cmd("SADD");
        add.arg(self.set(link)).arg(&me.instance_id);
        link.query::<()>(&add).await?;
        // The set lives as long as some member keeps beating: a fleet that is gone leaves
        // nothing behind in Redis.
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(self.set(link)).arg(ttl.as_millis() as u64);
        link.query::<()>(&expire).await
    }

    /// Removes `id` (at shutdown).
    async fn forget(&self, link: &Link, id: &str) -> Result<(), String> {
        let mut del = redis::cmd("DEL");
        del.arg(self.member(link, id));
        link.query::<()>(&del).await?;
        let mut rem = redis::cmd("SREM");
        rem.arg(self.set(link)).arg(id);
        link.query::<()>(&rem).await
    }

    /// Reads the live members (sorted by id) and whether some were left out.
    pub(super) async fn read(&self, link: &Link) -> Result<(Vec<Member>, bool), String> {
        let mut ids: Vec<String> = link
            .query(redis::cmd("SMEMBERS").arg(self.set(link)))
            .await?;
        ids.sort();
        let truncated = ids.len() > MAX_MEMBERS;
        ids.truncate(MAX_MEMBERS);
        if ids.is_empty() {
            return Ok((Vec::new(), false));
        }
        let keys: Vec<String> = ids.iter().map(|id| self.member(link, id)).collect();
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
            rem.arg(self.set(link)).arg(&expired);
            let _ = link.query::<()>(&rem).await;
        }
        Ok((members, truncated))
    }
}

/// How often this instance heartbeats and how long its entry lives without one. Live: the
/// config file can change both (`fleet.heartbeat`, `fleet.ttl`) without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetTiming {
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// How long an entry lives without a heartbeat.
    pub ttl: Duration,
}

/// Heartbeats on the [`Schedule`] until `stop`; then removes this instance. A heartbeat in
/// progress never holds up the stop, and the removal is bounded by the bus timeout: an
/// unreachable Redis must not delay shutdown.
pub(super) async fn run(
    shared: Arc<Shared>,
    reporter: Reporter,
    engine: Engine,
    timing: watch::Receiver<FleetTiming>,
    stop: watch::Receiver<bool>,
) {
    let keys = Keys::new(&shared.opts.channel);
    let mut schedule = Schedule::new(&engine, &shared.fleet_kick, timing, stop);
    let mut beating_on = shared.conn();
    loop {
        let ttl = match schedule.next().await {
            Next::Beat(ttl) => ttl,
            Next::Stop => break,
            Next::EngineGone => return,
        };
        let beat = async {
            let conn = shared.conn();
            let link = &conn.link;
            let result = match keys.beat(link, &me(&shared, &reporter), ttl).await {
                Ok(()) => keys.read(link).await,
                Err(e) => Err(e),
            };
            record(&shared.fleet, result, |e| shared.emit(e));
            if !Arc::ptr_eq(&conn, &beating_on) {
                let old = std::mem::replace(&mut beating_on, conn);
                leave_old(&shared, &keys, &old, &beating_on, &reporter().instance_id).await;
            }
        };
        if !schedule.during(beat).await {
            break;
        }
    }
    let id = reporter().instance_id;
    let link = &shared.conn().link;
    let removed = tokio::time::timeout(shared.opts.timeout, keys.forget(link, &id)).await;
    if !matches!(removed, Ok(Ok(()))) {
        warn!("could not remove this instance from the fleet; it drops out after --fleet-ttl");
    }
}

/// When to heartbeat, whatever the registry: every `timing.heartbeat`, at once after every
/// successful load or rollback of the engine (so a fleet wait sees new revisions quickly), when
/// kicked (a swap, a rollback not followed) and when the timing changes (the next heartbeat is
/// then one new interval away), until `stop`.
pub(super) struct Schedule<'a> {
    kick: &'a Notify,
    timing: watch::Receiver<FleetTiming>,
    stop: watch::Receiver<bool>,
    tick: tokio::time::Interval,
    /// The timing `tick` follows.
    current: FleetTiming,
    loads: broadcast::Receiver<EngineEvent>,
}

/// What the [`Schedule`] says to do next.
pub(super) enum Next {
    /// Heartbeat, with this TTL.
    Beat(Duration),
    /// Stop, and remove this instance.
    Stop,
    /// The engine is gone (shutting down): stop without more.
    EngineGone,
}

impl<'a> Schedule<'a> {
    pub(super) fn new(
        engine: &Engine,
        kick: &'a Notify,
        mut timing: watch::Receiver<FleetTiming>,
        stop: watch::Receiver<bool>,
    ) -> Schedule<'a> {
        let current = *timing.borrow_and_update();
        let mut tick = tokio::time::interval(current.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Schedule {
            kick,
            timing,
            stop,
            tick,
            current,
            loads: engine.subscribe(),
        }
    }

    /// Waits until the next heartbeat is due.
    pub(super) async fn next(&mut self) -> Next {
        let now = *self.timing.borrow_and_update();
        if now.heartbeat != self.current.heartbeat {
            self.tick = tokio::time::interval_at(
                tokio::time::Instant::now() + now.heartbeat,
                now.heartbeat,
            );
            self.tick
                .set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        self.current = now;
        let stop = &mut self.stop;
        loop {
            tokio::select! {
                _ = self.tick.tick() => break,
                _ = self.kick.notified() => break,
                // A new timing: beat now, with the new TTL.
                Ok(()) = self.timing.changed() => break,
                event = self.loads.recv() => match event {
                    Ok(e) if matches!(
                        e.kind,
                        EventKind::ReloadSucceeded { .. } | EventKind::RolledBack { .. }
                    ) => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return Next::EngineGone,
                },
                // (The guard `wait_for` returns must not live across an await.)
                _ = async { stop.wait_for(|s| *s).await.is_ok() } => return Next::Stop,
            }
        }
        Next::Beat(self.timing.borrow().ttl)
    }

    /// Runs `beat` unless `stop` comes first (then `false`): a heartbeat in progress never
    /// holds up the stop.
    pub(super) async fn during(&mut self, beat: impl Future<Output = ()>) -> bool {
        let stop = &mut self.stop;
        tokio::select! {
            () = beat => true,
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => false,
        }
    }
}

/// This instance's state: the reporter's, plus a broadcast rollback it could not follow while
/// it still serves the generation it served then.
fn me(shared: &Shared, reporter: &Reporter) -> Member {
    let mut me = reporter();
    if let Some(refusal) = shared.rollback_error().as_ref()
        && refusal.generation == me.generation
    {
        me.rollback_error = Some(refusal.error.clone());
        me.rollback_hash = Some(refusal.content_hash.clone());
    }
    me
}

/// After a swap: removes this instance from the fleet of the Redis it left, unless that is the
/// server it now beats on (then the entry just written must stay). Best effort: an entry that
/// cannot be removed expires after the TTL.
async fn leave_old(shared: &Shared, keys: &Keys, old: &Conn, new: &Conn, id: &str) {
    let limit = shared.opts.timeout;
    let ids = tokio::time::timeout(limit, async {
        (old.link.server_ids().await, new.link.server_ids().await)
    })
    .await;
    let same = match ids {
        Ok((Ok(a), Ok(b))) => super::link::same_redis(&a, &b),
        Ok((Err(e), _)) => {
            info!(error = %e, "after the bus swap, the old Redis did not answer; this \
                instance's old fleet entry expires after --fleet-ttl");
            return;
        }
        Ok((_, Err(e))) => {
            info!(error = %e, "after the bus swap, the new Redis did not say which server it \
                is; this instance's old fleet entry is kept, and expires after --fleet-ttl");
            return;
        }
        Err(_) => {
            info!(
                "after the bus swap, the Redis servers did not answer in time; this \
                instance's old fleet entry expires after --fleet-ttl"
            );
            return;
        }
    };
    if !same
        && !matches!(
            tokio::time::timeout(limit, keys.forget(&old.link, id)).await,
            Ok(Ok(()))
        )
    {
        info!("could not remove this instance from the old Redis's fleet; it expires there");
    }
}

/// Records a heartbeat's outcome (the members read, or why it failed) in `view` for status, and
/// announces through `emit` the members that joined or left since the last read.
pub(super) fn record(
    view: &Mutex<FleetView>,
    result: Result<(Vec<Member>, bool), String>,
    emit: impl Fn(BusEvent),
) {
    let mut changes = Vec::new();
    {
        let mut view = view.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok((members, truncated)) => {
                if view.error.take().is_some() {
                    info!(members = members.len(), "fleet heartbeat works again");
                }
                changes = membership_changes(&view.members, &members);
                view.members = members;
                view.truncated = truncated;
                view.read_at = Some(Utc::now());
            }
            Err(e) => {
                if view.error.is_none() {
                    warn!(error = %e, "fleet heartbeat failed; other instances will stop listing \
                        this one after the TTL. Check the bus (see GetStatus.bus)");
                }
                view.error = Some(e);
            }
        }
    }
    for change in changes {
        match &change {
            BusEvent::MemberJoined(m) => {
                info!(instance_id = %m.instance_id, addr = %m.addr, "fleet member joined")
            }
            BusEvent::MemberLeft(m) => info!(instance_id = %m.instance_id, "fleet member left"),
            _ => {}
        }
        emit(change);
    }
}

/// The members of `after` not in `before` (joined) and of `before` not in `after` (left, as
/// last seen). Both lists are sorted by id.
fn membership_changes(before: &[Member], after: &[Member]) -> Vec<BusEvent> {
    let listed = |list: &[Member], id: &str| {
        list.binary_search_by(|m| m.instance_id.as_str().cmp(id))
            .is_ok()
    };
    let joined = after
        .iter()
        .filter(|m| !listed(before, &m.instance_id))
        .map(|m| BusEvent::MemberJoined(m.clone()));
    let left = before
        .iter()
        .filter(|m| !listed(after, &m.instance_id))
        .map(|m| BusEvent::MemberLeft(m.clone()));
    joined.chain(left).collect()
}

/// Reads the fleet with `read` until no live member is `Pending` by `verdict` (or `wait` ends);
/// converged when every one is `Converged`.
pub(super) async fn wait<R: Future<Output = Result<(Vec<Member>, bool), String>>>(
    read: impl Fn() -> R,
    wait: Duration,
    verdict: impl Fn(&Member) -> Verdict,
) -> FleetWait {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(20);
    loop {
        let read = read().await;
        let timed_out = Instant::now() >= deadline;
        match read {
            Ok((members, _)) => {
                let verdicts: Vec<Verdict> = members.iter().map(&verdict).collect();
                let settled = !members.is_empty() && !verdicts.contains(&Verdict::Pending);
                if settled || timed_out {
                    return FleetWait {
                        converged: !members.is_empty()
                            && verdicts.iter().all(|v| *v == Verdict::Converged),
                        members: members
                            .into_iter()
                            .zip(verdicts)
                            .map(|(m, v)| (m, v == Verdict::Converged))
                            .collect(),
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
        // Polling the registry (bounded by the caller's wait): members announce new revisions by
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
            content_hash_scheme: Some(scheme::CURRENT),
            store_revision: revision,
            store_position: None,
            item_count: 0,
            draining: false,
            last_error: None,
            rollback_error: None,
            rollback_hash: None,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn membership_changes_name_who_joined_and_who_left() {
        let ids = |events: Vec<BusEvent>| -> Vec<String> {
            events
                .into_iter()
                .map(|e| match e {
                    BusEvent::MemberJoined(m) => format!("+{}", m.instance_id),
                    BusEvent::MemberLeft(m) => format!("-{}", m.instance_id),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let (a, b, c) = (
            member("a", "h", 1),
            member("b", "h", 1),
            member("c", "h", 1),
        );
        assert_eq!(
            ids(membership_changes(&[], &[a.clone(), b.clone()])),
            ["+a", "+b"]
        );
        assert_eq!(
            ids(membership_changes(&[a.clone(), b.clone()], &[a.clone(), c])),
            ["+c", "-b"]
        );
        let same = std::slice::from_ref(&a);
        assert!(membership_changes(same, same).is_empty());
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
        // Another scheme's hash says nothing: the revision decides.
        view.members[2].content_hash_scheme = Some(scheme::CURRENT + 1);
        assert!(view.agrees());
        view.members[2].store_revision = 4;
        assert!(!view.agrees());
    }

    /// Records from versions before schemes were numbered have no scheme, and still decode;
    /// ours write it.
    #[test]
    fn records_without_a_scheme_decode_and_ours_carry_it() {
        let old = r#"{"instance_id":"o","addr":"a","generation":1,"content_hash":"h",
            "store_revision":3,"item_count":0,"draining":false,"updated_at_ms":0}"#;
        let m: Member = serde_json::from_str(old).expect("decodes");
        assert_eq!(m.content_hash_scheme, None);
        let json = serde_json::to_value(member("n", "h", 3)).expect("encodes");
        assert_eq!(json["content_hash_scheme"], scheme::CURRENT);
    }

    /// B read a write with a higher transaction id (101) while 100 was still running; A read
    /// after 100 committed. B's revision is not below A's, but B has not read A's state.
    #[test]
    fn a_member_has_read_a_position_only_in_commit_order() {
        let position = |text: &str| Cursor::parse_position(text).expect("a position");
        let mut b = member("b", "h", 101);
        b.store_position = Some("pg:100:102:100".into());
        let a = position("pg:102:102:");
        assert!(!b.has_read(&a), "B has not seen 100 commit");
        b.store_position = Some("pg:102:103:".into());
        assert!(b.has_read(&a), "a read after A's includes it");
        b.store_position = None;
        assert!(
            !b.has_read(&a),
            "no position (pinned, or an older version): not read"
        );
        b.store_position = Some("sqlite:9".into());
        assert!(
            !b.has_read(&a),
            "another backend's position compares to nothing"
        );
    }

    #[test]
    fn member_state_round_trips_and_tolerates_missing_optional_fields() {
        let m = member("a", "h", 3);
        let json = serde_json::to_string(&m).expect("json");
        assert_eq!(serde_json::from_str::<Member>(&json).expect("parse"), m);
        let without_error = json
            .replace(",\"last_error\":null", "")
            .replace(",\"rollback_error\":null,\"rollback_hash\":null", "");
        assert_eq!(
            serde_json::from_str::<Member>(&without_error).expect("parse"),
            m
        );
        let link = |url: &str| {
            let client = redis::Client::open(url).expect("a URL");
            Link::new(super::super::target::Target::Fixed(client), Duration::ZERO)
        };
        let keys = Keys::new("ch");
        assert_eq!(keys.member(&link("redis://h"), "x"), "ch:fleet:x");
    }
}

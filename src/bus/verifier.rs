//! The checks a decoded message passes before it may reach the engine: (signed mode) the
//! signature, then self-origin, then (signed mode) freshness, the start floor and replays. No
//! clock of its own: callers pass `now` (and the start).
//!
//! The replay memory lives in the process, so a restarted replica would accept again a message
//! captured in the previous window. The start floor closes that: a signed message must have
//! been signed no earlier than this replica's start. Nothing is lost by refusing older ones: a
//! publisher announces a change after writing it, so it was in the store before the start-up
//! load and the catch-up after subscribing read it; a rollback or an invalidation from before
//! the start addressed the previous process's served state, which this one never had.

use std::collections::{HashSet, VecDeque};

use super::{
    envelope::{Decoded, Envelope, Reason, Rejected, decode, reject},
    signing::{Secret, canonical, verify},
};

/// Most event ids remembered for replay detection (16 bytes each plus bookkeeping).
pub const REPLAY_MEMORY: usize = 65_536;

/// Remembers recent event ids (as 128-bit hashes, so a long id costs no more memory than a
/// short one) for the replay window, within a fixed capacity. When full, the oldest id is
/// forgotten and its `ts` becomes a floor: messages at or below it are stale, because a replay
/// of a forgotten id could no longer be recognised.
#[derive(Debug)]
struct ReplayMemory {
    /// Hashes of the remembered ids.
    seen: HashSet<u128>,
    /// The same, with their `ts`, oldest arrival first (for expiry and eviction).
    order: VecDeque<(f64, u128)>,
    /// Most ids remembered.
    capacity: usize,
    /// Newest `ts` forgotten for room while possibly inside the window.
    floor: f64,
}

impl ReplayMemory {
    fn new(capacity: usize) -> ReplayMemory {
        ReplayMemory {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            floor: f64::NEG_INFINITY,
        }
    }

    fn check(&mut self, event_id: &str, ts: f64, now: f64, window: f64) -> Result<(), Rejected> {
        while let Some(&(t, h)) = self.order.front() {
            if t >= now - window {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&h);
        }
        if ts <= self.floor {
            return reject(
                Reason::Stale,
                "older than the replay memory can vouch for (it is full)",
            );
        }
        let h = xxhash_rust::xxh3::xxh3_128(event_id.as_bytes());
        if self.seen.contains(&h) {
            return reject(
                Reason::Replayed,
                format!("event_id {event_id:?} seen before"),
            );
        }
        if self.order.len() >= self.capacity
            && let Some((t, old)) = self.order.pop_front()
        {
            self.seen.remove(&old);
            self.floor = self.floor.max(t);
        }
        self.order.push_back((ts, h));
        self.seen.insert(h);
        Ok(())
    }
}

/// Checks every message before it may reach the engine: structure, then (with a secret) the
/// signature, then self-origin, then (with a secret) freshness and replays.
#[derive(Debug)]
pub struct Verifier {
    /// Signed mode when set.
    secret: Option<Secret>,
    /// This instance's id: messages with it as `origin` are our own.
    instance_id: String,
    /// Accepted distance between `ts` and now, in seconds (either direction: clock skew).
    window: f64,
    /// Recent event ids.
    replay: ReplayMemory,
    /// Unix seconds (whole) of this replica's start: signed messages with an older `ts` are
    /// refused (see the module doc). Whole seconds, because publishers commonly send
    /// `int(time.time())`, which truncates: a message signed just after the start would
    /// otherwise look older than it.
    started: f64,
}

impl Verifier {
    /// A verifier for `instance_id`; signed mode when `secret` is set.
    pub fn new(
        secret: Option<Secret>,
        instance_id: &str,
        window: std::time::Duration,
        replay_capacity: usize,
    ) -> Verifier {
        Verifier {
            secret,
            instance_id: instance_id.to_owned(),
            window: window.as_secs_f64(),
            replay: ReplayMemory::new(replay_capacity),
            started: f64::NEG_INFINITY,
        }
    }

    /// Refuses signed messages with a `ts` before `started` (Unix seconds; truncated to whole
    /// seconds), as [`Reason::BeforeStart`]. The subscriber passes the time it started, before
    /// its first subscribe.
    pub fn started_at(mut self, started: f64) -> Verifier {
        self.started = started.floor();
        self
    }

    /// Whether messages must be signed.
    pub fn signed(&self) -> bool {
        self.secret.is_some()
    }

    /// Decodes and checks one message received at `now` (Unix seconds).
    pub fn check(&mut self, bytes: &[u8], now: f64) -> Result<Envelope, Rejected> {
        let Decoded { envelope, object } = decode(bytes)?;
        if let Some(secret) = &self.secret {
            let (Some(sig), Some(_), Some(_)) = (&envelope.sig, envelope.ts, &envelope.event_id)
            else {
                return reject(
                    Reason::Unsigned,
                    "signed mode needs sig, ts and event_id on every message",
                );
            };
            if !verify(secret, &canonical(&object), sig) {
                return reject(Reason::BadSignature, "sig does not match the payload");
            }
        }
        if envelope.origin.as_deref() == Some(self.instance_id.as_str()) {
            return reject(Reason::SelfOrigin, "our own event");
        }
        if self.secret.is_some()
            && let (Some(ts), Some(event_id)) = (envelope.ts, &envelope.event_id)
        {
            if (now - ts).abs() > self.window {
                return reject(
                    Reason::Stale,
                    format!(
                        "ts {ts} is {:.0}s from now; the window is {:.0}s",
                        now - ts,
                        self.window
                    ),
                );
            }
            if ts < self.started {
                return reject(
                    Reason::BeforeStart,
                    format!(
                        "ts {ts} is before this replica started ({}): a message from before a \
                         restart (or a publisher's clock running behind)",
                        self.started
                    ),
                );
            }
            self.replay.check(event_id, ts, now, self.window)?;
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Map, Value, json};

    use super::*;
    use crate::bus::signing::{seal, sign};

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    const NOW: f64 = 1_700_000_000.0;

    fn signed(secret: &Secret, fields: Value) -> Vec<u8> {
        seal(obj(fields), Some(secret)).into_bytes()
    }

    fn verifier(secret: Option<&Secret>, capacity: usize) -> Verifier {
        Verifier::new(secret.cloned(), "me", Duration::from_secs(300), capacity)
    }

    #[test]
    fn signed_mode_checks_signature_freshness_and_replays() {
        let s = Secret::new("k");
        let mut v = verifier(Some(&s), 100);
        let good = json!({"action":"reload","pattern_id":5,"event_id":"e1","ts":NOW,"origin":"a"});
        assert_eq!(
            v.check(&signed(&s, good.clone()), NOW)
                .expect("valid")
                .pattern_id,
            Some(5)
        );
        let err = |v: &mut Verifier, b: &[u8]| v.check(b, NOW).expect_err("rejected").reason;
        assert_eq!(err(&mut v, &signed(&s, good.clone())), Reason::Replayed);
        assert_eq!(
            err(
                &mut v,
                &signed(
                    &Secret::new("wrong"),
                    json!({"action":"reload","event_id":"e2","ts":NOW})
                )
            ),
            Reason::BadSignature
        );
        // A field changed after signing.
        let mut tampered: Value = serde_json::from_slice(&signed(
            &s,
            json!({"action":"reload","event_id":"e3","ts":NOW}),
        ))
        .expect("json");
        tampered["pattern_id"] = json!(9);
        assert_eq!(
            err(&mut v, tampered.to_string().as_bytes()),
            Reason::BadSignature
        );
        assert_eq!(
            err(
                &mut v,
                br#"{"action":"reload","event_id":"e4","ts":1700000000}"#
            ),
            Reason::Unsigned
        );
        assert_eq!(
            err(&mut v, &signed(&s, json!({"action":"reload","ts":NOW}))),
            Reason::Unsigned
        );
        assert_eq!(
            err(
                &mut v,
                &signed(
                    &s,
                    json!({"action":"reload","event_id":"e5","ts":NOW - 301.0})
                )
            ),
            Reason::Stale
        );
        assert_eq!(
            err(
                &mut v,
                &signed(
                    &s,
                    json!({"action":"reload","event_id":"e6","ts":NOW + 301.0})
                )
            ),
            Reason::Stale
        );
        // Key order and spacing on the wire do not matter.
        let sig = sign(&s, r#"{"action":"reload","event_id":"e7","ts":1700000000}"#);
        let wire = format!(
            r#"{{ "ts": 1700000000, "sig": "{sig}", "event_id": "e7", "action": "reload" }}"#
        );
        assert!(v.check(wire.as_bytes(), NOW).is_ok());
        // Our own event is skipped, after its signature was checked.
        assert_eq!(
            err(
                &mut v,
                &signed(
                    &s,
                    json!({"action":"reload","event_id":"e8","ts":NOW,"origin":"me"})
                )
            ),
            Reason::SelfOrigin
        );
    }

    #[test]
    fn signed_messages_from_before_the_start_are_refused() {
        let s = Secret::new("k");
        let mut v = verifier(Some(&s), 100).started_at(NOW + 0.7);
        let msg = |id: &str, ts: f64| signed(&s, json!({"action":"reload","event_id":id,"ts":ts}));
        assert_eq!(
            v.check(&msg("before", NOW - 1.0), NOW + 1.0)
                .expect_err("refused")
                .reason,
            Reason::BeforeStart
        );
        // Whole-second `ts` of the start's own second (Python's `int(time.time())`) passes.
        v.check(&msg("same second", NOW), NOW + 1.0)
            .expect("signed after the start");
        // Unsigned mode has no floor (nothing to replay: any message may be sent anyway).
        let mut u = verifier(None, 100).started_at(NOW);
        assert!(u.check(&msg("old", NOW - 100.0), NOW).is_ok());
    }

    #[test]
    fn unsigned_mode_accepts_legacy_messages_and_skips_our_own() {
        let mut v = verifier(None, 100);
        assert!(
            v.check(br#"{"action":"reload","pattern_id":null}"#, NOW)
                .is_ok()
        );
        // The same event twice is fine without a secret (nothing to prove it was not forged).
        let m = br#"{"action":"reload","event_id":"x","ts":1}"#;
        assert!(v.check(m, NOW).is_ok() && v.check(m, NOW).is_ok());
        assert_eq!(
            v.check(br#"{"action":"reload","origin":"me"}"#, NOW)
                .expect_err("self")
                .reason,
            Reason::SelfOrigin
        );
    }

    #[test]
    fn replay_memory_is_bounded_and_never_forgets_unsafely() {
        let s = Secret::new("k");
        let mut v = verifier(Some(&s), 3);
        let msg = |id: &str, ts: f64| signed(&s, json!({"action":"reload","event_id":id,"ts":ts}));
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            v.check(&msg(id, NOW + i as f64), NOW).expect("fresh");
        }
        assert_eq!(v.replay.order.len(), 3, "capacity holds");
        // "a" was forgotten to make room; its replay is refused as stale, not accepted.
        assert_eq!(
            v.check(&msg("a", NOW), NOW).expect_err("refused").reason,
            Reason::Stale
        );
        assert_eq!(
            v.check(&msg("d", NOW + 3.0), NOW)
                .expect_err("refused")
                .reason,
            Reason::Replayed
        );
        // Entries older than the window expire by themselves.
        v.check(&msg("e", NOW + 400.0), NOW + 400.0).expect("fresh");
        assert_eq!(v.replay.order.len(), 1);
    }
}

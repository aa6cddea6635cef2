//! Bus messages: the format, and decoding with its structural checks. Pure code: every rule is
//! a unit test.
//!
//! A message is one JSON object, at most [`MAX_MESSAGE_BYTES`]:
//!
//! ```json
//! {"action":"reload","pattern_id":123}            legacy: reload row 123
//! {"action":"reload","pattern_id":null}           legacy: reload whatever changed (delta)
//! {"action":"invalidate","pattern_id":123,        stop serving row 123 now
//!  "event_id":"…","origin":"…","target":"patterns","revision":42,"ts":1700000000,"sig":"…"}
//! {"action":"rollback","content_hash":"…",         serve the retained generation with this
//!  "content_hash_scheme":2,"origin":"…", …}         content again, pinned (broadcast Rollback)
//! ```
//!
//! Optional fields: `event_id` (unique per event), `origin` (the publishing instance; a replica
//! skips its own events), `target` (`patterns`, the only hot state the bus drives today),
//! `revision` (the store revision the publisher served; informational: receivers always ask
//! the store), `content_hash_scheme` (rollbacks only: the scheme of `content_hash`, see
//! [`crate::snapshot::scheme`]; older publishers leave it out), `ts` (Unix seconds, integer or
//! fractional), `sig` (see
//! [`super::signing::canonical`]). Unknown fields are ignored (and signed like the others).
//!
//! Every rejection has a [`Reason`] whose lower-case name is the counter key in `GetStatus`.
//! Decoding finds the structural ones; `super::verifier` the signature, freshness, replay and
//! self-origin ones.

use serde_json::{Map, Value};

/// Largest message accepted, in bytes; larger ones are rejected before parsing.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why a message was not applied. `SelfOrigin` is a skip, not an error, and is counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Over [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// Not JSON (or not UTF-8).
    NotJson,
    /// JSON, but not an object.
    NotObject,
    /// A known field of the wrong type or shape (e.g. `"pattern_id":"12"`).
    WrongType,
    /// No `action`, an action this version does not know, or a `target` other than `patterns`.
    UnknownAction,
    /// `invalidate` without a `pattern_id`.
    MissingPatternId,
    /// Signed mode: the signature does not match.
    BadSignature,
    /// Signed mode: `sig`, `ts` or `event_id` is missing.
    Unsigned,
    /// Signed mode: `ts` outside the replay window (or older than replay memory can vouch for).
    Stale,
    /// Signed mode: an `event_id` already seen within the replay window.
    Replayed,
    /// Signed mode: `ts` is before this replica started. The replay memory lives in the
    /// process, so a message from before a restart cannot be told from a replay; what it
    /// announced was in the store before the start-up load read it.
    BeforeStart,
    /// Unsigned mode: a `rollback`, which would pin the replica, while unsigned rollbacks are
    /// not enabled (`--bus-allow-unsigned-rollback`).
    UnsignedRollback,
    /// Dropped unread: the intake queue was full (a flood); a catch-up delta stands in for it.
    Overflow,
    /// The message is this instance's own event (`origin` is our instance id): skipped.
    SelfOrigin,
}

impl Reason {
    /// Every reason that counts as a rejection (all but `SelfOrigin`), in a stable order.
    pub const REJECTIONS: [Reason; 13] = [
        Reason::TooLarge,
        Reason::NotJson,
        Reason::NotObject,
        Reason::WrongType,
        Reason::UnknownAction,
        Reason::MissingPatternId,
        Reason::BadSignature,
        Reason::Unsigned,
        Reason::Stale,
        Reason::Replayed,
        Reason::BeforeStart,
        Reason::UnsignedRollback,
        Reason::Overflow,
    ];

    /// Stable lower-case name: the counter key in status and the `reason` field in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::WrongType => "wrong_type",
            Reason::UnknownAction => "unknown_action",
            Reason::MissingPatternId => "missing_pattern_id",
            Reason::BadSignature => "bad_signature",
            Reason::Unsigned => "unsigned",
            Reason::Stale => "stale",
            Reason::Replayed => "replayed",
            Reason::BeforeStart => "before_start",
            Reason::UnsignedRollback => "unsigned_rollback",
            Reason::Overflow => "overflow",
            Reason::SelfOrigin => "self",
        }
    }
}

/// A message that was not applied: the reason, and a detail for the log (never for clients).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The counted reason.
    pub reason: Reason,
    /// What exactly was wrong.
    pub detail: String,
}

pub(super) fn reject<T>(reason: Reason, detail: impl Into<String>) -> Result<T, Rejected> {
    Err(Rejected {
        reason,
        detail: detail.into(),
    })
}

/// What a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reload one row (`pattern_id`) or whatever changed (no `pattern_id`).
    Reload,
    /// Stop serving `pattern_id` now, until a load that reads the row says otherwise.
    Invalidate,
    /// Serve the retained generation whose content hash is `content_hash` again, pinned.
    Rollback,
}

impl Action {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reload => "reload",
            Action::Invalidate => "invalidate",
            Action::Rollback => "rollback",
        }
    }
}

/// A decoded, structurally valid message.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// What to do.
    pub action: Action,
    /// The row, if the message names one (always for `invalidate`).
    pub pattern_id: Option<i64>,
    /// The content to roll back to (always for `rollback`, never otherwise).
    pub content_hash: Option<String>,
    /// The scheme of `content_hash`, when the publisher said (rollbacks only).
    pub content_hash_scheme: Option<u32>,
    /// Unique event id, for replay detection.
    pub event_id: Option<String>,
    /// The publishing instance's id.
    pub origin: Option<String>,
    /// The store revision the publisher served after its change (informational).
    pub revision: Option<i64>,
    /// When it was published, Unix seconds.
    pub ts: Option<f64>,
    /// Hex HMAC-SHA256 of the canonical payload.
    pub sig: Option<String>,
}

/// A decoded message and the object it came from (what the signature covers).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The typed fields.
    pub envelope: Envelope,
    /// The whole object as received.
    pub object: Map<String, Value>,
}

/// Decodes one message and checks its structure (not its signature).
pub fn decode(bytes: &[u8]) -> Result<Decoded, Rejected> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return reject(
            Reason::TooLarge,
            format!("{} bytes; the limit is {MAX_MESSAGE_BYTES}", bytes.len()),
        );
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return reject(Reason::NotJson, e.to_string()),
    };
    let Value::Object(object) = value else {
        return reject(Reason::NotObject, format!("a JSON {}", kind(&value)));
    };
    let action = match object.get("action") {
        None | Some(Value::Null) => return reject(Reason::UnknownAction, "no action"),
        Some(Value::String(a)) if a == "reload" => Action::Reload,
        Some(Value::String(a)) if a == "invalidate" => Action::Invalidate,
        Some(Value::String(a)) if a == "rollback" => Action::Rollback,
        Some(Value::String(a)) => return reject(Reason::UnknownAction, format!("action {a:?}")),
        Some(v) => return wrong("action", "a string", v),
    };
    match object.get("target") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "patterns" => {}
        Some(Value::String(t)) => {
            return reject(
                Reason::UnknownAction,
                format!("target {t:?}: only \"patterns\" is driven by the bus"),
            );
        }
        Some(v) => return wrong("target", "a string", v),
    }
    let pattern_id = match object.get("pattern_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some_and(|id| id > 0) => n.as_i64(),
        Some(v) => return wrong("pattern_id", "a positive integer or null", v),
    };
    if action == Action::Invalidate && pattern_id.is_none() {
        return reject(Reason::MissingPatternId, "invalidate names no pattern_id");
    }
    let content_hash = nonempty_string(&object, "content_hash")?;
    if (action == Action::Rollback) != content_hash.is_some() {
        return reject(
            Reason::WrongType,
            "content_hash is required by a rollback and allowed on nothing else",
        );
    }
    let content_hash_scheme = match object.get("content_hash_scheme") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if content_hash.is_some() => match n.as_u64() {
            Some(s) if s > 0 && s <= u64::from(u32::MAX) => Some(s as u32),
            _ => {
                return wrong(
                    "content_hash_scheme",
                    "a positive integer",
                    &Value::Number(n.clone()),
                );
            }
        },
        Some(v) if content_hash.is_some() => {
            return wrong("content_hash_scheme", "a positive integer", v);
        }
        Some(_) => {
            return reject(
                Reason::WrongType,
                "content_hash_scheme is allowed on a rollback only",
            );
        }
    };
    let envelope = Envelope {
        action,
        pattern_id,
        content_hash,
        content_hash_scheme,
        event_id: nonempty_string(&object, "event_id")?,
        origin: nonempty_string(&object, "origin")?,
        revision: match object.get("revision") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            Some(v) => return wrong("revision", "an integer", v),
        },
        ts: match object.get("ts") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(v) => return wrong("ts", "a number of Unix seconds", v),
        },
        sig: nonempty_string(&object, "sig")?,
    };
    Ok(Decoded { envelope, object })
}

fn nonempty_string(object: &Map<String, Value>, field: &str) -> Result<Option<String>, Rejected> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(v) => wrong(field, "a non-empty string", v),
    }
}

fn wrong<T>(field: &str, expected: &str, got: &Value) -> Result<T, Rejected> {
    reject(
        Reason::WrongType,
        format!("{field} must be {expected}, not {}", kind(got)),
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(bytes: &[u8]) -> Reason {
        decode(bytes).expect_err("rejected").reason
    }

    #[test]
    fn legacy_messages_decode() {
        let e = decode(br#"{"action":"reload","pattern_id":123}"#)
            .expect("ok")
            .envelope;
        assert_eq!((e.action, e.pattern_id), (Action::Reload, Some(123)));
        let e = decode(br#"{"action":"reload","pattern_id":null}"#)
            .expect("ok")
            .envelope;
        assert_eq!(e.pattern_id, None);
        let e = decode(br#"{"action": "reload"}"#).expect("ok").envelope;
        assert_eq!((e.action, e.pattern_id, e.ts), (Action::Reload, None, None));
        let e = decode(
            br#"{"action":"invalidate","pattern_id":7,"event_id":"e1","origin":"a","target":"patterns","revision":-3,"ts":1700000000.5,"sig":"ab","extra":[1]}"#,
        )
        .expect("ok")
        .envelope;
        assert_eq!(e.action, Action::Invalidate);
        assert_eq!(e.pattern_id, Some(7));
        assert_eq!(e.content_hash, None);
        assert_eq!(e.event_id.as_deref(), Some("e1"));
        assert_eq!(e.origin.as_deref(), Some("a"));
        assert_eq!((e.revision, e.ts), (Some(-3), Some(1_700_000_000.5)));
    }

    #[test]
    fn rollbacks_carry_a_content_hash_and_nothing_else_does() {
        let e = decode(br#"{"action":"rollback","content_hash":"00ab","origin":"a"}"#)
            .expect("ok")
            .envelope;
        assert_eq!(
            (e.action, e.content_hash.as_deref()),
            (Action::Rollback, Some("00ab"))
        );
        assert_eq!(Action::Rollback.as_str(), "rollback");
        assert_eq!(
            e.content_hash_scheme, None,
            "older publishers name no scheme"
        );
        let e = decode(br#"{"action":"rollback","content_hash":"00ab","content_hash_scheme":3}"#)
            .expect("ok")
            .envelope;
        assert_eq!(e.content_hash_scheme, Some(3));
        for bad in [
            &br#"{"action":"rollback"}"#[..],
            br#"{"action":"rollback","content_hash":""}"#,
            br#"{"action":"rollback","content_hash":12}"#,
            br#"{"action":"reload","content_hash":"00ab"}"#,
            br#"{"action":"rollback","content_hash":"00ab","content_hash_scheme":0}"#,
            br#"{"action":"rollback","content_hash":"00ab","content_hash_scheme":-2}"#,
            br#"{"action":"rollback","content_hash":"00ab","content_hash_scheme":"2"}"#,
            br#"{"action":"rollback","content_hash":"00ab","content_hash_scheme":4294967296}"#,
            br#"{"action":"reload","content_hash_scheme":2}"#,
        ] {
            assert_eq!(
                reason(bad),
                Reason::WrongType,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn each_structural_rejection_has_its_reason() {
        let big = format!(
            r#"{{"action":"reload","pad":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(reason(big.as_bytes()), Reason::TooLarge);
        assert_eq!(reason(b"{not json"), Reason::NotJson);
        assert_eq!(reason(b"\xff\xfe"), Reason::NotJson);
        assert_eq!(reason(b"[1,2]"), Reason::NotObject);
        assert_eq!(reason(b"\"reload\""), Reason::NotObject);
        assert_eq!(
            reason(br#"{"action":"reload","pattern_id":"12"}"#),
            Reason::WrongType
        );
        assert_eq!(
            reason(br#"{"action":"reload","pattern_id":1.5}"#),
            Reason::WrongType
        );
        assert_eq!(
            reason(br#"{"action":"reload","pattern_id":0}"#),
            Reason::WrongType
        );
        assert_eq!(
            reason(br#"{"action":"reload","ts":"now"}"#),
            Reason::WrongType
        );
        assert_eq!(reason(br#"{"action":7}"#), Reason::WrongType);
        assert_eq!(
            reason(br#"{"action":"reload","origin":""}"#),
            Reason::WrongType
        );
        assert_eq!(reason(br#"{"action":"explode"}"#), Reason::UnknownAction);
        assert_eq!(reason(br#"{"pattern_id":1}"#), Reason::UnknownAction);
        assert_eq!(
            reason(br#"{"action":"reload","target":"config"}"#),
            Reason::UnknownAction
        );
        assert_eq!(
            reason(br#"{"action":"invalidate","pattern_id":null}"#),
            Reason::MissingPatternId
        );
        assert_eq!(
            reason(br#"{"action":"invalidate"}"#),
            Reason::MissingPatternId
        );
    }

    #[test]
    fn reason_names_are_stable() {
        let names: Vec<&str> = Reason::REJECTIONS.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "too_large",
                "not_json",
                "not_object",
                "wrong_type",
                "unknown_action",
                "missing_pattern_id",
                "bad_signature",
                "unsigned",
                "stale",
                "replayed",
                "before_start",
                "unsigned_rollback",
                "overflow"
            ]
        );
        assert_eq!(Reason::SelfOrigin.as_str(), "self");
    }
}

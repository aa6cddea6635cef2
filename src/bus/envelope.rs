//! Bus messages: decoding, the checks every message passes before it may touch the engine, and
//! signing. Pure code: no I/O, no clock of its own (callers pass `now`), so every rule is a unit
//! test.
//!
//! A message is one JSON object, at most [`MAX_MESSAGE_BYTES`]:
//!
//! ```json
//! {"action":"reload","pattern_id":123}            legacy: reload row 123
//! {"action":"reload","pattern_id":null}           legacy: reload whatever changed (delta)
//! {"action":"invalidate","pattern_id":123,        stop serving row 123 now
//!  "event_id":"…","origin":"…","target":"patterns","revision":42,"ts":1700000000,"sig":"…"}
//! ```
//!
//! Optional fields: `event_id` (unique per event), `origin` (the publishing instance; a replica
//! skips its own events), `target` (`patterns`, the only hot state the bus drives today),
//! `revision` (the store revision the publisher served; informational: receivers always ask
//! the store), `ts` (Unix seconds, integer or fractional), `sig` (see [`canonical`]). Unknown
//! fields are ignored (and signed like the others).
//!
//! Every rejection has a [`Reason`] whose lower-case name is the counter key in `GetStatus`.

use std::collections::{HashSet, VecDeque};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Largest message accepted, in bytes; larger ones are rejected before parsing.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Most event ids remembered for replay detection (16 bytes each plus bookkeeping).
pub const REPLAY_MEMORY: usize = 65_536;

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
    /// The message is this instance's own event (`origin` is our instance id): skipped.
    SelfOrigin,
}

impl Reason {
    /// Every reason that counts as a rejection (all but `SelfOrigin`), in a stable order.
    pub const REJECTIONS: [Reason; 10] = [
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

fn reject<T>(reason: Reason, detail: impl Into<String>) -> Result<T, Rejected> {
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
}

impl Action {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reload => "reload",
            Action::Invalidate => "invalidate",
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
    let envelope = Envelope {
        action,
        pattern_id,
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

/// The bus secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from its text.
    pub fn new(text: &str) -> Secret {
        Secret(text.as_bytes().to_vec())
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; the error branch cannot happen.
        Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The text a signature covers: the message object without `sig`, keys sorted, no whitespace,
/// non-ASCII escaped, exactly as Python writes it with
/// `json.dumps(obj, sort_keys=True, separators=(",", ":"))`:
///
/// - object keys in code-point order, `{"a":1,"b":[true,null]}`;
/// - strings escaped as `\"` `\\` `\n` `\r` `\t` `\b` `\f`, every other character outside
///   printable ASCII (space to `~`) as `\u00e9`, lower-case hex, UTF-16 surrogate pairs above
///   U+FFFF;
/// - integers as written; fractional numbers in Python's `repr` form (`1.5`, `123.0`, `1e-05`,
///   `1e+16`).
///
/// A publisher signs the object it is about to send (without `sig`), then adds
/// `"sig": hex(HMAC-SHA256(secret, canonical))`; a receiver recomputes the text from the object
/// it received, so key order and spacing on the wire do not matter.
pub fn canonical(object: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    write_object(&mut out, object, true);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, false),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>, skip_sig: bool) {
    // serde_json's map is a BTreeMap (no preserve_order feature): keys come sorted by bytes,
    // and UTF-8 byte order is code-point order, Python's sort order.
    out.push('{');
    let mut first = true;
    for (k, v) in map {
        if skip_sig && k == "sig" {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_string(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that round-trip (Rust's `{:e}` gives the same
/// digits), in fixed notation when the decimal exponent is in -5 < exp < 16, else scientific
/// with a signed, at-least-two-digit exponent.
fn python_float(f: f64) -> String {
    let sci = format!("{f:e}"); // e.g. "-1.2345e3", "1e-5"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-5 < exp && exp < 16) {
        let mut m = digits[..1].to_owned();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if (point as usize) >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// Hex HMAC-SHA256 of `text`.
pub fn sign(secret: &Secret, text: &str) -> String {
    let mut mac = secret.mac();
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `sig` (hex) is the HMAC of `text`, compared in constant time.
pub fn verify(secret: &Secret, text: &str, sig: &str) -> bool {
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    let mut mac = secret.mac();
    mac.update(text.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// The wire text of a message built from `object`: signed (a `sig` field added) when a secret
/// is given. The text is itself canonical JSON.
pub fn seal(mut object: Map<String, Value>, secret: Option<&Secret>) -> String {
    object.remove("sig");
    if let Some(secret) = secret {
        let sig = sign(secret, &canonical(&object));
        object.insert("sig".into(), Value::String(sig));
    }
    let mut out = String::with_capacity(256);
    write_object(&mut out, &object, false);
    out
}

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
        }
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
            self.replay.check(event_id, ts, now, self.window)?;
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

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
        assert_eq!(e.event_id.as_deref(), Some("e1"));
        assert_eq!(e.origin.as_deref(), Some("a"));
        assert_eq!((e.revision, e.ts), (Some(-3), Some(1_700_000_000.5)));
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
                "replayed"
            ]
        );
        assert_eq!(Reason::SelfOrigin.as_str(), "self");
    }

    /// Expected texts produced by CPython 3 with
    /// `json.dumps(obj, sort_keys=True, separators=(",", ":"))`.
    #[test]
    fn canonical_text_is_what_python_writes() {
        let v: Value = serde_json::from_str(
            r#"{"b":1,"a":[1,2.5,null,true],"é":"ü\u2028\n\t\"\\\u0001\u007f😀","sig":"x"}"#,
        )
        .expect("json");
        assert_eq!(
            canonical(&obj(v)),
            r#"{"a":[1,2.5,null,true],"b":1,"\u00e9":"\u00fc\u2028\n\t\"\\\u0001\u007f\ud83d\ude00"}"#
        );
        let v: Value = serde_json::from_str(
            r#"{"x":1e16,"y":1e15,"z":0.0001,"w":0.00001,"v":-0.0,"u":123.0,"t":1.5e-7,
                "s":2.5e300,"r":12345678901234567890,"q":-5,"p":{"z":{},"a":[]},
                "o":1.2345678901234568e+17,"n":0.30000000000000004,"m":1700000000.123}"#,
        )
        .expect("json");
        assert_eq!(
            canonical(&obj(v)),
            r#"{"m":1700000000.123,"n":0.30000000000000004,"o":1.2345678901234568e+17,"p":{"a":[],"z":{}},"q":-5,"r":12345678901234567890,"s":2.5e+300,"t":1.5e-07,"u":123.0,"v":-0.0,"w":1e-05,"x":1e+16,"y":1000000000000000.0,"z":0.0001}"#
        );
    }

    #[test]
    fn hmac_matches_python() {
        // python: hmac.new(b"s3cret", b'{"action":"reload","pattern_id":1}', hashlib.sha256)
        let s = Secret::new("s3cret");
        let text = r#"{"action":"reload","pattern_id":1}"#;
        let sig = "e417cffa688c378b26cb6e4549eaac58dc7a6216119c3c1abc9a5b856addf20b";
        assert_eq!(sign(&s, text), sig);
        assert!(verify(&s, text, sig));
        assert!(!verify(&s, text, &sig.replace('e', "f")));
        assert!(!verify(&s, text, "not hex"));
        assert!(!verify(&Secret::new("other"), text, sig));
        assert_eq!(format!("{s:?}"), "Secret(***)");
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

//! Pure conversions between hotplane's Rust types and the protobuf well-known types the API uses
//! (`Struct`/`Value` for pattern metadata, `Timestamp`, `Duration`).
//!
//! Handlers call these and nothing here does I/O or validation beyond what a conversion needs:
//! where a protobuf value cannot be represented, the function says so in its return type.

use std::time::Duration;

use chrono::{DateTime, Utc};
use prost_types::{ListValue, NullValue, Struct, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

/// Largest `seconds` of a valid `google.protobuf.Duration` (about 10,000 years).
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
/// Nanoseconds in a second.
const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// A JSON object as a protobuf `Struct`. `None` for JSON null and for anything that is not an
/// object (a `Struct` can only hold an object; metadata is validated as one before it is stored).
pub fn json_to_struct(v: &Json) -> Option<Struct> {
    match v {
        Json::Object(map) => Some(object_to_struct(map)),
        _ => None,
    }
}

/// Metadata text (a JSON object, as the snapshot and the store keep it) as a protobuf `Struct`;
/// `None` for none, and for text that is not a JSON object (checked when it was loaded).
pub fn json_text_to_struct(text: Option<&str>) -> Option<Struct> {
    json_to_struct(&serde_json::from_str(text?).ok()?)
}

/// Metadata text (valid JSON, as the snapshot and the store keep it) as a `metadata_json`
/// answer: the text itself when it is a JSON object, else empty, exactly where
/// [`json_text_to_struct`] answers `None`. Valid JSON is an object when it starts with `{`, so
/// nothing is parsed.
pub fn json_object_text(text: Option<&str>) -> String {
    match text {
        Some(t) if t.trim_start().starts_with('{') => t.to_owned(),
        _ => String::new(),
    }
}

/// A protobuf `Struct` as a JSON object.
pub fn struct_to_json(s: &Struct) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), prost_value_to_json(v)))
            .collect(),
    )
}

/// Any JSON value as a protobuf `Value`. Numbers become `f64`, as the protobuf JSON mapping
/// defines: integers beyond ±2^53 lose precision.
pub fn json_value_to_prost(v: &Json) -> Value {
    let kind = match v {
        Json::Null => Kind::NullValue(NullValue::NullValue.into()),
        Json::Bool(b) => Kind::BoolValue(*b),
        // `as_f64` is `None` only with serde_json's arbitrary_precision feature; null is the
        // protobuf mapping's answer for a number it cannot hold.
        Json::Number(n) => n.as_f64().map_or(
            Kind::NullValue(NullValue::NullValue.into()),
            Kind::NumberValue,
        ),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_value_to_prost).collect(),
        }),
        Json::Object(map) => Kind::StructValue(object_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

/// A protobuf `Value` as JSON. An unset kind and non-finite numbers (which JSON cannot hold)
/// become null; integral numbers that fit an `i64` become JSON integers, so `3` round-trips as
/// `3` rather than `3.0`.
pub fn prost_value_to_json(v: &Value) -> Json {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            Json::Array(list.values.iter().map(prost_value_to_json).collect())
        }
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// A UTC instant as a protobuf `Timestamp`. Chrono represents a leap second as nanoseconds
/// ≥ 10^9, which `Timestamp` forbids; it is clamped to the last nanosecond of that second.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    let nanos = t.timestamp_subsec_nanos().min(NANOS_PER_SECOND - 1);
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: nanos as i32,
    }
}

/// A duration as a protobuf `Duration`, saturating at the largest valid one (~10,000 years),
/// far beyond anything hotplane measures.
pub fn duration(d: Duration) -> prost_types::Duration {
    match i64::try_from(d.as_secs()) {
        Ok(seconds) if seconds <= MAX_DURATION_SECONDS => prost_types::Duration {
            seconds,
            nanos: d.subsec_nanos() as i32,
        },
        _ => prost_types::Duration {
            seconds: MAX_DURATION_SECONDS,
            nanos: (NANOS_PER_SECOND - 1) as i32,
        },
    }
}

/// A protobuf `Duration` as a `std` one. `None` when it is negative or not a valid protobuf
/// `Duration` (seconds beyond ±315,576,000,000, nanos beyond ±999,999,999, or seconds and
/// nanos of opposite signs).
pub fn std_duration(d: &prost_types::Duration) -> Option<Duration> {
    let seconds = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok()?;
    (d.seconds <= MAX_DURATION_SECONDS && nanos < NANOS_PER_SECOND)
        .then(|| Duration::new(seconds, nanos))
}

fn object_to_struct(map: &Map<String, Json>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_value_to_prost(v)))
            .collect(),
    }
}

fn number_to_json(n: f64) -> Json {
    // -2^63 and 2^63 are exact in f64; `as` would saturate anything outside, so check first.
    const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() == 0.0 && (-I64_BOUND..I64_BOUND).contains(&n) {
        Json::Number((n as i64).into())
    } else {
        // `from_f64` is `None` exactly for NaN and ±infinity.
        Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn number(n: f64) -> Value {
        Value {
            kind: Some(Kind::NumberValue(n)),
        }
    }

    #[test]
    fn nested_json_round_trips_through_struct() {
        let doc = json!({
            "action": "list_workflows",
            "params": {"active": true, "limit": 10, "ratio": 0.25, "tags": ["a", "b", null]},
            "nested": {"deeper": {"empty_object": {}, "empty_list": [], "neg": -3, "big": 1e300}},
            "none": null,
            "flag": false,
            "text": "già «ok» 🚀",
            "mixed": [1, "two", [3.5, {"four": 4}], true],
        });
        let s = json_to_struct(&doc).expect("an object");
        assert_eq!(struct_to_json(&s), doc);
        // and through the wire format
        let bytes = prost::Message::encode_to_vec(&s);
        let decoded: Struct = prost::Message::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(struct_to_json(&decoded), doc);
    }

    #[test]
    fn every_json_kind_round_trips_through_value() {
        for v in [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-42),
            json!(1.5),
            json!(-0.001),
            json!(""),
            json!("x"),
            json!([]),
            json!([null, [1, [2]]]),
            json!({}),
            json!({"a": {"b": [1, {"c": null}]}}),
        ] {
            assert_eq!(prost_value_to_json(&json_value_to_prost(&v)), v, "{v}");
        }
    }

    /// The JSON form answers text exactly where the Struct form answers a Struct.
    #[test]
    fn json_object_text_agrees_with_the_struct_form() {
        for text in [
            None,
            Some(r#"{"a": 1}"#),
            Some(" \n{}"),
            Some("[1, 2]"),
            Some(r#""{not an object}""#),
            Some("3"),
            Some("true"),
        ] {
            let json = json_object_text(text);
            assert_eq!(
                !json.is_empty(),
                json_text_to_struct(text).is_some(),
                "{text:?}"
            );
            if !json.is_empty() {
                assert_eq!(Some(json.as_str()), text);
            }
        }
    }

    #[test]
    fn only_objects_become_structs() {
        assert_eq!(json_to_struct(&json!(null)), None);
        for v in [json!(1), json!("s"), json!([1]), json!(true)] {
            assert_eq!(json_to_struct(&v), None, "{v}");
        }
        assert_eq!(json_to_struct(&json!({})), Some(Struct::default()));
    }

    #[test]
    fn numbers_map_to_integers_when_integral_and_null_when_not_finite() {
        assert_eq!(prost_value_to_json(&number(3.0)), json!(3));
        assert!(prost_value_to_json(&number(3.0)).is_i64());
        assert_eq!(prost_value_to_json(&number(-0.0)), json!(0));
        assert_eq!(prost_value_to_json(&number(2.5)), json!(2.5));
        assert_eq!(
            prost_value_to_json(&number(i64::MIN as f64)),
            json!(i64::MIN)
        );
        // 2^63 does not fit an i64: it stays a float rather than saturating.
        let two_63 = prost_value_to_json(&number(2f64.powi(63)));
        assert!(two_63.is_f64(), "{two_63}");
        assert_eq!(prost_value_to_json(&number(1e300)), json!(1e300));
        for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(prost_value_to_json(&number(n)), Json::Null, "{n}");
        }
        assert_eq!(prost_value_to_json(&Value { kind: None }), Json::Null);
    }

    #[test]
    fn timestamps_keep_seconds_and_nanos_and_clamp_leap_seconds() {
        let t = Utc
            .timestamp_opt(1_700_000_000, 123_456_789)
            .single()
            .expect("valid");
        assert_eq!(
            timestamp(t),
            prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789
            }
        );
        let before_epoch = Utc.timestamp_opt(-1, 5).single().expect("valid");
        assert_eq!(timestamp(before_epoch).seconds, -1);
        assert_eq!(timestamp(before_epoch).nanos, 5);
        let leap = Utc
            .timestamp_opt(1_483_228_799, 1_500_000_000)
            .single()
            .expect("chrono accepts a leap second");
        assert_eq!(timestamp(leap).nanos, 999_999_999);
        assert_eq!(timestamp(leap).seconds, 1_483_228_799);
    }

    #[test]
    fn durations_round_trip_and_invalid_ones_are_rejected() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(1_500),
            Duration::new(MAX_DURATION_SECONDS as u64, 999_999_999),
        ] {
            assert_eq!(std_duration(&duration(d)), Some(d), "{d:?}");
        }
        let saturated = duration(Duration::MAX);
        assert_eq!(saturated.seconds, MAX_DURATION_SECONDS);
        assert_eq!(saturated.nanos, 999_999_999);

        let pd = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert_eq!(std_duration(&pd(-1, 0)), None);
        assert_eq!(std_duration(&pd(0, -1)), None);
        assert_eq!(std_duration(&pd(1, -500_000_000)), None);
        assert_eq!(std_duration(&pd(0, 1_000_000_000)), None);
        assert_eq!(std_duration(&pd(MAX_DURATION_SECONDS + 1, 0)), None);
        assert_eq!(std_duration(&pd(i64::MAX, 0)), None);
    }
}

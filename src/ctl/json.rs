//! `--json`: any answer as proto3 JSON, transcoded through the descriptor set build.rs embeds
//! (`pb::FILE_DESCRIPTOR_SET`, plus tonic-types' for the `google.rpc` error details), so the
//! output follows the proto with nothing written per message.
//!
//! Field names are the proto's (`generation_after`, not `generationAfter`): the names in
//! `proto/` and docs/api.md. Every scalar, list and map field is present, defaults included, so
//! a script can read `.matched` without guessing; a message field that is not set is left out. 64-bit integers are JSON numbers (ids and generations stay far
//! below 2^53), enums their names (`TARGET_PATTERNS`), timestamps RFC 3339, durations `"1.5s"`,
//! and metadata a plain JSON object.

use std::sync::LazyLock;

use base64::Engine as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Value, json};

/// Every hotplane message, the well-known types and `google.rpc`'s details.
static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    let mut pool =
        DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())?;
    pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .map_err(|e| e.to_string())?;
    Ok(pool)
});

fn options() -> SerializeOptions {
    SerializeOptions::new()
        .skip_default_fields(false)
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
}

/// `bytes` (an encoded `name`, e.g. `hotplane.v1.GetStatusResponse`) as JSON.
fn bytes_to_json(name: &str, bytes: &[u8]) -> Result<Value, String> {
    let pool = POOL.as_ref().map_err(Clone::clone)?;
    let descriptor = pool
        .get_message_by_name(name)
        .ok_or_else(|| format!("{name} is not in the descriptor set"))?;
    let message = DynamicMessage::decode(descriptor, bytes).map_err(|e| e.to_string())?;
    message
        .serialize_with_options(serde_json::value::Serializer, &options())
        .map_err(|e| e.to_string())
}

/// `message`, of the proto type `name`, as JSON.
pub fn to_json(message: &impl prost::Message, name: &str) -> Value {
    bytes_to_json(name, &message.encode_to_vec())
        .unwrap_or_else(|e| json!({"error": format!("cannot show {name} as JSON: {e}")}))
}

/// A `google.protobuf.Any` as JSON: its fields and `@type` when the type is known, else its
/// `@type` and its bytes in base64.
pub fn any_to_json(type_url: &str, value: &[u8]) -> Value {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    match bytes_to_json(name, value) {
        Ok(Value::Object(mut fields)) => {
            fields.insert("@type".into(), Value::String(type_url.into()));
            Value::Object(fields)
        }
        _ => {
            json!({"@type": type_url, "value": base64::engine::general_purpose::STANDARD.encode(value)})
        }
    }
}

/// A JSON object given on the command line (`--metadata`) as a `google.protobuf.Struct`.
pub fn struct_from_json(text: &str) -> Result<prost_types::Struct, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("not a JSON object ({...})".into());
    }
    let pool = POOL.as_ref().map_err(Clone::clone)?;
    let descriptor = pool
        .get_message_by_name("google.protobuf.Struct")
        .ok_or("google.protobuf.Struct is not in the descriptor set")?;
    DynamicMessage::deserialize(descriptor, value)
        .map_err(|e| e.to_string())?
        .transcode_to::<prost_types::Struct>()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    #[test]
    fn answers_use_proto_names_numbers_and_enum_names() {
        let v = to_json(
            &pb::ReloadResponse {
                target: pb::Target::Patterns.into(),
                generation_after: 7,
                ..Default::default()
            },
            "hotplane.v1.ReloadResponse",
        );
        assert_eq!(v["target"], "TARGET_PATTERNS");
        assert_eq!(v["generation_after"], 7);
        assert_eq!(v["changed"], false, "defaults are present");
    }

    #[test]
    fn an_unknown_detail_keeps_its_type_and_bytes() {
        let v = any_to_json("type.example.com/x.Unknown", b"hi!?");
        assert_eq!(v["@type"], "type.example.com/x.Unknown");
        assert_eq!(v["value"], "aGkhPw==");
    }

    #[test]
    fn metadata_round_trips_and_must_be_an_object() {
        let s = struct_from_json(r#"{"action":"x","n":2,"deep":{"l":[true,null]}}"#)
            .expect("an object");
        let back = to_json(&s, "google.protobuf.Struct");
        assert_eq!(back["deep"]["l"][0], true);
        assert_eq!(back["action"], "x");
        assert!(struct_from_json("[1]").is_err());
        assert!(struct_from_json("{oops").is_err());
    }
}

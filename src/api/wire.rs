//! The match answers as the server encodes them: wire-identical to `MatchPatternResponse` and
//! `BatchMatchPatternsResponse`, except that each matched pattern is held as its encoded bytes
//! (a protobuf message field and a `bytes` field are both length-delimited on the wire, so a
//! client decodes the same `MatchedPattern`). A pattern with large metadata is encoded once per
//! generation and shared by every answer that returns it ([`super::encoded`]), instead of its
//! metadata being parsed and encoded again for each match.
//!
//! `build.rs` generates the `Patterns` service's server side against these two types (and
//! `pb`'s for everything else); clients, reflection and every other message use `pb`.

use bytes::Bytes;

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/wire/hotplane.v1.rs"));
}
pub use generated::patterns_server;

/// `hotplane.v1.MatchPatternResponse`, with `pattern` as an encoded `MatchedPattern`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MatchPatternResponse {
    /// Whether a served pattern matched.
    #[prost(bool, tag = "1")]
    pub matched: bool,
    /// The matched pattern, encoded; absent when `matched` is false.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub pattern: Option<Bytes>,
    /// The query after normalization.
    #[prost(string, tag = "3")]
    pub normalized_query: String,
    /// The generation that answered.
    #[prost(uint64, tag = "4")]
    pub generation: u64,
}

/// `hotplane.v1.MatchResult`, with `pattern` as an encoded `MatchedPattern`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MatchResult {
    /// Whether a served pattern matched.
    #[prost(bool, tag = "1")]
    pub matched: bool,
    /// The matched pattern, encoded; absent when `matched` is false.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub pattern: Option<Bytes>,
    /// The query after normalization.
    #[prost(string, tag = "3")]
    pub normalized_query: String,
}

/// `hotplane.v1.BatchMatchPatternsResponse`, of [`MatchResult`]s.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchMatchPatternsResponse {
    /// Results in the order of the request's queries.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<MatchResult>,
    /// The single generation that answered every query.
    #[prost(uint64, tag = "2")]
    pub generation: u64,
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::{Struct, Value, value::Kind};

    use super::*;
    use crate::pb;

    fn pattern() -> pb::MatchedPattern {
        let mut metadata = Struct::default();
        metadata.fields.insert(
            "action".into(),
            Value {
                kind: Some(Kind::StringValue("x".into())),
            },
        );
        pb::MatchedPattern {
            id: 7,
            normalized_pattern: "ciao mondo".into(),
            category: "greeting".into(),
            confidence: 0.93,
            accuracy: 0.5,
            metadata: Some(metadata),
            ..Default::default()
        }
    }

    /// What a client decodes is exactly the message it would get from `pb`'s types, byte for
    /// byte, matched or not.
    #[test]
    fn the_wire_types_encode_exactly_as_the_proto_messages() {
        for p in [Some(pattern()), None] {
            let encoded = p.as_ref().map(|p| Bytes::from(p.encode_to_vec()));
            let single = MatchPatternResponse {
                matched: p.is_some(),
                pattern: encoded.clone(),
                normalized_query: "ciao mondo".into(),
                generation: 42,
            };
            let proto = pb::MatchPatternResponse {
                matched: p.is_some(),
                pattern: p.clone(),
                normalized_query: "ciao mondo".into(),
                generation: 42,
            };
            assert_eq!(single.encode_to_vec(), proto.encode_to_vec());
            assert_eq!(single.encoded_len(), proto.encoded_len());
            let batch = BatchMatchPatternsResponse {
                results: vec![
                    MatchResult {
                        matched: p.is_some(),
                        pattern: encoded.clone(),
                        normalized_query: "a".into(),
                    };
                    3
                ],
                generation: 9,
            };
            let proto_batch = pb::BatchMatchPatternsResponse {
                results: vec![
                    pb::MatchResult {
                        matched: p.is_some(),
                        pattern: p.clone(),
                        normalized_query: "a".into(),
                    };
                    3
                ],
                generation: 9,
            };
            assert_eq!(batch.encode_to_vec(), proto_batch.encode_to_vec());
            assert_eq!(
                pb::BatchMatchPatternsResponse::decode(batch.encode_to_vec().as_slice())
                    .expect("decodes"),
                proto_batch
            );
        }
    }
}

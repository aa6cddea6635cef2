//! Matching queries against one snapshot, with the answer's size bounded before it is built.
//!
//! Served rows may carry large metadata (up to `--max-served-metadata-bytes`, written by any
//! client of the database), and reads are anonymous by default, so without a bound a
//! `BatchMatchPatterns` of 1,000 copies of one query would make the server build 1,000 copies
//! of that metadata. Here:
//!
//! - each distinct query text is normalized and looked up once, and each distinct matched row's
//!   encoded `MatchedPattern` (its metadata parsed into a protobuf `Struct`) is fetched once per
//!   request, however many queries match it; rows with large metadata are encoded once per
//!   generation ([`super::encoded`]) and every answer shares the bytes;
//! - the encoded size of the answer is added up, query by query, from those once-built parts
//!   (what a copy would cost, without copying), and the request is refused with
//!   RESOURCE_EXHAUSTED as soon as it passes `--max-response-bytes`: a row is fetched only
//!   while the total is under the limit, so the memory a request can make the server use stays
//!   about the limit (plus one row), whatever it asks;
//! - only then are hits counted (one per matching query, as before) and the answer built, each
//!   copy of a pattern a reference to the same bytes.

use std::collections::HashMap;

use bytes::Bytes;
use prost::encoding::{encoded_len_varint, key_len};

use super::{
    encoded::EncodedPatterns,
    error::{ApiError, ApiResult, Reason},
};
use crate::{
    hits::HitCounter,
    normalize::Normalizer,
    snapshot::{PatternSnapshot, Row},
};

/// One query's answer: the matched pattern (an encoded `MatchedPattern`), if any, and the
/// normalized query.
pub(super) type Matched = (Option<Bytes>, String);

/// What a match request needs besides its queries.
pub(super) struct Matcher<'a> {
    /// The normalizer of one config generation.
    pub normalizer: &'a Normalizer,
    /// The snapshot that answers every query of the request.
    pub snapshot: &'a PatternSnapshot,
    /// Only rows with at least this confidence.
    pub min_confidence: Option<f64>,
    /// Largest encoded answer (`--max-response-bytes`).
    pub max_bytes: usize,
    /// The generation number, encoded in the answer too.
    pub generation: u64,
    /// Patterns encoded once per generation.
    pub encoded: &'a EncodedPatterns,
    /// Answer each pattern's metadata as JSON text (`metadata_json`) instead of a `Struct`:
    /// copied from the row, so encoded per match without the cache.
    pub metadata_as_json: bool,
}

/// Bytes of a `uint64` field `value` (absent when 0, as proto3 encodes it).
fn u64_field_len(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(1) + encoded_len_varint(value)
    }
}

/// Bytes of a length-delimited field of `len` bytes (a string, or a message when `present`).
fn delimited_len(len: usize, present: bool) -> usize {
    if present {
        key_len(1) + encoded_len_varint(len as u64) + len
    } else {
        0
    }
}

/// Encoded bytes of a `MatchResult` (fields 1-3 of `MatchPatternResponse` too): `matched`,
/// `pattern` (`pattern_len` bytes, when matched) and `normalized_query`.
fn result_len(pattern_len: Option<usize>, normalized: &str) -> usize {
    let matched = if pattern_len.is_some() { 2 } else { 0 };
    matched
        + pattern_len.map_or(0, |len| delimited_len(len, true))
        + delimited_len(normalized.len(), !normalized.is_empty())
}

impl Matcher<'_> {
    /// Answers `queries` in order (one answer per query, duplicates included) and counts a hit
    /// for each one that matches, or refuses them all when the encoded answer would be over
    /// `max_bytes`. `batch`: the answer is a `BatchMatchPatternsResponse` (each result nested
    /// as a repeated field), else a `MatchPatternResponse` of the one query.
    pub(super) fn answer(
        &self,
        queries: &[String],
        batch: bool,
        hits: &HitCounter,
    ) -> ApiResult<Vec<Matched>> {
        if let ([q], false) = (queries, batch) {
            return self.answer_one(q, hits).map(|a| vec![a]);
        }
        // Each distinct query text: its normalized text and matched row, looked up once.
        let mut distinct: Vec<(String, Option<Row<'_>>)> = Vec::new();
        let mut of_query: HashMap<&str, usize> = HashMap::new();
        // Each distinct matched row's encoded pattern, fetched once.
        let mut built: Vec<Bytes> = Vec::new();
        let mut of_row: HashMap<i64, usize> = HashMap::new();
        let mut answer_of = Vec::with_capacity(queries.len());
        let mut total = u64_field_len(self.generation);
        for (n, q) in queries.iter().enumerate() {
            let d = *of_query.entry(q.as_str()).or_insert_with(|| {
                let normalized = self.normalizer.normalize(q);
                let row = (!normalized.is_empty())
                    .then(|| self.snapshot.lookup(&normalized, self.min_confidence))
                    .flatten();
                distinct.push((normalized, row));
                distinct.len() - 1
            });
            let (normalized, row) = &distinct[d];
            let pattern = row.map(|row| {
                *of_row.entry(row.id()).or_insert_with(|| {
                    built.push(self.pattern(row));
                    built.len() - 1
                })
            });
            let len = result_len(pattern.map(|p| built[p].len()), normalized);
            total += if batch { delimited_len(len, true) } else { len };
            if total > self.max_bytes {
                return Err(too_large(total, self.max_bytes, n + 1, queries.len()));
            }
            answer_of.push((d, pattern));
        }
        Ok(answer_of
            .into_iter()
            .map(|(d, pattern)| {
                let (normalized, row) = &distinct[d];
                if let Some(row) = row {
                    hits.record(row.id());
                }
                (pattern.map(|p| built[p].clone()), normalized.clone())
            })
            .collect())
    }

    /// `row` as an encoded `MatchedPattern`, its metadata in the form asked for.
    fn pattern(&self, row: Row<'_>) -> Bytes {
        if self.metadata_as_json {
            super::encoded::encode_json(row)
        } else {
            self.encoded.get(self.generation, row)
        }
    }

    /// [`Self::answer`] of one `MatchPattern` query, without the bookkeeping of duplicates.
    fn answer_one(&self, query: &str, hits: &HitCounter) -> ApiResult<Matched> {
        let normalized = self.normalizer.normalize(query);
        let row = (!normalized.is_empty())
            .then(|| self.snapshot.lookup(&normalized, self.min_confidence))
            .flatten();
        let pattern = row.map(|row| self.pattern(row));
        let len = result_len(pattern.as_ref().map(Bytes::len), &normalized);
        let total = u64_field_len(self.generation) + len;
        if total > self.max_bytes {
            return Err(too_large(total, self.max_bytes, 1, 1));
        }
        if let Some(row) = row {
            hits.record(row.id());
        }
        Ok((pattern, normalized))
    }
}

/// The refusal of an answer that passed `max` bytes after `counted` of `asked` queries.
fn too_large(total: usize, max: usize, counted: usize, asked: usize) -> ApiError {
    let what = if asked == 1 {
        "the matched pattern's metadata is larger than one answer may be; an operator can \
         shrink the row or raise the limit"
            .to_owned()
    } else {
        format!(
            "the first {counted} of the {asked} queries already need that much (the matched \
             patterns carry large metadata): send fewer queries per batch"
        )
    };
    ApiError::reasoned(
        Reason::ResponseTooLarge,
        format!(
            "the answer would be at least {total} bytes, over the limit of {max} bytes \
             (--max-response-bytes); {what}"
        ),
        vec![
            ("max_response_bytes", max.to_string()),
            ("answer_bytes", total.to_string()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::{
        api::wire,
        model::{PatternRow, PatternStatus},
        pb,
    };

    fn row(id: i64, norm: &str, metadata: Option<String>) -> PatternRow {
        PatternRow {
            id,
            pattern: norm.into(),
            normalized_pattern: norm.into(),
            category: "cat".into(),
            confidence: 0.95,
            times_used: 0,
            times_correct: 0,
            accuracy: 0.5,
            created_at: chrono::Utc::now(),
            last_used_at: None,
            created_by: "test".into(),
            enabled: true,
            status: PatternStatus::Approved,
            metadata,
            updated_at: chrono::Utc::now(),
            revision: id,
        }
    }

    fn fixture() -> PatternSnapshot {
        PatternSnapshot::from_rows(vec![
            row(
                1,
                "big one",
                Some(format!(r#"{{"blob":"{}"}}"#, "x".repeat(5000))),
            ),
            row(
                2,
                "small one",
                Some(r#"{"a":[1,2.5,null,{"b":true}]}"#.into()),
            ),
            row(3, "bare", None),
        ])
        .expect("valid")
    }

    fn matcher<'a>(snap: &'a PatternSnapshot, norm: &'a Normalizer, max: usize) -> Matcher<'a> {
        // Leaked: a test's matchers share nothing, and a few bytes per test is no leak to mind.
        let encoded: &'static EncodedPatterns = Box::leak(Box::default());
        Matcher {
            normalizer: norm,
            snapshot: snap,
            min_confidence: None,
            max_bytes: max,
            generation: 300,
            encoded,
            metadata_as_json: false,
        }
    }

    fn decoded(p: &Option<Bytes>) -> Option<pb::MatchedPattern> {
        p.as_ref()
            .map(|b| pb::MatchedPattern::decode(b.as_ref()).expect("a MatchedPattern"))
    }

    fn queries(q: &[&str]) -> Vec<String> {
        q.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_counted_size_is_the_encoded_size() {
        let snap = fixture();
        let norm = Normalizer::new(crate::normalize::Profile::Default, None);
        let m = matcher(&snap, &norm, usize::MAX);
        let hits = HitCounter::default();
        let qs = queries(&[
            "Big one",
            "small ONE",
            "bare",
            "nothing",
            "",
            "Big one",
            "bare",
        ]);
        let got = m.answer(&qs, true, &hits).expect("under the limit");
        let batch = wire::BatchMatchPatternsResponse {
            results: got
                .iter()
                .cloned()
                .map(|(pattern, normalized_query)| wire::MatchResult {
                    matched: pattern.is_some(),
                    pattern,
                    normalized_query,
                })
                .collect(),
            generation: 300,
        };
        let exact = batch.encoded_len();
        // What a client decodes: the rows' own fields, metadata included.
        let seen = pb::BatchMatchPatternsResponse::decode(batch.encode_to_vec().as_slice())
            .expect("decodes");
        let big = seen.results[0].pattern.as_ref().expect("matched");
        assert_eq!((big.id, big.category.as_str()), (1, "cat"));
        let blob = &big.metadata.as_ref().expect("metadata").fields["blob"];
        assert_eq!(
            blob.kind,
            Some(prost_types::value::Kind::StringValue("x".repeat(5000)))
        );
        assert_eq!(seen.results[3].pattern, None);
        // One byte under the exact size is refused, the exact size is not.
        assert!(
            matcher(&snap, &norm, exact)
                .answer(&qs, true, &hits)
                .is_ok()
        );
        let err = matcher(&snap, &norm, exact - 1)
            .answer(&qs, true, &hits)
            .expect_err("one byte over");
        assert!(
            matches!(&err, ApiError::Reasoned(r) if r.reason == Reason::ResponseTooLarge),
            "{err}"
        );
        for q in &qs {
            let (pattern, normalized_query) = m
                .answer(std::slice::from_ref(q), false, &hits)
                .expect("fits")
                .remove(0);
            let single = wire::MatchPatternResponse {
                matched: pattern.is_some(),
                pattern,
                normalized_query,
                generation: 300,
            };
            let exact = single.encoded_len();
            let one = std::slice::from_ref(q);
            assert!(
                matcher(&snap, &norm, exact)
                    .answer(one, false, &hits)
                    .is_ok()
            );
            assert!(
                matcher(&snap, &norm, exact - 1)
                    .answer(one, false, &hits)
                    .is_err()
            );
        }
    }

    #[test]
    fn duplicates_get_equal_answers_in_order_and_each_counts_a_hit() {
        let snap = fixture();
        let norm = Normalizer::new(crate::normalize::Profile::Default, None);
        let hits = HitCounter::default();
        let qs = queries(&["small one", "bare", "Small One!", "small one"]);
        let got = matcher(&snap, &norm, usize::MAX)
            .answer(&qs, true, &hits)
            .expect("fits");
        let ids: Vec<_> = got.iter().map(|(p, _)| decoded(p).map(|p| p.id)).collect();
        assert_eq!(ids, [Some(2), Some(3), Some(2), Some(2)]);
        assert_eq!(got[0], got[3]);
        assert_eq!(got[0].0, got[2].0);
        assert_eq!(hits.pending(), 4);
        // A refused request counts nothing.
        let refused = HitCounter::default();
        let many = vec!["big one".to_owned(); 100];
        let err = matcher(&snap, &norm, 64 * 1024)
            .answer(&many, true, &refused)
            .expect_err("100 x 5 KB is over 64 KiB");
        assert!(err.to_string().contains("--max-response-bytes"), "{err}");
        assert_eq!(refused.pending(), 0);
    }

    /// A row with large metadata is encoded once per generation: later requests share the same
    /// bytes; a new generation encodes it again; small rows are encoded per match.
    #[test]
    fn large_patterns_are_encoded_once_per_generation() {
        let snap = fixture();
        let norm = Normalizer::new(crate::normalize::Profile::Default, None);
        let hits = HitCounter::default();
        let encoded = EncodedPatterns::default();
        let at = |generation| Matcher {
            normalizer: &norm,
            snapshot: &snap,
            min_confidence: None,
            max_bytes: usize::MAX,
            generation,
            encoded: &encoded,
            metadata_as_json: false,
        };
        let big = |generation| {
            at(generation)
                .answer(&queries(&["big one"]), false, &hits)
                .expect("fits")
                .remove(0)
                .0
                .expect("matched")
        };
        let (first, second) = (big(5), big(5));
        assert_eq!(first.as_ptr(), second.as_ptr(), "the same bytes, shared");
        let batch = at(5)
            .answer(&queries(&["big one", "Big One"]), true, &hits)
            .expect("fits");
        assert_eq!(
            batch[0].0.as_ref().expect("matched").as_ptr(),
            first.as_ptr()
        );
        assert_eq!(encoded.encoded(), 1);
        let newer = big(6);
        assert_ne!(
            newer.as_ptr(),
            first.as_ptr(),
            "a new generation encodes again"
        );
        assert_eq!(newer, first, "to the same bytes when the row is unchanged");
        assert_eq!(encoded.encoded(), 2);
        // A request still on the older generation does not evict the newer one's rows.
        big(5);
        assert_eq!(big(6).as_ptr(), newer.as_ptr());
        at(6)
            .answer(&queries(&["small one", "small one", "bare"]), true, &hits)
            .expect("fits");
        assert_eq!(encoded.encoded(), 2, "small rows are not cached");
    }

    /// With `metadata_as_json`, each matched pattern carries its row's metadata text in
    /// `metadata_json` and no `Struct`, the cache is left alone, and the size bound counts the
    /// bytes that are sent.
    #[test]
    fn metadata_as_json_answers_the_row_text() {
        let snap = fixture();
        let norm = Normalizer::new(crate::normalize::Profile::Default, None);
        let hits = HitCounter::default();
        let cache = EncodedPatterns::default();
        let json = |max| Matcher {
            metadata_as_json: true,
            encoded: &cache,
            ..matcher(&snap, &norm, max)
        };
        let qs = queries(&["big one", "small one", "bare", "nothing", "big one"]);
        let got = json(usize::MAX).answer(&qs, true, &hits).expect("fits");
        let seen: Vec<_> = got.iter().map(|(p, _)| decoded(p)).collect();
        let text = |i: usize| seen[i].as_ref().expect("matched").metadata_json.clone();
        assert_eq!(text(0), format!(r#"{{"blob":"{}"}}"#, "x".repeat(5000)));
        assert_eq!(text(1), r#"{"a":[1,2.5,null,{"b":true}]}"#);
        assert_eq!(text(2), "", "no metadata: empty");
        assert!(seen[3].is_none());
        assert!(seen.iter().flatten().all(|p| p.metadata.is_none()));
        // The same pattern as the Struct form, but for its metadata.
        let as_struct = decoded(
            &matcher(&snap, &norm, usize::MAX)
                .answer(&qs[1..2], false, &hits)
                .expect("fits")[0]
                .0,
        )
        .expect("matched");
        assert_eq!(
            pb::MatchedPattern {
                metadata: as_struct.metadata.clone(),
                metadata_json: String::new(),
                ..seen[1].clone().expect("matched")
            },
            as_struct
        );
        // The bound holds on what is sent, to the byte.
        let batch = wire::BatchMatchPatternsResponse {
            results: got
                .into_iter()
                .map(|(pattern, normalized_query)| wire::MatchResult {
                    matched: pattern.is_some(),
                    pattern,
                    normalized_query,
                })
                .collect(),
            generation: 300,
        };
        let exact = batch.encoded_len();
        assert!(json(exact).answer(&qs, true, &hits).is_ok());
        assert!(json(exact - 1).answer(&qs, true, &hits).is_err());
        // "big one" (over MIN_CACHED_METADATA) would be cached in the Struct form.
        assert_eq!(cache.encoded(), 0, "the JSON form does not fill the cache");
    }
}

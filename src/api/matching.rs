//! Matching queries against one snapshot, with the answer's size bounded before it is built.
//!
//! Served rows may carry large metadata (up to `--max-served-metadata-bytes`, written by any
//! client of the database), and reads are anonymous by default, so without a bound a
//! `BatchMatchPatterns` of 1,000 copies of one query would make the server build 1,000 copies
//! of that metadata. Here:
//!
//! - each distinct query text is normalized and looked up once, and each distinct matched row's
//!   `MatchedPattern` (its metadata parsed into a protobuf `Struct`) is built once per request,
//!   however many queries match it;
//! - the encoded size of the answer is added up, query by query, from those once-built parts
//!   (what a copy would cost, without copying), and the request is refused with
//!   RESOURCE_EXHAUSTED as soon as it passes `--max-response-bytes`: a row is parsed only while
//!   the total is under the limit, so the memory a request can make the server use stays
//!   about the limit (plus one row), whatever it asks;
//! - only then are hits counted (one per matching query, as before) and the answer built.
//!
//! The metadata is still parsed from the row's JSON text once per request and distinct row, not
//! once per generation: holding it pre-encoded in the snapshot would remove that cost too (see
//! the README's Limits section).

use std::collections::HashMap;

use prost::{
    Message,
    encoding::{encoded_len_varint, key_len},
};

use super::{
    convert,
    error::{ApiError, ApiResult},
};
use crate::{
    hits::HitCounter,
    normalize::Normalizer,
    pb,
    snapshot::{PatternSnapshot, Row},
};

/// One query's answer: the matched pattern, if any, and the normalized query.
pub(super) type Matched = (Option<pb::MatchedPattern>, String);

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
        // Each distinct matched row's pattern, built once, its encoded length, and how many
        // answers use it (the last one takes it instead of a copy).
        let mut built: Vec<(pb::MatchedPattern, usize, usize)> = Vec::new();
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
                    let pattern = matched_pb(row);
                    let len = pattern.encoded_len();
                    built.push((pattern, len, 0));
                    built.len() - 1
                })
            });
            if let Some(p) = pattern {
                built[p].2 += 1;
            }
            let len = result_len(pattern.map(|p| built[p].1), normalized);
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
                let pattern = pattern.map(|p| {
                    let (pattern, _, uses) = &mut built[p];
                    *uses -= 1;
                    if *uses == 0 {
                        std::mem::take(pattern)
                    } else {
                        pattern.clone()
                    }
                });
                (pattern, normalized.clone())
            })
            .collect())
    }

    /// [`Self::answer`] of one `MatchPattern` query, without the bookkeeping of duplicates.
    fn answer_one(&self, query: &str, hits: &HitCounter) -> ApiResult<Matched> {
        let normalized = self.normalizer.normalize(query);
        let row = (!normalized.is_empty())
            .then(|| self.snapshot.lookup(&normalized, self.min_confidence))
            .flatten();
        let pattern = row.map(matched_pb);
        let len = result_len(pattern.as_ref().map(Message::encoded_len), &normalized);
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
    ApiError::ResourceExhausted(format!(
        "the answer would be at least {total} bytes, over the limit of {max} bytes \
         (--max-response-bytes); {what}"
    ))
}

/// A served row as a match answer (its metadata parsed from the row's JSON text).
pub(super) fn matched_pb(row: Row<'_>) -> pb::MatchedPattern {
    pb::MatchedPattern {
        id: row.id(),
        normalized_pattern: row.normalized_pattern().to_owned(),
        category: row.category().to_owned(),
        confidence: row.confidence(),
        accuracy: row.accuracy(),
        metadata: convert::json_text_to_struct(row.metadata()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PatternRow, PatternStatus};

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
        Matcher {
            normalizer: norm,
            snapshot: snap,
            min_confidence: None,
            max_bytes: max,
            generation: 300,
        }
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
        let batch = pb::BatchMatchPatternsResponse {
            results: got
                .iter()
                .cloned()
                .map(|(pattern, normalized_query)| pb::MatchResult {
                    matched: pattern.is_some(),
                    pattern,
                    normalized_query,
                })
                .collect(),
            generation: 300,
        };
        let exact = batch.encoded_len();
        // One byte under the exact size is refused, the exact size is not.
        assert!(
            matcher(&snap, &norm, exact)
                .answer(&qs, true, &hits)
                .is_ok()
        );
        let err = matcher(&snap, &norm, exact - 1)
            .answer(&qs, true, &hits)
            .expect_err("one byte over");
        assert!(matches!(err, ApiError::ResourceExhausted(_)), "{err}");
        for q in &qs {
            let (pattern, normalized_query) = m
                .answer(std::slice::from_ref(q), false, &hits)
                .expect("fits")
                .remove(0);
            let single = pb::MatchPatternResponse {
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
        let ids: Vec<_> = got.iter().map(|(p, _)| p.as_ref().map(|p| p.id)).collect();
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
}

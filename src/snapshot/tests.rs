//! Snapshot behaviour: duplicates, deltas, folding and full loads agree with a fresh build.

use super::*;
use crate::model::PatternRow;
use crate::model::PatternStatus;
use chrono::{TimeZone, Utc};

fn row(id: i64, norm: &str, accuracy: f64, used: i64) -> PatternRow {
    PatternRow {
        id,
        pattern: format!("raw {id}"),
        normalized_pattern: norm.into(),
        category: "cat".into(),
        confidence: 0.95,
        times_used: used,
        times_correct: 0,
        accuracy,
        created_at: Utc
            .timestamp_opt(1_700_000_000 + id, 0)
            .single()
            .unwrap_or_default(),
        last_used_at: None,
        created_by: "llm".into(),
        enabled: true,
        status: PatternStatus::Approved,
        metadata: None,
        updated_at: Utc::now(),
        revision: id,
    }
}

#[test]
fn duplicates_resolve_to_the_best_row_in_any_input_order() {
    let rows = [
        row(1, "ciao", 0.5, 100),
        row(2, "ciao", 0.9, 1),
        row(3, "ciao", 0.9, 5),
        row(4, "ciao", 0.9, 5), // same accuracy and use as 3 but newer
    ];
    for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
        let input = perm.iter().map(|&i| rows[i].clone()).collect();
        let snap = PatternSnapshot::from_rows(input).expect("valid");
        assert_eq!(snap.lookup("ciao", None).map(|r| r.id()), Some(4));
        assert!(snap.is_winner(4) && !snap.is_winner(1));
    }
}

#[test]
fn removing_the_winner_promotes_the_next_best() {
    let snap =
        PatternSnapshot::from_rows(vec![row(1, "x", 0.2, 0), row(2, "x", 0.8, 0)]).expect("ok");
    let (next, counts) = snap.apply(vec![], &[2]).expect("ok");
    assert_eq!(next.lookup("x", None).map(|r| r.id()), Some(1));
    assert_eq!(counts.removed, 1);
    // min_confidence skips rows below it
    assert!(next.lookup("x", Some(0.99)).is_none());
}

#[test]
fn unserved_rows_are_skipped_and_disables_remove() {
    let mut pending = row(2, "b", 0.5, 0);
    pending.status = PatternStatus::Pending;
    let snap = PatternSnapshot::from_rows(vec![row(1, "a", 0.5, 0), pending]).expect("ok");
    assert_eq!(snap.len(), 1);
    let mut disabled = row(1, "a", 0.5, 0);
    disabled.enabled = false;
    disabled.revision = 10;
    let (next, counts) = snap.apply(vec![disabled], &[]).expect("ok");
    assert!(next.is_empty());
    assert_eq!(
        counts,
        ChangeCounts {
            added: 0,
            updated: 0,
            removed: 1
        }
    );
    // the original snapshot is untouched
    assert_eq!(snap.lookup("a", None).map(|r| r.id()), Some(1));
}

/// Revisions are transaction ids on PostgreSQL, not commit order: a row read later is the
/// newer version whatever its revision (loads are serialized), so a lower revision is applied.
#[test]
fn a_later_read_replaces_the_served_row_whatever_its_revision() {
    let mut served = row(1, "a", 0.5, 0);
    served.revision = 20;
    served.category = "first".into();
    let snap = PatternSnapshot::from_rows(vec![served]).expect("ok");
    let mut late = row(1, "a", 0.5, 0);
    late.revision = 10;
    late.category = "late".into();
    let (next, counts) = snap.apply(vec![late.clone()], &[]).expect("ok");
    assert_eq!(next.lookup("a", None).map(|r| r.category()), Some("late"));
    assert_eq!(counts.updated, 1);
    late.enabled = false;
    let (next, counts) = next.apply(vec![late], &[]).expect("ok");
    assert!(
        next.lookup("a", None).is_none(),
        "a late disable is applied"
    );
    assert_eq!(counts.removed, 1);
}

#[test]
fn an_invalid_served_row_is_quarantined_and_the_rest_served() {
    let mut bad = row(7, "a", 0.5, 0);
    bad.times_correct = 5;
    bad.times_used = 1;
    let snap = PatternSnapshot::from_rows(vec![row(1, "b", 0.1, 0), bad.clone()]).expect("ok");
    assert_eq!(snap.len(), 1);
    assert!(snap.get(7).is_none() && snap.get(1).is_some());
    let reason = snap.quarantined().get(&7).expect("7 is quarantined");
    assert!(
        reason.contains("pattern id 7") && reason.contains("times_correct"),
        "{reason}"
    );

    // A delta: the good version is served, then the bad one is quarantined (and no longer
    // served) while the rest of the delta applies; a fixed version is served again.
    let good = row(7, "a", 0.5, 0);
    let snap = PatternSnapshot::from_rows(vec![row(1, "b", 0.1, 0), good.clone()]).expect("ok");
    let (next, counts) = snap
        .apply(vec![bad, row(2, "c", 0.2, 0)], &[])
        .expect("applied");
    assert_eq!((counts.added, counts.removed), (1, 1));
    assert!(next.get(7).is_none() && next.get(2).is_some());
    assert!(next.quarantined().contains_key(&7));
    let (fixed, counts) = next.apply(vec![good], &[]).expect("applied");
    assert_eq!(counts.added, 1);
    assert!(fixed.get(7).is_some() && fixed.quarantined().is_empty());
}

#[test]
fn content_hash_is_order_independent_and_incremental() {
    let a = PatternSnapshot::from_rows(vec![row(1, "a", 0.1, 0), row(2, "b", 0.1, 0)]).expect("ok");
    let b = PatternSnapshot::from_rows(vec![row(2, "b", 0.1, 0), row(1, "a", 0.1, 0)]).expect("ok");
    assert_eq!(a.content_hash(), b.content_hash());
    let one = PatternSnapshot::from_rows(vec![row(1, "a", 0.1, 0)]).expect("ok");
    let (grown, _) = one.apply(vec![row(2, "b", 0.1, 0)], &[]).expect("ok");
    assert_eq!(grown.content_hash(), a.content_hash());
    assert_ne!(one.content_hash(), a.content_hash());
    // hit counters are not content
    let mut used = row(1, "a", 0.1, 0);
    used.times_used = 99;
    assert_eq!(
        a.diff(&PatternSnapshot::from_rows(vec![used, row(2, "b", 0.1, 0)]).expect("ok")),
        ChangeCounts::default()
    );
}

/// Whatever sequence of deltas built it, a snapshot answers exactly like one built from the
/// same rows by a full load: same winners, same lists under min_confidence, same ids, same
/// count and hash, whether the overlay was folded into the base or not.
#[test]
fn deltas_with_and_without_folding_equal_a_full_load() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let texts = ["a", "b", "c", "d", "e"];
    let initial: Vec<PatternRow> = (1..=20)
        .map(|id| row(id, texts[(id % 5) as usize], 0.1 * (id % 7) as f64, id % 3))
        .collect();
    let mut truth: std::collections::BTreeMap<i64, PatternRow> =
        initial.iter().map(|r| (r.id, r.clone())).collect();
    let start = PatternSnapshot::from_rows(initial).expect("ok");
    for fold_at in [usize::MAX, 0, 3] {
        let mut snap = start.clone();
        let mut truth = truth.clone();
        for step in 0..200i64 {
            let id = 1 + next(30) as i64;
            let (changed, deleted) = match next(4) {
                0 => (vec![], vec![id]),
                1 => {
                    let mut r = row(id, texts[next(5) as usize], 0.1 * next(10) as f64, 1);
                    r.revision = 1000 + step;
                    r.confidence = 0.1 * next(10) as f64;
                    r.enabled = next(5) != 0;
                    (vec![r], vec![])
                }
                _ => {
                    let mut r = row(id, texts[next(5) as usize], 0.5, next(9) as i64);
                    r.revision = 1000 + step;
                    (vec![r], vec![])
                }
            };
            for d in &deleted {
                truth.remove(d);
            }
            for r in &changed {
                // hit counters are not content: a row differing only in them is not
                // replaced (and keeps ranking by the counters it was served with)
                if truth
                    .get(&r.id)
                    .is_some_and(|cur| content_hash(&cur.as_ref()) == content_hash(&r.as_ref()))
                {
                    continue;
                }
                if r.is_served() {
                    truth.insert(r.id, r.clone());
                } else {
                    truth.remove(&r.id);
                }
            }
            snap = snap
                .apply_folding(changed, &deleted, fold_at)
                .expect("ok")
                .0;
            let full = PatternSnapshot::from_rows(truth.values().cloned().collect()).expect("ok");
            assert_eq!(snap.len(), full.len(), "fold_at {fold_at} step {step}");
            assert_eq!(snap.content_hash(), full.content_hash());
            assert_eq!(snap.diff(&full), ChangeCounts::default());
            assert_eq!(full.diff(&snap), ChangeCounts::default());
            let mut ids: Vec<i64> = snap.rows().map(|r| r.id()).collect();
            ids.sort_unstable();
            assert_eq!(ids, truth.keys().copied().collect::<Vec<_>>());
            for t in texts {
                for min in [None, Some(0.35), Some(0.75)] {
                    assert_eq!(
                        snap.lookup(t, min).map(|r| r.id()),
                        full.lookup(t, min).map(|r| r.id()),
                        "fold_at {fold_at} step {step} text {t} min {min:?}"
                    );
                }
            }
            for id in 1..=30 {
                assert_eq!(snap.is_winner(id), full.is_winner(id));
            }
        }
    }
    // the snapshot the deltas started from is untouched
    assert_eq!(start.len(), 20);
    truth.clear();
}

/// A full load after another counts like `diff`, hashes like a fresh build, and shares the
/// rows that did not change with the snapshot it replaces.
#[test]
fn a_full_load_after_another_shares_unchanged_rows_and_counts_changes() {
    let (a, b, c) = (
        row(1, "a", 0.1, 0),
        row(2, "b", 0.1, 0),
        row(3, "c", 0.1, 0),
    );
    let prev = PatternSnapshot::from_rows(vec![a.clone(), b.clone(), c.clone()]).expect("ok");
    let mut changed = b;
    changed.category = "other".into();
    let mut used = c;
    used.times_used = 7;
    let rows = vec![a, changed, used, row(4, "d", 0.1, 0)];
    let (next, counts) = PatternSnapshot::from_rows_after(&prev, rows.clone()).expect("ok");
    let fresh = PatternSnapshot::from_rows(rows).expect("ok");
    assert_eq!(counts, prev.diff(&fresh));
    assert_eq!(
        counts,
        ChangeCounts {
            added: 1,
            updated: 1,
            removed: 0
        }
    );
    assert_eq!(next.content_hash(), fresh.content_hash());
    let same = |id| {
        std::ptr::eq(
            next.get(id).expect("a").bytes().as_ptr(),
            prev.get(id).expect("b").bytes().as_ptr(),
        )
    };
    assert!(same(1), "an identical row is shared");
    assert!(
        !same(2) && !same(3),
        "a changed row (even only its counters) is not"
    );
    assert_eq!(next.get(3).map(|r| r.times_used()), Some(7));

    let (gone, counts) =
        PatternSnapshot::from_rows_after(&next, vec![row(4, "d", 0.1, 0)]).expect("ok");
    assert_eq!(counts.removed, 3);
    assert_eq!(
        gone.content_hash(),
        PatternSnapshot::from_rows(vec![row(4, "d", 0.1, 0)])
            .expect("ok")
            .content_hash()
    );
    let err = PatternSnapshot::from_rows(vec![row(5, "e", 0.1, 0), row(5, "f", 0.1, 0)])
        .expect_err("an id read twice");
    assert!(err.contains("pattern id 5"), "{err}");
}

/// Full loads in sequence, whether applied to the previous snapshot like a delta or indexed as
/// a new base, answer exactly like a fresh build of the same rows, and count what `diff` counts.
#[test]
fn full_loads_as_delta_or_as_new_base_equal_a_fresh_build() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let texts = ["a", "b", "c", "d", "e", "f"];
    let cats = ["x", "y", "z", "w"];
    for as_delta_at in [0, 3, usize::MAX] {
        let mut snap = PatternSnapshot::default();
        for step in 0..60i64 {
            let mut rows: Vec<PatternRow> = Vec::new();
            for id in 1..=25 {
                if next(5) == 0 {
                    continue;
                }
                let mut r = row(id, texts[next(6) as usize], 0.1 * next(10) as f64, 0);
                r.category = cats[next(4) as usize].into();
                r.confidence = 0.1 * next(10) as f64;
                r.times_used = next(3) as i64;
                r.revision = step;
                if next(7) == 0 {
                    r.metadata = Some(format!("{{\"n\": {}}}", next(3)));
                }
                rows.push(r);
            }
            let fresh = PatternSnapshot::from_rows(rows.clone()).expect("ok");
            let mut records = Records::new();
            for r in &rows {
                records.push(r.as_ref());
            }
            let (got, counts) =
                PatternSnapshot::full_after(&snap, records, as_delta_at).expect("ok");
            assert_eq!(
                counts,
                snap.diff(&fresh),
                "as_delta_at {as_delta_at} step {step}"
            );
            assert_eq!(got.len(), fresh.len());
            assert_eq!(got.content_hash(), fresh.content_hash());
            assert_eq!(got.diff(&fresh), ChangeCounts::default());
            for r in &rows {
                let (a, b) = (
                    got.get(r.id).expect("served"),
                    fresh.get(r.id).expect("served"),
                );
                assert_eq!(
                    (a.category(), a.metadata(), a.times_used(), a.pattern()),
                    (b.category(), b.metadata(), b.times_used(), b.pattern())
                );
            }
            for t in texts {
                for min in [None, Some(0.35), Some(0.75)] {
                    assert_eq!(
                        got.lookup(t, min).map(|r| r.id()),
                        fresh.lookup(t, min).map(|r| r.id()),
                        "as_delta_at {as_delta_at} step {step} text {t} min {min:?}"
                    );
                }
            }
            snap = got;
        }
    }
}

/// A record gives back every field it was built from.
#[test]
fn a_record_round_trips_its_fields() {
    let mut r = row(42, "ciao mondo", 0.25, 7);
    r.category = "saluti".into();
    r.metadata = Some(r#"{"a": [1, 2]}"#.into());
    r.times_correct = 3;
    let snap = PatternSnapshot::from_rows(vec![r.clone()]).expect("ok");
    let got = snap.get(42).expect("served");
    assert_eq!(got.id(), 42);
    assert_eq!(got.normalized_pattern(), "ciao mondo");
    assert_eq!(got.pattern(), "raw 42");
    assert_eq!(got.category(), "saluti");
    assert_eq!(got.metadata(), Some(r#"{"a": [1, 2]}"#));
    assert_eq!(got.confidence(), 0.95);
    assert_eq!(got.accuracy(), 0.25);
    assert_eq!(got.times_used(), 7);
    assert_eq!(got.revision(), 42);
    assert_eq!(got.created_at_micros(), r.created_at.timestamp_micros());
    assert_eq!(got.content_hash(), content_hash(&r.as_ref()));
    r.metadata = Some("[1]".into());
    let snap = PatternSnapshot::from_rows(vec![r]).expect("quarantined, not rejected");
    let reason = snap
        .quarantined()
        .get(&42)
        .expect("an array is not an object");
    assert!(reason.contains("metadata") && snap.is_empty(), "{reason}");
}

/// Above `PARALLEL_ABOVE` rows the indexes are built on two threads: the result is the same
/// snapshot (same winners, counts and hash as a delta-built one), and an id read twice still
/// rejects the load.
#[test]
fn large_loads_indexed_on_two_threads_agree_with_deltas() {
    let n = (PARALLEL_ABOVE + 1_000) as i64;
    let rows: Vec<PatternRow> = (1..=n)
        .map(|id| {
            row(
                id,
                &format!("text {}", id % 40_000),
                0.1 * (id % 9) as f64,
                id % 4,
            )
        })
        .collect();
    let big = PatternSnapshot::from_rows(rows.clone()).expect("ok");
    assert_eq!(big.len(), n as usize);
    // The same rows added one delta at a time from a small start.
    let mut grown = PatternSnapshot::from_rows(rows[..10].to_vec()).expect("ok");
    for chunk in rows[10..].chunks(5_000) {
        grown = grown.apply(chunk.to_vec(), &[]).expect("ok").0;
    }
    assert_eq!(big.content_hash(), grown.content_hash());
    assert_eq!(big.diff(&grown), ChangeCounts::default());
    for k in [0, 1, 7, 39_999] {
        let t = format!("text {k}");
        assert_eq!(
            big.lookup(&t, None).map(|r| r.id()),
            grown.lookup(&t, None).map(|r| r.id())
        );
    }
    // A second large load changing many rows: compared on one thread, ids indexed on another.
    let mut next_rows = rows.clone();
    for r in next_rows.iter_mut().step_by(3) {
        r.category = "changed".into();
    }
    next_rows.truncate(next_rows.len() - 100);
    let (next, counts) = PatternSnapshot::from_rows_after(&big, next_rows.clone()).expect("ok");
    let fresh = PatternSnapshot::from_rows(next_rows).expect("ok");
    assert_eq!(counts, big.diff(&fresh));
    assert_eq!(counts.removed, 100);
    assert_eq!(next.content_hash(), fresh.content_hash());
    let mut twice = rows;
    twice.push(row(5, "again", 0.5, 0));
    let err = PatternSnapshot::from_rows(twice).expect_err("an id read twice");
    assert!(err.contains("pattern id 5"), "{err}");
}

#[test]
fn metadata_over_the_served_limit_is_quarantined_in_full_loads_and_deltas() {
    let with_meta = |id: i64, norm: &str, bytes: usize| {
        let mut r = row(id, norm, 0.9, 0);
        r.metadata = Some(format!(r#"{{"k":"{}"}}"#, "x".repeat(bytes)));
        r
    };
    let empty = PatternSnapshot::with_max_metadata(100);
    // A full load: the big row is left out and named; the rest is served.
    let (snap, _) = PatternSnapshot::from_rows_after(
        &empty,
        vec![
            with_meta(1, "small", 10),
            with_meta(2, "big", 200),
            row(3, "none", 0.9, 0),
        ],
    )
    .expect("quarantined, not rejected");
    assert!(snap.lookup("big", None).is_none());
    assert_eq!(snap.len(), 2);
    let reason = snap.quarantined().get(&2).expect("2 is quarantined");
    assert!(
        reason.contains("208 bytes") && reason.contains("100") && reason.contains("--max-served"),
        "{reason}"
    );
    assert_eq!(snap.max_metadata(), 100, "kept by derived snapshots");
    // A delta growing a served row's metadata quarantines it; shrinking it releases it.
    let (grown, counts) = snap
        .apply(vec![with_meta(1, "small", 500)], &[])
        .expect("ok");
    assert!(grown.lookup("small", None).is_none() && counts.removed == 1);
    assert!(grown.quarantined().contains_key(&1));
    let (fixed, _) = grown
        .apply(vec![with_meta(1, "small", 5), with_meta(2, "big", 5)], &[])
        .expect("ok");
    assert!(fixed.quarantined().is_empty());
    assert!(fixed.lookup("small", None).is_some() && fixed.lookup("big", None).is_some());
    // A full load after a fold keeps the limit too.
    let (again, _) =
        PatternSnapshot::from_rows_after(&fixed.folded(), vec![with_meta(2, "big", 300)])
            .expect("ok");
    assert!(again.is_empty() && again.quarantined().contains_key(&2));
}

//! Scenario `lookup`: what `MatchPattern` does in process — normalize the query, look it up in
//! the snapshot — at several snapshot sizes, for queries that hit, miss, or half and half.
//!
//! Timing: one `Instant` pair per batch of 1,000 queries (a clock read costs ~20–40 ns, which
//! would otherwise be a large part of a ~100 ns operation); the figures are the median and the
//! 99th percentile of those per-batch means. Baselines, measured right alongside: a plain
//! `HashMap<String, u32>` lookup of the already-normalized key (the floor of "find this text"),
//! and `str::to_lowercase` (the floor of any normalizer: one pass and one allocation).

use std::{collections::HashMap, hint::black_box, time::Instant};

use hotplane::{
    normalize::{Normalizer, Profile},
    snapshot::PatternSnapshot,
};

use crate::{
    Settings,
    data::{self, Dataset},
    progress,
    report::{Figure, Target, num},
    stats::summarize,
};

/// Queries per timing sample.
const BATCH: usize = 1000;
/// Snapshot size the target applies to.
const TARGET_SIZE: usize = 1_000_000;
/// The target at that size, ns per query (median).
const TARGET_NS: f64 = 300.0;

/// The three query mixes.
const MIXES: [&str; 3] = ["hits", "misses", "50/50"];

/// Median and p99 of one timed loop, ns per query, and how many queries found something.
struct Timed {
    p50: f64,
    p99: f64,
    found: usize,
    total: usize,
}

/// Times `f` over `batches` batches of [`BATCH`] queries, cycling through `items`.
///
/// Each batch's queries are first copied into a reused staging buffer, outside the timed
/// region: like a request's freshly decoded query they are then in cache, while what they are
/// looked up in (1,000s of distinct entries of a large table) is not.
fn time_batches(items: &[String], batches: usize, mut f: impl FnMut(&str) -> bool) -> Timed {
    let mut staged: Vec<String> = vec![String::with_capacity(128); BATCH];
    let mut samples = Vec::with_capacity(batches);
    let mut found = 0;
    let mut at = 0;
    for _ in 0..batches {
        for s in &mut staged {
            s.clear();
            s.push_str(&items[at]);
            at = (at + 1) % items.len();
        }
        let t0 = Instant::now();
        for s in &staged {
            found += usize::from(f(black_box(s.as_str())));
        }
        samples.push(t0.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    let s = summarize(&mut samples);
    Timed {
        p50: s.p50,
        p99: s.p99,
        found: black_box(found),
        total: batches * BATCH,
    }
}

/// Runs the scenario (CPU only: call it off the async runtime).
pub fn run(s: &Settings, notes: &mut Vec<String>) -> anyhow::Result<Vec<Figure>> {
    let normalizer = Normalizer::new(Profile::Default, None);
    let mut figures = Vec::new();
    let mut normalize_rows = Vec::new();
    for (i, &size) in s.lookup_sizes.iter().enumerate() {
        progress(format!("lookup: generating {} patterns", num(size as f64)));
        let data = Dataset::generate(size, s.seed, &normalizer);
        let pool = s.lookup_queries;
        let hits = data::hit_queries(&data, pool, s.seed);
        let known = data.known();
        let misses = data::miss_queries(&known, &normalizer, pool, s.seed);
        drop(known);
        let mixed = data::mixed_queries(&hits, &misses, s.seed);
        let plain: HashMap<String, u32> = data
            .served_rows()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.normalized_pattern.clone(), i as u32))
            .collect();
        let snapshot = PatternSnapshot::from_rows(data.rows).map_err(anyhow::Error::msg)?;
        progress(format!("lookup: timing {} patterns", num(size as f64)));
        for (mix, queries) in MIXES.iter().zip([&hits, &misses, &mixed]) {
            let normalized: Vec<String> = queries.iter().map(|q| normalizer.normalize(q)).collect();
            let batches = s.lookup_batches;
            let floor = time_batches(&normalized, batches, |k| plain.contains_key(k));
            let full = time_batches(queries, batches, |q| {
                snapshot.lookup(&normalizer.normalize(q), None).is_some()
            });
            let lookup_only =
                time_batches(&normalized, batches, |k| snapshot.lookup(k, None).is_some());
            let normalize_only = time_batches(queries, batches, |q| {
                black_box(normalizer.normalize(q)).len() > 1
            });
            let hit_rate = 100.0 * full.found as f64 / full.total as f64;
            let case = format!("{} patterns, {mix}", num(size as f64));
            let mut median = Figure::new(
                format!("{case}: normalize+lookup median"),
                full.p50,
                "ns",
                "HashMap get of the normalized key",
                floor.p50,
            )
            .detail(format!(
                "of which: normalize alone {} ns, snapshot.lookup alone {} ns; {hit_rate:.0}% matched",
                num(normalize_only.p50),
                num(lookup_only.p50),
            ));
            if size >= TARGET_SIZE {
                median = median.target(Target::AtMost(TARGET_NS));
            }
            figures.push(median);
            figures.push(Figure::new(
                format!("{case}: normalize+lookup p99"),
                full.p99,
                "ns",
                "HashMap get, p99",
                floor.p99,
            ));
            if i == 0 {
                let lower =
                    time_batches(queries, batches, |q| black_box(q.to_lowercase()).len() > 1);
                normalize_rows.push(Figure::new(
                    format!("{mix} queries: normalize alone median"),
                    normalize_only.p50,
                    "ns",
                    "str::to_lowercase",
                    lower.p50,
                ));
            }
        }
    }
    figures.extend(normalize_rows);
    notes.push(format!(
        "each sample is the mean of {BATCH} queries (p99 is over those means), staged in cache \
         before timing; {} distinct queries per mix, typed differently from the stored text \
         (case, spaces, punctuation)",
        num(s.lookup_queries as f64)
    ));
    Ok(figures)
}

//! Scenario `lookup`: what `MatchPattern` does in process — normalize the query, look it up in
//! the snapshot — at several snapshot sizes, for queries that hit, miss, or half and half.
//!
//! Timing: one `Instant` pair per batch of 1,000 queries (a clock read costs ~20–40 ns, which
//! would otherwise be a large part of a ~100 ns operation); the figures are the median and the
//! 99th percentile of those per-batch means. Queries run one after the other as requests do:
//! each query's address depends on the previous result, so the CPU cannot overlap one lookup's
//! cache misses with the next one's (a tight loop of independent lookups would, and would report
//! a fraction of the latency a request pays). Baselines, measured right alongside: a plain
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
pub struct Timed {
    /// Median of the per-batch means.
    pub p50: f64,
    /// 99th percentile of the per-batch means.
    pub p99: f64,
    /// Queries that found something.
    pub found: usize,
    /// Queries run.
    pub total: usize,
}

/// Times `f` over `batches` batches of [`BATCH`] queries, cycling through `items`. `f` returns
/// a value read from what it found (`None`: nothing found).
///
/// Each batch's queries are first copied into a reused staging buffer, outside the timed
/// region: like a request's freshly decoded query they are then in cache, while what they are
/// looked up in (1,000s of distinct entries of a large table) is not. Also used by the
/// `structures` scenario, so its lookups are timed the same way.
pub fn time_batches(
    items: &[String],
    batches: usize,
    mut f: impl FnMut(&str) -> Option<usize>,
) -> Timed {
    // Zero at run time, unknown to the compiler: `carry & zero` is always 0, but the CPU has to
    // wait for `carry` (the previous result) before it can address the next query.
    let zero = black_box(0usize);
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
        let mut carry = 0usize;
        let t0 = Instant::now();
        for i in 0..BATCH {
            let query = staged[(i + (carry & zero)) % BATCH].as_str();
            let result = f(query);
            found += usize::from(result.is_some());
            carry = result.unwrap_or(0);
        }
        samples.push(t0.elapsed().as_nanos() as f64 / BATCH as f64);
        black_box(carry);
    }
    let s = summarize(&mut samples);
    Timed {
        p50: s.p50,
        p99: s.p99,
        found: black_box(found),
        total: batches * BATCH,
    }
}

/// Nanoseconds per dependent load on a random cycle through `bytes` of memory (Sattolo's
/// shuffle: one cycle through every slot, so the hardware cannot prefetch the next hop). What a
/// cache and TLB miss costs on this machine: a lookup in a large table pays a few of them.
fn memory_latency(bytes: usize, seed: u64) -> f64 {
    let n = (bytes / 8).max(2);
    let mut next: Vec<u64> = (0..n as u64).collect();
    let mut rng = data::Rng::new(seed, 30);
    for i in (1..n).rev() {
        let j = rng.below(i);
        next.swap(i, j);
    }
    let hops = 2_000_000;
    let mut at = 0usize;
    let t0 = Instant::now();
    for _ in 0..hops {
        at = next[at] as usize;
    }
    black_box(at);
    t0.elapsed().as_nanos() as f64 / hops as f64
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
            let floor = time_batches(&normalized, batches, |k| plain.get(k).map(|&i| i as usize));
            let full = time_batches(queries, batches, |q| {
                snapshot
                    .lookup(&normalizer.normalize(q), None)
                    .map(|r| r.id() as usize)
            });
            let lookup_only = time_batches(&normalized, batches, |k| {
                snapshot.lookup(k, None).map(|r| r.id() as usize)
            });
            let normalize_only = time_batches(queries, batches, |q| {
                Some(black_box(normalizer.normalize(q)).len())
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
                let lower = time_batches(queries, batches, |q| {
                    Some(black_box(q.to_lowercase()).len())
                });
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
    let span = if s.quick { 8 << 20 } else { 256 << 20 };
    notes.push(format!(
        "one dependent load from a random place in {} MiB costs {} ns on this machine (pointer \
         chase): a hit in a large table pays a few such misses (slot, key, row)",
        span >> 20,
        num(memory_latency(span, s.seed))
    ));
    notes.push(format!(
        "each sample is the mean of {BATCH} queries run one after the other (each waits for the \
         previous result, as requests do; p99 is over those means), staged in cache before \
         timing; {} distinct queries per mix, typed differently from the stored text (case, \
         spaces, punctuation)",
        num(s.lookup_queries as f64)
    ));
    Ok(figures)
}

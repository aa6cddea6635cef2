//! Part 1: a one-row delta under three designs — a copy-on-write clone of two std maps (the
//! previous design), a persistent HAMT (`imbl`), and `PatternSnapshot::apply` — and the hit
//! lookup each leaves behind.

use std::{collections::HashMap, sync::Arc, time::Instant};

use hotplane::{model::PatternRow, snapshot::PatternSnapshot};

use super::{hit_keys, settle_allocator, us_since};
use crate::{
    Settings,
    data::Rng,
    lookup::time_batches,
    report::{Figure, num},
    stats::{Summary, summarize},
};

/// The previous snapshot design: two std maps, cloned whole by every delta so that readers of
/// the old generation never see a change (copy-on-write).
#[derive(Clone)]
pub struct CowMaps {
    by_norm: HashMap<String, Arc<PatternRow>>,
    by_id: HashMap<i64, Arc<PatternRow>>,
}

impl CowMaps {
    pub fn build(rows: &[Arc<PatternRow>]) -> CowMaps {
        let mut maps = CowMaps {
            by_norm: HashMap::with_capacity(rows.len()),
            by_id: HashMap::with_capacity(rows.len()),
        };
        for row in rows {
            maps.upsert(Arc::clone(row));
        }
        maps
    }

    fn upsert(&mut self, row: Arc<PatternRow>) {
        if let Some(old) = self.by_id.insert(row.id, Arc::clone(&row))
            && old.normalized_pattern != row.normalized_pattern
        {
            self.by_norm.remove(&old.normalized_pattern);
        }
        self.by_norm.insert(row.normalized_pattern.clone(), row);
    }
}

/// A persistent hash array mapped trie: a clone is O(1) and an insert copies one path of nodes,
/// so old and new versions share everything else.
#[derive(Clone)]
struct Hamt {
    by_norm: imbl::HashMap<String, Arc<PatternRow>>,
    by_id: imbl::HashMap<i64, Arc<PatternRow>>,
}

impl Hamt {
    fn build(rows: &[Arc<PatternRow>]) -> Hamt {
        let mut maps = Hamt {
            by_norm: imbl::HashMap::new(),
            by_id: imbl::HashMap::new(),
        };
        for row in rows {
            maps.upsert(Arc::clone(row));
        }
        maps
    }

    fn upsert(&mut self, row: Arc<PatternRow>) {
        if let Some(old) = self.by_id.insert(row.id, Arc::clone(&row))
            && old.normalized_pattern != row.normalized_pattern
        {
            self.by_norm.remove(&old.normalized_pattern);
        }
        self.by_norm.insert(row.normalized_pattern.clone(), row);
    }
}

/// `row` as a delta would bring it back: a newer revision with a changed confidence.
fn changed(row: &PatternRow, revision: i64) -> PatternRow {
    let mut next = row.clone();
    next.revision = revision;
    next.confidence = if next.confidence > 0.95 {
        next.confidence - 0.01
    } else {
        next.confidence + 0.01
    };
    next
}

/// Part 1: one-row deltas on `rows` (all served) under the three designs.
pub fn delta(rows: &[PatternRow], s: &Settings) -> anyhow::Result<Vec<Figure>> {
    let n = rows.len();
    let shared: Vec<Arc<PatternRow>> = rows.iter().cloned().map(Arc::new).collect();
    let mut cow = CowMaps::build(&shared);
    let mut hamt = Hamt::build(&shared);
    drop(shared);
    let mut snap = PatternSnapshot::from_rows(rows.to_vec()).map_err(anyhow::Error::msg)?;
    let mut rng = Rng::new(s.seed, 40);
    // [copy-on-write, HAMT, apply]: time to the new version, and to drop the old one (µs).
    let mut spent: [Vec<f64>; 3] = Default::default();
    let mut dropped: [Vec<f64>; 3] = Default::default();
    for t in 0..s.structures_warmup + s.structures_trials {
        let row = changed(&rows[rng.below(n)], t as i64 + 1);
        for k in 0..3 {
            let design = (t + k) % 3;
            let row = row.clone();
            let (took, drop_took) = match design {
                0 => {
                    let t0 = Instant::now();
                    let mut next = cow.clone();
                    next.upsert(Arc::new(row));
                    let took = us_since(t0);
                    let old = std::mem::replace(&mut cow, next);
                    let t1 = Instant::now();
                    drop(old);
                    settle_allocator();
                    (took, us_since(t1))
                }
                1 => {
                    let t0 = Instant::now();
                    let mut next = hamt.clone();
                    next.upsert(Arc::new(row));
                    let took = us_since(t0);
                    let old = std::mem::replace(&mut hamt, next);
                    let t1 = Instant::now();
                    drop(old);
                    settle_allocator();
                    (took, us_since(t1))
                }
                _ => {
                    let t0 = Instant::now();
                    let (next, _) = snap.apply(vec![row], &[]).map_err(anyhow::Error::msg)?;
                    let took = us_since(t0);
                    let old = std::mem::replace(&mut snap, next);
                    let t1 = Instant::now();
                    drop(old);
                    settle_allocator();
                    (took, us_since(t1))
                }
            };
            if t >= s.structures_warmup {
                spent[design].push(took);
                dropped[design].push(drop_took);
            }
        }
    }
    let [cow_t, hamt_t, apply_t] = spent.each_mut().map(|v| summarize(v));
    let [cow_d, hamt_d, apply_d] = dropped.each_mut().map(|v| summarize(v));

    // The lookup cost each design leaves behind, on the versions the deltas produced.
    let keys = hit_keys(rows, s.lookup_queries, s.seed, 41);
    let batches = s.lookup_batches;
    let mut looked: [Vec<f64>; 3] = Default::default();
    for round in 0..3 {
        for k in 0..3 {
            let design = (round + k) % 3;
            let timed = match design {
                0 => time_batches(&keys, batches / 3 + 1, |q| {
                    cow.by_norm.get(q).map(|r| r.id as usize)
                }),
                1 => time_batches(&keys, batches / 3 + 1, |q| {
                    hamt.by_norm.get(q).map(|r| r.id as usize)
                }),
                _ => time_batches(&keys, batches / 3 + 1, |q| {
                    snap.lookup(q, None).map(|r| r.id() as usize)
                }),
            };
            anyhow::ensure!(timed.found == timed.total, "a delta lookup missed");
            looked[design].push(timed.p50);
        }
    }
    let [cow_l, hamt_l, snap_l] = looked.each_mut().map(|v| summarize(v));

    let size = num(n as f64);
    let cow_name = "std HashMap copy-on-write clone + insert";
    let p = |x: &Summary| format!("median {} µs, p99 {} µs", num(x.p50), num(x.p99));
    let drops = format!(
        "dropping the replaced version (allocator settled): copy-on-write {} µs, HAMT {} µs, snapshot {} µs (median)",
        num(cow_d.p50),
        num(hamt_d.p50),
        num(apply_d.p50)
    );
    Ok(vec![
        Figure::new(
            format!("{size}: one-row delta, imbl HAMT clone + insert (median)"),
            hamt_t.p50,
            "µs",
            cow_name,
            cow_t.p50,
        )
        .detail(format!("HAMT {}; copy-on-write {}", p(&hamt_t), p(&cow_t))),
        Figure::new(
            format!("{size}: one-row delta, PatternSnapshot::apply (median)"),
            apply_t.p50,
            "µs",
            cow_name,
            cow_t.p50,
        )
        .detail(format!("apply {}; {drops}", p(&apply_t))),
        Figure::new(
            format!("{size}: one-row delta, imbl HAMT (p99)"),
            hamt_t.p99,
            "µs",
            "copy-on-write, p99",
            cow_t.p99,
        ),
        Figure::new(
            format!("{size}: one-row delta, PatternSnapshot::apply (p99)"),
            apply_t.p99,
            "µs",
            "copy-on-write, p99",
            cow_t.p99,
        ),
        Figure::new(
            format!("{size}: hit lookup after the deltas, imbl HAMT (median)"),
            hamt_l.p50,
            "ns",
            "std HashMap (copy-on-write design)",
            cow_l.p50,
        ),
        Figure::new(
            format!("{size}: hit lookup after the deltas, PatternSnapshot (median)"),
            snap_l.p50,
            "ns",
            "std HashMap (copy-on-write design)",
            cow_l.p50,
        )
        .detail("lookup of the normalized text only (no normalization), base + overlay"),
    ])
}

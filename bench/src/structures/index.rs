//! Part 2: a hit lookup at the largest size in a std `HashMap` (SipHash and xxh3), a
//! `hashbrown::HashTable` of row pointers keyed by the rows' own text, and the snapshot.

use std::{collections::HashMap, sync::Arc};

use hashbrown::HashTable;
use hotplane::{model::PatternRow, snapshot::PatternSnapshot};
use xxhash_rust::xxh3::{Xxh3Builder, xxh3_64_with_seed};

use super::hit_keys;
use crate::{
    Settings,
    lookup::time_batches,
    report::{Figure, num},
    stats::summarize,
};

/// A `HashTable` of row pointers keyed by the rows' own normalized text (nothing copied).
pub fn row_table(rows: &[Arc<PatternRow>], seed: u64) -> HashTable<Arc<PatternRow>> {
    let hash = |r: &Arc<PatternRow>| xxh3_64_with_seed(r.normalized_pattern.as_bytes(), seed);
    let mut table = HashTable::with_capacity(rows.len());
    for row in rows {
        table.insert_unique(hash(row), Arc::clone(row), hash);
    }
    table
}

/// Part 2: hit lookups at the largest size.
pub fn lookup(rows: &[PatternRow], s: &Settings) -> anyhow::Result<Vec<Figure>> {
    let seed = s.seed ^ 0x7AB1E;
    let shared: Vec<Arc<PatternRow>> = rows.iter().cloned().map(Arc::new).collect();
    let std_sip: HashMap<String, Arc<PatternRow>> = shared
        .iter()
        .map(|r| (r.normalized_pattern.clone(), Arc::clone(r)))
        .collect();
    let mut std_xxh: HashMap<String, Arc<PatternRow>, Xxh3Builder> =
        HashMap::with_capacity_and_hasher(shared.len(), Xxh3Builder::new().with_seed(seed));
    std_xxh.extend(
        shared
            .iter()
            .map(|r| (r.normalized_pattern.clone(), Arc::clone(r))),
    );
    let table = row_table(&shared, seed);
    drop(shared);
    let snap = PatternSnapshot::from_rows(rows.to_vec()).map_err(anyhow::Error::msg)?;
    let keys = hit_keys(rows, s.lookup_queries, s.seed, 42);
    let batches = s.lookup_batches / 4 + 1;
    let mut p50: [Vec<f64>; 4] = Default::default();
    let mut p99: [Vec<f64>; 4] = Default::default();
    for round in 0..4 {
        for k in 0..4 {
            let design = (round + k) % 4;
            let timed = match design {
                0 => time_batches(&keys, batches, |q| std_sip.get(q).map(|r| r.id as usize)),
                1 => time_batches(&keys, batches, |q| std_xxh.get(q).map(|r| r.id as usize)),
                2 => time_batches(&keys, batches, |q| {
                    table
                        .find(xxh3_64_with_seed(q.as_bytes(), seed), |r| {
                            r.normalized_pattern == q
                        })
                        .map(|r| r.id as usize)
                }),
                _ => time_batches(&keys, batches, |q| {
                    snap.lookup(q, None).map(|r| r.id() as usize)
                }),
            };
            anyhow::ensure!(timed.found == timed.total, "a lookup missed");
            p50[design].push(timed.p50);
            p99[design].push(timed.p99);
        }
    }
    let med = p50.each_mut().map(|v| summarize(v).p50);
    let tail = p99.each_mut().map(|v| summarize(v).p50);
    let size = num(rows.len() as f64);
    let base = "std HashMap<String, Arc<row>> (SipHash)";
    let figure = |name: &str, i: usize| {
        Figure::new(
            format!("{size}: hit lookup, {name} (median)"),
            med[i],
            "ns",
            base,
            med[0],
        )
        .detail(format!("p99 {} ns vs {} ns", num(tail[i]), num(tail[0])))
    };
    Ok(vec![
        figure("std HashMap<String, Arc<row>> with xxh3", 1),
        figure("HashTable<Arc<row>> keyed by the row's text (xxh3)", 2),
        figure("PatternSnapshot::lookup", 3),
    ])
}

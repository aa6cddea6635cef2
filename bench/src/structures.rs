//! Scenario `structures`: the data-structure choices of issue 6, each measured against the
//! alternatives that were considered, on the same generated rows in the same run:
//!
//! 1. a one-row delta: a copy-on-write clone of two std `HashMap`s (the previous design), a
//!    persistent HAMT (`imbl`), and `PatternSnapshot::apply` (shared base + small overlay), with
//!    the hit-lookup cost each design leaves behind (a persistent map pays on every lookup);
//! 2. a hit lookup and the index memory at the largest size: std `HashMap<String, Arc<row>>`,
//!    a `hashbrown::HashTable` of row pointers keyed by the rows' own text, the snapshot;
//! 3. category storage: a `String` per row vs one interned `Arc<str>` per distinct category;
//! 4. metadata: `serde_json::Value` per row vs the raw JSON text vs nothing, and the per-match
//!    cost of producing the response's `Struct` from each;
//! 5. PostgreSQL: the load's SELECT with and without `ORDER BY` (in [`sql`]).
//!
//! Latencies: the alternatives run interleaved sample by sample, rotating which goes first (so a
//! busy neighbour slows all of them alike), after unmeasured warm-up samples; figures give the
//! median and p99. Lookups are timed as the `lookup` scenario times them
//! ([`crate::lookup::time_batches`]). Memory is the RSS growth of a child process building one
//! structure (see [`memory`]). Each figure's baseline is the plain or previous alternative, so a
//! ratio below 1 is what the other choice saves.

mod delta;
mod index;
mod memory;
mod sql;
mod storage;

use std::{hint::black_box, time::Instant};

use hotplane::{
    model::PatternRow,
    normalize::{Normalizer, Profile},
};

use crate::{
    Settings,
    data::{Dataset, Rng},
    progress,
    report::{Figure, num},
};

pub use memory::probe;

/// `count` normalized texts of random rows of `rows` (lookups that hit).
fn hit_keys(rows: &[PatternRow], count: usize, seed: u64, stream: u64) -> Vec<String> {
    let mut rng = Rng::new(seed, stream);
    (0..count)
        .map(|_| rng.pick(rows).normalized_pattern.clone())
        .collect()
}

/// Makes glibc malloc finish the work a large free left behind, so the next design's timing
/// does not pay for it. Freeing a million small chunks (the copy-on-write design's keys) puts
/// them on the allocator's fast lists; the next request too large for those lists merges them
/// into its unsorted list, and each later request sorts up to 10,000 of those into bins (a cache
/// miss each): without this, the designs timed after a large drop paid milliseconds for it. A
/// 4 KiB request is such a request; 256 of them sort 2.5 M chunks. The cost counts as part of the
/// drop that caused it.
fn settle_allocator() {
    for _ in 0..256 {
        black_box(Vec::<u8>::with_capacity(4096));
    }
}

/// Microseconds since `t0`.
fn us_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e6
}

/// Milliseconds since `t0`.
fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// Runs the scenario.
pub async fn run(s: &Settings, notes: &mut Vec<String>) -> anyhow::Result<Vec<Figure>> {
    let largest = s.structures_sizes.iter().copied().max().unwrap_or(1000);
    let normalizer = Normalizer::new(Profile::Default, None);
    progress(format!(
        "structures: generating {} patterns",
        num(largest as f64)
    ));
    let mut figures = Vec::new();
    let data = tokio::task::block_in_place(|| -> anyhow::Result<Dataset> {
        let data = Dataset::generate(largest, s.seed, &normalizer);
        for &n in &s.structures_sizes {
            progress(format!("structures: one-row deltas at {}", num(n as f64)));
            figures.extend(delta::delta(&data.served_rows()[..n], s)?);
        }
        progress(format!("structures: lookups at {}", num(largest as f64)));
        figures.extend(index::lookup(data.served_rows(), s)?);
        progress("structures: category and metadata storage");
        figures.extend(storage::category(data.served_rows(), s));
        figures.extend(storage::metadata(data.served_rows(), s));
        progress("structures: memory, one child process per structure");
        figures.extend(memory::figures(largest, s, notes)?);
        Ok(data)
    })?;
    for &n in &s.structures_sizes {
        progress(format!(
            "structures: PostgreSQL fetch order at {}",
            num(n as f64)
        ));
        let smaller;
        let rows = if n == largest {
            &data.rows
        } else {
            smaller = Dataset::generate(n, s.seed, &normalizer);
            &smaller.rows
        };
        figures.extend(sql::figures(rows, n, s, notes).await?);
    }
    notes.push(format!(
        "deltas: {} one-row upserts per design and size (after {} unmeasured), rotating which \
         design goes first; each changes the confidence of a random served row; the time covers \
         producing the new version (clone + insert, or apply), not dropping the old one (in the \
         detail); the snapshot's overlay stays far below its fold threshold in this many deltas",
        s.structures_trials, s.structures_warmup
    ));
    notes.push(
        "std HashMap and imbl use the std hasher (SipHash-1-3, as the previous design did); \
         HashTable and the snapshot hash with seeded xxh3; the lookup comparison adds a std \
         HashMap with xxh3 to separate the hasher from the table"
            .to_owned(),
    );
    Ok(figures)
}

//! Memory of the alternatives, as the resident-set growth (`VmRSS`) of a child process that
//! builds one structure over the generated rows: a fresh process per structure, so nothing
//! another structure freed can be reused and hide the size. What is counted is what the process
//! pays: the allocator's per-chunk overhead included, rounded to pages (4 KiB; negligible at
//! 1 M rows, coarse at the quick sizes).
//!
//! The child runs with a fixed 64 KiB mmap threshold, so large temporary buffers (a load's
//! vectors, a table being grown) are unmapped when freed and only what the structure keeps
//! counts. Generating the rows frees a set of every normalized text; the child keeps an equal set alive
//! before the baseline, so those freed chunks (resident already) are taken and the structure's
//! own allocations show in the RSS. It then builds the structure twice, keeping both, and reports
//! the second build's growth (the first is in the detail: the two agree when nothing freed was
//! reused).

use std::{collections::HashMap, hint::black_box, sync::Arc};

use anyhow::Context;
use hotplane::{
    model::PatternRow,
    normalize::{Normalizer, Profile},
    snapshot::PatternSnapshot,
};

use super::{
    delta::CowMaps,
    index::row_table,
    storage::{box_texts, intern_categories, metadata_text, parse_values},
};
use crate::{
    Settings,
    data::Dataset,
    report::{Figure, num},
    stats,
};

/// The structures measured.
const KINDS: [&str; 9] = [
    "rows",
    "std-index",
    "table-index",
    "snapshot",
    "category-string",
    "category-interned",
    "metadata-value",
    "metadata-text",
    "metadata-none",
];

/// glibc malloc settings of the child (see [`run_child`]).
const MALLOC_TUNABLES: &str = "glibc.malloc.mmap_threshold=65536";

/// What one child reports: RSS growth of the first and of the second build, bytes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Growth {
    first: u64,
    second: u64,
    /// What the structure says it holds, where it can (the snapshot's `heap_bytes`), else 0.
    counted: u64,
}

/// Builds structure `kind` over `rows` (with the metadata's wire `texts`).
fn build(
    kind: &str,
    rows: &[PatternRow],
    texts: &[Option<String>],
) -> anyhow::Result<Box<dyn std::any::Any>> {
    let shared = || -> Vec<Arc<PatternRow>> { rows.iter().cloned().map(Arc::new).collect() };
    Ok(match kind {
        "rows" => Box::new(shared()),
        "std-index" => {
            let rows = shared();
            let maps = CowMaps::build(&rows);
            Box::new((rows, maps))
        }
        "table-index" => {
            let rows = shared();
            let by_norm = row_table(&rows, 7);
            let mut by_id = hashbrown::HashTable::with_capacity(rows.len());
            let hash =
                |r: &Arc<PatternRow>| xxhash_rust::xxh3::xxh3_64_with_seed(&r.id.to_le_bytes(), 7);
            for row in &rows {
                by_id.insert_unique(hash(row), Arc::clone(row), hash);
            }
            Box::new((rows, by_norm, by_id))
        }
        "snapshot" => {
            Box::new(PatternSnapshot::from_rows(rows.to_vec()).map_err(anyhow::Error::msg)?)
        }
        "category-string" => Box::new(rows.iter().map(|r| r.category.clone()).collect::<Vec<_>>()),
        "category-interned" => Box::new(intern_categories(rows)),
        "metadata-value" => Box::new(parse_values(texts)),
        "metadata-text" => Box::new(box_texts(texts)),
        // Collected, not `vec![None; n]`: that asks for zeroed memory, which stays untouched
        // (and out of the RSS) until written.
        "metadata-none" => Box::new(rows.iter().map(|_| None).collect::<Vec<Option<Box<str>>>>()),
        other => anyhow::bail!("unknown structure {other}"),
    })
}

/// The child side (`--structures-probe KIND:ROWS:SEED`): builds the structure twice and prints
/// a [`Growth`] as JSON on stdout.
pub fn probe(spec: &str) -> anyhow::Result<()> {
    let mut parts = spec.split(':');
    let (Some(kind), Some(n), Some(seed)) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("--structures-probe takes KIND:ROWS:SEED, not {spec}");
    };
    let n: usize = n.parse().context("ROWS")?;
    let seed: u64 = seed.parse().context("SEED")?;
    let data = Dataset::generate(n, seed, &Normalizer::new(Profile::Default, None));
    let soak = data.known();
    let rows = data.served_rows();
    let texts: Vec<Option<String>> = if kind.starts_with("metadata") {
        rows.iter().map(metadata_text).collect()
    } else {
        Vec::new()
    };
    let before = stats::rss().now;
    let first = build(kind, rows, &texts)?;
    let middle = stats::rss().now;
    let second = build(kind, rows, &texts)?;
    let after = stats::rss().now;
    black_box((&first, &second, &soak));
    let growth = Growth {
        first: middle.saturating_sub(before),
        second: after.saturating_sub(middle),
        counted: second
            .downcast_ref::<PatternSnapshot>()
            .map_or(0, |s| s.heap_bytes() as u64),
    };
    println!("{}", serde_json::to_string(&growth)?);
    Ok(())
}

/// Runs the child for `kind` at `n` rows.
fn run_child(kind: &str, n: usize, seed: u64) -> anyhow::Result<Growth> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let out = std::process::Command::new(exe)
        .args(["--structures-probe", &format!("{kind}:{n}:{seed}")])
        // A fixed mmap threshold (which also turns off glibc's dynamic raising of it): every
        // buffer of 64 KiB or more is its own mapping, returned when freed, so a build's
        // temporary tables neither count nor leave room the next build reuses.
        .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
        .output()
        .context("running the structures memory probe")?;
    anyhow::ensure!(
        out.status.success(),
        "the structures memory probe ({kind}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("reading the memory probe's report")
}

/// Part 2–4 memory: bytes per row of each structure at `n` rows.
pub fn figures(n: usize, s: &Settings, notes: &mut Vec<String>) -> anyhow::Result<Vec<Figure>> {
    let mut growth = HashMap::new();
    for kind in KINDS {
        growth.insert(kind, run_child(kind, n, s.seed)?);
    }
    let per = |kind: &str| {
        growth
            .get(kind)
            .map_or(0.0, |g| g.second as f64 / n.max(1) as f64)
    };
    let first = |kind: &str| {
        growth
            .get(kind)
            .map_or(0.0, |g| g.first as f64 / n.max(1) as f64)
    };
    // The `rows` structure is the Arc<PatternRow> rows every map design points into, plus a
    // Vec of those pointers (8 B a row) that the map designs also hold and the snapshot does not.
    let rows = per("rows");
    let index = |kind: &str| (per(kind) - rows).max(0.0);
    let size = num(n as f64);
    let std_name = "std HashMap<String, Arc<row>> + HashMap<i64, Arc<row>>";
    let counted = growth
        .get("snapshot")
        .map_or(0.0, |g| g.counted as f64 / n.max(1) as f64);
    let figures = vec![
        Figure::new(
            format!("{size}: index memory (rows excluded), HashTable<Arc<row>> by text + by id"),
            index("table-index"),
            "B/row",
            std_name,
            index("std-index"),
        ),
        Figure::new(
            format!("{size}: rows + indexes, PatternSnapshot (packed records, from_rows)"),
            per("snapshot"),
            "B/row",
            "Arc<PatternRow> rows + the two std HashMaps",
            per("std-index") - 8.0,
        )
        .detail(format!(
            "Arc<PatternRow> rows alone {} B/row; the snapshot's own count (heap_bytes) {} B/row",
            num(rows - 8.0),
            num(counted)
        )),
        Figure::new(
            format!("{size}: category memory, interned Arc<str>"),
            per("category-interned"),
            "B/row",
            "a String per row",
            per("category-string"),
        )
        .detail("the 16 B / 24 B slot in the row included"),
        Figure::new(
            format!("{size}: metadata memory, raw JSON text (Option<Box<str>>)"),
            per("metadata-text"),
            "B/row",
            "serde_json::Value per row",
            per("metadata-value"),
        )
        .detail("the 16 B / 32 B slot in the row included"),
        Figure::new(
            format!("{size}: metadata memory, none (metadata NULL: slot only)"),
            per("metadata-none"),
            "B/row",
            "serde_json::Value per row",
            per("metadata-value"),
        ),
    ];
    notes.push(format!(
        "memory: RSS growth of a child process building each structure over {size} generated \
         rows (the second of two builds; first builds: {})",
        KINDS
            .iter()
            .map(|k| format!("{k} {} B/row", num(first(k))))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(figures)
}

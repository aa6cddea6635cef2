//! Parts 3 and 4: how a row's category and metadata are held — building them from what the
//! store sends, and (metadata) turning them into the response's `Struct` on a match. Their
//! memory is measured in [`super::memory`].

use std::{collections::HashMap, hint::black_box, sync::Arc, time::Instant};

use hotplane::{api::convert::json_to_struct, model::PatternRow};

use super::{ms_since, settle_allocator};
use crate::{
    Settings,
    report::{Figure, num},
    stats::{Summary, summarize},
};

/// Part 3: building the category column of every row.
pub fn category(rows: &[PatternRow], s: &Settings) -> Vec<Figure> {
    let mut owned = Vec::new();
    let mut interned = Vec::new();
    for rep in 0..s.structures_reps + 1 {
        for k in 0..2 {
            let t0 = Instant::now();
            if (rep + k) % 2 == 0 {
                let v: Vec<String> = rows.iter().map(|r| r.category.clone()).collect();
                let took = ms_since(t0);
                drop(black_box(v));
                settle_allocator();
                if rep > 0 {
                    owned.push(took);
                }
            } else {
                let v = intern_categories(rows);
                let took = ms_since(t0);
                drop(black_box(v));
                settle_allocator();
                if rep > 0 {
                    interned.push(took);
                }
            }
        }
    }
    vec![
        Figure::new(
            format!(
                "{}: build the category of every row, interned Arc<str> (median)",
                num(rows.len() as f64)
            ),
            summarize(&mut interned).p50,
            "ms",
            "a String per row",
            summarize(&mut owned).p50,
        )
        .detail("from the rows' text, as a load decodes it; dropping excluded"),
    ]
}

/// The metadata of a row as JSON text on the wire (`None`: SQL NULL).
pub fn metadata_text(row: &PatternRow) -> Option<String> {
    row.metadata.clone()
}

/// Part 4: building the metadata column, and the per-match conversion to `Struct`.
pub fn metadata(rows: &[PatternRow], s: &Settings) -> Vec<Figure> {
    let texts: Vec<Option<String>> = rows.iter().map(metadata_text).collect();
    let mut parsed = Vec::new();
    let mut boxed = Vec::new();
    for rep in 0..s.structures_reps + 1 {
        for k in 0..2 {
            let t0 = Instant::now();
            if (rep + k) % 2 == 0 {
                let v = parse_values(&texts);
                let took = ms_since(t0);
                drop(black_box(v));
                settle_allocator();
                if rep > 0 {
                    parsed.push(took);
                }
            } else {
                let v = box_texts(&texts);
                let took = ms_since(t0);
                drop(black_box(v));
                settle_allocator();
                if rep > 0 {
                    boxed.push(took);
                }
            }
        }
    }
    // Per match: the rows that have metadata, converted one after the other.
    let present: Vec<String> = texts.into_iter().flatten().collect();
    let values: Vec<serde_json::Value> = present
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect();
    let batches = s.lookup_batches;
    let mut from_value = Vec::new();
    let mut from_text = Vec::new();
    for round in 0..4 {
        for k in 0..2 {
            if (round + k) % 2 == 0 {
                from_value.push(per_item(batches / 4 + 1, values.len(), |i| {
                    json_to_struct(&values[i]).map_or(0, |st| st.fields.len())
                }));
            } else {
                from_text.push(per_item(batches / 4 + 1, present.len(), |i| {
                    serde_json::from_str::<serde_json::Value>(&present[i])
                        .ok()
                        .and_then(|v| json_to_struct(&v))
                        .map_or(0, |st| st.fields.len())
                }));
            }
        }
    }
    let value = summarize(&mut from_value.iter().map(|x| x.p50).collect::<Vec<_>>());
    let text = summarize(&mut from_text.iter().map(|x| x.p50).collect::<Vec<_>>());
    let value99 = summarize(&mut from_value.iter().map(|x| x.p99).collect::<Vec<_>>());
    let text99 = summarize(&mut from_text.iter().map(|x| x.p99).collect::<Vec<_>>());
    let size = num(rows.len() as f64);
    vec![
        Figure::new(
            format!("{size}: build the metadata of every row, raw JSON text (median)"),
            summarize(&mut boxed).p50,
            "ms",
            "serde_json::Value per row (parse)",
            summarize(&mut parsed).p50,
        )
        .detail(format!(
            "from the JSON text as it arrives from the store; {:.0}% of rows have metadata",
            100.0 * present.len() as f64 / rows.len().max(1) as f64
        )),
        Figure::new(
            "per match: metadata → prost Struct, from raw text (parse + convert) (median)",
            text.p50,
            "ns",
            "json_to_struct of a held serde_json::Value",
            value.p50,
        )
        .detail(format!(
            "p99 {} ns vs {} ns",
            num(text99.p50),
            num(value99.p50)
        )),
    ]
}

/// Mean ns per call of `f(i)` over batches of 1,000 consecutive items (cycling through
/// `count`), median and p99 over the batches. The output is consumed (dropped) inside the
/// timing, as a response drops it after encoding.
fn per_item(batches: usize, count: usize, mut f: impl FnMut(usize) -> usize) -> Summary {
    const BATCH: usize = 1000;
    let mut samples = Vec::with_capacity(batches);
    let mut at = 0;
    let mut acc = 0usize;
    for _ in 0..batches {
        let t0 = Instant::now();
        for _ in 0..BATCH {
            acc = acc.wrapping_add(f(at));
            at = (at + 1) % count.max(1);
        }
        samples.push(t0.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    black_box(acc);
    summarize(&mut samples)
}

/// One interned `Arc<str>` per distinct category (~20), shared by every row.
pub fn intern_categories(rows: &[PatternRow]) -> Vec<Arc<str>> {
    let mut seen: HashMap<&str, Arc<str>> = HashMap::new();
    rows.iter()
        .map(|r| {
            Arc::clone(
                seen.entry(r.category.as_str())
                    .or_insert_with(|| Arc::from(r.category.as_str())),
            )
        })
        .collect()
}

/// Metadata as `serde_json::Value`, parsed from the wire text (NULL: `Value::Null`).
pub fn parse_values(texts: &[Option<String>]) -> Vec<serde_json::Value> {
    texts
        .iter()
        .map(|t| {
            t.as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(serde_json::Value::Null)
        })
        .collect()
}

/// Metadata kept as the raw JSON text.
pub fn box_texts(texts: &[Option<String>]) -> Vec<Option<Box<str>>> {
    texts.iter().map(|t| t.as_deref().map(Box::from)).collect()
}

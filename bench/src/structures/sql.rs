//! Whether the full load needs SQL to sort: the load's SELECT on PostgreSQL, fetched by the same
//! driver (sqlx) into driver rows, without `ORDER BY`, with `ORDER BY id`, and with
//! `ORDER BY normalized_pattern` (as the old Python path loaded), alternately.

use std::time::Instant;

use hotplane::model::PatternRow;

use crate::{
    Settings,
    db::{Backend, BenchDb, Client},
    report::{Figure, num},
    stats::summarize,
};

/// The orders compared; the first is the baseline (what the store's load does).
const ORDERS: [(&str, &str); 3] = [
    ("no ORDER BY", ""),
    ("ORDER BY id", "ORDER BY id"),
    ("ORDER BY normalized_pattern", "ORDER BY normalized_pattern"),
];

/// Fills a fresh PostgreSQL database with `rows` (`served` of them served) and times the fetch
/// in each order.
pub async fn figures(
    rows: &[PatternRow],
    served: usize,
    s: &Settings,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Figure>> {
    let db = BenchDb::create(Backend::Postgres, &s.database_url).await?;
    db.fill(rows).await?;
    let client = db.client().await?;
    let mut ms: [Vec<f64>; 3] = Default::default();
    // Round 0 warms the cache of every order and is not counted.
    for round in 0..=s.structures_reps {
        for k in 0..ORDERS.len() {
            let i = (round + k) % ORDERS.len();
            let t0 = Instant::now();
            let n = client.raw_fetch_ordered(ORDERS[i].1).await?;
            let took = t0.elapsed().as_secs_f64() * 1e3;
            anyhow::ensure!(n == served, "fetched {n} rows, {served} are served");
            if round > 0 {
                ms[i].push(took);
            }
        }
    }
    if let Client::Postgres(pool) = &client
        && served == s.structures_sizes.iter().copied().max().unwrap_or(0)
    {
        let collation: String = sqlx::query_scalar(
            "SELECT datcollate::text FROM pg_database WHERE datname = current_database()",
        )
        .fetch_one(pool)
        .await?;
        notes.push(format!(
            "PostgreSQL fetch: the database's collation (what ORDER BY normalized_pattern \
             compares with) is {collation}; {} fetches per order and size after one warm-up \
             each, orders rotated",
            s.structures_reps
        ));
    }
    client.close().await;
    db.remove().await?;
    let sums = ms.each_mut().map(|v| summarize(v));
    let size = num(served as f64);
    Ok(ORDERS
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, (name, _))| {
            Figure::new(
                format!("postgres {size}: raw fetch, {name} (median)"),
                sums[i].p50,
                "ms",
                "the same SELECT without ORDER BY",
                sums[0].p50,
            )
            .detail(format!(
                "min {} ms, max {} ms; without: min {} ms, max {} ms",
                num(sums[i].min),
                num(sums[i].max),
                num(sums[0].min),
                num(sums[0].max)
            ))
        })
        .collect())
}

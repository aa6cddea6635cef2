//! `match QUERY…`: MatchPattern for one query, BatchMatchPatterns for several (one snapshot
//! answers them all).

use std::time::Duration;

use clap::Args;

use super::{
    Ctx,
    error::{CtlError, Exit},
    json::to_json,
    output::{Table, clip, metadata},
};
use crate::pb;

/// Options of `match`.
#[derive(Debug, Clone, Args)]
pub struct MatchArgs {
    /// The queries, as users typed them; several are matched in one snapshot (a batch).
    #[arg(required = true, value_name = "QUERY")]
    pub queries: Vec<String>,
    /// Only patterns with at least this confidence, 0..1 (`min_confidence`).
    #[arg(long, value_name = "X")]
    pub min_confidence: Option<f64>,
    /// Fail (exit 1) unless the server serves at least this generation (`min_generation`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_generation: u64,
}

/// `match`.
pub async fn matches(ctx: &Ctx, a: MatchArgs) -> Result<Exit, CtlError> {
    let mut client = ctx.clients.patterns.clone();
    if let [query] = a.queries.as_slice() {
        let req = pb::MatchPatternRequest {
            query: query.clone(),
            min_confidence: a.min_confidence,
            min_generation: a.min_generation,
            ..Default::default()
        };
        let r = client
            .match_pattern(ctx.request(req, Duration::ZERO))
            .await?
            .into_inner();
        let text = || {
            let mut t = match_table();
            match_row(
                &mut t,
                query,
                r.matched,
                r.pattern.as_ref(),
                &r.normalized_query,
            );
            format!("{}generation {}\n", t.render(), r.generation)
        };
        ctx.answer(text, || to_json(&r, "hotplane.v1.MatchPatternResponse"))?;
    } else {
        let req = pb::BatchMatchPatternsRequest {
            queries: a.queries.clone(),
            min_confidence: a.min_confidence,
            min_generation: a.min_generation,
            ..Default::default()
        };
        let r = client
            .batch_match_patterns(ctx.request(req, Duration::ZERO))
            .await?
            .into_inner();
        let text = || {
            let mut t = match_table();
            for (query, m) in a.queries.iter().zip(&r.results) {
                match_row(
                    &mut t,
                    query,
                    m.matched,
                    m.pattern.as_ref(),
                    &m.normalized_query,
                );
            }
            format!("{}generation {}\n", t.render(), r.generation)
        };
        ctx.answer(text, || {
            to_json(&r, "hotplane.v1.BatchMatchPatternsResponse")
        })?;
    }
    Ok(Exit::Ok)
}

fn match_table() -> Table {
    Table::new(&[
        "query",
        "matched",
        "id",
        "category",
        "confidence",
        "normalized",
        "metadata",
    ])
}

fn match_row(
    t: &mut Table,
    query: &str,
    matched: bool,
    p: Option<&pb::MatchedPattern>,
    normalized: &str,
) {
    let (id, category, confidence, meta) = match p {
        Some(p) => (
            p.id.to_string(),
            p.category.clone(),
            format!("{:.2}", p.confidence),
            clip(&metadata(p.metadata.as_ref()), 60),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    t.row(vec![
        clip(query, 40),
        if matched { "yes" } else { "no" }.into(),
        id,
        category,
        confidence,
        clip(normalized, 40),
        meta,
    ]);
}

//! The check every revision test ends with: the set a replica serves equals what the store says
//! should be served (`enabled AND status = 'approved'`), row for row and field for field.

use std::collections::BTreeMap;

use hotplane::{
    engine::Engine,
    model::PatternRow,
    snapshot::content_hash,
    store::{ListQuery, Store},
};

/// The served columns of one row. `content` is the row's content hash, which also covers the
/// columns a served record keeps only hashed (`created_by`, `times_correct`). Hit counters and
/// the revision are bookkeeping, not content: a row whose content did not change keeps the
/// record it is served with, so they are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub pattern: String,
    pub normalized_pattern: String,
    pub category: String,
    pub confidence: f64,
    pub accuracy: f64,
    pub created_at_micros: i64,
    pub metadata: Option<String>,
    pub content: u64,
}

/// What `engine` serves now, by id.
pub fn served_by(engine: &Engine) -> BTreeMap<i64, Served> {
    let generation = engine.current();
    generation
        .snapshot
        .rows()
        .map(|r| {
            let row = Served {
                pattern: r.pattern().to_owned(),
                normalized_pattern: r.normalized_pattern().to_owned(),
                category: r.category().to_owned(),
                confidence: r.confidence(),
                accuracy: r.accuracy(),
                created_at_micros: r.created_at_micros(),
                metadata: r.metadata().map(str::to_owned),
                content: r.content_hash(),
            };
            (r.id(), row)
        })
        .collect()
}

fn of_row(r: &PatternRow) -> Served {
    Served {
        pattern: r.pattern.clone(),
        normalized_pattern: r.normalized_pattern.clone(),
        category: r.category.clone(),
        confidence: r.confidence,
        accuracy: r.accuracy,
        created_at_micros: r.created_at.timestamp_micros(),
        metadata: r.metadata.clone(),
        content: content_hash(&r.as_ref()),
    }
}

/// What the store says should be served now, by id: every row with `enabled AND status =
/// 'approved'`, read through the store's own decoding (so both sides use one canonical form).
pub async fn servable_in(store: &Store) -> BTreeMap<i64, Served> {
    let mut out = BTreeMap::new();
    let mut after_id = i64::MIN;
    loop {
        let page = store
            .list(&ListQuery {
                after_id,
                limit: 1000,
                ..ListQuery::default()
            })
            .await
            .expect("listing the store");
        let Some(last) = page.last() else {
            return out;
        };
        after_id = last.id;
        out.extend(
            page.iter()
                .filter(|r| r.is_served())
                .map(|r| (r.id, of_row(r))),
        );
    }
}

/// Panics, naming the first differences, unless `engine` serves exactly what `store` says.
pub async fn assert_serves_store(engine: &Engine, store: &Store, context: &str) {
    let want = servable_in(store).await;
    let got = served_by(engine);
    if want == got {
        return;
    }
    let mut diffs = Vec::new();
    for (id, w) in &want {
        match got.get(id) {
            None => diffs.push(format!("id {id}: not served, should be {w:?}")),
            Some(g) if g != w => diffs.push(format!("id {id}: serves {g:?}, store has {w:?}")),
            Some(_) => {}
        }
    }
    for (id, g) in &got {
        if !want.contains_key(id) {
            diffs.push(format!(
                "id {id}: served as {g:?}, the store does not serve it"
            ));
        }
    }
    let n = diffs.len();
    diffs.truncate(10);
    panic!(
        "{context}: the served set differs from the store in {n} rows:\n{}",
        diffs.join("\n")
    );
}

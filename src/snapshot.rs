//! An immutable, indexed set of served patterns: what one generation of the pattern cache serves.
//!
//! A snapshot is built once (from a full load, or by applying a delta to the previous snapshot)
//! and never mutated afterwards, so readers holding one never see a torn state. It owns duplicate
//! resolution: several rows may share a normalized text, and the lookup always answers with the
//! best of them (highest accuracy, then times_used, then newest, then highest id), never the worst.
//! It does no I/O and knows nothing about generations or the store.

use std::{cmp::Ordering, collections::HashMap, sync::Arc};

use crate::model::PatternRow;

/// Counts of what a new snapshot changed relative to the one it replaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    /// Served rows that were not served before.
    pub added: u32,
    /// Served rows whose content changed.
    pub updated: u32,
    /// Rows no longer served.
    pub removed: u32,
}

impl ChangeCounts {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        self.added + self.updated + self.removed > 0
    }
}

/// The served patterns of one generation.
#[derive(Debug, Clone, Default)]
pub struct PatternSnapshot {
    /// Normalized text → every served row with that text, best first.
    by_norm: HashMap<Box<str>, Vec<Arc<PatternRow>>>,
    /// Id → served row.
    by_id: HashMap<i64, Arc<PatternRow>>,
    /// Order-independent hash of the served content: the wrapping sum of every served row's
    /// hash, so a delta updates it in O(changed rows) and replicas serving the same rows agree.
    hash: u64,
}

impl PatternSnapshot {
    /// Builds a snapshot from a full load. Rows that are not served are skipped; a served row that
    /// breaks an invariant rejects the whole load with the reason.
    pub fn from_rows(rows: Vec<PatternRow>) -> Result<Self, String> {
        let mut snap = PatternSnapshot {
            by_norm: HashMap::with_capacity(rows.len()),
            by_id: HashMap::with_capacity(rows.len()),
            hash: 0,
        };
        for row in rows {
            if !row.is_served() {
                continue;
            }
            row.check_invariants()?;
            snap.insert(Arc::new(row));
        }
        for list in snap.by_norm.values_mut() {
            list.sort_by(|a, b| rank(a, b));
        }
        Ok(snap)
    }

    /// Returns a new snapshot with `changed` rows applied (served ones upserted, others removed)
    /// and `deleted` ids removed, plus what changed. A changed row older than the one served
    /// (lower revision) is ignored: an older read never replaces newer content.
    pub fn apply(
        &self,
        changed: Vec<PatternRow>,
        deleted: &[i64],
    ) -> Result<(Self, ChangeCounts), String> {
        for row in changed.iter().filter(|r| r.is_served()) {
            row.check_invariants()?;
        }
        let mut next = self.clone();
        let mut counts = ChangeCounts::default();
        for id in deleted {
            if next.remove(*id).is_some() {
                counts.removed += 1;
            }
        }
        for row in changed {
            match next.by_id.get(&row.id) {
                Some(cur) if cur.revision > row.revision => continue,
                Some(cur) if same_content(cur, &row) => continue,
                Some(_) if row.is_served() => {
                    next.remove(row.id);
                    next.insert_sorted(Arc::new(row));
                    counts.updated += 1;
                }
                Some(_) => {
                    next.remove(row.id);
                    counts.removed += 1;
                }
                None if row.is_served() => {
                    next.insert_sorted(Arc::new(row));
                    counts.added += 1;
                }
                None => {}
            }
        }
        Ok((next, counts))
    }

    /// What replacing `self` with `next` changes (used for full loads).
    pub fn diff(&self, next: &PatternSnapshot) -> ChangeCounts {
        let mut counts = ChangeCounts::default();
        for (id, row) in &next.by_id {
            match self.by_id.get(id) {
                None => counts.added += 1,
                Some(old) if !same_content(old, row) => counts.updated += 1,
                Some(_) => {}
            }
        }
        counts.removed = self
            .by_id
            .keys()
            .filter(|id| !next.by_id.contains_key(id))
            .count() as u32;
        counts
    }

    /// The best served row for a normalized text, optionally only among rows with at least
    /// `min_confidence`.
    pub fn lookup(
        &self,
        normalized: &str,
        min_confidence: Option<f64>,
    ) -> Option<&Arc<PatternRow>> {
        let list = self.by_norm.get(normalized)?;
        match min_confidence {
            None => list.first(),
            Some(min) => list.iter().find(|r| r.confidence >= min),
        }
    }

    /// A served row by id.
    pub fn get(&self, id: i64) -> Option<&Arc<PatternRow>> {
        self.by_id.get(&id)
    }

    /// Whether `id` is the row answering lookups of its normalized text.
    pub fn is_winner(&self, id: i64) -> bool {
        self.by_id.get(&id).is_some_and(|row| {
            self.by_norm
                .get(row.normalized_pattern.as_str())
                .and_then(|l| l.first())
                .is_some_and(|best| best.id == id)
        })
    }

    /// Number of served rows.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is served.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Hash of the served content, as 16 hex digits.
    pub fn content_hash(&self) -> String {
        format!("{:016x}", self.hash)
    }

    /// Every served row, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = &Arc<PatternRow>> {
        self.by_id.values()
    }

    fn insert(&mut self, row: Arc<PatternRow>) {
        self.hash = self.hash.wrapping_add(row_hash(&row));
        self.by_norm
            .entry(row.normalized_pattern.as_str().into())
            .or_default()
            .push(Arc::clone(&row));
        self.by_id.insert(row.id, row);
    }

    fn insert_sorted(&mut self, row: Arc<PatternRow>) {
        self.hash = self.hash.wrapping_add(row_hash(&row));
        let list = self
            .by_norm
            .entry(row.normalized_pattern.as_str().into())
            .or_default();
        let at = list.partition_point(|r| rank(r, &row) == Ordering::Less);
        list.insert(at, Arc::clone(&row));
        self.by_id.insert(row.id, row);
    }

    fn remove(&mut self, id: i64) -> Option<Arc<PatternRow>> {
        let row = self.by_id.remove(&id)?;
        self.hash = self.hash.wrapping_sub(row_hash(&row));
        if let Some(list) = self.by_norm.get_mut(row.normalized_pattern.as_str()) {
            list.retain(|r| r.id != id);
            if list.is_empty() {
                self.by_norm.remove(row.normalized_pattern.as_str());
            }
        }
        Some(row)
    }
}

/// Best first: highest accuracy, then most used, then newest, then highest id (deterministic).
fn rank(a: &PatternRow, b: &PatternRow) -> Ordering {
    b.accuracy
        .total_cmp(&a.accuracy)
        .then(b.times_used.cmp(&a.times_used))
        .then(b.created_at.cmp(&a.created_at))
        .then(b.id.cmp(&a.id))
}

/// Whether two versions of a row serve the same thing. Hit counters (`times_used`,
/// `last_used_at`) and bookkeeping (`updated_at`, `revision`) do not count as content.
fn same_content(a: &PatternRow, b: &PatternRow) -> bool {
    a.id == b.id
        && a.pattern == b.pattern
        && a.normalized_pattern == b.normalized_pattern
        && a.category == b.category
        && a.confidence.to_bits() == b.confidence.to_bits()
        && a.accuracy.to_bits() == b.accuracy.to_bits()
        && a.times_correct == b.times_correct
        && a.created_by == b.created_by
        && a.enabled == b.enabled
        && a.status == b.status
        && a.metadata == b.metadata
}

/// Hash of a row's served content (the fields `same_content` compares, minus the ones that
/// cannot differ for a served row).
fn row_hash(row: &PatternRow) -> u64 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    h.update(&row.id.to_le_bytes());
    for s in [
        &row.pattern,
        &row.normalized_pattern,
        &row.category,
        &row.created_by,
    ] {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    h.update(&row.confidence.to_bits().to_le_bytes());
    h.update(&row.accuracy.to_bits().to_le_bytes());
    h.update(&row.times_correct.to_le_bytes());
    h.update(row.metadata.to_string().as_bytes());
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PatternStatus;
    use chrono::{TimeZone, Utc};

    fn row(id: i64, norm: &str, accuracy: f64, used: i64) -> PatternRow {
        PatternRow {
            id,
            pattern: format!("raw {id}"),
            normalized_pattern: norm.into(),
            category: "cat".into(),
            confidence: 0.95,
            times_used: used,
            times_correct: 0,
            accuracy,
            created_at: Utc
                .timestamp_opt(1_700_000_000 + id, 0)
                .single()
                .unwrap_or_default(),
            last_used_at: None,
            created_by: "llm".into(),
            enabled: true,
            status: PatternStatus::Approved,
            metadata: serde_json::Value::Null,
            updated_at: Utc::now(),
            revision: id,
        }
    }

    #[test]
    fn duplicates_resolve_to_the_best_row_in_any_input_order() {
        let rows = [
            row(1, "ciao", 0.5, 100),
            row(2, "ciao", 0.9, 1),
            row(3, "ciao", 0.9, 5),
            row(4, "ciao", 0.9, 5), // same accuracy and use as 3 but newer
        ];
        for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            let input = perm.iter().map(|&i| rows[i].clone()).collect();
            let snap = PatternSnapshot::from_rows(input).expect("valid");
            assert_eq!(snap.lookup("ciao", None).map(|r| r.id), Some(4));
            assert!(snap.is_winner(4) && !snap.is_winner(1));
        }
    }

    #[test]
    fn removing_the_winner_promotes_the_next_best() {
        let snap =
            PatternSnapshot::from_rows(vec![row(1, "x", 0.2, 0), row(2, "x", 0.8, 0)]).expect("ok");
        let (next, counts) = snap.apply(vec![], &[2]).expect("ok");
        assert_eq!(next.lookup("x", None).map(|r| r.id), Some(1));
        assert_eq!(counts.removed, 1);
        // min_confidence skips rows below it
        assert!(next.lookup("x", Some(0.99)).is_none());
    }

    #[test]
    fn unserved_rows_are_skipped_and_disables_remove() {
        let mut pending = row(2, "b", 0.5, 0);
        pending.status = PatternStatus::Pending;
        let snap = PatternSnapshot::from_rows(vec![row(1, "a", 0.5, 0), pending]).expect("ok");
        assert_eq!(snap.len(), 1);
        let mut disabled = row(1, "a", 0.5, 0);
        disabled.enabled = false;
        disabled.revision = 10;
        let (next, counts) = snap.apply(vec![disabled], &[]).expect("ok");
        assert!(next.is_empty());
        assert_eq!(
            counts,
            ChangeCounts {
                added: 0,
                updated: 0,
                removed: 1
            }
        );
        // the original snapshot is untouched
        assert_eq!(snap.lookup("a", None).map(|r| r.id), Some(1));
    }

    #[test]
    fn an_older_row_never_replaces_a_newer_one() {
        let mut newer = row(1, "a", 0.5, 0);
        newer.revision = 20;
        newer.category = "new".into();
        let snap = PatternSnapshot::from_rows(vec![newer]).expect("ok");
        let mut older = row(1, "a", 0.5, 0);
        older.revision = 10;
        older.category = "old".into();
        let (next, counts) = snap.apply(vec![older], &[]).expect("ok");
        assert_eq!(
            next.lookup("a", None).map(|r| r.category.as_str()),
            Some("new")
        );
        assert!(!counts.any());
    }

    #[test]
    fn an_invalid_served_row_rejects_the_whole_load() {
        let mut bad = row(7, "a", 0.5, 0);
        bad.times_correct = 5;
        bad.times_used = 1;
        let err = PatternSnapshot::from_rows(vec![row(1, "b", 0.1, 0), bad.clone()])
            .expect_err("must reject");
        assert!(
            err.contains("pattern id 7") && err.contains("times_correct"),
            "{err}"
        );
        let snap = PatternSnapshot::from_rows(vec![row(1, "b", 0.1, 0)]).expect("ok");
        assert!(snap.apply(vec![bad], &[]).is_err());
    }

    #[test]
    fn content_hash_is_order_independent_and_incremental() {
        let a =
            PatternSnapshot::from_rows(vec![row(1, "a", 0.1, 0), row(2, "b", 0.1, 0)]).expect("ok");
        let b =
            PatternSnapshot::from_rows(vec![row(2, "b", 0.1, 0), row(1, "a", 0.1, 0)]).expect("ok");
        assert_eq!(a.content_hash(), b.content_hash());
        let one = PatternSnapshot::from_rows(vec![row(1, "a", 0.1, 0)]).expect("ok");
        let (grown, _) = one.apply(vec![row(2, "b", 0.1, 0)], &[]).expect("ok");
        assert_eq!(grown.content_hash(), a.content_hash());
        assert_ne!(one.content_hash(), a.content_hash());
        // hit counters are not content
        let mut used = row(1, "a", 0.1, 0);
        used.times_used = 99;
        assert_eq!(
            a.diff(&PatternSnapshot::from_rows(vec![used, row(2, "b", 0.1, 0)]).expect("ok")),
            ChangeCounts::default()
        );
    }
}

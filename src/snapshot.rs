//! An immutable, indexed set of served patterns: what one generation of the pattern cache serves.
//!
//! A snapshot is built once (from a full load, or by applying a delta to the previous snapshot)
//! and never mutated afterwards, so readers holding one never see a torn state. It owns duplicate
//! resolution: several rows may share a normalized text, and the lookup always answers with the
//! best of them (highest accuracy, then times_used, then newest, then highest id), never the worst.
//! It does no I/O and knows nothing about generations or the store.

use std::{cmp::Ordering, fmt, hash::BuildHasher, sync::Arc};

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::model::PatternRow;

/// Rows a delta may change before the next delta folds them into a new base. The overlay is
/// copied by every delta, the base is rebuilt by a fold: this bounds the first (a copy of at
/// most this many entries, well under a millisecond) while folding rarely (at 1 M rows, once
/// every 16 k changed rows). See BENCHMARKS.md for the measured alternatives.
const FOLD_AT: usize = 16 * 1024;

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

/// Rows served with one normalized text, best first.
type Rows = Arc<[Arc<PatternRow>]>;

/// The served patterns of one generation.
///
/// Two layers, both immutable once the snapshot is published: a large `base`, shared (behind an
/// `Arc`) by every snapshot derived from it by deltas and by the retained generations, and a
/// small `overlay` of what changed since the base was built, which each delta copies. A one-row
/// delta therefore costs O(overlay), not O(served rows); once the overlay holds [`FOLD_AT`] rows
/// the delta that grows it past that folds everything into a new base (off the request threads,
/// like every build).
#[derive(Clone, Default)]
pub struct PatternSnapshot {
    base: Arc<Base>,
    overlay: Overlay,
    /// Number of served rows.
    len: usize,
    /// Order-independent hash of the served content: the wrapping sum of every served row's
    /// hash, so a delta updates it in O(changed rows) and replicas serving the same rows agree.
    hash: u64,
}

/// The bulk of the served rows, indexed by normalized text and by id. Both tables hold only
/// pointers to the rows (8 bytes a slot): the keys are read from the rows themselves.
struct Base {
    /// Seed of the text and id hashes (random per process: texts come from clients).
    seed: u64,
    /// Every served text → its rows.
    by_norm: HashTable<Text>,
    /// Every served row, by id.
    by_id: HashTable<Arc<PatternRow>>,
}

/// The rows of one normalized text in the base: the best inline, so that a hit reads it without
/// a further indirection; all of them, best first, only when there are several.
struct Text {
    best: Arc<PatternRow>,
    all: Option<Box<[Arc<PatternRow>]>>,
}

/// What changed since the base was built. Hashed with the base's seed, so a lookup hashes its
/// text once for both layers.
#[derive(Clone, Default)]
struct Overlay {
    /// Texts whose rows changed: every row now served with that text, best first (empty: none).
    by_norm: HashTable<(Arc<str>, Rows)>,
    /// Ids that changed: the row now served, or `None` when no longer served.
    by_id: HashTable<(i64, Option<Arc<PatternRow>>)>,
}

impl fmt::Debug for PatternSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatternSnapshot")
            .field("len", &self.len)
            .field("overlay", &self.overlay.by_id.len())
            .field("hash", &self.content_hash())
            .finish()
    }
}

/// A hash seed no other process shares.
fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0x0068_7470_6c61_6e65_u64)
}

fn text_hash(seed: u64, text: &str) -> u64 {
    xxh3_64_with_seed(text.as_bytes(), seed)
}

fn id_hash(seed: u64, id: i64) -> u64 {
    xxh3_64_with_seed(&id.to_le_bytes(), seed)
}

impl Default for Base {
    fn default() -> Base {
        Base {
            seed: random_seed(),
            by_norm: HashTable::new(),
            by_id: HashTable::new(),
        }
    }
}

impl Base {
    /// Indexes `rows` (served, valid, distinct ids), sorting each text's rows best first.
    fn build(seed: u64, rows: impl Iterator<Item = Arc<PatternRow>>, len: usize) -> Base {
        let mut by_id = HashTable::with_capacity(len);
        // Texts are grouped through a table of vectors first, then frozen into shared slices.
        let mut groups: HashTable<Vec<Arc<PatternRow>>> = HashTable::with_capacity(len);
        for row in rows {
            let h = text_hash(seed, &row.normalized_pattern);
            match groups.find_mut(h, |g| g[0].normalized_pattern == row.normalized_pattern) {
                Some(g) => g.push(Arc::clone(&row)),
                None => {
                    groups.insert_unique(h, vec![Arc::clone(&row)], |g| {
                        text_hash(seed, &g[0].normalized_pattern)
                    });
                }
            }
            by_id.insert_unique(id_hash(seed, row.id), row, |r| id_hash(seed, r.id));
        }
        let mut by_norm = HashTable::with_capacity(groups.len());
        for mut g in groups {
            let h = text_hash(seed, &g[0].normalized_pattern);
            let text = if g.len() > 1 {
                g.sort_by(|a, b| rank(a, b));
                Text {
                    best: Arc::clone(&g[0]),
                    all: Some(g.into_boxed_slice()),
                }
            } else {
                Text {
                    best: g.swap_remove(0),
                    all: None,
                }
            };
            by_norm.insert_unique(h, text, |t: &Text| {
                text_hash(seed, &t.best.normalized_pattern)
            });
        }
        Base {
            seed,
            by_norm,
            by_id,
        }
    }
}

impl PatternSnapshot {
    /// Builds a snapshot from a full load. Rows that are not served are skipped; a served row that
    /// breaks an invariant rejects the whole load with the reason.
    pub fn from_rows(rows: Vec<PatternRow>) -> Result<Self, String> {
        Ok(Self::from_rows_after(&PatternSnapshot::default(), rows)?.0)
    }

    /// [`Self::from_rows`] for a load that replaces `prev`, plus what it changes (as
    /// [`Self::diff`] counts it). A row identical to the one `prev` serves (every field, hit
    /// counters included) is shared with `prev` rather than kept twice: retained generations
    /// then cost their index tables, not a copy of every row, and the content hash only
    /// changes by the rows that differ.
    pub fn from_rows_after(
        prev: &PatternSnapshot,
        rows: Vec<PatternRow>,
    ) -> Result<(Self, ChangeCounts), String> {
        let seed = prev.base.seed;
        let mut counts = ChangeCounts::default();
        let mut hash = prev.hash;
        let mut served: Vec<Arc<PatternRow>> = Vec::with_capacity(rows.len());
        let mut ids = HashTable::with_capacity(rows.len());
        // Rows of `prev` that this load names again (same id), reused or replaced.
        let mut seen = 0usize;
        for row in rows {
            if !row.is_served() {
                continue;
            }
            row.check_invariants()?;
            let h = id_hash(seed, row.id);
            if ids.find(h, |id: &i64| *id == row.id).is_some() {
                return Err(format!("pattern id {}: read twice in one load", row.id));
            }
            ids.insert_unique(h, row.id, |id| id_hash(seed, *id));
            let row = match prev.get(row.id) {
                Some(old) => {
                    seen += 1;
                    if **old == row {
                        Arc::clone(old)
                    } else {
                        if !same_content(old, &row) {
                            counts.updated += 1;
                        }
                        hash = hash
                            .wrapping_sub(row_hash(old))
                            .wrapping_add(row_hash(&row));
                        Arc::new(row)
                    }
                }
                None => {
                    counts.added += 1;
                    hash = hash.wrapping_add(row_hash(&row));
                    Arc::new(row)
                }
            };
            served.push(row);
        }
        if seen < prev.len {
            for old in prev.rows() {
                if ids
                    .find(id_hash(seed, old.id), |id| *id == old.id)
                    .is_none()
                {
                    counts.removed += 1;
                    hash = hash.wrapping_sub(row_hash(old));
                }
            }
        }
        drop(ids);
        let len = served.len();
        let next = PatternSnapshot {
            base: Arc::new(Base::build(seed, served.into_iter(), len)),
            overlay: Overlay::default(),
            len,
            hash,
        };
        Ok((next, counts))
    }

    /// Returns a new snapshot with `changed` rows applied (served ones upserted, others removed)
    /// and `deleted` ids removed, plus what changed. A changed row older than the one served
    /// (lower revision) is ignored: an older read never replaces newer content. `self` is left
    /// as it was; the new snapshot shares its base.
    pub fn apply(
        &self,
        changed: Vec<PatternRow>,
        deleted: &[i64],
    ) -> Result<(Self, ChangeCounts), String> {
        self.apply_folding(changed, deleted, FOLD_AT)
    }

    /// [`Self::apply`], folding once the overlay holds more than `fold_at` ids.
    fn apply_folding(
        &self,
        changed: Vec<PatternRow>,
        deleted: &[i64],
        fold_at: usize,
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
            match next.get(row.id) {
                Some(cur) if cur.revision > row.revision => continue,
                Some(cur) if same_content(cur, &row) => continue,
                Some(_) if row.is_served() => {
                    next.remove(row.id);
                    next.insert(Arc::new(row));
                    counts.updated += 1;
                }
                Some(_) => {
                    next.remove(row.id);
                    counts.removed += 1;
                }
                None if row.is_served() => {
                    next.insert(Arc::new(row));
                    counts.added += 1;
                }
                None => {}
            }
        }
        if next.overlay.by_id.len() > fold_at {
            next = next.folded();
        }
        Ok((next, counts))
    }

    /// The same content with the overlay folded into a new base.
    fn folded(&self) -> PatternSnapshot {
        let base = Base::build(self.base.seed, self.rows().cloned(), self.len);
        PatternSnapshot {
            base: Arc::new(base),
            overlay: Overlay::default(),
            len: self.len,
            hash: self.hash,
        }
    }

    /// What replacing `self` with `next` changes (used for full loads).
    pub fn diff(&self, next: &PatternSnapshot) -> ChangeCounts {
        let mut counts = ChangeCounts::default();
        for row in next.rows() {
            match self.get(row.id) {
                None => counts.added += 1,
                Some(old) if !same_content(old, row) => counts.updated += 1,
                Some(_) => {}
            }
        }
        counts.removed = self.rows().filter(|r| next.get(r.id).is_none()).count() as u32;
        counts
    }

    /// The best served row for a normalized text, optionally only among rows with at least
    /// `min_confidence`.
    pub fn lookup(
        &self,
        normalized: &str,
        min_confidence: Option<f64>,
    ) -> Option<&Arc<PatternRow>> {
        let h = text_hash(self.base.seed, normalized);
        if !self.overlay.by_norm.is_empty()
            && let Some((_, rows)) = self
                .overlay
                .by_norm
                .find(h, |(text, _)| &**text == normalized)
        {
            return pick(rows, min_confidence);
        }
        let text = self
            .base
            .by_norm
            .find(h, |t| t.best.normalized_pattern == normalized)?;
        match (min_confidence, &text.all) {
            (Some(min), _) if text.best.confidence >= min => Some(&text.best),
            (Some(_), Some(all)) => pick(all, min_confidence),
            (Some(_), None) => None,
            (None, _) => Some(&text.best),
        }
    }

    /// Every served row with this normalized text, best first.
    fn rows_of(&self, normalized: &str) -> Vec<Arc<PatternRow>> {
        let h = text_hash(self.base.seed, normalized);
        if let Some((_, rows)) = self
            .overlay
            .by_norm
            .find(h, |(text, _)| &**text == normalized)
        {
            return rows.to_vec();
        }
        match self
            .base
            .by_norm
            .find(h, |t| t.best.normalized_pattern == normalized)
        {
            Some(Text { all: Some(all), .. }) => all.to_vec(),
            Some(Text { best, all: None }) => vec![Arc::clone(best)],
            None => Vec::new(),
        }
    }

    /// A served row by id.
    pub fn get(&self, id: i64) -> Option<&Arc<PatternRow>> {
        let h = id_hash(self.base.seed, id);
        if !self.overlay.by_id.is_empty()
            && let Some((_, row)) = self.overlay.by_id.find(h, |(i, _)| *i == id)
        {
            return row.as_ref();
        }
        self.base.by_id.find(h, |r| r.id == id)
    }

    /// Whether `id` is the row answering lookups of its normalized text.
    pub fn is_winner(&self, id: i64) -> bool {
        self.get(id).is_some_and(|row| {
            self.lookup(&row.normalized_pattern, None)
                .is_some_and(|best| best.id == id)
        })
    }

    /// Number of served rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is served.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hash of the served content, as 16 hex digits.
    pub fn content_hash(&self) -> String {
        format!("{:016x}", self.hash)
    }

    /// Every served row, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = &Arc<PatternRow>> {
        let seed = self.base.seed;
        let overlay = &self.overlay.by_id;
        self.base
            .by_id
            .iter()
            .filter(move |r| {
                overlay.is_empty()
                    || overlay
                        .find(id_hash(seed, r.id), |(i, _)| *i == r.id)
                        .is_none()
            })
            .chain(overlay.iter().filter_map(|(_, row)| row.as_ref()))
    }

    /// Adds a served row (its id not served now).
    fn insert(&mut self, row: Arc<PatternRow>) {
        self.hash = self.hash.wrapping_add(row_hash(&row));
        self.len += 1;
        let mut list = self.rows_of(&row.normalized_pattern);
        let at = list.partition_point(|r| rank(r, &row) == Ordering::Less);
        list.insert(at, Arc::clone(&row));
        self.set_text(&row.normalized_pattern, list);
        self.set_id(row.id, Some(row));
    }

    /// Removes a served row; returns it, or `None` if `id` is not served.
    fn remove(&mut self, id: i64) -> Option<Arc<PatternRow>> {
        let row = Arc::clone(self.get(id)?);
        self.hash = self.hash.wrapping_sub(row_hash(&row));
        self.len -= 1;
        let mut list = self.rows_of(&row.normalized_pattern);
        list.retain(|r| r.id != id);
        self.set_text(&row.normalized_pattern, list);
        self.set_id(id, None);
        Some(row)
    }

    /// Records in the overlay the rows now served with `text`.
    fn set_text(&mut self, text: &str, list: Vec<Arc<PatternRow>>) {
        let seed = self.base.seed;
        let h = text_hash(seed, text);
        let table = &mut self.overlay.by_norm;
        match table.find_mut(h, |(t, _)| &**t == text) {
            Some(entry) => entry.1 = list.into(),
            None => {
                table.insert_unique(h, (text.into(), list.into()), |(t, _)| text_hash(seed, t));
            }
        }
    }

    /// Records in the overlay the row now served with `id` (`None`: none).
    fn set_id(&mut self, id: i64, row: Option<Arc<PatternRow>>) {
        let seed = self.base.seed;
        let h = id_hash(seed, id);
        let table = &mut self.overlay.by_id;
        match table.find_mut(h, |(i, _)| *i == id) {
            Some(entry) => entry.1 = row,
            None => {
                table.insert_unique(h, (id, row), |(i, _)| id_hash(seed, *i));
            }
        }
    }
}

/// The first of `rows` (best first) with at least `min_confidence`, or the first.
fn pick(rows: &[Arc<PatternRow>], min_confidence: Option<f64>) -> Option<&Arc<PatternRow>> {
    match min_confidence {
        None => rows.first(),
        Some(min) => rows.iter().find(|r| r.confidence >= min),
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

    /// Whatever sequence of deltas built it, a snapshot answers exactly like one built from the
    /// same rows by a full load: same winners, same lists under min_confidence, same ids, same
    /// count and hash, whether the overlay was folded into the base or not.
    #[test]
    fn deltas_with_and_without_folding_equal_a_full_load() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let texts = ["a", "b", "c", "d", "e"];
        let initial: Vec<PatternRow> = (1..=20)
            .map(|id| row(id, texts[(id % 5) as usize], 0.1 * (id % 7) as f64, id % 3))
            .collect();
        let mut truth: std::collections::BTreeMap<i64, PatternRow> =
            initial.iter().map(|r| (r.id, r.clone())).collect();
        let start = PatternSnapshot::from_rows(initial).expect("ok");
        for fold_at in [usize::MAX, 0, 3] {
            let mut snap = start.clone();
            let mut truth = truth.clone();
            for step in 0..200i64 {
                let id = 1 + next(30) as i64;
                let (changed, deleted) = match next(4) {
                    0 => (vec![], vec![id]),
                    1 => {
                        let mut r = row(id, texts[next(5) as usize], 0.1 * next(10) as f64, 1);
                        r.revision = 1000 + step;
                        r.confidence = 0.1 * next(10) as f64;
                        r.enabled = next(5) != 0;
                        (vec![r], vec![])
                    }
                    _ => {
                        let mut r = row(id, texts[next(5) as usize], 0.5, next(9) as i64);
                        r.revision = 1000 + step;
                        (vec![r], vec![])
                    }
                };
                for d in &deleted {
                    truth.remove(d);
                }
                for r in &changed {
                    // hit counters are not content: a row differing only in them is not
                    // replaced (and keeps ranking by the counters it was served with)
                    if truth.get(&r.id).is_some_and(|cur| same_content(cur, r)) {
                        continue;
                    }
                    if r.is_served() {
                        truth.insert(r.id, r.clone());
                    } else {
                        truth.remove(&r.id);
                    }
                }
                snap = snap
                    .apply_folding(changed, &deleted, fold_at)
                    .expect("ok")
                    .0;
                let full =
                    PatternSnapshot::from_rows(truth.values().cloned().collect()).expect("ok");
                assert_eq!(snap.len(), full.len(), "fold_at {fold_at} step {step}");
                assert_eq!(snap.content_hash(), full.content_hash());
                assert_eq!(snap.diff(&full), ChangeCounts::default());
                assert_eq!(full.diff(&snap), ChangeCounts::default());
                let mut ids: Vec<i64> = snap.rows().map(|r| r.id).collect();
                ids.sort_unstable();
                assert_eq!(ids, truth.keys().copied().collect::<Vec<_>>());
                for t in texts {
                    for min in [None, Some(0.35), Some(0.75)] {
                        assert_eq!(
                            snap.lookup(t, min).map(|r| r.id),
                            full.lookup(t, min).map(|r| r.id),
                            "fold_at {fold_at} step {step} text {t} min {min:?}"
                        );
                    }
                }
                for id in 1..=30 {
                    assert_eq!(snap.is_winner(id), full.is_winner(id));
                }
            }
        }
        // the snapshot the deltas started from is untouched
        assert_eq!(start.len(), 20);
        truth.clear();
    }

    /// A full load after another counts like `diff`, hashes like a fresh build, and shares the
    /// rows that did not change with the snapshot it replaces.
    #[test]
    fn a_full_load_after_another_shares_unchanged_rows_and_counts_changes() {
        let (a, b, c) = (
            row(1, "a", 0.1, 0),
            row(2, "b", 0.1, 0),
            row(3, "c", 0.1, 0),
        );
        let prev = PatternSnapshot::from_rows(vec![a.clone(), b.clone(), c.clone()]).expect("ok");
        let mut changed = b;
        changed.category = "other".into();
        let mut used = c;
        used.times_used = 7;
        let rows = vec![a, changed, used, row(4, "d", 0.1, 0)];
        let (next, counts) = PatternSnapshot::from_rows_after(&prev, rows.clone()).expect("ok");
        let fresh = PatternSnapshot::from_rows(rows).expect("ok");
        assert_eq!(counts, prev.diff(&fresh));
        assert_eq!(
            counts,
            ChangeCounts {
                added: 1,
                updated: 1,
                removed: 0
            }
        );
        assert_eq!(next.content_hash(), fresh.content_hash());
        let same = |id| Arc::ptr_eq(next.get(id).expect("a"), prev.get(id).expect("b"));
        assert!(same(1), "an identical row is shared");
        assert!(
            !same(2) && !same(3),
            "a changed row (even only its counters) is not"
        );
        assert_eq!(next.get(3).map(|r| r.times_used), Some(7));

        let (gone, counts) =
            PatternSnapshot::from_rows_after(&next, vec![row(4, "d", 0.1, 0)]).expect("ok");
        assert_eq!(counts.removed, 3);
        assert_eq!(
            gone.content_hash(),
            PatternSnapshot::from_rows(vec![row(4, "d", 0.1, 0)])
                .expect("ok")
                .content_hash()
        );
        let err = PatternSnapshot::from_rows(vec![row(5, "e", 0.1, 0), row(5, "f", 0.1, 0)])
            .expect_err("an id read twice");
        assert!(err.contains("pattern id 5"), "{err}");
    }
}

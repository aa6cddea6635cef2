//! An immutable, indexed set of served patterns: what one generation of the pattern cache serves.
//!
//! A snapshot is built once (from a full load, or by applying a delta to the previous snapshot)
//! and never mutated afterwards, so readers holding one never see a torn state. It owns duplicate
//! resolution: several rows may share a normalized text, and the lookup always answers with the
//! best of them (highest accuracy, then times_used, then newest, then highest id), never the worst.
//! It does no I/O and knows nothing about generations or the store.
//!
//! Rows are kept as packed records (see [`record`]): the bulk of them in one arena per base,
//! indexed by 4-byte offsets.
//!
//! A served row whose metadata is over the snapshot's served limit
//! ([`PatternSnapshot::with_max_metadata`], `--max-served-metadata-bytes`) is quarantined like
//! one that breaks an invariant: whatever a match returns is bounded by that limit.

mod record;
pub mod scheme;
#[cfg(test)]
mod tests;

use std::{cmp::Ordering, collections::BTreeMap, fmt, hash::BuildHasher, sync::Arc};

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use record::{
    Categories, Interner, check_record, drop_oversize, id_of, key_of, rank, same_version,
};
pub use record::{
    DEFAULT_MAX_SERVED_METADATA_BYTES, MAX_METADATA_BYTES, Records, Row, content_hash,
};

use crate::model::PatternRow;

/// Rows a delta may change before the next delta folds them into a new base. The overlay is
/// copied by every delta, the base is rebuilt by a fold: this bounds the first (a copy of at
/// most this many entries, well under a millisecond) while folding rarely (at 1 M rows, once
/// every 16 k changed rows). See BENCHMARKS.md for the measured alternatives.
const FOLD_AT: usize = 16 * 1024;

/// A full load that changes at most this many rows of the snapshot it replaces is applied to it
/// like a delta (sharing its base) instead of indexing a new base: a periodic full resync of an
/// unchanged table then costs the read and a hash per row, and retained generations share one
/// arena. Above it, indexing the new arena is cheaper than growing the overlay.
const FULL_AS_DELTA_AT: usize = FOLD_AT / 4;

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

/// A record owned on its own (overlay rows).
type Rec = Arc<[u8]>;

/// A normalized text and every row now served with it, best first.
type TextRows = (Box<[u8]>, Arc<[Rec]>);

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
    /// Category names of every record in `base` and `overlay`.
    cats: Categories,
    /// Number of served rows.
    len: usize,
    /// Order-independent hash of the served content: the wrapping sum of every served row's
    /// hash, so a delta updates it in O(changed rows) and replicas serving the same rows agree.
    hash: u64,
    /// Rows the store says to serve that break an invariant, by id, with the reason: not served
    /// (see [`PatternSnapshot::quarantined`]). Shared until a load changes it.
    quarantine: Arc<BTreeMap<i64, String>>,
    /// Longest metadata text served; a row with more is quarantined. Every snapshot built from
    /// this one keeps it (see [`PatternSnapshot::with_max_metadata`]).
    max_metadata: MetadataLimit,
}

/// The served-metadata limit, in bytes of JSON text; [`MAX_METADATA_BYTES`] unless set.
#[derive(Clone, Copy, Debug)]
struct MetadataLimit(usize);

impl Default for MetadataLimit {
    fn default() -> Self {
        MetadataLimit(MAX_METADATA_BYTES)
    }
}

/// The bulk of the served rows: one arena of records, indexed by normalized text and by id.
/// The tables hold 4-byte offsets into the arena; keys are read from the records.
struct Base {
    /// Seed of the text and id hashes (random per process: texts come from clients).
    seed: u64,
    /// The records, back to back.
    arena: Box<[u8]>,
    /// Every served text → the offset of its best row.
    by_norm: HashTable<u32>,
    /// Texts served by several rows → all their offsets, best first. Rare: read only when a
    /// `min_confidence` rules out the best row.
    dups: HashTable<Box<[u32]>>,
    /// Every served row, by id.
    by_id: HashTable<u32>,
}

/// What changed since the base was built. Hashed with the base's seed, so a lookup hashes its
/// text once for both layers.
#[derive(Clone, Default)]
struct Overlay {
    /// Texts whose rows changed: every row now served with that text, best first (empty: none).
    by_norm: HashTable<TextRows>,
    /// Ids that changed: the row now served, or `None` when no longer served.
    by_id: HashTable<(i64, Option<Rec>)>,
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

fn text_hash(seed: u64, text: &[u8]) -> u64 {
    xxh3_64_with_seed(text, seed)
}

fn id_hash(seed: u64, id: i64) -> u64 {
    xxh3_64_with_seed(&id.to_le_bytes(), seed)
}

impl Default for Base {
    fn default() -> Base {
        Base {
            seed: random_seed(),
            arena: Box::default(),
            by_norm: HashTable::new(),
            dups: HashTable::new(),
            by_id: HashTable::new(),
        }
    }
}

impl Base {
    fn rec(&self, at: u32) -> &[u8] {
        &self.arena[at as usize..]
    }

    /// A base over `arena` with its id index and its text index (see [`index_texts`]).
    fn new(seed: u64, arena: Vec<u8>, by_id: HashTable<u32>, texts: Texts) -> Base {
        let (by_norm, dups) = texts;
        Base {
            seed,
            arena: arena.into_boxed_slice(),
            by_norm,
            dups,
            by_id,
        }
    }
}

/// A base's text index: every text → its best row, and the texts served by several rows.
type Texts = (HashTable<u32>, HashTable<Box<[u32]>>);

/// Indexes the records of `arena` (served, valid, distinct ids) by normalized text, ranking
/// each text's rows best first.
fn index_texts(seed: u64, arena: &[u8], len: usize, cats: &[Arc<str>]) -> Texts {
    let rec = |at: u32| &arena[at as usize..];
    let row = |at: u32| Row::new(rec(at), cats);
    let mut by_norm: HashTable<u32> = HashTable::with_capacity(len);
    // Texts met more than once: every offset, collected here and sorted at the end.
    let mut groups: HashTable<Vec<u32>> = HashTable::new();
    for at in Records::offsets(arena) {
        let key = key_of(rec(at));
        let h = text_hash(seed, key);
        match by_norm.find_mut(h, |&o| key_of(rec(o)) == key) {
            None => {
                by_norm.insert_unique(h, at, |&o| text_hash(seed, key_of(rec(o))));
            }
            Some(best) => {
                let first = *best;
                if rank(&row(at), &row(first)) == Ordering::Less {
                    *best = at;
                }
                match groups.find_mut(h, |g| key_of(rec(g[0])) == key) {
                    Some(g) => g.push(at),
                    None => {
                        groups.insert_unique(h, vec![first, at], |g| {
                            text_hash(seed, key_of(rec(g[0])))
                        });
                    }
                }
            }
        }
    }
    let mut dups = HashTable::with_capacity(groups.len());
    for mut g in groups {
        g.sort_by(|&a, &b| rank(&row(a), &row(b)));
        let h = text_hash(seed, key_of(rec(g[0])));
        dups.insert_unique(h, g.into_boxed_slice(), |g| {
            text_hash(seed, key_of(rec(g[0])))
        });
    }
    (by_norm, dups)
}

/// Loads with more rows than this index on two threads (the blocking-pool thread building the
/// snapshot and one scoped thread): the id index and the text index (or the comparison with the
/// previous generation) are independent, and on a 2-core machine a large load's index building
/// otherwise leaves a core idle. Never a request thread: both are outside the runtime's workers.
const PARALLEL_ABOVE: usize = 50_000;

/// Runs `a` and `b`, on two threads when `parallel`.
fn both<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> Result<(A, B), String> {
    if !parallel {
        return Ok((a(), b()));
    }
    std::thread::scope(|s| {
        let a = s.spawn(a);
        let b = b();
        a.join()
            .map(|a| (a, b))
            .map_err(|_| "building the snapshot's id index panicked".to_owned())
    })
}

/// How a full load's records differ from the generation they replace.
struct Compared {
    /// Added and updated rows (removed ones are counted later).
    counts: ChangeCounts,
    /// The content hash with added and updated rows accounted for.
    hash: u64,
    /// Offsets of the records that differ from what `prev` serves (new, updated, or only
    /// their counters or revision).
    changed: Vec<u32>,
    /// Records whose id `prev` serves.
    seen: usize,
}

/// Compares each record of `arena` with the row `prev` serves with its id.
fn compare(prev: &PatternSnapshot, arena: &[u8], cats: &[Arc<str>]) -> Compared {
    let mut c = Compared {
        counts: ChangeCounts::default(),
        hash: prev.hash,
        changed: Vec::new(),
        seen: 0,
    };
    for at in Records::offsets(arena) {
        let new = Row::new(&arena[at as usize..], cats);
        match prev.get(new.id()) {
            Some(old) => {
                c.seen += 1;
                if same_version(&old, &new) {
                    continue;
                }
                if old.content_hash() != new.content_hash() {
                    c.counts.updated += 1;
                }
                c.hash = c
                    .hash
                    .wrapping_sub(old.content_hash())
                    .wrapping_add(new.content_hash());
            }
            None => {
                c.counts.added += 1;
                c.hash = c.hash.wrapping_add(new.content_hash());
            }
        }
        c.changed.push(at);
    }
    c
}

/// Indexes the records of `arena` by id; an id read twice rejects the load.
fn index_ids(seed: u64, arena: &[u8], len: usize) -> Result<HashTable<u32>, String> {
    let mut by_id: HashTable<u32> = HashTable::with_capacity(len);
    for at in Records::offsets(arena) {
        let id = id_of(&arena[at as usize..]);
        let h = id_hash(seed, id);
        if by_id
            .find(h, |&o| id_of(&arena[o as usize..]) == id)
            .is_some()
        {
            return Err(format!("pattern id {id}: read twice in one load"));
        }
        by_id.insert_unique(h, at, |&o| id_hash(seed, id_of(&arena[o as usize..])));
    }
    Ok(by_id)
}

impl PatternSnapshot {
    /// A snapshot that is all `base`, with no overlay.
    fn based(base: Base, cats: Categories, len: usize, hash: u64) -> PatternSnapshot {
        PatternSnapshot {
            base: Arc::new(base),
            overlay: Overlay::default(),
            cats,
            len,
            hash,
            quarantine: Arc::default(),
            max_metadata: MetadataLimit::default(),
        }
    }

    /// An empty snapshot whose loads (and every snapshot built from it) serve no row with more
    /// than `bytes` of metadata text (at most [`MAX_METADATA_BYTES`]): such a row is
    /// quarantined with the sizes in its reason. Bounding what one match can return bounds
    /// what a read caller can make the server build.
    pub fn with_max_metadata(bytes: usize) -> Self {
        PatternSnapshot {
            max_metadata: MetadataLimit(bytes.min(MAX_METADATA_BYTES)),
            ..PatternSnapshot::default()
        }
    }

    /// The served-metadata limit (see [`Self::with_max_metadata`]).
    pub fn max_metadata(&self) -> usize {
        self.max_metadata.0
    }

    fn row<'a>(&'a self, rec: &'a [u8]) -> Row<'a> {
        Row::new(rec, &self.cats)
    }

    /// Builds a snapshot from a full load. Rows that are not served are skipped; a served row that
    /// breaks an invariant is quarantined (see [`Self::quarantined`]).
    pub fn from_rows(rows: Vec<PatternRow>) -> Result<Self, String> {
        Ok(Self::from_rows_after(&PatternSnapshot::default(), rows)?.0)
    }

    /// [`Self::from_records_after`] for rows already decoded as [`PatternRow`]s.
    pub fn from_rows_after(
        prev: &PatternSnapshot,
        rows: Vec<PatternRow>,
    ) -> Result<(Self, ChangeCounts), String> {
        let mut records = Records::new();
        for row in &rows {
            records.push(row.as_ref());
        }
        Self::from_records_after(prev, records)
    }

    /// The snapshot of a full load that replaces `prev`, plus what it changes (as [`Self::diff`]
    /// counts it). Each row is compared with `prev`'s by content hash, counters and revision:
    /// when nothing differs the result shares everything with `prev`; when few rows differ they
    /// are applied to `prev` like a delta (sharing its base); otherwise the load's records
    /// become a new base.
    pub fn from_records_after(
        prev: &PatternSnapshot,
        records: Records,
    ) -> Result<(Self, ChangeCounts), String> {
        Self::full_after(prev, records, FULL_AS_DELTA_AT)
    }

    /// [`Self::from_records_after`], applying at most `as_delta_at` changed rows like a delta.
    fn full_after(
        prev: &PatternSnapshot,
        records: Records,
        as_delta_at: usize,
    ) -> Result<(Self, ChangeCounts), String> {
        if let Some(e) = records.invalid {
            return Err(e);
        }
        let seed = prev.base.seed;
        let Records {
            arena,
            interner,
            len,
            mut quarantined,
            longest_metadata,
            ..
        } = records;
        let limit = prev.max_metadata;
        let (arena, len) = drop_oversize(arena, len, longest_metadata, limit.0, &mut quarantined);
        let quarantine: Arc<BTreeMap<i64, String>> = Arc::new(quarantined.into_iter().collect());
        let cats = &interner.names;
        let parallel = len > PARALLEL_ABOVE;
        if prev.is_empty() {
            // Everything is new: index ids and texts side by side.
            let (by_id, texts) = both(
                parallel,
                || index_ids(seed, &arena, len),
                || index_texts(seed, &arena, len, cats),
            )?;
            let by_id = by_id?;
            let hash = Records::offsets(&arena)
                .map(|at| Row::new(&arena[at as usize..], cats).content_hash())
                .fold(0u64, u64::wrapping_add);
            let counts = ChangeCounts {
                added: len as u32,
                ..ChangeCounts::default()
            };
            let base = Base::new(seed, arena, by_id, texts);
            let mut next = Self::based(base, Arc::new(interner.names), len, hash);
            next.quarantine = quarantine;
            next.max_metadata = limit;
            return Ok((next, counts));
        }
        let (by_id, compared) = both(
            parallel,
            || index_ids(seed, &arena, len),
            || compare(prev, &arena, cats),
        )?;
        let by_id = by_id?;
        let Compared {
            mut counts,
            mut hash,
            changed,
            seen,
        } = compared;
        let mut removed = Vec::new();
        if seen < prev.len {
            for old in prev.rows() {
                let id = old.id();
                if by_id
                    .find(id_hash(seed, id), |&o| id_of(&arena[o as usize..]) == id)
                    .is_none()
                {
                    removed.push(id);
                    hash = hash.wrapping_sub(old.content_hash());
                }
            }
        }
        counts.removed = removed.len() as u32;
        if changed.len() + removed.len() <= as_delta_at
            && prev.overlay.by_id.len() + changed.len() + removed.len() <= FOLD_AT
        {
            let mut next = prev.clone();
            let mut names = Interner::from_names(&prev.cats);
            for id in removed {
                next.remove(id);
            }
            for at in changed {
                let new = Row::new(&arena[at as usize..], cats);
                let rec = own_record(&new, &mut names);
                next.remove(new.id());
                next.insert(rec);
            }
            next.cats = Arc::new(names.names);
            debug_assert_eq!(next.hash, hash);
            next.quarantine = quarantine;
            return Ok((next, counts));
        }
        let texts = index_texts(seed, &arena, len, cats);
        let base = Base::new(seed, arena, by_id, texts);
        let mut next = Self::based(base, Arc::new(interner.names), len, hash);
        next.quarantine = quarantine;
        next.max_metadata = limit;
        Ok((next, counts))
    }

    /// Returns a new snapshot with `changed` rows applied (served ones upserted, others removed)
    /// and `deleted` ids removed, plus what changed. Every changed row is applied whatever its
    /// revision: the engine serializes loads, so a row read now is at least as new as the one
    /// served, and revisions (PostgreSQL transaction ids) are not in commit order anyway. `self`
    /// is left as it was; the new snapshot shares its base.
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
        let mut next = self.clone();
        let mut names = Interner::from_names(&self.cats);
        let mut counts = ChangeCounts::default();
        for id in deleted {
            if next.remove(*id).is_some() {
                counts.removed += 1;
            }
            next.release(*id);
        }
        for row in &changed {
            let row = row.as_ref();
            // A served row that breaks an invariant is quarantined; the rest of the delta is
            // applied. Any other version of the row (valid, or no longer served) releases it.
            match row.served.then(|| check_record(&row, self.max_metadata.0)) {
                Some(Err(reason)) => {
                    if next.remove(row.id).is_some() {
                        counts.removed += 1;
                    }
                    if next.quarantine.get(&row.id) != Some(&reason) {
                        Arc::make_mut(&mut next.quarantine).insert(row.id, reason);
                    }
                    continue;
                }
                _ => next.release(row.id),
            }
            let cur = next.get(row.id).map(|r| r.content_hash());
            match cur {
                Some(_) if !row.served => {
                    next.remove(row.id);
                    counts.removed += 1;
                }
                // Hit counters are not content: such a row keeps the record it is served with.
                Some(h) if h == content_hash(&row) => continue,
                Some(_) => {
                    next.remove(row.id);
                    next.insert(encode_owned(&row, &mut names));
                    counts.updated += 1;
                }
                None if row.served => {
                    next.insert(encode_owned(&row, &mut names));
                    counts.added += 1;
                }
                None => {}
            }
        }
        if names.names.len() != next.cats.len() {
            next.cats = Arc::new(names.names);
        }
        if next.overlay.by_id.len() > fold_at {
            next = next.folded();
        }
        Ok((next, counts))
    }

    /// Takes `id` out of the quarantine, if it is there.
    fn release(&mut self, id: i64) {
        if self.quarantine.contains_key(&id) {
            Arc::make_mut(&mut self.quarantine).remove(&id);
        }
    }

    /// Rows the store says to serve (`enabled AND status = 'approved'`) that break an
    /// invariant, by id, with the reason. They are not served, rather than kept at a last good
    /// version: what a replica serves must not depend on its history (a replica that starts now
    /// has no older version to keep, and the fleet compares content hashes), and an older version
    /// is content the store no longer holds. A load that reads the row again valid, disabled or
    /// deleted takes it out.
    pub fn quarantined(&self) -> &BTreeMap<i64, String> {
        &self.quarantine
    }

    /// The same content with the overlay folded into a new base.
    fn folded(&self) -> PatternSnapshot {
        let seed = self.base.seed;
        let mut arena = Vec::with_capacity(self.base.arena.len());
        for row in self.rows() {
            arena.extend_from_slice(row.bytes());
        }
        // Ids are distinct in a snapshot: indexing cannot fail.
        let by_id = index_ids(seed, &arena, self.len).unwrap_or_default();
        let texts = index_texts(seed, &arena, self.len, &self.cats);
        let base = Base::new(seed, arena, by_id, texts);
        let mut next = Self::based(base, Arc::clone(&self.cats), self.len, self.hash);
        next.quarantine = Arc::clone(&self.quarantine);
        next.max_metadata = self.max_metadata;
        next
    }

    /// What replacing `self` with `next` changes (used for full loads).
    pub fn diff(&self, next: &PatternSnapshot) -> ChangeCounts {
        let mut counts = ChangeCounts::default();
        for row in next.rows() {
            match self.get(row.id()) {
                None => counts.added += 1,
                Some(old) if old.content_hash() != row.content_hash() => counts.updated += 1,
                Some(_) => {}
            }
        }
        counts.removed = self.rows().filter(|r| next.get(r.id()).is_none()).count() as u32;
        counts
    }

    /// The best served row for a normalized text, optionally only among rows with at least
    /// `min_confidence`.
    pub fn lookup(&self, normalized: &str, min_confidence: Option<f64>) -> Option<Row<'_>> {
        let key = normalized.as_bytes();
        let base = &*self.base;
        let h = text_hash(base.seed, key);
        if !self.overlay.by_norm.is_empty()
            && let Some((_, rows)) = self.overlay.by_norm.find(h, |(text, _)| &**text == key)
        {
            return rows
                .iter()
                .map(|r| self.row(r))
                .find(|r| min_confidence.is_none_or(|min| r.confidence() >= min));
        }
        let best = self.row(base.rec(*base.by_norm.find(h, |&o| key_of(base.rec(o)) == key)?));
        match min_confidence {
            None => Some(best),
            Some(min) if best.confidence() >= min => Some(best),
            Some(min) => base
                .dups
                .find(h, |g| key_of(base.rec(g[0])) == key)?
                .iter()
                .map(|&o| self.row(base.rec(o)))
                .find(|r| r.confidence() >= min),
        }
    }

    /// Every served row with this normalized text, best first, as owned records.
    fn rows_of(&self, key: &[u8]) -> Vec<Rec> {
        let base = &*self.base;
        let h = text_hash(base.seed, key);
        if let Some((_, rows)) = self.overlay.by_norm.find(h, |(text, _)| &**text == key) {
            return rows.to_vec();
        }
        let own = |o: u32| Rec::from(self.row(base.rec(o)).bytes());
        if let Some(all) = base.dups.find(h, |g| key_of(base.rec(g[0])) == key) {
            return all.iter().map(|&o| own(o)).collect();
        }
        base.by_norm
            .find(h, |&o| key_of(base.rec(o)) == key)
            .map(|&o| vec![own(o)])
            .unwrap_or_default()
    }

    /// A served row by id.
    pub fn get(&self, id: i64) -> Option<Row<'_>> {
        let base = &*self.base;
        let h = id_hash(base.seed, id);
        if !self.overlay.by_id.is_empty()
            && let Some((_, row)) = self.overlay.by_id.find(h, |(i, _)| *i == id)
        {
            return row.as_ref().map(|r| self.row(r));
        }
        base.by_id
            .find(h, |&o| id_of(base.rec(o)) == id)
            .map(|&o| self.row(base.rec(o)))
    }

    /// Whether `id` is the row answering lookups of its normalized text.
    pub fn is_winner(&self, id: i64) -> bool {
        self.get(id).is_some_and(|row| {
            self.lookup(row.normalized_pattern(), None)
                .is_some_and(|best| best.id() == id)
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

    /// Bytes held by this snapshot's rows and indexes (its base may be shared with others).
    pub fn heap_bytes(&self) -> usize {
        let base = &*self.base;
        base.arena.len()
            + (base.by_norm.capacity() + base.by_id.capacity()) * (4 + 1)
            + base.dups.iter().map(|g| g.len() * 4 + 17).sum::<usize>()
            + self
                .overlay
                .by_id
                .iter()
                .map(|(_, r)| 48 + r.as_ref().map_or(0, |r| r.len()))
                .sum::<usize>()
    }

    /// Every served row, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        let base = &*self.base;
        let seed = base.seed;
        let overlay = &self.overlay.by_id;
        Records::offsets(&base.arena)
            .map(move |o| self.row(base.rec(o)))
            .filter(move |r| {
                overlay.is_empty()
                    || overlay
                        .find(id_hash(seed, r.id()), |(i, _)| *i == r.id())
                        .is_none()
            })
            .chain(
                overlay
                    .iter()
                    .filter_map(move |(_, row)| row.as_ref().map(|r| self.row(r))),
            )
    }

    /// Adds a served row (its id not served now).
    fn insert(&mut self, rec: Rec) {
        let (id, hash) = {
            let row = self.row(&rec);
            (row.id(), row.content_hash())
        };
        self.hash = self.hash.wrapping_add(hash);
        self.len += 1;
        let key: Box<[u8]> = key_of(&rec).into();
        let mut list = self.rows_of(&key);
        let at = {
            let new = self.row(&rec);
            list.partition_point(|r| rank(&self.row(r), &new) == Ordering::Less)
        };
        list.insert(at, Arc::clone(&rec));
        self.set_text(key, list);
        self.set_id(id, Some(rec));
    }

    /// Removes a served row; returns its id, or `None` if `id` is not served.
    fn remove(&mut self, id: i64) -> Option<i64> {
        let (key, hash) = {
            let row = self.get(id)?;
            (Box::<[u8]>::from(key_of(row.bytes())), row.content_hash())
        };
        self.hash = self.hash.wrapping_sub(hash);
        self.len -= 1;
        let mut list = self.rows_of(&key);
        list.retain(|r| id_of(r) != id);
        self.set_text(key, list);
        self.set_id(id, None);
        Some(id)
    }

    /// Records in the overlay the rows now served with `text`.
    fn set_text(&mut self, text: Box<[u8]>, list: Vec<Rec>) {
        let seed = self.base.seed;
        let h = text_hash(seed, &text);
        let table = &mut self.overlay.by_norm;
        match table.find_mut(h, |(t, _)| *t == text) {
            Some(entry) => entry.1 = list.into(),
            None => {
                table.insert_unique(h, (text, list.into()), |(t, _)| text_hash(seed, t));
            }
        }
    }

    /// Records in the overlay the row now served with `id` (`None`: none).
    fn set_id(&mut self, id: i64, row: Option<Rec>) {
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

/// A copy of `row`'s record whose category indexes `names` (to become a snapshot's).
fn own_record(row: &Row<'_>, names: &mut Interner) -> Rec {
    let category = names.intern(row.category());
    let mut bytes = row.bytes().to_vec();
    bytes[56..60].copy_from_slice(&category.to_le_bytes());
    bytes.into()
}

/// The record of a served, valid row, owned, its category interned in `names`.
fn encode_owned(row: &crate::model::RowRef<'_>, names: &mut Interner) -> Rec {
    let category = names.intern(row.category);
    let mut bytes = Vec::with_capacity(record::HEADER + 128);
    record::encode(row, category, &mut bytes);
    bytes.into()
}

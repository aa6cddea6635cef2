//! How a served row is kept in memory: one packed byte record per row, with no heap allocation
//! of its own.
//!
//! A full load appends every row to one [`Records`] arena as it is decoded; the snapshot then
//! indexes the arena by offset (4 bytes a slot). Compared with a heap `PatternRow` per row
//! (a 240-byte struct, five `String`s and a `serde_json::Value` tree), this removes the
//! per-row allocations and frees from loading, building and dropping a generation, and keeps
//! the bytes of a row together, so a lookup hit reads one place (BENCHMARKS.md has the figures).
//!
//! Only what serving needs is kept: what a match returns, what ranks duplicates, the revision
//! (an older delta never replaces newer content) and the row's content hash. Everything else
//! (`created_by`, `times_correct`, timestamps other than `created_at`) is read from the store by
//! the admin RPCs; it still counts in the content hash.
//!
//! Layout (little-endian, packed; `HEADER` bytes, then the three texts):
//!
//! | offset | field |
//! |---|---|
//! | 0 | id `i64` |
//! | 8 | revision `i64` |
//! | 16 | content hash `u64` |
//! | 24 | confidence `f64` |
//! | 32 | accuracy `f64` |
//! | 40 | times_used `i64` |
//! | 48 | created_at, µs since the epoch `i64` |
//! | 56 | category, an index into the snapshot's category table `u32` |
//! | 60 | metadata length `u32` (0: none; a JSON object's text is never empty) |
//! | 64 | normalized_pattern length `u16` |
//! | 66 | pattern length `u16` |
//! | 68 | normalized_pattern, pattern, metadata |

use std::{cmp::Ordering, sync::Arc};

use hashbrown::HashTable;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::model::RowRef;

/// Bytes before the texts.
pub(super) const HEADER: usize = 68;

/// Where the category index is.
const CATEGORY_AT: usize = 56;

/// Category names, indexed by the `u32` a record holds. Shared by every snapshot derived from
/// the one that created it; a delta bringing a new category appends to a copy.
pub(super) type Categories = Arc<Vec<Arc<str>>>;

fn u64_at(rec: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&rec[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(rec: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&rec[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u16_at(rec: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([rec[at], rec[at + 1]]))
}

/// Length of the record starting at `rec[0]` (which may continue with further records).
pub(super) fn record_len(rec: &[u8]) -> usize {
    HEADER + u16_at(rec, 64) + u16_at(rec, 66) + u32_at(rec, 60) as usize
}

/// The normalized text of a record, as bytes (what the text index compares).
pub(super) fn key_of(rec: &[u8]) -> &[u8] {
    &rec[HEADER..HEADER + u16_at(rec, 64)]
}

/// The id of a record.
pub(super) fn id_of(rec: &[u8]) -> i64 {
    u64_at(rec, 0) as i64
}

/// Hash of a row's served content: every column that `same content` means, so two versions of
/// a row that differ only in hit counters or bookkeeping (`times_used`, `last_used_at`,
/// `updated_at`, `revision`) hash the same. Metadata is hashed as the store's text.
pub fn content_hash(row: &RowRef<'_>) -> u64 {
    let mut h = Xxh3::new();
    h.update(&row.id.to_le_bytes());
    for s in [
        row.pattern,
        row.normalized_pattern,
        row.category,
        row.created_by,
    ] {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    h.update(&row.confidence.to_bits().to_le_bytes());
    h.update(&row.accuracy.to_bits().to_le_bytes());
    h.update(&row.times_correct.to_le_bytes());
    if let Some(m) = row.metadata {
        h.update(m.as_bytes());
    }
    h.digest()
}

/// Appends the record of a served, valid `row` (category already interned as `category`).
/// Texts longer than a record can say are refused by the row invariants before this.
pub(super) fn encode(row: &RowRef<'_>, category: u32, out: &mut Vec<u8>) {
    let meta = row.metadata.unwrap_or("");
    out.extend_from_slice(&row.id.to_le_bytes());
    out.extend_from_slice(&row.revision.to_le_bytes());
    out.extend_from_slice(&content_hash(row).to_le_bytes());
    out.extend_from_slice(&row.confidence.to_le_bytes());
    out.extend_from_slice(&row.accuracy.to_le_bytes());
    out.extend_from_slice(&row.times_used.to_le_bytes());
    out.extend_from_slice(&row.created_at_micros.to_le_bytes());
    out.extend_from_slice(&category.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&(row.normalized_pattern.len() as u16).to_le_bytes());
    out.extend_from_slice(&(row.pattern.len() as u16).to_le_bytes());
    out.extend_from_slice(row.normalized_pattern.as_bytes());
    out.extend_from_slice(row.pattern.as_bytes());
    out.extend_from_slice(meta.as_bytes());
}

/// Longest text a record holds (the invariants allow 200 characters, at most 800 bytes).
const MAX_TEXT_BYTES: usize = u16::MAX as usize;
/// Longest metadata text a record holds, and the highest served-metadata limit an operator may
/// set (`--max-served-metadata-bytes`). Far above what LearnPattern accepts (16 KiB): a legacy
/// row with a larger document can still be served when the operator raises the limit.
pub const MAX_METADATA_BYTES: usize = 16 * 1024 * 1024;

/// Default of `--max-served-metadata-bytes`: 1 MiB, 64 times what LearnPattern accepts
/// (16 KiB), so legacy rows with large documents are still served, while one match (and so one
/// `MatchPattern` answer) stays far under the default response limit.
pub const DEFAULT_MAX_SERVED_METADATA_BYTES: usize = 1024 * 1024;

/// One served row, read in place from its record.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    rec: &'a [u8],
    cats: &'a [Arc<str>],
}

impl<'a> Row<'a> {
    #[inline]
    pub(super) fn new(rec: &'a [u8], cats: &'a [Arc<str>]) -> Self {
        Row {
            rec: &rec[..record_len(rec)],
            cats,
        }
    }

    /// The record bytes.
    pub(super) fn bytes(&self) -> &'a [u8] {
        self.rec
    }

    /// Primary key.
    pub fn id(&self) -> i64 {
        id_of(self.rec)
    }

    /// Store revision of the row's last change.
    pub fn revision(&self) -> i64 {
        u64_at(self.rec, 8) as i64
    }

    /// Hash of the served content (see [`content_hash`]).
    pub fn content_hash(&self) -> u64 {
        u64_at(self.rec, 16)
    }

    /// Classification confidence.
    pub fn confidence(&self) -> f64 {
        f64::from_bits(u64_at(self.rec, 24))
    }

    /// Recorded accuracy.
    pub fn accuracy(&self) -> f64 {
        f64::from_bits(u64_at(self.rec, 32))
    }

    /// Times matched, as of the load that read the row.
    pub fn times_used(&self) -> i64 {
        u64_at(self.rec, 40) as i64
    }

    /// Creation time, µs since the epoch.
    pub fn created_at_micros(&self) -> i64 {
        u64_at(self.rec, 48) as i64
    }

    pub(super) fn category_index(&self) -> u32 {
        u32_at(self.rec, CATEGORY_AT)
    }

    /// Category.
    pub fn category(&self) -> &'a str {
        self.cats
            .get(self.category_index() as usize)
            .map_or("", |c| c)
    }

    fn text(&self, from: usize, len: usize) -> &'a str {
        // Written from `&str`s by `encode`: always UTF-8.
        std::str::from_utf8(&self.rec[from..from + len]).unwrap_or_default()
    }

    /// The normalized text (the lookup key).
    pub fn normalized_pattern(&self) -> &'a str {
        self.text(HEADER, u16_at(self.rec, 64))
    }

    /// The raw query text the pattern was learned from.
    pub fn pattern(&self) -> &'a str {
        self.text(HEADER + u16_at(self.rec, 64), u16_at(self.rec, 66))
    }

    /// The metadata JSON object's text, if any.
    pub fn metadata(&self) -> Option<&'a str> {
        let len = u32_at(self.rec, 60) as usize;
        (len > 0).then(|| self.text(HEADER + u16_at(self.rec, 64) + u16_at(self.rec, 66), len))
    }
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("id", &self.id())
            .field("normalized_pattern", &self.normalized_pattern())
            .field("category", &self.category())
            .field("revision", &self.revision())
            .finish()
    }
}

/// Best first: highest accuracy, then most used, then newest, then highest id (deterministic).
pub(super) fn rank(a: &Row<'_>, b: &Row<'_>) -> Ordering {
    b.accuracy()
        .total_cmp(&a.accuracy())
        .then(b.times_used().cmp(&a.times_used()))
        .then(b.created_at_micros().cmp(&a.created_at_micros()))
        .then(b.id().cmp(&a.id()))
}

/// Whether two records are the same version of a row: same content and the same ranking
/// counters and revision (so one can stand for the other in a new generation).
#[inline]
pub(super) fn same_version(a: &Row<'_>, b: &Row<'_>) -> bool {
    a.id() == b.id()
        && a.content_hash() == b.content_hash()
        && a.revision() == b.revision()
        && a.times_used() == b.times_used()
        && a.created_at_micros() == b.created_at_micros()
}

/// A category table being built: names in first-seen order, and an index to find them.
#[derive(Default)]
pub(super) struct Interner {
    pub(super) names: Vec<Arc<str>>,
    index: HashTable<u32>,
}

impl Interner {
    /// An interner that starts with `names` (their indexes kept).
    pub(super) fn from_names(names: &[Arc<str>]) -> Self {
        let mut me = Interner::default();
        for n in names {
            me.intern(n);
        }
        me
    }

    /// The index of `name`, added if new.
    pub(super) fn intern(&mut self, name: &str) -> u32 {
        let h = xxh3_64(name.as_bytes());
        let names = &self.names;
        if let Some(&i) = self.index.find(h, |&i| &*names[i as usize] == name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(Arc::from(name));
        let names = &self.names;
        self.index
            .insert_unique(h, i, |&i| xxh3_64(names[i as usize].as_bytes()));
        i
    }
}

/// Why a served row cannot be served: it breaks an invariant, a text is longer than a record
/// holds, or its metadata is over `max_metadata` bytes (the served limit).
pub(crate) fn check_record(row: &RowRef<'_>, max_metadata: usize) -> Result<(), String> {
    row.check_invariants()?;
    if row.pattern.len() > MAX_TEXT_BYTES || row.normalized_pattern.len() > MAX_TEXT_BYTES {
        return Err(format!("pattern id {}: a text is too long", row.id));
    }
    match row.metadata.map(str::len) {
        Some(len) if len > max_metadata.min(MAX_METADATA_BYTES) => {
            Err(oversize(row.id, len, max_metadata.min(MAX_METADATA_BYTES)))
        }
        _ => Ok(()),
    }
}

/// The quarantine reason of a row whose metadata is over the served limit.
fn oversize(id: i64, len: usize, max: usize) -> String {
    format!(
        "pattern id {id}: metadata is {len} bytes, over the served limit of {max} bytes \
         (--max-served-metadata-bytes); shrink it in the store, or raise the limit"
    )
}

/// Length of a record's metadata text.
fn metadata_len(rec: &[u8]) -> usize {
    u32_at(rec, 60) as usize
}

/// `arena` (`len` records, whose longest metadata is `longest` bytes) without the records whose
/// metadata is over `max` bytes, each added to `quarantined` with the reason. Without any (the
/// usual case) the arena is returned as it is, untouched.
pub(super) fn drop_oversize(
    arena: Vec<u8>,
    len: usize,
    longest: usize,
    max: usize,
    quarantined: &mut Vec<(i64, String)>,
) -> (Vec<u8>, usize) {
    // The longest metadata was tracked as the records were packed: no pass when none is over,
    // and at least one record goes when one is.
    if longest <= max {
        return (arena, len);
    }
    let over = |at: u32| metadata_len(&arena[at as usize..]) > max;
    let mut kept = Vec::with_capacity(arena.len());
    let mut n = 0;
    for at in Records::offsets(&arena) {
        let rec = Row::new(&arena[at as usize..], &[]).bytes();
        if over(at) {
            quarantined.push((id_of(rec), oversize(id_of(rec), metadata_len(rec), max)));
        } else {
            kept.extend_from_slice(rec);
            n += 1;
        }
    }
    debug_assert!(n < len);
    (kept, n)
}

/// The served rows of a full load, packed as records while the store decodes them.
///
/// The store pushes every row it reads; rows that are not served are skipped here, and a
/// served row that breaks an invariant is quarantined: left out, with its id and the reason
/// (see [`super::PatternSnapshot::quarantined`]). Only a load too large for one snapshot is
/// refused as a whole (`invalid`).
#[derive(Default)]
pub struct Records {
    pub(super) arena: Vec<u8>,
    pub(super) interner: Interner,
    pub(super) len: usize,
    pub(super) invalid: Option<String>,
    /// Served rows left out for breaking an invariant: id and reason.
    pub(super) quarantined: Vec<(i64, String)>,
    /// Longest metadata text among the records, in bytes (lets `drop_oversize` skip its pass).
    pub(super) longest_metadata: usize,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("len", &self.len)
            .field("bytes", &self.arena.len())
            .finish()
    }
}

impl Records {
    /// An empty set.
    pub fn new() -> Self {
        Records::default()
    }

    /// Adds one row as read from the store.
    pub fn push(&mut self, row: RowRef<'_>) {
        if !row.served || self.invalid.is_some() {
            return;
        }
        // The served limit is applied when the snapshot is built (`drop_oversize`): the
        // store fills these records without knowing it.
        if let Err(reason) = check_record(&row, MAX_METADATA_BYTES) {
            self.quarantined.push((row.id, reason));
            return;
        }
        if self.arena.len() > u32::MAX as usize - HEADER - 2 * MAX_TEXT_BYTES {
            self.invalid = Some("more pattern data than one snapshot holds (4 GiB)".into());
            return;
        }
        let category = self.interner.intern(row.category);
        encode(&row, category, &mut self.arena);
        self.longest_metadata = self.longest_metadata.max(row.metadata.map_or(0, str::len));
        self.len += 1;
    }

    /// Appends the records of `other` (another part of the same load) after these; the first
    /// invalid row of either part is the load's reason.
    pub fn append(&mut self, other: Records) {
        if self.invalid.is_some() {
            return;
        }
        if let Some(e) = other.invalid {
            self.invalid = Some(e);
            return;
        }
        self.quarantined.extend(other.quarantined);
        self.longest_metadata = self.longest_metadata.max(other.longest_metadata);
        if self.arena.len() + other.arena.len() > u32::MAX as usize {
            self.invalid = Some("more pattern data than one snapshot holds (4 GiB)".into());
            return;
        }
        // Categories are numbered per part: renumber `other`'s into this table.
        let renumber: Vec<u32> = other
            .interner
            .names
            .iter()
            .map(|name| self.interner.intern(name))
            .collect();
        let start = self.arena.len();
        self.arena.extend_from_slice(&other.arena);
        let appended = &mut self.arena[start..];
        let mut at = 0;
        while at < appended.len() {
            let rec = &mut appended[at..];
            let len = record_len(rec);
            let new = renumber[u32_at(rec, CATEGORY_AT) as usize];
            rec[CATEGORY_AT..CATEGORY_AT + 4].copy_from_slice(&new.to_le_bytes());
            at += len;
        }
        self.len += other.len;
    }

    /// Served rows pushed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no served row was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the packed records.
    pub fn bytes(&self) -> usize {
        self.arena.len()
    }

    /// Offsets of the records, in push order.
    pub(super) fn offsets(arena: &[u8]) -> impl Iterator<Item = u32> + '_ {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            (at < arena.len()).then(|| {
                let o = at;
                at += record_len(&arena[at..]);
                o as u32
            })
        })
    }
}

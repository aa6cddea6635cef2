//! SQLite full loads read straight from the database file, on a blocking thread.
//!
//! sqlx runs SQLite on a worker thread and hands every row over a channel as an owned copy of
//! its values: about 3.9 µs a row, so a 1 M-row full load took ~4 s in the driver alone.
//! Stepping the same statement here and packing the borrowed column values straight into the
//! snapshot's records takes ~0.45 s for the same rows (BENCHMARKS.md). It is the same SQLite
//! library (`rusqlite` and sqlx link one `libsqlite3-sys`), the same SELECT and the same
//! checks; one read transaction gives the revision and the rows from one WAL snapshot.
//!
//! Anything this reader does not decode (a legacy row with a value of another type, a time in
//! a format it does not parse) is an error, and the caller reads the load again through the
//! pool, whose decoding (and error) is the reference.

use std::{path::Path, time::Duration};

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{Connection, OpenFlags, types::ValueRef};

use super::{
    Cursor, FullLoad,
    row_columns::Col::{self, *},
    sqlite_rows::{FULL_SQL, REVISION, checked_metadata},
};
use crate::{model::RowRef, snapshot::Records};

/// How long a read waits for a lock (it needs none in WAL mode but the first open may).
const BUSY: Duration = Duration::from_secs(5);

/// How long a load waits for the write lock that lines up its two readers' snapshots before it
/// reads on one thread instead.
const LINE_UP: Duration = Duration::from_millis(100);

/// Tables whose ids span more than this are read in two halves, on two threads.
const SPLIT_ABOVE_IDS: i64 = 50_000;

/// Reads every served row and the revision from the file at `path`: in one read transaction,
/// or, for a large table on a machine with more than one core, in two halves by id read on two
/// threads from one snapshot.
pub(super) fn load_full(path: &Path) -> Result<FullLoad, String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    load_full_with(
        path,
        if cores > 1 { SPLIT_ABOVE_IDS } else { i64::MAX },
        &|| (),
    )
}

/// [`load_full`] splitting above `split_above` ids; `lined_up` runs while the write lock holds
/// the snapshot still, between the two readers starting (a test commits a write there).
fn load_full_with(path: &Path, split_above: i64, lined_up: &dyn Fn()) -> Result<FullLoad, String> {
    let sql = failed(path);
    let mut first = open(path, BUSY).map_err(sql)?;
    let (low, high): (Option<i64>, Option<i64>) = first
        .query_row(
            "SELECT min(id), max(id) FROM auto_learned_patterns",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql)?;
    let split = match (low, high) {
        (Some(low), Some(high)) if high.saturating_sub(low) > split_above => {
            Some(low + (high - low) / 2)
        }
        _ => None,
    };
    if let Some(split) = split
        && let Some(load) = two_halves(path, &mut first, split, lined_up)?
    {
        return Ok(load);
    }
    let revision = begin(&mut first).map_err(sql)?;
    let rows = read(path, &mut first, FULL_SQL, None, &mut |_| Ok(()))?;
    first.execute_batch("COMMIT").map_err(sql)?;
    Ok(FullLoad {
        rows,
        cursor: Cursor::Sqlite { revision },
        revision,
        readers: 1,
    })
}

/// Reads ids up to `split` on `first` and the rest on a second connection and thread, both in
/// one snapshot: a third connection holds the write lock while the two read transactions
/// start, so no commit falls between them. `Ok(None)` when that lock is not free soon (a
/// writer is busy): the caller then reads on one thread.
fn two_halves(
    path: &Path,
    first: &mut Connection,
    split: i64,
    lined_up: &dyn Fn(),
) -> Result<Option<FullLoad>, String> {
    let sql = failed(path);
    let mut second = open(path, BUSY).map_err(sql)?;
    let lock = open(path, LINE_UP).map_err(sql)?;
    if lock.execute_batch("BEGIN IMMEDIATE").is_err() {
        return Ok(None);
    }
    let begun = begin(first).and_then(|revision| {
        lined_up();
        Ok((revision, begin(&mut second)?))
    });
    let released = lock.execute_batch("ROLLBACK");
    let (revision, other) = begun.map_err(sql)?;
    released.map_err(sql)?;
    if revision != other {
        return Err(format!(
            "reading {}: the two halves saw revisions {revision} and {other}",
            path.display()
        ));
    }
    // The upper half is packed on a second thread and handed over in batches, which the first
    // thread appends to its own records as it goes: the load never holds a second copy of half
    // the rows.
    let (batches, handed) = std::sync::mpsc::sync_channel::<Result<Records, String>>(2);
    let upper_reader = &mut second;
    let rows = std::thread::scope(|s| {
        s.spawn(move || {
            let upper = format!("{FULL_SQL} AND id > ?1");
            let mut hand_over = |rows: &mut Records| {
                batches
                    .send(Ok(std::mem::take(rows)))
                    .map_err(|_| "the first half stopped".to_owned())
            };
            let rest = read(path, upper_reader, &upper, Some(split), &mut hand_over);
            batches.send(rest).ok();
        });
        // Owned here, so an early return drops it and a blocked sender wakes up and stops.
        let handed = handed;
        let lower = format!("{FULL_SQL} AND id <= ?1");
        let mut take_over = |rows: &mut Records| {
            while let Ok(batch) = handed.try_recv() {
                rows.append(batch?);
            }
            Ok(())
        };
        let mut rows = read(path, first, &lower, Some(split), &mut take_over)?;
        for batch in handed.iter() {
            rows.append(batch?);
        }
        Ok::<_, String>(rows)
    })?;
    first.execute_batch("COMMIT").map_err(sql)?;
    second.execute_batch("COMMIT").map_err(sql)?;
    Ok(Some(FullLoad {
        rows,
        cursor: Cursor::Sqlite { revision },
        revision,
        readers: 2,
    }))
}

/// Turns a database error while reading `path` into the load's error.
fn failed(path: &Path) -> impl Fn(rusqlite::Error) -> String + Copy + '_ {
    move |e| format!("reading {}: {e}", path.display())
}

/// A connection to the file at `path` that waits `busy` for locks.
fn open(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy)?;
    // A load reads each page once, in order: a small page cache does as well as a large one,
    // and leaves less behind in the allocator once the connection closes.
    conn.execute_batch("PRAGMA cache_size = -256")?;
    Ok(conn)
}

/// Starts a read transaction on `conn` and returns the store revision it sees (the first read
/// is what fixes a transaction's snapshot).
fn begin(conn: &mut Connection) -> rusqlite::Result<i64> {
    conn.execute_batch("BEGIN")?;
    conn.query_row(REVISION, [], |r| r.get(0))
}

/// Rows packed between two calls of a [`read`]'s `every_batch`.
const BATCH: usize = 1024;

/// Steps `statement` (`FULL_SQL`, with `?1` bound to `split` if given) and packs every row,
/// calling `every_batch` with the records after each [`BATCH`] rows.
fn read(
    path: &Path,
    conn: &mut Connection,
    statement: &str,
    split: Option<i64>,
    every_batch: &mut dyn FnMut(&mut Records) -> Result<(), String>,
) -> Result<Records, String> {
    let sql = failed(path);
    let mut statement = conn.prepare(statement).map_err(sql)?;
    let mut found = match split {
        Some(split) => statement.query([split]),
        None => statement.query([]),
    }
    .map_err(sql)?;
    let (mut rows, mut n) = (Records::new(), 0);
    while let Some(row) = found.next().map_err(sql)? {
        rows.push(row_ref(row)?);
        n += 1;
        if n % BATCH == 0 {
            every_batch(&mut rows)?;
        }
    }
    Ok(rows)
}

/// The served columns of one row of `FULL_SQL` (at their [`Col`] positions), borrowed.
fn row_ref<'r>(row: &'r rusqlite::Row<'_>) -> Result<RowRef<'r>, String> {
    let id: i64 = row.get(Id.at(0)).map_err(|e| e.to_string())?;
    let bad = |what: &str| format!("pattern id {id}: {what} is not what the direct reader decodes");
    let int = |c: Col| match row.get_ref(c.at(0)) {
        Ok(ValueRef::Integer(v)) => Ok(v),
        _ => Err(bad(c.name())),
    };
    let real = |c: Col| match row.get_ref(c.at(0)) {
        Ok(ValueRef::Real(v)) => Ok(v),
        Ok(ValueRef::Integer(v)) => Ok(v as f64),
        _ => Err(bad(c.name())),
    };
    let text = |c: Col| match row.get_ref(c.at(0)) {
        Ok(ValueRef::Text(t)) => std::str::from_utf8(t).map_err(|_| bad(c.name())),
        _ => Err(bad(c.name())),
    };
    let metadata = match row.get_ref(Metadata.at(0)) {
        Ok(ValueRef::Null) => None,
        Ok(ValueRef::Text(t)) => Some(std::str::from_utf8(t).map_err(|_| bad(Metadata.name()))?),
        _ => return Err(bad(Metadata.name())),
    };
    Ok(RowRef {
        id,
        pattern: text(Pattern)?,
        normalized_pattern: text(NormalizedPattern)?,
        category: text(Category)?,
        confidence: real(Confidence)?,
        times_used: int(TimesUsed)?,
        times_correct: int(TimesCorrect)?,
        accuracy: real(Accuracy)?,
        created_at_micros: time_micros(text(CreatedAt)?).ok_or_else(|| bad(CreatedAt.name()))?,
        created_by: text(CreatedBy)?,
        served: int(Enabled)? != 0 && text(Status)? == "approved",
        metadata: checked_metadata(id, metadata).map_err(|e| e.to_string())?,
        revision: int(Revision)?,
    })
}

/// A stored time in µs since the epoch, parsed as sqlx parses SQLite text times (RFC 3339, then
/// the formats of SQLite's date and time functions; without an offset, UTC); `None` for
/// anything else (the pool then reads the load, and decides).
fn time_micros(text: &str) -> Option<i64> {
    const FORMATS: [&str; 12] = [
        "%F %T%.f",
        "%F %R",
        "%F %RZ",
        "%F %R%:z",
        "%F %T%.fZ",
        "%F %T%.f%:z",
        "%FT%R",
        "%FT%RZ",
        "%FT%R%:z",
        "%FT%T%.f",
        "%FT%T%.fZ",
        "%FT%T%.f%:z",
    ];
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    FORMATS.iter().find_map(|f| {
        DateTime::parse_from_str(text, f)
            .map(|t| t.with_timezone(&Utc).timestamp_micros())
            .or_else(|_| {
                NaiveDateTime::parse_from_str(text, f).map(|t| t.and_utc().timestamp_micros())
            })
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::time_micros;
    use crate::{
        model::{NewPattern, PatternStatus},
        snapshot::PatternSnapshot,
        store::{Store, StoreOptions},
    };

    /// The direct reader and the pool read the same rows into the same snapshot (content hash,
    /// every served row, the cursor), with rows written by hotplane and by other clients
    /// (space-separated times, unicode, metadata); and when the direct read fails, the load is
    /// read through the pool instead of failing.
    #[tokio::test]
    async fn the_direct_read_equals_the_pools_and_a_failed_one_falls_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = migrated_store(dir.path()).await;
        let Store::Sqlite(sqlite) = &store else {
            panic!("an SQLite store")
        };
        for (i, meta) in [
            serde_json::Value::Null,
            serde_json::json!({"a": "caffè ☕", "n": [1, 2.5]}),
        ]
        .into_iter()
        .enumerate()
        {
            store
                .learn(&NewPattern {
                    pattern: format!("Query {i}?"),
                    normalized_pattern: format!("query {i}"),
                    category: "ops".into(),
                    confidence: 0.9,
                    metadata: meta,
                    created_by: "llm".into(),
                    initial_status: PatternStatus::Approved,
                })
                .await
                .expect("learn");
        }
        sqlx::query(
            "INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, confidence, \
               times_used, accuracy, created_at, created_by, enabled, status, metadata) \
             VALUES ('Legacy', 'legacy', 'old', 0.8, 3, 0.5, '2024-05-01 10:00:00', 'sql', 1, \
               'approved', '{\"x\": null}')",
        )
        .execute(&sqlite.pool)
        .await
        .expect("legacy insert");
        let path = sqlite.file.clone().expect("a file");
        let direct = tokio::task::spawn_blocking(move || super::load_full(&path))
            .await
            .expect("join")
            .expect("direct read");
        let pooled = sqlite.load_full_pooled().await.expect("pooled read");
        assert_eq!(direct.cursor, pooled.cursor);
        assert_eq!(direct.rows.len(), 3);
        let (a, b) = (snapshot_of(direct), snapshot_of(pooled));
        assert_eq!(a.content_hash(), b.content_hash());
        for row in b.rows() {
            let d = a.get(row.id()).expect("same ids");
            assert_eq!(
                (
                    d.pattern(),
                    d.category(),
                    d.metadata(),
                    d.created_at_micros(),
                    d.times_used()
                ),
                (
                    row.pattern(),
                    row.category(),
                    row.metadata(),
                    row.created_at_micros(),
                    row.times_used()
                )
            );
        }
        // When the direct read fails (here: the file is not where it was), the load is read
        // through the pool and still succeeds.
        let mut store = store;
        if let Store::Sqlite(s) = &mut store {
            s.file = Some(dir.path().join("gone.db"));
        }
        let full = store
            .load_full()
            .await
            .expect("the load falls back to the pool");
        assert_eq!(full.rows.len(), 3);
        assert!(
            !dir.path().join("gone.db").exists(),
            "the direct reader creates nothing"
        );
        store.close().await;
    }

    /// A migrated, empty SQLite store in `dir/p.db`.
    async fn migrated_store(dir: &std::path::Path) -> Store {
        let store = Store::connect(&StoreOptions {
            url: format!("sqlite://{}", dir.join("p.db").display()),
            schema: "public".into(),
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(10),
        })
        .await
        .expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// The snapshot a load's records make, built from nothing.
    fn snapshot_of(load: super::FullLoad) -> PatternSnapshot {
        PatternSnapshot::from_records_after(&PatternSnapshot::default(), load.rows)
            .expect("valid")
            .0
    }

    /// A migrated SQLite store in `dir` holding `n` patterns (every 7th pending, metadata on
    /// even ids, categories that differ between the lower and the upper half of the ids).
    async fn store_with(dir: &std::path::Path, n: i64) -> Store {
        let store = migrated_store(dir).await;
        let Store::Sqlite(sqlite) = &store else {
            panic!("an SQLite store")
        };
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
             INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, \
               confidence, times_used, status, metadata) \
             SELECT 'Query ' || i, 'query ' || i, \
               CASE WHEN i > ?1 / 2 THEN 'upper' || (i % 3) ELSE 'lower' || (i % 2) END, \
               0.5, i, CASE WHEN i % 7 = 0 THEN 'pending' ELSE 'approved' END, \
               CASE WHEN i % 2 = 0 THEN '{\"k\": ' || i || '}' END \
             FROM n",
        )
        .bind(n)
        .execute(&sqlite.pool)
        .await
        .expect("insert");
        store
    }

    /// The file of an SQLite store.
    fn file_of(store: &Store) -> std::path::PathBuf {
        let Store::Sqlite(sqlite) = store else {
            panic!("an SQLite store")
        };
        sqlite.file.clone().expect("a file")
    }

    /// A load read in two halves on two threads equals the pool's read of the same rows, with
    /// categories first seen in either half.
    #[tokio::test]
    async fn two_halves_read_what_the_pool_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with(dir.path(), 300).await;
        let path = file_of(&store);
        let split = tokio::task::spawn_blocking(move || super::load_full_with(&path, 10, &|| ()))
            .await
            .expect("join")
            .expect("direct read");
        assert_eq!(split.readers, 2, "read in two halves");
        let Store::Sqlite(sqlite) = &store else {
            unreachable!()
        };
        let pooled = sqlite.load_full_pooled().await.expect("pooled read");
        assert_eq!(split.cursor, pooled.cursor);
        assert_eq!(split.rows.len(), 300 - 300 / 7);
        let (a, b) = (snapshot_of(split), snapshot_of(pooled));
        assert_eq!(a.content_hash(), b.content_hash());
        assert_eq!(a.len(), b.len());
        for row in b.rows() {
            let d = a.get(row.id()).expect("same ids");
            assert_eq!(
                (d.category(), d.pattern(), d.metadata(), d.times_used()),
                (
                    row.category(),
                    row.pattern(),
                    row.metadata(),
                    row.times_used()
                )
            );
        }
        store.close().await;
    }

    /// A write that tries to commit while the two halves start their read transactions waits
    /// until both have their snapshot: one transaction changing a row in each half is seen by
    /// both halves or by neither. And when the write lock is held elsewhere, the load reads on
    /// one thread rather than risk two snapshots.
    #[tokio::test]
    async fn no_commit_falls_between_the_two_halves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with(dir.path(), 400).await;
        let path = file_of(&store);
        let loaded = tokio::task::spawn_blocking(move || {
            let writer = std::sync::Mutex::new(None);
            let load = super::load_full_with(&path, 10, &|| {
                let path = path.clone();
                *writer.lock().expect("lock") = Some(std::thread::spawn(move || {
                    let conn = super::open(&path, std::time::Duration::from_secs(30))?;
                    conn.execute(
                        "UPDATE auto_learned_patterns SET category = 'moved' WHERE id IN (1, 400)",
                        [],
                    )
                }));
                // Time for the write to commit, if anything let it.
                std::thread::sleep(std::time::Duration::from_millis(300));
            });
            let written = writer
                .lock()
                .expect("lock")
                .take()
                .expect("the hook ran")
                .join()
                .expect("join");
            assert_eq!(
                written.expect("the write commits after the halves began"),
                2
            );
            let after = super::load_full_with(&path, 10, &|| ()).expect("second load");
            // With the write lock held by another connection, one reader reads everything.
            let blocker = super::open(&path, std::time::Duration::from_secs(1)).expect("open");
            blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
            let single = super::load_full_with(&path, 10, &|| ()).expect("single read");
            blocker.execute_batch("ROLLBACK").expect("unlock");
            (load.expect("load"), after, single)
        })
        .await
        .expect("join");
        let (load, after, single) = loaded;
        assert_eq!((load.readers, after.readers, single.readers), (2, 2, 1));
        let cats = |s: &PatternSnapshot| {
            (
                s.get(1).expect("id 1").category().to_owned(),
                s.get(400).expect("id 400").category().to_owned(),
            )
        };
        let (before, after, single) = (snapshot_of(load), snapshot_of(after), snapshot_of(single));
        assert_eq!(
            cats(&before),
            ("lower1".into(), "upper1".into()),
            "neither half saw it"
        );
        assert_eq!(cats(&after), ("moved".into(), "moved".into()));
        assert_eq!(single.content_hash(), after.content_hash());
        store.close().await;
    }

    #[test]
    fn times_parse_as_utc_and_others_are_refused() {
        let z = time_micros("2026-01-02T03:04:05.678Z").expect("rfc 3339");
        assert_eq!(time_micros("2026-01-02 03:04:05.678"), Some(z));
        assert_eq!(time_micros("2026-01-02T05:04:05.678+02:00"), Some(z));
        assert_eq!(
            time_micros("2026-01-02 03:04"),
            time_micros("2026-01-02T03:04:00Z")
        );
        assert_eq!(time_micros("yesterday"), None);
    }
}

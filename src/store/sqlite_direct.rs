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
    sqlite::{FULL_SQL, REVISION, checked_metadata},
};
use crate::{model::RowRef, snapshot::Records};

/// How long a read waits for a lock (it needs none in WAL mode but the first open may).
const BUSY: Duration = Duration::from_secs(5);

/// Reads every served row and the revision from the file at `path`, in one read transaction.
pub(super) fn load_full(path: &Path) -> Result<FullLoad, String> {
    let sql = |e: rusqlite::Error| format!("reading {}: {e}", path.display());
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    conn.busy_timeout(BUSY).map_err(sql)?;
    let tx = conn.transaction().map_err(sql)?;
    let revision: i64 = tx.query_row(REVISION, [], |r| r.get(0)).map_err(sql)?;
    let mut rows = Records::new();
    {
        let mut statement = tx.prepare(FULL_SQL).map_err(sql)?;
        let mut found = statement.query([]).map_err(sql)?;
        while let Some(row) = found.next().map_err(sql)? {
            rows.push(row_ref(row)?);
        }
    }
    tx.commit().map_err(sql)?;
    Ok(FullLoad {
        rows,
        cursor: Cursor::Sqlite { revision },
        revision,
        readers: 1,
    })
}

/// The served columns of one row of `FULL_SQL` (positions as in `columns!()`), borrowed.
fn row_ref<'r>(row: &'r rusqlite::Row<'_>) -> Result<RowRef<'r>, String> {
    let id: i64 = row.get(0).map_err(|e| e.to_string())?;
    let bad = |what: &str| format!("pattern id {id}: {what} is not what the direct reader decodes");
    let int = |i: usize, what: &str| match row.get_ref(i) {
        Ok(ValueRef::Integer(v)) => Ok(v),
        _ => Err(bad(what)),
    };
    let real = |i: usize, what: &str| match row.get_ref(i) {
        Ok(ValueRef::Real(v)) => Ok(v),
        Ok(ValueRef::Integer(v)) => Ok(v as f64),
        _ => Err(bad(what)),
    };
    let text = |i: usize, what: &str| match row.get_ref(i) {
        Ok(ValueRef::Text(t)) => std::str::from_utf8(t).map_err(|_| bad(what)),
        _ => Err(bad(what)),
    };
    let metadata = match row.get_ref(13) {
        Ok(ValueRef::Null) => None,
        Ok(ValueRef::Text(t)) => Some(std::str::from_utf8(t).map_err(|_| bad("metadata"))?),
        _ => return Err(bad("metadata")),
    };
    Ok(RowRef {
        id,
        pattern: text(1, "pattern")?,
        normalized_pattern: text(2, "normalized_pattern")?,
        category: text(3, "category")?,
        confidence: real(4, "confidence")?,
        times_used: int(5, "times_used")?,
        times_correct: int(6, "times_correct")?,
        accuracy: real(7, "accuracy")?,
        created_at_micros: time_micros(text(8, "created_at")?).ok_or_else(|| bad("created_at"))?,
        created_by: text(10, "created_by")?,
        served: int(11, "enabled")? != 0 && text(12, "status")? == "approved",
        metadata: checked_metadata(id, metadata).map_err(|e| e.to_string())?,
        revision: int(15, "revision")?,
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
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let store = Store::connect(&StoreOptions {
            url,
            schema: "public".into(),
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(10),
        })
        .await
        .expect("connect");
        store.migrate().await.expect("migrate");
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
        let a = PatternSnapshot::from_records_after(&PatternSnapshot::default(), direct.rows)
            .expect("valid")
            .0;
        let b = PatternSnapshot::from_records_after(&PatternSnapshot::default(), pooled.rows)
            .expect("valid")
            .0;
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

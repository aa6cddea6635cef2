//! The pattern store against real databases: CRUD, full and delta loads (including writes by
//! other clients and a late-committing PostgreSQL writer), hit flushes, legacy tables and the
//! learn upsert under concurrency.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hotplane::{
    model::{NewPattern, PatternStatus},
    store::{Cursor, HitDelta, ListQuery, Store, StoreError},
};
use serde_json::json;

use crate::db::{Legacy, SqlClient, TestDb, legacy_ddl, unique_suffix};

/// One `#[tokio::test]` per backend for an `async fn(TestDb)` body.
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(crate::db::TestDb::postgres().await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::db::TestDb::sqlite().await).await
                }
            }
        )+
    };
}

on_both!(
    crud_and_listing,
    full_load_serves_only_approved_enabled_rows,
    delta_reads_only_rows_changed_by_other_clients,
    hit_flush_keeps_the_revision,
    concurrent_learns_of_one_text_make_one_row,
);

fn new_pattern(raw: &str, normalized: &str, category: &str) -> NewPattern {
    NewPattern {
        pattern: raw.to_owned(),
        normalized_pattern: normalized.to_owned(),
        category: category.to_owned(),
        confidence: 0.95,
        metadata: serde_json::Value::Null,
        created_by: "llm".to_owned(),
        initial_status: PatternStatus::Approved,
    }
}

fn page(after_id: i64, limit: i64) -> ListQuery {
    ListQuery {
        after_id,
        limit,
        ..ListQuery::default()
    }
}

fn ids<'a>(rows: impl IntoIterator<Item = &'a hotplane::model::PatternRow>) -> BTreeSet<i64> {
    rows.into_iter().map(|r| r.id).collect()
}

/// The snapshot a full load builds (the rows it serves, as the engine keeps them).
fn snapshot_of(full: hotplane::store::FullLoad) -> hotplane::snapshot::PatternSnapshot {
    hotplane::snapshot::PatternSnapshot::from_records_after(&Default::default(), full.rows)
        .expect("a valid load")
        .0
}

/// The ids a snapshot serves.
fn served_ids(snap: &hotplane::snapshot::PatternSnapshot) -> BTreeSet<i64> {
    snap.rows().map(|r| r.id()).collect()
}

/// A time both backends store exactly (whole milliseconds).
fn at(secs: i64, millis: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5)
        .single()
        .expect("valid time")
        + Duration::seconds(secs)
        + Duration::milliseconds(millis)
}

async fn crud_and_listing(db: TestDb) {
    let store = db.store().await;
    // Migrating again, from this or a second store, is a no-op.
    store.migrate().await.expect("second migrate");
    let other = Store::connect(&db.options()).await.expect("connects");
    other.migrate().await.expect("migrate from a second store");
    other.close().await;

    let rev0 = store.revision().await.expect("revision");
    let mut made = Vec::new();
    for (i, cat) in ["alpha", "beta", "alpha", "beta", "alpha"]
        .iter()
        .enumerate()
    {
        let mut p = new_pattern(&format!("Query {i}?"), &format!("query {i}"), cat);
        if i % 2 == 1 {
            p.initial_status = PatternStatus::Pending;
        }
        let out = store.learn(&p).await.expect("learn");
        assert!(out.created && !out.updated, "{out:?}");
        assert_eq!(out.row.pattern, format!("Query {i}?"));
        assert_eq!(out.row.status, p.initial_status);
        assert!(out.row.enabled);
        made.push(out.row);
    }
    let rev1 = store.revision().await.expect("revision");
    assert!(rev1 > rev0, "writes advance the revision: {rev0} -> {rev1}");
    assert!(made.windows(2).all(|w| w[0].id < w[1].id));

    // Learning the same content again changes nothing; new content for the same normalized
    // text (from another raw text) updates that row, and leaves its status alone.
    let again = store
        .learn(&new_pattern("Query 0?", "query 0", "alpha"))
        .await
        .expect("learn again");
    assert!(!again.created && !again.updated);
    assert_eq!(again.row, made[0]);
    let mut changed = new_pattern("QUERY 1", "query 1", "gamma");
    changed.metadata = json!({"action": "x"});
    changed.initial_status = PatternStatus::Approved;
    let upd = store.learn(&changed).await.expect("learn update");
    assert!(!upd.created && upd.updated, "{upd:?}");
    assert_eq!(upd.row.id, made[1].id);
    assert_eq!(upd.row.pattern, "Query 1?", "the raw text of the row stays");
    assert_eq!(upd.row.category, "gamma");
    assert_eq!(upd.row.metadata_json(), json!({"action": "x"}));
    assert_eq!(
        upd.row.status,
        PatternStatus::Pending,
        "learning never approves"
    );
    assert!(upd.row.revision > made[1].revision);
    made[1] = upd.row;

    for row in &made {
        assert_eq!(store.get(row.id).await.expect("get").as_ref(), Some(row));
    }
    assert_eq!(store.get(i64::MAX).await.expect("get unknown"), None);

    // Keyset pages of 2 cover every row once, in id order.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let rows = store.list(&page(after, 2)).await.expect("list");
        assert!(rows.len() <= 2);
        let Some(last) = rows.last() else { break };
        after = last.id;
        seen.extend(rows.iter().map(|r| r.id));
    }
    assert_eq!(seen, made.iter().map(|r| r.id).collect::<Vec<_>>());

    let pending = store
        .list(&ListQuery {
            status: Some(PatternStatus::Pending),
            ..page(0, 100)
        })
        .await
        .expect("list pending");
    assert_eq!(ids(&pending), ids([&made[1], &made[3]]));
    let alpha = store
        .list(&ListQuery {
            category: Some("alpha".into()),
            ..page(0, 100)
        })
        .await
        .expect("list alpha");
    assert_eq!(ids(&alpha), ids([&made[0], &made[2], &made[4]]));
    let alpha_after = store
        .list(&ListQuery {
            category: Some("alpha".into()),
            status: Some(PatternStatus::Approved),
            ..page(made[0].id, 1)
        })
        .await
        .expect("list filtered page");
    assert_eq!(ids(&alpha_after), ids([&made[2]]));

    let disabled = store
        .set_status(made[2].id, PatternStatus::Disabled, false)
        .await
        .expect("set_status")
        .expect("row exists");
    assert_eq!(disabled.status, PatternStatus::Disabled);
    assert!(!disabled.enabled);
    assert!(disabled.revision > made[2].revision);
    assert_eq!(store.get(made[2].id).await.expect("get"), Some(disabled));
    assert_eq!(
        store
            .set_status(i64::MAX, PatternStatus::Approved, true)
            .await
            .expect("set_status unknown"),
        None
    );

    assert!(store.delete(made[4].id).await.expect("delete"));
    assert_eq!(store.get(made[4].id).await.expect("get deleted"), None);
    assert!(!store.delete(made[4].id).await.expect("delete again"));
    assert!(store.revision().await.expect("revision") > rev1);
    store.close().await;
}

async fn full_load_serves_only_approved_enabled_rows(db: TestDb) {
    let store = db.store().await;
    let meta = json!({"action": "restart", "args": {"n": [1, 2.5, "x"], "ok": true, "none": null},
                      "text": "caffè ☕"});
    let mut served = new_pattern("served with metadata", "served metadata", "ops");
    served.metadata = meta.clone();
    let served = store.learn(&served).await.expect("learn").row;
    let plain = store
        .learn(&new_pattern("served plain", "served plain", "ops"))
        .await
        .expect("learn")
        .row;
    let mut pending = new_pattern("pending one", "pending one", "ops");
    pending.initial_status = PatternStatus::Pending;
    store.learn(&pending).await.expect("learn pending");
    let off = store
        .learn(&new_pattern("switched off", "switched off", "ops"))
        .await
        .expect("learn")
        .row;
    store
        .set_status(off.id, PatternStatus::Approved, false)
        .await
        .expect("disable")
        .expect("exists");
    let rejected = store
        .learn(&new_pattern("rejected", "rejected", "ops"))
        .await
        .expect("learn")
        .row;
    store
        .set_status(rejected.id, PatternStatus::Disabled, true)
        .await
        .expect("status disabled")
        .expect("exists");

    let full = store.load_full().await.expect("load_full");
    let revision = full.revision;
    let snap = snapshot_of(full);
    assert_eq!(served_ids(&snap), ids([&served, &plain]));
    let got = snap.get(served.id).expect("served row");
    assert_eq!(
        hotplane::model::metadata_json(got.metadata()),
        meta,
        "metadata round-trips as JSON"
    );
    assert_eq!(served.metadata_json(), meta);
    assert_eq!(got.metadata(), served.metadata.as_deref());
    assert_eq!(
        (got.pattern(), got.normalized_pattern(), got.category()),
        (
            served.pattern.as_str(),
            served.normalized_pattern.as_str(),
            served.category.as_str()
        )
    );
    assert_eq!(
        got.content_hash(),
        hotplane::snapshot::content_hash(&served.as_ref()),
        "a full load and a row read by id hash alike"
    );
    let got_plain = snap.get(plain.id).expect("plain");
    assert_eq!(got_plain.metadata(), None);
    for row in snap.rows() {
        let stored = store.get(row.id()).await.expect("get").expect("exists");
        stored
            .check_invariants()
            .expect("served rows hold the invariants");
        assert!(stored.is_served());
        assert!((Utc::now() - stored.created_at).num_minutes().abs() < 10);
        assert_eq!(
            row.created_at_micros(),
            stored.created_at.timestamp_micros()
        );
        assert!(stored.updated_at >= stored.created_at);
        assert!(row.revision() <= revision);
    }
    assert_eq!(revision, store.revision().await.expect("revision"));
    // The rejected row was the last write: the store revision is its revision.
    let last = store.get(rejected.id).await.expect("get").expect("exists");
    assert_eq!(revision, last.revision);
    store.close().await;
}

/// Inserts `n` approved rows "bulk 1".."bulk n" with plain SQL (valid on both backends).
async fn bulk_insert(sql: &SqlClient, n: u32) {
    sql.exec(&format!(
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n}) \
         INSERT INTO auto_learned_patterns \
             (pattern, normalized_pattern, category, confidence, status, enabled) \
         SELECT 'bulk ' || n, 'bulk ' || n, 'bulk', 0.95, 'approved', true FROM s"
    ))
    .await;
}

async fn id_of(sql: &SqlClient, pattern: &str) -> i64 {
    sql.int(&format!(
        "SELECT id FROM auto_learned_patterns WHERE pattern = '{pattern}'"
    ))
    .await
}

async fn delta_reads_only_rows_changed_by_other_clients(db: TestDb) {
    let store = db.store().await;
    let sql = db.client().await;
    bulk_insert(&sql, 200).await;
    let full = store.load_full().await.expect("load_full");
    assert_eq!(full.rows.len(), 200);

    let none = store.load_delta(&full.cursor).await.expect("delta");
    assert_eq!(none.rows_read(), 0, "an unchanged store reads nothing");
    assert_eq!(none.revision, full.revision);

    let (b1, b2, b3, b4, b5) = (
        id_of(&sql, "bulk 1").await,
        id_of(&sql, "bulk 2").await,
        id_of(&sql, "bulk 3").await,
        id_of(&sql, "bulk 4").await,
        id_of(&sql, "bulk 5").await,
    );
    sql.exec(
        "INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, confidence, \
         status, enabled) VALUES ('added by sql', 'added by sql', 'ext', 0.99, 'approved', true)",
    )
    .await;
    let added = id_of(&sql, "added by sql").await;
    sql.exec(&format!(
        "UPDATE auto_learned_patterns SET category = 'recat' WHERE id = {b1}"
    ))
    .await;
    sql.exec(&format!(
        "UPDATE auto_learned_patterns SET enabled = false WHERE id = {b2}"
    ))
    .await;
    sql.exec(&format!(
        "DELETE FROM auto_learned_patterns WHERE id = {b3}"
    ))
    .await;
    // Not content: a hit count, and a write of the same values.
    sql.exec(&format!(
        "UPDATE auto_learned_patterns SET times_used = times_used + 7 WHERE id = {b4}"
    ))
    .await;
    sql.exec(&format!(
        "UPDATE auto_learned_patterns SET category = category, status = status WHERE id = {b5}"
    ))
    .await;

    let delta = store.load_delta(&none.cursor).await.expect("delta");
    assert_eq!(
        ids(&delta.changed),
        BTreeSet::from([added, b1, b2]),
        "{delta:?}"
    );
    assert_eq!(delta.deleted, vec![b3]);
    assert_eq!(delta.rows_read(), 4, "only the changed rows are read");
    let by_id = |id| {
        delta
            .changed
            .iter()
            .find(|r| r.id == id)
            .expect("changed row")
    };
    assert_eq!(by_id(b1).category, "recat");
    assert!(!by_id(b2).enabled && !by_id(b2).is_served());
    assert!(by_id(added).is_served());
    assert!(delta.revision > full.revision);
    assert_eq!(delta.revision, store.revision().await.expect("revision"));

    let after = store.load_delta(&delta.cursor).await.expect("delta");
    assert_eq!(after.rows_read(), 0, "{after:?}");

    let named = store.load_ids(&[b1, b3, i64::MAX]).await.expect("load_ids");
    assert_eq!(ids(&named), BTreeSet::from([b1]));
    assert!(
        store
            .load_ids(&[])
            .await
            .expect("load_ids empty")
            .is_empty()
    );

    // A cursor from the other backend is refused, not misread.
    let foreign = match &full.cursor {
        Cursor::Postgres { .. } => Cursor::Sqlite { revision: 0 },
        Cursor::Sqlite { .. } => Cursor::Postgres {
            timeline: None,
            snapshot: "1:1:".into(),
        },
    };
    assert!(matches!(
        store.load_delta(&foreign).await,
        Err(StoreError::ForeignCursor)
    ));
    sql.close().await;
    store.close().await;
}

async fn hit_flush_keeps_the_revision(db: TestDb) {
    let store = db.store().await;
    let row = store
        .learn(&new_pattern("hit me", "hit me", "ops"))
        .await
        .expect("learn")
        .row;
    assert_eq!((row.times_used, row.last_used_at), (0, None));
    let full = store.load_full().await.expect("load_full");
    let rev = store.revision().await.expect("revision");

    let held = store
        .flush_hits(&[
            HitDelta {
                id: row.id,
                count: 3,
                last_used_at: at(10, 250),
            },
            HitDelta {
                id: row.id,
                count: 2,
                last_used_at: at(0, 0),
            },
            HitDelta {
                id: i64::MAX,
                count: 1,
                last_used_at: at(0, 0),
            },
        ])
        .await
        .expect("flush");
    // Nothing held the row; an unknown id is dropped, not kept for the next flush.
    assert_eq!(held, Vec::<i64>::new());
    let hit = store.get(row.id).await.expect("get").expect("exists");
    assert_eq!(hit.times_used, 5);
    assert_eq!(hit.last_used_at, Some(at(10, 250)));
    assert_eq!(hit.revision, row.revision, "hits are not content");
    assert_eq!(hit.updated_at, row.updated_at);
    assert_eq!(store.revision().await.expect("revision"), rev);
    let delta = store.load_delta(&full.cursor).await.expect("delta");
    assert_eq!(delta.rows_read(), 0, "{delta:?}");

    // An older hit time never moves last_used_at back.
    store
        .flush_hits(&[HitDelta {
            id: row.id,
            count: 1,
            last_used_at: at(5, 0),
        }])
        .await
        .expect("flush");
    let hit = store.get(row.id).await.expect("get").expect("exists");
    assert_eq!(hit.times_used, 6);
    assert_eq!(hit.last_used_at, Some(at(10, 250)));
    store.flush_hits(&[]).await.expect("empty flush");
    store.close().await;
}

async fn concurrent_learns_of_one_text_make_one_row(db: TestDb) {
    const LEARNERS: usize = 12;
    let store = db.store().await;
    // One store (pool) per learner, like separate replicas, each already connected; the
    // barrier releases them together so their lookups and inserts really overlap. The raw
    // texts differ and share one normalized text, so the unique raw-pattern index cannot
    // serialize them: only the store's own upsert logic can.
    let mut learners = Vec::new();
    for _ in 0..LEARNERS {
        learners.push(Store::connect(&db.options()).await.expect("connects"));
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(LEARNERS));
    let tasks: Vec<_> = learners
        .into_iter()
        .enumerate()
        .map(|(i, learner)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let raw = format!("Hello world{}", "!".repeat(i));
                let p = new_pattern(&raw, "hello world", "greeting");
                barrier.wait().await;
                let out = learner.learn(&p).await;
                learner.close().await;
                out
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("task").expect("learn"));
    }
    assert_eq!(outcomes.iter().filter(|o| o.created).count(), 1);
    assert!(
        outcomes.iter().all(|o| !o.updated),
        "same content: no updates"
    );
    assert_eq!(ids(outcomes.iter().map(|o| &o.row)).len(), 1);
    let sql = db.client().await;
    assert_eq!(
        sql.int(
            "SELECT count(*) FROM auto_learned_patterns WHERE normalized_pattern = 'hello world'"
        )
        .await,
        1
    );
    sql.close().await;
    store.close().await;
}

/// Writer T1 takes the lower transaction id but commits last. A load between T2's and T1's
/// commits already saw T2's higher revision, so "revision > the highest seen" would miss T1;
/// the snapshot cursor must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_delta_sees_a_late_commit_with_a_lower_revision() {
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let sql = db.client().await;
    let pg = sql.pg();
    let seed = store
        .learn(&new_pattern("seed", "seed", "ops"))
        .await
        .expect("learn")
        .row;
    let full = store.load_full().await.expect("load_full");

    let mut t1 = pg.begin().await.expect("begin t1");
    sqlx::query("UPDATE auto_learned_patterns SET category = 't1' WHERE id = $1")
        .bind(seed.id)
        .execute(&mut *t1)
        .await
        .expect("t1 writes");
    let xid1: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *t1)
        .await
        .expect("t1 xid");

    let mut t2 = pg.begin().await.expect("begin t2");
    sqlx::query(
        "INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, status) \
         VALUES ('t2', 't2', 'ops', 'approved')",
    )
    .execute(&mut *t2)
    .await
    .expect("t2 writes");
    let xid2: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *t2)
        .await
        .expect("t2 xid");
    t2.commit().await.expect("t2 commits");
    assert!(xid1 < xid2, "t1 took the lower transaction id");

    let first = store.load_delta(&full.cursor).await.expect("delta");
    assert_eq!(first.changed.len(), 1, "{first:?}");
    assert_eq!(first.changed[0].pattern, "t2");
    assert_eq!(first.changed[0].revision, xid2);
    assert!(first.deleted.is_empty());

    t1.commit().await.expect("t1 commits");
    let second = store.load_delta(&first.cursor).await.expect("delta");
    assert_eq!(
        ids(&second.changed),
        BTreeSet::from([seed.id]),
        "{second:?}"
    );
    let late = &second.changed[0];
    assert_eq!(late.category, "t1");
    assert_eq!(late.revision, xid1);
    assert!(
        late.revision < first.revision,
        "the late row's revision is below what the previous load saw, so a plain \
         revision comparison would have missed it"
    );
    let third = store.load_delta(&second.cursor).await.expect("delta");
    assert_eq!(third.rows_read(), 0, "{third:?}");
    sql.close().await;
    store.close().await;
}

/// Every legacy column of every row, as JSON text, for before/after comparison.
fn legacy_dump(schema: &str) -> String {
    format!(
        "SELECT json_agg(t ORDER BY id)::text FROM (SELECT id, pattern, normalized_pattern, \
         category, confidence, times_used, times_correct, accuracy, created_at, last_used_at, \
         created_by, enabled, status FROM {schema}.auto_learned_patterns) t"
    )
}

fn column_types(schema: &str) -> String {
    format!(
        "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
         FROM information_schema.columns \
         WHERE table_schema = '{schema}' AND table_name = 'auto_learned_patterns'"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_legacy_table_is_adopted_in_place() {
    let db = TestDb::postgres().await;
    let sql = db.client().await;
    let schema = format!("pilotpros_{}", unique_suffix());
    sql.exec(&format!("CREATE SCHEMA {schema}")).await;
    sql.exec(&legacy_ddl(&schema, Legacy::Created)).await;
    sql.exec(&format!(
        "INSERT INTO {schema}.auto_learned_patterns (pattern, normalized_pattern, category, \
             confidence, times_used, times_correct, accuracy, created_at, last_used_at, \
             created_by, enabled, status) VALUES \
         ('Ciao mondo', 'ciao mondo', 'greet', 0.95, 10, 9, 0.9, '2024-05-01 10:00:00', \
             '2024-05-02 11:30:00.5', 'llm', true, 'approved'), \
         ('ciao mondo!!', 'ciao mondo', 'greet_old', 0.91, 50, 10, 0.2, '2024-06-01 10:00:00', \
             NULL, 'manual', true, 'approved'), \
         ('all nulls', 'all nulls', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, true, \
             'approved'), \
         ('odd status', 'odd status', 'x', 0.9, 0, 0, 0, DEFAULT, NULL, DEFAULT, DEFAULT, \
             'weird'), \
         ('no flag', 'no flag', 'x', 0.9, 0, 0, 0, DEFAULT, NULL, DEFAULT, NULL, 'approved'), \
         ('waiting', 'waiting', 'x', 0.9, 0, 0, 0, DEFAULT, NULL, DEFAULT, DEFAULT, DEFAULT)"
    ))
    .await;
    let before = sql.text(&legacy_dump(&schema)).await;
    let types_before = sql.text(&column_types(&schema)).await.expect("columns");

    let store = db.store_in(&schema).await;
    store.migrate().await.expect("second migrate");

    assert_eq!(sql.text(&legacy_dump(&schema)).await, before, "rows intact");
    let types_after = sql.text(&column_types(&schema)).await.expect("columns");
    assert_eq!(
        types_after,
        format!(
            "{types_before}, metadata jsonb, updated_at timestamp with time zone, \
             revision bigint"
        ),
        "legacy columns keep their types; the new ones are added"
    );
    let in_schema = format!("SELECT count(*) FROM {schema}._sqlx_migrations");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .expect("migrations dir")
        .count() as i64;
    assert_eq!(
        sql.int(&in_schema).await,
        migrations,
        "every migration ran in the schema"
    );
    assert_eq!(
        sql.int("SELECT count(*) FROM pg_tables WHERE tablename = '_sqlx_migrations' AND schemaname = 'public'")
            .await,
        0,
        "the migrations table lives in the store's schema"
    );

    let full = store.load_full().await.expect("load_full");
    let cursor = full.cursor.clone();
    assert_eq!(served_ids(&snapshot_of(full)), BTreeSet::from([1, 2, 3]));
    let mut rows = std::collections::BTreeMap::new();
    for id in 1..=3 {
        rows.insert(id, store.get(id).await.expect("get").expect("exists"));
    }
    let row = |id| &rows[&id];
    assert_eq!(
        row(1).created_at,
        Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0)
            .single()
            .expect("time"),
        "a naive timestamp reads as UTC"
    );
    assert_eq!(
        row(1).last_used_at,
        Some(
            Utc.with_ymd_and_hms(2024, 5, 2, 11, 30, 0)
                .single()
                .expect("time")
                + Duration::milliseconds(500)
        )
    );
    assert_eq!((row(1).times_used, row(1).times_correct), (10, 9));
    let nulls = row(3);
    assert_eq!(
        (
            nulls.category.as_str(),
            nulls.confidence,
            nulls.times_used,
            nulls.accuracy
        ),
        ("", 0.0, 0, 0.0)
    );
    assert_eq!((nulls.created_by.as_str(), nulls.last_used_at), ("", None));
    assert_eq!(nulls.metadata, None);
    assert_eq!(nulls.revision, 0, "legacy rows predate every cursor");
    let odd = store.get(4).await.expect("get").expect("exists");
    assert_eq!(odd.status, PatternStatus::Other("weird".into()));
    assert!(
        !store.get(5).await.expect("get").expect("exists").enabled,
        "NULL enabled is off"
    );
    assert_eq!(
        store.get(6).await.expect("get").expect("exists").status,
        PatternStatus::Pending
    );

    // Learning the duplicated text updates the best row (highest accuracy), not the other.
    let mut p = new_pattern("CIAO MONDO", "ciao mondo", "greet_new");
    p.initial_status = PatternStatus::Pending;
    let out = store.learn(&p).await.expect("learn");
    assert!(!out.created && out.updated, "{out:?}");
    assert_eq!(out.row.id, 1);
    assert_eq!(out.row.category, "greet_new");
    assert_eq!(out.row.status, PatternStatus::Approved, "status untouched");
    assert_eq!(
        store.get(2).await.expect("get").expect("exists").category,
        "greet_old"
    );

    // Hit flushes work on the legacy column types (and NULL counters), without a revision.
    store
        .flush_hits(&[
            HitDelta {
                id: 1,
                count: 2,
                last_used_at: at(0, 0),
            },
            HitDelta {
                id: 3,
                count: 1,
                last_used_at: at(0, 0),
            },
        ])
        .await
        .expect("flush");
    let hit = store.get(1).await.expect("get").expect("exists");
    assert_eq!((hit.times_used, hit.last_used_at), (12, Some(at(0, 0))));
    assert_eq!(hit.revision, out.row.revision);
    let hit = store.get(3).await.expect("get").expect("exists");
    assert_eq!((hit.times_used, hit.revision), (1, 0));

    // Another client with the default search_path deletes by qualified name: the tombstone
    // still lands in the store's schema.
    sql.exec(&format!(
        "DELETE FROM {schema}.auto_learned_patterns WHERE id = 2"
    ))
    .await;
    let delta = store.load_delta(&cursor).await.expect("delta");
    assert_eq!(ids(&delta.changed), BTreeSet::from([1]));
    assert_eq!(delta.deleted, vec![2]);

    // The public schema of the same database migrates independently, and starts empty.
    let public = db.store().await;
    assert!(public.load_full().await.expect("load_full").rows.is_empty());
    assert_eq!(
        sql.int("SELECT count(*) FROM public._sqlx_migrations")
            .await,
        migrations
    );
    public.close().await;
    sql.close().await;
    store.close().await;
}

#[tokio::test]
async fn pg_schema_must_be_a_plain_identifier() {
    let db = TestDb::postgres().await;
    for bad in ["", "1abc", "a-b", "x\"; DROP TABLE y; --", "a b"] {
        let err = Store::connect(&db.options_in(bad))
            .await
            .expect_err("rejected");
        assert!(
            matches!(err, StoreError::Connect { .. }) && err.to_string().contains("schema"),
            "{bad:?}: {err}"
        );
    }
}

#[tokio::test]
async fn sqlite_in_memory_store_keeps_its_data() {
    let store = Store::connect(&hotplane::store::StoreOptions {
        url: "sqlite::memory:".into(),
        schema: "public".into(),
        max_connections: 8,
        acquire_timeout: std::time::Duration::from_secs(5),
    })
    .await
    .expect("connects");
    store.migrate().await.expect("migrates");
    let row = store
        .learn(&new_pattern("in memory", "in memory", "ops"))
        .await
        .expect("learn")
        .row;
    let full = store.load_full().await.expect("load_full");
    assert_eq!(served_ids(&snapshot_of(full)), BTreeSet::from([row.id]));
    store.close().await;
}

/// TRUNCATE fires no row triggers; the store's statement trigger still records every row gone.
#[tokio::test]
async fn pg_truncate_is_seen_as_deletes() {
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let sql = db.client().await;
    let a = store
        .learn(&new_pattern("one", "one", "ops"))
        .await
        .expect("learn")
        .row;
    let b = store
        .learn(&new_pattern("two", "two", "ops"))
        .await
        .expect("learn")
        .row;
    let full = store.load_full().await.expect("load_full");
    sql.exec("TRUNCATE auto_learned_patterns").await;
    let delta = store.load_delta(&full.cursor).await.expect("delta");
    assert!(delta.changed.is_empty());
    assert_eq!(
        delta.deleted.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([a.id, b.id])
    );
    sql.close().await;
    store.close().await;
}

/// A large table is read by two server processes in one snapshot: with another client
/// committing rows all along, the load holds exactly the rows its cursor's snapshot sees (two
/// halves read in different snapshots would disagree with it).
#[tokio::test]
async fn pg_large_full_load_reads_two_halves_in_one_snapshot() {
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let sql = db.client().await;
    bulk_insert(&sql, 60_000).await;
    sql.exec("ANALYZE auto_learned_patterns").await;
    let writer_sql = db.client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                writer_sql
                    .exec(&format!(
                        "INSERT INTO auto_learned_patterns \
                             (pattern, normalized_pattern, category, confidence, status, enabled) \
                         VALUES ('late {n}', 'late {n}', 'late', 0.9, 'approved', true)"
                    ))
                    .await;
            }
            writer_sql.close().await;
            n
        })
    };
    // Let the writer get going, so commits land while the halves are read.
    while sql
        .int("SELECT count(*) FROM auto_learned_patterns WHERE category = 'late'")
        .await
        < 5
    {
        tokio::task::yield_now().await;
    }
    let full = store.load_full().await.expect("load_full");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.expect("writer");
    assert_eq!(full.readers, 2, "a large table is read in two halves");
    let hotplane::store::Cursor::Postgres { snapshot, .. } = full.cursor.clone() else {
        panic!("a PostgreSQL cursor");
    };
    let visible = sql
        .int(&format!(
            "SELECT count(*) FROM auto_learned_patterns WHERE enabled AND status = 'approved' \
               AND pg_visible_in_snapshot(revision::text::xid8, '{snapshot}'::pg_snapshot)"
        ))
        .await;
    let snap = snapshot_of(full);
    assert!(
        written > 0 && visible > 60_000,
        "the writer committed during the test"
    );
    assert_eq!(
        snap.len() as i64,
        visible,
        "the load holds exactly what its snapshot sees"
    );
    assert!(snap.get(60_000).is_some() && snap.get(59_999).is_some());
    sql.close().await;
    store.close().await;
}

/// A hit flush never waits on a row another transaction holds, so it can never be one side of
/// a deadlock with a user's bulk UPDATE (or with another replica's flush): it writes the rows it
/// can lock now and keeps the others' counts for the next flush. Before, the flush locked rows
/// in join order and waited; a bulk UPDATE locking the same rows in another order then
/// deadlocked with it and PostgreSQL aborted one of the two (BENCHMARKS.md, re-imports).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_hit_flush_skips_rows_another_transaction_holds() {
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let sql = db.client().await;
    let a = store
        .learn(&new_pattern("alpha", "alpha", "ops"))
        .await
        .expect("learn")
        .row
        .id;
    let b = store
        .learn(&new_pattern("beta", "beta", "ops"))
        .await
        .expect("learn")
        .row
        .id;
    let used = |id: i64| {
        let sql = &sql;
        async move {
            sql.int(&format!(
                "SELECT COALESCE(times_used, 0)::bigint FROM auto_learned_patterns WHERE id = {id}"
            ))
            .await
        }
    };

    // Another client's transaction holds b's row lock (an UPDATE it has not committed yet).
    let mut tx = sql.pg().begin().await.expect("begin");
    sqlx::query("UPDATE auto_learned_patterns SET confidence = 0.5 WHERE id = $1")
        .bind(b)
        .execute(&mut *tx)
        .await
        .expect("update b");

    let hits = hotplane::hits::HitCounter::default();
    for _ in 0..2 {
        hits.record(a);
    }
    for _ in 0..3 {
        hits.record(b);
    }
    // A hang guard, not a speed target: the flush must not wait for the transaction at all.
    let flushed = tokio::time::timeout(std::time::Duration::from_secs(20), hits.flush(&store, 100))
        .await
        .expect("the hit flush waited for another transaction's row lock");
    flushed.expect("flush");
    assert_eq!(used(a).await, 2, "the free row is written now");
    assert_eq!(used(b).await, 0, "the held row is not written yet");
    assert_eq!(hits.pending(), 3, "the held row's hits are kept, not lost");
    assert_eq!(hits.stats().last_error, None, "a held row is not a failure");

    // The other transaction goes on to the row the flush wrote: nothing of the flush holds it
    // (the unfixed flush would hold `a` and wait for `b`: a deadlock).
    sqlx::query("UPDATE auto_learned_patterns SET confidence = 0.5 WHERE id = $1")
        .bind(a)
        .execute(&mut *tx)
        .await
        .expect("update a after the flush");
    tx.commit().await.expect("the other transaction commits");

    hits.flush(&store, 100).await.expect("second flush");
    assert_eq!((used(a).await, used(b).await), (2, 3));
    assert_eq!(hits.pending(), 0);
    assert_eq!(hits.stats().flushed, 5);
    sql.close().await;
    store.close().await;
}

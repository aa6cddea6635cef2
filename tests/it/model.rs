//! A randomized model test of deltas under concurrent writers (issue 15): N writers run random
//! inserts, updates, disables, status changes, deletes and re-inserts (a delete and an insert
//! of the same id in one transaction) against one store, in overlapping transactions, while a
//! task runs deltas back to back. Once the writers stop and one more delta has run, the served
//! set must equal `SELECT … WHERE enabled AND status = 'approved'`, row for row and field for
//! field; a full reload afterwards must succeed and change nothing.
//!
//! On PostgreSQL a transaction sometimes takes its id first (`pg_current_xact_id()`) and then
//! lets the other writers run before it writes and commits, so late commits with lower ids are
//! common; writers touching the same rows also wait on each other's row locks (a deadlock
//! aborts one transaction, which is then simply rolled back). SQLite serializes writers
//! (`BEGIN IMMEDIATE`), so there the overlap is between open write transactions and the deltas.
//!
//! The suite runs [`DEFAULT_CASES`] seeded cases per backend. To run it longer, or to replay a
//! failing case (its seed is in the panic message):
//!
//! ```sh
//! HOTPLANE_MODEL_CASES=200 cargo nextest run --locked -- model::
//! HOTPLANE_MODEL_SEED=1234 HOTPLANE_MODEL_CASES=1 cargo nextest run --locked -- model::
//! ```

use std::{str::FromStr, time::Duration};

use hotplane::engine::{LoadRequest, Scope, Source};
use sqlx::{
    AssertSqlSafe, ConnectOptions, Connection, Executor, PgConnection, SqliteConnection,
    sqlite::SqliteConnectOptions,
};
use tokio::{sync::watch, task::JoinSet};

use crate::{
    helpers::{Backend, TestApp},
    served::assert_serves_store,
};

/// Cases per backend in the suite.
const DEFAULT_CASES: u64 = 4;
/// Concurrent writers.
const WRITERS: usize = 3;
/// Transactions per writer.
const TRANSACTIONS: usize = 40;
/// Row ids written (few, so writers overlap on rows).
const IDS: u64 = 16;
/// Normalized texts rows use (fewer than ids: duplicate resolution is exercised too).
const TEXTS: u64 = 6;

/// splitmix64: a small, seedable generator (the case must replay from its seed alone).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One writer's connection.
enum Conn {
    Pg(PgConnection),
    Lite(SqliteConnection),
}

impl Conn {
    async fn open(app: &TestApp, backend: Backend) -> Conn {
        match backend {
            Backend::Postgres => Conn::Pg(
                PgConnection::connect(app.db.url())
                    .await
                    .expect("writer connects"),
            ),
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(app.db.url())
                    .expect("sqlite url")
                    .busy_timeout(Duration::from_secs(20));
                Conn::Lite(options.connect().await.expect("writer connects"))
            }
        }
    }

    async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Conn::Pg(c) => c.execute(sql).await.map(drop),
            Conn::Lite(c) => c.execute(sql).await.map(drop),
        }
    }
}

fn insert(rng: &mut Rng, id: u64) -> String {
    format!(
        "INSERT INTO auto_learned_patterns (id, pattern, normalized_pattern, category, \
             confidence, accuracy, status, enabled) \
         VALUES ({id}, 'model raw {id}', 'model text {text}', 'c{cat}', {conf}, {acc}, \
             '{status}', {enabled}) ON CONFLICT DO NOTHING",
        text = rng.below(TEXTS),
        cat = rng.below(5),
        conf = rng.below(101) as f64 / 100.0,
        acc = rng.below(101) as f64 / 100.0,
        status = if rng.chance(80) {
            "approved"
        } else {
            "pending"
        },
        enabled = rng.chance(85),
    )
}

/// One random statement (or two, for a re-insert).
fn statement(rng: &mut Rng) -> String {
    let id = 1 + rng.below(IDS);
    let set = |what: String| format!("UPDATE auto_learned_patterns SET {what} WHERE id = {id}");
    match rng.below(9) {
        0 | 1 => insert(rng, id),
        2 => set(format!(
            "category = 'c{}', confidence = {}",
            rng.below(5),
            rng.below(101) as f64 / 100.0
        )),
        3 => set(format!(
            "normalized_pattern = 'model text {}'",
            rng.below(TEXTS)
        )),
        4 => set(format!("enabled = {}", rng.chance(50))),
        5 => set(format!(
            "status = '{}'",
            if rng.chance(50) {
                "approved"
            } else {
                "pending"
            }
        )),
        6 => format!("DELETE FROM auto_learned_patterns WHERE id = {id}"),
        7 => format!(
            "DELETE FROM auto_learned_patterns WHERE id = {id}; {}",
            insert(rng, id)
        ),
        _ => set(format!("accuracy = {}", rng.below(101) as f64 / 100.0)),
    }
}

/// Lets the other tasks run for a random number of turns (interleaving, not timing).
async fn turns(rng: &mut Rng) {
    for _ in 0..rng.below(6) {
        tokio::task::yield_now().await;
    }
}

/// One writer: `TRANSACTIONS` random transactions; failed ones (deadlocks) are rolled back.
async fn writer(mut conn: Conn, backend: Backend, seed: u64) -> (u32, u32) {
    let mut rng = Rng(seed);
    let (mut committed, mut aborted) = (0, 0);
    for _ in 0..TRANSACTIONS {
        let begin = match backend {
            Backend::Postgres => "BEGIN",
            Backend::Sqlite => "BEGIN IMMEDIATE",
        };
        let mut ok = conn.exec(begin).await.is_ok();
        if ok && backend == Backend::Postgres && rng.chance(50) {
            // Take the transaction id now, and let the others commit first.
            ok = conn.exec("SELECT pg_current_xact_id()").await.is_ok();
            turns(&mut rng).await;
        }
        for _ in 0..1 + rng.below(3) {
            if !ok {
                break;
            }
            let sql = statement(&mut rng);
            ok = conn.exec(&sql).await.is_ok();
            turns(&mut rng).await;
        }
        if ok && conn.exec("COMMIT").await.is_ok() {
            committed += 1;
        } else {
            let _ = conn.exec("ROLLBACK").await;
            aborted += 1;
        }
        turns(&mut rng).await;
    }
    (committed, aborted)
}

fn delta() -> LoadRequest {
    LoadRequest {
        scope: Scope::Delta,
        source: Source::Grpc,
        reason: "model test".into(),
    }
}

async fn one_case(backend: Backend, seed: u64) {
    let app = TestApp::spawn_with(backend, |c| c.poll_interval = Duration::ZERO).await;
    let (stop_tx, stop) = watch::channel(false);
    let engine = app.engine.clone();
    let deltas = tokio::spawn(async move {
        let mut n = 0u32;
        while !*stop.borrow() {
            engine
                .reload(delta(), None)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: a delta failed: {e}"));
            n += 1;
            tokio::task::yield_now().await;
        }
        n
    });
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let conn = Conn::open(&app, backend).await;
        writers.spawn(writer(
            conn,
            backend,
            seed.wrapping_mul(31).wrapping_add(w as u64),
        ));
    }
    let mut committed = 0;
    while let Some(done) = writers.join_next().await {
        committed += done.expect("writer task").0;
    }
    let _ = stop_tx.send(true);
    let deltas = deltas.await.expect("delta task");
    assert!(committed > 0, "seed {seed}: no transaction committed");

    app.engine
        .reload(delta(), None)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: the last delta failed: {e}"));
    let store = app.db.store().await;
    let context = format!(
        "{backend:?} seed {seed} ({committed} transactions committed, {deltas} deltas ran \
         meanwhile), after the last delta"
    );
    assert_serves_store(&app.engine, &store, &context).await;
    let full = app
        .engine
        .reload(
            LoadRequest {
                scope: Scope::Full,
                ..delta()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{context}: the full reload failed: {e}"));
    assert!(
        !full.0.counts.any(),
        "{context}: the full reload found changes the delta missed: {:?}",
        full.0.counts
    );
    assert_serves_store(&app.engine, &store, &context).await;
    store.close().await;
}

/// Seeds of this run: `HOTPLANE_MODEL_SEED` (else a fixed base), then the following ones.
fn seeds() -> impl Iterator<Item = u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let base = var("HOTPLANE_MODEL_SEED").unwrap_or(15_000);
    let cases = var("HOTPLANE_MODEL_CASES").unwrap_or(DEFAULT_CASES);
    (0..cases).map(move |i| base + i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_random_writers_and_deltas_serve_what_the_store_says() {
    for seed in seeds() {
        one_case(Backend::Postgres, seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_random_writers_and_deltas_serve_what_the_store_says() {
    for seed in seeds() {
        one_case(Backend::Sqlite, seed).await;
    }
}

//! SQLite's `REPLACE` conflict resolution deletes the conflicting row without firing delete
//! triggers (unless `recursive_triggers` is on, which other clients' connections need not
//! set), so no tombstone records it. A delta must still stop serving the replaced row.

use std::time::Duration;

use crate::{
    helpers::{Backend, TestApp, served, sql},
    served::assert_serves_store,
};

use super::reload;

fn insert(id: i64, pattern: &str, text: &str) -> String {
    format!(
        "INSERT INTO auto_learned_patterns (id, pattern, normalized_pattern, category, status, \
             enabled) VALUES ({id}, '{pattern}', '{text}', 'before', 'approved', 1)"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replace_of_an_existing_pattern_stops_serving_the_replaced_row() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, |c| c.poll_interval = Duration::ZERO).await;
    sql(
        &app.db,
        &[
            &insert(1, "raw one", "replace old one"),
            &insert(2, "raw two", "replace old two"),
            &insert(3, "raw three", "replace old three"),
            &insert(4, "raw four", "replace kept four"),
        ],
    )
    .await;
    reload(&mut app, false).await;
    assert!(served(&mut app, "replace old one").await.is_some());

    sql(
        &app.db,
        &[
            // A new row (new id) takes row 1's raw text: row 1 is deleted by the conflict.
            "REPLACE INTO auto_learned_patterns (pattern, normalized_pattern, category, status, \
                 enabled) VALUES ('raw one', 'replace new one', 'after', 'approved', 1)",
            // Row 2's raw text moves to row 3 by UPDATE OR REPLACE: row 2 is deleted.
            "UPDATE OR REPLACE auto_learned_patterns SET pattern = 'raw two', \
                 normalized_pattern = 'replace moved three' WHERE id = 3",
            // A conflict that is ignored deletes nothing: row 4 keeps being served.
            "INSERT OR IGNORE INTO auto_learned_patterns (pattern, normalized_pattern, status) \
                 VALUES ('raw four', 'replace ignored', 'approved')",
        ],
    )
    .await;
    reload(&mut app, false).await;
    for gone in ["replace old one", "replace old two", "replace old three"] {
        assert!(
            served(&mut app, gone).await.is_none(),
            "{gone:?} was replaced but is still served"
        );
    }
    for kept in [
        "replace new one",
        "replace moved three",
        "replace kept four",
    ] {
        assert!(
            served(&mut app, kept).await.is_some(),
            "{kept:?} not served"
        );
    }
    let store = app.db.store().await;
    assert_serves_store(&app.engine, &store, "after the delta").await;
    let full = reload(&mut app, true).await;
    assert!(!full.changed, "the delta had served it all: {full:?}");
    store.close().await;
}

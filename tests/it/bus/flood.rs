//! After a flood of bus messages, the allocator is asked to give freed memory back: once per
//! burst, once the burst is over, not per message (issue 16, item 7). What that does to the
//! resident memory is measured, not asserted (BENCHMARKS.md, "Bus flood: resident memory"):
//! RSS in a test shares the process with every other test.

use std::sync::Arc;

use hotplane::{bus::memory, pb};

use super::{bus_config, bus_status, channel, redis_url, start};
use crate::{
    db::TestDb,
    helpers::{TestApp, eventually},
};

/// PUBLISHes `n` messages in one pipeline, as fast as Redis takes them.
async fn flood(channel: &str, n: u64) {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let mut pipe = redis::pipe();
    for _ in 0..n {
        // Rejected without a load: the burst alone is what is being tested.
        pipe.cmd("PUBLISH")
            .arg(channel)
            .arg(r#"{"action":"noop"}"#)
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.expect("flood");
}

async fn wait(app: &TestApp, what: &str, ok: impl Fn(&pb::BusStatus) -> bool) -> pb::BusStatus {
    eventually(what, || async {
        let s = bus_status(app).await;
        ok(&s).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_given_back_once_per_burst_after_it_is_over() {
    let db = Arc::new(TestDb::sqlite().await);
    let ch = channel("hotplane:flood-memory");
    let app = start(bus_config(&db, &redis_url(), &ch), &db).await;
    wait(&app, "the bus to subscribe", |s| s.connected).await;

    let n = 3 * memory::BURST;
    flood(&ch, n).await;
    let s = wait(&app, "memory given back after the flood", |s| {
        s.messages_received == n && s.memory_releases > 0
    })
    .await;
    assert_eq!(s.memory_releases, 1, "once for the burst, not per message");

    // A second flood is a second burst.
    flood(&ch, n).await;
    let s = wait(&app, "memory given back after the second flood", |s| {
        s.messages_received == 2 * n && s.memory_releases > 1
    })
    .await;
    assert_eq!(s.memory_releases, 2);
}

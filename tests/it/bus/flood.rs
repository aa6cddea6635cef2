//! After a flood of bus messages, the allocator is asked to give freed memory back: once per
//! burst, once the burst is over, not per message (issue 16, item 7). What that does to the
//! resident memory is measured, not asserted (BENCHMARKS.md, "Bus flood: resident memory"):
//! RSS in a test shares the process with every other test.

use std::time::Duration;

use hotplane::bus::{Bus, BusOptions, BusStatus, memory};
use tokio::sync::watch;

use super::{channel, redis_url};
use crate::helpers::{Backend, TestApp, eventually};

/// A bus of its own beside `app` (the server's own bus status has no such counter in
/// `GetStatus`), on `channel`.
fn start_bus(app: &TestApp, channel: &str) -> (Bus, watch::Sender<bool>) {
    let opts = BusOptions {
        redis_url: redis_url(),
        ca_file: None,
        channel: channel.to_owned(),
        secret: None,
        instance_id: "flood-test".into(),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ping_interval: Duration::from_millis(200),
        timeout: Duration::from_secs(1),
        replay_window: Duration::from_secs(60),
        allow_unsigned_rollback: false,
    };
    let (stop, stopped) = watch::channel(false);
    let (bus, _task) = Bus::start(opts, app.engine.clone(), None, stopped).expect("bus starts");
    (bus, stop)
}

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

async fn wait(bus: &Bus, what: &str, ok: impl Fn(&BusStatus) -> bool) -> BusStatus {
    eventually(what, || async {
        let s = bus.status();
        ok(&s).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_given_back_once_per_burst_after_it_is_over() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ch = channel("hotplane:flood-memory");
    let (bus, _stop) = start_bus(&app, &ch);
    wait(&bus, "the bus to subscribe", |s| s.connected).await;

    let n = 3 * memory::BURST;
    flood(&ch, n).await;
    let s = wait(&bus, "memory given back after the flood", |s| {
        s.messages_received == n && s.memory_releases > 0
    })
    .await;
    assert_eq!(s.memory_releases, 1, "once for the burst, not per message");

    // A second flood is a second burst.
    flood(&ch, n).await;
    let s = wait(&bus, "memory given back after the second flood", |s| {
        s.messages_received == 2 * n && s.memory_releases > 1
    })
    .await;
    assert_eq!(s.memory_releases, 2);
}

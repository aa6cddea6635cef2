//! Reconnect timing against a real redis-server of the test's own: after an outage a replica is
//! back about a second after Redis is, and a flapping Redis (connections dropped soon after they
//! are made) sees the delays grow instead of being hammered. The delays are read from
//! `GetStatus.bus` (what the subscriber scheduled), not measured with a clock.

use std::{sync::Arc, time::Duration};

use hotplane::pb;

use super::{bus_config, bus_status, channel, start, wait_bus};
use crate::{
    db::TestDb,
    helpers::{DEADLINE, TestApp},
};

use super::connection::PrivateRedis;

/// The longest delay between the first retries of an outage (`bus::reconnect::FAST_CAP`).
const FAST_CAP: Duration = Duration::from_secs(1);

fn millis(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().expect("a timestamp");
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

async fn app_on(redis: &PrivateRedis, db: &Arc<TestDb>) -> TestApp {
    let mut config = bus_config(db, &redis.url(), &channel("hotplane:reconnect"));
    // The defaults' range: without the cap, delays would pass a second after ~1.5 s of outage.
    config.bus_reconnect_min = Duration::from_millis(50);
    config.bus_reconnect_max = Duration::from_secs(30);
    start(config, db).await
}

/// Redis is stopped long enough for an uncapped backoff to pass a second between attempts (8
/// failed attempts: 50 ms doubling would reach 3.2 s); every retry is scheduled within about a
/// second, and once redis-server is back on the same port the replica resubscribes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_first_retries_come_about_every_second() {
    const ATTEMPTS: usize = 8;
    let mut redis = PrivateRedis::start().await;
    let db = Arc::new(TestDb::sqlite().await);
    let app = app_on(&redis, &db).await;
    redis.stop().await;

    // Every failed attempt stamps `lastErrorAt` and schedules `nextRetryAt`; each is checked.
    let mut seen: Vec<i64> = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.len() < ATTEMPTS {
        let st = bus_status(&app).await;
        if !st.connected && st.next_retry_at.is_some() {
            let failed_at = millis(&st.last_error_at);
            if seen.last() != Some(&failed_at) {
                let delay = millis(&st.next_retry_at) - failed_at;
                assert!(
                    delay <= FAST_CAP.as_millis() as i64 + 50,
                    "attempt {}: next retry scheduled {delay} ms later",
                    seen.len() + 1
                );
                seen.push(failed_at);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {} failed attempts",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    redis.restart().await;
    wait_bus(&app, "the bus to resubscribe", |s| {
        s.connected && s.reconnects == 1
    })
    .await;
}

/// Each subscription is dropped by the server soon after it is made (`CLIENT KILL TYPE
/// pubsub`): the delay before each new subscription keeps growing (doubling from 50 ms, within
/// the outage's one-second cap), instead of starting over at 50 ms after every subscribe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_redis_sees_growing_delays() {
    let redis = PrivateRedis::start().await;
    let db = Arc::new(TestDb::sqlite().await);
    let app = app_on(&redis, &db).await;
    let mut conn = redis.connection().await;
    // The least each reconnect must have waited: 50 ms doubling (jitter only adds), then the
    // cap's lower half.
    let floors_ms = [50, 100, 200, 400, 500];
    for (i, floor) in floors_ms.into_iter().enumerate() {
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .expect("CLIENT KILL");
        assert_eq!(killed, 1, "our subscription");
        let n = (i + 1) as u64;
        let st: pb::BusStatus = wait_bus(&app, "the next subscription", |s| {
            s.connected && s.reconnects == n
        })
        .await;
        let waited = millis(&st.connected_since) - millis(&st.last_error_at);
        assert!(
            waited + 1 >= floor, // timestamps in whole milliseconds
            "reconnect {n} came {waited} ms after the loss; at least {floor} ms expected"
        );
    }
}

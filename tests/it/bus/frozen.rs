//! A Redis that stops answering (SIGSTOP) while writes arrive: a write's answer does not wait
//! for the bus. The announcements go out after the answers, in order, once Redis answers again.

use std::{sync::Arc, time::Duration};

use rustix::process::Signal;

use super::{bus_config, bus_status, channel, start, wait_bus, wait_served};
use crate::{
    db::TestDb,
    helpers::{DEADLINE, learn_req, served},
};

use super::connection::PrivateRedis;

const WRITES: usize = 10;

/// Ten concurrent LearnPattern calls on a replica whose Redis is frozen all answer (served, no
/// publish error) while Redis is still frozen, although every Redis call may take up to the
/// bus timeout (60 s here, so waiting for even one announcement would miss the deadline).
/// Once Redis thaws, the queued announcements reach the other replica, which serves every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answer_while_redis_is_frozen_and_announce_after_it_thaws() {
    let redis = PrivateRedis::start().await;
    let db = Arc::new(TestDb::postgres().await);
    let ch = channel("hotplane:frozen");
    let config = || {
        let mut c = bus_config(&db, &redis.url(), &ch);
        c.bus_timeout = Duration::from_secs(60);
        c.bus_ping_interval = Duration::from_secs(60);
        // Ten writes at once from one caller: the per-caller rate limit is not under test.
        c.auth.admin_rate = 0.0;
        c
    };
    let mut a = start(config(), &db).await;
    let mut b = start(config(), &db).await;
    // The command connection is open (a learn announced), so the freeze hits a live socket.
    a.patterns
        .learn_pattern(learn_req("prima del gelo", "x", 0.95))
        .await
        .expect("learn");
    wait_served(&mut b, "prima del gelo").await;
    wait_bus(&a, "the first announcement", |s| s.published == 1).await;

    redis.signal(Signal::STOP);
    let writes: Vec<_> = (0..WRITES)
        .map(|i| {
            let mut client = a.patterns.clone();
            tokio::spawn(async move {
                client
                    .learn_pattern(learn_req(&format!("scritto nel gelo {i}"), "x", 0.95))
                    .await
                    .map(|r| r.into_inner())
            })
        })
        .collect();
    let answered = tokio::time::timeout(DEADLINE, async {
        let mut out = Vec::new();
        for w in writes {
            out.push(w.await.expect("the write task"));
        }
        out
    })
    .await;
    // Still frozen here: whatever answered did so without Redis.
    let st = bus_status(&a).await;
    redis.signal(Signal::CONT);
    let answered = answered.expect("every write answers while Redis is frozen");
    for r in answered {
        let r = r.expect("the write succeeds");
        assert!(r.served, "{r:?}");
        assert_eq!(r.publish_error, "", "queued, not failed: {r:?}");
    }
    assert_eq!(st.published, 1, "nothing could be published while frozen");
    for i in 0..WRITES {
        assert!(
            served(&mut a, &format!("scritto nel gelo {i}"))
                .await
                .is_some()
        );
    }

    // After the thaw the announcements go out, and the other replica serves every row through
    // them (the poll is off, and B's subscription was never lost: no catch-up either).
    for i in 0..WRITES {
        wait_served(&mut b, &format!("scritto nel gelo {i}")).await;
    }
    let st = wait_bus(&a, "every announcement", |s| {
        s.published == 1 + WRITES as u64
    })
    .await;
    assert_eq!(st.publish_failures, 0);
    assert_eq!(bus_status(&b).await.reconnects, 0);
}

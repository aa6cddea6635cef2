//! Hostile bus messages: what someone who can PUBLISH on an unsigned channel (but holds no
//! secret) can and cannot do. The content hash is public (anonymous GetStatus, fleet keys), so a
//! message carrying it proves nothing. On a signed channel: replaying a captured message.

use std::{sync::Arc, time::Duration};

use hotplane::bus::{Secret, signing::seal};

use super::{
    bus_config, bus_status, channel, insert, publish, redis_url, settle, start, wait_bus,
    wait_not_served, wait_served,
};
use crate::{
    db::TestDb,
    helpers::{DEADLINE, TestApp, learn_req, patterns_status, served, sql},
};

/// An unsigned `rollback` naming the content hash every replica serves (the one-message freeze
/// of the chaos run) is refused and counted: the replica is not pinned, and a row disabled
/// afterwards stops being served at the next bus message. Unsigned rollbacks to an older
/// retained content are refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_rollback_cannot_pin_a_replica() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:hostile-rollback"));
    let mut app = start(bus_config(&db, &url, &ch), &db).await;
    let old = patterns_status(&app)
        .await
        .current
        .expect("gen")
        .content_hash;
    sql(&db, &[&insert(11, "riga da congelare")]).await;
    publish(&url, &ch, r#"{"action":"reload","pattern_id":11}"#).await;
    wait_served(&mut app, "riga da congelare").await;
    let now = patterns_status(&app)
        .await
        .current
        .expect("gen")
        .content_hash;

    for (i, hash) in [&now, &old].into_iter().enumerate() {
        let msg = format!(r#"{{"action":"rollback","content_hash":"{hash}"}}"#);
        publish(&url, &ch, msg).await;
        let refused = (i + 1) as u64;
        wait_bus(&app, "the unsigned rollback to be refused", |s| {
            s.rejected.get("unsigned_rollback") == Some(&refused)
        })
        .await;
    }
    let st = bus_status(&app).await;
    assert_eq!((st.rollbacks_followed, st.rollbacks_failed), (0, 0));
    settle(&app).await;
    let t = patterns_status(&app).await;
    assert!(!t.pinned, "an unsigned message must not pin: {t:?}");
    assert_eq!(t.current.expect("gen").content_hash, now);

    // Nothing is held: a disable written elsewhere and announced is served at once.
    sql(
        &db,
        &["UPDATE auto_learned_patterns SET enabled = false, status = 'disabled' WHERE id = 11"],
    )
    .await;
    publish(&url, &ch, r#"{"action":"reload","pattern_id":11}"#).await;
    wait_not_served(&app, "riga da congelare").await;
    assert_eq!(patterns_status(&app).await.pending_changes, 0);
}

/// With unsigned rollbacks enabled by the operator, a rollback to the content a replica already
/// serves is followed without pinning it: later changes are served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_to_the_content_already_served_never_pins() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:hostile-same"));
    let mut config = bus_config(&db, &url, &ch);
    config.bus_allow_unsigned_rollback = true;
    let mut app = start(config, &db).await;
    app.patterns
        .learn_pattern(learn_req("contenuto attuale", "x", 0.95))
        .await
        .expect("learn");
    let hash = patterns_status(&app)
        .await
        .current
        .expect("gen")
        .content_hash;
    let msg = format!(r#"{{"action":"rollback","content_hash":"{hash}"}}"#);
    publish(&url, &ch, msg).await;
    wait_bus(&app, "the rollback to be followed", |s| {
        s.rollbacks_followed == 1
    })
    .await;
    assert!(
        !patterns_status(&app).await.pinned,
        "nothing to roll back: not pinned"
    );
    sql(&db, &[&insert(12, "dopo il rollback nullo")]).await;
    publish(&url, &ch, r#"{"action":"reload","pattern_id":null}"#).await;
    wait_served(&mut app, "dopo il rollback nullo").await;
}

/// An unsigned `invalidate` cannot take a row out of service against the store: it is read
/// from the store like a `reload` of the row (which still serves it). A signed one stops
/// serving the row at once, as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_invalidate_cannot_override_the_store() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:hostile-invalidate"));
    let mut app = start(bus_config(&db, &url, &ch), &db).await;
    sql(&db, &[&insert(13, "riga legittima")]).await;
    publish(&url, &ch, r#"{"action":"reload","pattern_id":13}"#).await;
    wait_served(&mut app, "riga legittima").await;
    // A delta moves the store cursor past the row, so a later delta does not read it again.
    settle(&app).await;

    publish(&url, &ch, r#"{"action":"invalidate","pattern_id":13}"#).await;
    wait_bus(&app, "the invalidate to be handled", |s| {
        s.messages_applied == 2
    })
    .await;
    settle(&app).await;
    assert!(
        served(&mut app, "riga legittima").await.is_some(),
        "the store still serves row 13"
    );
    // Once the store agrees (the row is disabled), the same message takes it out.
    sql(
        &db,
        &["UPDATE auto_learned_patterns SET enabled = false, status = 'disabled' WHERE id = 13"],
    )
    .await;
    publish(&url, &ch, r#"{"action":"invalidate","pattern_id":13}"#).await;
    wait_not_served(&app, "riga legittima").await;
}

/// Signed mode (a guard: it holds today and must keep holding): an unsigned rollback is
/// refused as `unsigned`, not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mode_refuses_unsigned_rollbacks_as_unsigned() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:hostile-signed"));
    let mut config = bus_config(&db, &url, &ch);
    config.bus_secret = Some(Secret::new("the fleet's secret"));
    let app = start(config, &db).await;
    let hash = patterns_status(&app)
        .await
        .current
        .expect("gen")
        .content_hash;
    let msg = format!(r#"{{"action":"rollback","content_hash":"{hash}"}}"#);
    publish(&url, &ch, msg).await;
    wait_bus(&app, "the unsigned message to be refused", |s| {
        s.rejected.get("unsigned") == Some(&1)
    })
    .await;
    assert!(!patterns_status(&app).await.pinned);
}

/// A flood of messages (pipelined as fast as Redis takes them) is fully accounted for: each
/// message is either handled or dropped by the bounded intake and counted as `overflow`, and
/// a row written before the flood is served afterwards (by the messages or by the catch-up
/// that stands in for dropped ones). The bound itself is unit-tested in `bus::intake`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_handled_or_counted_as_overflow() {
    const FLOOD: u64 = 50_000;
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:hostile-flood"));
    let mut config = bus_config(&db, &url, &ch);
    // A PING's reply queues behind the flood: the tests' 1 s timeout would replace the
    // connection (losing messages to the catch-up) before a debug build reads them all.
    config.bus_timeout = Duration::from_secs(60);
    let mut app = start(config, &db).await;
    sql(&db, &[&insert(14, "prima della piena")]).await;
    let client = redis::Client::open(url.as_str()).expect("redis url");
    // One pipeline of the whole flood: its replies take longer than the default timeout on a
    // loaded machine.
    let patient = redis::AsyncConnectionConfig::new().set_response_timeout(Some(DEADLINE));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&patient)
        .await
        .expect("connects");
    let mut pipe = redis::pipe();
    for i in 1..=FLOOD {
        pipe.cmd("PUBLISH")
            .arg(&ch)
            .arg(format!(r#"{{"action":"reload","pattern_id":{i}}}"#))
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.expect("flood");
    let st = wait_bus(&app, "the whole flood", |s| s.messages_received == FLOOD).await;
    let overflow = *st
        .rejected
        .get("overflow")
        .expect("overflow is a listed reason");
    assert_eq!(st.messages_applied + overflow, FLOOD, "{st:?}");
    println!(
        "{FLOOD} messages: {} handled, {overflow} dropped",
        st.messages_applied
    );
    wait_served(&mut app, "prima della piena").await;
    assert!(bus_status(&app).await.connected);
}

/// Signed mode: a captured signed `invalidate`, accepted once, is refused when replayed to the
/// same replica after a restart (the replay memory did not survive it), counted as
/// `before_start`; the row keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_message_replayed_after_a_restart_is_refused() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:hostile-restart"));
    let secret = Secret::new("the fleet's secret");
    let config = || {
        let mut c = bus_config(&db, &url, &ch);
        c.bus_secret = Some(secret.clone());
        c
    };
    let mut first = start(config(), &db).await;
    sql(&db, &[&insert(15, "riga catturata")]).await;
    settle(&first).await;
    wait_served(&mut first, "riga catturata").await;
    let ts = chrono::Utc::now().timestamp();
    let serde_json::Value::Object(fields) = serde_json::json!({
        "action": "invalidate", "pattern_id": 15, "event_id": "captured-1", "ts": ts,
    }) else {
        unreachable!("an object literal")
    };
    let captured = seal(fields, Some(&secret));
    publish(&url, &ch, &captured).await;
    wait_not_served(&first, "riga catturata").await;
    first.stop().await.expect("first run stops");

    // `ts` is in whole seconds (as publishers write it), and so is the start it is compared
    // with: a real restart takes longer than this wait for the clock's next second.
    let next_second = std::time::UNIX_EPOCH + Duration::from_secs(ts as u64 + 1);
    if let Ok(left) = next_second.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    let mut restarted: TestApp = start(config(), &db).await;
    wait_served(&mut restarted, "riga catturata").await;
    publish(&url, &ch, &captured).await;
    let st = wait_bus(&restarted, "the replay to be refused", |s| {
        s.messages_received == 1
    })
    .await;
    settle(&restarted).await;
    assert!(
        served(&mut restarted, "riga catturata").await.is_some(),
        "the replayed invalidate took the row out: {st:?}"
    );
    assert_eq!(st.messages_applied, 0);
    assert_eq!(
        st.rejected.get("before_start"),
        Some(&1),
        "{:?}",
        st.rejected
    );
}

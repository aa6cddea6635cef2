//! `Reload(TARGET_BUS)`: the Redis connection is swapped blue/green. The new connection is
//! subscribed before the old one unsubscribes, so a message published at any moment of the swap
//! reaches one of them; requests keep being served throughout; the publisher and the fleet
//! heartbeat move to the new Redis; a failure keeps the old connection.
//!
//! The messages here are `invalidate`s on purpose: the catch-up delta that follows every
//! subscribe re-reads changed rows from the store, so it would hide a lost `reload`; nothing but
//! the message itself stops serving an unchanged row, so a lost `invalidate` shows at the end.
//! Unsigned ones read the store instead (see `hostile`), so the unsigned tests here enable
//! `--bus-allow-unsigned-rollback`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hotplane::{bus::Secret, bus::signing::seal, config::Config, pb};
use redis::aio::MultiplexedConnection;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::watch,
    task::JoinHandle,
};
use tonic::Code;

use super::{bus_config, bus_status, channel, redis_url, start, status, wait_bus};
use crate::{
    bus::connection::PrivateRedis,
    db::TestDb,
    helpers::{DEADLINE, TestApp, eventually, sql},
    load::Load,
};

/// Rows `riga 1` .. `riga ROWS` (ids 1..=ROWS), served at start; the messages invalidate them.
/// (Below the engine's bound on pending invalidations, 4,096, so none can be dropped.)
const ROWS: usize = 3000;

/// The publisher holds back its last this many ids until the swap returned, so that it is
/// still publishing when the swap ends, however slow the machine.
const RESERVE: usize = 300;

fn bus_reload(redis_url: &str) -> pb::ReloadRequest {
    pb::ReloadRequest {
        target: pb::Target::Bus.into(),
        redis_url: redis_url.into(),
        reason: "move the bus".into(),
        ..Default::default()
    }
}

/// Migrates, then inserts the rows with plain SQL (PostgreSQL), leaving the id sequence past
/// them.
async fn seed(db: &TestDb) {
    db.store().await.close().await;
    sql(
        db,
        &[
            &format!(
                "INSERT INTO auto_learned_patterns (id, pattern, normalized_pattern, category, \
                 confidence, times_used, times_correct, accuracy, created_by, enabled, status) \
                 SELECT g, 'raw ' || g, 'riga ' || g, 'bus', 0.95, 0, 0, 0.5, 'manual', true, \
                 'approved' FROM generate_series(1, {ROWS}) g"
            ),
            "SELECT setval(pg_get_serial_sequence('auto_learned_patterns', 'id'), 1000000)",
        ],
    )
    .await;
}

/// Which of ids 1..=ROWS are served, by BatchMatchPatterns.
async fn served_ids(app: &TestApp) -> Vec<usize> {
    let mut client = app.patterns.clone();
    let mut served = Vec::new();
    for chunk in (1..=ROWS).collect::<Vec<_>>().chunks(1000) {
        let results = client
            .batch_match_patterns(pb::BatchMatchPatternsRequest {
                queries: chunk.iter().map(|i| format!("riga {i}")).collect(),
                ..Default::default()
            })
            .await
            .expect("batch match")
            .into_inner()
            .results;
        served.extend(
            chunk
                .iter()
                .zip(results)
                .filter(|(_, r)| r.matched)
                .map(|(i, _)| *i),
        );
    }
    served
}

/// A publisher that sends one message per id, 1, 2, 3..., until stopped (or out of ids);
/// `published` counts the ids sent. Each message goes to every connection given, in order.
struct Publisher {
    published: watch::Receiver<usize>,
    /// Set once the swap returned (see [`RESERVE`]).
    swapped: watch::Sender<bool>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<usize>,
}

impl Publisher {
    fn start(
        mut conns: Vec<MultiplexedConnection>,
        ch: String,
        message: impl Fn(usize) -> String + Send + 'static,
    ) -> Publisher {
        let (tx, published) = watch::channel(0);
        let (swapped, mut swap_done) = watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let task = tokio::spawn(async move {
            let mut sent = 0;
            while sent < ROWS && !halt.load(Ordering::Relaxed) {
                if sent == ROWS - RESERVE {
                    let _ = swap_done.wait_for(|done| *done).await;
                }
                let text = message(sent + 1);
                for conn in &mut conns {
                    redis::cmd("PUBLISH")
                        .arg(&ch)
                        .arg(&text)
                        .query_async::<i64>(conn)
                        .await
                        .expect("PUBLISH");
                }
                sent += 1;
                tx.send_replace(sent);
            }
            sent
        });
        Publisher {
            published,
            swapped,
            stop,
            task,
        }
    }

    fn count(&self) -> usize {
        *self.published.borrow()
    }

    /// Waits until `n` ids in all were sent.
    async fn reach(&mut self, n: usize) {
        tokio::time::timeout(DEADLINE, self.published.wait_for(|p| *p >= n))
            .await
            .expect("the publisher makes progress")
            .expect("the publisher runs");
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("publisher task")
    }
}

/// Runs a swap while the publisher sends: some ids before it began, `after` more after it
/// returned. Returns the swap's result and how many ids were sent.
async fn swap_while_publishing<T>(
    mut publisher: Publisher,
    after: usize,
    swap: impl Future<Output = T>,
) -> (T, usize) {
    publisher.reach(200).await;
    let began = publisher.count();
    let out = swap.await;
    let returned = publisher.count();
    publisher.swapped.send_replace(true);
    publisher.reach(returned + after).await;
    let sent = publisher.stop().await;
    assert!(
        began > 0 && sent > returned,
        "the swap happened mid-stream: {began} sent before it, {returned} when it returned, \
         {sent} in all"
    );
    (out, sent)
}

/// Waits until exactly ids 1..=sent are invalidated (and the rest still served).
async fn wait_invalidated(app: &TestApp, sent: usize) {
    let still = eventually("every published invalidation to be applied", || async {
        let served = served_ids(app).await;
        (served.first() == Some(&(sent + 1)) || (sent == ROWS && served.is_empty()))
            .then_some(served)
    })
    .await;
    assert_eq!(
        still.len(),
        ROWS - sent,
        "ids after the last message are served"
    );
}

/// PUBSUB NUMSUB of a channel on a private server.
async fn numsub(redis: &PrivateRedis, ch: &str) -> i64 {
    let mut conn = redis.connection().await;
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(ch)
        .query_async(&mut conn)
        .await
        .expect("PUBSUB NUMSUB");
    n
}

/// Whether this instance has a fleet entry on a private server.
async fn in_fleet(redis: &PrivateRedis, ch: &str, id: &str) -> bool {
    let mut conn = redis.connection().await;
    redis::cmd("EXISTS")
        .arg(format!("{ch}:fleet:{id}"))
        .query_async::<bool>(&mut conn)
        .await
        .expect("EXISTS")
}

/// The swap to a second redis-server, under MatchPattern load and a writer, with a legacy
/// publisher sending continuously to both servers (as a publisher moving with the fleet would):
/// every message is applied (none falls between the two subscriptions), no request fails, the
/// writer's announcements never fail, and everything the bus does moves to the new server.
/// Then a bad URL, an unreachable server and a refused password each keep the new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_to_a_second_redis_loses_no_message_and_fails_no_request() {
    let (blue, green) = (PrivateRedis::start().await, PrivateRedis::start().await);
    let db = Arc::new(TestDb::postgres().await);
    seed(&db).await;
    let ch = channel("hotplane:swap");
    let mut config = bus_config(&db, &blue.url(), &ch);
    config.bus_allow_unsigned_rollback = true;
    config.fleet_heartbeat = Duration::from_millis(100);
    // The writer learns in a loop on purpose: the per-caller rate limit is off (see auth.rs).
    config.auth.admin_rate = 0.0;
    let app = start(config, &db).await;
    let id = status(&app).await.instance_id;
    eventually("our fleet entry on blue", || async {
        in_fleet(&blue, &ch, &id).await.then_some(())
    })
    .await;
    assert_eq!(served_ids(&app).await.len(), ROWS);
    let mut events = app
        .reload
        .clone()
        .watch_status(pb::WatchStatusRequest {
            targets: vec![pb::Target::Bus.into()],
            kinds: [
                pb::EventKind::ReloadStarted,
                pb::EventKind::ReloadSucceeded,
                pb::EventKind::ReloadFailed,
                pb::EventKind::BusConnected,
            ]
            .map(Into::into)
            .to_vec(),
            after_event_id: 0,
        })
        .await
        .expect("watch")
        .into_inner();

    // validate_only subscribes to green and drops it: nothing moves.
    let checked = app
        .reload
        .clone()
        .reload(pb::ReloadRequest {
            validate_only: true,
            ..bus_reload(&green.url())
        })
        .await
        .expect("validate")
        .into_inner();
    assert!(checked.validate_only);
    assert_eq!(checked.redis_url, green.url());
    let st = bus_status(&app).await;
    assert_eq!((st.redis_url.as_str(), st.swaps), (blue.url().as_str(), 0));

    let load = Load::start(&app, 3, "riga 1", "scritto durante lo scambio del bus");
    let conns = vec![blue.connection().await, green.connection().await];
    let publisher = Publisher::start(conns, ch.clone(), |i| {
        format!(r#"{{"action":"invalidate","pattern_id":{i}}}"#)
    });
    let mut client = app.reload.clone();
    let (swapped, sent) = swap_while_publishing(
        publisher,
        200,
        load.around(20, client.reload(bus_reload(&green.url()))),
    )
    .await;
    let swapped = swapped.expect("swap").into_inner();
    let counts = load.stop().await;
    counts.assert_none_failed();
    assert_eq!(
        counts.publish_errors.load(Ordering::Relaxed),
        0,
        "every write's announcement reached a Redis"
    );
    assert_eq!(swapped.target, pb::Target::Bus as i32);
    assert_eq!(
        (swapped.previous_redis_url, swapped.redis_url),
        (blue.url(), green.url())
    );

    wait_invalidated(&app, sent).await;
    let st = bus_status(&app).await;
    assert!(st.connected && st.swapped_at.is_some());
    assert_eq!((st.redis_url.as_str(), st.swaps), (green.url().as_str(), 1));
    assert_eq!(st.reconnects, 0, "a swap is not a reconnect");
    assert!(st.rejected.values().all(|n| *n == 0), "{:?}", st.rejected);
    assert_eq!(
        (numsub(&blue, &ch).await, numsub(&green, &ch).await),
        (0, 1)
    );
    eventually("the fleet entry to move from blue to green", || async {
        (in_fleet(&green, &ch, &id).await && !in_fleet(&blue, &ch, &id).await).then_some(())
    })
    .await;
    let mut seen = Vec::new();
    while seen.last() != Some(&pb::EventKind::ReloadSucceeded) {
        let e = tokio::time::timeout(DEADLINE, events.message())
            .await
            .expect("an event before the deadline")
            .expect("stream ok")
            .expect("stream open");
        match e.kind() {
            pb::EventKind::Snapshot | pb::EventKind::Heartbeat => {}
            kind => seen.push(kind),
        }
    }
    assert_eq!(
        seen,
        [
            pb::EventKind::ReloadStarted,
            pb::EventKind::BusConnected,
            pb::EventKind::ReloadSucceeded
        ]
    );

    // Failures keep green: a URL that does not parse, a server that is not there, a password
    // the server refuses.
    let err = client
        .reload(bus_reload("http://not-redis"))
        .await
        .expect_err("not a Redis URL");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("redis_url"), "{}", err.message());
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    for url in [
        format!("redis://127.0.0.1:{nobody}"),
        format!("redis://:wrong@127.0.0.1:{}", green.port),
    ] {
        let err = client.reload(bus_reload(&url)).await.expect_err(&url);
        assert_eq!(err.code(), Code::FailedPrecondition, "{url}");
        assert!(
            err.message().contains("current one keeps running"),
            "{}",
            err.message()
        );
        let details = tonic_types::StatusExt::get_error_details(&err);
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("BUS_SWAP_FAILED", "hotplane.dev"),
            "{url}"
        );
    }
    // Each failure is announced: started, then failed with the error.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let e = tokio::time::timeout(DEADLINE, events.message())
            .await
            .expect("an event before the deadline")
            .expect("stream ok")
            .expect("stream open");
        match e.kind() {
            pb::EventKind::Snapshot | pb::EventKind::Heartbeat => {}
            kind => seen.push((kind, e.error.is_empty())),
        }
    }
    let (started, failed) = (
        (pb::EventKind::ReloadStarted, true),
        (pb::EventKind::ReloadFailed, false),
    );
    assert_eq!(seen, [started, failed, started, failed, started, failed]);
    let st = bus_status(&app).await;
    assert_eq!((st.redis_url.as_str(), st.swaps), (green.url().as_str(), 1));
    assert!(st.connected);
    // Green still carries messages.
    green
        .publish(
            &ch,
            &format!(r#"{{"action":"invalidate","pattern_id":{ROWS}}}"#),
        )
        .await;
    eventually("the last row to be invalidated through green", || async {
        (!served_ids(&app).await.contains(&ROWS)).then_some(())
    })
    .await;
}

/// `redis-cli MONITOR` on a private server: every command it processes, in its order.
struct Monitor {
    child: Child,
    lines: JoinHandle<Vec<String>>,
}

impl Monitor {
    /// Starts monitoring and waits until the server confirmed it.
    async fn start(redis: &PrivateRedis) -> Monitor {
        let mut child = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "MONITOR"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-cli runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let lines = tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            let mut ready_tx = Some(ready_tx);
            let mut lines = Vec::new();
            while let Ok(Some(line)) = reader.next_line().await {
                match ready_tx.take() {
                    Some(tx) => {
                        let _ = tx.send(line);
                    }
                    None => lines.push(line),
                }
            }
            lines
        });
        let first = tokio::time::timeout(DEADLINE, ready)
            .await
            .expect("MONITOR answers")
            .expect("MONITOR output");
        assert_eq!(first, "OK");
        Monitor { child, lines }
    }

    /// Stops monitoring; returns the (UN)SUBSCRIBE commands seen, as (command, client address).
    async fn subscriptions(mut self) -> Vec<(String, String)> {
        self.child.kill().await.expect("stop redis-cli");
        let lines = self.lines.await.expect("reader task");
        lines
            .iter()
            .filter_map(|l| {
                // 1700000000.123456 [0 127.0.0.1:54321] "SUBSCRIBE" "channel"
                let (_, rest) = l.split_once(" [")?;
                let (client, rest) = rest.split_once("] ")?;
                let command = rest.split('"').nth(1)?;
                let client = client.split(' ').nth(1)?;
                command
                    .ends_with("SUBSCRIBE")
                    .then(|| (command.to_owned(), client.to_owned()))
            })
            .collect()
    }
}

/// A reconnect to the same Redis (empty redis_url), in signed mode, while signed events are
/// published continuously. On the server's own timeline (MONITOR), the new connection
/// subscribes before the old one unsubscribes: there is no moment without a subscription.
/// Messages published during the overlap reach both subscriptions, and each event is applied
/// exactly once, none rejected as a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_to_the_same_redis_applies_each_signed_event_once() {
    let redis = PrivateRedis::start().await;
    let db = Arc::new(TestDb::postgres().await);
    seed(&db).await;
    let (url, ch) = (redis.url(), channel("hotplane:swap-same"));
    let secret = Secret::new("swap secret");
    let mut config: Config = bus_config(&db, &url, &ch);
    config.bus_secret = Some(secret.clone());
    let app = start(config, &db).await;
    let monitor = Monitor::start(&redis).await;

    let publisher = Publisher::start(vec![redis.connection().await], ch.clone(), move |i| {
        let fields = serde_json::json!({
            "action": "invalidate",
            "pattern_id": i,
            "event_id": format!("swap-test-{i}"),
            "ts": chrono::Utc::now().timestamp(),
        });
        let serde_json::Value::Object(map) = fields else {
            unreachable!("an object literal")
        };
        seal(map, Some(&secret))
    });
    let mut reload = app.reload.clone();
    let (swapped, sent) =
        swap_while_publishing(publisher, 200, reload.reload(bus_reload(""))).await;
    assert_eq!(swapped.expect("swap").into_inner().redis_url, url);
    let order = monitor.subscriptions().await;
    let commands: Vec<&str> = order.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(commands, ["SUBSCRIBE", "UNSUBSCRIBE"], "{order:?}");
    assert_ne!(order[0].1, order[1].1, "two connections: {order:?}");

    wait_invalidated(&app, sent).await;
    let st = wait_bus(&app, "every message to be counted", |s| {
        s.messages_applied + s.handover_duplicates >= sent as u64
    })
    .await;
    println!(
        "{sent} events, {} copies received during the swap",
        st.handover_duplicates
    );
    assert_eq!(st.messages_applied, sent as u64, "each event applied once");
    assert_eq!(
        st.messages_received,
        st.messages_applied + st.handover_duplicates,
        "the rest were copies received during the swap"
    );
    assert!(st.rejected.values().all(|n| *n == 0), "{:?}", st.rejected);
    assert_eq!(st.swaps, 1);
}

/// Two swaps asked for at once run one after the other: both succeed, and the bus ends up
/// subscribed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_swaps_run_one_at_a_time() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:swap-twice"));
    let app = start(bus_config(&db, &url, &ch), &db).await;
    let (mut a, mut b) = (app.reload.clone(), app.reload.clone());
    let (ra, rb) = tokio::join!(a.reload(bus_reload("")), b.reload(bus_reload("")));
    ra.expect("first swap");
    rb.expect("second swap");
    let st = wait_bus(&app, "two swaps", |s| s.swaps == 2).await;
    assert!(st.connected);
    let numsub = super::redis_cli(&url, &["PUBSUB", "NUMSUB", &ch]).await;
    assert_eq!(
        numsub.split_whitespace().collect::<Vec<_>>(),
        [ch.as_str(), "1"],
        "one subscription left"
    );
}

/// A swap is also the way out of a Redis that is gone: while the bus is disconnected and
/// retrying, Reload(TARGET_BUS) to a working Redis subscribes at once, and messages flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_rescues_a_bus_whose_redis_is_gone() {
    let mut gone = PrivateRedis::start().await;
    let db = Arc::new(TestDb::postgres().await);
    seed(&db).await;
    let ch = channel("hotplane:swap-rescue");
    let mut config = bus_config(&db, &gone.url(), &ch);
    config.bus_allow_unsigned_rollback = true;
    // Retries far apart: the subscription below can only come from the swap.
    config.bus_reconnect_min = Duration::from_secs(600);
    config.bus_reconnect_max = Duration::from_secs(600);
    let app = start(config, &db).await;
    gone.stop().await;
    wait_bus(&app, "the bus to notice Redis is gone", |s| !s.connected).await;

    let url = redis_url();
    let swapped = app
        .reload
        .clone()
        .reload(bus_reload(&url))
        .await
        .expect("swap")
        .into_inner();
    assert_eq!(
        (swapped.previous_redis_url, swapped.redis_url.clone()),
        (gone.url(), url.clone())
    );
    let st = bus_status(&app).await;
    assert!(st.connected, "subscribed when the swap returns");
    assert_eq!((st.swaps, st.reconnects), (1, 0));
    super::publish(&url, &ch, r#"{"action":"invalidate","pattern_id":7}"#).await;
    eventually("the message on the new Redis to be applied", || async {
        (!served_ids(&app).await.contains(&7)).then_some(())
    })
    .await;
}

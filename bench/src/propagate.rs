//! Scenario `propagate`: three hotplane replicas (the real [`Application`], each on its own
//! runtime and threads) on one PostgreSQL database and one Redis channel of their own, with the
//! poll disabled so that whatever converges converged through the bus.
//!
//! - LearnPattern on A, acknowledged → the pattern served by all three. A serves it when it
//!   answers (the learn swaps its own generation); B and C are observed through their
//!   `WatchStatus` streams: the first `RELOAD_SUCCEEDED` whose store revision reaches the learned
//!   row's revision. Nothing is polled and nothing sleeps.
//! - A row changed by another client, then a legacy message PUBLISHed by the bench (`pattern_id`
//!   null: a delta; or the row's id: that row) → swapped on all three, observed the same way.
//!
//! - The same SQL write with the PostgreSQL bus (`--bus postgres`, three new replicas on the same
//!   database, no Redis): the UPDATE alone, whose trigger NOTIFYs → swapped on all three; beside
//!   the Redis bus's UPDATE + PUBLISH of the same run, measured from the same point (before the
//!   UPDATE).
//!
//! - The same SQL write with the Sentinel bus: a private master, replica and three sentinels on
//!   loopback ports ([`SentinelSet`]), three new replicas on a `redis+sentinel://` URL; the
//!   UPDATE, then PUBLISH on the master the sentinels name → swapped on all three; beside the
//!   Redis bus's figure, measured the same way.
//!
//! Baseline: a bare Redis round trip in the same run: PUBLISH on one connection → the message
//! received by a subscriber on another, with the same client library.

use std::time::Instant;

use anyhow::Context;
use hotplane::{
    config::{BusMode, Config},
    normalize::{Normalizer, Profile},
    pb::{self, hot_reload_client::HotReloadClient, patterns_client::PatternsClient},
};
use hotplane_testkit::db::unique_suffix;
use tokio::sync::watch;
use tokio_stream::StreamExt;

use crate::{
    Settings,
    data::{Dataset, Rng},
    db::{Backend, BenchDb, Client},
    progress,
    report::{Figure, Target, num},
    sentinel::SentinelSet,
    server::{ServerThread, connect, wait_serving},
    stats::{Summary, summarize},
};

/// Longest the bench waits for any one propagation before giving up on the run.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The newest store revision a replica has announced on its WatchStatus stream, and when the
/// bench received that announcement.
type Seen = watch::Receiver<(i64, Instant)>;

/// Follows one replica's WatchStatus stream (reload successes only; the first message is a
/// snapshot) and publishes each new store revision with the instant it arrived.
async fn follow(channel: tonic::transport::Channel) -> anyhow::Result<Seen> {
    let mut client = HotReloadClient::new(channel);
    let mut stream = client
        .watch_status(pb::WatchStatusRequest {
            targets: vec![pb::Target::Patterns.into()],
            kinds: vec![pb::EventKind::ReloadSucceeded.into()],
            after_event_id: 0,
        })
        .await
        .context("opening WatchStatus")?
        .into_inner();
    let first = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .context("no WatchStatus snapshot")?
        .context("the WatchStatus stream ended")??;
    let revision = first
        .status
        .iter()
        .flat_map(|s| &s.targets)
        .filter_map(|t| t.current.as_ref())
        .map(|g| g.store_revision)
        .max()
        .unwrap_or(0);
    let (tx, rx) = watch::channel((revision, Instant::now()));
    tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            let at = Instant::now();
            if let Some(g) = &event.generation {
                tx.send_if_modified(|cur| {
                    let newer = g.store_revision > cur.0;
                    if newer {
                        *cur = (g.store_revision, at);
                    }
                    newer
                });
            }
        }
    });
    Ok(rx)
}

/// When `seen` first reached `revision`.
async fn reached(seen: &mut Seen, revision: i64) -> anyhow::Result<Instant> {
    let r = tokio::time::timeout(DEADLINE, seen.wait_for(|(rev, _)| *rev >= revision))
        .await
        .with_context(|| format!("no replica reload reached store revision {revision}"))?
        .context("a WatchStatus stream ended")?;
    Ok(r.1)
}

/// Waits until `replica`'s bus subscription is up, through its status stream's snapshot and
/// BUS_CONNECTED events.
async fn wait_subscribed(channel: tonic::transport::Channel) -> anyhow::Result<()> {
    let mut client = HotReloadClient::new(channel);
    let mut stream = client
        .watch_status(pb::WatchStatusRequest {
            targets: Vec::new(),
            kinds: vec![pb::EventKind::BusConnected.into()],
            after_event_id: 0,
        })
        .await?
        .into_inner();
    tokio::time::timeout(DEADLINE, async {
        while let Some(event) = stream.next().await {
            let event = event?;
            let connected = event.kind == pb::EventKind::BusConnected as i32
                || event
                    .status
                    .as_ref()
                    .and_then(|s| s.bus.as_ref())
                    .is_some_and(|b| b.connected);
            if connected {
                return Ok(());
            }
        }
        anyhow::bail!("the WatchStatus stream ended before the bus connected")
    })
    .await
    .context("waiting for the bus subscription")?
}

/// Starts three replicas on `config` and follows each once its bus is subscribed.
async fn start_three(config: &Config) -> anyhow::Result<(Vec<ServerThread>, Vec<Seen>)> {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(ServerThread::hotplane(config.clone()).await?);
    }
    let mut seen = Vec::new();
    for server in &servers {
        wait_serving(server.addr, DEADLINE).await?;
        let channel = connect(server.addr).await?;
        wait_subscribed(channel.clone()).await?;
        seen.push(follow(channel).await?);
    }
    Ok((servers, seen))
}

/// Another client's plain SQL change of row `id`; returns the row's new store revision.
async fn update(pool: &sqlx::PgPool, id: i64, category: String) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "UPDATE auto_learned_patterns SET category = $1 WHERE id = $2 RETURNING revision",
    )
    .bind(category)
    .bind(id)
    .fetch_one(pool)
    .await
    .context("changing a row")
}

/// The legacy delta message: reload whatever changed.
const DELTA: &str = r#"{"action":"reload","pattern_id":null}"#;

/// PUBLISH → the same message received by a subscriber, `trials` times, in ms.
async fn redis_round_trips(url: &str, trials: usize) -> anyhow::Result<Vec<f64>> {
    let client = redis::Client::open(url).context("the Redis URL")?;
    let channel = format!("hotplane-bench:baseline:{}", unique_suffix());
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    let mut messages = pubsub.on_message();
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut out = Vec::with_capacity(trials);
    for k in 0..trials {
        let payload = format!("baseline {k}");
        let t0 = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&payload)
            .query_async(&mut conn)
            .await?;
        loop {
            let msg = tokio::time::timeout(DEADLINE, messages.next())
                .await
                .context("no baseline message")?
                .context("the baseline subscription ended")?;
            if msg.get_payload_bytes() == payload.as_bytes() {
                break;
            }
        }
        out.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

/// Runs the scenario.
pub async fn run(s: &Settings, notes: &mut Vec<String>) -> anyhow::Result<Vec<Figure>> {
    let normalizer = Normalizer::new(Profile::Default, None);
    let size = s.propagate_patterns;
    let trials = s.propagate_trials.max(1);
    progress(format!(
        "propagate: 3 replicas, {} patterns on postgres, Redis at {}",
        num(size as f64),
        s.redis_url
    ));
    let data = Dataset::generate(size, s.seed, &normalizer);
    let db = BenchDb::create(Backend::Postgres, &s.database_url).await?;
    db.fill(&data.rows).await?;
    let served = data.served;
    drop(data);
    let bus_channel = format!("hotplane-bench:propagate:{}", unique_suffix());
    let mut config = Config::for_database(db.url());
    config.redis_url = Some(s.redis_url.clone());
    config.bus_channel = bus_channel.clone();
    config.poll_interval = std::time::Duration::ZERO;
    // Hundreds of learns in a row on purpose; the per-caller rate limit would measure itself.
    config.auth.admin_rate = 0.0;

    let (servers, mut seen) = start_three(&config).await?;
    let mut patterns = PatternsClient::new(connect(servers[0].addr).await?);

    // Redis's own round trip, first, while nothing else runs.
    let mut baseline = redis_round_trips(&s.redis_url, trials).await?;

    // LearnPattern on A → served by A, B and C.
    let (mut ack, mut all) = (Vec::new(), Vec::new());
    let suffix = unique_suffix();
    for k in 0..trials {
        let t0 = Instant::now();
        let learned = patterns
            .learn_pattern(pb::LearnPatternRequest {
                query: format!("bench propagate {suffix} trial {k}"),
                category: "bench_propagate".into(),
                confidence: 0.99,
                created_by: "bench".into(),
                ..Default::default()
            })
            .await
            .context("LearnPattern")?
            .into_inner();
        let acked = Instant::now();
        anyhow::ensure!(
            learned.served && learned.publish_error.is_empty(),
            "the learned pattern is served on A and announced (served {}, publish error {:?})",
            learned.served,
            learned.publish_error
        );
        let revision = learned.pattern.map_or(0, |p| p.revision);
        let mut last = acked;
        for replica in &mut seen[1..] {
            last = last.max(reached(replica, revision).await?);
        }
        ack.push((acked - t0).as_secs_f64() * 1e3);
        all.push((last - t0).as_secs_f64() * 1e3);
    }

    // Another client changes a row, then a legacy message → swapped on all three.
    let client = db.client().await?;
    let Client::Postgres(pool) = &client else {
        anyhow::bail!("propagate runs on PostgreSQL")
    };
    let redis = redis::Client::open(s.redis_url.as_str())?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    let mut rng = Rng::new(s.seed, 60);
    let (mut delta, mut single, mut write_redis) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..2 * trials {
        let id = 1 + rng.below(served) as i64;
        let written = Instant::now();
        let revision = update(pool, id, format!("bench_propagate_{k}")).await?;
        let by_id = k % 2 == 1;
        let message = if by_id {
            format!(r#"{{"action":"reload","pattern_id":{id}}}"#)
        } else {
            DELTA.to_owned()
        };
        let t0 = Instant::now();
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(&bus_channel)
            .arg(&message)
            .query_async(&mut conn)
            .await?;
        anyhow::ensure!(receivers == 3, "{receivers} replicas subscribed, not 3");
        let mut last = t0;
        for replica in &mut seen {
            last = last.max(reached(replica, revision).await?);
        }
        let ms = (last - t0).as_secs_f64() * 1e3;
        if by_id {
            single.push(ms)
        } else {
            delta.push(ms);
            write_redis.push((last - written).as_secs_f64() * 1e3);
        }
    }
    for server in servers {
        server.stop().await?;
    }

    // The PostgreSQL bus: three new replicas on the same database, no Redis; the UPDATE is the
    // whole announcement.
    let mut pg_config = Config::for_database(db.url());
    pg_config.bus_mode = BusMode::Postgres;
    pg_config.poll_interval = std::time::Duration::ZERO;
    let (pg_servers, mut pg_seen) = start_three(&pg_config).await?;
    let mut write_pg = Vec::new();
    for k in 0..trials {
        let id = 1 + rng.below(served) as i64;
        let t0 = Instant::now();
        let revision = update(pool, id, format!("bench_propagate_pg_{k}")).await?;
        let mut last = t0;
        for replica in &mut pg_seen {
            last = last.max(reached(replica, revision).await?);
        }
        write_pg.push((last - t0).as_secs_f64() * 1e3);
    }
    for server in pg_servers {
        server.stop().await?;
    }

    // The Sentinel bus: three new replicas on a private Sentinel set; the UPDATE, then PUBLISH
    // on the master the sentinels name.
    progress("propagate: a Sentinel set (master, replica, 3 sentinels) on loopback ports");
    let sentinels = SentinelSet::start().await?;
    let mut sentinel_config = config.clone();
    sentinel_config.redis_url = Some(sentinels.url());
    let (sentinel_servers, mut sentinel_seen) = start_three(&sentinel_config).await?;
    let master = redis::Client::open(sentinels.master_url().await?)?;
    let mut conn = master.get_multiplexed_async_connection().await?;
    let mut write_sentinel = Vec::new();
    for k in 0..trials {
        let id = 1 + rng.below(served) as i64;
        let t0 = Instant::now();
        let revision = update(pool, id, format!("bench_propagate_sentinel_{k}")).await?;
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(&bus_channel)
            .arg(DELTA)
            .query_async(&mut conn)
            .await?;
        anyhow::ensure!(receivers == 3, "{receivers} replicas subscribed, not 3");
        let mut last = t0;
        for replica in &mut sentinel_seen {
            last = last.max(reached(replica, revision).await?);
        }
        write_sentinel.push((last - t0).as_secs_f64() * 1e3);
    }
    for server in sentinel_servers {
        server.stop().await?;
    }
    drop(sentinels);
    client.close().await;
    db.remove().await?;

    let base = summarize(&mut baseline);
    let (ack, all, delta, single) = (
        summarize(&mut ack),
        summarize(&mut all),
        summarize(&mut delta),
        summarize(&mut single),
    );
    let label = format!("3 replicas, {} patterns", num(size as f64));
    let detail = |s: &Summary| {
        format!(
            "n {}, min {} ms, p50 {} ms, p99 {} ms, max {} ms",
            s.n,
            num(s.min),
            num(s.p50),
            num(s.p99),
            num(s.max)
        )
    };
    let pair = |what: &str, s: &Summary, target: Option<f64>| {
        let p50 = Figure::new(
            format!("{label}: {what} (p50)"),
            s.p50,
            "ms",
            "Redis PUBLISH → message (p50)",
            base.p50,
        )
        .detail(detail(s));
        let mut p99 = Figure::new(
            format!("{label}: {what} (p99)"),
            s.p99,
            "ms",
            "Redis PUBLISH → message (p99)",
            base.p99,
        )
        .detail(format!("baseline {}", detail(&base)));
        if let Some(t) = target {
            p99 = p99.target(Target::AtMost(t));
        }
        [p50, p99]
    };
    let (write_redis, write_pg, write_sentinel) = (
        summarize(&mut write_redis),
        summarize(&mut write_pg),
        summarize(&mut write_sentinel),
    );
    let mut figures = Vec::new();
    figures.extend(pair(
        "LearnPattern on A → served by all 3",
        &all,
        Some(10.0),
    ));
    figures.extend(pair("LearnPattern on A acknowledged", &ack, None));
    figures.extend(pair(
        "publish {pattern_id: null} → swapped on all 3",
        &delta,
        Some(5.0),
    ));
    figures.extend(pair(
        "publish {pattern_id: id} → swapped on all 3",
        &single,
        Some(5.0),
    ));
    // The SQL write served everywhere, PostgreSQL bus beside Redis bus (same run, same rows).
    figures.push(
        Figure::new(
            format!("{label}: SQL UPDATE → swapped on all 3, postgres bus (p50)"),
            write_pg.p50,
            "ms",
            "SQL UPDATE + PUBLISH {pattern_id: null}, Redis bus (p50)",
            write_redis.p50,
        )
        .detail(detail(&write_pg)),
    );
    figures.push(
        Figure::new(
            format!("{label}: SQL UPDATE → swapped on all 3, postgres bus (p99)"),
            write_pg.p99,
            "ms",
            "SQL UPDATE + PUBLISH {pattern_id: null}, Redis bus (p99)",
            write_redis.p99,
        )
        .detail(format!("Redis bus {}", detail(&write_redis)))
        .target(Target::AtMost(write_redis.p99)),
    );
    // The Sentinel bus beside the same Redis bus figure (no target: the issue sets none).
    for (q, value, base) in [
        ("p50", write_sentinel.p50, write_redis.p50),
        ("p99", write_sentinel.p99, write_redis.p99),
    ] {
        figures.push(
            Figure::new(
                format!("{label}: SQL UPDATE + PUBLISH → swapped on all 3, sentinel bus ({q})"),
                value,
                "ms",
                format!("SQL UPDATE + PUBLISH {{pattern_id: null}}, Redis bus ({q})"),
                base,
            )
            .detail(if q == "p50" {
                detail(&write_sentinel)
            } else {
                format!("Redis bus {}", detail(&write_redis))
            }),
        );
    }
    notes.push(format!(
        "replicas observed through WatchStatus (RELOAD_SUCCEEDED reaching the row's store \
         revision), poll disabled; the learn time ends when the last of A's answer, B's and C's \
         events arrived; Python: publish → swapped 36 ms median, 71 ms p99 at 10k; {trials} \
         trials per figure; the SQL UPDATE figures run from before the UPDATE (Redis bus: then \
         PUBLISH; postgres bus: nothing else, the trigger NOTIFYs at commit) to the last replica's \
         event, three `--bus postgres` replicas started on the same database after the Redis ones \
         stopped; the sentinel bus figures the same way as the Redis bus's (UPDATE, then PUBLISH \
         on the master the sentinels name), three replicas on a `redis+sentinel://` URL of a \
         private master + replica + 3 sentinels on loopback ports, started after the postgres \
         ones stopped"
    ));
    Ok(figures)
}

//! Scenario `reload-under-load`: MatchPattern latency over real gRPC while full reloads of the
//! whole store run back to back (through `HotReload.Reload`, as an operator would ask), against
//! the same load with no reload running. Idle and reloading windows alternate, so both see the
//! same machine. Every call is checked: an error status or a hit query that does not match
//! (a torn or empty snapshot) is counted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hotplane::{
    config::Config,
    normalize::{Normalizer, Profile},
    pb::{self, hot_reload_client::HotReloadClient},
};
use tonic::transport::Channel;

use crate::{
    Settings,
    data::{self, Dataset},
    db::{Backend, BenchDb, Client},
    progress,
    report::{Figure, Target, num},
    server::{Call, LoadResult, ServerThread, closed_loop, connect, wait_serving},
};

/// Distinct hit queries the callers cycle through.
const QUERIES: usize = 10_000;

/// Requests full reloads back to back until `stop`, counting successes in `done`; returns the
/// number of failed reloads. With `churn`, another client first changes a tenth of the rows
/// (their hit counters) before each reload, so that every reload indexes a new base instead
/// of finding the table unchanged.
async fn reload_loop(
    channel: Channel,
    churn: Option<Arc<Client>>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> u64 {
    let mut client = HotReloadClient::new(channel);
    let mut failures = 0;
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(db) = &churn {
            k += 1;
            let sql = format!(
                "UPDATE auto_learned_patterns SET times_used = times_used + 1 \
                 WHERE id % 10 = {}",
                k % 10
            );
            // A concurrent hit flush may deadlock with this UPDATE (PostgreSQL aborts one of
            // them); the flush retries, and a failed UPDATE here only means one less change.
            if let Err(e) = db.exec(&sql).await {
                progress(format!("reload-under-load: churn UPDATE failed: {e:#}"));
            }
        }
        let r = client
            .reload(pb::ReloadRequest {
                target: pb::Target::Patterns.into(),
                full: true,
                reason: "bench: reload under load".into(),
                ..Default::default()
            })
            .await;
        match r {
            Ok(_) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) => {
                progress(format!("reload-under-load: a reload failed: {status}"));
                failures += 1;
            }
        }
    }
    failures
}

/// Runs the scenario.
pub async fn run(s: &Settings, notes: &mut Vec<String>) -> anyhow::Result<Vec<Figure>> {
    let normalizer = Normalizer::new(Profile::Default, None);
    let size = s.under_load_patterns;
    progress(format!(
        "reload-under-load: {} patterns on postgres",
        num(size as f64)
    ));
    let data = Dataset::generate(size, s.seed, &normalizer);
    let queries = Arc::new(data::hit_queries(&data, QUERIES, s.seed));
    let db = BenchDb::create(Backend::Postgres, &s.database_url).await?;
    db.fill(&data.rows).await?;
    drop(data);
    let mut config = Config::for_database(db.url());
    // The reload loop hammers on purpose; the per-caller rate limit would measure itself.
    config.auth.admin_rate = 0.0;
    let server = ServerThread::hotplane(config).await?;
    wait_serving(server.addr, Duration::from_secs(300)).await?;
    let mut channels = Vec::new();
    for _ in 0..s.under_load_connections {
        channels.push(connect(server.addr).await?);
    }
    let reload_channel = connect(server.addr).await?;
    let call = Call::Match(queries);
    let churn = Arc::new(db.client().await?);
    let (mut idle, mut busy, mut churned) = (
        LoadResult::default(),
        LoadResult::default(),
        LoadResult::default(),
    );
    let churn_reloads = Arc::new(AtomicU64::new(0));
    let reloads = Arc::new(AtomicU64::new(0));
    let mut reload_failures = 0;
    let (mut reload_time, mut churn_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..s.under_load_rounds {
        progress(format!(
            "reload-under-load: round {} of {}",
            round + 1,
            s.under_load_rounds
        ));
        let warmup = Duration::from_millis(if round == 0 { 500 } else { 100 });
        idle.merge(
            closed_loop(
                &channels,
                s.under_load_callers,
                &call,
                warmup,
                s.under_load_window,
            )
            .await,
        );
        for (with_churn, result, count) in [
            (false, &mut busy, &reloads),
            (true, &mut churned, &churn_reloads),
        ] {
            let stop = Arc::new(AtomicBool::new(false));
            let t0 = Instant::now();
            let reloader = tokio::spawn(reload_loop(
                reload_channel.clone(),
                with_churn.then(|| Arc::clone(&churn)),
                Arc::clone(&stop),
                Arc::clone(count),
            ));
            result.merge(
                closed_loop(
                    &channels,
                    s.under_load_callers,
                    &call,
                    warmup,
                    s.under_load_window,
                )
                .await,
            );
            stop.store(true, Ordering::Relaxed);
            reload_failures += reloader.await?;
            if with_churn {
                churn_time += t0.elapsed();
            } else {
                reload_time += t0.elapsed();
            }
        }
    }
    churn.close().await;
    server.stop().await?;
    db.remove().await?;

    let reloads = reloads.load(Ordering::Relaxed);
    let churn_reloads = churn_reloads.load(Ordering::Relaxed);
    let (i, b, c) = (idle.latency(), busy.latency(), churned.latency());
    let label = format!("{} patterns", num(size as f64));
    let bad = |r: &LoadResult| (r.errors + r.wrong) as f64;
    notes.push(format!(
        "{} closed-loop callers over {} HTTP/2 connections; {} rounds of {} ms idle, {} ms \
         reloading an unchanged table, {} ms reloading with churn; {reloads} full reloads of \
         the unchanged table back to back ({} ms each on average: the read, a hash per row, \
         nothing to index), {churn_reloads} with churn ({} ms each on average, including the \
         UPDATE of a tenth of the rows before each: every one indexes a new base); \
         {reload_failures} reloads failed",
        s.under_load_callers,
        s.under_load_connections,
        s.under_load_rounds,
        s.under_load_window.as_millis(),
        s.under_load_window.as_millis(),
        s.under_load_window.as_millis(),
        num(reload_time.as_secs_f64() * 1e3 / reloads.max(1) as f64),
        num(churn_time.as_secs_f64() * 1e3 / churn_reloads.max(1) as f64),
    ));
    Ok(vec![
        Figure::new(
            format!("{label}: MatchPattern p99 while reloading an unchanged table"),
            b.p99,
            "µs",
            "p99 with no reload running",
            i.p99,
        )
        .target(Target::RatioAtMost(1.5))
        .detail(format!(
            "p50 {} vs {} µs; p99.9 {} vs {} µs; max {} vs {} µs; {} vs {} calls/s",
            num(b.p50),
            num(i.p50),
            num(b.p999),
            num(i.p999),
            num(b.max),
            num(i.max),
            num(busy.rate()),
            num(idle.rate())
        )),
        Figure::new(
            format!("{label}: MatchPattern p99 while reloading with churn"),
            c.p99,
            "µs",
            "p99 with no reload running",
            i.p99,
        )
        .target(Target::RatioAtMost(1.5))
        .detail(format!(
            "every reload indexes a new base (a tenth of the rows changed before it); p50 {} vs \
             {} µs; p99.9 {} vs {} µs; max {} vs {} µs; {} vs {} calls/s",
            num(c.p50),
            num(i.p50),
            num(c.p999),
            num(i.p999),
            num(c.max),
            num(i.max),
            num(churned.rate()),
            num(idle.rate())
        )),
        Figure::new(
            format!("{label}: failed or wrong matches while reloading"),
            bad(&busy) + bad(&churned),
            "calls",
            "with no reload running",
            bad(&idle),
        )
        .target(Target::AtMost(0.0))
        .detail(format!(
            "{} errors, {} hits not matched, of {} calls (both reloading windows)",
            busy.errors + churned.errors,
            busy.wrong + churned.wrong,
            num((busy.calls + churned.calls) as f64)
        )),
    ])
}

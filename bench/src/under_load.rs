//! Scenario `reload-under-load`: MatchPattern latency over real gRPC while reloads run back to
//! back (through `HotReload.Reload`, as an operator would ask), against the same load with no
//! reload running. Three kinds of reload: full reloads of an unchanged table, full reloads after
//! a tenth of the rows changed, and re-imports (every row's content rewritten, then a delta
//! reload of all of them). Idle and reloading windows alternate, so both see the
//! same machine. Every call is checked: an error status or a hit query that does not match
//! (a torn or empty snapshot) is counted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
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

/// What the reload loop does before each reload, and which reload it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Full reloads of an unchanged table: the read and a hash per row, nothing to index.
    Unchanged,
    /// Another client first changes a tenth of the rows (their hit counters), then a full
    /// reload: every reload indexes a new base.
    Churn,
    /// A re-import: another client rewrites the served content (confidence) of every row in one
    /// statement, then a **delta** reload picks up all of them: the largest delta there is,
    /// read, decoded and merged while the callers run (issue 15: a 200k-row re-import must
    /// not stall other requests).
    Reimport,
}

/// What one reloading window saw.
#[derive(Debug, Default)]
struct Reloads {
    /// Reloads answered.
    done: u64,
    /// Reloads that failed.
    failed: u64,
    /// Rows the deltas updated (Reimport), summed.
    updated: u64,
    /// Reloads answered with another mode than asked for (a delta that fell back to a full
    /// load), which would make the window measure something else.
    other_mode: u64,
}

/// Runs `mode`'s change and reload back to back until `stop`.
async fn reload_loop(
    channel: Channel,
    db: Arc<Client>,
    mode: Mode,
    stop: Arc<AtomicBool>,
) -> Reloads {
    let mut client = HotReloadClient::new(channel);
    let mut seen = Reloads::default();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let sql = match mode {
            Mode::Unchanged => None,
            Mode::Churn => Some(format!(
                "UPDATE auto_learned_patterns SET times_used = times_used + 1 \
                 WHERE id % 10 = {}",
                k % 10
            )),
            // Every row's served content changes, and every confidence stays inside [0, 1].
            Mode::Reimport => Some(
                "UPDATE auto_learned_patterns SET confidence = CASE WHEN confidence > 0.5 \
                 THEN confidence - 0.000001 ELSE confidence + 0.000001 END"
                    .to_owned(),
            ),
        };
        if let Some(sql) = sql {
            // The hit flush skips rows this UPDATE holds rather than wait (it used to wait,
            // and PostgreSQL aborted one of the two as a deadlock); a failed UPDATE here is
            // reported and only means one less change.
            if let Err(e) = db.exec(&sql).await {
                progress(format!("reload-under-load: churn UPDATE failed: {e:#}"));
            }
        }
        let delta = mode == Mode::Reimport;
        let r = client
            .reload(pb::ReloadRequest {
                target: pb::Target::Patterns.into(),
                full: !delta,
                reason: "bench: reload under load".into(),
                ..Default::default()
            })
            .await;
        match r {
            Ok(r) => {
                let r = r.into_inner();
                seen.done += 1;
                seen.updated += u64::from(r.updated);
                let want = if delta {
                    pb::LoadMode::Delta
                } else {
                    pb::LoadMode::Full
                };
                if r.mode() != want {
                    seen.other_mode += 1;
                }
            }
            Err(status) => {
                progress(format!("reload-under-load: a reload failed: {status}"));
                seen.failed += 1;
            }
        }
    }
    seen
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
    let modes = [Mode::Unchanged, Mode::Churn, Mode::Reimport];
    let mut idle = LoadResult::default();
    let mut busy: [LoadResult; 3] = Default::default();
    let mut seen: [Reloads; 3] = Default::default();
    let mut spent = [Duration::ZERO; 3];
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
        for (m, mode) in modes.into_iter().enumerate() {
            let stop = Arc::new(AtomicBool::new(false));
            let t0 = Instant::now();
            let reloader = tokio::spawn(reload_loop(
                reload_channel.clone(),
                Arc::clone(&churn),
                mode,
                Arc::clone(&stop),
            ));
            busy[m].merge(
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
            let r = reloader.await?;
            spent[m] += t0.elapsed();
            let w = &mut seen[m];
            (w.done, w.failed, w.updated, w.other_mode) = (
                w.done + r.done,
                w.failed + r.failed,
                w.updated + r.updated,
                w.other_mode + r.other_mode,
            );
        }
    }
    churn.close().await;
    server.stop().await?;
    db.remove().await?;

    let i = idle.latency();
    let label = format!("{} patterns", num(size as f64));
    let bad = |r: &LoadResult| (r.errors + r.wrong) as f64;
    let each_ms = |m: usize| num(spent[m].as_secs_f64() * 1e3 / seen[m].done.max(1) as f64);
    let failed: u64 = seen.iter().map(|w| w.failed).sum();
    let [unchanged, churned, reimport] = &seen;
    notes.push(format!(
        "{} closed-loop callers over {} HTTP/2 connections; {} rounds of {} ms each: idle, \
         reloading an unchanged table, reloading with churn, re-importing; {} full reloads of \
         the unchanged table back to back ({} ms each on average: the read, a hash per row, \
         nothing to index), {} with churn ({} ms each on average, including the UPDATE of a \
         tenth of the rows before each: every one indexes a new base), {} re-imports ({} ms \
         each on average: one UPDATE of every row's confidence, then a delta reload that \
         updated {} rows on average; {} reloads answered with another mode than asked); \
         {failed} reloads failed",
        s.under_load_callers,
        s.under_load_connections,
        s.under_load_rounds,
        s.under_load_window.as_millis(),
        unchanged.done,
        each_ms(0),
        churned.done,
        each_ms(1),
        reimport.done,
        each_ms(2),
        num(reimport.updated as f64 / reimport.done.max(1) as f64),
        seen.iter().map(|w| w.other_mode).sum::<u64>(),
    ));
    let titles = [
        "while reloading an unchanged table",
        "while reloading with churn",
        "while re-importing every row (delta reloads)",
    ];
    let details = [
        String::new(),
        "every reload indexes a new base (a tenth of the rows changed before it); ".to_owned(),
        format!(
            "every row's confidence rewritten by one UPDATE, then a delta reload ({} rows \
             updated per delta on average); ",
            num(reimport.updated as f64 / reimport.done.max(1) as f64)
        ),
    ];
    let mut figures = Vec::new();
    for m in 0..modes.len() {
        let b = busy[m].latency();
        figures.push(
            Figure::new(
                format!("{label}: MatchPattern p99 {}", titles[m]),
                b.p99,
                "µs",
                "p99 with no reload running",
                i.p99,
            )
            .target(Target::RatioAtMost(1.5))
            .detail(format!(
                "{}p50 {} vs {} µs; p99.9 {} vs {} µs; max {} vs {} µs; {} vs {} calls/s",
                details[m],
                num(b.p50),
                num(i.p50),
                num(b.p999),
                num(i.p999),
                num(b.max),
                num(i.max),
                num(busy[m].rate()),
                num(idle.rate())
            )),
        );
    }
    figures.push(
        Figure::new(
            format!("{label}: failed or wrong matches while reloading"),
            busy.iter().map(bad).sum(),
            "calls",
            "with no reload running",
            bad(&idle),
        )
        .target(Target::AtMost(0.0))
        .detail(format!(
            "{} errors, {} hits not matched, of {} calls (all reloading windows)",
            busy.iter().map(|r| r.errors).sum::<u64>(),
            busy.iter().map(|r| r.wrong).sum::<u64>(),
            num(busy.iter().map(|r| r.calls).sum::<u64>() as f64)
        )),
    );
    Ok(figures)
}

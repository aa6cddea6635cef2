//! Scenario `match`: closed-loop gRPC load (default 64 callers over 4 HTTP/2 connections)
//! against MatchPattern and BatchMatchPatterns of the real server, and the same client against
//! the framework's floor: `grpc.health.v1.Health/Check` on a bare tonic server that the bench
//! starts with nothing else (the lightest RPC tonic serves: no hotplane handler, layer or
//! reflection). Health/Check on the hotplane server itself separates what hotplane's server
//! stack adds from what the handler costs. Targets are measured in rounds, alternating, so
//! every target sees the same machine.

use std::{sync::Arc, time::Duration};

use hotplane::{
    config::Config,
    normalize::{Normalizer, Profile},
};
use tonic::transport::Channel;

use crate::{
    Settings,
    data::{self, Dataset},
    db::{Backend, BenchDb},
    progress,
    report::{Figure, Target, num},
    server::{Call, LoadResult, ServerThread, closed_loop, connect, wait_serving},
};

/// Distinct hit queries the callers cycle through.
const QUERIES: usize = 10_000;

async fn channels(addr: std::net::SocketAddr, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        out.push(connect(addr).await?);
    }
    Ok(out)
}

/// Runs the scenario.
pub async fn run(s: &Settings, notes: &mut Vec<String>) -> anyhow::Result<Vec<Figure>> {
    let normalizer = Normalizer::new(Profile::Default, None);
    let size = s.match_patterns;
    progress(format!("match: {} patterns on postgres", num(size as f64)));
    let data = Dataset::generate(size, s.seed, &normalizer);
    let queries = Arc::new(data::hit_queries(&data, QUERIES, s.seed));
    let db = BenchDb::create(Backend::Postgres, &s.database_url).await?;
    db.fill(&data.rows).await?;
    drop(data);
    let mut config = Config::for_database(db.url());
    if s.match_metrics {
        config.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        notes.push(
            "match: metrics on (--match-metrics: /metrics on a loopback admin listener)".into(),
        );
    }
    let server = ServerThread::hotplane(config).await?;
    wait_serving(server.addr, Duration::from_secs(300)).await?;
    let echo = ServerThread::echo().await?;
    let hp = channels(server.addr, s.connections).await?;
    let floor = channels(echo.addr, s.connections).await?;

    let targets: [(&str, &[Channel], Call); 4] = [
        ("echo", &floor, Call::Health),
        ("match", &hp, Call::Match(Arc::clone(&queries))),
        (
            "batch",
            &hp,
            Call::Batch(Arc::clone(&queries), s.batch_size),
        ),
        ("health", &hp, Call::Health),
    ];
    let mut results: Vec<LoadResult> = vec![LoadResult::default(); targets.len()];
    let window = s.match_duration / s.match_rounds.max(1) as u32;
    for round in 0..s.match_rounds.max(1) {
        for ((name, chans, call), total) in targets.iter().zip(&mut results) {
            progress(format!("match: round {}: {name}", round + 1));
            total.merge(closed_loop(chans, s.callers, call, s.match_warmup, window).await);
        }
    }
    server.stop().await?;
    echo.stop().await?;
    db.remove().await?;

    let [echo_r, match_r, batch_r, health_r] = &results[..] else {
        anyhow::bail!("one result per target");
    };
    let e = echo_r.latency();
    let lat = |r: &LoadResult| {
        let l = r.latency();
        format!(
            "p50 {} / p99 {} / p99.9 {} µs (floor {} / {} / {})",
            num(l.p50),
            num(l.p99),
            num(l.p999),
            num(e.p50),
            num(e.p99),
            num(e.p999)
        )
    };
    let failures = |r: &LoadResult| format!("; {} errors, {} wrong", r.errors, r.wrong);
    let floor_name = "Health/Check on a bare tonic server";
    let label = format!("{} patterns", num(size as f64));
    notes.push(format!(
        "{} callers over {} HTTP/2 connections, {} round(s) of {} ms per target after {} ms \
         warm-up; servers on their own runtimes ({} worker threads each), the client on the \
         bench's; all on the same cores",
        s.callers,
        s.connections,
        s.match_rounds,
        window.as_millis(),
        s.match_warmup.as_millis(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    ));
    Ok(vec![
        Figure::new(
            format!("{label}: MatchPattern throughput"),
            match_r.rate(),
            "req/s",
            floor_name,
            echo_r.rate(),
        )
        .target(Target::RatioAtLeast(0.9))
        .detail(lat(match_r) + &failures(match_r)),
        Figure::new(
            format!("{label}: MatchPattern p99"),
            match_r.latency().p99,
            "µs",
            floor_name,
            e.p99,
        ),
        Figure::new(
            format!(
                "{label}: BatchMatchPatterns of {} queries, calls",
                s.batch_size
            ),
            batch_r.rate(),
            "req/s",
            floor_name,
            echo_r.rate(),
        )
        .detail(format!(
            "{} queries/s; {}{}",
            num(batch_r.rate() * s.batch_size as f64),
            lat(batch_r),
            failures(batch_r)
        )),
        Figure::new(
            "Health/Check on the hotplane server",
            health_r.rate(),
            "req/s",
            floor_name,
            echo_r.rate(),
        )
        .detail(lat(health_r) + &failures(health_r)),
    ])
}

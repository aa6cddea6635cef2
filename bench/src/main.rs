//! hotplane-bench: the benchmark suite of issue 6. Every scenario prints its figures next to a
//! baseline measured in the same run (so results compare on a noisy machine), the ratio and the
//! issue's target; `--json` prints one JSON document instead of the table.
//!
//! ```text
//! cargo run --release -p hotplane-bench                   # every scenario, full sizes
//! cargo run --release -p hotplane-bench -- lookup match   # some scenarios
//! cargo run --release -p hotplane-bench -- --quick        # small sizes, a few seconds
//! ```
//!
//! Data is generated with a fixed seed. PostgreSQL databases are created through
//! `--database-url` as `hotplane_bench_*` and dropped at the end; SQLite files live in a
//! temporary directory. Servers listen on loopback only. Loops are bounded by count and time.

mod burst;
mod data;
mod db;
mod lookup;
mod matching;
mod propagate;
mod reload;
mod report;
mod sentinel;
mod server;
mod stats;
mod structures;
mod under_load;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};

use crate::{
    db::Backend,
    report::{Machine, Report, ScenarioReport},
    stats::CpuMark,
};

/// PostgreSQL admin URL used when `--database-url` is not given.
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Redis URL used when `--redis-url` is not given.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// normalize + lookup in process, at several snapshot sizes.
    Lookup,
    /// Full and delta reloads through the engine on PostgreSQL and SQLite, start to SERVING,
    /// memory per pattern.
    Reload,
    /// MatchPattern p99 over gRPC while reloads run back to back (full, and re-imports of every
    /// row picked up by delta reloads), vs idle.
    ReloadUnderLoad,
    /// Many `Engine::request` calls at once (the bus path): loads run, time until idle.
    Burst,
    /// Closed-loop gRPC throughput and latency of MatchPattern and BatchMatchPatterns vs a
    /// bare tonic server.
    Match,
    /// Three replicas on one Redis channel: LearnPattern on A → served by all, and a
    /// published message → swapped on all, vs a bare Redis round trip; a SQL write on the
    /// PostgreSQL bus and on a Redis Sentinel bus beside the Redis bus's.
    Propagate,
    /// The data-structure alternatives of issue 6 side by side: one-row deltas (copy-on-write
    /// maps, a HAMT, the snapshot), lookups and index memory, category and metadata storage,
    /// and SQL sorting on PostgreSQL.
    Structures,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Lookup => "lookup",
            Scenario::Reload => "reload",
            Scenario::ReloadUnderLoad => "reload-under-load",
            Scenario::Burst => "burst",
            Scenario::Match => "match",
            Scenario::Propagate => "propagate",
            Scenario::Structures => "structures",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Scenario::Lookup => {
                "Normalizer::normalize + PatternSnapshot::lookup in process, single thread"
            }
            Scenario::Reload => {
                "Engine::reload over a real Store vs the raw fetch of the same rows, alternately"
            }
            Scenario::ReloadUnderLoad => {
                "MatchPattern over gRPC, closed loop, while HotReload.Reload runs back to back (full reloads; re-imports of every row with delta reloads)"
            }
            Scenario::Burst => "Engine::request bursts over a PostgreSQL store (the bus path)",
            Scenario::Match => "closed-loop gRPC load, real server vs a bare tonic server",
            Scenario::Propagate => {
                "three Application replicas on the Redis bus, then three on the PostgreSQL bus, then \
                 three on a private Redis Sentinel set, observed through WatchStatus streams"
            }
            Scenario::Structures => {
                "each choice vs its alternatives on the same rows, interleaved; memory from \
                 child-process RSS"
            }
        }
    }
}

/// Benchmarks of hotplane: figures, same-run baselines, ratios and the targets of issue 6.
#[derive(Debug, Parser)]
#[command(name = "hotplane-bench", version, about, long_about = None)]
struct Args {
    /// Scenarios to run, in the order given (default: all).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,

    /// Small sizes and short durations: every scenario in a few seconds (used by the tests).
    #[arg(long)]
    quick: bool,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,

    /// Print Markdown tables instead of the table (what BENCHMARKS.md holds).
    #[arg(long, conflicts_with = "json")]
    markdown: bool,

    /// Also write the JSON document to this file (the table still goes to stdout).
    #[arg(long, value_name = "FILE")]
    json_out: Option<std::path::PathBuf>,

    /// PostgreSQL admin URL: bench databases are created (and dropped) through it.
    #[arg(long, env = "HOTPLANE_BENCH_DATABASE_URL", default_value = DEFAULT_PG_URL)]
    database_url: String,

    /// Seed of the generated data and queries.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,

    /// lookup: snapshot sizes (served patterns) [default: 1000,100000,1000000; quick: 1000].
    #[arg(long, value_delimiter = ',')]
    lookup_sizes: Option<Vec<usize>>,

    /// reload: store sizes (served patterns) [default: 1000,10000,100000,1000000; quick: 1000].
    /// Delta reloads, start to SERVING and memory are measured at the largest.
    #[arg(long, value_delimiter = ',')]
    reload_sizes: Option<Vec<usize>>,

    /// reload: stores to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "postgres,sqlite"
    )]
    backends: Vec<Backend>,

    /// reload-under-load: patterns in the store [default: 100000; quick: 1000].
    #[arg(long)]
    under_load_patterns: Option<usize>,

    /// reload-under-load: closed-loop MatchPattern callers.
    #[arg(long, default_value_t = 8)]
    under_load_callers: usize,

    /// reload-under-load: HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 2)]
    under_load_connections: usize,

    /// burst: patterns in the store [default: 10000; quick: 1000].
    #[arg(long)]
    burst_patterns: Option<usize>,

    /// burst: requests per burst.
    #[arg(long, default_value_t = 1000)]
    burst_messages: usize,

    /// match: patterns served [default: 100000; quick: 1000].
    #[arg(long)]
    match_patterns: Option<usize>,

    /// match: closed-loop callers.
    #[arg(long, default_value_t = 64)]
    callers: usize,

    /// match: HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,

    /// match: measured time per target, split over the rounds [default: 10s; quick: 400ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    /// match: queries per BatchMatchPatterns call.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,

    /// match: serve Prometheus /metrics on a loopback admin listener while measuring (the
    /// metrics layer then counts every call), to compare with a run without it.
    #[arg(long)]
    match_metrics: bool,

    /// propagate: patterns in the store [default: 10000; quick: 1000].
    #[arg(long)]
    propagate_patterns: Option<usize>,

    /// propagate: trials per figure [default: 200; quick: 20].
    #[arg(long)]
    propagate_trials: Option<usize>,

    /// Redis URL for propagate (a channel of its own is used, then abandoned).
    #[arg(long, env = "HOTPLANE_BENCH_REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    redis_url: String,

    /// structures: delta and PostgreSQL sizes; lookups, categories, metadata and memory are
    /// measured at the largest [default: 100000,1000000; quick: 1000].
    #[arg(long, value_delimiter = ',')]
    structures_sizes: Option<Vec<usize>>,

    /// Internal: measure the memory of loading the store at this URL and print JSON.
    #[arg(long, hide = true)]
    memory_probe: Option<String>,

    /// Internal: measure the memory of one `structures` alternative (KIND:ROWS:SEED).
    #[arg(long, hide = true)]
    structures_probe: Option<String>,
}

/// What the scenarios run with: the arguments, with `--quick` applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Small sizes.
    pub quick: bool,
    /// PostgreSQL admin URL.
    pub database_url: String,
    /// Data seed.
    pub seed: u64,
    /// lookup: snapshot sizes.
    pub lookup_sizes: Vec<usize>,
    /// lookup: distinct queries per mix.
    pub lookup_queries: usize,
    /// lookup: timed batches per measurement.
    pub lookup_batches: usize,
    /// reload: stores to measure.
    pub backends: Vec<Backend>,
    /// reload: store sizes.
    pub reload_sizes: Vec<usize>,
    /// reload: full reloads (and floors) per size, at most.
    pub reload_reps: usize,
    /// reload: delta reloads at the largest size.
    pub delta_trials: usize,
    /// reload: start-to-SERVING measurements at the largest size, at most.
    pub startup_reps: usize,
    /// reload-under-load: patterns in the store.
    pub under_load_patterns: usize,
    /// reload-under-load: closed-loop callers.
    pub under_load_callers: usize,
    /// reload-under-load: HTTP/2 connections.
    pub under_load_connections: usize,
    /// reload-under-load: length of each idle and each reloading window.
    pub under_load_window: Duration,
    /// reload-under-load: idle/reloading window pairs.
    pub under_load_rounds: usize,
    /// burst: patterns in the store.
    pub burst_patterns: usize,
    /// burst: requests per burst.
    pub burst_messages: usize,
    /// match: patterns served.
    pub match_patterns: usize,
    /// match: closed-loop callers.
    pub callers: usize,
    /// match: HTTP/2 connections.
    pub connections: usize,
    /// match: measured time per target (all rounds).
    pub match_duration: Duration,
    /// match: rounds over the targets.
    pub match_rounds: usize,
    /// match: unmeasured start of each window.
    pub match_warmup: Duration,
    /// match: queries per BatchMatchPatterns call.
    pub batch_size: usize,
    /// match: with the admin listener (/metrics) on.
    pub match_metrics: bool,
    /// propagate: patterns in the store.
    pub propagate_patterns: usize,
    /// propagate: trials per figure.
    pub propagate_trials: usize,
    /// propagate: Redis URL.
    pub redis_url: String,
    /// structures: delta and PostgreSQL sizes (the largest for the rest).
    pub structures_sizes: Vec<usize>,
    /// structures: measured one-row deltas per design and size.
    pub structures_trials: usize,
    /// structures: unmeasured deltas first.
    pub structures_warmup: usize,
    /// structures: builds and fetches per alternative.
    pub structures_reps: usize,
}

impl Settings {
    fn from_args(a: &Args) -> Settings {
        let q = a.quick;
        Settings {
            quick: q,
            database_url: a.database_url.clone(),
            seed: a.seed,
            lookup_sizes: a.lookup_sizes.clone().unwrap_or_else(|| {
                if q {
                    vec![1000]
                } else {
                    vec![1000, 100_000, 1_000_000]
                }
            }),
            lookup_queries: if q { 5_000 } else { 100_000 },
            lookup_batches: if q { 50 } else { 1000 },
            backends: a.backends.clone(),
            reload_sizes: a.reload_sizes.clone().unwrap_or_else(|| {
                if q {
                    vec![1000]
                } else {
                    vec![1000, 10_000, 100_000, 1_000_000]
                }
            }),
            reload_reps: if q { 2 } else { 7 },
            delta_trials: if q { 3 } else { 30 },
            startup_reps: if q { 1 } else { 3 },
            under_load_patterns: a
                .under_load_patterns
                .unwrap_or(if q { 1000 } else { 100_000 }),
            under_load_callers: a.under_load_callers.max(1),
            under_load_connections: a.under_load_connections.max(1),
            under_load_window: Duration::from_millis(if q { 300 } else { 3000 }),
            under_load_rounds: if q { 1 } else { 3 },
            burst_patterns: a.burst_patterns.unwrap_or(if q { 1000 } else { 10_000 }),
            burst_messages: a.burst_messages.max(1),
            match_patterns: a.match_patterns.unwrap_or(if q { 1000 } else { 100_000 }),
            callers: a.callers.max(1),
            connections: a.connections.max(1),
            match_duration: a.duration.unwrap_or(Duration::from_millis(if q {
                400
            } else {
                10_000
            })),
            match_rounds: if q { 1 } else { 2 },
            match_warmup: Duration::from_millis(if q { 100 } else { 500 }),
            batch_size: a.batch_size.clamp(1, 1000),
            match_metrics: a.match_metrics,
            propagate_patterns: a
                .propagate_patterns
                .unwrap_or(if q { 1000 } else { 10_000 }),
            propagate_trials: a
                .propagate_trials
                .unwrap_or(if q { 20 } else { 200 })
                .max(1),
            redis_url: a.redis_url.clone(),
            structures_sizes: a
                .structures_sizes
                .clone()
                .filter(|v| !v.is_empty() && v.iter().all(|&n| n > 0))
                .unwrap_or_else(|| {
                    if q {
                        vec![1000]
                    } else {
                        vec![100_000, 1_000_000]
                    }
                }),
            structures_trials: if q { 5 } else { 50 },
            structures_warmup: if q { 1 } else { 3 },
            structures_reps: if q { 1 } else { 5 },
        }
    }
}

/// A progress line on stderr (stdout carries only the report).
pub fn progress(msg: impl AsRef<str>) {
    eprintln!("[hotplane-bench] {}", msg.as_ref());
}

async fn run_scenario(scenario: Scenario, s: &Settings) -> anyhow::Result<ScenarioReport> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let load_before = stats::loadavg();
    let cpu = CpuMark::now();
    let mut notes = Vec::new();
    let figures = match scenario {
        Scenario::Lookup => {
            let settings = s.clone();
            tokio::task::spawn_blocking(move || {
                let mut notes = Vec::new();
                lookup::run(&settings, &mut notes).map(|f| (f, notes))
            })
            .await?
            .map(|(f, n)| {
                notes = n;
                f
            })?
        }
        Scenario::Reload => reload::run(s, &mut notes).await?,
        Scenario::ReloadUnderLoad => under_load::run(s, &mut notes).await?,
        Scenario::Burst => burst::run(s, &mut notes).await?,
        Scenario::Match => matching::run(s, &mut notes).await?,
        Scenario::Propagate => propagate::run(s, &mut notes).await?,
        Scenario::Structures => structures::run(s, &mut notes).await?,
    };
    Ok(ScenarioReport {
        name: scenario.name(),
        method: scenario.method().to_owned(),
        figures,
        notes,
        seconds: started.elapsed().as_secs_f64(),
        loadavg: (load_before, stats::loadavg()),
        cpu: cpu.since(cores),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.memory_probe {
        return reload::probe_memory(url);
    }
    if let Some(spec) = &args.structures_probe {
        return structures::probe(spec);
    }
    let settings = Settings::from_args(&args);
    let scenarios = if args.scenarios.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        args.scenarios.clone()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = Report {
        version: env!("CARGO_PKG_VERSION"),
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: settings.quick,
        machine: Machine::detect(),
        scenarios: Vec::new(),
    };
    for scenario in scenarios {
        progress(format!("scenario {}", scenario.name()));
        let r = rt.block_on(run_scenario(scenario, &settings))?;
        report.scenarios.push(r);
    }
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    } else if args.markdown {
        print!("{}", report.markdown());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

//! Scenario `reload`: full reloads through the real engine (`Engine::start` over a real
//! `Store`, `Scope::Full`) against the floor — the store's own SELECT fetched by the same
//! driver into a `Vec` of driver rows, nothing decoded or built — measured alternately in the
//! same run. At the largest size also: a delta reload of one changed row (against the store's
//! delta read of that row), the time from `Application::build` to health SERVING, and memory
//! per pattern, measured in a child process (see [`probe_memory`]).

use std::{
    future::Future,
    time::{Duration, Instant},
};

use anyhow::Context;
use hotplane::{
    config::Config,
    engine::{Engine, EngineOptions, LoadMode, LoadRequest, Scope, Source},
    normalize::{Normalizer, Profile},
    snapshot::PatternSnapshot,
    store::{Store, StoreOptions},
};

use crate::{
    Settings,
    data::{Dataset, Rng},
    db::{Backend, BenchDb},
    progress,
    report::{Figure, Target, num},
    server::{ServerThread, wait_serving},
    stats::{self, Rss, summarize},
};

/// Wall-time budget for the repetitions of one measurement (at least two always run).
const REPS_BUDGET: Duration = Duration::from_secs(30);
/// Longest wait for SERVING.
const SERVING_DEADLINE: Duration = Duration::from_secs(300);

/// The Python path's figures from issue 6 (2-vCPU machine): full reload and raw fetch, ms.
fn python_ms(size: usize) -> Option<(f64, Option<f64>)> {
    match size {
        1_000 => Some((2.3, None)),
        10_000 => Some((32.0, Some(3.1))),
        100_000 => Some((421.0, Some(38.0))),
        1_000_000 => Some((4900.0, Some(550.0))),
        _ => None,
    }
}

/// Milliseconds `f` took, with its output.
async fn timed<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<(f64, T)> {
    let t0 = Instant::now();
    let out = f.await?;
    Ok((stats::ms(t0.elapsed()), out))
}

fn request(scope: Scope) -> LoadRequest {
    LoadRequest {
        scope,
        source: Source::Grpc,
        reason: "bench".into(),
    }
}

/// Runs the scenario.
pub async fn run(s: &Settings, notes: &mut Vec<String>) -> anyhow::Result<Vec<Figure>> {
    let normalizer = Normalizer::new(Profile::Default, None);
    let largest = s.reload_sizes.iter().copied().max().unwrap_or(0);
    let mut figures = Vec::new();
    for &size in &s.reload_sizes {
        progress(format!("reload: generating {} patterns", num(size as f64)));
        let data = Dataset::generate(size, s.seed, &normalizer);
        for &backend in &s.backends {
            let case = Case {
                s,
                backend,
                size,
                data: &data,
            };
            case.run(size == largest, &mut figures, notes).await?;
        }
    }
    notes.push(
        "reload and floor alternate, so both see the same machine load; the floor is the raw \
         fetch of the served rows (the store's SELECT, its columns and WHERE, into a Vec of \
         owned driver rows) by the driver the store's full load reads with: sqlx on \
         PostgreSQL, rusqlite on SQLite (the pool's sqlx is timed in the details); on \
         PostgreSQL the store reads the rows through binary COPY instead, and the details give \
         that COPY's bare receive time as a second floor; on SQLite, stepping the SELECT with \
         values only borrowed"
            .into(),
    );
    notes.push(
        "memory: RSS (VmRSS/VmHWM from /proc/self/status) of a child process that only loads \
         the snapshot; glibc malloc; peak reset through /proc/self/clear_refs"
            .into(),
    );
    Ok(figures)
}

/// One backend at one size.
struct Case<'a> {
    s: &'a Settings,
    backend: Backend,
    size: usize,
    data: &'a Dataset,
}

impl Case<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.backend.name(), num(self.size as f64))
    }

    async fn run(
        &self,
        largest: bool,
        figures: &mut Vec<Figure>,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        progress(format!("reload: {}: filling", self.label()));
        let db = BenchDb::create(self.backend, &self.s.database_url).await?;
        let fill = db.fill(&self.data.rows).await?;
        notes.push(format!(
            "{}: inserted {} rows in {:.1} s",
            self.label(),
            num(self.data.rows.len() as f64),
            fill.as_secs_f64()
        ));
        let store = db.store(4).await?;
        let engine = Engine::start(store.clone(), EngineOptions::default());
        progress(format!("reload: {}: full reloads", self.label()));
        figures.push(self.full_reloads(&db, &engine, &store).await?);
        if largest {
            progress(format!("reload: {}: delta reloads", self.label()));
            figures.push(self.delta_reloads(&db, &engine, &store).await?);
        }
        engine.shutdown();
        store.close().await;
        drop(engine);
        if largest {
            progress(format!("reload: {}: start to SERVING", self.label()));
            figures.push(self.start_to_serving(&db).await?);
            progress(format!("reload: {}: memory", self.label()));
            figures.extend(self.memory(&db).await?);
        }
        db.remove().await
    }

    /// Full reloads and the raw fetch, alternately; plus one timing of each phase.
    async fn full_reloads(
        &self,
        db: &BenchDb,
        engine: &Engine,
        store: &Store,
    ) -> anyhow::Result<Figure> {
        let client = db.client().await?;
        let (first, _) =
            timed(async { Ok(engine.reload(request(Scope::Full), None).await?) }).await?;
        let served = engine.current().snapshot.len();
        anyhow::ensure!(
            served == self.data.served,
            "the engine serves {served} patterns, expected {}",
            self.data.served
        );
        let (mut reloads, mut floors, mut copies, mut server, mut steps, mut sqlx) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let started = Instant::now();
        while reloads.len() < self.s.reload_reps
            && (reloads.len() < 2 || started.elapsed() < REPS_BUDGET)
        {
            let (floor, n) = timed(client.load_floor()).await?;
            anyhow::ensure!(
                n == served,
                "the raw fetch read {n} rows, expected {served}"
            );
            floors.push(floor);
            // Second floors. PostgreSQL: the load's COPY received and dropped, and written by
            // the server alone. SQLite: the SELECT stepped with values only borrowed, and sqlx's
            // fetch of it (what the load read through before the direct reader).
            let (copy, bytes) = timed(client.raw_copy()).await?;
            if bytes.is_some() {
                copies.push(copy);
            }
            if let Some(t) = client.server_copy().await {
                server.push(stats::ms(t));
            }
            let (step, stepped) = timed(client.rusqlite_fetch(false)).await?;
            if stepped.is_some() {
                steps.push(step);
                sqlx.push(timed(client.raw_fetch()).await?.0);
            }
            let (ms, (report, _)) =
                timed(async { Ok(engine.reload(request(Scope::Full), None).await?) }).await?;
            anyhow::ensure!(report.mode == LoadMode::Full, "not a full load");
            reloads.push(ms);
        }
        // Phases, each timed three times (median): what the engine does inside a full reload.
        // One timing alone can pay for the floor's garbage: the raw fetch frees millions of
        // small chunks, and a thread that next takes over that malloc arena sorts them first.
        let (mut decodes, mut builds, mut drops) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            let (decode, load) = timed(async { Ok(store.load_full().await?) }).await?;
            let prev = std::sync::Arc::clone(&engine.current().snapshot);
            let (build, dropped) = tokio::task::spawn_blocking(move || {
                let t0 = Instant::now();
                let (next, _) = PatternSnapshot::from_records_after(&prev, load.rows)
                    .map_err(anyhow::Error::msg)?;
                let build = stats::ms(t0.elapsed());
                // What freeing a generation costs once it expires (the engine does it on the
                // blocking pool): its index, and none of the rows it shares with `prev`.
                let t2 = Instant::now();
                drop(next);
                anyhow::Ok((build, stats::ms(t2.elapsed())))
            })
            .await??;
            decodes.push(decode);
            builds.push(build);
            drops.push(dropped);
        }
        let (decode, build, dropped) = (
            summarize(&mut decodes).p50,
            summarize(&mut builds).p50,
            summarize(&mut drops).p50,
        );
        client.close().await;
        let (reload, floor) = (summarize(&mut reloads), summarize(&mut floors));
        let copy = if copies.is_empty() {
            String::new()
        } else {
            let c = summarize(&mut copies);
            format!(
                "; the load's binary COPY received and dropped (no parsing): {} ms, so the \
                 reload is {}× that",
                num(c.p50),
                num(reload.p50 / c.p50)
            ) + &if server.is_empty() {
                String::new()
            } else {
                format!(
                    "; PostgreSQL writing the same COPY to /dev/null itself (no client at all): {} \
                     ms",
                    num(summarize(&mut server).p50)
                )
            }
        };
        let copy = if steps.is_empty() {
            copy
        } else {
            let st = summarize(&mut steps);
            format!(
                "; the same SELECT stepped by rusqlite with each value only borrowed: {} ms, so \
                 the reload is {}× that; sqlx's fetch of it (the load's path before the direct \
                 reader): {} ms",
                num(st.p50),
                num(reload.p50 / st.p50),
                num(summarize(&mut sqlx).p50)
            )
        };
        let python = python_ms(self.size).map_or_else(String::new, |(full, fetch)| {
            format!(
                "; Python: {full} ms{}",
                fetch.map_or_else(String::new, |f| format!(" (its raw fetch {f} ms)"))
            )
        });
        let mut fig = Figure::new(
            format!("{}: full reload, median of {}", self.label(), reload.n),
            reload.p50,
            "ms",
            client.load_floor_name(),
            floor.p50,
        )
        .detail(format!(
            "min {} ms (floor min {} ms); first load {} ms; phases (median of 3): fetch+decode {} \
             ms, build with diff {} ms, dropping an expired generation {} ms{copy}{python}",
            num(reload.min),
            num(floor.min),
            num(first),
            num(decode),
            num(build),
            num(dropped)
        ));
        if self.size == 100_000 {
            fig = fig.target(Target::RatioAtMost(1.3));
        } else if self.size >= 1_000_000 {
            fig = fig.target(Target::AtMost(700.0));
        }
        Ok(fig)
    }

    /// Delta reloads of one row changed by another client, against the store's delta read.
    async fn delta_reloads(
        &self,
        db: &BenchDb,
        engine: &Engine,
        store: &Store,
    ) -> anyhow::Result<Figure> {
        let client = db.client().await?;
        let mut rng = Rng::new(self.s.seed, 10);
        let (mut deltas, mut floors, mut applies, mut clones) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let rss_before = stats::rss().now;
        for k in 0..self.s.delta_trials {
            let before = engine.current().cursor.clone().context("no cursor")?;
            let id = 1 + rng.below(self.data.served);
            client
                .exec(&format!(
                    "UPDATE auto_learned_patterns SET category = 'bench_delta_{k}' WHERE id = {id}"
                ))
                .await?;
            let (ms, (report, _)) =
                timed(async { Ok(engine.reload(request(Scope::Delta), None).await?) }).await?;
            anyhow::ensure!(
                report.mode == LoadMode::Delta && report.counts.updated == 1,
                "expected a delta load updating one row, got {:?} {:?}",
                report.mode,
                report.counts
            );
            deltas.push(ms);
            let (floor, delta) = timed(async { Ok(store.load_delta(&before).await?) }).await?;
            floors.push(floor);
            // In process: the snapshot work of that delta, and the clone it starts with.
            let snap = std::sync::Arc::clone(&engine.current().snapshot);
            let (apply, clone) = tokio::task::spawn_blocking(move || {
                let t0 = Instant::now();
                let applied = snap.apply(delta.changed, &delta.deleted);
                let apply = stats::ms(t0.elapsed());
                drop(applied);
                let t1 = Instant::now();
                let copy = PatternSnapshot::clone(&snap);
                let clone = stats::ms(t1.elapsed());
                drop(copy);
                (apply, clone)
            })
            .await?;
            applies.push(apply);
            clones.push(clone);
        }
        client.close().await;
        let d = summarize(&mut deltas);
        let f = summarize(&mut floors);
        let mut fig = Figure::new(
            format!(
                "{}: delta reload of 1 changed row, median of {}",
                self.label(),
                d.n
            ),
            d.p50,
            "ms",
            "store.load_delta of that row",
            f.p50,
        )
        .detail(format!(
            "p99 {} ms; in process: PatternSnapshot::apply {} ms, of which cloning the snapshot {} \
             ms; after {} deltas the engine retains {} generations and the bench's RSS grew by \
             {} MiB",
            num(d.p99),
            num(summarize(&mut applies).p50),
            num(summarize(&mut clones).p50),
            d.n,
            engine.retained().len(),
            num(stats::rss().now.saturating_sub(rss_before) as f64 / 1048576.0)
        ));
        if self.size >= 1_000_000 {
            fig = fig.target(Target::AtMost(2.0));
        }
        Ok(fig)
    }

    /// `Application::build` → health SERVING (on the health Watch stream), against the raw
    /// fetch of the same rows.
    async fn start_to_serving(&self, db: &BenchDb) -> anyhow::Result<Figure> {
        let client = db.client().await?;
        let (floor, _) = timed(client.load_floor()).await?;
        let floor_name = client.load_floor_name();
        client.close().await;
        let (mut times, mut builds) = (Vec::new(), Vec::new());
        let started = Instant::now();
        while times.len() < self.s.startup_reps
            && (times.is_empty() || started.elapsed() < REPS_BUDGET)
        {
            let t0 = Instant::now();
            let server = ServerThread::hotplane(Config::for_database(db.url())).await?;
            builds.push(stats::ms(t0.elapsed()));
            wait_serving(server.addr, SERVING_DEADLINE).await?;
            times.push(stats::ms(t0.elapsed()));
            server.stop().await?;
        }
        let t = summarize(&mut times);
        let b = summarize(&mut builds);
        let mut fig = Figure::new(
            format!(
                "{}: Application::build to SERVING, median of {}",
                self.label(),
                t.n
            ),
            t.p50,
            "ms",
            floor_name,
            floor,
        )
        .detail(format!(
            "Application::build (connect, migrate, bind) {} ms, then the first load until \
             SERVING",
            num(b.p50)
        ));
        if self.size >= 1_000_000 {
            fig = fig.target(Target::AtMost(2000.0));
        }
        Ok(fig)
    }

    /// Memory per pattern, from a child process that only loads the snapshot; then again
    /// with every row's metadata set to NULL, which shows what the JSON metadata costs.
    async fn memory(&self, db: &BenchDb) -> anyhow::Result<Vec<Figure>> {
        let probe = run_probe(db.url()).await?;
        let n = probe.served.max(1) as f64;
        let per = |bytes: u64| bytes.saturating_sub(probe.base.now) as f64 / n;
        let payload = self
            .data
            .served_rows()
            .iter()
            .map(|r| {
                let text = r.pattern.len() + r.normalized_pattern.len() + r.category.len();
                let json = r.metadata.as_ref().map_or(0, String::len);
                text + r.created_by.len() + json + 9 * 8
            })
            .sum::<usize>() as f64
            / self.data.served.max(1) as f64;
        let retained = per(probe.loaded.now);
        let mut kept = Figure::new(
            format!("{}: retained memory per pattern (RSS)", self.label()),
            retained,
            "B",
            "row payload (text, JSON, 9×8-byte fields)",
            payload,
        )
        .detail(format!(
            "RSS {} MiB before the load, {} MiB after; peak during the first load {} B/pattern; \
             RSS after a second full reload {} B/pattern",
            num(probe.base.now as f64 / 1048576.0),
            num(probe.loaded.now as f64 / 1048576.0),
            num(per(probe.loaded.peak)),
            num(per(probe.reloaded.now)),
        ));
        let mut peak = Figure::new(
            format!("{}: peak during a full reload per pattern", self.label()),
            per(probe.reloaded.peak),
            "B",
            "retained (steady state)",
            retained,
        );
        if self.size >= 1_000_000 {
            kept = kept.target(Target::AtMost(200.0));
            peak = peak.target(Target::RatioAtMost(2.0));
        }
        if !probe.peak_reset {
            peak = peak.detail("the kernel refused to reset VmHWM: this is the peak since start");
        }
        let client = db.client().await?;
        client
            .exec("UPDATE auto_learned_patterns SET metadata = NULL")
            .await?;
        client.close().await;
        let bare = run_probe(db.url()).await?;
        let without = bare.loaded.now.saturating_sub(bare.base.now) as f64 / n;
        let metadata = Figure::new(
            format!("{}: retained per pattern, metadata NULL", self.label()),
            without,
            "B",
            "retained with metadata",
            retained,
        )
        .detail(format!(
            "the metadata (JSON objects on 70% of rows, kept as the store's JSON text) costs {} \
             B/pattern; each row is one packed record (a 68-byte header and its texts) in the \
             snapshot's arena",
            num(retained - without),
        ));
        Ok(vec![kept, peak, metadata])
    }
}

/// Runs the memory probe as a child process on `url`.
async fn run_probe(url: &str) -> anyhow::Result<Probe> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["--memory-probe", &url])
            .output()
    })
    .await?
    .context("running the memory probe")?;
    anyhow::ensure!(
        out.status.success(),
        "the memory probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("reading the memory probe's report")
}

/// What the memory probe reports (RSS in bytes).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// Served patterns.
    pub served: usize,
    /// After connecting, before loading.
    pub base: Rss,
    /// After the first full load (peak: during it).
    pub loaded: Rss,
    /// After a second full load (peak: during it, if the reset worked).
    pub reloaded: Rss,
    /// Whether VmHWM could be reset before the second load.
    pub peak_reset: bool,
}

/// The child side of the memory measurement: in a fresh process (so nothing the bench
/// allocated before is counted), connect to `url`, load every pattern through the engine,
/// reload once more, and print a [`Probe`] as JSON on stdout.
pub fn probe_memory(url: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let probe = rt.block_on(async {
        let store = Store::connect(&StoreOptions {
            url: url.to_owned(),
            schema: "public".into(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(30),
        })
        .await?;
        store.revision().await?; // the pool's connection exists before the baseline
        let engine = Engine::start(store.clone(), EngineOptions::default());
        let base = stats::rss();
        stats::reset_peak();
        engine.reload(request(Scope::Full), None).await?;
        let loaded = stats::rss();
        let peak_reset = stats::reset_peak();
        engine.reload(request(Scope::Full), None).await?;
        let reloaded = stats::rss();
        let served = engine.current().snapshot.len();
        engine.shutdown();
        store.close().await;
        anyhow::Ok(Probe {
            served,
            base,
            loaded,
            reloaded,
            peak_reset,
        })
    })?;
    println!("{}", serde_json::to_string(&probe)?);
    Ok(())
}

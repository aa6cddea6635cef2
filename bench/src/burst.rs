//! Scenario `burst`: many reload requests at once through `Engine::request`, the fire-and-forget
//! path the Redis bus uses. How many loads does the single flight actually run, and how long
//! until the engine is idle again? Against the Python path (one full reload per message) and
//! one load of the same scope alone.
//!
//! The last request of a burst goes through `Engine::reload`, which waits: it was pushed after
//! every other one, so when it is answered every earlier request has been served and nothing is
//! left pending — the engine is idle.

use std::time::Instant;

use hotplane::{
    engine::{Engine, EngineOptions, LoadRequest, Scope, Source},
    normalize::{Normalizer, Profile},
};

use crate::{
    Settings,
    data::{Dataset, Rng},
    db::{Backend, BenchDb, Client},
    progress,
    report::{Figure, Target, num},
    stats,
};

fn bus(scope: Scope) -> LoadRequest {
    LoadRequest {
        scope,
        source: Source::Bus,
        reason: "bench: burst".into(),
    }
}

/// How the requests of a burst are pushed.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// All in one go.
    AtOnce,
    /// One at a time, yielding to the runtime between pushes (the loader can start meanwhile).
    Yielding,
}

/// Changes one row as another client would, so each load has something to read.
async fn touch(client: &Client, rng: &mut Rng, served: usize, k: usize) -> anyhow::Result<()> {
    let id = 1 + rng.below(served);
    client
        .exec(&format!(
            "UPDATE auto_learned_patterns SET category = 'bench_burst_{k}' WHERE id = {id}"
        ))
        .await?;
    Ok(())
}

/// Runs the scenario.
pub async fn run(s: &Settings, notes: &mut Vec<String>) -> anyhow::Result<Vec<Figure>> {
    let normalizer = Normalizer::new(Profile::Default, None);
    let size = s.burst_patterns;
    let messages = s.burst_messages.max(1);
    progress(format!("burst: {} patterns on postgres", num(size as f64)));
    let data = Dataset::generate(size, s.seed, &normalizer);
    let db = BenchDb::create(Backend::Postgres, &s.database_url).await?;
    db.fill(&data.rows).await?;
    let store = db.store(4).await?;
    let client = db.client().await?;
    let engine = Engine::start(store.clone(), EngineOptions::default());
    engine.reload(bus(Scope::Full), None).await?;
    let mut rng = Rng::new(s.seed, 20);

    // One load alone, of each scope: the time a burst cannot beat.
    touch(&client, &mut rng, data.served, 0).await?;
    let t0 = Instant::now();
    engine.reload(bus(Scope::Delta), None).await?;
    let one_delta = stats::ms(t0.elapsed());
    let t0 = Instant::now();
    engine.reload(bus(Scope::Full), None).await?;
    let one_full = stats::ms(t0.elapsed());

    let label = format!("{} patterns, {}", num(size as f64), num(messages as f64));
    let mut figures = Vec::new();
    // What the bus asks for: a delta (a message without an id), or the row a message names.
    // Scope::Full is not a bus request; it shows what coalescing saves on the heaviest load.
    let variants = [
        (Kind::Delta, Pace::AtOnce, "Scope::Delta at once", one_delta),
        (
            Kind::Delta,
            Pace::Yielding,
            "Scope::Delta yielding",
            one_delta,
        ),
        (
            Kind::Ids,
            Pace::AtOnce,
            "Scope::Ids([own id]) at once",
            one_delta,
        ),
        (Kind::Full, Pace::AtOnce, "Scope::Full at once", one_full),
    ];
    for (k, (kind, pace, name, alone)) in variants.into_iter().enumerate() {
        touch(&client, &mut rng, data.served, k + 1).await?;
        let loads_before = engine.health().loads_total;
        let t0 = Instant::now();
        burst(&engine, kind, pace, messages, data.served).await?;
        let idle = stats::ms(t0.elapsed());
        let loads = engine.health().loads_total - loads_before;
        let mut loads = Figure::new(
            format!("{label} × {name}: loads"),
            loads as f64,
            "loads",
            "one load per message (the Python path)",
            messages as f64,
        );
        let mut idle = Figure::new(
            format!("{label} × {name}: time until idle"),
            idle,
            "ms",
            "one such load alone",
            alone,
        );
        if !matches!(kind, Kind::Full) {
            loads = loads.target(Target::AtMost(3.0));
            idle = idle.target(Target::AtMost(100.0));
        }
        figures.extend([loads, idle]);
    }
    engine.shutdown();
    client.close().await;
    store.close().await;
    db.remove().await?;
    notes.push(
        "each burst follows a one-row change made by another client; targets apply to what \
         the bus requests (Delta, Ids), not to Scope::Full; Python: 1,000 full reloads and \
         33 s until idle at 10k patterns"
            .into(),
    );
    Ok(figures)
}

/// What each request of a burst asks for.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `Scope::Delta`.
    Delta,
    /// `Scope::Ids` of one row, a different row per request.
    Ids,
    /// `Scope::Full`.
    Full,
}

/// Pushes `messages` requests; the last one waits for its load.
async fn burst(
    engine: &Engine,
    kind: Kind,
    pace: Pace,
    messages: usize,
    served: usize,
) -> anyhow::Result<()> {
    let scope = |i: usize| match kind {
        Kind::Delta => Scope::Delta,
        Kind::Ids => Scope::Ids(vec![1 + (i % served.max(1)) as i64]),
        Kind::Full => Scope::Full,
    };
    for i in 1..messages {
        engine.request(bus(scope(i)), None);
        if let Pace::Yielding = pace {
            tokio::task::yield_now().await;
        }
    }
    engine.reload(bus(scope(messages)), None).await?;
    Ok(())
}

//! Servers under test, each on its own runtime and threads (as in production, the server's
//! threads are not the client's): the real hotplane [`Application`] and a bare tonic server
//! with only `grpc.health.v1` (the framework's floor). Plus the closed-loop gRPC load driver.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use hotplane::{
    config::Config,
    pb::{self, patterns_client::PatternsClient},
    startup::Application,
};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::{Channel, Server, server::TcpIncoming};
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
};

use crate::stats::{Summary, summarize};

/// Worker threads of each server runtime: the machine's cores, like `#[tokio::main]`.
fn server_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A server running on its own thread and runtime until [`ServerThread::stop`].
pub struct ServerThread {
    /// The bound loopback address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl ServerThread {
    /// Builds the hotplane application with `config` and serves it. Returns once the listener
    /// is bound (not yet SERVING: see [`wait_serving`]).
    pub async fn hotplane(config: Config) -> anyhow::Result<ServerThread> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hotplane-server".into())
            .spawn(move || {
                let rt = server_runtime("hotplane-srv")?;
                rt.block_on(async move {
                    let app = match Application::build(config).await {
                        Ok(app) => app,
                        Err(e) => {
                            let msg = format!("{e:#}");
                            let _ = ready_tx.send(Err(e));
                            anyhow::bail!("building the application failed: {msg}");
                        }
                    };
                    let _ = ready_tx.send(Ok(app.local_addr()));
                    app.run_until_stopped(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                })
            })
            .context("spawning the server thread")?;
        let addr = ready_rx
            .await
            .context("the server thread ended before binding")??;
        Ok(ServerThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A bare tonic server with only the health service (status SERVING): what any gRPC call
    /// costs on this machine with this framework, without hotplane's handlers and layers.
    pub async fn echo() -> anyhow::Result<ServerThread> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || {
                let rt = server_runtime("echo-srv")?;
                rt.block_on(async move {
                    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
                    let _ = ready_tx.send(listener.local_addr());
                    let (reporter, service) = tonic_health::server::health_reporter();
                    reporter
                        .set_service_status("", ServingStatus::Serving)
                        .await;
                    Server::builder()
                        .add_service(service)
                        // TCP_NODELAY like hotplane's listener and tonic's own `serve`: a
                        // floor with Nagle coalescing replies would not compare like with like.
                        .serve_with_incoming_shutdown(
                            TcpIncoming::from(listener).with_nodelay(Some(true)),
                            async move {
                                let _ = stop_rx.await;
                            },
                        )
                        .await?;
                    Ok(())
                })
            })
            .context("spawning the echo server thread")?;
        let addr = ready_rx.await.context("the echo server thread ended")??;
        Ok(ServerThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the server gracefully and waits for its thread.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await?
                .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
        }
        Ok(())
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        // A scenario that failed half-way still stops its server; the thread ends on its own.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn server_runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_workers())
        .thread_name(name)
        .enable_all()
        .build()
        .context("building a server runtime")
}

/// One HTTP/2 connection to `addr`.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// Waits until the health Watch stream of `addr` says SERVING (as a client would, no
/// polling), at most `deadline`.
pub async fn wait_serving(addr: SocketAddr, deadline: Duration) -> anyhow::Result<()> {
    let mut health = HealthClient::new(connect(addr).await?);
    let mut stream = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    tokio::time::timeout(deadline, async {
        while let Some(msg) = stream.message().await? {
            if msg.status == health_check_response::ServingStatus::Serving as i32 {
                return Ok(());
            }
        }
        anyhow::bail!("the health stream ended before SERVING")
    })
    .await
    .context("waiting for SERVING")?
}

/// What one closed-loop caller sends.
#[derive(Debug, Clone)]
pub enum Call {
    /// `MatchPattern` of one query, expected to match (a miss counts as a wrong answer).
    Match(Arc<Vec<String>>),
    /// `BatchMatchPatterns` of `size` queries, every one expected to match.
    Batch(Arc<Vec<String>>, usize),
    /// `grpc.health.v1.Health/Check` of `""`, expected SERVING.
    Health,
}

/// The outcome of a closed-loop run.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Calls completed inside the measured window.
    pub calls: u64,
    /// Calls that returned an error status (inside the window).
    pub errors: u64,
    /// Calls that succeeded with a wrong answer (a hit query not matched, health not SERVING).
    pub wrong: u64,
    /// The measured window.
    pub window: Duration,
    /// Latency of every measured call, µs (up to a bounded number per caller).
    pub latencies_us: Vec<f64>,
}

impl LoadResult {
    /// Calls per second.
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Latency distribution, µs.
    pub fn latency(&self) -> Summary {
        summarize(&mut self.latencies_us.clone())
    }

    /// Adds another window's result.
    pub fn merge(&mut self, other: LoadResult) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.wrong += other.wrong;
        self.window += other.window;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Most latencies one caller records (bounded memory whatever the duration).
const MAX_SAMPLES_PER_CALLER: usize = 500_000;

/// Runs `callers` closed-loop callers spread over `channels` (one HTTP/2 connection each):
/// each sends its next call as soon as the previous one returns. Calls that start during the
/// first `warmup` are not counted; the measured window is the `duration` after it.
pub async fn closed_loop(
    channels: &[Channel],
    callers: usize,
    call: &Call,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let start = Instant::now() + Duration::from_millis(5);
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(callers);
    for i in 0..callers {
        let channel = channels[i % channels.len().max(1)].clone();
        let call = call.clone();
        tasks.push(tokio::spawn(caller(
            i,
            channel,
            call,
            start,
            measure_from,
            end,
        )));
    }
    let mut total = LoadResult {
        window: duration,
        ..LoadResult::default()
    };
    for t in tasks {
        if let Ok(r) = t.await {
            total.calls += r.calls;
            total.errors += r.errors;
            total.wrong += r.wrong;
            total.latencies_us.extend(r.latencies_us);
        }
    }
    total
}

async fn caller(
    index: usize,
    channel: Channel,
    call: Call,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> LoadResult {
    let mut patterns = PatternsClient::new(channel.clone());
    let mut health = HealthClient::new(channel);
    let mut out = LoadResult::default();
    // Each caller walks the query list from its own offset, so callers do not send in lockstep.
    let mut next = index.wrapping_mul(7919);
    tokio::time::sleep_until(start.into()).await;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let outcome = match &call {
            Call::Match(queries) => {
                let q = &queries[next % queries.len()];
                next += 1;
                patterns
                    .match_pattern(pb::MatchPatternRequest {
                        query: q.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().matched)
            }
            Call::Batch(queries, size) => {
                let batch: Vec<String> = (0..*size)
                    .map(|k| queries[(next + k) % queries.len()].clone())
                    .collect();
                next += size;
                patterns
                    .batch_match_patterns(pb::BatchMatchPatternsRequest {
                        queries: batch,
                        ..Default::default()
                    })
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        r.results.len() == *size && r.results.iter().all(|m| m.matched)
                    })
            }
            Call::Health => health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| {
                    r.into_inner().status == health_check_response::ServingStatus::Serving as i32
                }),
        };
        let t1 = Instant::now();
        if t0 < measure_from || t1 > end {
            continue;
        }
        out.calls += 1;
        match outcome {
            Ok(true) => {}
            Ok(false) => out.wrong += 1,
            Err(_) => out.errors += 1,
        }
        if out.latencies_us.len() < MAX_SAMPLES_PER_CALLER {
            out.latencies_us.push((t1 - t0).as_secs_f64() * 1e6);
        }
    }
    out
}

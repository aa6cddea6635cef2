//! The server under test on its own runtime and threads (as in production, the server's
//! threads are not the client's): the real hotplane [`Application`].

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use hotplane::{config::Config, startup::Application};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response, health_client::HealthClient};

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

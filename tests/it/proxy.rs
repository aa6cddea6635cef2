//! A TCP proxy in front of the test PostgreSQL, so a test can cut one server's database off the
//! way a stopped PostgreSQL would (open connections reset, new ones refused) without touching
//! the shared server that other tests use.

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// A running proxy; `cut` ends it.
pub struct Proxy {
    /// The database URL through the proxy.
    pub url: String,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Proxies the host and port of `url` (a `postgres://` URL) on a port-0 loopback listener.
    pub async fn postgres(url: &str) -> Proxy {
        let opts: sqlx::postgres::PgConnectOptions = url.parse().expect("a PostgreSQL URL");
        let upstream = format!("{}:{}", opts.get_host(), opts.get_port());
        assert!(
            url.contains(&upstream),
            "{url} names its server as {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let local: SocketAddr = listener.local_addr().expect("addr");
        let target = upstream.clone();
        let accept = tokio::spawn(async move {
            // The connections live in this task's set: aborting the task aborts them all.
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy {
            url: url.replacen(&upstream, &local.to_string(), 1),
            accept,
        }
    }

    /// The outage: every proxied connection is closed and the port refuses new ones.
    pub async fn cut(self) {
        self.accept.abort();
        let _ = self.accept.await;
    }
}

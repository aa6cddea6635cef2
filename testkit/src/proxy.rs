//! A TCP proxy in front of the test PostgreSQL, so a test can cut one server's database off the
//! way a stopped PostgreSQL would (open connections reset, new ones refused) and bring it back,
//! without touching the shared server that other tests use.

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// A running proxy: `cut` is the outage, `restore` the database coming back on the same port.
pub struct Proxy {
    /// The database URL through the proxy.
    pub url: String,
    local: SocketAddr,
    upstream: String,
    accept: Option<JoinHandle<()>>,
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
        let local = listener.local_addr().expect("addr");
        let accept = Some(tokio::spawn(forward(listener, upstream.clone())));
        Proxy {
            url: url.replacen(&upstream, &local.to_string(), 1),
            local,
            upstream,
            accept,
        }
    }

    /// The outage: every proxied connection is closed and the port refuses new ones.
    pub async fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
    }

    /// The database is back, on the same address.
    pub async fn restore(&mut self) {
        assert!(self.accept.is_none(), "restore after a cut");
        let listener = TcpListener::bind(self.local).await.expect("bind again");
        self.accept = Some(tokio::spawn(forward(listener, self.upstream.clone())));
    }

    /// The database's address now leads to another server (`host:port`), as a failover's
    /// moved virtual IP or DNS name does: connections made from now on reach it.
    pub async fn restore_to(&mut self, upstream: &str) {
        self.upstream = upstream.to_owned();
        self.restore().await;
    }
}

/// Accepts and forwards connections; the connections live in this task's set, so aborting the
/// task closes them all.
async fn forward(listener: TcpListener, upstream: String) {
    let mut connections = JoinSet::new();
    while let Ok((mut client, _)) = listener.accept().await {
        let upstream = upstream.clone();
        connections.spawn(async move {
            if let Ok(mut server) = TcpStream::connect(&upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

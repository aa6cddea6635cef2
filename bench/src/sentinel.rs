//! A private Redis Sentinel set for `propagate`: a master, its replica and three
//! `redis-server --sentinel` on free loopback ports, killed (and their directory removed) when
//! dropped. The same shape as the integration test's (tests/it/bus/sentinel.rs), without the
//! passwords and the failover helpers the bench does not need.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use hotplane_testkit::db::unique_suffix;

/// The master name the sentinels monitor.
const MASTER: &str = "hotplane-bench";

/// Longest the set may take to come up.
const READY: Duration = Duration::from_secs(30);

/// The processes of one set; every one is killed on drop.
pub struct SentinelSet {
    /// The sentinels' ports, named by [`SentinelSet::url`].
    sentinel_ports: Vec<u16>,
    /// Master, replica and sentinels.
    children: Vec<Child>,
    /// Their working directory (sentinels rewrite their config files).
    dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl SentinelSet {
    /// Starts the five processes and waits until the replica is in sync and every sentinel
    /// names the master.
    pub async fn start() -> anyhow::Result<SentinelSet> {
        let dir = std::env::temp_dir().join(format!("hotplane-bench-sentinel-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).context("the sentinel set's directory")?;
        let mut set = SentinelSet {
            sentinel_ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        let (master, replica) = (free_port()?, free_port()?);
        let data = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].map(String::from);
        let port = |p: u16| ["--port".to_owned(), p.to_string()];
        set.spawn(&[&port(master)[..], &data].concat())?;
        let replica_of = [
            "--replicaof".to_owned(),
            "127.0.0.1".into(),
            master.to_string(),
        ];
        set.spawn(&[&port(replica)[..], &replica_of, &data].concat())?;
        for _ in 0..3 {
            let port = free_port()?;
            let file = set.dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &file,
                format!(
                    "port {port}\nbind 127.0.0.1\n\
                     sentinel monitor {MASTER} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n"
                ),
            )
            .context("writing a sentinel config")?;
            set.spawn(&[file.display().to_string(), "--sentinel".into()])?;
            set.sentinel_ports.push(port);
        }
        let expected = format!("127.0.0.1:{master}");
        let deadline = Instant::now() + READY;
        loop {
            let synced = query(replica, redis::cmd("INFO").arg("replication"))
                .await
                .is_some_and(|info: String| info.contains("master_link_status:up"));
            let mut named = true;
            for port in &set.sentinel_ports {
                named &= set.master_of(*port).await.as_deref() == Some(expected.as_str());
            }
            if synced && named {
                return Ok(set);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the Sentinel set did not come up within {READY:?} (replica synced: {synced})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(&mut self, args: &[String]) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (./scripts/test.sh installs it)")?;
        self.children.push(child);
        Ok(())
    }

    /// The bus URL: every sentinel and the master name.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// `host:port` of the master the sentinel on `port` names.
    async fn master_of(&self, port: u16) -> Option<String> {
        let addr: Vec<String> = query(
            port,
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER),
        )
        .await?;
        match addr.as_slice() {
            [host, port] => Some(format!("{host}:{port}")),
            _ => None,
        }
    }

    /// A plain `redis://` URL of the master the first sentinel names.
    pub async fn master_url(&self) -> anyhow::Result<String> {
        let master = self
            .master_of(self.sentinel_ports[0])
            .await
            .context("the sentinel names no master")?;
        Ok(format!("redis://{master}"))
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command on a fresh connection to a loopback port; None on any failure (polled).
async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    cmd.query_async(&mut conn).await.ok()
}

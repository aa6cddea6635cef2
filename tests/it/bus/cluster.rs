//! Redis Cluster: a real cluster of three masters and three replicas on free loopback ports
//! (`redis-cli --cluster create`), two hotplane replicas on one PostgreSQL database, a
//! `redis+cluster://` URL. The master that owns the bus channel's slot (where the fleet keys
//! are, hash-tagged, and where both replicas subscribe first) is killed under load.

use std::{process::Stdio, sync::Arc, time::Duration};

use redis::Value;
use tokio::process::{Child, Command};

use super::{
    bus_config, bus_status, channel,
    sentinel::{Load, free_port, redis_server},
    start, wait_bus, wait_served,
};
use crate::{
    db::TestDb,
    helpers::{eventually, learn_req, status},
};

/// Six cluster nodes of the test's own, killed when dropped.
struct Cluster {
    ports: Vec<u16>,
    /// Each node by port, until killed.
    nodes: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                let args = [
                    "--port".to_owned(),
                    port.to_string(),
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    format!("nodes-{port}.conf"),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    // Replicas in sync at once: one that never synced cannot take over.
                    "--repl-diskless-sync-delay".into(),
                    "0".into(),
                ];
                (*port, redis_server(dir.path(), &args))
            })
            .collect();
        let cluster = Cluster {
            ports,
            nodes,
            _dir: dir,
        };
        for port in &cluster.ports {
            eventually("a cluster node to answer", || async {
                cluster_info(*port).await.map(|_| ())
            })
            .await;
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("redis-cli runs (./scripts/test.sh installs it with redis-server)");
        assert!(out.status.success(), "redis-cli --cluster create: {out:?}");
        for port in &cluster.ports {
            eventually("every node to see the cluster ok", || async {
                let info = cluster_info(*port).await?;
                info.contains("cluster_state:ok").then_some(())
            })
            .await;
            eventually("every replica to be in sync with its master", || async {
                let mut c = node(*port).await?;
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut c)
                    .await
                    .ok()?;
                (info.contains("role:master") || info.contains("master_link_status:up"))
                    .then_some(())
            })
            .await;
        }
        cluster
    }

    /// The bus URL, `first` listed first.
    fn url(&self, first: u16) -> String {
        let hosts: Vec<String> = std::iter::once(first)
            .chain(self.ports.iter().copied().filter(|p| *p != first))
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The port of the master serving `key`'s slot.
    async fn master_of(&self, key: &str) -> u16 {
        let mut c = node(self.ports[0]).await.expect("a node");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut c)
            .await
            .expect("CLUSTER KEYSLOT");
        let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut c)
            .await
            .expect("CLUSTER SLOTS");
        let int = |v: &Value| match v {
            Value::Int(i) => *i,
            other => panic!("not an integer: {other:?}"),
        };
        for r in ranges {
            if (int(&r[0])..=int(&r[1])).contains(&slot) {
                let Value::Array(master) = &r[2] else {
                    panic!("no master in {r:?}")
                };
                return int(&master[1]) as u16;
            }
        }
        panic!("no master serves slot {slot}")
    }

    /// Kills the node on `port` (SIGKILL).
    async fn kill(&mut self, port: u16) {
        let i = self
            .nodes
            .iter()
            .position(|(p, _)| *p == port)
            .expect("a running node");
        let (_, mut child) = self.nodes.remove(i);
        child.start_kill().expect("kill the node");
        child.wait().await.expect("the node is gone");
    }
}

async fn node(port: u16) -> Option<redis::aio::MultiplexedConnection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()
}

async fn cluster_info(port: u16) -> Option<String> {
    let mut c = node(port).await?;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut c)
        .await
        .ok()
}

/// Both replicas subscribe on the master that owns the channel's slot (the fleet keys', too):
/// it is killed under MatchPattern load. They resubscribe on the next node, their fleet entries
/// are written and read again once the slot's replica took over, and a change learned on one
/// is served on the other, with no Reload call and no failed match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_survives_a_cluster_node_kill() {
    let mut cluster = Cluster::start().await;
    let db = Arc::new(TestDb::postgres().await);
    let ch = channel("hotplane:cluster");
    let doomed = cluster.master_of(&ch).await;
    assert_eq!(
        doomed,
        cluster.master_of(&format!("{{{ch}}}:fleet")).await,
        "the fleet keys are hash-tagged with the channel"
    );
    let url = cluster.url(doomed);
    let mut config = bus_config(&db, &url, &ch);
    config.fleet_heartbeat = Duration::from_millis(100);
    config.auth.admin_rate = 0.0;
    let mut a = start(config.clone(), &db).await;
    let mut b = start(config, &db).await;
    let doomed_addr = format!("127.0.0.1:{doomed}");
    for app in [&a, &b] {
        let st = bus_status(app).await;
        assert_eq!(
            (st.redis_url.as_str(), st.node.as_str()),
            (url.as_str(), doomed_addr.as_str())
        );
    }
    a.patterns
        .learn_pattern(learn_req("query sotto carico", "load", 0.95))
        .await
        .expect("learn");
    wait_served(&mut b, "query sotto carico").await;
    eventually("both replicas in the fleet", || async {
        let fleet = status(&a).await.fleet?;
        (fleet.members.len() == 2 && fleet.error.is_empty()).then_some(())
    })
    .await;

    let load = Load::start(&[&a, &b], "query sotto carico");
    load.more(50).await;
    cluster.kill(doomed).await;
    let killed_at = std::time::SystemTime::now();
    for app in [&a, &b] {
        let st = wait_bus(app, "the bus to resubscribe on another node", |s| {
            s.connected && s.node != doomed_addr
        })
        .await;
        assert!(st.node_changes >= 1 && st.reconnects >= 1, "{st:?}");
    }
    a.patterns
        .learn_pattern(learn_req("imparato dopo la caduta del nodo", "after", 0.95))
        .await
        .expect("learn");
    wait_served(&mut b, "imparato dopo la caduta del nodo").await;
    b.patterns
        .learn_pattern(learn_req("imparato anche da b", "after", 0.95))
        .await
        .expect("learn");
    wait_served(&mut a, "imparato anche da b").await;
    load.more(50).await;
    let (failed, learned) = load.stop().await;
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    for app in [&mut a, &mut b] {
        for query in &learned {
            wait_served(app, query).await;
        }
    }
    // The slot's replica took over: the fleet keys are written and read there.
    eventually("the fleet read again after the node kill", || async {
        let fleet = status(&a).await.fleet?;
        let read_at = fleet.read_at?;
        let read_at =
            std::time::UNIX_EPOCH + Duration::new(read_at.seconds as u64, read_at.nanos as u32);
        (read_at > killed_at && fleet.members.len() == 2 && fleet.error.is_empty()).then_some(())
    })
    .await;
}

//! Redis Cluster: a real cluster of three masters and three replicas on free loopback ports
//! (`redis-cli --cluster create`), two hotplane replicas on one PostgreSQL database, a
//! `redis+cluster://` URL. The master that owns the bus channel's slot (where the fleet keys
//! are, hash-tagged, and where both replicas subscribe first) is killed under load. A TLS-only
//! cluster (`rediss+cluster://`, a private CA) carries changes both ways.

use std::{process::Stdio, sync::Arc, time::Duration};

use hotplane::pb;
use redis::Value;
use tokio::process::{Child, Command};

use super::{
    bus_config, bus_status, channel,
    connection::TlsFiles,
    sentinel::{Load, free_port, port_args, redis_server},
    start, wait_bus, wait_served,
};
use crate::{
    db::TestDb,
    helpers::{DEADLINE, eventually, learn_req, status},
};

/// Cluster nodes of the test's own, killed when dropped.
struct Cluster {
    ports: Vec<u16>,
    /// Each node by port, until killed.
    nodes: Vec<(u16, Child)>,
    /// TLS only (no plaintext port, TLS on the cluster bus too) with these files, when set.
    tls: Option<TlsFiles>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three masters, each with a replica.
    async fn start() -> Cluster {
        Self::start_with(6, 1, None).await
    }

    /// Three masters, no replicas, TLS only.
    async fn start_tls(tls: TlsFiles) -> Cluster {
        Self::start_with(3, 0, Some(tls)).await
    }

    /// `size` nodes with `replicas` replicas per master.
    async fn start_with(size: usize, replicas: usize, tls: Option<TlsFiles>) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                let mut args = port_args(*port, tls.is_some());
                if let Some(tls) = &tls {
                    args.extend(tls.server_args());
                    // The cluster bus and replication over TLS, and the TLS port announced to
                    // clients (CLUSTER SLOTS).
                    args.extend(
                        ["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from),
                    );
                }
                args.extend([
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    format!("nodes-{port}.conf"),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    // Replicas in sync at once: one that never synced cannot take over.
                    "--repl-diskless-sync-delay".into(),
                    "0".into(),
                ]);
                (*port, redis_server(dir.path(), &args))
            })
            .collect();
        let cluster = Cluster {
            ports,
            nodes,
            tls,
            _dir: dir,
        };
        for port in &cluster.ports {
            eventually("a cluster node to answer", || async {
                cluster.cluster_info(*port).await.map(|_| ())
            })
            .await;
        }
        let tls_args: Vec<String> = match &cluster.tls {
            None => Vec::new(),
            Some(t) => vec!["--tls".into(), "--cacert".into(), t.path("ca.pem")],
        };
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let create = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .args(&tls_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        // A hang guard: nodes that cannot reach each other leave it waiting for the join forever.
        let out = tokio::time::timeout(DEADLINE, create)
            .await
            .expect("redis-cli --cluster create finishes")
            .expect("redis-cli runs (./scripts/test.sh installs it with redis-server)");
        assert!(out.status.success(), "redis-cli --cluster create: {out:?}");
        for port in &cluster.ports {
            eventually("every node to see the cluster ok", || async {
                let info = cluster.cluster_info(*port).await?;
                info.contains("cluster_state:ok").then_some(())
            })
            .await;
            eventually("every replica to be in sync with its master", || async {
                let mut c = cluster.node(*port).await?;
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
        let scheme = if self.tls.is_some() {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        format!("{scheme}://{}", hosts.join(","))
    }

    /// The port of the master serving `key`'s slot.
    async fn master_of(&self, key: &str) -> u16 {
        let mut c = self.node(self.ports[0]).await.expect("a node");
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

    /// A connection of the test's own to one node (over TLS, trusting the test CA, when the
    /// cluster is TLS-only).
    async fn node(&self, port: u16) -> Option<redis::aio::MultiplexedConnection> {
        let client = match &self.tls {
            None => redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?,
            Some(t) => t.client(&format!("rediss://127.0.0.1:{port}")),
        };
        super::patient_conn(&client).await
    }

    async fn cluster_info(&self, port: u16) -> Option<String> {
        let mut c = self.node(port).await?;
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut c)
            .await
            .ok()
    }
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

/// TLS only, with a private CA (`rediss+cluster://` and `--redis-ca-file`): the nodes have no
/// plaintext port, so the subscription, the announcements and the fleet keys (routed by slot,
/// to nodes the cluster client finds through `CLUSTER SLOTS`) all work only over TLS. A change
/// learned on either replica is served on the other, and both are in the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_cluster_carries_changes() {
    let cluster = Cluster::start_tls(TlsFiles::make().await).await;
    let db = Arc::new(TestDb::postgres().await);
    let ch = channel("hotplane:cluster-tls");
    // Listed first: a node that does not own the fleet keys' slot, so reaching them needs
    // the cluster client's discovery and routing over TLS.
    let fleet_node = cluster.master_of(&format!("{{{ch}}}:fleet")).await;
    let first = *cluster
        .ports
        .iter()
        .find(|p| **p != fleet_node)
        .expect("another node");
    let url = cluster.url(first);
    let mut config = bus_config(&db, &url, &ch);
    config.redis_ca_file = cluster.tls.as_ref().map(|t| t.path("ca.pem").into());
    config.fleet_heartbeat = Duration::from_millis(100);
    let mut a = start(config.clone(), &db).await;
    let mut b = start(config, &db).await;
    for app in [&a, &b] {
        let st = bus_status(app).await;
        assert_eq!(st.redis_url, url);
        assert!(url.starts_with("rediss+cluster://"), "{url}");
    }
    a.patterns
        .learn_pattern(learn_req("imparato sul cluster via tls", "tls", 0.95))
        .await
        .expect("learn");
    wait_served(&mut b, "imparato sul cluster via tls").await;
    b.patterns
        .learn_pattern(learn_req("imparato anche da b via tls", "tls", 0.95))
        .await
        .expect("learn");
    wait_served(&mut a, "imparato anche da b via tls").await;
    eventually("both replicas in the fleet, over TLS", || async {
        let fleet = status(&a).await.fleet?;
        (fleet.members.len() == 2 && fleet.error.is_empty()).then_some(())
    })
    .await;
}

/// Whether `key` exists on the cluster (asked of the master that owns its slot).
async fn on_cluster(cluster: &Cluster, key: &str) -> bool {
    let port = cluster.master_of(key).await;
    let mut c = cluster.node(port).await.expect("the slot's master");
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<bool>(&mut c)
        .await
        .expect("EXISTS")
}

/// A swap off a cluster onto one Redis, and back, removes this instance's fleet entry from the
/// bus it left at once, as a swap between two single servers does: the entry is not left to
/// linger in the other replicas' fleet view for `--fleet-ttl` (the swap could not tell a
/// cluster from another server, and logged that the old Redis "did not answer").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_between_a_cluster_and_one_redis_leaves_the_old_fleet_at_once() {
    let cluster = Cluster::start_with(3, 0, None).await;
    let db = Arc::new(TestDb::postgres().await);
    let ch = channel("hotplane:cluster-swap");
    let cluster_url = cluster.url(cluster.ports[0]);
    let mut config = bus_config(&db, &cluster_url, &ch);
    config.fleet_heartbeat = Duration::from_millis(100);
    // Far beyond the test's deadline: only a removal can make an entry go.
    config.fleet_ttl = Duration::from_secs(600);
    let app = start(config, &db).await;
    let id = status(&app).await.instance_id;
    let tagged = format!("{{{ch}}}:fleet:{id}");
    eventually("the fleet entry on the cluster", || async {
        on_cluster(&cluster, &tagged).await.then_some(())
    })
    .await;

    let single = hotplane_testkit::redis_url();
    let swap = |url: String| {
        let mut reload = app.reload.clone();
        async move {
            reload
                .reload(pb::ReloadRequest {
                    target: pb::Target::Bus.into(),
                    redis_url: url,
                    reason: "move the bus".into(),
                    ..Default::default()
                })
                .await
                .expect("the swap")
        }
    };
    swap(single.clone()).await;
    let plain = format!("{ch}:fleet:{id}");
    let mut redis = redis::Client::open(single.as_str())
        .expect("the test Redis")
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    eventually("the fleet entry on the new Redis", || {
        let mut redis = redis.clone();
        let plain = plain.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(&plain)
                .query_async::<bool>(&mut redis)
                .await
                .ok()?
                .then_some(())
        }
    })
    .await;
    eventually("the cluster's fleet entry removed", || async {
        (!on_cluster(&cluster, &tagged).await).then_some(())
    })
    .await;

    swap(cluster_url).await;
    eventually("the fleet entry back on the cluster", || async {
        on_cluster(&cluster, &tagged).await.then_some(())
    })
    .await;
    eventually("the single Redis's fleet entry removed", || {
        let mut redis = redis.clone();
        let plain = plain.clone();
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&plain)
                .query_async(&mut redis)
                .await
                .ok()?;
            (!exists).then_some(())
        }
    })
    .await;
    let _: () = redis::cmd("DEL")
        .arg(&plain)
        .query_async(&mut redis)
        .await
        .expect("DEL");
}

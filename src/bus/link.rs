//! The command connection to Redis (everything but the subscription): one lazily opened
//! multiplexed connection, shared by the announcement outbox, the fleet heartbeat and fleet
//! reads, reopened after a failure.
//!
//! Every call waits at most one bus timeout (plus, at most, one quick retry): a command is
//! retried on a new connection only when the cached one failed *at once* (it died since its
//! last use, e.g. across a Redis restart); a command that timed out is not retried, since a
//! Redis that did not answer in time (frozen, overloaded) would only make the caller wait again.
//! No lock is held across a connect, so one caller's connect never makes another wait: during
//! an outage each caller (there are a handful: the outbox, the heartbeat, a fleet wait) makes
//! its own bounded attempt, and the first connection made is the one kept.
//!
//! With Sentinel, each new connection goes to the master the sentinels name at that moment,
//! and is kept only if it answers `ROLE` as a master: a PUBLISH on a replica reaches only that
//! replica's subscribers, so a demoted master must never be kept for announcing.

use std::{sync::Mutex, time::Duration};

use redis::{
    AsyncConnectionConfig, Cmd, FromRedisValue, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster::ClusterConfig,
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

use super::target::Target;

/// A command connection: to one node, or to a cluster (routed by slot).
#[derive(Clone)]
enum Connection {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connection::Node(_) => "Connection::Node",
            Connection::Cluster(_) => "Connection::Cluster",
        })
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Node(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// A lazily connected command connection.
#[derive(Debug)]
pub(super) struct Link {
    /// Where to connect (asked again at every connect).
    target: Target,
    /// The open connection, if any, numbered so that a caller whose command failed drops that
    /// connection and not a newer one. A std `Mutex`: held to copy or replace it, never across
    /// an `.await`.
    conn: Mutex<Option<(u64, Connection)>>,
    /// Numbers connections.
    next: std::sync::atomic::AtomicU64,
    /// Bound on connecting and on each command.
    timeout: Duration,
    /// Cluster only: the node the subscription is on (`host:port`), where PUBLISH goes. A
    /// PUBLISH on any node reaches every node, and this one is known to be up; routed by the
    /// channel's slot instead, it would fail while that slot's master is failing over.
    listening_on: Mutex<Option<(String, u16)>>,
}

/// Why a call failed, and whether it was a timeout (not worth retrying at once).
struct Failed {
    text: String,
    timed_out: bool,
}

impl Link {
    pub(super) fn new(target: Target, timeout: Duration) -> Link {
        Link {
            target,
            conn: Mutex::new(None),
            next: std::sync::atomic::AtomicU64::new(0),
            timeout,
            listening_on: Mutex::new(None),
        }
    }

    /// Cluster only: the subscription is on `node` (`host:port`), so PUBLISH goes there.
    pub(super) fn listening_on(&self, node: &str) {
        let parsed = node
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)));
        *self.listening_on.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
    }

    /// Runs `cmd` on `conn`: on a cluster, a PUBLISH goes to the node the subscription is on
    /// (see `listening_on`), everything else by slot.
    async fn run<T: FromRedisValue>(
        &self,
        conn: &mut Connection,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        let via = self
            .listening_on
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let publish = cmd.args_iter().next().is_some_and(
            |a| matches!(a, redis::Arg::Simple(b) if b.eq_ignore_ascii_case(b"PUBLISH")),
        );
        match (conn, via) {
            (Connection::Cluster(c), Some((host, port))) if publish => {
                let routing =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                let v = c.route_command(cmd.clone(), routing).await?;
                Ok(T::from_redis_value(v)?)
            }
            (conn, _) => cmd.query_async::<T>(conn).await,
        }
    }

    /// Runs `cmd`; the error says what failed, for status and logs.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let (id, mut conn, fresh) = self.connection().await?;
        match bounded(self.timeout, self.run::<T>(&mut conn, cmd)).await {
            Ok(v) => Ok(v),
            Err(e) => {
                // Reconnect next time: the connection may be dead.
                self.forget(id);
                if fresh || e.timed_out {
                    return Err(e.text);
                }
                let (id, mut conn, _) = self.connection().await?;
                bounded(self.timeout, self.run::<T>(&mut conn, cmd))
                    .await
                    .map_err(|e| {
                        self.forget(id);
                        e.text
                    })
            }
        }
    }

    /// What identifies the Redis this links to: one Redis's `run_id` (unique per server
    /// process), or a cluster's node ids (`CLUSTER NODES`, as any node sees them; random and
    /// never shared by two clusters). Two links reach the same Redis when their ids meet
    /// ([`same_redis`]), so a swap does not remove this instance's fleet entry from the Redis
    /// it keeps using.
    pub(super) async fn server_ids(&self) -> Result<Vec<String>, String> {
        if self.target.is_cluster() {
            let nodes: String = self.query(redis::cmd("CLUSTER").arg("NODES")).await?;
            let ids: Vec<String> = nodes
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned)
                .collect();
            return match ids.is_empty() {
                true => Err("CLUSTER NODES lists no node".into()),
                false => Ok(ids),
            };
        }
        let info: String = self.query(redis::cmd("INFO").arg("server")).await?;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|id| vec![id.trim().to_owned()])
            .ok_or_else(|| "INFO server has no run_id".to_owned())
    }

    /// Whether this links to a Redis Cluster (the fleet keys are hash-tagged there).
    pub(super) fn is_cluster(&self) -> bool {
        self.target.is_cluster()
    }

    /// Drops the cached connection, so the next command connects anew (the subscriber found
    /// that the sentinels name another master).
    pub(super) fn reset(&self) {
        *self.slot() = None;
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(u64, Connection)>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops connection `id` if it is still the cached one.
    fn forget(&self, id: u64) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|(cached, _)| *cached == id) {
            *slot = None;
        }
    }

    /// The cached connection, or a new one (then `true`), with its number.
    async fn connection(&self) -> Result<(u64, Connection, bool), String> {
        if let Some((id, c)) = self.slot().clone() {
            return Ok((id, c, false));
        }
        let c = match &self.target {
            Target::Cluster(nodes) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout);
                let c = bounded(
                    self.timeout,
                    nodes.cluster.get_async_connection_with_config(config),
                )
                .await
                .map_err(|e| format!("connecting to the cluster: {}", e.text))?;
                Connection::Cluster(c)
            }
            _ => Connection::Node(self.node_connection().await?),
        };
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Another caller may have connected meanwhile: keep the first, drop ours.
        let (id, c) = self.slot().get_or_insert((id, c)).clone();
        Ok((id, c, true))
    }

    /// A new connection to one node: the fixed one, or the master the sentinels name (checked
    /// with `ROLE`).
    async fn node_connection(&self) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let node = self
            .target
            .node(self.timeout)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let mut c = bounded(
            self.timeout,
            node.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|e| format!("connecting to {}: {}", node.addr, e.text))?;
        if self.target.is_sentinel() {
            let role: Vec<redis::Value> =
                bounded(self.timeout, redis::cmd("ROLE").query_async(&mut c))
                    .await
                    .map_err(|e| format!("ROLE on {}: {}", node.addr, e.text))?;
            let role = role
                .first()
                .and_then(|r| String::from_redis_value_ref(r).ok());
            if role.as_deref() != Some("master") {
                return Err(format!(
                    "{} is not a master (ROLE: {}): the sentinels are failing over",
                    node.addr,
                    role.as_deref().unwrap_or("unknown")
                ));
            }
        }
        Ok(c)
    }
}

/// Runs a Redis call with a time limit, flattening both failures into text.
async fn bounded<T>(
    limit: Duration,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Failed> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failed {
            timed_out: e.is_timeout(),
            text: e.to_string(),
        }),
        Err(_) => Err(Failed {
            text: format!("no answer within {limit:?}"),
            timed_out: true,
        }),
    }
}

/// Whether two [`Link::server_ids`] answers name the same Redis: one server's run_id, or a
/// cluster sharing a node (a node added or failed over meanwhile leaves the others).
pub(super) fn same_redis(a: &[String], b: &[String]) -> bool {
    a.iter().any(|id| b.contains(id))
}

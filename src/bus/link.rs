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

use redis::{AsyncConnectionConfig, FromRedisValue, aio::MultiplexedConnection};

use super::conn::Target;

/// A lazily connected command connection.
#[derive(Debug)]
pub(super) struct Link {
    /// Where to connect (asked again at every connect).
    target: Target,
    /// The open connection, if any, numbered so that a caller whose command failed drops that
    /// connection and not a newer one. A std `Mutex`: held to copy or replace it, never across
    /// an `.await`.
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// Numbers connections.
    next: std::sync::atomic::AtomicU64,
    /// Bound on connecting and on each command.
    timeout: Duration,
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
        }
    }

    /// Runs `cmd`; the error says what failed, for status and logs.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let (id, mut conn, fresh) = self.connection().await?;
        match bounded(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(v) => Ok(v),
            Err(e) => {
                // Reconnect next time: the connection may be dead.
                self.forget(id);
                if fresh || e.timed_out {
                    return Err(e.text);
                }
                let (id, mut conn, _) = self.connection().await?;
                bounded(self.timeout, cmd.query_async::<T>(&mut conn))
                    .await
                    .map_err(|e| {
                        self.forget(id);
                        e.text
                    })
            }
        }
    }

    /// The Redis server's `run_id` (unique per server process): tells whether two URLs reach
    /// the same server, so a swap does not remove this instance's fleet entry from the Redis it
    /// keeps using.
    pub(super) async fn server_id(&self) -> Result<String, String> {
        let info: String = self.query(redis::cmd("INFO").arg("server")).await?;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .ok_or_else(|| "INFO server has no run_id".to_owned())
    }

    /// Drops the cached connection, so the next command connects anew (the subscriber found
    /// that the sentinels name another master).
    pub(super) fn reset(&self) {
        *self.slot() = None;
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
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
    async fn connection(&self) -> Result<(u64, MultiplexedConnection, bool), String> {
        if let Some((id, c)) = self.slot().clone() {
            return Ok((id, c, false));
        }
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
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Another caller may have connected meanwhile: keep the first, drop ours.
        let (id, c) = self.slot().get_or_insert((id, c)).clone();
        Ok((id, c, true))
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

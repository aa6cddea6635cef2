//! The command connection to Redis (everything but the subscription): one lazily opened
//! multiplexed connection, shared by publishing and the fleet heartbeat, reopened after a
//! failure. Every command is bounded by the bus timeout and tried at most twice (the cached
//! connection may have died since the last use, e.g. across a Redis restart), so a caller waits
//! a few seconds at most and then gets the error.

use std::time::Duration;

use redis::{AsyncConnectionConfig, FromRedisValue, aio::MultiplexedConnection};
use tokio::sync::Mutex;

/// A lazily connected command connection.
#[derive(Debug)]
pub(super) struct Link {
    /// Where to connect.
    client: redis::Client,
    /// The open connection, if any. A tokio `Mutex` because it is held across the connect, so
    /// concurrent callers after a failure open one connection, not one each.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Bound on connecting and on each command.
    timeout: Duration,
}

impl Link {
    pub(super) fn new(client: redis::Client, timeout: Duration) -> Link {
        Link {
            client,
            conn: Mutex::new(None),
            timeout,
        }
    }

    /// Runs `cmd`; the error says what failed, for status and logs.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut last = String::new();
        for _ in 0..2 {
            match self.try_query(cmd).await {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
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

    async fn try_query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut conn = self.connection().await?;
        match bounded(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(v) => Ok(v),
            Err(e) => {
                // Reconnect next time: the connection may be dead.
                *self.conn.lock().await = None;
                Err(e)
            }
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let c = bounded(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|e| format!("connecting: {e}"))?;
        *guard = Some(c.clone());
        Ok(c)
    }
}

/// Runs a Redis call with a time limit, flattening both failures into text.
async fn bounded<T>(
    limit: Duration,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

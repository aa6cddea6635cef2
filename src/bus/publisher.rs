//! Publishing this instance's events: one lazily opened multiplexed connection, reopened after
//! a failure. A publish is tried at most twice (the cached connection may have died since the
//! last one, e.g. across a Redis restart), each bounded by the bus timeout: a handler that
//! announces a change waits at most a few seconds, then reports the failure.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use chrono::Utc;
use redis::{AsyncConnectionConfig, aio::MultiplexedConnection};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{BusOptions, PublishError, Secret, signing};

/// Publishes events on the bus channel.
#[derive(Debug)]
pub(super) struct Publisher {
    /// Where to connect.
    client: redis::Client,
    /// The open connection, if any. A tokio `Mutex` because it is held across the connect, so
    /// concurrent publishes after a failure open one connection, not one each.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// The channel.
    channel: String,
    /// Signs events when set.
    secret: Option<Secret>,
    /// Our id: the events' `origin` and the prefix of their `event_id`.
    instance_id: String,
    /// Numbers event ids (unique per instance, and instance ids are unique).
    seq: AtomicU64,
    /// Bound on connecting and on each PUBLISH.
    timeout: Duration,
}

impl Publisher {
    pub(super) fn new(client: redis::Client, opts: &BusOptions) -> Publisher {
        Publisher {
            client,
            conn: Mutex::new(None),
            channel: opts.channel.clone(),
            secret: opts.secret.clone(),
            instance_id: opts.instance_id.clone(),
            seq: AtomicU64::new(0),
            timeout: opts.timeout,
        }
    }

    /// The wire text of a reload event.
    fn event(&self, pattern_id: Option<i64>, revision: i64) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let fields = json!({
            "action": "reload",
            // Always present (null for "whatever changed"): legacy subscribers read it.
            "pattern_id": pattern_id,
            "event_id": format!("{}-{seq}", self.instance_id),
            "origin": self.instance_id,
            "target": "patterns",
            "revision": revision,
            "ts": Utc::now().timestamp(),
        });
        let Value::Object(map) = fields else {
            unreachable!("json! of an object literal is an object")
        };
        signing::seal(map, self.secret.as_ref())
    }

    /// Publishes a reload event; `Err` says why it did not reach Redis.
    pub(super) async fn publish(
        &self,
        pattern_id: Option<i64>,
        revision: i64,
    ) -> Result<(), PublishError> {
        let text = self.event(pattern_id, revision);
        let mut last = String::new();
        for _ in 0..2 {
            match self.try_publish(&text).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(PublishError {
            channel: self.channel.clone(),
            reason: last,
        })
    }

    async fn try_publish(&self, text: &str) -> Result<(), String> {
        let mut guard = self.conn.lock().await;
        let mut conn = match guard.as_ref() {
            Some(c) => c.clone(),
            None => {
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
                c
            }
        };
        drop(guard);
        let sent = bounded(
            self.timeout,
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(text)
                .query_async::<i64>(&mut conn),
        )
        .await;
        if let Err(e) = sent {
            // Reconnect next time: the connection may be dead.
            *self.conn.lock().await = None;
            return Err(format!("PUBLISH: {e}"));
        }
        Ok(())
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

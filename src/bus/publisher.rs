//! Publishing this instance's events (over the shared command connection, `link`): a handler
//! that announces a change waits at most a few seconds, then reports the failure.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{BusOptions, PublishError, Secret, link::Link, signing};
use chrono::Utc;
use serde_json::{Value, json};

/// Publishes events on the bus channel.
#[derive(Debug)]
pub(super) struct Publisher {
    /// The channel.
    channel: String,
    /// Signs events when set.
    secret: Option<Secret>,
    /// Our id: the events' `origin` and the prefix of their `event_id`.
    instance_id: String,
    /// Numbers event ids (unique per instance, and instance ids are unique).
    seq: AtomicU64,
}

impl Publisher {
    pub(super) fn new(opts: &BusOptions) -> Publisher {
        Publisher {
            channel: opts.channel.clone(),
            secret: opts.secret.clone(),
            instance_id: opts.instance_id.clone(),
            seq: AtomicU64::new(0),
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
        link: &Link,
        pattern_id: Option<i64>,
        revision: i64,
    ) -> Result<(), PublishError> {
        let text = self.event(pattern_id, revision);
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(text);
        link.query::<i64>(&cmd)
            .await
            .map(|_receivers| ())
            .map_err(|reason| PublishError {
                channel: self.channel.clone(),
                reason: format!("PUBLISH: {reason}"),
            })
    }
}

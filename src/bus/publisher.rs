//! Publishing this instance's events (over the current command connection, `link`): a handler
//! that announces a change waits at most a few seconds, then reports the failure.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{BusOptions, PublishError, Secret, link::Link, signing};
use crate::snapshot::scheme;
use chrono::Utc;
use serde_json::{Map, json};

/// What an announcement asks the other replicas to do.
#[derive(Debug, Clone)]
pub(super) enum Announcement {
    /// Reload `pattern_id`, or whatever changed without one.
    Reload(Option<i64>),
    /// Serve the retained generation with this content hash again, pinned.
    Rollback(String),
}

/// Publishes events on the bus channel. Lives as long as the bus, across connection swaps, so
/// event ids stay unique.
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

    /// The wire text of an event.
    fn event(&self, what: &Announcement, revision: i64) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut map = Map::new();
        match what {
            Announcement::Reload(pattern_id) => {
                map.insert("action".into(), json!("reload"));
                // Always present (null for "whatever changed"): legacy subscribers read it.
                map.insert("pattern_id".into(), json!(pattern_id));
            }
            Announcement::Rollback(content_hash) => {
                map.insert("action".into(), json!("rollback"));
                map.insert("content_hash".into(), json!(content_hash));
                map.insert("content_hash_scheme".into(), json!(scheme::CURRENT));
            }
        }
        for (k, v) in [
            ("event_id", json!(format!("{}-{seq}", self.instance_id))),
            ("origin", json!(self.instance_id)),
            ("target", json!("patterns")),
            ("revision", json!(revision)),
            ("ts", json!(Utc::now().timestamp())),
        ] {
            map.insert(k.into(), v);
        }
        signing::seal(map, self.secret.as_ref())
    }

    /// Publishes an event; `Err` says why it did not reach Redis.
    pub(super) async fn publish(
        &self,
        link: &Link,
        what: &Announcement,
        revision: i64,
    ) -> Result<(), PublishError> {
        let text = self.event(what, revision);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bus::{Action, envelope::decode};

    #[test]
    fn announcements_decode_as_what_they_announce() {
        let p = Publisher::new(&BusOptions {
            redis_url: String::new(),
            ca_file: None,
            channel: "ch".into(),
            secret: None,
            instance_id: "me".into(),
            reconnect_min: Duration::ZERO,
            reconnect_max: Duration::ZERO,
            ping_interval: Duration::ZERO,
            timeout: Duration::ZERO,
            replay_window: Duration::ZERO,
            allow_unsigned_rollback: false,
        });
        let reload = p.event(&Announcement::Reload(None), 7);
        assert!(reload.contains(r#""pattern_id":null"#), "{reload}");
        let e = decode(reload.as_bytes()).expect("valid").envelope;
        assert_eq!((e.action, e.revision), (Action::Reload, Some(7)));
        let rollback = p.event(&Announcement::Rollback("00ff".into()), 7);
        let e = decode(rollback.as_bytes()).expect("valid").envelope;
        assert_eq!(e.action, Action::Rollback);
        assert_eq!(e.content_hash.as_deref(), Some("00ff"));
        assert_eq!(e.content_hash_scheme, Some(scheme::CURRENT));
        assert_eq!(e.event_id.as_deref(), Some("me-2"), "ids keep counting");
    }
}

//! What the bus reports: its status (`GetStatus.bus`) and its events (WatchStatus).

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};

use super::fleet;

/// A change of the subscription's state, for whoever wants to announce it (WatchStatus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// Subscribed (again, when `reconnect`); a catch-up reload was requested.
    Connected {
        /// Whether a previous subscription had been lost.
        reconnect: bool,
        /// The node subscribed to, `host:port` (with Sentinel, the master it named).
        node: String,
    },
    /// The subscription was lost, or the first attempt failed; retries go on.
    Disconnected {
        /// Why.
        error: String,
        /// The node of the subscription lost (the last one; empty before the first).
        node: String,
    },
    /// The fleet view lists an instance it did not list before.
    MemberJoined(fleet::Member),
    /// An instance left the fleet view (it stopped, or its heartbeat expired); as last seen.
    MemberLeft(fleet::Member),
    /// `Reload(TARGET_BUS)` began connecting to a new Redis.
    SwapStarted,
    /// The connection was swapped (URLs without password).
    Swapped {
        /// The URL now.
        url: String,
        /// The URL before.
        previous_url: String,
    },
    /// The swap failed; the current connection keeps running.
    SwapFailed {
        /// Why.
        error: String,
    },
    /// A broadcast rollback from another instance could not be followed.
    RollbackFailed {
        /// Why (the content hash is not retained).
        error: String,
    },
}

/// Receives [`BusEvent`]s. Called on the subscriber task: it must not block.
pub type BusSink = Arc<dyn Fn(BusEvent) + Send + Sync>;

/// What `GetStatus` shows about the bus.
#[derive(Debug, Clone, Default)]
pub struct BusStatus {
    /// Whether a Redis URL is configured.
    pub enabled: bool,
    /// Whether the subscription is up now.
    pub connected: bool,
    /// The channel.
    pub channel: String,
    /// The Redis URL without password.
    pub redis_url: String,
    /// Whether messages must be signed.
    pub signed: bool,
    /// The node (`host:port`) of the current subscription, or of the last one while
    /// disconnected; with Sentinel, the master the sentinels named. Empty before the first.
    pub node: String,
    /// Subscriptions made on another node than the one before (Sentinel failovers, swaps).
    pub node_changes: u64,
    /// Since when the current subscription is up.
    pub connected_since: Option<DateTime<Utc>>,
    /// The most recent connection error (kept after reconnecting; see `last_error_at`).
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// When the next connection attempt is due, while disconnected.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Subscriptions re-established after a lost connection.
    pub reconnects: u64,
    /// Messages received on the channel.
    pub messages_received: u64,
    /// Messages that became engine requests.
    pub messages_applied: u64,
    /// Rejected messages by reason (every reason listed, zeros included).
    pub rejected: BTreeMap<&'static str, u64>,
    /// Our own events, skipped.
    pub self_skipped: u64,
    /// When the last message arrived.
    pub last_message_at: Option<DateTime<Utc>>,
    /// Events this instance published.
    pub published: u64,
    /// Publishes that failed.
    pub publish_failures: u64,
    /// The most recent publish error.
    pub last_publish_error: Option<String>,
    /// Connection swaps made by `Reload(TARGET_BUS)`.
    pub swaps: u64,
    /// When the last swap completed.
    pub swapped_at: Option<DateTime<Utc>>,
    /// Messages received on both connections during a swap, skipped the second time.
    pub handover_duplicates: u64,
    /// Broadcast rollbacks followed.
    pub rollbacks_followed: u64,
    /// Broadcast rollbacks that could not be followed.
    pub rollbacks_failed: u64,
    /// Why the last one could not.
    pub last_rollback_error: Option<String>,
    /// Bursts of messages after which the allocator was asked to give freed memory back
    /// (`bus::memory`).
    pub memory_releases: u64,
}

impl BusStatus {
    /// Records why the connection is down and when the next attempt is due (the Redis
    /// subscriber's and the PostgreSQL listener's retry loops both report this way).
    pub(super) fn retrying(&mut self, error: &str, delay: std::time::Duration) {
        self.last_error = Some(error.to_owned());
        self.last_error_at = Some(Utc::now());
        self.next_retry_at = chrono::Duration::from_std(delay)
            .ok()
            .map(|d| Utc::now() + d);
    }
}

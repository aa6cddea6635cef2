//! The one set of rules a config must satisfy beyond what its types say, checked on every path
//! that makes a config: start-up (flags and environment, with the config file over them) through
//! [`crate::config::Config::validate`], and every reload of the file through
//! [`crate::config::file::check`]. Each rule names both the flag and the file key it is about,
//! so start-up errors name the flag and reload errors the key, and a value refused in the file
//! is refused as a flag too.

use crate::config::Config;

/// A broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The flag (without `--`).
    pub flag: &'static str,
    /// The config file key; the flag's name for settings the file cannot set.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Every rule `c` breaks, in a fixed order.
pub fn violations(c: &Config) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut bad = |flag: &'static str, key: &str, reason: String| {
        out.push(Violation {
            flag,
            key: key.to_owned(),
            reason,
        })
    };
    if !c.learn_min_confidence.is_finite() || !(0.0..=1.0).contains(&c.learn_min_confidence) {
        bad(
            "learn-min-confidence",
            "learn.min_confidence",
            format!(
                "{} is out of range: must be between 0 and 1",
                c.learn_min_confidence
            ),
        );
    }
    if c.learn_min_chars == 0 || c.learn_min_chars > crate::model::MAX_NORMALIZED_CHARS {
        bad(
            "learn-min-chars",
            "learn.min_chars",
            format!(
                "must be between 1 and {}",
                crate::model::MAX_NORMALIZED_CHARS
            ),
        );
    }
    if let Some(words) = &c.stop_words
        && let Some(i) = words
            .iter()
            .position(|w| w.trim().is_empty() || w.contains(char::is_whitespace))
    {
        bad(
            "stop-words",
            &format!("normalize.stop_words[{i}]"),
            "a stop word must be one non-empty word".into(),
        );
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log_filter) {
        bad(
            "log-filter",
            "log.filter",
            format!("{:?} is not a valid filter: {e}", c.log_filter),
        );
    }
    if c.fleet_heartbeat.is_zero() {
        bad(
            "fleet-heartbeat",
            "fleet.heartbeat",
            "must be greater than zero".into(),
        );
    }
    if c.fleet_ttl <= c.fleet_heartbeat {
        bad(
            "fleet-ttl",
            "fleet.ttl",
            format!(
                "must be longer than fleet.heartbeat / --fleet-heartbeat ({})",
                humantime::format_duration(c.fleet_heartbeat)
            ),
        );
    }
    if c.database_max_connections == 0 {
        bad(
            "database-max-connections",
            "database.max_connections",
            "must be at least 1".into(),
        );
    }
    if c.database_acquire_timeout.is_zero() {
        bad(
            "database-acquire-timeout",
            "database.acquire_timeout",
            "must be greater than zero".into(),
        );
    }
    if c.hit_flush_interval.is_zero() {
        bad(
            "hit-flush-interval",
            "hits.flush_interval",
            "must be greater than zero".into(),
        );
    }
    if c.hit_flush_batch == 0 {
        bad(
            "hit-flush-batch",
            "hits.flush_batch",
            "must be at least 1".into(),
        );
    }
    if c.watch_heartbeat.is_zero() {
        bad(
            "watch-heartbeat",
            "watch.heartbeat",
            "must be greater than zero".into(),
        );
    }
    if c.bus_channel.is_empty() {
        bad("bus-channel", "bus.channel", "must not be empty".into());
    }
    if c.bus_mode == crate::config::BusMode::Postgres {
        let postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|p| c.database_url.starts_with(p));
        if !postgres {
            bad(
                "bus",
                "bus.mode",
                "postgres needs a PostgreSQL store (a postgres:// --database-url): the bus is \
                 the store's own LISTEN/NOTIFY"
                    .into(),
            );
        }
        if c.redis_url.as_deref().is_some_and(|u| !u.is_empty()) {
            bad(
                "bus",
                "bus.mode",
                "postgres uses no Redis: unset --redis-url (bus.redis_url), or choose --bus redis"
                    .into(),
            );
        }
    }
    // Settings the file cannot set: named by their flag.
    let mut flag_only = |flag: &'static str, broken: bool, reason: &str| {
        if broken {
            bad(flag, flag, reason.to_owned());
        }
    };
    flag_only(
        "audit-queue-capacity",
        c.audit_queue_capacity == 0,
        "must be at least 1",
    );
    flag_only(
        "event-capacity",
        c.event_capacity == 0,
        "must be at least 1",
    );
    flag_only(
        "max-served-metadata-bytes",
        !(1..=crate::snapshot::MAX_METADATA_BYTES).contains(&c.max_served_metadata_bytes),
        "must be between 1 and 16777216 (16 MiB)",
    );
    flag_only(
        "max-response-bytes",
        c.max_response_bytes < crate::config::MIN_RESPONSE_BYTES,
        "must be at least 65536 (64 KiB)",
    );
    flag_only(
        "bus-secret",
        matches!((&c.bus_secret, &c.reload_message_secret), (Some(a), Some(b)) if a != b),
        "HOTPLANE_BUS_SECRET and RELOAD_MESSAGE_SECRET differ; set only one",
    );
    flag_only(
        "bus-timeout",
        c.bus_timeout.is_zero() || c.bus_ping_interval.is_zero(),
        "bus timeouts and intervals must be greater than zero",
    );
    flag_only(
        "bus-reconnect-max",
        c.bus_reconnect_min.is_zero() || c.bus_reconnect_max < c.bus_reconnect_min,
        "reconnect delays must be positive, the maximum at least the minimum",
    );
    flag_only(
        "bus-replay-window",
        c.bus_replay_window.is_zero(),
        "must be greater than zero",
    );
    if let Err((flag, reason)) = c.auth.validate() {
        let key = match flag {
            "admin-rate" => "limits.admin_rate",
            "admin-burst" => "limits.admin_burst",
            other => other,
        };
        let reason = match flag {
            "admin-rate" => format!("{} is out of range: {reason}", c.auth.admin_rate),
            _ => reason,
        };
        bad(flag, key, reason);
    }
    out
}

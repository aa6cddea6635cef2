//! Where each config-file key's value comes from, and the precedence that follows:
//! **flag > environment variable > config file > default**, the convention of the ecosystem
//! (Kubernetes users set `env:` in a pod spec to override what a shared ConfigMap says).
//!
//! A file key whose flag or `HOTPLANE_*` variable is set is *pinned*: the file's value for it
//! is ignored, at start and on every reload, for as long as the process runs (flags and
//! environment are read once). Ignoring it silently would be the trap: a ConfigMap edit that
//! cannot take effect. So every pinned key the file sets is reported, at start (a warning) and
//! by every reload (the answer's `configPinned`, `GetStatus.config.pinned`, and a warning).
//!
//! clap knows the source of every value ([`clap::ArgMatches::value_source`]); this module maps
//! file keys to their arguments and keeps the answer in [`crate::config::Config::pinned`].
//! It decides nothing else: [`crate::config::file`] skips pinned keys when it overlays the file.

use clap::{ArgMatches, parser::ValueSource};

/// A config-file key pinned by a flag or environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The file key, e.g. `learn.min_confidence`.
    pub key: &'static str,
    /// What pins it, as the operator set it: `--learn-min-confidence` or
    /// `HOTPLANE_LEARN_MIN_CONFIDENCE`.
    pub by: String,
}

/// A pinned key that the config file sets: what a reload and the status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The file key.
    pub key: &'static str,
    /// The value in effect (the flag's or variable's), as status shows values.
    pub value: String,
    /// The file's value, ignored.
    pub file_value: String,
    /// What pins it (`--flag` or `HOTPLANE_*`).
    pub by: String,
}

impl std::fmt::Display for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {} in the file is ignored: {} sets {}",
            self.key, self.file_value, self.by, self.value
        )
    }
}

/// Every file key (see [`crate::config::file::KEYS`]) and the id of its clap argument (the
/// field of [`crate::config::Config`] or of the flattened auth settings).
#[rustfmt::skip]
pub const ARGS: &[(&str, &str)] = &[
    ("server.listen", "listen"),
    ("server.admin_listen", "admin_listen"),
    ("server.advertise_addr", "advertise_addr"),
    ("log.filter", "log_filter"),
    ("log.format", "log_format"),
    ("database.url", "database_url"),
    ("database.schema", "database_schema"),
    ("database.max_connections", "database_max_connections"),
    ("database.acquire_timeout", "database_acquire_timeout"),
    ("normalize.profile", "normalize_profile"),
    ("normalize.stop_words", "stop_words"),
    ("learn.min_confidence", "learn_min_confidence"),
    ("learn.min_chars", "learn_min_chars"),
    ("learn.auto_approve", "learn_auto_approve"),
    ("poll.interval", "poll_interval"),
    ("fleet.heartbeat", "fleet_heartbeat"),
    ("fleet.ttl", "fleet_ttl"),
    ("bus.mode", "bus_mode"),
    ("bus.redis_url", "redis_url"),
    ("bus.channel", "bus_channel"),
    ("shutdown.delay", "shutdown_delay"),
    ("shutdown.grace", "shutdown_grace"),
    ("watch.heartbeat", "watch_heartbeat"),
    ("watch.max_age", "watch_max_age"),
    ("patterns.retain_generations", "retain_generations"),
    ("hits.flush_interval", "hit_flush_interval"),
    ("hits.flush_batch", "hit_flush_batch"),
    ("limits.admin_rate", "admin_rate"),
    ("limits.admin_burst", "admin_burst"),
];

/// The file keys whose value `matches` took from the command line or the environment.
pub fn pins(matches: &ArgMatches, command: &clap::Command) -> Vec<Pin> {
    ARGS.iter()
        .filter_map(|&(key, id)| {
            let arg = command.get_arguments().find(|a| a.get_id() == id)?;
            let by = match matches.value_source(id)? {
                ValueSource::CommandLine => format!("--{}", arg.get_long()?),
                ValueSource::EnvVariable => arg.get_env()?.to_string_lossy().into_owned(),
                _ => return None,
            };
            Some(Pin { key, by })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::{config::Cli, config::file::KEYS};

    #[test]
    fn every_file_key_has_an_argument() {
        let command = Cli::command();
        for key in KEYS {
            let id = ARGS
                .iter()
                .find(|(k, _)| *k == key.path)
                .map(|(_, id)| *id)
                .unwrap_or_else(|| panic!("{} has no argument", key.path));
            let arg = command.get_arguments().find(|a| a.get_id() == id);
            let arg = arg.unwrap_or_else(|| panic!("{}: no argument {id}", key.path));
            assert!(arg.get_long().is_some() && arg.get_env().is_some(), "{id}");
        }
        assert_eq!(ARGS.len(), KEYS.len());
    }

    #[test]
    fn flags_pin_their_keys_defaults_do_not() {
        let cli = Cli::try_parse_args([
            "hotplane",
            "--learn-min-confidence",
            "0.5",
            "migrate",
            "--admin-rate",
            "2",
        ])
        .expect("parses");
        let pinned: Vec<(&str, &str)> = cli
            .config
            .pinned
            .iter()
            .map(|p| (p.key, p.by.as_str()))
            .collect();
        assert_eq!(
            pinned,
            [
                ("learn.min_confidence", "--learn-min-confidence"),
                ("limits.admin_rate", "--admin-rate"),
            ]
        );
    }
}

//! The config file (`--config FILE`, TOML): its typed schema, parsing that names the key at
//! fault in every error, the range checks, and how the file overlays flags and environment.
//!
//! **Precedence.** Flag > `HOTPLANE_*` variable > file > default: a key set by a flag or a
//! variable is pinned ([`crate::config::source`]) and the file's value for it is ignored (and
//! reported, see [`pinned_in`]); the file overrides defaults. The file is read at start and
//! again on each reload, always over the same base (flags, environment, defaults): a key deleted
//! from the file goes back to its base value on the next reload.
//!
//! This module only parses and checks: it applies nothing. [`crate::config::live`] decides what
//! takes effect at run time and what waits for a restart ([`KEYS`] says which is which).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer, de::Error as _};

use crate::{
    config::{BusMode, Config, LogFormat},
    normalize::Profile,
    store::redact_url,
};

/// One problem with the file: the key path (`learn.min_confidence`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Dotted key path in the file.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// The whole file. Every section and key is optional; unknown keys are errors.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct FileConfig {
    server: ServerSection,
    log: LogSection,
    database: DatabaseSection,
    normalize: NormalizeSection,
    learn: LearnSection,
    poll: PollSection,
    fleet: FleetSection,
    bus: BusSection,
    shutdown: ShutdownSection,
    watch: WatchSection,
    patterns: PatternsSection,
    hits: HitsSection,
    limits: LimitsSection,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct ServerSection {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    advertise_addr: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct LogSection {
    filter: Option<String>,
    #[serde(deserialize_with = "log_format")]
    format: Option<LogFormat>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct DatabaseSection {
    url: Option<String>,
    schema: Option<String>,
    max_connections: Option<u32>,
    #[serde(deserialize_with = "duration")]
    acquire_timeout: Option<Duration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct NormalizeSection {
    #[serde(deserialize_with = "profile")]
    profile: Option<Profile>,
    stop_words: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct LearnSection {
    min_confidence: Option<f64>,
    min_chars: Option<usize>,
    auto_approve: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct PollSection {
    #[serde(deserialize_with = "duration")]
    interval: Option<Duration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct FleetSection {
    #[serde(deserialize_with = "duration")]
    heartbeat: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    ttl: Option<Duration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct BusSection {
    #[serde(deserialize_with = "bus_mode")]
    mode: Option<BusMode>,
    redis_url: Option<String>,
    channel: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct ShutdownSection {
    #[serde(deserialize_with = "duration")]
    delay: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    grace: Option<Duration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct WatchSection {
    #[serde(deserialize_with = "duration")]
    heartbeat: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    max_age: Option<Duration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct PatternsSection {
    retain_generations: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct HitsSection {
    #[serde(deserialize_with = "duration")]
    flush_interval: Option<Duration>,
    flush_batch: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct LimitsSection {
    admin_rate: Option<f64>,
    admin_burst: Option<u32>,
}

/// A duration written as text: `"30s"`, `"500ms"`, `"2m"`.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        D::Error::custom(format!(
            "{text:?} is not a duration ({e}); write it as text, e.g. \"30s\", \"500ms\", \"2m\""
        ))
    })
}

fn profile<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Profile>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(D::Error::custom)
}

fn log_format<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LogFormat>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "text" => Ok(Some(LogFormat::Text)),
        "json" => Ok(Some(LogFormat::Json)),
        other => Err(D::Error::custom(format!(
            "unknown log format {other:?}; valid formats are: text, json"
        ))),
    }
}

fn bus_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BusMode>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "redis" => Ok(Some(BusMode::Redis)),
        "postgres" => Ok(Some(BusMode::Postgres)),
        other => Err(D::Error::custom(format!(
            "unknown bus mode {other:?}; valid modes are: redis, postgres"
        ))),
    }
}

/// A key of the file: its path, whether a change takes effect at run time, and how its
/// effective value is shown in reload answers and status (passwords removed).
#[derive(Debug)]
pub struct Key {
    /// Dotted path in the file.
    pub path: &'static str,
    /// Changes take effect on reload (else they wait for a restart).
    pub live: bool,
    /// The effective value, as text.
    pub show: fn(&Config) -> String,
    /// For restart-only keys: why, and what to do instead.
    pub restart_hint: &'static str,
}

const RESTART: &str = "read at start only; restart the process to apply it";

/// Every key the file accepts, in file order. `live` keys change on reload; the normalizer
/// keys change only when no served pattern would be keyed differently (see `config::live`).
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    Key { path: "server.listen", live: false, show: |c| c.listen.to_string(), restart_hint: "the listener is bound at start; restart the process to move it" },
    Key { path: "server.admin_listen", live: false, show: |c| c.admin_listen.map(|a| a.to_string()).unwrap_or_default(), restart_hint: "the admin listener is bound at start; restart the process to move it" },
    Key { path: "server.advertise_addr", live: false, show: |c| c.advertise_addr.clone().unwrap_or_default(), restart_hint: RESTART },
    Key { path: "log.filter", live: true, show: |c| c.log_filter.clone(), restart_hint: "" },
    Key { path: "log.format", live: false, show: |c| c.log_format.as_str().to_owned(), restart_hint: "the log writer is built at start; restart the process to switch it" },
    Key { path: "database.url", live: false, show: |c| redact_url(&c.database_url), restart_hint: "the pool is opened at start; use Reload(TARGET_STORE) with database_url to move it live, or restart" },
    Key { path: "database.schema", live: false, show: |c| c.database_schema.clone(), restart_hint: RESTART },
    Key { path: "database.max_connections", live: false, show: |c| c.database_max_connections.to_string(), restart_hint: "the pool is sized at start (Reload(TARGET_STORE) keeps the running pool settings); restart the process to apply it" },
    Key { path: "database.acquire_timeout", live: false, show: |c| show_duration(c.database_acquire_timeout), restart_hint: RESTART },
    Key { path: "normalize.profile", live: true, show: |c| c.normalize_profile.to_string(), restart_hint: "" },
    Key { path: "normalize.stop_words", live: true, show: |c| show_stop_words(c), restart_hint: "" },
    Key { path: "learn.min_confidence", live: true, show: |c| show_number(c.learn_min_confidence), restart_hint: "" },
    Key { path: "learn.min_chars", live: true, show: |c| c.learn_min_chars.to_string(), restart_hint: "" },
    Key { path: "learn.auto_approve", live: true, show: |c| c.learn_auto_approve.to_string(), restart_hint: "" },
    Key { path: "poll.interval", live: true, show: |c| show_duration(c.poll_interval), restart_hint: "" },
    Key { path: "fleet.heartbeat", live: true, show: |c| show_duration(c.fleet_heartbeat), restart_hint: "" },
    Key { path: "fleet.ttl", live: true, show: |c| show_duration(c.fleet_ttl), restart_hint: "" },
    Key { path: "bus.mode", live: false, show: |c| c.bus_mode.as_str().to_owned(), restart_hint: "the bus is chosen at start; restart the process to switch it" },
    Key { path: "bus.redis_url", live: false, show: |c| c.redis_url.as_deref().map(redact_url).unwrap_or_default(), restart_hint: "the bus connects at start; use Reload(TARGET_BUS) with redis_url to move it live, or restart" },
    Key { path: "bus.channel", live: false, show: |c| c.bus_channel.clone(), restart_hint: "the subscription is made at start; restart the process to change it" },
    Key { path: "shutdown.delay", live: false, show: |c| show_duration(c.shutdown_delay), restart_hint: RESTART },
    Key { path: "shutdown.grace", live: false, show: |c| show_duration(c.shutdown_grace), restart_hint: RESTART },
    Key { path: "watch.heartbeat", live: false, show: |c| show_duration(c.watch_heartbeat), restart_hint: RESTART },
    Key { path: "watch.max_age", live: false, show: |c| show_duration(c.watch_max_age), restart_hint: RESTART },
    Key { path: "patterns.retain_generations", live: false, show: |c| c.retain_generations.to_string(), restart_hint: RESTART },
    Key { path: "hits.flush_interval", live: false, show: |c| show_duration(c.hit_flush_interval), restart_hint: RESTART },
    Key { path: "hits.flush_batch", live: false, show: |c| c.hit_flush_batch.to_string(), restart_hint: RESTART },
    Key { path: "limits.admin_rate", live: true, show: |c| show_number(c.auth.admin_rate), restart_hint: "" },
    Key { path: "limits.admin_burst", live: true, show: |c| c.auth.admin_burst.to_string(), restart_hint: "" },
];

/// A number as the file would hold it: `10`, `0.5`, and an exponent where plain digits would
/// not read back (`1e300` printed in full is a TOML integer far past i64; the config_file
/// fuzz target found it).
fn show_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x}")
    } else {
        format!("{x:?}")
    }
}

fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn show_stop_words(c: &Config) -> String {
    match &c.stop_words {
        None => format!("(the {} profile's list)", c.normalize_profile),
        Some(words) => format!("[{}]", words.join(", ")),
    }
}

/// A config file as read: the parsed keys and the raw text's hash.
#[derive(Debug)]
pub struct Loaded {
    /// The parsed file.
    pub file: FileConfig,
    /// xxh3 hash of the file's bytes, hex: equal hashes mean the same file.
    pub content_hash: String,
    /// Keys the file sets.
    pub keys_set: usize,
}

/// Why a file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("reading the config file {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid: every problem, each with its key path.
    #[error("invalid config file {path}: {}", join(.errors))]
    Invalid {
        /// The path.
        path: PathBuf,
        /// Every problem found.
        errors: Vec<KeyError>,
    },
}

/// Every key error, in one line.
pub(super) fn join(errors: &[KeyError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads and parses `path` (no range checks: those need the base, see [`effective`]).
pub fn read(path: &std::path::Path) -> Result<Loaded, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|errors| FileError::Invalid {
        path: path.to_owned(),
        errors,
    })
}

/// Parses the text of a file: every unknown key, or the first value of a wrong type, is an
/// error naming its key path.
pub fn parse(text: &str) -> Result<Loaded, Vec<KeyError>> {
    let de = toml::Deserializer::parse(text).map_err(|e| vec![toml_error(text, "", &e)])?;
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let tracked = serde_ignored::Deserializer::new(de, &mut note);
    let file: FileConfig = serde_path_to_error::deserialize(tracked).map_err(|e| {
        let key = e.path().to_string();
        vec![toml_error(text, &key, e.inner())]
    })?;
    if !unknown.is_empty() {
        return Err(unknown.into_iter().map(unknown_key).collect());
    }
    let keys_set = KEYS.iter().filter(|k| file.sets(k.path)).count();
    Ok(Loaded {
        file,
        content_hash: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes())),
        keys_set,
    })
}

/// A TOML or type error, with the line it is on.
fn toml_error(text: &str, key: &str, e: &toml::de::Error) -> KeyError {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let reason = match line {
        Some(n) => format!("{} (line {n})", e.message().trim_end()),
        None => e.message().trim_end().to_owned(),
    };
    KeyError {
        key: if key.is_empty() || key == "." {
            "(file)".to_owned()
        } else {
            key.to_owned()
        },
        reason,
    }
}

/// An unknown key, with the keys its section does know (typos are the usual cause).
fn unknown_key(path: String) -> KeyError {
    let section = path.split('.').next().unwrap_or_default();
    let known: Vec<&str> = KEYS
        .iter()
        .filter(|k| k.path.split('.').next() == Some(section))
        .map(|k| k.path)
        .collect();
    let reason = if known.is_empty() {
        let sections: Vec<&str> = KEYS
            .iter()
            .map(|k| k.path.split('.').next().unwrap_or_default())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        format!("unknown key; known sections: {}", sections.join(", "))
    } else {
        format!("unknown key; known keys here: {}", known.join(", "))
    };
    KeyError { key: path, reason }
}

/// Calls the macro `$m` with every key of the file as `section.key`, in [`KEYS`] order: the one
/// list that [`FileConfig::sets`] and [`FileConfig::unset`] match paths against.
macro_rules! file_keys {
    ($m:ident) => {
        $m!(
            server.listen,
            server.admin_listen,
            server.advertise_addr,
            log.filter,
            log.format,
            database.url,
            database.schema,
            database.max_connections,
            database.acquire_timeout,
            normalize.profile,
            normalize.stop_words,
            learn.min_confidence,
            learn.min_chars,
            learn.auto_approve,
            poll.interval,
            fleet.heartbeat,
            fleet.ttl,
            bus.mode,
            bus.redis_url,
            bus.channel,
            shutdown.delay,
            shutdown.grace,
            watch.heartbeat,
            watch.max_age,
            patterns.retain_generations,
            hits.flush_interval,
            hits.flush_batch,
            limits.admin_rate,
            limits.admin_burst,
        )
    };
}

impl FileConfig {
    /// Whether the file sets the key at `path` (a path of [`KEYS`]).
    pub fn sets(&self, path: &str) -> bool {
        let (section, key) = path.split_once('.').unwrap_or((path, ""));
        macro_rules! any_set {
            ($($s:ident . $k:ident),* $(,)?) => {
                match (section, key) {
                    $((stringify!($s), stringify!($k)) => self.$s.$k.is_some(),)*
                    _ => false,
                }
            };
        }
        file_keys!(any_set)
    }

    /// Forgets the key at `path` (a path of [`KEYS`]), as if the file did not set it.
    fn unset(&mut self, path: &str) {
        let (section, key) = path.split_once('.').unwrap_or((path, ""));
        macro_rules! unset {
            ($($s:ident . $k:ident),* $(,)?) => {
                match (section, key) {
                    $((stringify!($s), stringify!($k)) => self.$s.$k = None,)*
                    _ => {}
                }
            };
        }
        file_keys!(unset)
    }

    /// Writes every key the file sets into `c`.
    pub fn overlay(&self, c: &mut Config) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut c.listen, &self.server.listen);
        if let Some(a) = self.server.admin_listen {
            c.admin_listen = Some(a);
        }
        if let Some(a) = &self.server.advertise_addr {
            c.advertise_addr = Some(a.clone());
        }
        set(&mut c.log_filter, &self.log.filter);
        set(&mut c.log_format, &self.log.format);
        set(&mut c.database_url, &self.database.url);
        set(&mut c.database_schema, &self.database.schema);
        set(
            &mut c.database_max_connections,
            &self.database.max_connections,
        );
        set(
            &mut c.database_acquire_timeout,
            &self.database.acquire_timeout,
        );
        set(&mut c.normalize_profile, &self.normalize.profile);
        if let Some(words) = &self.normalize.stop_words {
            c.stop_words = Some(words.clone());
        }
        set(&mut c.learn_min_confidence, &self.learn.min_confidence);
        set(&mut c.learn_min_chars, &self.learn.min_chars);
        set(&mut c.learn_auto_approve, &self.learn.auto_approve);
        set(&mut c.poll_interval, &self.poll.interval);
        set(&mut c.fleet_heartbeat, &self.fleet.heartbeat);
        set(&mut c.fleet_ttl, &self.fleet.ttl);
        set(&mut c.bus_mode, &self.bus.mode);
        if let Some(url) = &self.bus.redis_url {
            c.redis_url = Some(url.clone());
        }
        set(&mut c.bus_channel, &self.bus.channel);
        set(&mut c.shutdown_delay, &self.shutdown.delay);
        set(&mut c.shutdown_grace, &self.shutdown.grace);
        set(&mut c.watch_heartbeat, &self.watch.heartbeat);
        set(&mut c.watch_max_age, &self.watch.max_age);
        set(&mut c.retain_generations, &self.patterns.retain_generations);
        set(&mut c.hit_flush_interval, &self.hits.flush_interval);
        set(&mut c.hit_flush_batch, &self.hits.flush_batch);
        set(&mut c.auth.admin_rate, &self.limits.admin_rate);
        set(&mut c.auth.admin_burst, &self.limits.admin_burst);
    }
}

/// The file over the base, range-checked as a whole: every problem is reported, each under the
/// key that sets the value (even when the value came from a flag: the file is where to fix it).
/// Keys the base pins (set by flag or environment) keep the base's value.
pub fn effective(base: &Config, file: &FileConfig) -> Result<Config, Vec<KeyError>> {
    let mut file = file.clone();
    for pin in &base.pinned {
        file.unset(pin.key);
    }
    let mut c = base.clone();
    file.overlay(&mut c);
    let errors = check(&c);
    if errors.is_empty() {
        Ok(c)
    } else {
        Err(errors)
    }
}

/// The pinned keys that the file sets, whose file value is therefore ignored: the value in
/// effect (from the flag or variable), the file's, and what pins it.
pub fn pinned_in(base: &Config, file: &FileConfig) -> Vec<crate::config::source::Pinned> {
    let mut wanted = base.clone();
    file.overlay(&mut wanted);
    base.pinned
        .iter()
        .filter(|pin| file.sets(pin.key))
        .filter_map(|pin| {
            let key = KEYS.iter().find(|k| k.path == pin.key)?;
            Some(crate::config::source::Pinned {
                key: pin.key,
                value: (key.show)(base),
                file_value: (key.show)(&wanted),
                by: pin.by.clone(),
            })
        })
        .collect()
}

/// Range checks, named by file key: the rules start-up applies too ([`crate::config::rules`]).
pub fn check(c: &Config) -> Vec<KeyError> {
    crate::config::rules::violations(c)
        .into_iter()
        .map(|v| KeyError {
            key: v.key,
            reason: v.reason,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config::for_database("sqlite://x.db")
    }

    fn errors(text: &str) -> Vec<KeyError> {
        match parse(text) {
            Err(e) => e,
            Ok(l) => effective(&base(), &l.file).expect_err("invalid"),
        }
    }

    #[test]
    fn shown_numbers_read_back_as_the_same_value() {
        for rate in [0.0, 3.0, 0.25, 1e-7, 2.5e15, 1.1872137728370364e203] {
            let mut c = Config::for_database("sqlite://x.db");
            c.auth.admin_rate = rate;
            let key = KEYS
                .iter()
                .find(|k| k.path == "limits.admin_rate")
                .expect("key");
            let text = format!(
                "[limits]\nadmin_rate = {}\nadmin_burst = 1\n",
                (key.show)(&c)
            );
            let loaded = parse(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            let back = effective(&Config::for_database("sqlite://x.db"), &loaded.file)
                .unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(back.auth.admin_rate, rate, "{text}");
        }
    }

    #[test]
    fn a_file_overlays_the_base_and_leaves_the_rest() {
        let text = r#"
            [learn]
            min_confidence = 0.75
            auto_approve = false
            [normalize]
            profile = "pilotpros"
            stop_words = ["oggi", "please"]
            [poll]
            interval = "2s"
            [database]
            url = "postgres://app:pw@db/x"
        "#;
        let loaded = parse(text).expect("parses");
        assert_eq!(loaded.keys_set, 6);
        let mut b = base();
        b.learn_min_chars = 5; // a flag the file leaves alone
        let c = effective(&b, &loaded.file).expect("valid");
        assert_eq!(c.learn_min_confidence, 0.75);
        assert!(!c.learn_auto_approve);
        assert_eq!(c.learn_min_chars, 5);
        assert_eq!(c.normalize_profile, Profile::PilotPros);
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        let shown = KEYS
            .iter()
            .find(|k| k.path == "database.url")
            .map(|k| (k.show)(&c))
            .expect("key");
        assert!(!shown.contains("pw"), "{shown}");
        assert_eq!(parse("").expect("empty is fine").keys_set, 0);
    }

    #[test]
    fn every_key_of_the_table_is_a_key_of_the_schema() {
        for key in KEYS {
            let (section, name) = key.path.split_once('.').expect("dotted");
            let value = match name {
                "stop_words" => "[]".to_owned(),
                "min_confidence" => "0.5".to_owned(),
                "auto_approve" => "true".to_owned(),
                "max_connections" | "min_chars" | "retain_generations" | "flush_batch"
                | "admin_burst" | "admin_rate" => "3".to_owned(),
                "listen" | "admin_listen" => "\"127.0.0.1:1\"".to_owned(),
                "profile" => "\"default\"".to_owned(),
                "format" => "\"json\"".to_owned(),
                "mode" => "\"redis\"".to_owned(),
                _ => "\"1s\"".to_owned(),
            };
            let text = format!("[{section}]\n{name} = {value}\n");
            let loaded = parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", key.path));
            assert!(loaded.file.sets(key.path), "{}", key.path);
            assert_eq!(loaded.keys_set, 1, "{}", key.path);
        }
    }

    #[test]
    fn the_readme_example_sets_every_key_and_is_valid() {
        let readme = include_str!("../../docs/configuration.md");
        let example = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block in docs/configuration.md");
        let loaded = parse(example).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(loaded.keys_set, KEYS.len(), "the example shows every key");
        effective(&base(), &loaded.file).expect("the example is valid");
    }

    #[test]
    fn unknown_keys_wrong_types_and_ranges_name_the_key() {
        let e = errors("[learn]\nmin_confidense = 0.5\n[lern]\nx = 1\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].key, "learn.min_confidense");
        assert!(e[0].reason.contains("learn.min_confidence"), "{e:?}");
        assert_eq!(e[1].key, "lern");
        let e = errors("[learn]\n\nmin_confidence = \"high\"\n");
        assert_eq!(e[0].key, "learn.min_confidence");
        assert!(e[0].reason.contains("line 3"), "{e:?}");
        let e = errors("[poll]\ninterval = \"soon\"\n");
        assert_eq!(e[0].key, "poll.interval");
        assert!(e[0].reason.contains("not a duration"), "{e:?}");
        let e = errors("[learn]\nmin_confidence = 1.5\n[fleet]\nheartbeat = \"20s\"\n");
        let keys: Vec<&str> = e.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["learn.min_confidence", "fleet.ttl"]);
        let e = errors("[normalize]\nstop_words = [\"ok\", \"two words\"]\n");
        assert_eq!(e[0].key, "normalize.stop_words[1]");
        let e = errors("[log]\nfilter = \"info,[[[\"\n");
        assert_eq!(e[0].key, "log.filter");
        let e = errors("[learn\n");
        assert_eq!(e[0].key, "(file)");
        assert!(e[0].reason.contains("line 1"), "{e:?}");
    }
}

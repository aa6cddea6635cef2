//! Typed configuration, parsed once at start from flags and `HOTPLANE_*` environment variables.
//!
//! Every field is documented: the doc comment is the `--help` text. Tests build a [`Config`]
//! directly (see [`Config::for_database`]) instead of mutating the process environment.
//! `Debug` redacts the database password.

use std::{net::SocketAddr, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::{bus::Secret, normalize::Profile, store::redact_url};

/// hotplane: hot-reloads learned patterns and other in-memory state without restarts.
#[derive(Debug, Parser)]
#[command(name = "hotplane", version, about, long_about = None)]
#[command(after_help = "Operate a running server: `hotplane ctl --help` (docs/cli.md).")]
pub struct Cli {
    /// What to do; serving is the default.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every command.
    #[command(flatten)]
    pub config: Config,
}

impl Cli {
    /// Parses the process's arguments, exiting with clap's message and code on bad ones.
    pub fn parse_args() -> Cli {
        Self::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the program name first). Every setting is global, so it may come after
    /// the subcommand as well as before it: `hotplane migrate --database-url …` works as
    /// `hotplane --database-url … migrate` does.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command().mut_args(|arg| arg.global(true));
        let matches = command.clone().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.config.pinned = crate::config::source::pins(&matches, &command);
        Ok(cli)
    }
}

/// Commands.
#[derive(Debug, Clone, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Run the gRPC server (the default).
    Serve,
    /// Run the database migrations and exit.
    Migrate,
    /// Ask a running server's grpc.health.v1 whether it is SERVING: exit 0 if so, 1 otherwise,
    /// with a one-line reason (for exec probes and Docker's HEALTHCHECK). Needs no database and
    /// reads no config file.
    Health(HealthArgs),
}

/// Options of `hotplane health` (see [`crate::probe`]).
#[derive(Debug, Clone, Args, PartialEq, Eq)]
#[command(next_help_heading = "Probe options")]
pub struct HealthArgs {
    /// Health service name to check: "" (the default) is the whole server; a hotplane service
    /// such as `hotplane.v1.Patterns` is checked by name.
    #[arg(long, default_value = "", value_name = "NAME")]
    pub service: String,

    /// Give up after this long (connect and answer), reporting no answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// The server's address, token and TLS options (shared with `hotplane ctl`).
    #[command(flatten)]
    pub connect: crate::ctl::ConnectArgs,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name used in flags and in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Which bus carries changes between replicas (`--bus`, `bus.mode`).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum BusMode {
    /// The Redis bus when `--redis-url` is set; none (single instance) otherwise.
    #[default]
    Redis,
    /// PostgreSQL LISTEN/NOTIFY on the store's own database: no Redis (docs/bus.md).
    Postgres,
}

impl BusMode {
    /// The name used in flags and in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            BusMode::Redis => "redis",
            BusMode::Postgres => "postgres",
        }
    }
}

/// Default of `--max-response-bytes`: 4 MiB, the largest message gRPC clients (grpc-go, grpc-java,
/// grpcio, tonic) accept by default; an answer past it would fail in the client anyway.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Smallest `--max-response-bytes`: a full batch of unmatched queries must still fit.
pub(crate) const MIN_RESPONSE_BYTES: usize = 64 * 1024;

/// Every setting of the service.
#[derive(Clone, Args)]
pub struct Config {
    /// Address of the gRPC listener (port 0 picks a free port).
    #[arg(long, env = "HOTPLANE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Address of the admin HTTP listener serving Prometheus metrics at `/metrics` and the live
    /// dashboard at `/` (port 0 picks a free port). Unset: no admin listener, no metrics, no
    /// dashboard. `/metrics` has no authentication: bind it where only the scraper reaches (the
    /// dashboard applies the gRPC credentials, and loopback only without them).
    #[arg(long, env = "HOTPLANE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Pattern store: `sqlite://FILE` (embedded, created if missing) or `postgres://...`.
    #[arg(
        long,
        env = "HOTPLANE_DATABASE_URL",
        default_value = "sqlite://hotplane.db"
    )]
    pub database_url: String,

    /// PostgreSQL schema holding the tables (created if missing); the legacy deployment uses
    /// `pilotpros`. Ignored for SQLite.
    #[arg(long, env = "HOTPLANE_DATABASE_SCHEMA", default_value = "public")]
    pub database_schema: String,

    /// Database connection pool size.
    #[arg(long, env = "HOTPLANE_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// How long a query waits for a pooled connection before failing.
    #[arg(long, env = "HOTPLANE_DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub database_acquire_timeout: Duration,

    /// Query normalization profile: `default` (Unicode punctuation, no stop words) or
    /// `pilotpros` (the legacy deployment's normalizer, with its Italian stop words).
    #[arg(long, env = "HOTPLANE_NORMALIZE_PROFILE", default_value = "default")]
    pub normalize_profile: Profile,

    /// Comma-separated stop words replacing the profile's list (empty string: none).
    #[arg(long, env = "HOTPLANE_STOP_WORDS", value_delimiter = ',')]
    pub stop_words: Option<Vec<String>>,

    /// LearnPattern accepts a pattern only at or above this confidence (0..1).
    #[arg(long, env = "HOTPLANE_LEARN_MIN_CONFIDENCE", default_value_t = 0.9)]
    pub learn_min_confidence: f64,

    /// LearnPattern rejects patterns whose normalized text is shorter than this many characters.
    #[arg(long, env = "HOTPLANE_LEARN_MIN_CHARS", default_value_t = 3)]
    pub learn_min_chars: usize,

    /// New learned patterns are approved (served at once) when true, pending review when false.
    #[arg(long, env = "HOTPLANE_LEARN_AUTO_APPROVE", default_value_t = true, action = ArgAction::Set)]
    pub learn_auto_approve: bool,

    /// Previous generations kept for rollback.
    #[arg(long, env = "HOTPLANE_RETAIN_GENERATIONS", default_value_t = 10)]
    pub retain_generations: usize,

    /// How often in-memory hit counts are written to the store.
    #[arg(long, env = "HOTPLANE_HIT_FLUSH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub hit_flush_interval: Duration,

    /// Largest batch of hit counts written in one statement.
    #[arg(long, env = "HOTPLANE_HIT_FLUSH_BATCH", default_value_t = 5000)]
    pub hit_flush_batch: usize,

    /// Capacity of the internal event channels and of the WatchStatus replay buffer (events a
    /// stream can resume from with `after_event_id`).
    #[arg(long, env = "HOTPLANE_EVENT_CAPACITY", default_value_t = 1024)]
    pub event_capacity: usize,

    /// After SIGTERM, how long to keep serving while NOT_SERVING before waiting for in-flight
    /// work: time for load balancers and Kubernetes endpoints to stop routing here.
    #[arg(long, env = "HOTPLANE_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,

    /// How long shutdown (and `StartDrain` with `wait`) waits for running requests.
    #[arg(long, env = "HOTPLANE_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How long one pattern load may run before the `liveness` health name reports
    /// NOT_SERVING: the engine is wedged, and only a restart helps. 0 turns the check off.
    /// Readiness (`""` and the service names) does not depend on it.
    #[arg(long, env = "HOTPLANE_LIVENESS_LOAD_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub liveness_load_timeout: Duration,

    /// Interval between WatchStatus heartbeats (so dashboards can tell quiet from dead).
    #[arg(long, env = "HOTPLANE_WATCH_HEARTBEAT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub watch_heartbeat: Duration,

    /// WatchStatus streams end cleanly after this long so clients reconnect and rebalance
    /// after scale-out (0s: never).
    #[arg(long, env = "HOTPLANE_WATCH_MAX_AGE", default_value = "30m", value_parser = humantime::parse_duration)]
    pub watch_max_age: Duration,

    /// HTTP/2 keepalive PING interval, keeping long idle streams alive through proxies.
    #[arg(long, env = "HOTPLANE_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long to wait for a keepalive PING answer before closing the connection.
    #[arg(long, env = "HOTPLANE_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// The bus between replicas: `redis` (the Redis bus when --redis-url is set, none otherwise)
    /// or `postgres` (the store's trigger NOTIFYs every change and each replica LISTENs: no Redis,
    /// no publisher; needs a `postgres://` --database-url and no --redis-url).
    #[arg(
        long = "bus",
        env = "HOTPLANE_BUS",
        value_enum,
        default_value = "redis"
    )]
    pub bus_mode: BusMode,

    /// Redis URL of the reload bus: `redis://[user:password@]host[:port][/db]`, or Redis
    /// Sentinel:
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/master-name[?db=N&username=U&password=P]`
    /// (the sentinels' credentials before the hosts, the master's in the query; the master is
    /// asked of the sentinels at every connect), or Redis Cluster:
    /// `redis+cluster://[user:password@]host:port[,host:port...]`. `rediss://`,
    /// `rediss+sentinel://` and `rediss+cluster://` are the same over TLS, to every server the
    /// URL leads to (sentinels and master, every cluster node). Unset or empty:
    /// single-instance mode, no bus (the poll still runs).
    #[arg(long, env = "HOTPLANE_REDIS_URL")]
    pub redis_url: Option<String>,

    /// TLS URLs only (`rediss://`, `rediss+sentinel://`, `rediss+cluster://`): a PEM file with
    /// the CA certificate(s) that signed the Redis servers' certificates (sentinels, master,
    /// cluster nodes), trusted instead of the system's roots (for a private CA).
    #[arg(long, env = "HOTPLANE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// PubSub channel of reload events (the legacy deployment uses `pilotpros:patterns:reload`).
    #[arg(
        long,
        env = "HOTPLANE_BUS_CHANNEL",
        default_value = "hotplane:patterns:reload"
    )]
    pub bus_channel: String,

    /// Shared secret: when set, every bus message must be signed (HMAC-SHA256) and fresh.
    /// Prefer the environment variable (flags show in `ps`); `RELOAD_MESSAGE_SECRET` is accepted
    /// as an alias.
    #[arg(long, env = "HOTPLANE_BUS_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub bus_secret: Option<Secret>,

    /// The legacy name of the bus secret, used when `HOTPLANE_BUS_SECRET` is unset.
    #[arg(long = "reload-message-secret", env = "RELOAD_MESSAGE_SECRET", hide = true, hide_env_values = true, value_parser = parse_secret)]
    pub reload_message_secret: Option<Secret>,

    /// Unsigned mode only: let bus messages pin this replica (`rollback`) and stop serving rows
    /// without reading the store (`invalidate`). Off by default, because without a secret anyone
    /// who can PUBLISH on the channel could freeze or empty the fleet; when off, an unsigned
    /// `rollback` is refused (counted as `unsigned_rollback`) and an unsigned `invalidate` reads
    /// the row from the store like a `reload`. Signed messages are trusted either way.
    #[arg(long, env = "HOTPLANE_BUS_ALLOW_UNSIGNED_ROLLBACK", default_value_t = false, action = ArgAction::Set)]
    pub bus_allow_unsigned_rollback: bool,

    /// Signed mode: how far a message's `ts` may be from now (either way), and how long event
    /// ids are remembered to refuse replays.
    #[arg(long, env = "HOTPLANE_BUS_REPLAY_WINDOW", default_value = "5m", value_parser = humantime::parse_duration)]
    pub bus_replay_window: Duration,

    /// First delay before reconnecting to Redis; it doubles (with jitter) up to
    /// `--bus-reconnect-max`, capped at 1 s for the first 30 s of an outage, and starts over
    /// only after a connection stayed up for 10 s.
    #[arg(long, env = "HOTPLANE_BUS_RECONNECT_MIN", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub bus_reconnect_min: Duration,

    /// Longest delay between reconnect attempts (retries never stop).
    #[arg(long, env = "HOTPLANE_BUS_RECONNECT_MAX", default_value = "30s", value_parser = humantime::parse_duration)]
    pub bus_reconnect_max: Duration,

    /// How often the subscription connection is PINGed, to detect half-open connections.
    #[arg(long, env = "HOTPLANE_BUS_PING_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub bus_ping_interval: Duration,

    /// Longest a Redis connect, subscribe, PING or PUBLISH may take before the connection is
    /// considered dead.
    #[arg(long, env = "HOTPLANE_BUS_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub bus_timeout: Duration,

    /// How often this instance writes its state (generation, revision, hash, draining) to the
    /// fleet registry in Redis; also right after every successful load.
    #[arg(long, env = "HOTPLANE_FLEET_HEARTBEAT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub fleet_heartbeat: Duration,

    /// How long an instance stays listed in the fleet without a heartbeat (a crashed one drops
    /// out after this).
    #[arg(long, env = "HOTPLANE_FLEET_TTL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub fleet_ttl: Duration,

    /// The address other services reach this instance at, as listed in the fleet (default: the
    /// bound listen address).
    #[arg(long, env = "HOTPLANE_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Backstop: how often to ask the store for changes a lost bus message would have announced
    /// (a cheap delta; `0s` disables it).
    #[arg(long, env = "HOTPLANE_POLL_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,

    /// WatchStatus streams one caller (authenticated name, else peer address) may hold open at
    /// once; past it RESOURCE_EXHAUSTED. 0: no limit.
    #[arg(
        long,
        env = "HOTPLANE_WATCH_MAX_STREAMS_PER_CALLER",
        default_value_t = 16
    )]
    pub watch_max_streams_per_caller: u32,

    /// Audit trail: entries waiting to be written at most; past it new entries are dropped,
    /// counted (GetStatus.audit.dropped) and logged, never blocking a change.
    #[arg(long, env = "HOTPLANE_AUDIT_QUEUE_CAPACITY", default_value_t = 4096)]
    pub audit_queue_capacity: usize,

    /// Audit trail: rows older than this many days are deleted (hourly); 0 keeps them forever.
    #[arg(long, env = "HOTPLANE_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    pub audit_retention_days: u32,

    /// Tombstones of deleted patterns older than this many hours are deleted (hourly); 0 keeps
    /// them forever. A replica whose last read is older than a pruning does a full load.
    #[arg(
        long,
        env = "HOTPLANE_TOMBSTONE_RETENTION_HOURS",
        default_value_t = 168
    )]
    pub tombstone_retention_hours: u32,

    /// Longest pattern metadata (bytes of JSON text) served; a served row with more is
    /// quarantined at load (not served, reported in GetStatus and WatchStatus) until it is
    /// shrunk. At most 16 MiB.
    #[arg(
        long,
        env = "HOTPLANE_MAX_SERVED_METADATA_BYTES",
        default_value_t = crate::snapshot::DEFAULT_MAX_SERVED_METADATA_BYTES
    )]
    pub max_served_metadata_bytes: usize,

    /// Largest encoded MatchPattern / BatchMatchPatterns answer, in bytes; a request whose
    /// answer would be larger is refused with RESOURCE_EXHAUSTED before it is built.
    #[arg(
        long,
        env = "HOTPLANE_MAX_RESPONSE_BYTES",
        default_value_t = DEFAULT_MAX_RESPONSE_BYTES
    )]
    pub max_response_bytes: usize,

    /// Log filter, in `RUST_LOG` syntax (e.g. `info,hotplane=debug`).
    #[arg(long, env = "HOTPLANE_LOG", default_value = "info")]
    pub log_filter: String,

    /// Log format.
    #[arg(long, env = "HOTPLANE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Authentication, TLS and rate limits (see `crate::auth`).
    #[command(flatten)]
    pub auth: crate::auth::AuthConfig,
    /// A TOML config file, read at start and again on SIGHUP or `Reload(TARGET_CONFIG)`.
    /// Precedence: flag > environment variable > file > default; a key set by flag or
    /// environment ignores the file's value (reported). See docs/configuration.md, "Config file".
    #[arg(long = "config", env = "HOTPLANE_CONFIG")]
    pub config_file: Option<std::path::PathBuf>,

    /// File keys set by a flag or environment variable, which the file may not override
    /// (filled in by [`Cli::try_parse_args`]; see [`crate::config::source`]).
    #[arg(skip)]
    pub pinned: Vec<crate::config::source::Pin>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_schema", &self.database_schema)
            .field("database_max_connections", &self.database_max_connections)
            .field("normalize_profile", &self.normalize_profile)
            .field("stop_words", &self.stop_words)
            .field("learn_min_confidence", &self.learn_min_confidence)
            .field("learn_min_chars", &self.learn_min_chars)
            .field("learn_auto_approve", &self.learn_auto_approve)
            .field("retain_generations", &self.retain_generations)
            .field("hit_flush_interval", &self.hit_flush_interval)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("bus_channel", &self.bus_channel)
            .field("bus_secret", &self.bus_secret())
            .field(
                "bus_allow_unsigned_rollback",
                &self.bus_allow_unsigned_rollback,
            )
            .field("poll_interval", &self.poll_interval)
            .field("auth", &self.auth)
            .field("config_file", &self.config_file)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

/// A setting that is out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting --{field}: {reason}")]
pub struct ConfigError {
    /// The flag name.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Parses a secret; an empty one is a mistake (it would sign with an empty key).
fn parse_secret(text: &str) -> Result<Secret, String> {
    if text.is_empty() {
        return Err("the bus secret must not be empty".into());
    }
    Ok(Secret::new(text))
}

impl Config {
    /// The bus secret: `HOTPLANE_BUS_SECRET`, else its legacy alias `RELOAD_MESSAGE_SECRET`.
    pub fn bus_secret(&self) -> Option<&Secret> {
        self.bus_secret
            .as_ref()
            .or(self.reload_message_secret.as_ref())
    }

    /// The defaults with a given database URL and a port-0 listener: what tests start from.
    pub fn for_database(database_url: impl Into<String>) -> Config {
        let mut cfg = Cli::parse_from(["hotplane"]).config;
        cfg.database_url = database_url.into();
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg
    }

    /// Checks ranges clap cannot express ([`crate::config::rules`], the rules a config file's
    /// reload applies too); the first broken rule, named by its flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match crate::config::rules::violations(self).into_iter().next() {
            None => Ok(()),
            Some(v) => Err(ConfigError {
                field: v.flag,
                reason: v.reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_with_nothing_installed() {
        let cli = Cli::try_parse_from(["hotplane"]).expect("defaults parse");
        assert_eq!(cli.config.database_url, "sqlite://hotplane.db");
        assert_eq!(cli.config.listen.to_string(), "127.0.0.1:50051");
        assert!(cli.config.learn_auto_approve);
        cli.config.validate().expect("defaults are valid");
    }

    #[test]
    fn flags_parse_and_ranges_are_checked() {
        let cli = Cli::try_parse_from([
            "hotplane",
            "--normalize-profile",
            "pilotpros",
            "--learn-auto-approve",
            "false",
            "--hit-flush-interval",
            "250ms",
            "--learn-min-confidence",
            "1.5",
            "migrate",
        ])
        .expect("parses");
        assert_eq!(cli.command, Some(Command::Migrate));
        assert_eq!(cli.config.normalize_profile, Profile::PilotPros);
        assert!(!cli.config.learn_auto_approve);
        assert_eq!(cli.config.hit_flush_interval, Duration::from_millis(250));
        let err = cli.config.validate().expect_err("1.5 is out of range");
        assert!(err.to_string().contains("learn-min-confidence"));
        for (flag, value) in [
            ("--max-served-metadata-bytes", "0"),
            ("--max-served-metadata-bytes", "16777217"),
            ("--max-response-bytes", "1000"),
        ] {
            let cli = Cli::try_parse_from(["hotplane", flag, value]).expect("parses");
            let err = cli.config.validate().expect_err("out of range");
            assert!(err.to_string().contains(&flag[2..]), "{err}");
        }
        assert!(Cli::try_parse_from(["hotplane", "--normalize-profile", "nope"]).is_err());
    }

    /// Start-up and a config file reload apply one set of rules: values the file would refuse
    /// are refused as flags too, named by the flag.
    #[test]
    fn flags_are_held_to_the_rules_the_config_file_is() {
        for (flag, value) in [
            ("--learn-min-chars", "0"),
            ("--log-filter", "hotplane=nonsense["),
            ("--database-acquire-timeout", "0s"),
            ("--watch-heartbeat", "0s"),
            ("--stop-words", "due parole"),
        ] {
            let cli = Cli::try_parse_from(["hotplane", flag, value]).expect("parses");
            let err = cli
                .config
                .validate()
                .expect_err(&format!("{flag} {value} is refused"));
            assert_eq!(err.field, &flag[2..], "{err}");
            let keys = crate::config::file::check(&cli.config);
            assert_eq!(
                keys.len(),
                1,
                "the same rule, named by its file key: {keys:?}"
            );
        }
    }

    #[test]
    fn settings_may_follow_the_subcommand() {
        for args in [
            ["hotplane", "migrate", "--database-url", "postgres://db/x"],
            ["hotplane", "--database-url", "postgres://db/x", "migrate"],
        ] {
            let cli = Cli::try_parse_args(args).expect("parses");
            assert_eq!(cli.command, Some(Command::Migrate), "{args:?}");
            assert_eq!(cli.config.database_url, "postgres://db/x", "{args:?}");
        }
        let cli = Cli::try_parse_args(["hotplane", "serve", "--listen", "127.0.0.1:7"])
            .expect("serve with a flag after it");
        assert_eq!(cli.config.listen.port(), 7);
        let err = Cli::try_parse_args(["hotplane", "migrate", "--no-such-flag"])
            .expect_err("unknown flags are still refused");
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn bus_settings_parse_the_secret_has_an_alias_and_debug_hides_it() {
        let cli = Cli::try_parse_from([
            "hotplane",
            "--redis-url",
            "redis://bus:pa55@cache:6379/2",
            "--bus-channel",
            "pilotpros:patterns:reload",
            "--reload-message-secret",
            "legacy-secret",
            "--poll-interval",
            "0s",
        ])
        .expect("parses");
        let cfg = cli.config;
        cfg.validate().expect("valid");
        assert_eq!(cfg.bus_secret(), Some(&Secret::new("legacy-secret")));
        assert_eq!(cfg.max_served_metadata_bytes, 1 << 20);
        assert_eq!(cfg.max_response_bytes, 4 << 20);
        assert!(cfg.poll_interval.is_zero());
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("pa55")
                && !shown.contains("legacy-secret")
                && shown.contains("bus:***@cache"),
            "{shown}"
        );
        let both = Cli::try_parse_from([
            "hotplane",
            "--bus-secret",
            "a",
            "--reload-message-secret",
            "b",
        ])
        .expect("parses");
        assert!(both.config.validate().is_err(), "two different secrets");
        assert!(Cli::try_parse_from(["hotplane", "--bus-secret", ""]).is_err());
    }

    #[test]
    fn debug_redacts_the_database_password() {
        let cfg = Config::for_database("postgres://app:hunter2@db/x");
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("app:***@db"),
            "{shown}"
        );
    }
}

//! Live config: the settings that change at run time, held so that every reader sees one
//! consistent set with one atomic load, and the one function that re-reads the config file.
//!
//! **What it owns.** The runtime [`Settings`] (log filter, normalizer, learning rules, poll
//! interval, fleet heartbeat and TTL, per-caller rate limits) behind one `ArcSwap`: MatchPattern and LearnPattern load
//! the whole set once per request, lock-free, so a request never mixes an old threshold with a
//! new normalizer. Tasks that sleep on a setting (the backstop poll, the fleet heartbeat) follow
//! a `watch` channel and pick up a new value without a restart. The log filter goes through the
//! `tracing-subscriber` reload handle ([`crate::telemetry::set_filter`]).
//!
//! **Reload.** [`LiveConfig::reload`] (called by `Reload(TARGET_CONFIG)` and by SIGHUP) reads
//! and checks the whole file first; any problem rejects it whole, names every key at fault,
//! and changes nothing. A valid file is swapped in at once; keys that only apply at start are
//! reported as needing a restart (and keep their running value).
//!
//! **Normalization.** The served lookup keys are the stored `normalized_pattern` column: every
//! row was keyed by the normalizer of whoever learned it (this replica, its peers, the legacy
//! writer), and a query matches only if the running normalizer produces the same key. So a
//! profile or stop-word change is applied live only when it re-keys no served pattern (every
//! served row whose key the old normalizer reproduces, the new one reproduces too); otherwise
//! the file is rejected with the rows it would break. Re-keying in memory instead would make this
//! replica's keys disagree with the stored column its peers serve and with what it learns, and a
//! restart would not help either: the rows themselves must change first.
//!
//! It must never block the match path: readers only ever do `ArcSwap::load`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::{
    auth::{RateLimit, RateLimiter},
    bus::fleet::FleetTiming,
    config::{
        self, Config,
        file::{FileError, KEYS, KeyError},
        source::Pinned,
    },
    engine::Source,
    learn::LearnRules,
    normalize::Normalizer,
    snapshot::PatternSnapshot,
};

/// The settings that change at run time: one consistent set.
#[derive(Debug)]
pub struct Settings {
    /// The log filter in effect (`RUST_LOG` syntax).
    pub log_filter: String,
    /// The query normalizer.
    pub normalizer: Normalizer,
    /// The learning rules.
    pub rules: LearnRules,
    /// Backstop poll interval (zero: disabled).
    pub poll_interval: Duration,
    /// Fleet heartbeat and TTL.
    pub fleet: FleetTiming,
    /// Per-caller limit of state-changing RPCs.
    pub rate_limit: RateLimit,
    /// The effective configuration these settings come from (for diffs and status).
    pub config: Config,
}

impl Settings {
    /// The runtime settings of an effective configuration.
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            log_filter: c.log_filter.clone(),
            normalizer: Normalizer::new(c.normalize_profile, c.stop_words.clone()),
            rules: LearnRules {
                min_confidence: c.learn_min_confidence,
                min_chars: c.learn_min_chars,
                auto_approve: c.learn_auto_approve,
            },
            poll_interval: c.poll_interval,
            fleet: FleetTiming {
                heartbeat: c.fleet_heartbeat,
                ttl: c.fleet_ttl,
            },
            rate_limit: RateLimit {
                per_second: c.auth.admin_rate,
                burst: c.auth.admin_burst,
            },
            config: c.clone(),
        }
    }
}

/// One generation of the config: which file content is in effect.
#[derive(Debug, Clone)]
pub struct ConfigGeneration {
    /// 1 for the file read at start, +1 for every reload that changed the file's content.
    pub number: u64,
    /// xxh3 hash of the file's bytes.
    pub content_hash: String,
    /// When it took effect.
    pub loaded_at: DateTime<Utc>,
    /// What asked for it.
    pub source: Source,
    /// How long reading and checking took.
    pub load_duration: Duration,
    /// Keys the file sets.
    pub keys_set: usize,
}

/// One key whose value changes (or would change after a restart): old → new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Dotted key path.
    pub key: &'static str,
    /// The value in effect before (restart-only keys: the value running since start).
    pub old: String,
    /// The value in the file.
    pub new: String,
    /// Restart-only keys: why the new value waits for a restart.
    pub restart_reason: &'static str,
}

/// What a reload did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Generation before the reload (0: none).
    pub generation_before: u64,
    /// Generation after it (the same when the file did not change or `validate_only`).
    pub generation_after: u64,
    /// Live keys that changed, now in effect (with `validate_only`: that would change).
    pub applied: Vec<Change>,
    /// Keys whose file value differs from the running one and that need a restart.
    pub restart_required: Vec<Change>,
    /// The generation in effect after the reload.
    pub current: Arc<ConfigGeneration>,
    /// The file read.
    pub path: PathBuf,
    /// Keys the file sets that a flag or environment variable pins: ignored, reported.
    pub pinned: Vec<Pinned>,
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// Started without `--config`.
    #[error(
        "hotplane was started without a config file: start it with --config FILE \
         (or HOTPLANE_CONFIG) to change settings at run time"
    )]
    NoFile,
    /// The file could not be read.
    #[error("{0}; the running config is unchanged")]
    Read(String),
    /// The file is invalid: every problem, by key.
    #[error("invalid config file {}: {}; the running config is unchanged", .path.display(), config::file::join(.errors))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem.
        errors: Vec<KeyError>,
    },
}

/// Load health of the config target, for status.
#[derive(Debug, Clone, Default)]
pub struct ConfigHealth {
    /// When a reload last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last failed reload's error, cleared by a success.
    pub last_error: Option<String>,
    /// When the last reload failed.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Reloads attempted (the start included).
    pub loads_total: u64,
    /// Reloads failed.
    pub failures_total: u64,
}

/// Bookkeeping behind a std `Mutex`: a few field updates, never held across an `.await`.
#[derive(Debug, Default)]
struct Book {
    generation: Option<Arc<ConfigGeneration>>,
    health: ConfigHealth,
    restart_pending: Vec<Change>,
    /// Pinned keys the file in effect sets (ignored).
    pinned: Vec<Pinned>,
}

/// The live config of one process.
#[derive(Debug)]
pub struct LiveConfig {
    /// The config file, if any.
    path: Option<PathBuf>,
    /// Flags, environment and defaults: what the file is overlaid on, every time.
    base: Config,
    /// The effective config at start: what restart-only keys run with.
    started: Config,
    /// The runtime settings; one atomic load for readers.
    settings: ArcSwap<Settings>,
    /// The poll interval, for the backstop task.
    poll: watch::Sender<Duration>,
    /// Fleet heartbeat and TTL, for the fleet task.
    fleet: watch::Sender<FleetTiming>,
    /// The auth layer's rate limiter, once the server has one.
    limiter: std::sync::OnceLock<Arc<RateLimiter>>,
    book: std::sync::Mutex<Book>,
    /// Serializes reloads (gRPC and SIGHUP at once), held across the file read so an older read
    /// never overwrites a newer one.
    reloading: tokio::sync::Mutex<()>,
}

/// The effective config at start: `base` with the config file over it, checked.
pub fn startup_config(base: &Config) -> Result<(Config, Option<config::file::Loaded>), FileError> {
    let Some(path) = &base.config_file else {
        return Ok((base.clone(), None));
    };
    let loaded = config::file::read(path)?;
    let effective =
        config::file::effective(base, &loaded.file).map_err(|errors| FileError::Invalid {
            path: path.clone(),
            errors,
        })?;
    Ok((effective, Some(loaded)))
}

impl LiveConfig {
    /// The live config of a process started with `effective` (from [`startup_config`]) over
    /// `base`.
    pub fn new(base: Config, effective: Config, loaded: Option<&config::file::Loaded>) -> Self {
        let settings = Settings::from_config(&effective);
        let book = Book {
            generation: loaded.map(|l| {
                Arc::new(ConfigGeneration {
                    number: 1,
                    content_hash: l.content_hash.clone(),
                    loaded_at: Utc::now(),
                    source: Source::Startup,
                    load_duration: Duration::ZERO,
                    keys_set: l.keys_set,
                })
            }),
            health: ConfigHealth {
                last_success_at: loaded.map(|_| Utc::now()),
                loads_total: u64::from(loaded.is_some()),
                ..ConfigHealth::default()
            },
            restart_pending: Vec::new(),
            pinned: loaded.map_or_else(Vec::new, |l| config::file::pinned_in(&base, &l.file)),
        };
        for pin in &book.pinned {
            warn_pinned(pin);
        }
        LiveConfig {
            path: base.config_file.clone(),
            poll: watch::channel(settings.poll_interval).0,
            fleet: watch::channel(settings.fleet).0,
            limiter: std::sync::OnceLock::new(),
            settings: ArcSwap::from_pointee(settings),
            started: effective,
            base,
            book: std::sync::Mutex::new(book),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings in effect: one atomic load, no lock.
    pub fn settings(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.settings.load()
    }

    /// Gives the live config the rate limiter of the auth layer: `limits.*` changes apply to it.
    pub fn attach_rate_limiter(&self, limiter: Arc<RateLimiter>) {
        let _ = self.limiter.set(limiter);
    }

    /// Follows the poll interval.
    pub fn poll_interval(&self) -> watch::Receiver<Duration> {
        self.poll.subscribe()
    }

    /// Follows the fleet heartbeat and TTL.
    pub fn fleet_timing(&self) -> watch::Receiver<FleetTiming> {
        self.fleet.subscribe()
    }

    /// The config file, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// The generation in effect (`None` without a config file).
    pub fn generation(&self) -> Option<Arc<ConfigGeneration>> {
        self.book().generation.clone()
    }

    /// Reload health.
    pub fn health(&self) -> ConfigHealth {
        self.book().health.clone()
    }

    /// Keys set in the file to a value other than the running one, waiting for a restart.
    pub fn restart_pending(&self) -> Vec<Change> {
        self.book().restart_pending.clone()
    }

    /// Keys the file sets that a flag or environment variable pins (the file's value ignored).
    pub fn pinned(&self) -> Vec<Pinned> {
        self.book().pinned.clone()
    }

    /// Counts a reload refused before the file was read (a TLS file or the tokens file that
    /// does not load) in the reload health, like a refused file.
    pub fn record_failure(&self, error: &str) {
        let mut book = self.book();
        book.health.loads_total += 1;
        book.health.failures_total += 1;
        book.health.consecutive_failures += 1;
        book.health.last_error = Some(error.to_owned());
        book.health.last_error_at = Some(Utc::now());
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // Status stays readable even if a holder panicked.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the config file and, unless `validate_only`, applies it: the one path for
    /// `Reload(TARGET_CONFIG)` and SIGHUP. `served` is the pattern snapshot a normalizer change
    /// is checked against. On any error nothing changes.
    pub async fn reload(
        &self,
        source: Source,
        validate_only: bool,
        served: Arc<PatternSnapshot>,
    ) -> Result<Outcome, ReloadError> {
        let path = self.path.clone().ok_or(ReloadError::NoFile)?;
        let _one_at_a_time = self.reloading.lock().await;
        let started = std::time::Instant::now();
        let result = self.build(&path, served).await;
        if validate_only {
            return result.map(|(outcome, _)| outcome);
        }
        let mut book = self.book();
        book.health.loads_total += 1;
        let (mut outcome, next) = match result {
            Ok(ok) => ok,
            Err(e) => {
                book.health.failures_total += 1;
                book.health.consecutive_failures += 1;
                book.health.last_error = Some(e.to_string());
                book.health.last_error_at = Some(Utc::now());
                return Err(e);
            }
        };
        let (settings, hash, keys_set) = next;
        let old = self.settings.load_full();
        if settings.log_filter != old.log_filter
            && let Err(e) = crate::telemetry::set_filter(&settings.log_filter)
        {
            // Checked already; only a vanished subscriber gets here. Keep going: the rest of
            // the file is good and status shows the filter asked for.
            tracing::warn!(error = %e, "could not apply the new log filter");
        }
        self.poll
            .send_if_modified(|v| replace(v, settings.poll_interval));
        self.fleet.send_if_modified(|v| replace(v, settings.fleet));
        if settings.rate_limit != old.rate_limit
            && let Some(limiter) = self.limiter.get()
        {
            limiter.set_limit(settings.rate_limit);
        }
        self.settings.store(Arc::new(settings));
        let changed_file = book.generation.as_ref().map(|g| &g.content_hash) != Some(&hash);
        if changed_file {
            let number = book.generation.as_ref().map_or(0, |g| g.number) + 1;
            book.generation = Some(Arc::new(ConfigGeneration {
                number,
                content_hash: hash,
                loaded_at: Utc::now(),
                source,
                load_duration: started.elapsed(),
                keys_set,
            }));
        }
        book.health.last_success_at = Some(Utc::now());
        book.health.last_error = None;
        book.health.consecutive_failures = 0;
        book.restart_pending = outcome.restart_required.clone();
        book.pinned = outcome.pinned.clone();
        for pin in &book.pinned {
            warn_pinned(pin);
        }
        if let Some(g) = &book.generation {
            outcome.generation_after = g.number;
            outcome.current = Arc::clone(g);
        }
        Ok(outcome)
    }

    /// Reads, checks and diffs the file; returns the outcome (as if applied) and what to swap in.
    async fn build(
        &self,
        path: &std::path::Path,
        served: Arc<PatternSnapshot>,
    ) -> Result<(Outcome, (Settings, String, usize)), ReloadError> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| ReloadError::Read(format!("reading {}: {e}", path.display())))?;
        let invalid = |errors| ReloadError::Invalid {
            path: path.to_owned(),
            errors,
        };
        let loaded = config::file::parse(&text).map_err(invalid)?;
        let next = config::file::effective(&self.base, &loaded.file).map_err(invalid)?;
        let old = self.settings.load_full();
        let settings = Settings::from_config(&next);
        check_rekey(&old, &settings, &next, served)
            .await
            .map_err(|e| invalid(vec![e]))?;

        let mut applied = Vec::new();
        let mut restart_required = Vec::new();
        for key in KEYS {
            let new = (key.show)(&next);
            if key.live {
                let before = (key.show)(&old.config);
                if before != new {
                    applied.push(Change {
                        key: key.path,
                        old: before,
                        new,
                        restart_reason: "",
                    });
                }
            } else {
                let running = (key.show)(&self.started);
                if running != new {
                    restart_required.push(Change {
                        key: key.path,
                        old: running,
                        new,
                        restart_reason: key.restart_hint,
                    });
                }
            }
        }
        let current = self.generation().unwrap_or_else(|| {
            Arc::new(ConfigGeneration {
                number: 0,
                content_hash: String::new(),
                loaded_at: Utc::now(),
                source: Source::Startup,
                load_duration: Duration::ZERO,
                keys_set: 0,
            })
        });
        let outcome = Outcome {
            generation_before: current.number,
            generation_after: current.number,
            applied,
            restart_required,
            current,
            path: path.to_owned(),
            pinned: config::file::pinned_in(&self.base, &loaded.file),
        };
        Ok((outcome, (settings, loaded.content_hash, loaded.keys_set)))
    }
}

/// A pinned key the file sets is worth a warning on every read of the file: the operator who
/// edited the file expects it to apply.
fn warn_pinned(pin: &Pinned) {
    tracing::warn!(
        key = pin.key,
        file_value = %pin.file_value,
        value = %pin.value,
        pinned_by = %pin.by,
        "config file key ignored: a flag or environment variable sets it (flag > env > file); \
         unset {} to let the file decide",
        pin.by
    );
}

/// Sets `slot` to `value`, saying whether it changed (for `watch::Sender::send_if_modified`).
fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

/// Most served rows named in a refused normalizer change.
const REKEY_EXAMPLES: usize = 3;

/// Refuses a normalizer change that would give a served pattern another key than the stored
/// one (see the module docs). Runs on the blocking pool: it normalizes every served row twice.
async fn check_rekey(
    old: &Settings,
    new: &Settings,
    next: &Config,
    served: Arc<PatternSnapshot>,
) -> Result<(), KeyError> {
    let key = if old.config.normalize_profile != next.normalize_profile {
        "normalize.profile"
    } else if old.config.stop_words != next.stop_words {
        "normalize.stop_words"
    } else {
        return Ok(());
    };
    let (before, after) = (old.normalizer.clone(), new.normalizer.clone());
    let found = tokio::task::spawn_blocking(move || {
        let mut count = 0usize;
        let mut examples = Vec::new();
        for row in served.rows() {
            let stored = row.normalized_pattern();
            if before.normalize(row.pattern()) != stored {
                continue; // keyed by some other normalizer already; this change does not break it
            }
            let rekeyed = after.normalize(row.pattern());
            if rekeyed != stored {
                count += 1;
                if examples.len() < REKEY_EXAMPLES {
                    examples.push(format!(
                        "id {} {stored:?} would become {rekeyed:?}",
                        row.id()
                    ));
                }
            }
        }
        (count, examples)
    })
    .await
    .map_err(|e| KeyError {
        key: key.to_owned(),
        reason: format!("checking the served patterns failed: {e}"),
    })?;
    match found {
        (0, _) => Ok(()),
        (count, examples) => Err(KeyError {
            key: key.to_owned(),
            reason: format!(
                "would change the lookup key of {count} served pattern(s) ({}); lookups compare \
                 against the stored normalized_pattern, so queries would stop matching them. \
                 Re-learn or delete those patterns first",
                examples.join(", ")
            ),
        }),
    }
}

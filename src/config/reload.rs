//! The config reload, one function for `Reload(TARGET_CONFIG)` and SIGHUP: re-reads the config
//! file through the live config together with the files it names (TLS certificates, tokens),
//! announces the reload, records it in the audit trail and logs it. It answers in config terms
//! ([`Reloaded`], [`ConfigReloadError`]); the API translates those into a response or a status.
//!
//! The rules of what changes live are [`super::live`]'s; the re-read files are
//! [`super::reload_files`]'s.

use std::{sync::Arc, time::Instant};

use tracing::{info, instrument, warn};

use super::{
    live::{Change, ConfigGeneration, LiveConfig, Outcome, ReloadError},
    reload_files,
};
use crate::{
    audit::{self, Auditor, Entry, Origin},
    auth::Security,
    engine::{Engine, Source},
};

/// What a reload announces, for WatchStatus (not sent for `validate_only`).
#[derive(Debug, Clone)]
pub enum ConfigEvent {
    /// The file is being re-read.
    Started,
    /// The file was applied; the generation now in effect.
    Succeeded(Arc<ConfigGeneration>),
    /// The reload was rejected; nothing changed.
    Failed(String),
}

/// Where [`ConfigEvent`]s go.
pub type ConfigEventSink = Arc<dyn Fn(ConfigEvent) + Send + Sync>;

/// What an accepted reload did.
#[derive(Debug)]
pub enum Reloaded {
    /// The config file was read and applied (or, with `validate_only`, checked); the re-read
    /// files' changes are in `applied`, as keys.
    File(Outcome),
    /// Without a config file, only the TLS files and the tokens file were re-read.
    FilesOnly(Vec<Change>),
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigReloadError {
    /// A TLS file or the tokens file does not load.
    #[error("{0} (the running credentials, certificates and config are unchanged)")]
    Files(String),
    /// The config file is missing, unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ReloadError),
}

/// The reload (cheap to clone): what it reads, where it reports.
#[derive(Clone)]
pub struct ConfigReloader {
    live: Arc<LiveConfig>,
    security: Security,
    engine: Engine,
    audit: Auditor,
    events: ConfigEventSink,
}

impl std::fmt::Debug for ConfigReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigReloader")
            .field("path", &self.live.path())
            .finish_non_exhaustive()
    }
}

impl ConfigReloader {
    /// A reload of `live` and of `security`'s files. A normalizer change is checked against
    /// what `engine` serves; reloads are recorded on `audit` and announced on `events`.
    pub fn new(
        live: Arc<LiveConfig>,
        security: Security,
        engine: Engine,
        audit: Auditor,
        events: ConfigEventSink,
    ) -> Self {
        ConfigReloader {
            live,
            security,
            engine,
            audit,
            events,
        }
    }

    /// Re-reads the config file and the files it names and applies them (or, with
    /// `validate_only`, only reports what would change). On any error nothing changes: the
    /// failure is logged with every key at fault, counted in the config's health, announced,
    /// and recorded in the audit trail as `caller` (neither for `validate_only`).
    #[instrument(skip(self, reason), fields(target = "config", source = source.as_str()))]
    pub async fn reload(
        &self,
        source: Source,
        validate_only: bool,
        caller: String,
        reason: &str,
    ) -> Result<Reloaded, ConfigReloadError> {
        let started = Instant::now();
        let announce = |event: ConfigEvent| {
            if !validate_only {
                (self.events)(event);
            }
        };
        let record = |generations: (u64, u64), outcome: Result<(), String>| {
            if !validate_only {
                self.record(&caller, source, reason, generations, outcome, started);
            }
        };
        let unchanged = || {
            let now = self.live.generation().map_or(0, |g| g.number);
            (now, now)
        };
        if self.live.path().is_some() {
            announce(ConfigEvent::Started);
        }
        // The TLS files and the tokens file are re-read with the config file, and checked
        // before anything changes.
        let files = match reload_files::prepare(&self.security) {
            Ok(files) => files,
            Err(e) => {
                let e = ConfigReloadError::Files(e);
                warn!(error = %e, validate_only, "config reload rejected; the running config is unchanged");
                announce(ConfigEvent::Failed(e.to_string()));
                if !validate_only {
                    self.live.record_failure(&e.to_string());
                }
                record(unchanged(), Err(e.to_string()));
                return Err(e);
            }
        };
        let served = Arc::clone(&self.engine.current().snapshot);
        match self.live.reload(source, validate_only, served).await {
            Ok(mut outcome) => {
                outcome
                    .applied
                    .extend(reload_files::install(&self.security, files, validate_only));
                let changed: Vec<&str> = outcome.applied.iter().map(|c| c.key).collect();
                let restart: Vec<&str> = outcome.restart_required.iter().map(|c| c.key).collect();
                info!(
                    generation = outcome.generation_after,
                    validate_only,
                    duration_ms = started.elapsed().as_millis() as u64,
                    ?changed,
                    ?restart,
                    "config reloaded"
                );
                if !restart.is_empty() && !validate_only {
                    warn!(keys = ?restart, "config keys changed that only take effect after a restart");
                }
                announce(ConfigEvent::Succeeded(Arc::clone(&outcome.current)));
                record(
                    (outcome.generation_before, outcome.generation_after),
                    Ok(()),
                );
                Ok(Reloaded::File(outcome))
            }
            // Without a config file, the TLS files and the tokens file are still re-read.
            Err(ReloadError::NoFile) if files.any() => Ok(Reloaded::FilesOnly(
                reload_files::install(&self.security, files, validate_only),
            )),
            Err(ReloadError::NoFile) => {
                warn!(error = %ReloadError::NoFile, "config reload rejected");
                Err(ReloadError::NoFile.into())
            }
            Err(e) => {
                // The live config counted the failure in its health already.
                warn!(error = %e, validate_only, "config reload rejected; the running config is unchanged");
                announce(ConfigEvent::Failed(e.to_string()));
                record(unchanged(), Err(e.to_string()));
                Err(e.into())
            }
        }
    }

    /// Records an attempted reload (not `validate_only`, not without a file): applied (the
    /// generations are the config's; the same before and after is a no-op), or rejected.
    fn record(
        &self,
        caller: &str,
        source: Source,
        reason: &str,
        generations: (u64, u64),
        outcome: Result<(), String>,
        started: Instant,
    ) {
        let origin = Origin {
            caller: caller.to_owned(),
            action: audit::action::CONFIG_RELOAD,
            target: "config".into(),
        };
        let result = outcome.map(|()| match generations.0 == generations.1 {
            true => audit::Outcome::Noop,
            false => audit::Outcome::Ok,
        });
        self.audit.record(Entry::finished(
            origin,
            source,
            reason,
            generations,
            result,
            started.elapsed(),
        ));
    }
}

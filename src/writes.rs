//! Pattern writes (LearnPattern, ApprovePattern, DisablePattern, DeletePattern): the one owner
//! of a write's sequence. The API turns a request into a call here and the answer back into a
//! response; what happens between is here, always in this order:
//!
//! 1. the learning rules (learns only), with the rules and the normalizer of one config
//!    generation and the column limits of the store the row goes to;
//! 2. the store write;
//! 3. the engine serves the written id (`Scope::Ids`, [`Source::Write`], audited under the
//!    caller's origin), so the caller is answered only once its change is served here;
//! 4. the write is announced on the status stream ([`WriteEvent`], after the reload events of
//!    step 3);
//! 5. the change is queued for the other replicas on the bus (they reload what this replica
//!    already serves; a full queue is reported, never waited for).
//!
//! A write refused at step 1 or 2 changed nothing. One that fails at step 3 is stored but not
//! yet served here: the next load of any kind (another write, the bus, the backstop poll)
//! serves it, and the error says so.

use std::sync::Arc;

use tracing::info;

use crate::{
    audit::{self, Origin},
    bus::Bus,
    config::live::LiveConfig,
    engine::{Engine, Generation, LoadError, LoadRequest, Scope, Source},
    learn::{Proposal, Violation},
    model::{PatternRow, PatternStatus},
    store::{LearnOutcome, StoreError},
};

/// Which write an event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A row was learned (inserted or updated).
    Learned,
    /// A row was approved.
    Approved,
    /// A row was disabled.
    Disabled,
    /// A row was deleted.
    Deleted,
}

/// A served write, announced on the status stream.
#[derive(Debug, Clone)]
pub struct WriteEvent {
    /// What was written.
    pub kind: WriteKind,
    /// The row.
    pub id: i64,
    /// The generation that serves the write, while it is still the current one (a later load
    /// may already have replaced it: then `None`, and that load's own event says more).
    pub generation: Option<Arc<Generation>>,
}

/// Where [`WriteEvent`]s go (the status stream's hub, translated in `api::events`).
pub type WriteEventSink = Arc<dyn Fn(WriteEvent) + Send + Sync>;

/// What every write that was served answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The generation that serves the write.
    pub generation: u64,
    /// Why the announcement to the other replicas was not queued (`None`: queued, or no bus).
    /// The write stands either way.
    pub publish_error: Option<String>,
}

/// A learned row.
#[derive(Debug)]
pub struct Learned {
    /// The row as stored, and whether it was created or updated.
    pub outcome: LearnOutcome,
    /// Whether the row is served (it may be stored and yet not served: pending, or an older
    /// row with the same normalized text wins).
    pub served: bool,
    /// The serve and the announcement.
    pub write: Served,
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The learning rules refuse the proposal (the field it names is the request's). Nothing
    /// was written.
    #[error(transparent)]
    Rejected(#[from] Violation),
    /// No row has this id. Nothing was written.
    #[error("pattern {0} does not exist")]
    NotFound(i64),
    /// The store refused or failed the write. Nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The write is stored but serving it failed; the next load serves it.
    #[error(transparent)]
    Serve(#[from] LoadError),
}

/// The pattern writes (cheap to share): the engine that serves them, the live config whose
/// rules a learn passes, the bus that tells the other replicas, and where events go.
#[derive(Clone)]
pub struct PatternWrites {
    engine: Engine,
    live: Arc<LiveConfig>,
    bus: Bus,
    events: WriteEventSink,
}

impl std::fmt::Debug for PatternWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternWrites").finish_non_exhaustive()
    }
}

impl PatternWrites {
    /// Writes served by `engine`, checked by `live`'s rules, announced on `bus` and `events`.
    pub fn new(
        engine: Engine,
        live: Arc<LiveConfig>,
        bus: Bus,
        events: WriteEventSink,
    ) -> PatternWrites {
        PatternWrites {
            engine,
            live,
            bus,
            events,
        }
    }

    /// Learns `proposal` for `caller`: checks it, upserts it and serves it.
    pub async fn learn(&self, proposal: Proposal, caller: String) -> Result<Learned, WriteError> {
        // One load: the threshold and the normalizer of one config generation; the column
        // limits of the store the row goes to.
        let store = self.engine.store();
        let new = {
            let settings = self.live.settings();
            settings
                .rules
                .check(proposal, &settings.normalizer, &store.column_limits())?
        };
        let outcome = store.learn(&new).await?;
        let id = outcome.row.id;
        info!(
            id,
            normalized = %outcome.row.normalized_pattern,
            created = outcome.created,
            updated = outcome.updated,
            "pattern learned"
        );
        let origin = Origin::pattern(caller, audit::action::PATTERN_LEARN, id);
        let write = self.serve(WriteKind::Learned, id, "learn", origin).await?;
        let served = self.engine.current().snapshot.is_winner(id);
        Ok(Learned {
            outcome,
            served,
            write,
        })
    }

    /// Approves (`enabled`) or disables row `id` for `caller`; the row as stored after it.
    pub async fn set_status(
        &self,
        id: i64,
        enabled: bool,
        reason: &str,
        caller: String,
    ) -> Result<(PatternRow, Served), WriteError> {
        let (status, kind, action) = if enabled {
            let action = audit::action::PATTERN_APPROVE;
            (PatternStatus::Approved, WriteKind::Approved, action)
        } else {
            let action = audit::action::PATTERN_DISABLE;
            (PatternStatus::Disabled, WriteKind::Disabled, action)
        };
        let row = self
            .engine
            .store()
            .set_status(id, status.clone(), enabled)
            .await?
            .ok_or(WriteError::NotFound(id))?;
        info!(
            id,
            status = status.as_str(),
            reason,
            "pattern status changed"
        );
        let origin = Origin::pattern(caller, action, id);
        let write = self.serve(kind, id, reason, origin).await?;
        Ok((row, write))
    }

    /// Deletes row `id` for `caller`.
    pub async fn delete(
        &self,
        id: i64,
        reason: &str,
        caller: String,
    ) -> Result<Served, WriteError> {
        if !self.engine.store().delete(id).await? {
            return Err(WriteError::NotFound(id));
        }
        info!(id, reason, "pattern deleted");
        let origin = Origin::pattern(caller, audit::action::PATTERN_DELETE, id);
        self.serve(WriteKind::Deleted, id, reason, origin).await
    }

    /// Steps 3 to 5: serves the stored write of `id`, announces it, and queues it for the
    /// other replicas.
    async fn serve(
        &self,
        kind: WriteKind,
        id: i64,
        reason: &str,
        origin: Origin,
    ) -> Result<Served, WriteError> {
        let (report, _) = self
            .engine
            .reload(
                LoadRequest {
                    scope: Scope::Ids(vec![id]),
                    source: Source::Write,
                    reason: reason.to_owned(),
                },
                Some(origin),
            )
            .await?;
        let generation = report.generation_after;
        let current = self.engine.current();
        (self.events)(WriteEvent {
            kind,
            id,
            generation: (current.number == generation).then(|| Arc::clone(&current)),
        });
        Ok(Served {
            generation,
            publish_error: announce_served(&self.bus, &self.engine, Some(id)).await,
        })
    }
}

/// Queues the announcement of a change this replica has applied and serves (published after the
/// answer, so a slow Redis never delays it), and says why when it could not: the queue is full.
/// `None` when queued or when there is no bus. The bus counts and logs failures, later ones
/// too; the change stands either way.
pub async fn announce_served(
    bus: &Bus,
    engine: &Engine,
    pattern_id: Option<i64>,
) -> Option<String> {
    let revision = engine.current().store_revision;
    bus.announce(pattern_id, revision)
        .await
        .err()
        .map(|e| e.to_string())
}

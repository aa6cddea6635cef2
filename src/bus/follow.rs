//! Following broadcast rollbacks: another replica rolled back and announced the content hash it
//! serves now; this one serves its retained generation with that hash, pinned, through the
//! engine ([`Engine::rollback_to_hash`]).
//!
//! A rollback to the content served already is not followed with a pin (see `serves_already`).
//!
//! One task, fed by a watch channel from the subscriber (the latest ask wins: a burst of
//! rollbacks is followed to the last one, and the subscriber never waits for a rollback). A
//! replica that does not retain the content keeps serving what it serves: the refusal is
//! logged, counted in `GetStatus.bus`, reported in its fleet entry (so a fleet wait ends
//! without waiting for it) and announced on WatchStatus. It never crashes or retries.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use super::{BusEvent, Refusal, Shared};
use crate::{
    engine::{Engine, LoadError, LoadRequest, Scope, Source},
    snapshot::scheme,
};

/// A broadcast rollback to follow.
#[derive(Debug, Clone)]
pub(super) struct Ask {
    /// The content to serve.
    pub(super) content_hash: String,
    /// The scheme of `content_hash`, when the publisher said.
    pub(super) content_hash_scheme: Option<u32>,
    /// Who asked (shortened), for the generation's reason.
    pub(super) origin: String,
}

/// Follows asks until `stop` turns true.
pub(super) async fn run(
    shared: Arc<Shared>,
    engine: Engine,
    mut asks: watch::Receiver<Option<Ask>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = asks.changed() => if r.is_err() { return },
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
        let Some(ask) = asks.borrow_and_update().clone() else {
            continue;
        };
        if let Some(theirs) = ask.content_hash_scheme
            && theirs != scheme::CURRENT
        {
            // Our generations' hashes are of another scheme: none of them can be the one named.
            let error = format!(
                "the rollback names content hash {} of scheme {theirs}; this instance hashes \
                 with scheme {}, so it cannot tell which generation that is",
                ask.content_hash,
                scheme::CURRENT
            );
            refused(&shared, &engine, &ask, error);
            continue;
        }
        if serves_already(&engine, &ask.content_hash).await {
            shared.status().rollbacks_followed += 1;
            *shared.rollback_error() = None;
            info!(
                content_hash = %ask.content_hash,
                origin = %ask.origin,
                "a broadcast rollback asks for the content served already; not pinned"
            );
            continue;
        }
        let reason = format!("bus: rollback from {}", ask.origin);
        let by = crate::audit::Origin::reload(format!("bus:{}", ask.origin));
        match engine.rollback_to_hash(&ask.content_hash, reason, by).await {
            Ok(report) => {
                shared.status().rollbacks_followed += 1;
                *shared.rollback_error() = None;
                info!(
                    content_hash = %ask.content_hash,
                    origin = %ask.origin,
                    generation = report.generation_after,
                    "followed a broadcast rollback; pinned"
                );
            }
            Err(LoadError::Closed) => return,
            Err(e) => refused(&shared, &engine, &ask, e.to_string()),
        }
    }
}

/// Whether this replica serves `content_hash` already, once the requests queued before the
/// rollback arrived (a reload announced just before it) are served. Such a rollback changes
/// nothing and must not pin: pinning in place is invisible (the hash is public) and would hold
/// every later change until an explicit reload. An unpinned replica first catches up with the
/// store (a delta: one cheap query when nothing changed), so "served already" means the store
/// holds that content; a pinned one compares what it is pinned to.
async fn serves_already(engine: &Engine, content_hash: &str) -> bool {
    if engine.health().pinned.is_none() {
        // A failed catch-up (store down) leaves the comparison with what is served.
        let _ = engine
            .reload(
                LoadRequest {
                    scope: Scope::Delta,
                    source: Source::Bus,
                    reason: "bus: catching up before following a rollback".into(),
                },
                None,
            )
            .await;
    }
    engine.current().snapshot.content_hash() == content_hash
}

/// Records a rollback that could not be followed, everywhere an operator looks.
fn refused(shared: &Shared, engine: &Engine, ask: &Ask, error: String) {
    {
        let mut st = shared.status();
        st.rollbacks_failed += 1;
        st.last_rollback_error = Some(error.clone());
    }
    let generation = engine.current().number;
    *shared.rollback_error() = Some(Refusal {
        generation,
        content_hash: ask.content_hash.clone(),
        error: error.clone(),
    });
    warn!(
        content_hash = %ask.content_hash,
        origin = %ask.origin,
        error = %error,
        "could not follow a broadcast rollback: this replica keeps serving generation \
         {generation}. Roll it back by number (see GetStatus retained), or raise \
         --retain-generations"
    );
    shared.emit(BusEvent::RollbackFailed { error });
    shared.fleet_kick.notify_one();
}

//! The first pattern load of a process: retried with capped exponential backoff until it
//! succeeds, so a database that is briefly unreachable at start delays SERVING (health follows
//! the engine's readiness) instead of crashing the process. Ends early on `stop`.

use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use super::{Engine, LoadRequest, Scope, Source};

/// Runs the first load, retrying with capped exponential backoff until it succeeds: a database
/// that is briefly unreachable at start delays SERVING instead of crashing the process.
pub async fn run(engine: Engine, mut stop: watch::Receiver<bool>) {
    let mut backoff =
        crate::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        let delay = backoff.next_delay();
        let attempt = engine.reload(
            LoadRequest {
                scope: Scope::Full,
                source: Source::Startup,
                reason: "startup".into(),
            },
            None,
        );
        tokio::select! {
            r = attempt => match r {
                Ok(_) => return,
                Err(e) => warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "initial pattern load failed; still NOT_SERVING"),
            },
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
    }
}

//! `Reload(TARGET_BUS)`: the blue/green swap of the Redis connection, announced on the bus's
//! events (WatchStatus) and recorded in the audit trail by the bus itself.

use std::{sync::Arc, sync::atomic::Ordering, time::Instant};

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{Bus, BusError, BusEvent, Conn, subscriber};
use crate::audit::{self, Entry, Origin, Source};

/// Why `Reload(TARGET_BUS)` did not swap the connection. The current one keeps running.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SwapError {
    /// No Redis URL is configured: there is no bus to swap.
    #[error(
        "no Redis bus is configured: start hotplane with --redis-url (HOTPLANE_REDIS_URL); the \
         channel, secret and fleet settings are fixed at start"
    )]
    Disabled,
    /// The URL does not parse (or the CA file is unusable for it).
    #[error("{0}")]
    InvalidUrl(String),
    /// The new Redis could not be connected or subscribed to in time.
    #[error("the new Redis connection failed; the current one keeps running: {0}")]
    Failed(String),
    /// The process is stopping.
    #[error("the bus is shutting down; the current connection keeps running")]
    Stopping,
}

/// What a swap did.
#[derive(Debug, Clone)]
pub struct Swapped {
    /// The URL before, without password.
    pub previous_url: String,
    /// The URL now, without password.
    pub url: String,
}

impl Bus {
    /// Swaps the Redis connection to `redis_url` (the current URL when `None`) for `caller`,
    /// or with `validate_only` only checks that it connects and subscribes. A swap that was
    /// tried (not `validate_only`, not a malformed URL) is announced (`SwapStarted`, then
    /// `Swapped` or `SwapFailed`) and recorded in the audit trail; on any error the current
    /// connection keeps running.
    pub async fn swap(
        &self,
        redis_url: Option<&str>,
        validate_only: bool,
        caller: String,
        reason: &str,
    ) -> Result<Swapped, SwapError> {
        let shared = self.shared.as_ref().ok_or(SwapError::Disabled)?;
        let started = Instant::now();
        if !validate_only {
            shared.emit(BusEvent::SwapStarted);
        }
        let result = self.swap_connection(redis_url, validate_only).await;
        match &result {
            Ok(s) if !validate_only => {
                info!(from = %s.previous_url, to = %s.url, reason, "bus swapped");
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "bus swap refused; the current Redis connection keeps running")
            }
        }
        if validate_only {
            return result;
        }
        shared.emit(match &result {
            Ok(s) => BusEvent::Swapped {
                url: s.url.clone(),
                previous_url: s.previous_url.clone(),
            },
            Err(e) => BusEvent::SwapFailed {
                error: e.to_string(),
            },
        });
        // A malformed URL is refused before anything was tried: nothing to record.
        if !matches!(result, Err(SwapError::InvalidUrl(_))) {
            let origin = Origin {
                caller,
                action: audit::action::BUS_SWAP,
                target: "bus".into(),
            };
            let generation = shared.engine.current().number;
            shared.audit.record(Entry::finished(
                origin,
                Source::Grpc,
                reason,
                (generation, generation),
                result
                    .as_ref()
                    .map(|_| audit::Outcome::Ok)
                    .map_err(|e| e.to_string()),
                started.elapsed(),
            ));
        }
        result
    }

    /// Swaps the Redis connection blue/green (`Reload(TARGET_BUS)`): connects and subscribes to
    /// `redis_url` (the current URL when `None`), and only then hands it to the subscriber task,
    /// which moves the publisher and the fleet heartbeat to it, unsubscribes the old connection,
    /// handles what the old one had received, and closes it. With `validate_only`, the new
    /// connection is dropped once subscribed. On any error nothing has changed.
    async fn swap_connection(
        &self,
        redis_url: Option<&str>,
        validate_only: bool,
    ) -> Result<Swapped, SwapError> {
        let shared = self.shared.as_ref().ok_or(SwapError::Disabled)?;
        let _one_at_a_time = shared.swapping.lock().await;
        let old = shared.conn();
        let url = redis_url.unwrap_or(&old.url);
        let opts = &shared.opts;
        let conn = Conn::new(url, opts.ca_file.as_deref(), opts.timeout).map_err(|e| match e {
            BusError::Client { .. } | BusError::Url { .. } => SwapError::InvalidUrl(e.to_string()),
            BusError::CaFile { .. } => SwapError::Failed(e.to_string()),
        })?;
        let swapped = Swapped {
            previous_url: old.redacted(),
            url: conn.redacted(),
        };
        // From here until the old subscription is drained, messages may arrive on both.
        shared.overlap.store(!validate_only, Ordering::SeqCst);
        let subscribed = subscriber::connect(&conn.target, &opts.channel, opts.timeout)
            .await
            .map_err(|e| SwapError::Failed(format!("{}: {e}", conn.redacted())));
        let (pubsub, node) = match subscribed {
            Ok(p) if !validate_only => p,
            result => {
                shared.overlap.store(false, Ordering::SeqCst);
                return result.map(|_| swapped);
            }
        };
        let (done, confirmed) = oneshot::channel();
        let handover = subscriber::Handover {
            conn: Arc::new(conn),
            pubsub,
            node,
            done,
        };
        if shared.handovers.send(handover).await.is_err() {
            shared.overlap.store(false, Ordering::SeqCst);
            return Err(SwapError::Stopping);
        }
        confirmed.await.map_err(|_| SwapError::Stopping)?;
        shared.fleet_kick.notify_one();
        Ok(swapped)
    }
}

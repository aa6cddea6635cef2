//! Announcements leave after the answer: a write RPC queues its announcement here and answers
//! at once; one task publishes the queue in order over the current command connection.
//!
//! A slow or frozen Redis therefore costs a write nothing: each PUBLISH waits at most the bus
//! timeout on this task, never on a handler. The queue is bounded ([`CAPACITY`]); when it is
//! full the announcement is dropped, and a failed PUBLISH is not retried. Both are counted
//! (`GetStatus.bus.publishFailures`, `lastPublishError`) and logged, and neither loses the
//! change for good: the other replicas read the store after their next reconnect (catch-up) or
//! poll (`--poll-interval`). A queue left when the process stops is dropped for the same reason.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{PublishError, Shared, publisher::Announcement};

/// Most announcements waiting to be published.
pub(super) const CAPACITY: usize = 1024;

/// One queued announcement: what, and the store revision served when it was made.
type Item = (Announcement, i64);

/// The sending half: handlers queue announcements without waiting.
#[derive(Debug)]
pub(super) struct Outbox {
    tx: mpsc::Sender<Item>,
}

impl Outbox {
    /// The outbox and the queue for [`run`].
    pub(super) fn new() -> (Outbox, mpsc::Receiver<Item>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Outbox { tx }, rx)
    }

    /// Queues `what`; `Err` (counted on `shared`) when the queue is full or closed.
    pub(super) fn push(
        &self,
        shared: &Shared,
        what: Announcement,
        revision: i64,
    ) -> Result<(), PublishError> {
        let Err(e) = self.tx.try_send((what, revision)) else {
            return Ok(());
        };
        let reason = match e {
            mpsc::error::TrySendError::Full(_) => format!(
                "the announcement queue is full ({CAPACITY} waiting for a slow or unreachable \
                 Redis): dropped"
            ),
            mpsc::error::TrySendError::Closed(_) => "the bus is shutting down: dropped".into(),
        };
        let err = PublishError {
            channel: shared.opts.channel.clone(),
            reason,
        };
        {
            let mut st = shared.status();
            st.publish_failures += 1;
            st.last_publish_error = Some(err.reason.clone());
        }
        tracing::warn!(
            error = %err,
            "could not queue an announcement: the other replicas serve the change after their \
             next poll or catch-up. Check Redis (see GetStatus.bus)"
        );
        Err(err)
    }
}

/// Publishes queued announcements in order until `stop` turns true (each PUBLISH is bounded by
/// the bus timeout; its outcome is counted by `Shared::announce`).
pub(super) async fn run(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Item>,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            item = queue.recv() => match item {
                // The outcome is counted and logged there.
                Some((what, revision)) => tokio::select! {
                    _ = shared.announce(what, revision) => {}
                    () = &mut stopped => return,
                },
                None => return,
            },
            () = &mut stopped => return,
        }
    }
}

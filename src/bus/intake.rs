//! The bounded intake between a subscription and the message handler.
//!
//! redis-rs's PubSub connection hands every message it reads to an unbounded channel, so a
//! flood faster than the handler (JSON decoding, the signature, an engine request per message)
//! piles up there without limit, and the allocator keeps the memory afterwards. A forwarding
//! task drains that channel as fast as it fills, doing nothing but copy the payload into a queue
//! bounded by count ([`MAX_QUEUED`]) and bytes ([`MAX_QUEUED_BYTES`]). What does not fit is
//! dropped and counted; the handler learns how many were dropped with the next message it takes
//! (a drop only happens while the queue is full, so one always follows) and asks for one
//! catch-up delta in their place: the store, not the messages, decides what is served, so the
//! burst is coalesced into one read.
//!
//! A catch-up delta does not stand in for a command (`rollback`, `invalidate`): those ask for
//! something other than "read what changed". So a message that would be dropped and names one
//! of them goes to a second, small queue ([`MAX_COMMANDS`] messages of at most
//! [`MAX_COMMAND_BYTES`]), which the handler empties first; only when that is full too is a
//! command dropped (and counted as `overflow` like every drop). The check is a byte search, not
//! a parse: a message that hides the word (escaped) is treated as an ordinary one, which only
//! its own sender can arrange.
//!
//! At a connection swap the forwarder is stopped and gives the stream back, so the old
//! subscription's messages are handled in order: first the queue, then what is left in the
//! stream.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use redis::Msg;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_stream::{Stream, StreamExt};

/// Most messages waiting for the handler.
pub(super) const MAX_QUEUED: usize = 4096;

/// Most payload bytes waiting for the handler (a message alone is always let in; the handler
/// rejects one over the size limit).
pub(super) const MAX_QUEUED_BYTES: usize = 4 << 20;

/// Most commands kept aside while the main queue is full.
pub(super) const MAX_COMMANDS: usize = 64;

/// Largest command kept aside: larger ones are over the bus's message limit, and refused.
pub(super) const MAX_COMMAND_BYTES: usize = super::envelope::MAX_MESSAGE_BYTES;

/// Whether `payload` may be a `rollback` or `invalidate` message (see the module doc).
fn may_be_command(payload: &[u8]) -> bool {
    let has = |word: &[u8]| payload.windows(word.len()).any(|w| w == word);
    payload.len() <= MAX_COMMAND_BYTES && (has(b"\"rollback\"") || has(b"\"invalidate\""))
}

/// One message for the handler, with the number dropped before it (not yet reported).
pub(super) struct Taken {
    /// The payload.
    pub(super) payload: Vec<u8>,
    /// Messages dropped since the previous `Taken` because the queue was full.
    pub(super) dropped_before: u64,
}

/// Counters shared by the forwarder and the handler.
#[derive(Default)]
struct Counters {
    /// Payload bytes queued.
    bytes: AtomicUsize,
    /// Messages dropped and not yet reported.
    dropped: AtomicU64,
}

/// The handler's side: queued messages, and the forwarder to stop at a swap.
pub(super) struct Intake<S> {
    queue: mpsc::Receiver<Vec<u8>>,
    /// Commands that arrived while `queue` was full.
    commands: mpsc::Receiver<Vec<u8>>,
    counters: Arc<Counters>,
    /// Stops the forwarder, which then returns the stream.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<S>>,
}

impl<S> Intake<S>
where
    S: Stream<Item = Msg> + Unpin + Send + 'static,
{
    /// Starts forwarding `messages` into a bounded queue.
    pub(super) fn start(messages: S) -> Intake<S> {
        let (tx, queue) = mpsc::channel(MAX_QUEUED);
        let (command_tx, commands) = mpsc::channel(MAX_COMMANDS);
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(forward(
            messages,
            [tx, command_tx],
            Arc::clone(&counters),
            stopped,
        ));
        Intake {
            queue,
            commands,
            counters,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The next message; `None` once the subscription has ended and the queue is empty.
    pub(super) async fn next(&mut self) -> Option<Taken> {
        tokio::select! {
            biased;
            Some(command) = self.commands.recv() => Some(self.taken_command(command)),
            payload = self.queue.recv() => match payload {
                Some(payload) => Some(self.taken(payload)),
                // The forwarder is gone; commands it kept aside may remain.
                None => self.commands.try_recv().ok().map(|c| self.taken_command(c)),
            },
        }
    }

    /// Stops the forwarder and returns what it had queued, oldest first, and the stream with
    /// whatever it holds beyond that (`None` if the forwarder is gone).
    pub(super) async fn stop(mut self) -> (Vec<Taken>, Option<S>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stream = match self.task.take() {
            Some(task) => task.await.ok(),
            None => None,
        };
        let mut queued = Vec::new();
        while let Ok(command) = self.commands.try_recv() {
            queued.push(self.taken_command(command));
        }
        while let Ok(payload) = self.queue.try_recv() {
            queued.push(self.taken(payload));
        }
        (queued, stream)
    }

    /// A command kept aside: it was never in the byte count.
    fn taken_command(&self, payload: Vec<u8>) -> Taken {
        Taken {
            dropped_before: self.counters.dropped.swap(0, Ordering::Relaxed),
            payload,
        }
    }

    fn taken(&self, payload: Vec<u8>) -> Taken {
        self.counters
            .bytes
            .fetch_sub(payload.len(), Ordering::Relaxed);
        Taken {
            dropped_before: self.counters.dropped.swap(0, Ordering::Relaxed),
            payload,
        }
    }
}

impl<S> Drop for Intake<S> {
    fn drop(&mut self) {
        // The forwarder owns the subscription's stream: end it with the intake.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Moves payloads from `messages` into `tx` (commands that do not fit into `command_tx`) until
/// the stream ends, `tx`'s receiver is gone, or `stop` fires; returns the stream.
async fn forward<S>(
    mut messages: S,
    [tx, command_tx]: [mpsc::Sender<Vec<u8>>; 2],
    counters: Arc<Counters>,
    mut stop: oneshot::Receiver<()>,
) -> S
where
    S: Stream<Item = Msg> + Unpin,
{
    loop {
        let msg = tokio::select! {
            biased;
            _ = &mut stop => return messages,
            msg = messages.next() => msg,
        };
        let Some(msg) = msg else {
            return messages; // dropping `tx` tells the handler the subscription ended
        };
        let payload = msg.get_payload_bytes();
        let queued = counters.bytes.load(Ordering::Relaxed);
        if queued > 0 && queued + payload.len() > MAX_QUEUED_BYTES {
            overflow(payload, &command_tx, &counters);
            continue;
        }
        counters.bytes.fetch_add(payload.len(), Ordering::Relaxed);
        match tx.try_send(payload.to_vec()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(p)) => {
                counters.bytes.fetch_sub(p.len(), Ordering::Relaxed);
                overflow(&p, &command_tx, &counters);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return messages,
        }
    }
}

/// A message that does not fit: a command is kept aside if there is room, anything else is
/// dropped and counted.
fn overflow(payload: &[u8], command_tx: &mpsc::Sender<Vec<u8>>, counters: &Counters) {
    if may_be_command(payload) && command_tx.try_send(payload.to_vec()).is_ok() {
        return;
    }
    counters.dropped.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    fn msg(payload: &[u8]) -> Msg {
        Msg::from_owned_value(Value::Array(vec![
            Value::BulkString(b"message".to_vec()),
            Value::BulkString(b"ch".to_vec()),
            Value::BulkString(payload.to_vec()),
        ]))
        .expect("a message")
    }

    /// A flood nobody reads: the queue holds at most `MAX_QUEUED` messages, the rest are
    /// dropped and reported with the next message taken; all arrive in order.
    #[tokio::test]
    async fn a_flood_is_bounded_and_its_drops_are_reported() {
        let flood = 3 * MAX_QUEUED;
        let msgs: Vec<Msg> = (0..flood).map(|i| msg(i.to_string().as_bytes())).collect();
        let mut intake = Intake::start(tokio_stream::iter(msgs));
        // The stream ends after the flood: wait until the forwarder is done with it.
        while !intake.task.as_ref().expect("task").is_finished() {
            tokio::task::yield_now().await;
        }
        let first = intake.next().await.expect("a message");
        assert_eq!(first.payload, b"0");
        assert_eq!(first.dropped_before, (flood - MAX_QUEUED) as u64);
        let mut taken = 1;
        let mut last = first.payload;
        while let Some(t) = intake.next().await {
            assert_eq!(t.dropped_before, 0);
            assert!(
                String::from_utf8_lossy(&t.payload)
                    .parse::<usize>()
                    .expect("number")
                    > String::from_utf8_lossy(&last)
                        .parse::<usize>()
                        .expect("number")
            );
            last = t.payload;
            taken += 1;
        }
        assert_eq!(taken, MAX_QUEUED, "the queue's bound");
    }

    /// Commands in a flood are kept aside (up to their own bound) and handed over first; the
    /// reload messages around them are dropped and reported as before.
    #[tokio::test]
    async fn commands_in_a_flood_are_kept_aside() {
        let reload = br#"{"action":"reload","pattern_id":1}"#.to_vec();
        let rollback = br#"{"action":"rollback","to_generation":3}"#.to_vec();
        let invalidate = br#"{"action":"invalidate","pattern_id":7}"#.to_vec();
        let mut msgs = vec![msg(&reload); MAX_QUEUED];
        msgs.push(msg(&rollback));
        msgs.extend(vec![msg(&reload); 10]);
        msgs.push(msg(&invalidate));
        msgs.extend(vec![msg(&rollback); MAX_COMMANDS - 1]); // one more than fits aside
        let mut intake = Intake::start(tokio_stream::iter(msgs));
        while !intake.task.as_ref().expect("task").is_finished() {
            tokio::task::yield_now().await;
        }
        let first = intake.next().await.expect("a message");
        assert_eq!(first.payload, rollback, "commands kept aside come first");
        let second = intake.next().await.expect("a message");
        assert_eq!(second.payload, invalidate);
        let mut commands = 2;
        let mut dropped = first.dropped_before + second.dropped_before;
        let mut reloads = 0;
        while let Some(t) = intake.next().await {
            dropped += t.dropped_before;
            if t.payload == reload {
                reloads += 1;
            } else {
                commands += 1;
            }
        }
        assert_eq!(reloads, MAX_QUEUED);
        assert_eq!(commands, MAX_COMMANDS);
        assert_eq!(
            dropped,
            10 + 1,
            "the ten reloads and the one command that did not fit"
        );
    }

    #[test]
    fn only_commands_are_kept_aside() {
        assert!(may_be_command(br#"{"action": "rollback"}"#));
        assert!(may_be_command(br#"{"action":"invalidate","pattern_id":2}"#));
        assert!(!may_be_command(br#"{"action":"reload","pattern_id":2}"#));
        assert!(!may_be_command(br#"{"action":"rollbacks"}"#));
        let mut huge = br#"{"action":"rollback","x":""#.to_vec();
        huge.resize(MAX_COMMAND_BYTES + 1, b'x');
        assert!(
            !may_be_command(&huge),
            "over the bus's message limit anyway"
        );
    }

    /// The byte budget bounds a flood of large messages below the count bound; a single large
    /// message always gets in.
    #[tokio::test]
    async fn large_messages_are_bounded_by_bytes() {
        let big = vec![b'x'; 64 * 1024];
        let msgs: Vec<Msg> = (0..200).map(|_| msg(&big)).collect();
        let mut intake = Intake::start(tokio_stream::iter(msgs));
        while !intake.task.as_ref().expect("task").is_finished() {
            tokio::task::yield_now().await;
        }
        let mut taken = 0;
        while intake.next().await.is_some() {
            taken += 1;
        }
        assert_eq!(taken, MAX_QUEUED_BYTES / big.len());
    }

    /// Stopping gives back what was queued and the stream with the rest, in order.
    #[tokio::test]
    async fn stop_returns_the_queue_then_the_stream() {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let mut intake = Intake::start(stream);
        tx.send(msg(b"1")).expect("send");
        assert_eq!(intake.next().await.expect("first").payload, b"1");
        tx.send(msg(b"2")).expect("send");
        let (queued, stream) = intake.stop().await;
        let mut stream = stream.expect("the stream back");
        tx.send(msg(b"3")).expect("send");
        let mut rest: Vec<Vec<u8>> = queued.into_iter().map(|t| t.payload).collect();
        drop(tx);
        while let Some(m) = stream.next().await {
            rest.push(m.get_payload_bytes().to_vec());
        }
        assert_eq!(rest.concat(), b"23");
    }
}

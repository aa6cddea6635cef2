//! `watch`: WatchStatus as one line per event, until Ctrl-C (SIGINT), which ends it with exit 0.
//!
//! When the stream ends (the server's maximum stream age, a shutdown) or the connection drops,
//! it reconnects with a capped, jittered backoff ([`crate::retry::Backoff`]) and resumes after
//! the last event it printed (`after_event_id`), so nothing is missed or printed twice; the
//! server answers a resume it cannot serve with a `resync` snapshot. Event ids are numbered per
//! server process, so before resuming it asks GetStatus which instance answers: a different
//! one (the server restarted) starts again from a snapshot instead, since its ids would name
//! other events. A server that is not there when watch starts is an error (exit 3): it is more
//! likely a wrong address than a restart. Reconnect notices go to stderr.

use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tonic::{Code, Status};

use super::{
    Ctx,
    error::{CtlError, Exit, one_line},
    json::to_json,
    output::{self, drain_text, short},
    state::TargetArg,
};
use crate::{pb, retry::Backoff};

/// Options of `watch` (WatchStatusRequest).
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Only events about this target (repeat for several; default all).
    #[arg(long = "target", value_enum, value_name = "TARGET")]
    pub targets: Vec<TargetArg>,
    /// Only events of this kind, e.g. reload_succeeded (repeat for several; default all).
    #[arg(long = "kind", value_name = "KIND", value_parser = parse_kind)]
    pub kinds: Vec<i32>,
    /// Resume after this event id of the running server (0: start with a snapshot).
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub after_event_id: u64,
    /// Also print the periodic heartbeats (always printed with --json).
    #[arg(long)]
    pub heartbeats: bool,
}

/// An event kind by its name, with or without `EVENT_KIND_`, in any case.
fn parse_kind(text: &str) -> Result<i32, String> {
    let upper = text.trim().to_uppercase();
    let name = if upper.starts_with("EVENT_KIND_") {
        upper
    } else {
        format!("EVENT_KIND_{upper}")
    };
    pb::EventKind::from_str_name(&name)
        .map(|k| k as i32)
        .ok_or_else(|| {
            format!(
                "{text:?} is not an event kind (reload_succeeded, rollback, drain_changed, ...)"
            )
        })
}

/// Whether a failed call or stream is worth retrying: the server went away or is busy, not
/// a refusal that would be repeated.
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::Internal
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

/// `watch`.
pub async fn watch(ctx: &Ctx, a: WatchArgs) -> Result<Exit, CtlError> {
    // Listening before the first call, so a Ctrl-C at any moment ends the command cleanly.
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| CtlError::local(Exit::Failed, format!("listening for Ctrl-C: {e}")))?;
    tokio::select! {
        r = follow(ctx, a) => r,
        _ = interrupt.recv() => Ok(Exit::Ok),
    }
}

/// Where the watch is: the last event printed, the instance that numbered it, and how many
/// events were printed.
#[derive(Debug, Default)]
struct Position {
    last_id: u64,
    instance: Option<String>,
    printed: u64,
}

/// Why a stream ended early.
enum Stop {
    /// A call or the stream failed (retried when transient and the server was reached).
    Lost(Status),
    /// The output failed (or was closed): the watch ends.
    Output(CtlError),
}

impl From<Status> for Stop {
    fn from(s: Status) -> Stop {
        Stop::Lost(s)
    }
}

async fn follow(ctx: &Ctx, a: WatchArgs) -> Result<Exit, CtlError> {
    let mut pos = Position {
        last_id: a.after_event_id,
        ..Position::default()
    };
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut reached = false;
    loop {
        let printed = pos.printed;
        match session(ctx, &a, &mut pos, &mut reached).await {
            Ok(()) => note("the server ended the stream; reconnecting"),
            Err(Stop::Lost(s)) if reached && transient(&s) => {
                note(&format!(
                    "lost the stream ({}); reconnecting",
                    one_line(s.message())
                ));
            }
            Err(Stop::Lost(s)) => return Err(s.into()),
            Err(Stop::Output(e)) => return Err(e),
        }
        if pos.printed > printed {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One stream, from (re)connecting to its end: `Ok` when the server ended it.
async fn session(
    ctx: &Ctx,
    a: &WatchArgs,
    pos: &mut Position,
    reached: &mut bool,
) -> Result<(), Stop> {
    let after = resume_after(ctx, pos).await?;
    let req = pb::WatchStatusRequest {
        targets: a
            .targets
            .iter()
            .map(|t| pb::Target::from(*t) as i32)
            .collect(),
        kinds: a.kinds.clone(),
        after_event_id: after,
    };
    let mut stream = ctx
        .clients
        .reload
        .clone()
        .watch_status(req)
        .await?
        .into_inner();
    *reached = true;
    while let Some(ev) = stream.message().await? {
        if let Some(s) = &ev.status {
            pos.instance = Some(s.instance_id.clone());
        }
        // Heartbeats and the final status a server sends when it shuts down repeat the last
        // event's id: people see the event once (scripts get the stream as it is).
        let repeat = ev.event_id == pos.last_id && ev.status.is_some() && pos.printed > 0;
        pos.last_id = ev.event_id;
        pos.printed += 1;
        if ctx.json {
            output::print_json(&to_json(&ev, "hotplane.v1.WatchStatusResponse"), true)
        } else if ev.kind() == pb::EventKind::Heartbeat {
            if a.heartbeats {
                output::print(&line(&ev))
            } else {
                Ok(())
            }
        } else if repeat {
            Ok(())
        } else {
            output::print(&line(&ev))
        }
        .map_err(Stop::Output)?;
    }
    Ok(())
}

/// The `after_event_id` to ask for: the last event printed, unless another server process
/// answers now (then 0, a fresh snapshot). Remembers the instance that answers.
async fn resume_after(ctx: &Ctx, pos: &mut Position) -> Result<u64, Status> {
    let now = ctx
        .clients
        .reload
        .clone()
        .get_status(ctx.request(pb::GetStatusRequest {}, Duration::ZERO))
        .await?
        .into_inner()
        .instance_id;
    let after = match &pos.instance {
        Some(known) if *known != now => {
            note(&format!(
                "the server restarted (instance {known} -> {now}): starting again from a snapshot"
            ));
            0
        }
        _ => pos.last_id,
    };
    pos.instance = Some(now);
    Ok(after)
}

fn note(text: &str) {
    eprintln!("hotplane ctl: watch: {text}");
}

/// One event as a line: `#12 2026-12-07 09:00:01Z reload_succeeded patterns generation 3 …`.
pub fn line(ev: &pb::WatchStatusResponse) -> String {
    let kind = ev.kind();
    let mut parts = vec![
        format!("#{}", ev.event_id),
        output::time(ev.at.as_ref()),
        short(kind.as_str_name(), "EVENT_KIND_"),
    ];
    if ev.target() != pb::Target::Unspecified {
        parts.push(short(ev.target().as_str_name(), "TARGET_"));
    }
    if let Some(g) = &ev.generation {
        parts.push(format!(
            "generation {} ({} items, {}, {})",
            g.generation,
            g.item_count,
            short(g.mode().as_str_name(), "LOAD_MODE_"),
            short(g.source().as_str_name(), "RELOAD_SOURCE_")
        ));
        if !g.reason.is_empty() {
            parts.push(format!("{:?}", g.reason));
        }
    }
    if ev.pattern_id != 0 {
        parts.push(format!("pattern {}", ev.pattern_id));
    }
    if let Some(m) = &ev.fleet_member {
        parts.push(format!("instance {} at {}", m.instance_id, m.addr));
    }
    if let Some(s) = &ev.status {
        match kind {
            pb::EventKind::DrainChanged => parts.push(drain_text(s.drain.as_ref())),
            _ => {
                parts.push(format!("instance {}", s.instance_id));
                for t in &s.targets {
                    if let Some(c) = &t.current {
                        parts.push(format!(
                            "{} generation {}",
                            short(t.target().as_str_name(), "TARGET_"),
                            c.generation
                        ));
                    }
                }
            }
        }
    }
    if ev.resync {
        parts.push("(resync: events were missed)".into());
    }
    if !ev.error.is_empty() {
        parts.push(format!("error: {}", one_line(&ev.error)));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_short_or_full_name() {
        assert_eq!(
            parse_kind("reload_succeeded"),
            Ok(pb::EventKind::ReloadSucceeded as i32)
        );
        assert_eq!(
            parse_kind("EVENT_KIND_ROLLBACK"),
            Ok(pb::EventKind::Rollback as i32)
        );
        assert!(parse_kind("nope").is_err());
    }

    #[test]
    fn an_event_line_names_what_happened() {
        let ev = pb::WatchStatusResponse {
            event_id: 12,
            kind: pb::EventKind::PatternLearned.into(),
            target: pb::Target::Patterns.into(),
            pattern_id: 5,
            ..Default::default()
        };
        assert_eq!(line(&ev), "#12 - pattern_learned patterns pattern 5");
    }
}

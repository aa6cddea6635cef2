//! `status`, `reload` and `rollback`: what a replica serves, and the HotReload calls that change
//! it.

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{
    Ctx,
    error::{CtlError, Exit},
    json::to_json,
    output::{Table, clip, drain_text, duration, fields, or_dash, short, time},
};
use crate::pb;

/// `--target` of `reload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// The pattern cache.
    Patterns,
    /// The config file (and TLS certificates), as SIGHUP.
    Config,
    /// The database pool, blue/green (`--database-url`).
    Store,
    /// The Redis bus, blue/green (`--redis-url`).
    Bus,
}

impl From<TargetArg> for pb::Target {
    fn from(t: TargetArg) -> pb::Target {
        match t {
            TargetArg::Patterns => pb::Target::Patterns,
            TargetArg::Config => pb::Target::Config,
            TargetArg::Store => pb::Target::Store,
            TargetArg::Bus => pb::Target::Bus,
        }
    }
}

/// Options of `reload` (ReloadRequest).
#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    /// What to reload.
    #[arg(long, value_enum, default_value = "patterns")]
    pub target: TargetArg,
    /// Read every row, not only what changed (`full`).
    #[arg(long, conflicts_with = "pattern_id")]
    pub full: bool,
    /// Reload just this row, with whatever else changed (`pattern_id`).
    #[arg(long, value_name = "N")]
    pub pattern_id: Option<i64>,
    /// Build and check the new generation without swapping it in (`validate_only`).
    #[arg(long)]
    pub validate_only: bool,
    /// Also announce the reload on the Redis bus to every replica (`broadcast`).
    #[arg(long)]
    pub broadcast: bool,
    /// With --broadcast: wait up to this long (at most 5m) for every replica to serve it, and
    /// exit 1 if they did not (`wait_for_fleet`).
    #[arg(long, value_name = "DURATION", requires = "broadcast", value_parser = humantime::parse_duration)]
    pub wait_for_fleet: Option<Duration>,
    /// Why (recorded on the generation and in the audit trail).
    #[arg(long, default_value = "hotplane ctl")]
    pub reason: String,
    /// --target store: the database URL to swap to (empty: reconnect).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// --target bus: the Redis URL to swap to (empty: reconnect).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
}

/// Options of `rollback` (RollbackRequest).
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The retained generation to serve again; default the previous one (`to_generation`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub to: u64,
    /// Also roll back every replica to the same content (`broadcast`).
    #[arg(long)]
    pub broadcast: bool,
    /// With --broadcast: wait up to this long for every replica, exit 1 if one did not.
    #[arg(long, value_name = "DURATION", requires = "broadcast", value_parser = humantime::parse_duration)]
    pub wait_for_fleet: Option<Duration>,
    /// Why.
    #[arg(long, default_value = "hotplane ctl")]
    pub reason: String,
}

/// A std duration as a protobuf one (`None` stays `None`).
pub(super) fn proto_duration(d: Option<Duration>) -> Option<prost_types::Duration> {
    d.and_then(|d| prost_types::Duration::try_from(d).ok())
}

/// `status`.
pub async fn status(ctx: &Ctx) -> Result<Exit, CtlError> {
    let s = ctx
        .clients
        .reload
        .clone()
        .get_status(ctx.request(pb::GetStatusRequest {}, Duration::ZERO))
        .await?
        .into_inner();
    ctx.answer(
        || status_text(&s),
        || to_json(&s, "hotplane.v1.GetStatusResponse"),
    )?;
    Ok(Exit::Ok)
}

fn status_text(s: &pb::GetStatusResponse) -> String {
    let mut pairs = vec![
        ("instance", s.instance_id.clone()),
        ("version", s.version.clone()),
        ("started", time(s.started_at.as_ref())),
    ];
    if let Some(store) = &s.store {
        let mut text = format!("{} {}", store.backend, store.url);
        if !store.hit_flush_last_error.is_empty() {
            text.push_str(&format!(
                " (hit flush failing: {})",
                store.hit_flush_last_error
            ));
        }
        pairs.push(("store", text));
    }
    pairs.push(("drain", drain_text(s.drain.as_ref())));
    if let Some(bus) = &s.bus {
        let text = match (bus.enabled, bus.connected) {
            (false, _) => "off".to_owned(),
            (true, true) => format!("connected {} channel {}", bus.redis_url, bus.channel),
            (true, false) => format!("disconnected from {}: {}", bus.redis_url, bus.last_error),
        };
        pairs.push(("bus", text));
    }
    if let Some(fleet) = &s.fleet {
        let agree = if fleet.converged {
            "converged"
        } else {
            "not converged"
        };
        pairs.push((
            "fleet",
            format!("{} member(s), {agree}", fleet.members.len()),
        ));
    }
    let mut out = fields(&pairs);
    out.push('\n');
    let mut table = Table::new(&[
        "target",
        "generation",
        "items",
        "hash",
        "source",
        "mode",
        "loaded",
        "retained",
        "state",
    ]);
    for t in &s.targets {
        let name = short(t.target().as_str_name(), "TARGET_");
        let retained: Vec<String> = t
            .retained
            .iter()
            .map(|g| g.generation.to_string())
            .collect();
        let mut state = if t.last_error.is_empty() {
            "ok".to_owned()
        } else {
            format!("failing ({}x): {}", t.consecutive_failures, t.last_error)
        };
        if t.pinned {
            state = format!("pinned, {} pending; {state}", t.pending_changes);
        }
        if t.quarantined_total > 0 {
            state.push_str(&format!("; {} quarantined", t.quarantined_total));
        }
        let mut row = vec![name];
        row.extend(match &t.current {
            Some(cur) => [
                cur.generation.to_string(),
                cur.item_count.to_string(),
                or_dash(&clip(&cur.content_hash, 12)),
                short(cur.source().as_str_name(), "RELOAD_SOURCE_"),
                short(cur.mode().as_str_name(), "LOAD_MODE_"),
                time(cur.loaded_at.as_ref()),
            ],
            None => std::array::from_fn(|_| "-".to_owned()),
        });
        row.extend([or_dash(&retained.join(",")), state]);
        table.row(row);
    }
    out.push_str(&table.render());
    out
}

/// `reload`.
pub async fn reload(ctx: &Ctx, a: ReloadArgs) -> Result<Exit, CtlError> {
    let req = pb::ReloadRequest {
        target: pb::Target::from(a.target).into(),
        pattern_id: a.pattern_id,
        reason: a.reason,
        validate_only: a.validate_only,
        full: a.full,
        broadcast: a.broadcast,
        wait_for_fleet: proto_duration(a.wait_for_fleet),
        database_url: a.database_url.unwrap_or_default(),
        redis_url: a.redis_url.unwrap_or_default(),
    };
    let wait = a.wait_for_fleet.unwrap_or_default();
    let r = ctx
        .clients
        .reload
        .clone()
        .reload(ctx.request(req, wait))
        .await?
        .into_inner();
    ctx.answer(
        || reload_text(&r),
        || to_json(&r, "hotplane.v1.ReloadResponse"),
    )?;
    Ok(if a.wait_for_fleet.is_some() && !r.fleet_converged {
        Exit::Refused
    } else {
        Exit::Ok
    })
}

fn reload_text(r: &pb::ReloadResponse) -> String {
    let what = if r.validate_only {
        if r.changed {
            "would change"
        } else {
            "would not change"
        }
    } else if r.changed {
        "changed"
    } else {
        "unchanged"
    };
    let mut out = format!(
        "{} generation {} -> {}: {what} (+{} added, {} updated, {} removed; {}; {}{})\n",
        short(r.target().as_str_name(), "TARGET_"),
        r.generation_before,
        r.generation_after,
        r.added,
        r.updated,
        r.removed,
        short(r.mode().as_str_name(), "LOAD_MODE_"),
        duration(r.duration.as_ref()),
        if r.coalesced { ", coalesced" } else { "" },
    );
    for (label, changes) in [
        ("applied", &r.config_applied),
        ("needs a restart", &r.config_restart_required),
        ("pinned", &r.config_pinned),
    ] {
        for c in changes {
            let why = [c.restart_reason.as_str(), c.pinned_by.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            out.push_str(&format!(
                "config {label}: {} {:?} -> {:?}{}\n",
                c.key,
                c.old_value,
                c.new_value,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            ));
        }
    }
    if !r.redis_url.is_empty() {
        out.push_str(&format!(
            "bus {} -> {}\n",
            r.previous_redis_url, r.redis_url
        ));
    }
    out.push_str(&fleet_text(
        &r.publish_error,
        &r.fleet,
        r.fleet_converged,
        &r.fleet_error,
    ));
    out
}

fn fleet_text(
    publish_error: &str,
    fleet: &[pb::FleetMember],
    converged: bool,
    error: &str,
) -> String {
    let mut out = String::new();
    if !publish_error.is_empty() {
        out.push_str(&format!("not announced on the bus: {publish_error}\n"));
    }
    if !error.is_empty() {
        out.push_str(&format!("fleet unknown: {error}\n"));
    }
    if fleet.is_empty() {
        return out;
    }
    out.push_str(if converged {
        "fleet converged\n"
    } else {
        "fleet NOT converged\n"
    });
    let mut table = Table::new(&[
        "instance",
        "addr",
        "generation",
        "hash",
        "converged",
        "error",
    ]);
    for m in fleet {
        table.row(vec![
            m.instance_id.clone(),
            m.addr.clone(),
            m.generation.to_string(),
            clip(&m.content_hash, 12),
            if m.converged { "yes" } else { "no" }.into(),
            or_dash(&format!("{}{}", m.last_error, m.rollback_error)),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// `rollback`.
pub async fn rollback(ctx: &Ctx, a: RollbackArgs) -> Result<Exit, CtlError> {
    let req = pb::RollbackRequest {
        target: pb::Target::Patterns.into(),
        to_generation: a.to,
        broadcast: a.broadcast,
        reason: a.reason,
        wait_for_fleet: proto_duration(a.wait_for_fleet),
    };
    let wait = a.wait_for_fleet.unwrap_or_default();
    let r = ctx
        .clients
        .reload
        .clone()
        .rollback(ctx.request(req, wait))
        .await?
        .into_inner();
    let text = || {
        let cur = r.current.clone().unwrap_or_default();
        format!(
            "patterns generation {} -> {}: serving content {} ({} items){}\n{}",
            r.generation_before,
            cur.generation,
            clip(&cur.content_hash, 12),
            cur.item_count,
            if r.pinned {
                ", pinned (a reload unpins)"
            } else {
                ""
            },
            fleet_text(
                &r.publish_error,
                &r.fleet,
                r.fleet_converged,
                &r.fleet_error
            )
        )
    };
    ctx.answer(text, || to_json(&r, "hotplane.v1.RollbackResponse"))?;
    Ok(if a.wait_for_fleet.is_some() && !r.fleet_converged {
        Exit::Refused
    } else {
        Exit::Ok
    })
}

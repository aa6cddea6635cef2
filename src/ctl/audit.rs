//! `audit`: the audit trail, newest first (HotReload/ListAudit).

use std::time::{Duration, SystemTime};

use clap::Args;

use super::{
    Ctx,
    error::{CtlError, Exit},
    json::to_json,
    output::{Table, duration, or_dash, time},
};
use crate::pb;

/// Options of `audit` (ListAuditRequest).
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only rows at or after this time: RFC 3339 (`2026-12-07T09:00:00Z`) or an age (`1h`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<SystemTime>,
    /// Only rows before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<SystemTime>,
    /// Only this action (reload, rollback, drain_start, pattern_learn, ...).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// Only this caller, exactly as recorded.
    #[arg(long, value_name = "CALLER")]
    pub caller: Option<String>,
    /// Rows per page, 1..1000 (default: the server's, 100).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub page_size: i32,
    /// The page after a previous answer's next_page_token.
    #[arg(long, value_name = "TOKEN", default_value = "")]
    pub page_token: String,
}

/// A time given as RFC 3339, or as an age before now (`90m`, `2d`).
fn parse_time(text: &str) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    let age = humantime::parse_duration(text)
        .map_err(|_| format!("{text:?}: not an RFC 3339 time nor an age such as 1h"))?;
    SystemTime::now()
        .checked_sub(age)
        .ok_or_else(|| format!("{text:?}: too long ago"))
}

/// `audit`.
pub async fn audit(ctx: &Ctx, a: AuditArgs) -> Result<Exit, CtlError> {
    let req = pb::ListAuditRequest {
        page_size: a.page_size,
        page_token: a.page_token,
        since: a.since.map(prost_types::Timestamp::from),
        until: a.until.map(prost_types::Timestamp::from),
        action: a.action.unwrap_or_default(),
        caller: a.caller.unwrap_or_default(),
    };
    let r = ctx
        .clients
        .reload
        .clone()
        .list_audit(ctx.request(req, Duration::ZERO))
        .await?
        .into_inner();
    let text = || {
        let mut table = Table::new(&[
            "id",
            "at",
            "caller",
            "action",
            "target",
            "source",
            "generation",
            "result",
            "took",
            "reason",
        ]);
        for e in &r.entries {
            let why = if e.error.is_empty() {
                e.reason.clone()
            } else {
                format!("{} [{}]", e.reason, e.error)
            };
            table.row(vec![
                e.id.to_string(),
                time(e.at.as_ref()),
                e.caller.clone(),
                e.action.clone(),
                e.target.clone(),
                e.source.clone(),
                format!("{} -> {}", e.generation_before, e.generation_after),
                e.result.clone(),
                duration(e.duration.as_ref()),
                or_dash(&why),
            ]);
        }
        let mut out = if table.is_empty() {
            "no audit rows\n".to_owned()
        } else {
            table.render()
        };
        if !r.next_page_token.is_empty() {
            out.push_str(&format!("more: --page-token {}\n", r.next_page_token));
        }
        out
    };
    ctx.answer(text, || to_json(&r, "hotplane.v1.ListAuditResponse"))?;
    Ok(Exit::Ok)
}

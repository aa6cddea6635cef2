//! `learn` and `patterns list|get|approve|disable|delete`: the Patterns service's writes and
//! rows (`match` is in `matching.rs`).

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::{
    Ctx,
    error::{CtlError, Exit},
    json::{struct_from_json, to_json},
    output::{Table, clip, fields, metadata, or_dash, short, time},
};
use crate::pb;

/// Options of `learn` (LearnPatternRequest).
#[derive(Debug, Clone, Args)]
pub struct LearnArgs {
    /// The query text to learn (it is normalized by the server).
    #[arg(value_name = "QUERY")]
    pub query: String,
    /// The category answered on a match.
    #[arg(long)]
    pub category: String,
    /// Confidence of the classification, 0..1 (must reach the server's threshold).
    #[arg(long, value_name = "X")]
    pub confidence: f64,
    /// A JSON object returned with matches, e.g. '{"action":"list_workflows"}'.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// Who learned it.
    #[arg(long, value_name = "LABEL", default_value = "manual")]
    pub created_by: String,
}

/// `--status` of `patterns list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Learned, waiting for approval.
    Pending,
    /// Approved (served while enabled).
    Approved,
    /// Disabled by an operator.
    Disabled,
}

/// `patterns …`.
#[derive(Debug, Clone, Subcommand)]
pub enum PatternsAction {
    /// Pattern rows by id, one page (ListPatterns).
    List {
        /// Only rows in this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only rows in this category.
        #[arg(long, default_value = "")]
        category: String,
        /// Rows per page, 1..1000 (default: the server's, 100).
        #[arg(long, value_name = "N", default_value_t = 0)]
        page_size: i32,
        /// The page after a previous answer's next_page_token.
        #[arg(long, value_name = "TOKEN", default_value = "")]
        page_token: String,
    },
    /// One row, served or not (GetPattern).
    Get {
        /// Row id.
        id: i64,
    },
    /// Approve (and enable) a row so it is served (ApprovePattern).
    Approve(WriteArgs),
    /// Disable a row: it is kept but no longer served (DisablePattern).
    Disable(WriteArgs),
    /// Delete a row for good (DeletePattern).
    Delete(WriteArgs),
}

/// A row id and a reason.
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Row id.
    pub id: i64,
    /// Why (recorded in the audit trail).
    #[arg(long, default_value = "hotplane ctl")]
    pub reason: String,
}

/// `learn`.
pub async fn learn(ctx: &Ctx, a: LearnArgs) -> Result<Exit, CtlError> {
    let metadata = match &a.metadata {
        Some(text) => {
            Some(struct_from_json(text).map_err(|e| CtlError::usage(format!("--metadata: {e}")))?)
        }
        None => None,
    };
    let req = pb::LearnPatternRequest {
        query: a.query,
        category: a.category,
        confidence: a.confidence,
        metadata,
        created_by: a.created_by,
        ..Default::default()
    };
    let r = ctx
        .clients
        .patterns
        .clone()
        .learn_pattern(ctx.request(req, Duration::ZERO))
        .await?
        .into_inner();
    let text = || {
        let what = if r.created {
            "created"
        } else if r.updated {
            "updated"
        } else {
            "unchanged"
        };
        let served = if r.served {
            "served"
        } else {
            "not served (pending approval)"
        };
        let mut out = format!(
            "pattern {} {what}, {served}, generation {}\n",
            r.pattern.as_ref().map_or(0, |p| p.id),
            r.generation
        );
        if let Some(p) = &r.pattern {
            out.push_str(&pattern_fields(p, None));
        }
        out.push_str(&publish(&r.publish_error));
        out
    };
    ctx.answer(text, || to_json(&r, "hotplane.v1.LearnPatternResponse"))?;
    Ok(Exit::Ok)
}

fn publish(error: &str) -> String {
    if error.is_empty() {
        String::new()
    } else {
        format!("not announced on the bus: {error}\n")
    }
}

fn pattern_fields(p: &pb::Pattern, served: Option<bool>) -> String {
    let mut pairs = vec![
        ("id", p.id.to_string()),
        ("pattern", p.pattern.clone()),
        ("normalized", p.normalized_pattern.clone()),
        ("category", p.category.clone()),
        ("status", short(p.status().as_str_name(), "PATTERN_STATUS_")),
        ("enabled", p.enabled.to_string()),
    ];
    if let Some(served) = served {
        pairs.push(("served", served.to_string()));
    }
    pairs.extend([
        ("confidence", format!("{:.2}", p.confidence)),
        (
            "used",
            format!(
                "{} (correct {}, accuracy {:.2})",
                p.times_used, p.times_correct, p.accuracy
            ),
        ),
        ("metadata", metadata(p.metadata.as_ref())),
        (
            "created",
            format!(
                "{} by {}",
                time(p.created_at.as_ref()),
                or_dash(&p.created_by)
            ),
        ),
        ("updated", time(p.updated_at.as_ref())),
        ("last used", time(p.last_used_at.as_ref())),
        ("revision", p.revision.to_string()),
    ]);
    fields(&pairs)
}

/// `patterns …`.
pub async fn patterns(ctx: &Ctx, action: PatternsAction) -> Result<Exit, CtlError> {
    let mut client = ctx.clients.patterns.clone();
    let zero = Duration::ZERO;
    match action {
        PatternsAction::List {
            status,
            category,
            page_size,
            page_token,
        } => {
            let status = match status {
                None => pb::PatternStatus::Unspecified,
                Some(StatusArg::Pending) => pb::PatternStatus::Pending,
                Some(StatusArg::Approved) => pb::PatternStatus::Approved,
                Some(StatusArg::Disabled) => pb::PatternStatus::Disabled,
            };
            let req = pb::ListPatternsRequest {
                page_size,
                page_token,
                status: status.into(),
                category,
                ..Default::default()
            };
            let r = client
                .list_patterns(ctx.request(req, zero))
                .await?
                .into_inner();
            let text = || {
                let mut t = Table::new(&[
                    "id",
                    "status",
                    "enabled",
                    "category",
                    "confidence",
                    "used",
                    "pattern",
                ]);
                for p in &r.patterns {
                    t.row(vec![
                        p.id.to_string(),
                        short(p.status().as_str_name(), "PATTERN_STATUS_"),
                        if p.enabled { "yes" } else { "no" }.into(),
                        p.category.clone(),
                        format!("{:.2}", p.confidence),
                        p.times_used.to_string(),
                        clip(&p.pattern, 60),
                    ]);
                }
                let mut out = if t.is_empty() {
                    "no patterns\n".to_owned()
                } else {
                    t.render()
                };
                if !r.next_page_token.is_empty() {
                    out.push_str(&format!("more: --page-token {}\n", r.next_page_token));
                }
                out
            };
            ctx.answer(text, || to_json(&r, "hotplane.v1.ListPatternsResponse"))?;
        }
        PatternsAction::Get { id } => {
            let r = client
                .get_pattern(ctx.request(
                    pb::GetPatternRequest {
                        id,
                        ..Default::default()
                    },
                    zero,
                ))
                .await?
                .into_inner();
            let text = || {
                r.pattern
                    .as_ref()
                    .map_or_else(String::new, |p| pattern_fields(p, Some(r.served)))
            };
            ctx.answer(text, || to_json(&r, "hotplane.v1.GetPatternResponse"))?;
        }
        PatternsAction::Approve(WriteArgs { id, reason }) => {
            let req = pb::ApprovePatternRequest {
                id,
                reason,
                ..Default::default()
            };
            let r = client
                .approve_pattern(ctx.request(req, zero))
                .await?
                .into_inner();
            let text = || {
                format!(
                    "pattern {id} approved, generation {}\n{}",
                    r.generation,
                    publish(&r.publish_error)
                )
            };
            ctx.answer(text, || to_json(&r, "hotplane.v1.ApprovePatternResponse"))?;
        }
        PatternsAction::Disable(WriteArgs { id, reason }) => {
            let req = pb::DisablePatternRequest {
                id,
                reason,
                ..Default::default()
            };
            let r = client
                .disable_pattern(ctx.request(req, zero))
                .await?
                .into_inner();
            let text = || {
                format!(
                    "pattern {id} disabled, generation {}\n{}",
                    r.generation,
                    publish(&r.publish_error)
                )
            };
            ctx.answer(text, || to_json(&r, "hotplane.v1.DisablePatternResponse"))?;
        }
        PatternsAction::Delete(WriteArgs { id, reason }) => {
            let req = pb::DeletePatternRequest { id, reason };
            let r = client
                .delete_pattern(ctx.request(req, zero))
                .await?
                .into_inner();
            let text = || {
                format!(
                    "pattern {id} deleted, generation {}\n{}",
                    r.generation,
                    publish(&r.publish_error)
                )
            };
            ctx.answer(text, || to_json(&r, "hotplane.v1.DeletePatternResponse"))?;
        }
    }
    Ok(Exit::Ok)
}

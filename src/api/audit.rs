//! ListAudit and the audit part of GetStatus: translate requests into a store filter and rows
//! and counters back. The trail itself is recorded by `crate::audit`.

use chrono::{DateTime, Utc};

use super::{
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_REASON_CHARS, convert,
    error::{ApiError, ApiResult},
};
use crate::{
    audit::{AuditStats, action},
    pb,
    store::{AuditFilter, AuditRow},
};

/// Status view of the audit queue and writer.
pub fn audit_status_pb(s: &AuditStats, retention_days: u32) -> pb::AuditStatus {
    pb::AuditStatus {
        queued: s.queued,
        capacity: s.capacity,
        written: s.written,
        dropped: s.dropped,
        write_failures: s.write_failures,
        rows_lost: s.rows_lost,
        last_error: s.last_error.clone().unwrap_or_default(),
        last_error_at: s.last_error_at.map(convert::timestamp),
        retention_days,
    }
}

fn time(field: &str, t: Option<&prost_types::Timestamp>) -> ApiResult<Option<DateTime<Utc>>> {
    t.map(|t| {
        u32::try_from(t.nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
            .ok_or_else(|| ApiError::invalid(field, "is not a valid timestamp"))
    })
    .transpose()
}

/// Checks a ListAudit request and turns it into the store filter (asking one row more than
/// the page, to know whether another page follows).
pub(super) fn audit_filter(req: &pb::ListAuditRequest) -> ApiResult<(AuditFilter, usize)> {
    let page_size = match req.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
        _ => {
            return Err(ApiError::invalid(
                "page_size",
                format!("must be between 0 and {MAX_PAGE_SIZE}"),
            ));
        }
    };
    let before_id = if req.page_token.is_empty() {
        None
    } else {
        Some(
            req.page_token
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    ApiError::invalid("page_token", "is not a token from a previous response")
                })?,
        )
    };
    let since = time("since", req.since.as_ref())?;
    let until = time("until", req.until.as_ref())?;
    if let (Some(s), Some(u)) = (since, until)
        && u <= s
    {
        return Err(ApiError::invalid("until", "must be after since"));
    }
    let action = match req.action.as_str() {
        "" => None,
        a if action::ALL.contains(&a) => Some(a.to_owned()),
        _ => {
            return Err(ApiError::invalid(
                "action",
                format!("unknown action; one of {}", action::ALL.join(", ")),
            ));
        }
    };
    if req.caller.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::invalid(
            "caller",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    let caller = Some(req.caller.clone()).filter(|c| !c.is_empty());
    let filter = AuditFilter {
        before_id,
        since,
        until,
        action,
        caller,
        limit: i64::from(page_size) + 1,
    };
    Ok((filter, page_size as usize))
}

/// One page of the audit trail.
pub(super) async fn list_audit(
    engine: &crate::engine::Engine,
    req: &pb::ListAuditRequest,
) -> ApiResult<pb::ListAuditResponse> {
    let (filter, page_size) = audit_filter(req)?;
    let mut rows = engine.store().list_audit(&filter).await?;
    let next_page_token = if rows.len() > page_size {
        rows.truncate(page_size);
        rows.last().map(|r| r.id.to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::ListAuditResponse {
        entries: rows.iter().map(entry_pb).collect(),
        next_page_token,
    })
}

fn entry_pb(r: &AuditRow) -> pb::AuditEntry {
    pb::AuditEntry {
        id: r.id,
        at: Some(convert::timestamp(r.at)),
        instance_id: r.instance.clone(),
        caller: r.caller.clone(),
        action: r.action.clone(),
        target: r.target.clone(),
        source: r.source.clone(),
        reason: r.reason.clone(),
        generation_before: u64::try_from(r.generation_before).unwrap_or_default(),
        generation_after: u64::try_from(r.generation_after).unwrap_or_default(),
        result: r.result.clone(),
        error: r.error.clone(),
        duration: Some(convert::duration(std::time::Duration::from_secs_f64(
            r.duration_ms.max(0.0) / 1e3,
        ))),
    }
}

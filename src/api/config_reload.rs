//! `Reload(TARGET_CONFIG)` and SIGHUP: one function re-reads the config file through the live
//! config, announces the reload on WatchStatus, logs it, and translates the outcome. The rules of
//! what changes live are the live config's ([`crate::config::live`]); this only translates.

use std::{sync::Arc, time::Instant};

use tracing::{info, instrument, warn};

use super::{
    AppState, check_reason, config_files, convert,
    error::{ApiError, ApiResult},
    status::{change_pb, config_generation_pb as generation_pb, pinned_pb},
};
use crate::{
    config::live::{Outcome, ReloadError},
    engine::Source,
    pb,
};

/// `Reload(TARGET_CONFIG)`: checks the request, then [`reload_config`].
pub(super) async fn reload(
    state: &AppState,
    req: pb::ReloadRequest,
    started: Instant,
    caller: String,
) -> ApiResult<pb::ReloadResponse> {
    check_reason(&req.reason)?;
    let not_for_config =
        |field: &str| Err(ApiError::invalid(field, "does not apply to TARGET_CONFIG"));
    if req.pattern_id.is_some() {
        return not_for_config("pattern_id");
    }
    if req.full {
        return not_for_config("full");
    }
    if req.broadcast || req.wait_for_fleet.is_some() {
        return not_for_config("broadcast");
    }
    if !req.database_url.is_empty() {
        return not_for_config("database_url");
    }
    if !req.redis_url.is_empty() {
        return not_for_config("redis_url");
    }
    let mut response =
        reload_config(state, Source::Grpc, req.validate_only, caller, &req.reason).await?;
    response.duration = Some(convert::duration(started.elapsed()));
    Ok(response)
}

/// Re-reads the config file and applies it (or, with `validate_only`, only reports what would
/// change): the one path for gRPC and SIGHUP. Publishes reload events for target CONFIG (not
/// for `validate_only`), records it in the audit trail as `caller`, and logs the outcome with
/// every key at fault.
#[instrument(skip(state, reason), fields(target = "config", source = source.as_str()))]
pub async fn reload_config(
    state: &AppState,
    source: Source,
    validate_only: bool,
    caller: String,
    reason: &str,
) -> ApiResult<pb::ReloadResponse> {
    let started = Instant::now();
    let announce = |kind: pb::EventKind, generation: Option<pb::GenerationInfo>, error: String| {
        if !validate_only {
            state.events.publish(pb::WatchStatusResponse {
                kind: kind.into(),
                target: pb::Target::Config.into(),
                generation,
                error,
                ..Default::default()
            });
        }
    };
    if state.live.path().is_some() {
        announce(pb::EventKind::ReloadStarted, None, String::new());
    }
    let refused = |e: String| {
        warn!(error = %e, validate_only, "config reload rejected; the running config is unchanged");
        announce(pb::EventKind::ReloadFailed, None, e.clone());
        if !validate_only {
            state.live.record_failure(&e);
            let now = state.live.generation().map_or(0, |g| g.number);
            let took = started.elapsed();
            let result = Err(e);
            super::audit::record_config_reload(
                state,
                caller.clone(),
                source,
                reason,
                (now, now),
                result,
                took,
            );
        }
    };
    // The TLS files and the tokens file are re-read with the config file, and checked before
    // anything changes.
    let files = match config_files::prepare(state) {
        Ok(files) => files,
        Err(e) => {
            let e = format!("{e} (the running credentials, certificates and config are unchanged)");
            refused(e.clone());
            return Err(ApiError::FailedPrecondition(e));
        }
    };
    let served = Arc::clone(&state.engine.current().snapshot);
    match state.live.reload(source, validate_only, served).await {
        Ok(mut outcome) => {
            outcome
                .applied
                .extend(config_files::install(state, files, validate_only));
            let changed: Vec<&str> = outcome.applied.iter().map(|c| c.key).collect();
            let restart: Vec<&str> = outcome.restart_required.iter().map(|c| c.key).collect();
            info!(
                generation = outcome.generation_after,
                validate_only,
                duration_ms = started.elapsed().as_millis() as u64,
                ?changed,
                ?restart,
                "config reloaded"
            );
            if !restart.is_empty() && !validate_only {
                warn!(keys = ?restart, "config keys changed that only take effect after a restart");
            }
            announce(
                pb::EventKind::ReloadSucceeded,
                Some(generation_pb(&outcome.current)),
                String::new(),
            );
            if !validate_only {
                let generations = (outcome.generation_before, outcome.generation_after);
                let took = started.elapsed();
                super::audit::record_config_reload(
                    state,
                    caller,
                    source,
                    reason,
                    generations,
                    Ok(()),
                    took,
                );
            }
            Ok(response(&outcome, validate_only))
        }
        // Without a config file, the TLS files and the tokens file are still re-read.
        Err(ReloadError::NoFile) if files.any() => {
            let applied = config_files::install(state, files, validate_only);
            Ok(pb::ReloadResponse {
                target: pb::Target::Config.into(),
                changed: !applied.is_empty(),
                mode: pb::LoadMode::Full.into(),
                validate_only,
                config_applied: applied.iter().map(change_pb).collect(),
                ..Default::default()
            })
        }
        Err(ReloadError::NoFile) => {
            warn!(error = %ReloadError::NoFile, "config reload rejected");
            Err(error(ReloadError::NoFile))
        }
        Err(e) => {
            // The live config counted the failure in its health already.
            warn!(error = %e, validate_only, "config reload rejected; the running config is unchanged");
            announce(pb::EventKind::ReloadFailed, None, e.to_string());
            if !validate_only {
                let now = state.live.generation().map_or(0, |g| g.number);
                super::audit::record_config_reload(
                    state,
                    caller,
                    source,
                    reason,
                    (now, now),
                    Err(e.to_string()),
                    started.elapsed(),
                );
            }
            Err(error(e))
        }
    }
}

fn error(e: ReloadError) -> ApiError {
    match e {
        ReloadError::NoFile | ReloadError::Read(_) => ApiError::FailedPrecondition(e.to_string()),
        ReloadError::Invalid { errors, .. } => ApiError::InvalidFields(
            errors
                .into_iter()
                .map(|k| {
                    (
                        k.key,
                        format!("{} (the running config is unchanged)", k.reason),
                    )
                })
                .collect(),
        ),
    }
}

fn response(o: &Outcome, validate_only: bool) -> pb::ReloadResponse {
    pb::ReloadResponse {
        target: pb::Target::Config.into(),
        generation_before: o.generation_before,
        generation_after: o.generation_after,
        changed: !o.applied.is_empty(),
        mode: pb::LoadMode::Full.into(),
        validate_only,
        current: Some(generation_pb(&o.current)),
        config_applied: o.applied.iter().map(change_pb).collect(),
        config_restart_required: o.restart_required.iter().map(change_pb).collect(),
        config_path: o.path.display().to_string(),
        config_pinned: o.pinned.iter().map(pinned_pb).collect(),
        ..Default::default()
    }
}

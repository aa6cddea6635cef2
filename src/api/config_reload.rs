//! `Reload(TARGET_CONFIG)`: checks the request, runs the config reload (the same one SIGHUP
//! runs, [`crate::config::reload`]) and translates its outcome.

use std::time::Instant;

use super::{
    ReloadField, ReloadState, check_reload_fields, convert,
    error::{ApiError, ApiResult, Reason},
    status::{change_pb, config_generation_pb as generation_pb, pinned_pb},
};
use crate::{
    config::{
        live::{Outcome, ReloadError},
        reload::{ConfigReloadError, Reloaded},
    },
    engine::Source,
    pb,
};

/// `Reload(TARGET_CONFIG)`: checks the request, reloads, translates.
pub(super) async fn reload(
    state: &ReloadState,
    req: pb::ReloadRequest,
    started: Instant,
    caller: String,
) -> ApiResult<pb::ReloadResponse> {
    use ReloadField::*;
    let not_for_config = [PatternId, Full, Broadcast, DatabaseUrl, RedisUrl];
    check_reload_fields(&req, pb::Target::Config, &not_for_config)?;
    let reloaded = state
        .config_reloader
        .reload(Source::Grpc, req.validate_only, caller, &req.reason)
        .await
        .map_err(error)?;
    let mut response = match reloaded {
        Reloaded::File(outcome) => response(&outcome, req.validate_only),
        Reloaded::FilesOnly(applied) => pb::ReloadResponse {
            target: pb::Target::Config.into(),
            changed: !applied.is_empty(),
            mode: pb::LoadMode::Full.into(),
            validate_only: req.validate_only,
            config_applied: applied.iter().map(change_pb).collect(),
            ..Default::default()
        },
    };
    response.duration = Some(convert::duration(started.elapsed()));
    Ok(response)
}

fn error(e: ConfigReloadError) -> ApiError {
    match e {
        ConfigReloadError::Files(_)
        | ConfigReloadError::Config(ReloadError::NoFile | ReloadError::Read(_)) => {
            let cause = match &e {
                ConfigReloadError::Files(_) => "credentials",
                ConfigReloadError::Config(ReloadError::NoFile) => "no_config_file",
                _ => "unreadable",
            };
            ApiError::reasoned(
                Reason::ConfigRejected,
                e.to_string(),
                vec![("cause", cause.to_owned())],
            )
        }
        ConfigReloadError::Config(ReloadError::Invalid { errors, .. }) => ApiError::InvalidFields(
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

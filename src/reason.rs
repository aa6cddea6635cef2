//! The stable reasons of hotplane's `google.rpc.ErrorInfo` details: the one list of them.
//!
//! A client acts on `ErrorInfo.reason` (with `domain` [`DOMAIN`]) rather than on the English of
//! the status message, which may change. Each reason belongs to one status code and names the
//! `ErrorInfo.metadata` keys it fills (values are strings; numbers are decimal). These strings
//! are API: a reason is never renamed or given another meaning, only added. The proto comments
//! (`proto/hotplane/v1/common.proto`, top of file) and docs/api.md list them all; a test
//! below checks that both do.

use std::time::Duration;

use tonic::Code;

/// `ErrorInfo.domain` of every hotplane reason.
pub const DOMAIN: &str = "hotplane.dev";

/// How long a client should wait before retrying an `UNAVAILABLE` answer (its `RetryInfo`).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a request failed, in a form a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// FAILED_PRECONDITION: `min_generation` is above the generation this replica serves.
    /// Metadata `served_generation`, `min_generation`; also a `PreconditionFailure` of type
    /// `GENERATION` on subject `min_generation`. Retry shortly, or on another replica.
    GenerationBehind,
    /// NOT_FOUND: no pattern row has this id. Metadata `pattern_id`; `ResourceInfo` of type
    /// `pattern`, named by the id.
    PatternNotFound,
    /// NOT_FOUND: a rollback named a generation that is not retained. Metadata
    /// `requested_generation` (0: the previous one) and `retained_generations` (newest first,
    /// comma-separated, empty when none); `ResourceInfo` of type `generation`.
    GenerationNotRetained,
    /// UNAVAILABLE, with `RetryInfo`: the pattern store cannot be reached now (or a lock is
    /// contended); nothing was changed. Retry later.
    StoreUnavailable,
    /// UNAVAILABLE, with `RetryInfo`: this replica is shutting down. Retry on another replica.
    ShuttingDown,
    /// FAILED_PRECONDITION: the store answered a reload with an error retrying will not fix
    /// (a missing table or column): an operator must fix the store. The previous generation
    /// keeps serving.
    StoreFailed,
    /// FAILED_PRECONDITION: the pattern table refused a write for its own state (another row
    /// holds a unique value, or a constraint on a column no request field sets). Metadata
    /// `column` when the database named it. Nothing was changed.
    StoreRefused,
    /// FAILED_PRECONDITION: the rows read would make an invalid generation; the previous one
    /// keeps serving.
    ReloadRejected,
    /// FAILED_PRECONDITION: `Reload(TARGET_STORE)` could not move to the new store; the current
    /// one keeps serving. Metadata `stage`: `connect`, `migrate` or `load`.
    StoreSwapFailed,
    /// FAILED_PRECONDITION: `broadcast` (Reload, Rollback) or `Reload(TARGET_BUS)` needs the
    /// Redis bus, and this replica has none.
    BusNotConfigured,
    /// FAILED_PRECONDITION: `Reload(TARGET_BUS)` could not connect or subscribe to the new
    /// Redis; the current connection keeps running.
    BusSwapFailed,
    /// FAILED_PRECONDITION: `Reload(TARGET_CONFIG)` changed nothing because a file could not be
    /// used. Metadata `cause`: `no_config_file` (started without `--config`), `unreadable`
    /// (the config file), or `credentials` (a TLS file or the tokens file). An invalid key is
    /// INVALID_ARGUMENT instead, naming the key.
    ConfigRejected,
    /// FAILED_PRECONDITION: `StopDrain` during a shutdown, whose drain cannot be stopped.
    DrainFinal,
    /// UNAVAILABLE, with `RetryInfo`: this replica is draining and takes no new work. Retry on
    /// another replica.
    Draining,
    /// RESOURCE_EXHAUSTED, with `RetryInfo` (when the caller's bucket has a token again): the
    /// caller exceeded its rate of state-changing RPCs (`--admin-rate`).
    RateLimited,
    /// RESOURCE_EXHAUSTED: the caller holds the most WatchStatus streams allowed
    /// (`--watch-max-streams-per-caller`). Metadata `limit`. Close one or reuse it.
    TooManyStreams,
    /// RESOURCE_EXHAUSTED: the match answer would be larger than `--max-response-bytes`.
    /// Metadata `max_response_bytes`, `answer_bytes` (at least). Not retryable as it is: send
    /// fewer queries per batch.
    ResponseTooLarge,
}

impl Reason {
    /// Every reason, for the documentation checks.
    pub const ALL: &'static [Reason] = &[
        Reason::GenerationBehind,
        Reason::PatternNotFound,
        Reason::GenerationNotRetained,
        Reason::StoreUnavailable,
        Reason::ShuttingDown,
        Reason::StoreFailed,
        Reason::StoreRefused,
        Reason::ReloadRejected,
        Reason::StoreSwapFailed,
        Reason::BusNotConfigured,
        Reason::BusSwapFailed,
        Reason::ConfigRejected,
        Reason::DrainFinal,
        Reason::Draining,
        Reason::RateLimited,
        Reason::TooManyStreams,
        Reason::ResponseTooLarge,
    ];

    /// The `ErrorInfo.reason` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::GenerationBehind => "GENERATION_BEHIND",
            Reason::PatternNotFound => "PATTERN_NOT_FOUND",
            Reason::GenerationNotRetained => "GENERATION_NOT_RETAINED",
            Reason::StoreUnavailable => "STORE_UNAVAILABLE",
            Reason::ShuttingDown => "SHUTTING_DOWN",
            Reason::StoreFailed => "STORE_FAILED",
            Reason::StoreRefused => "STORE_REFUSED",
            Reason::ReloadRejected => "RELOAD_REJECTED",
            Reason::StoreSwapFailed => "STORE_SWAP_FAILED",
            Reason::BusNotConfigured => "BUS_NOT_CONFIGURED",
            Reason::BusSwapFailed => "BUS_SWAP_FAILED",
            Reason::ConfigRejected => "CONFIG_REJECTED",
            Reason::DrainFinal => "DRAIN_FINAL",
            Reason::Draining => "DRAINING",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::TooManyStreams => "TOO_MANY_STREAMS",
            Reason::ResponseTooLarge => "RESPONSE_TOO_LARGE",
        }
    }

    /// The status code answered with this reason.
    pub const fn code(self) -> Code {
        match self {
            Reason::GenerationBehind
            | Reason::StoreFailed
            | Reason::StoreRefused
            | Reason::ReloadRejected
            | Reason::StoreSwapFailed
            | Reason::BusNotConfigured
            | Reason::BusSwapFailed
            | Reason::ConfigRejected
            | Reason::DrainFinal => Code::FailedPrecondition,
            Reason::PatternNotFound | Reason::GenerationNotRetained => Code::NotFound,
            Reason::StoreUnavailable | Reason::ShuttingDown | Reason::Draining => Code::Unavailable,
            Reason::ResponseTooLarge | Reason::RateLimited | Reason::TooManyStreams => {
                Code::ResourceExhausted
            }
        }
    }

    /// An answer with this reason: its code, `message`, and an `ErrorInfo` with `metadata`
    /// (plus the reason's `RetryInfo`), for the layers that answer before any handler runs.
    pub fn status(
        self,
        message: impl Into<String>,
        metadata: Vec<(&'static str, String)>,
    ) -> tonic::Status {
        self.status_with(message, metadata, self.retry_after())
    }

    /// [`Self::status`] with a `RetryInfo` delay of the caller's choosing (`None`: none).
    pub fn status_with(
        self,
        message: impl Into<String>,
        metadata: Vec<(&'static str, String)>,
        retry_after: Option<Duration>,
    ) -> tonic::Status {
        use tonic_types::StatusExt;
        let details = self.details(metadata, retry_after);
        tonic::Status::with_error_details(self.code(), message, details)
    }

    /// The details every answer with this reason carries: its `ErrorInfo` with `metadata`, and
    /// a `RetryInfo` of `retry_after` when there is one.
    pub fn details(
        self,
        metadata: Vec<(&'static str, String)>,
        retry_after: Option<Duration>,
    ) -> tonic_types::ErrorDetails {
        let metadata: std::collections::HashMap<String, String> = metadata
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let mut details =
            tonic_types::ErrorDetails::with_error_info(self.as_str(), DOMAIN, metadata);
        if retry_after.is_some() {
            details.set_retry_info(retry_after);
        }
        details
    }

    /// The `RetryInfo` delay: every `UNAVAILABLE` reason has one, no other does.
    pub const fn retry_after(self) -> Option<Duration> {
        match self.code() {
            Code::Unavailable => Some(RETRY_AFTER),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proto comment and docs/api.md list every reason, with its code.
    #[test]
    fn every_reason_is_documented() {
        let proto = include_str!("../proto/hotplane/v1/common.proto");
        let docs = include_str!("../docs/api.md");
        for r in Reason::ALL {
            let code = format!("{:?}", r.code()); // e.g. FailedPrecondition
            assert!(
                proto.contains(r.as_str()),
                "{} not in the proto comments",
                r.as_str()
            );
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{}`", r.as_str())))
                .unwrap_or_else(|| panic!("{} has no row in docs/api.md's table", r.as_str()));
            let screaming = code
                .chars()
                .flat_map(|c| {
                    let sep = c.is_uppercase().then_some('_');
                    sep.into_iter().chain(c.to_uppercase())
                })
                .skip(1)
                .collect::<String>();
            assert!(row.contains(&screaming), "{row} does not say {screaming}");
        }
    }

    #[test]
    fn reasons_are_distinct_screaming_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{s}");
            assert_eq!(r.retry_after().is_some(), r.code() == Code::Unavailable);
        }
    }
}

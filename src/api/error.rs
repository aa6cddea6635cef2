//! The one mapping from internal errors to gRPC statuses.
//!
//! Handlers return [`ApiError`]; `From<ApiError> for Status` is the only place a status code is
//! chosen. Invalid arguments carry a `BadRequest` detail naming the field, so generated clients
//! can point at it. Internal causes (driver errors, SQL) are logged here and not sent to callers.
//!
//! Store errors are sorted by what the caller can do about them, so that a client never retries
//! what cannot succeed: the database unreachable or contended → `UNAVAILABLE` (retry later); a
//! value the table refuses → `INVALID_ARGUMENT` naming the request field, or
//! `FAILED_PRECONDITION` when no request field is at fault or another row conflicts; any other
//! store error → `INTERNAL` (retrying will not help).
//!
//! An answer a client may act on carries an `ErrorInfo` with a stable [`Reason`] (the
//! `reason` module lists them, with the metadata each fills), plus the details that reason
//! defines: a `ResourceInfo` naming what was not found, a `PreconditionFailure`, and a
//! `RetryInfo` on every `UNAVAILABLE`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{error, warn};

pub use crate::reason::{RETRY_AFTER, Reason};

use crate::{engine::LoadError, learn::Violation, store::StoreError};

/// An error answered to a gRPC caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field is invalid.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field at fault, as named in the proto (`queries[3]` for list items).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Several fields are invalid (a config file with more than one mistake): every one is a
    /// BadRequest field violation.
    #[error("{}", .0.iter().map(|(f, r)| format!("{f}: {r}")).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<(String, String)>),
    /// The named entity does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A dependency is unavailable; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A dependency failed permanently (not the caller's fault); retrying will not help.
    #[error("{0}")]
    Internal(String),
    /// The answer would be larger than the server sends (`--max-response-bytes`): permanent for
    /// this request, never retryable as it is.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The RPC or option is not implemented yet.
    #[error("{0}")]
    Unimplemented(String),
    /// An answer with a stable reason a client may act on; its code is the reason's.
    #[error("{}", .0.message)]
    Reasoned(Box<Reasoned>),
}

/// The parts of an [`ApiError::Reasoned`] answer.
#[derive(Debug)]
pub struct Reasoned {
    /// `ErrorInfo.reason`; also decides the status code and any `RetryInfo`.
    pub reason: Reason,
    /// The status message, for people.
    pub message: String,
    /// `ErrorInfo.metadata`, as the reason documents it.
    pub metadata: Vec<(&'static str, String)>,
    /// `ResourceInfo` type and name, for what was not found.
    pub resource: Option<(&'static str, String)>,
    /// A `PreconditionFailure` violation's type and subject (its description is the message).
    pub precondition: Option<(&'static str, &'static str)>,
}

impl ApiError {
    /// An answer for `reason`, with `metadata` as the reason documents it.
    pub fn reasoned(
        reason: Reason,
        message: impl Into<String>,
        metadata: Vec<(&'static str, String)>,
    ) -> ApiError {
        ApiError::Reasoned(Box::new(Reasoned {
            reason,
            message: message.into(),
            metadata,
            resource: None,
            precondition: None,
        }))
    }

    /// `FAILED_PRECONDITION` `GENERATION_BEHIND`: this replica serves generation `served`,
    /// older than the request's `min_generation` `wanted`.
    pub fn generation_behind(served: u64, wanted: u64) -> ApiError {
        ApiError::Reasoned(Box::new(Reasoned {
            reason: Reason::GenerationBehind,
            message: format!(
                "this replica serves generation {served}, older than min_generation {wanted}; \
                 retry shortly or on another replica"
            ),
            metadata: vec![
                ("served_generation", served.to_string()),
                ("min_generation", wanted.to_string()),
            ],
            resource: None,
            precondition: Some(("GENERATION", "min_generation")),
        }))
    }

    /// `NOT_FOUND` `PATTERN_NOT_FOUND`: no pattern row `id`.
    pub fn pattern_not_found(id: i64, message: impl Into<String>) -> ApiError {
        ApiError::not_found(
            Reason::PatternNotFound,
            message,
            ("pattern", id.to_string()),
            vec![("pattern_id", id.to_string())],
        )
    }

    /// `NOT_FOUND` for `reason`, naming the missing resource (type, name).
    fn not_found(
        reason: Reason,
        message: impl Into<String>,
        resource: (&'static str, String),
        metadata: Vec<(&'static str, String)>,
    ) -> ApiError {
        ApiError::Reasoned(Box::new(Reasoned {
            reason,
            message: message.into(),
            metadata,
            resource: Some(resource),
            precondition: None,
        }))
    }

    /// Shorthand for an invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::InvalidArgument { field, reason } => {
                let msg = format!("invalid {field}: {reason}");
                Status::with_error_details(
                    Code::InvalidArgument,
                    msg,
                    ErrorDetails::with_bad_request_violation(field, reason),
                )
            }
            ApiError::InvalidFields(violations) => {
                let msg = format!("invalid {}", ApiError::InvalidFields(violations.clone()));
                let mut details = ErrorDetails::new();
                for (field, reason) in violations {
                    details.add_bad_request_violation(field, reason);
                }
                Status::with_error_details(Code::InvalidArgument, msg, details)
            }
            ApiError::NotFound(m) => Status::not_found(m),
            // Every UNAVAILABLE says when to retry, with or without a reason.
            ApiError::Unavailable(m) => Status::with_error_details(
                Code::Unavailable,
                m,
                ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
            ),
            ApiError::Reasoned(r) => (*r).into_status(),
            ApiError::Internal(m) => Status::internal(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::Unimplemented(m) => Status::unimplemented(m),
        }
    }
}

impl Reasoned {
    fn into_status(self) -> Status {
        let Reasoned {
            reason,
            message,
            metadata,
            resource,
            precondition,
        } = self;
        let mut details = reason.details(metadata, reason.retry_after());
        if let Some((kind, name)) = resource {
            details.set_resource_info(kind, name, "", message.clone());
        }
        if let Some((kind, subject)) = precondition {
            details.add_precondition_failure_violation(kind, subject, message.clone());
        }
        Status::with_error_details(reason.code(), message, details)
    }
}

impl ApiError {
    /// A store error from a write whose columns come from request fields, as `(column, field)`
    /// pairs: a value the table refuses in one of them is that field's `INVALID_ARGUMENT`.
    pub fn from_store_write(e: StoreError, fields: &[(&str, &'static str)]) -> ApiError {
        if e.is_transient() {
            error!(error = %e, "pattern store request failed; the client is told to retry");
            return ApiError::reasoned(
                Reason::StoreUnavailable,
                "the pattern store is unavailable; nothing was changed, retry later",
                vec![],
            );
        }
        let Some(refusal) = e.refusal() else {
            error!(error = %e, "pattern store request failed with a permanent error");
            return ApiError::Internal(
                "the pattern store failed the request with an error retrying will not fix \
                 (logged on the server); nothing was changed"
                    .into(),
            );
        };
        warn!(error = %e, "the database refused a write; the caller is told why");
        let column = refusal.column.as_deref();
        let field = column.and_then(|c| fields.iter().find(|(col, _)| *col == c));
        match field {
            Some((column, field)) if !refusal.is_conflict() => {
                // `query` feeds two columns: say which one when it is not the raw text.
                let reason = match *column {
                    "normalized_pattern" => format!("normalized text {}", refusal.reason()),
                    _ => refusal.reason(),
                };
                ApiError::invalid(*field, reason)
            }
            _ => ApiError::reasoned(
                Reason::StoreRefused,
                format!("the pattern table refused the request: {refusal}; nothing was changed"),
                column
                    .map(|c| vec![("column", c.to_owned())])
                    .unwrap_or_default(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    /// For reads and for writes of no request field (status changes, deletes): a refusal is
    /// the table's state, `FAILED_PRECONDITION`.
    fn from(e: StoreError) -> ApiError {
        ApiError::from_store_write(e, &[])
    }
}

impl From<LoadError> for ApiError {
    fn from(e: LoadError) -> ApiError {
        match e {
            LoadError::Invalid(m) => ApiError::reasoned(
                Reason::ReloadRejected,
                format!("reload rejected, the previous generation keeps serving: {m}"),
                vec![],
            ),
            LoadError::Store(m) => {
                error!(error = %m, "reload failed reading the store");
                ApiError::reasoned(
                    Reason::StoreUnavailable,
                    "reload failed: the pattern store is unavailable; the previous generation \
                     keeps serving (see HotReload.GetStatus last_error)",
                    vec![],
                )
            }
            LoadError::StoreFailed(m) => {
                error!(error = %m, "reload failed reading the store, permanently");
                ApiError::reasoned(
                    Reason::StoreFailed,
                    "reload failed: the pattern store answered with an error retrying will not \
                     fix; the previous generation keeps serving (see HotReload.GetStatus \
                     last_error)",
                    vec![],
                )
            }
            LoadError::Closed => ApiError::reasoned(
                Reason::ShuttingDown,
                "the server is shutting down; retry on another replica",
                vec![],
            ),
            LoadError::NotRetained {
                wanted,
                ref retained,
            } => {
                let list = retained.iter().map(u64::to_string).collect::<Vec<_>>();
                ApiError::not_found(
                    Reason::GenerationNotRetained,
                    e.to_string(),
                    ("generation", wanted.to_string()),
                    vec![
                        ("requested_generation", wanted.to_string()),
                        ("retained_generations", list.join(",")),
                    ],
                )
            }
            // Only a bus follower's rollback looks a generation up by content hash; its
            // failure is reported in the fleet's rollback_error, never answered to a caller.
            e @ LoadError::ContentNotRetained { .. } => ApiError::NotFound(e.to_string()),
        }
    }
}

impl From<Violation> for ApiError {
    fn from(v: Violation) -> ApiError {
        ApiError::invalid(v.field, v.reason)
    }
}

/// Result of a handler body.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limit, Problem, Refusal};

    #[test]
    fn invalid_argument_names_the_field_in_details() {
        let status = Status::from(ApiError::invalid("queries[2]", "longer than 4096 bytes"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let br = details.bad_request().expect("bad request detail");
        assert_eq!(br.field_violations[0].field, "queries[2]");
        assert!(status.message().contains("queries[2]"));
    }

    #[test]
    fn store_errors_do_not_leak_driver_text() {
        // Permanent, not the caller's fault: INTERNAL, never UNAVAILABLE (no retry loops).
        let status = Status::from(ApiError::from(StoreError::BadRow {
            id: 1,
            reason: "secret internals".into(),
        }));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
        // The database unreachable: retry later.
        let status = Status::from(ApiError::from(StoreError::Query {
            what: "reading",
            source: sqlx::Error::Io(std::io::Error::other("secret socket")),
        }));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("secret"));
    }

    /// Every UNAVAILABLE says when to retry; a reason fills the ErrorInfo and picks the code.
    #[test]
    fn unavailable_always_carries_retry_info_and_reasons_their_code() {
        for e in [
            ApiError::Unavailable("legacy".into()),
            ApiError::from(LoadError::Closed),
            ApiError::from(LoadError::Store("secret".into())),
        ] {
            let status = Status::from(e);
            assert_eq!(status.code(), Code::Unavailable);
            let retry = status.get_error_details().retry_info().cloned();
            assert_eq!(retry.expect("RetryInfo").retry_delay, Some(RETRY_AFTER));
            assert!(!status.message().contains("secret"));
        }
        let status = Status::from(ApiError::from(LoadError::NotRetained {
            wanted: 7,
            retained: vec![5, 4],
        }));
        assert_eq!(status.code(), Code::NotFound);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "GENERATION_NOT_RETAINED");
        assert_eq!(info.metadata["retained_generations"], "5,4");
        assert!(details.retry_info().is_none());
    }

    fn refused(column: &str, problem: Problem) -> StoreError {
        StoreError::Refused {
            what: "learning a pattern",
            refusal: Refusal {
                column: Some(column.into()),
                problem,
            },
            source: sqlx::Error::Protocol("secret driver text".into()),
        }
    }

    #[test]
    fn refusals_name_the_field_or_are_preconditions() {
        let too_long = Problem::TooLong {
            limit: Some(Limit {
                chars: 20,
                from_table: true,
            }),
        };
        let fields = &[("created_by", "created_by")];
        let status = Status::from(ApiError::from_store_write(
            refused("created_by", too_long.clone()),
            fields,
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let br = details.bad_request().expect("detail");
        assert_eq!(br.field_violations[0].field, "created_by");
        assert!(
            status
                .message()
                .contains("at most 20 characters (the table's column limit)")
        );
        assert!(!status.message().contains("secret"));
        // No request field wrote the column: the table's state.
        let status = Status::from(ApiError::from(refused("created_by", too_long)));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(!status.message().contains("secret"));
        // Another row holds the value: a conflict, whatever field wrote it.
        let conflict = Problem::Conflict { constraint: None };
        let status = Status::from(ApiError::from_store_write(
            refused("created_by", conflict),
            fields,
        ));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "STORE_REFUSED");
        assert_eq!(info.metadata["column"], "created_by");
    }
}

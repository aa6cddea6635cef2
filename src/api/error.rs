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

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{error, warn};

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
    /// The request cannot be served in the current state (e.g. generation too old).
    #[error("{0}")]
    FailedPrecondition(String),
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
}

impl ApiError {
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
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Internal(m) => Status::internal(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::Unimplemented(m) => Status::unimplemented(m),
        }
    }
}

impl ApiError {
    /// A store error from a write whose columns come from request fields, as `(column, field)`
    /// pairs: a value the table refuses in one of them is that field's `INVALID_ARGUMENT`.
    pub fn from_store_write(e: StoreError, fields: &[(&str, &'static str)]) -> ApiError {
        if e.is_transient() {
            error!(error = %e, "pattern store request failed; the client is told to retry");
            return ApiError::Unavailable(
                "the pattern store is unavailable; nothing was changed, retry later".into(),
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
            _ => ApiError::FailedPrecondition(format!(
                "the pattern table refused the request: {refusal}; nothing was changed"
            )),
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
            LoadError::Invalid(m) => ApiError::FailedPrecondition(format!(
                "reload rejected, the previous generation keeps serving: {m}"
            )),
            LoadError::Store(m) => {
                error!(error = %m, "reload failed reading the store");
                ApiError::Unavailable(
                    "reload failed: the pattern store is unavailable; the previous generation \
                     keeps serving (see HotReload.GetStatus last_error)"
                        .into(),
                )
            }
            LoadError::StoreFailed(m) => {
                error!(error = %m, "reload failed reading the store, permanently");
                ApiError::FailedPrecondition(
                    "reload failed: the pattern store answered with an error retrying will not \
                     fix; the previous generation keeps serving (see HotReload.GetStatus \
                     last_error)"
                        .into(),
                )
            }
            LoadError::Closed => ApiError::Unavailable("the server is shutting down".into()),
            e @ (LoadError::NotRetained { .. } | LoadError::ContentNotRetained { .. }) => {
                ApiError::NotFound(e.to_string())
            }
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
    }
}

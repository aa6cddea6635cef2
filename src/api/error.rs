//! The one mapping from internal errors to gRPC statuses.
//!
//! Handlers return [`ApiError`]; `From<ApiError> for Status` is the only place a status code is
//! chosen. Invalid arguments carry a `BadRequest` detail naming the field, so generated clients
//! can point at it. Internal causes (driver errors, SQL) are logged here and not sent to callers.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::error;

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
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::Unimplemented(m) => Status::unimplemented(m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        error!(error = %e, "pattern store request failed");
        ApiError::Unavailable(
            "the pattern store is unavailable; nothing was changed, retry later".into(),
        )
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
        let status = Status::from(ApiError::from(StoreError::BadRow {
            id: 1,
            reason: "secret internals".into(),
        }));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("secret"));
    }
}

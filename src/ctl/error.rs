//! What `hotplane ctl` says when something fails, and the exit status scripts rely on.
//!
//! One line on stderr: the gRPC code, the server's message and every `google.rpc` error detail
//! it attached, decoded generically with tonic-types (BadRequest names the field, ErrorInfo its
//! reason and metadata, RetryInfo the delay, ResourceInfo the resource, and so on), so a detail
//! kind the server starts sending later shows up without a change here. With `--json` the line
//! is one JSON object instead, the details in proto3 JSON.
//!
//! Exit statuses, grouped as sysexits(3) groups failures (by what the caller should do next,
//! not by which call failed), but small numbers, with 2 for usage as clap and most tools use:
//! see [`Exit`] and docs/cli.md.

use prost::Message;
use serde_json::{Value, json};
use tonic::{Code, Status};
use tonic_types::{ErrorDetail, StatusExt};

use super::connect::ConnectError;

/// The exit status of `hotplane ctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The command did what was asked.
    Ok = 0,
    /// The server understood and said no (FAILED_PRECONDITION, NOT_FOUND, ALREADY_EXISTS,
    /// ABORTED), or a wait it was asked for ended unmet (`--wait-for-fleet` without
    /// convergence, `drain start --wait` with work still running): the state must change first
    /// (sysexits' EX_DATAERR/EX_NOINPUT family).
    Refused = 1,
    /// The command line or its input is wrong: clap's usage errors, INVALID_ARGUMENT and
    /// OUT_OF_RANGE from the server, a bad `--metadata`, an unreadable TLS file. Repeating it
    /// unchanged fails again (EX_USAGE, EX_DATAERR, EX_CONFIG).
    Usage = 2,
    /// The server could not be reached or asked to come back later: no connection, a TLS
    /// handshake failure, no answer in time, UNAVAILABLE (draining), DEADLINE_EXCEEDED,
    /// RESOURCE_EXHAUSTED (rate limits, stream caps). Retrying later may work (EX_UNAVAILABLE,
    /// EX_TEMPFAIL).
    Unavailable = 3,
    /// Credentials are missing, wrong or not enough: UNAUTHENTICATED, PERMISSION_DENIED
    /// (EX_NOPERM).
    Auth = 4,
    /// The server failed (INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED, CANCELLED), or the
    /// output could not be written: report it (EX_SOFTWARE).
    Failed = 5,
}

impl Exit {
    /// The exit status for a gRPC code.
    pub fn for_code(code: Code) -> Exit {
        match code {
            Code::Ok => Exit::Ok,
            Code::FailedPrecondition | Code::NotFound | Code::AlreadyExists | Code::Aborted => {
                Exit::Refused
            }
            Code::InvalidArgument | Code::OutOfRange => Exit::Usage,
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                Exit::Unavailable
            }
            Code::Unauthenticated | Code::PermissionDenied => Exit::Auth,
            Code::Internal
            | Code::Unknown
            | Code::DataLoss
            | Code::Unimplemented
            | Code::Cancelled => Exit::Failed,
        }
    }
}

/// A failure: its exit status, its one line, and the same as JSON.
#[derive(Debug, Clone)]
pub struct CtlError {
    /// The exit status.
    pub exit: Exit,
    /// The message, one line, without the program name.
    pub line: String,
    /// `{"error": {...}}` for `--json`.
    pub json: Value,
}

impl CtlError {
    /// A failure found before or without asking the server.
    pub fn local(exit: Exit, line: impl Into<String>) -> CtlError {
        let line = one_line(&line.into());
        CtlError {
            exit,
            json: json!({"error": {"exit_code": exit as u8, "message": line}}),
            line,
        }
    }

    /// Bad input found before asking the server.
    pub fn usage(line: impl Into<String>) -> CtlError {
        CtlError::local(Exit::Usage, line)
    }

    /// What the server (or the transport) answered.
    pub fn from_status(status: &Status) -> CtlError {
        let exit = Exit::for_code(status.code());
        let name = code_name(status.code());
        let message = one_line(status.message());
        let mut line = format!("{name}: {message}");
        let details = status.get_error_details_vec();
        for detail in &details {
            if let Some(text) = describe(detail, &message) {
                line.push_str(&format!(" ({text})"));
            }
        }
        if message.is_empty() && details.is_empty() {
            line = name.to_owned();
        }
        let json = json!({"error": {
            "code": name,
            "exit_code": exit as u8,
            "message": status.message(),
            "details": details_json(status),
        }});
        CtlError { exit, line, json }
    }
}

impl From<Status> for CtlError {
    fn from(status: Status) -> CtlError {
        CtlError::from_status(&status)
    }
}

impl From<ConnectError> for CtlError {
    fn from(e: ConnectError) -> CtlError {
        match e {
            ConnectError::Setup(m) => CtlError::local(Exit::Usage, m),
            ConnectError::Unreachable(m) => CtlError::local(Exit::Unavailable, m),
        }
    }
}

/// One detail in a few words; `None` when it adds nothing to `message`.
fn describe(detail: &ErrorDetail, message: &str) -> Option<String> {
    let also = |text: &str| -> String {
        if text.is_empty() || message.contains(text) {
            String::new()
        } else {
            format!(": {}", one_line(text))
        }
    };
    let parts: Vec<String> = match detail {
        ErrorDetail::BadRequest(b) => b
            .field_violations
            .iter()
            .map(|v| format!("field {}{}", v.field, also(&v.description)))
            .collect(),
        ErrorDetail::ErrorInfo(i) => {
            let mut meta: Vec<_> = i.metadata.iter().collect();
            meta.sort();
            let mut text = format!("reason {}", i.reason);
            if !i.domain.is_empty() {
                text.push_str(&format!(", domain {}", i.domain));
            }
            for (k, v) in meta {
                text.push_str(&format!(", {k}={v}"));
            }
            vec![text]
        }
        ErrorDetail::RetryInfo(r) => r
            .retry_delay
            .map(|d| format!("retry in {}", humantime::format_duration(d)))
            .into_iter()
            .collect(),
        ErrorDetail::ResourceInfo(r) => {
            let mut text = format!("{} {}", r.resource_type, r.resource_name);
            if !r.owner.is_empty() {
                text.push_str(&format!(" of {}", r.owner));
            }
            vec![format!("resource {}{}", text.trim(), also(&r.description))]
        }
        ErrorDetail::PreconditionFailure(p) => p
            .violations
            .iter()
            .map(|v| {
                format!(
                    "precondition {} {}{}",
                    v.r#type,
                    v.subject,
                    also(&v.description)
                )
            })
            .collect(),
        ErrorDetail::QuotaFailure(q) => q
            .violations
            .iter()
            .map(|v| format!("quota {}{}", v.subject, also(&v.description)))
            .collect(),
        ErrorDetail::RequestInfo(r) => vec![format!("request {}", r.request_id)],
        ErrorDetail::Help(h) => h.links.iter().map(|l| format!("see {}", l.url)).collect(),
        ErrorDetail::LocalizedMessage(m) => vec![one_line(&m.message)]
            .into_iter()
            .filter(|m| !m.is_empty() && !message.contains(m.as_str()))
            .collect(),
        ErrorDetail::DebugInfo(d) => vec![format!("debug {}", one_line(&d.detail))],
        // A kind tonic-types adds later: shown as it prints itself.
        other => vec![one_line(&format!("{other:?}"))],
    };
    let parts: Vec<String> = parts.into_iter().filter(|p| !p.trim().is_empty()).collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Every detail of `status` as proto3 JSON with its `@type`, whatever its kind (a type not in
/// the descriptor pool keeps its `@type` and its bytes in base64).
fn details_json(status: &Status) -> Vec<Value> {
    let Ok(decoded) = tonic_types::pb::Status::decode(status.details()) else {
        return Vec::new();
    };
    decoded
        .details
        .iter()
        .map(|any| super::json::any_to_json(&any.type_url, &any.value))
        .collect()
}

/// The canonical name of a gRPC code (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `text` with every line break and run of whitespace as one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_types::{ErrorDetails, FieldViolation};

    use super::*;

    #[test]
    fn a_bad_request_names_the_field_on_one_line_and_exits_2() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "confidence 0.5 is below\nthe threshold",
            ErrorDetails::with_bad_request(vec![FieldViolation::new("confidence", "too low")]),
        );
        let e = CtlError::from_status(&status);
        assert_eq!(e.exit, Exit::Usage);
        assert_eq!(
            e.line,
            "INVALID_ARGUMENT: confidence 0.5 is below the threshold (field confidence: too low)"
        );
        let details = &e.json["error"]["details"];
        assert_eq!(
            details[0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(details[0]["field_violations"][0]["field"], "confidence");
    }

    #[test]
    fn every_detail_kind_is_decoded() {
        let mut details = ErrorDetails::with_retry_info(Some(Duration::from_millis(250)));
        details
            .set_error_info(
                "GENERATION_AHEAD",
                "hotplane",
                [("served_generation".to_owned(), "3".to_owned())],
            )
            .set_resource_info("pattern", "42", "", "no such row");
        let e = CtlError::from_status(&Status::with_error_details(
            Code::FailedPrecondition,
            "ahead",
            details,
        ));
        assert_eq!(e.exit, Exit::Refused);
        for part in [
            "retry in 250ms",
            "reason GENERATION_AHEAD, domain hotplane, served_generation=3",
            "resource pattern 42: no such row",
        ] {
            assert!(e.line.contains(part), "{part:?} in {:?}", e.line);
        }
        assert_eq!(e.json["error"]["details"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn codes_map_to_distinct_groups() {
        assert_eq!(Exit::for_code(Code::Unauthenticated), Exit::Auth);
        assert_eq!(Exit::for_code(Code::PermissionDenied), Exit::Auth);
        assert_eq!(Exit::for_code(Code::Unavailable), Exit::Unavailable);
        assert_eq!(Exit::for_code(Code::NotFound), Exit::Refused);
        assert_eq!(Exit::for_code(Code::Internal), Exit::Failed);
    }
}

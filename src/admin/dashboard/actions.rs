//! The dashboard's actions (admin scope): Reload, Rollback, Start/Stop drain. Each calls the
//! gRPC handler itself with the dashboard's caller in the request, so validation, the audit
//! trail and the WatchStatus events are those of the RPC; a refusal is answered with the gRPC
//! code and message, under the HTTP status that code maps to.

use std::net::SocketAddr;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tonic::Code;

use super::{ErrorBody, Shared, access, json, view};
use crate::{
    auth::{Caller, Scope},
    pb::{self, drain_server::Drain, hot_reload_server::HotReload},
};

/// The reason recorded when the page sends none.
const DEFAULT_REASON: &str = "dashboard";

/// A refused or failed call: the HTTP status, the gRPC code's name and the message.
#[derive(Debug)]
pub(super) struct Failure {
    http: StatusCode,
    code: String,
    message: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        json(
            self.http,
            &ErrorBody {
                code: &self.code,
                message: &self.message,
            },
        )
    }
}

impl From<access::Refusal> for Failure {
    fn from(refusal: access::Refusal) -> Failure {
        let (http, message) = refusal;
        let code = match http {
            StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
            StatusCode::TOO_MANY_REQUESTS => "RESOURCE_EXHAUSTED",
            StatusCode::BAD_REQUEST => "INVALID_ARGUMENT",
            _ => "PERMISSION_DENIED",
        };
        Failure {
            http,
            code: code.into(),
            message,
        }
    }
}

/// Parses a JSON body; a bad one is answered 400 naming the field.
pub(super) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let message = if field == "." {
            format!("bad request body: {}", e.inner())
        } else {
            format!("{field}: {}", e.inner())
        };
        Failure {
            http: StatusCode::BAD_REQUEST,
            code: "INVALID_ARGUMENT".into(),
            message,
        }
    })
}

/// The HTTP answer to a gRPC status: the code's name and the message, under the HTTP status
/// the gRPC code maps to (as grpc-gateway maps them).
pub(super) fn grpc_error(status: &tonic::Status) -> Failure {
    let http = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Failure {
        http,
        code: grpc_name(&format!("{:?}", status.code())),
        message: status.message().to_owned(),
    }
}

/// `FailedPrecondition` → `FAILED_PRECONDITION`.
fn grpc_name(debug: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The admin caller of an action, or the answer refusing it.
fn admit(d: &super::Dashboard, peer: SocketAddr, headers: &HeaderMap) -> Result<Caller, Failure> {
    access::same_origin(headers)
        .and_then(|()| d.access.admit(Scope::Admin, peer, headers))
        .map_err(Failure::from)
}

/// A gRPC request carrying the dashboard's caller (what the audit trail records).
fn request<T>(message: T, caller: Caller) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.extensions_mut().insert(caller);
    req
}

fn reason_or_default(reason: String) -> String {
    if reason.trim().is_empty() {
        DEFAULT_REASON.into()
    } else {
        reason
    }
}

/// Runs one action, the steps every action shares: the admin caller (or the refusal), the
/// in-flight count when `track` names the route (reloads and rollbacks are counted like the RPCs;
/// drain starts and stops are not, so a drain never waits for the call that started it), the
/// body as `I` (400 naming the field), then `call` (the gRPC handler, given the input and the
/// caller) and its answer as JSON, or the gRPC refusal under its HTTP status.
async fn act<I, V, F, Fut>(
    d: &super::Dashboard,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
    track: Option<&'static str>,
    call: F,
) -> Response
where
    I: DeserializeOwned,
    V: Serialize,
    F: FnOnce(I, Caller) -> Fut,
    Fut: Future<Output = Result<V, tonic::Status>>,
{
    let run = async {
        let caller = admit(d, peer, headers)?;
        let _tracked = track.map(|path| d.lifecycle.track(path, false));
        let input: I = parse(body)?;
        let answer = call(input, caller).await.map_err(|s| grpc_error(&s))?;
        Ok(json(StatusCode::OK, &answer))
    };
    run.await.unwrap_or_else(|f: Failure| f.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReloadInput {
    /// Read every row, not only what changed.
    #[serde(default)]
    full: bool,
    #[serde(default)]
    reason: String,
}

/// `POST /api/actions/reload`: `Reload(TARGET_PATTERNS)`.
pub(super) async fn reload(
    State(d): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = d.reload.clone();
    let call = async move |input: ReloadInput, caller: Caller| {
        let req = pb::ReloadRequest {
            target: pb::Target::Patterns.into(),
            full: input.full,
            reason: reason_or_default(input.reason),
            ..Default::default()
        };
        let answer = api.reload(request(req, caller)).await?;
        Ok::<_, tonic::Status>(view::ReloadView::of(answer.get_ref()))
    };
    act(&d, peer, &headers, &body, Some("/api/actions/reload"), call).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackInput {
    /// A retained generation (0: the previous one).
    #[serde(default)]
    to_generation: u64,
    #[serde(default)]
    reason: String,
}

/// `POST /api/actions/rollback`: `Rollback(TARGET_PATTERNS)`.
pub(super) async fn rollback(
    State(d): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = d.reload.clone();
    let call = async move |input: RollbackInput, caller: Caller| {
        let req = pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            to_generation: input.to_generation,
            reason: reason_or_default(input.reason),
            ..Default::default()
        };
        let answer = api.rollback(request(req, caller)).await?;
        Ok::<_, tonic::Status>(view::RollbackView::of(answer.get_ref()))
    };
    act(
        &d,
        peer,
        &headers,
        &body,
        Some("/api/actions/rollback"),
        call,
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrainInput {
    #[serde(default)]
    reason: String,
}

/// `POST /api/actions/drain/start`: `StartDrain` (without `wait`).
pub(super) async fn start_drain(
    State(d): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = d.drain.clone();
    let call = async move |input: DrainInput, caller: Caller| {
        let req = pb::StartDrainRequest {
            reason: reason_or_default(input.reason),
            ..Default::default()
        };
        let answer = api.start_drain(request(req, caller)).await?;
        let status = answer.into_inner().status.unwrap_or_default();
        Ok::<_, tonic::Status>(view::DrainView::of(&status))
    };
    act(&d, peer, &headers, &body, None, call).await
}

/// `POST /api/actions/drain/stop`: `StopDrain` (the body may only be empty or `{}`-like).
pub(super) async fn stop_drain(
    State(d): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = d.drain.clone();
    let call = async move |_: DrainInput, caller: Caller| {
        let answer = api
            .stop_drain(request(pb::StopDrainRequest {}, caller))
            .await?;
        let status = answer.into_inner().status.unwrap_or_default();
        Ok::<_, tonic::Status>(view::DrainView::of(&status))
    };
    act(&d, peer, &headers, &body, None, call).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_named_as_in_the_spec() {
        assert_eq!(grpc_name("FailedPrecondition"), "FAILED_PRECONDITION");
        assert_eq!(grpc_name("NotFound"), "NOT_FOUND");
        assert_eq!(grpc_name("Internal"), "INTERNAL");
    }

    #[test]
    fn a_bad_body_names_the_field() {
        let err = parse::<RollbackInput>(br#"{"to_generation":"x"}"#).expect_err("bad");
        assert_eq!(err.http, StatusCode::BAD_REQUEST);
        let err = parse::<RollbackInput>(br#"{"generation":1}"#).expect_err("unknown");
        assert_eq!(err.http, StatusCode::BAD_REQUEST);
    }
}

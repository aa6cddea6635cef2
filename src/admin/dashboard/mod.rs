//! The live status dashboard at `/` on the admin listener: one page (HTML, CSS and JavaScript
//! embedded in the binary, no CDN, no build step) showing this replica, its bus and its fleet,
//! updated live, with the admin actions for callers holding the `admin` scope.
//!
//! **Live data is Server-Sent Events** (`GET /api/events`) from the WatchStatus producer itself:
//! the handler calls [`HotReloadApi`]'s `watch_status`, so the page sees exactly the stream a
//! gRPC client sees (snapshot or replay, numbered events, heartbeats, resync on lag) under the
//! same per-caller stream limit. SSE rather than grpc-web because the browser needs no protobuf
//! code, `EventSource` reconnects by itself and resumes with `Last-Event-ID` (mapped to
//! `after_event_id`), and it is plain HTTP/1.1, which `kubectl port-forward` and every proxy
//! pass. An SSE `id:` is `INSTANCE:EVENT_ID`: event ids are per process, so a resume against
//! another process (a restart, or another replica behind a Service) starts with a snapshot
//! marked `resync` instead of replaying someone else's numbers.
//!
//! Actions (`POST /api/actions/...`) call the gRPC handlers themselves with the dashboard
//! caller in the request, so the audit trail, the events and the errors are those of the RPC.
//! Who may do what is [`access`]'s business. `/metrics` is not behind any of this (scrapers).

mod access;
mod actions;
mod view;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;

pub use access::Access;

use super::StatusSource;
use crate::{
    api::{DrainApi, HotReloadApi},
    auth::{Authenticator, RateLimiter, Scope},
    lifecycle::Drain,
    pb::{self, hot_reload_server::HotReload},
};
use view::{EventView, StatusView};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// How long a browser waits before reconnecting a dropped stream.
const RECONNECT: Duration = Duration::from_secs(1);

/// What the dashboard serves from.
pub struct Dashboard {
    access: Access,
    reload: HotReloadApi,
    drain: DrainApi,
    status: StatusSource,
    instance_id: String,
    /// Counts the page's streams and actions as the gRPC port's are (drain status shows them).
    lifecycle: Drain,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

/// The pieces the dashboard is made of (the gRPC side's own, shared).
pub struct DashboardParts {
    /// The gRPC port's authenticator (the same credentials and scopes).
    pub auth: Arc<Authenticator>,
    /// The gRPC port's limit on state-changing calls.
    pub limiter: Arc<RateLimiter>,
    /// The HotReload handlers (WatchStatus, Reload, Rollback).
    pub reload: HotReloadApi,
    /// The Drain handlers.
    pub drain: DrainApi,
    /// This replica's status (what GetStatus answers).
    pub status: StatusSource,
    /// This process's instance id.
    pub instance_id: String,
    /// In-flight accounting (what the drain waits for and status shows).
    pub lifecycle: Drain,
}

impl Dashboard {
    /// The dashboard over `parts`.
    pub fn new(parts: DashboardParts) -> Dashboard {
        Dashboard {
            access: Access::new(parts.auth, parts.limiter),
            reload: parts.reload,
            drain: parts.drain,
            status: parts.status,
            instance_id: parts.instance_id,
            lifecycle: parts.lifecycle,
        }
    }
}

/// The dashboard's routes (served with `ConnectInfo<SocketAddr>`: the peer decides access).
pub fn routes(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/app.js", get(app_js))
        .route("/dashboard/app.css", get(app_css))
        .route("/api/session", get(whoami).post(sign_in).delete(sign_out))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/api/actions/reload", post(actions::reload))
        .route("/api/actions/rollback", post(actions::rollback))
        .route("/api/actions/drain/start", post(actions::start_drain))
        .route("/api/actions/drain/stop", post(actions::stop_drain))
        .with_state(dashboard)
}

type Shared = State<Arc<Dashboard>>;
type Peer = ConnectInfo<SocketAddr>;

/// A JSON answer.
fn json(code: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

/// An error answer: `{"code": ..., "message": ...}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

fn refuse(refusal: access::Refusal) -> Response {
    actions::Failure::from(refusal).into_response()
}

/// A static asset, with headers that keep the page from being framed or fed foreign scripts.
fn asset(
    peer: SocketAddr,
    headers: &HeaderMap,
    d: &Dashboard,
    kind: &str,
    body: &'static str,
) -> Response {
    if let Err(r) = d.access.page(peer, headers) {
        return refuse(r);
    }
    let mut response = ([(header::CONTENT_TYPE, kind)], body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn index(State(d): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    asset(peer, &headers, &d, "text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js(State(d): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    asset(peer, &headers, &d, "text/javascript; charset=utf-8", APP_JS)
}

async fn app_css(State(d): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    asset(peer, &headers, &d, "text/css; charset=utf-8", APP_CSS)
}

/// Who the page's caller is.
#[derive(Serialize)]
struct WhoAmI<'a> {
    name: &'a str,
    /// `read` or `admin`.
    scope: String,
    /// Whether credentials are configured (else: the loopback rule).
    credentials_required: bool,
}

fn who(d: &Dashboard, caller: &crate::auth::Caller) -> Response {
    json(
        StatusCode::OK,
        &WhoAmI {
            name: &caller.name,
            scope: caller.scopes.to_string(),
            credentials_required: d.access.credentials_required(),
        },
    )
}

async fn whoami(State(d): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    match d.access.admit(Scope::Read, peer, &headers) {
        Ok(caller) => who(&d, &caller),
        Err(r) => refuse(r),
    }
}

/// A sign-in's body (no `Debug`: it holds the token).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

async fn sign_in(
    State(d): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = access::same_origin(&headers).and_then(|()| d.access.page(peer, &headers)) {
        return refuse(r);
    }
    let input: SignIn = match actions::parse(&body) {
        Ok(v) => v,
        Err(f) => return f.into_response(),
    };
    match d.access.sign_in(input.token.trim(), peer) {
        Ok((id, caller)) => {
            let mut response = who(&d, &caller);
            if let Ok(v) = HeaderValue::from_str(&access::cookie(Some(&id))) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(r) => refuse(r),
    }
}

async fn sign_out(State(d): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = access::same_origin(&headers) {
        return refuse(r);
    }
    d.access.sign_out(&headers);
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&access::cookie(None)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn status(State(d): Shared, ConnectInfo(peer): Peer, headers: HeaderMap) -> Response {
    match d.access.admit(Scope::Read, peer, &headers) {
        Ok(_) => json(StatusCode::OK, &StatusView::of(&(d.status)())),
        Err(r) => refuse(r),
    }
}

/// Where a reconnecting browser resumes: `after_event_id`, and whether its position belongs to
/// another process (then it gets a snapshot, marked as a resync).
/// The position is the `Last-Event-ID` header (what `EventSource` sends when it reconnects), or
/// the `last_event_id` query parameter (a stream the page re-opens itself).
fn resume_point(headers: &HeaderMap, query: Option<&str>, instance_id: &str) -> (u64, bool) {
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "last_event_id")
            .map(|(_, v)| v.replace("%3A", ":").replace("%3a", ":"))
    });
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(last) = header.or(from_query) else {
        return (0, false);
    };
    match last.rsplit_once(':') {
        Some((instance, id)) if instance == instance_id => match id.parse() {
            Ok(id) => (id, false),
            Err(_) => (0, true),
        },
        _ => (0, true),
    }
}

async fn events(
    State(d): Shared,
    ConnectInfo(peer): Peer,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let caller = match d.access.admit(Scope::Read, peer, &headers) {
        Ok(c) => c,
        Err(r) => return refuse(r),
    };
    let (after_event_id, mut resync) = resume_point(&headers, uri.query(), &d.instance_id);
    let mut req = tonic::Request::new(pb::WatchStatusRequest {
        after_event_id,
        ..Default::default()
    });
    req.extensions_mut().insert(caller);
    let stream = match d.reload.watch_status(req).await {
        Ok(r) => r.into_inner(),
        Err(status) => return actions::grpc_error(&status).into_response(),
    };
    let instance = d.instance_id.clone();
    let mut first = true;
    // An open stream, like a WatchStatus stream on the gRPC port, until the browser goes away.
    let tracked = d.lifecycle.track("/api/events", true);
    let sse = stream.map(move |item| {
        let _ = &tracked;
        let mut event = match item {
            Ok(msg) => {
                let mut v = EventView::of(&msg);
                // A resume against another process: its snapshot is a resync.
                v.resync |= std::mem::take(&mut resync);
                let data = serde_json::to_string(&v).unwrap_or_else(|_| "{}".into());
                Event::default()
                    .id(format!("{instance}:{}", msg.event_id))
                    .data(data)
            }
            Err(status) => Event::default().event("error").data(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            )),
        };
        if std::mem::take(&mut first) {
            event = event.retry(RECONNECT);
        }
        Ok::<_, Infallible>(event)
    });
    let mut response = Sse::new(sse).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_from_another_process_is_a_resync() {
        let mut h = HeaderMap::new();
        assert_eq!(resume_point(&h, None, "me"), (0, false));
        assert_eq!(
            resume_point(&h, Some("last_event_id=me%3A5"), "me"),
            (5, false)
        );
        h.insert("last-event-id", "me:7".parse().expect("v"));
        assert_eq!(
            resume_point(&h, Some("last_event_id=me%3A5"), "me"),
            (7, false)
        );
        h.insert("last-event-id", "other:7".parse().expect("v"));
        assert_eq!(resume_point(&h, None, "me"), (0, true));
        h.insert("last-event-id", "7".parse().expect("v"));
        assert_eq!(resume_point(&h, None, "me"), (0, true));
    }
}

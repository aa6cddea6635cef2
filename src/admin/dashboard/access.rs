//! Who may use the dashboard: the gRPC port's rules ([`Authenticator::authorize`], scopes
//! `read` and `admin`), adapted to a browser.
//!
//! - **Credentials configured** (tokens file or JWTs): every data route needs the `read` scope,
//!   every action `admin`. A browser's `EventSource` cannot send an `Authorization` header, so
//!   the page POSTs the token once to `/api/session` and gets an `HttpOnly`, `SameSite=Strict`
//!   session cookie. The session holds the token in memory only and every request re-checks it
//!   with the authenticator, so a token removed by a config reload, or a JWT that expires, stops
//!   working at once. A request may also send `Authorization: Bearer` itself (curl, tests).
//!   Client certificates do not apply: the admin listener is plain HTTP.
//! - **No credentials**: only loopback peers get in (the page, its data and its actions), and
//!   only when the `Host` header names loopback too, so a web page that rebinds its DNS name to
//!   127.0.0.1 cannot read the dashboard. This is stricter than the gRPC port, whose read RPCs
//!   are open to anyone without credentials: a browser page is reachable by every other page
//!   the browser opens.
//!
//! Actions (POST) are guarded against cross-site requests three ways: the cookie is
//! `SameSite=Strict`, the request must carry the `x-hotplane-dashboard` header (which a
//! cross-origin page cannot send without a CORS preflight this listener never approves), and an
//! `Origin` header, when present, must name this host.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, StatusCode, header};

use crate::auth::{
    Authenticator, Caller, CredentialKind, Presented, RateLimiter, Scope, is_loopback_peer,
};

/// The session cookie's name.
pub const COOKIE: &str = "hotplane_session";
/// The header every state-changing request must carry (its value is not checked).
pub const CSRF_HEADER: &str = "x-hotplane-dashboard";
/// A session lasts this long (the token is re-checked on every request anyway).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held at once; past it the one closest to expiry is dropped.
pub const MAX_SESSIONS: usize = 256;

/// A refusal: the HTTP status and a message for the page.
pub type Refusal = (StatusCode, String);

/// One signed-in browser.
struct Session {
    /// The token it presented (never logged, never sent back).
    token: String,
    expires: Instant,
}

/// The dashboard's gate: the gRPC port's authenticator and rate limiter, and the sessions.
pub struct Access {
    auth: Arc<Authenticator>,
    limiter: Arc<RateLimiter>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").finish_non_exhaustive()
    }
}

impl Access {
    /// A gate over the gRPC port's authenticator and rate limiter.
    pub fn new(auth: Arc<Authenticator>, limiter: Arc<RateLimiter>) -> Access {
        Access {
            auth,
            limiter,
            sessions: Mutex::default(),
        }
    }

    /// Whether credentials are configured (else the loopback rule applies).
    pub fn credentials_required(&self) -> bool {
        self.auth.has_credentials()
    }

    /// Whether `peer` may load the page itself (no data in it): anyone who reaches the listener
    /// when credentials are configured, only loopback otherwise.
    pub fn page(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.credentials_required() {
            Ok(())
        } else {
            local_only(peer, headers)
        }
    }

    /// The caller of a request that needs `scope`, or why it is refused.
    pub fn admit(
        &self,
        scope: Scope,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<Caller, Refusal> {
        if !self.credentials_required() {
            local_only(peer, headers)?;
        }
        let session_token = session_id(headers).and_then(|id| self.token_of(&id));
        let bearer = session_token.map(|t| format!("Bearer {t}"));
        let authorization = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .or(bearer.as_deref().map(str::as_bytes));
        let presented = Presented {
            authorization,
            certificate_subject: None,
            peer: Some(peer),
        };
        let caller = self
            .auth
            .authorize(scope, presented, is_loopback_peer)
            .map_err(|e| match e {
                crate::auth::AuthError::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m),
                crate::auth::AuthError::PermissionDenied(m) => (StatusCode::FORBIDDEN, m),
            })?;
        if caller.via == CredentialKind::Anonymous {
            // Unreachable after `local_only`, kept so no path opens the page to anyone.
            return Err((StatusCode::FORBIDDEN, "loopback only".into()));
        }
        if scope == Scope::Admin {
            let key = match caller.via {
                CredentialKind::Loopback => format!("loopback:{peer}"),
                _ => caller.name.clone(),
            };
            if let Err(wait) = self.limiter.check(&key) {
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "caller {:?} exceeded its rate of state-changing calls; retry in {} ms",
                        caller.name,
                        wait.as_millis().max(1)
                    ),
                ));
            }
        }
        Ok(caller)
    }

    /// Checks `token` (it needs at least `read`) and opens a session for it: the cookie's value.
    pub fn sign_in(&self, token: &str, peer: SocketAddr) -> Result<(String, Caller), Refusal> {
        if !self.credentials_required() {
            return Err((
                StatusCode::BAD_REQUEST,
                "no credentials are configured: there is nothing to sign in to (loopback peers \
                 get in without a token)"
                    .into(),
            ));
        }
        let authorization = format!("Bearer {token}");
        let caller = self
            .auth
            .authorize(
                Scope::Read,
                Presented {
                    authorization: Some(authorization.as_bytes()),
                    certificate_subject: None,
                    peer: Some(peer),
                },
                |_| false,
            )
            .map_err(|e| (StatusCode::UNAUTHORIZED, e.to_string()))?;
        let id = new_session_id()?;
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                token: token.to_owned(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((id, caller))
    }

    /// Ends the request's session, if any.
    pub fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = session_id(headers) {
            self.lock().remove(&id);
        }
    }

    fn token_of(&self, id: &str) -> Option<String> {
        let sessions = self.lock();
        sessions
            .get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.token.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `Set-Cookie` value for a session (`None`: the one that clears it).
pub fn cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            SESSION_TTL.as_secs()
        ),
        None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    }
}

/// Refuses a state-changing request that a cross-site page could have sent.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    if !headers.contains_key(CSRF_HEADER) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("state-changing requests need the {CSRF_HEADER} header (the page sends it)"),
        ));
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if Some(origin_host) != host {
            return Err((
                StatusCode::FORBIDDEN,
                "cross-origin request refused (Origin does not match Host)".into(),
            ));
        }
    }
    Ok(())
}

/// Without credentials: a loopback peer that also names loopback in `Host`.
fn local_only(peer: SocketAddr, headers: &HeaderMap) -> Result<(), Refusal> {
    if !is_loopback_peer(Some(peer)) {
        return Err((
            StatusCode::FORBIDDEN,
            "no credentials are configured, so the dashboard answers only loopback peers; \
             use `kubectl port-forward` or configure --auth-tokens-file / --auth-jwt-* \
             (see docs/dashboard.md)"
                .into(),
        ));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !is_loopback_host(host) {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not a loopback name: open the dashboard at \
                 http://127.0.0.1:PORT/ or http://localhost:PORT/"
            ),
        ));
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(ip, _)| ip)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The session cookie's value in `headers`.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// 32 random bytes from the system's CSPRNG, hex.
fn new_session_id() -> Result<String, Refusal> {
    let mut bytes = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "no randomness for a session id".to_owned(),
            )
        })?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::RateLimit;

    /// Without credentials (the loopback rule).
    fn access() -> Access {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 100.0,
            burst: 100,
        });
        Access::new(Arc::new(Authenticator::default()), Arc::new(limiter))
    }

    fn headers(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().expect("host"));
        h
    }

    #[test]
    fn without_credentials_only_loopback_peers_naming_loopback_get_in() {
        let a = access();
        let local: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let remote: SocketAddr = "10.1.2.3:5000".parse().expect("addr");
        let caller = a
            .admit(Scope::Admin, local, &headers("127.0.0.1:9090"))
            .expect("loopback admin");
        assert_eq!(caller.via, CredentialKind::Loopback);
        assert!(a.admit(Scope::Read, local, &headers("[::1]:9090")).is_ok());
        assert!(a.admit(Scope::Read, local, &headers("localhost")).is_ok());
        let (code, _) = a
            .admit(Scope::Read, remote, &headers("10.0.0.1:9090"))
            .expect_err("remote refused even for read");
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert!(a.page(remote, &headers("10.0.0.1:9090")).is_err());
        // DNS rebinding: a loopback peer, but a page served under another name.
        let (code, msg) = a
            .admit(Scope::Read, local, &headers("evil.example:9090"))
            .expect_err("rebinding refused");
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert!(msg.contains("evil.example"), "{msg}");
    }

    #[test]
    fn same_origin_needs_the_header_and_a_matching_origin() {
        let mut h = headers("127.0.0.1:9090");
        assert!(same_origin(&h).is_err());
        h.insert(CSRF_HEADER, "1".parse().expect("v"));
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            "http://127.0.0.1:9090".parse().expect("origin"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            "http://evil.example".parse().expect("origin"),
        );
        assert!(same_origin(&h).is_err());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("a=1; {COOKIE}=abc; b=2").parse().expect("cookie"),
        );
        assert_eq!(session_id(&h).as_deref(), Some("abc"));
    }
}

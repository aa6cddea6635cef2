//! The tower layer that authenticates and authorizes every request before any service sees it,
//! rate-limits state-changing RPCs per caller, and hands the [`Caller`] to handlers in the
//! request's extensions.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use crate::reason::Reason;
use http::{Request, Response};
use tonic::{
    Code, Status,
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower_layer::Layer;
use tower_service::Service;
use tracing::{debug, warn};

use super::{
    Access, AuthError, Authenticator, Presented, RateLimiter, Scope, access, certificate_subject,
    is_loopback_peer,
};

/// At most one warning per refusal kind per this long (the rest are counted in the next one).
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The layer; add it with `Server::builder().layer(AuthLayer::new(..))`.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
    limiter: Arc<RateLimiter>,
    refusals: Arc<RefusalLog>,
}

impl AuthLayer {
    /// A layer checking requests with `auth` and limiting state changes with `limiter`.
    pub fn new(auth: Arc<Authenticator>, limiter: Arc<RateLimiter>) -> AuthLayer {
        AuthLayer {
            auth,
            limiter,
            refusals: Arc::default(),
        }
    }

    /// The rate limiter (to apply a new limit on a config reload).
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// The authenticator (to re-read the tokens file on a config reload).
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}

/// Refusals are logged so an operator sees a misconfigured client or a probe from the network,
/// but at most once per kind (code) per [`WARN_EVERY`]: a client in a loop must not flood logs.
#[derive(Debug, Default)]
struct RefusalLog {
    /// Per code: when last logged, and how many were held back since.
    last: Mutex<Vec<(Code, Instant, u64)>>,
}

impl RefusalLog {
    /// Logs the refusal unless one of its kind was logged within [`WARN_EVERY`]; returns the
    /// number of refusals held back before it when it logs.
    fn note(&self, method: &str, peer: Option<SocketAddr>, status: &Status) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let held_back = match last.iter_mut().find(|(c, ..)| *c == status.code()) {
            Some((_, at, held)) if now.duration_since(*at) < WARN_EVERY => {
                *held += 1;
                return None;
            }
            Some((_, at, held)) => {
                *at = now;
                std::mem::take(held)
            }
            None => {
                last.push((status.code(), now, 0));
                0
            }
        };
        drop(last);
        warn!(
            method,
            peer = ?peer,
            code = ?status.code(),
            reason = status.message(),
            held_back,
            "request refused by auth (at most one such warning per code every 10s)"
        );
        Some(held_back)
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: Arc::clone(&self.auth),
            limiter: Arc::clone(&self.limiter),
            refusals: Arc::clone(&self.refusals),
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
    limiter: Arc<RateLimiter>,
    refusals: Arc<RefusalLog>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<Request<Body>> for AuthService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let Access::Scoped(scope) = access(req.uri().path()) else {
            return Box::pin(self.inner.call(req));
        };
        match self.admit(scope, &req) {
            Ok(caller) => {
                debug!(method = req.uri().path(), caller = %caller.name, via = caller.via.as_str(), "authorized");
                req.extensions_mut().insert(caller);
                Box::pin(self.inner.call(req))
            }
            Err(status) => {
                let _ = self
                    .refusals
                    .note(req.uri().path(), connection(&req).0, &status);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

impl<S> AuthService<S> {
    /// The caller of `req` if it may call this method now, else the status refusing it.
    fn admit(&self, scope: Scope, req: &Request<Body>) -> Result<super::Caller, Status> {
        let (peer, certs) = connection(req);
        let presented = Presented {
            authorization: req
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            certificate_subject: certs,
            peer,
        };
        let caller = self
            .auth
            .authorize(scope, presented, is_loopback_peer)
            .map_err(|e| match e {
                AuthError::Unauthenticated(m) => Status::unauthenticated(m),
                AuthError::PermissionDenied(m) => Status::permission_denied(m),
            })?;
        if scope == Scope::Admin
            && let Err(wait) = self.limiter.check(&rate_key(&caller))
        {
            return Err(Reason::RateLimited.status_with(
                format!(
                    "caller {:?} exceeded its rate of state-changing RPCs; retry in {} ms",
                    caller.name,
                    wait.as_millis().max(1)
                ),
                vec![],
                Some(wait),
            ));
        }
        Ok(caller)
    }
}

/// Whose bucket a state-changing RPC takes a token from: the caller's name, except that every
/// local process is `loopback`, so there the peer (address and port: one bucket per connection)
/// tells them apart, and one local client in a loop does not lock out the others.
fn rate_key(caller: &super::Caller) -> std::borrow::Cow<'_, str> {
    match (caller.via, caller.peer) {
        (super::CredentialKind::Loopback, Some(peer)) => format!("loopback:{peer}").into(),
        _ => caller.name.as_str().into(),
    }
}

/// The peer's address and verified client-certificate subject, from the connection info tonic
/// puts in every request (plain TCP or TLS).
fn connection(req: &Request<Body>) -> (Option<SocketAddr>, Option<String>) {
    let ext = req.extensions();
    if let Some(tls) = ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
        let subject = tls
            .peer_certs()
            .and_then(|certs| certs.first().and_then(|c| certificate_subject(c.as_ref())));
        return (tls.get_ref().remote_addr(), subject);
    }
    (
        ext.get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_code_per_interval() {
        let log = RefusalLog::default();
        let denied = Status::permission_denied("no");
        let unauth = Status::unauthenticated("no");
        assert_eq!(log.note("/m", None, &denied), Some(0));
        assert_eq!(log.note("/m", None, &denied), None);
        assert_eq!(log.note("/m", None, &denied), None);
        assert_eq!(
            log.note("/m", None, &unauth),
            Some(0),
            "each code has its own interval"
        );
        // Pretend the interval passed: the next one logs, with the count held back.
        for entry in log.last.lock().expect("lock").iter_mut() {
            entry.1 = entry.1.checked_sub(WARN_EVERY).expect("uptime over 10 s");
        }
        assert_eq!(log.note("/m", None, &denied), Some(2));
    }
}

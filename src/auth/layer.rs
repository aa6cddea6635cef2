//! The tower layer that authenticates and authorizes every request before any service sees it,
//! rate-limits state-changing RPCs per caller, and hands the [`Caller`] to handlers in the
//! request's extensions.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tonic::{
    Code, Status,
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tonic_types::{ErrorDetails, StatusExt};
use tower_layer::Layer;
use tower_service::Service;
use tracing::debug;

use super::{
    Access, AuthError, Authenticator, Presented, RateLimiter, Scope, access, certificate_subject,
    is_loopback_peer,
};

/// The layer; add it with `Server::builder().layer(AuthLayer::new(..))`.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
    limiter: Arc<RateLimiter>,
}

impl AuthLayer {
    /// A layer checking requests with `auth` and limiting state changes with `limiter`.
    pub fn new(auth: Arc<Authenticator>, limiter: Arc<RateLimiter>) -> AuthLayer {
        AuthLayer { auth, limiter }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: Arc::clone(&self.auth),
            limiter: Arc::clone(&self.limiter),
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
    limiter: Arc<RateLimiter>,
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
                debug!(method = req.uri().path(), code = ?status.code(), reason = status.message(), "refused");
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
            && let Err(wait) = self.limiter.check(&caller.name)
        {
            return Err(Status::with_error_details(
                Code::ResourceExhausted,
                format!(
                    "caller {:?} exceeded its rate of state-changing RPCs; retry in {} ms",
                    caller.name,
                    wait.as_millis().max(1)
                ),
                ErrorDetails::with_retry_info(Some(wait)),
            ));
        }
        Ok(caller)
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

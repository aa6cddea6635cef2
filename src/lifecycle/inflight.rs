//! A tower layer around every gRPC service: counts in-flight work for drain, and refuses new
//! work while draining.
//!
//! Counting happens here rather than in handlers so that nothing can be forgotten: a request is
//! counted from the moment it reaches the server until its response body has been sent (or the
//! client went away), which also covers server streams. Drain, health and reflection calls are
//! neither counted nor refused: Kubernetes probes and operators must always get an answer.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use crate::reason::Reason;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::{Status, body::Body};
use tower_layer::Layer;
use tower_service::Service;

use super::drain::{Drain, Tracked};

/// gRPC methods refused with UNAVAILABLE while draining: the work a load balancer routes.
const WORK: &[&str] = &[
    "/hotplane.v1.Patterns/MatchPattern",
    "/hotplane.v1.Patterns/BatchMatchPatterns",
    "/hotplane.v1.Patterns/LearnPattern",
    "/hotplane.v1.Patterns/ApprovePattern",
    "/hotplane.v1.Patterns/DisablePattern",
    "/hotplane.v1.Patterns/DeletePattern",
];

/// Server-streaming methods, counted as open streams rather than requests.
const STREAMS: &[&str] = &["/hotplane.v1.HotReload/WatchStatus"];

/// Paths never counted nor refused.
const UNTRACKED_PREFIXES: &[&str] = &[
    "/hotplane.v1.Drain/",
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
];

/// The layer; add it with `Server::builder().layer(InFlightLayer::new(drain))`.
#[derive(Debug, Clone)]
pub struct InFlightLayer {
    drain: Drain,
}

impl InFlightLayer {
    /// A layer reporting to `drain`.
    pub fn new(drain: Drain) -> Self {
        InFlightLayer { drain }
    }
}

impl<S> Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> InFlight<S> {
        InFlight {
            inner,
            drain: self.drain.clone(),
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
    drain: Drain,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S> Service<Request<Body>> for InFlight<S>
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

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        if UNTRACKED_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Box::pin(self.inner.call(req));
        }
        if self.drain.is_draining() && WORK.contains(&path) {
            let status = Reason::Draining.status(
                "this replica is draining and takes no new work; retry on another replica",
                vec![],
            );
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let tracked = self.drain.track(path, STREAMS.contains(&path));
        // `call` on a clone that was not `poll_ready`ed is wrong for some services; swap so the
        // ready one handles this request (the standard tower pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(req).await?;
            Ok(response.map(|body| {
                Body::new(Guarded {
                    inner: body,
                    _tracked: tracked,
                })
            }))
        })
    }
}

/// A response body that keeps its request counted until it is fully sent or dropped.
struct Guarded {
    inner: Body,
    _tracked: Tracked,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

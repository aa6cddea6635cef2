//! The gRPC server metrics, with go-grpc-prometheus's names and semantics so that stock
//! dashboards and alerts work unchanged: `grpc_server_started_total`,
//! `grpc_server_handled_total` and the `grpc_server_handling_seconds` histogram, labelled by
//! `grpc_type`, `grpc_service`, `grpc_method` (and `grpc_code` once handled).
//!
//! A tower layer outside every service (health and reflection too, and outside auth and the
//! drain gate, so refusals are counted with their codes). A call is *started* when it reaches the
//! server and *handled* when its response body ends or is dropped: a server stream is handled
//! when it closes, not when its headers go out. The code comes from the trailers, or from the
//! headers of a trailers-only answer (how tonic sends an error returned before any message); a
//! body dropped before any status was sent (the client went away) is counted as `Canceled`.
//!
//! The labels are fixed at start from the servers' descriptor sets, so a client cannot grow the
//! series by calling made-up paths (those share `grpc_service="unknown"`). The per-call cost is
//! one map lookup, two clock reads, two counter increments and one histogram observation.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use prost::Message as _;
use tonic::{Status, body::Body};
use tower_layer::Layer;
use tower_service::Service;

/// Buckets of `grpc_server_handling_seconds`: from 100 µs (a MatchPattern is well under a
/// millisecond) to 10 s (Prometheus' default buckets start at 5 ms, too coarse here).
const HANDLING_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// gRPC codes as go-grpc-prometheus names them (`codes.Code.String()`), indexed by number.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

/// One method's series, resolved once so a call touches no label map.
#[derive(Debug)]
struct Method {
    labels: MethodLabels,
    started: Counter,
    handling: Histogram,
    /// `grpc_server_handled_total` per code, created on the code's first use (a series per
    /// code seen, not 17 per method up front).
    handled: [OnceLock<Counter>; 17],
    /// The family those are created in (a handle: the series are shared).
    family: Family<HandledLabels, Counter>,
}

impl Method {
    fn handled(&self, code: usize) -> &Counter {
        let code = if code < CODES.len() { code } else { UNKNOWN };
        self.handled[code].get_or_init(|| {
            self.family.get_or_create_owned(&HandledLabels {
                grpc_type: self.labels.grpc_type,
                grpc_service: self.labels.grpc_service.clone(),
                grpc_method: self.labels.grpc_method.clone(),
                grpc_code: CODES[code],
            })
        })
    }
}

/// The gRPC metric families and the method table (shared by every connection).
#[derive(Debug)]
pub struct GrpcMetrics {
    methods: HashMap<String, Arc<Method>>,
    unknown: Arc<Method>,
}

impl GrpcMetrics {
    /// Registers the three families and one started series per known method (at 0, as
    /// go-grpc-prometheus does, so a rate exists before the first call).
    pub fn register(registry: &mut Registry) -> Arc<GrpcMetrics> {
        let started = Family::<MethodLabels, Counter>::default();
        let handled = Family::<HandledLabels, Counter>::default();
        let handling = Family::<MethodLabels, Histogram, _>::new_with_constructor(
            (|| Histogram::new(HANDLING_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server",
            started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server",
            handling.clone(),
        );
        let method = |labels: MethodLabels| {
            Arc::new(Method {
                started: started.get_or_create_owned(&labels),
                handling: handling.get_or_create_owned(&labels),
                handled: Default::default(),
                family: handled.clone(),
                labels,
            })
        };
        let methods = known_methods()
            .into_iter()
            .map(|(path, labels)| (path, method(labels)))
            .collect();
        let unknown = method(MethodLabels {
            grpc_type: "unknown",
            grpc_service: "unknown".into(),
            grpc_method: "unknown".into(),
        });
        Arc::new(GrpcMetrics { methods, unknown })
    }

    fn method(&self, path: &str) -> &Arc<Method> {
        self.methods.get(path).unwrap_or(&self.unknown)
    }
}

/// Every method of the services the server adds (hotplane's, health, reflection v1 and
/// v1alpha), by path, with its labels; read from the same descriptor sets reflection serves.
fn known_methods() -> Vec<(String, MethodLabels)> {
    let sets: [&[u8]; 4] = [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut out = Vec::new();
    for set in sets {
        // Compiled-in bytes that reflection decodes too; a failure would be a build defect,
        // and costs only these labels (the calls are then counted as unknown).
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            tracing::error!(
                "a compiled-in descriptor set does not decode; its methods are counted as unknown"
            );
            continue;
        };
        for file in set.file {
            for service in &file.service {
                let full = match file.package() {
                    "" => service.name().to_owned(),
                    p => format!("{p}.{}", service.name()),
                };
                for m in &service.method {
                    let grpc_type = match (m.client_streaming(), m.server_streaming()) {
                        (false, false) => "unary",
                        (true, false) => "client_stream",
                        (false, true) => "server_stream",
                        (true, true) => "bidi_stream",
                    };
                    let labels = MethodLabels {
                        grpc_type,
                        grpc_service: full.clone(),
                        grpc_method: m.name().to_owned(),
                    };
                    out.push((format!("/{full}/{}", m.name()), labels));
                }
            }
        }
    }
    out
}

/// The layer; a no-op when metrics are off (no admin listener), so the stack has one type.
#[derive(Debug, Clone, Default)]
pub struct GrpcMetricsLayer {
    metrics: Option<Arc<GrpcMetrics>>,
}

impl GrpcMetricsLayer {
    /// A layer recording into `metrics`, or passing calls through untouched with `None`.
    pub fn new(metrics: Option<Arc<GrpcMetrics>>) -> Self {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> GrpcMetricsService<S> {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service the layer wraps around the server's stack.
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Option<Arc<GrpcMetrics>>,
}

impl<S> Service<Request<Body>> for GrpcMetricsService<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let call = self.metrics.as_ref().map(|metrics| {
            let method = Arc::clone(metrics.method(req.uri().path()));
            method.started.inc();
            Call {
                method,
                start: Instant::now(),
            }
        });
        ResponseFuture {
            inner: self.inner.call(req),
            call,
        }
    }
}

/// A started call, recorded as handled exactly once (`finish` consumes it).
struct Call {
    method: Arc<Method>,
    start: Instant,
}

impl Call {
    fn finish(self, code: usize) {
        self.method.handled(code).inc();
        self.method
            .handling
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// The `grpc-status` a header map carries, as a code index.
fn status_code(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    let code: usize = std::str::from_utf8(value.as_bytes()).ok()?.parse().ok()?;
    // A number past the known codes is not one a client can act on: Unknown, as grpc-go maps it.
    Some(if code < CODES.len() { code } else { UNKNOWN })
}

pin_project_lite::pin_project! {
    /// The response future: hands the body over to [`MeteredBody`], which records the call.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the answer's head: the client went away (or the connection closed).
            if let Some(call) = this.project().call.take() {
                call.finish(CANCELED);
            }
        }
    }
}

impl<F, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(call) = this.call.take() else {
            return Poll::Ready(result);
        };
        Poll::Ready(match result {
            Ok(response) => {
                let code = status_code(response.headers());
                Ok(response.map(|body| {
                    Body::new(MeteredBody {
                        inner: body,
                        code,
                        call: Some(call),
                    })
                }))
            }
            Err(e) => {
                call.finish(UNKNOWN);
                Err(e)
            }
        })
    }
}

/// A response body that records its call when it ends or is dropped.
struct MeteredBody {
    inner: Body,
    /// The status seen so far: in the headers (trailers-only) or in the trailers.
    code: Option<usize>,
    call: Option<Call>,
}

impl MeteredBody {
    fn finish(&mut self, otherwise: usize) {
        if let Some(call) = self.call.take() {
            call.finish(self.code.unwrap_or(otherwise));
        }
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // A trailers-only answer's empty body is dropped without being polled; otherwise the
        // client went away before the trailers.
        self.finish(CANCELED);
    }
}

impl HttpBody for MeteredBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(code) = frame.trailers_ref().and_then(status_code) {
                    self.code = Some(code);
                }
            }
            Some(Err(status)) => {
                self.code = Some(status.code() as usize);
                self.finish(UNKNOWN);
            }
            // The end: a body without any status is not gRPC's, so Unknown.
            None => self.finish(UNKNOWN),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_has_standard_labels() {
        let methods: HashMap<String, MethodLabels> = known_methods().into_iter().collect();
        let m = &methods["/hotplane.v1.Patterns/MatchPattern"];
        assert_eq!(
            (m.grpc_type, m.grpc_service.as_str(), m.grpc_method.as_str()),
            ("unary", "hotplane.v1.Patterns", "MatchPattern")
        );
        assert_eq!(
            methods["/hotplane.v1.HotReload/WatchStatus"].grpc_type,
            "server_stream"
        );
        assert_eq!(methods["/grpc.health.v1.Health/Check"].grpc_type, "unary");
        assert_eq!(
            methods["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"].grpc_type,
            "bidi_stream"
        );
        assert!(
            methods.contains_key("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        );
    }

    #[test]
    fn status_codes_read_from_headers_map_unknown_numbers_to_unknown() {
        let mut h = HeaderMap::new();
        assert_eq!(status_code(&h), None);
        h.insert("grpc-status", "3".parse().expect("value"));
        assert_eq!(status_code(&h), Some(3));
        h.insert("grpc-status", "99".parse().expect("value"));
        assert_eq!(CODES[status_code(&h).expect("code")], "Unknown");
    }
}

# hotplane: the gRPC server in a small Debian image, built from this checkout.
#
#   docker build -t hotplane .
#   docker run -d -p 50051:50051 -v hotplane-data:/data hotplane
#
# Both base images are build arguments, so a machine without an image registry can build this
# file unchanged against local stand-ins tagged with the same names (scripts/container-test.sh).
ARG BUILDER_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS builder
WORKDIR /src
# Dependencies first, against empty sources: this layer is rebuilt only when the manifests, the
# build script or the protos change, not on every source edit.
# The workspace's other members (the bench and the test kit) are not built, but cargo loads
# their manifests, so they get empty sources too.
COPY Cargo.toml Cargo.lock build.rs ./
COPY bench/Cargo.toml ./bench/
COPY testkit/Cargo.toml ./testkit/
COPY proto ./proto
RUN mkdir src bench/src testkit/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs testkit/src/lib.rs \
    && echo 'fn main() {}' > bench/src/main.rs \
    && cargo build --release --locked --bin hotplane \
    && rm -rf src
COPY migrations ./migrations
COPY src ./src
# COPY keeps the files' times, which may be older than the empty build's: touch, so cargo
# rebuilds the crate itself.
RUN touch src/lib.rs src/main.rs \
    && cargo build --release --locked --bin hotplane \
    && cp target/release/hotplane /usr/local/bin/hotplane

FROM ${RUNTIME_IMAGE}
# The trust store for rediss:// with a public CA (the runtime base has none).
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /usr/local/bin/hotplane /usr/local/bin/hotplane
# A fixed non-root uid/gid (numeric in USER, so Kubernetes' runAsNonRoot can check it), owning
# the data volume.
RUN groupadd --system --gid 10001 hotplane \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin hotplane \
    && mkdir /data \
    && chown 10001:10001 /data
# Every interface, so the published port and the pod address reach it; the embedded SQLite
# default (used when no PostgreSQL URL is given) lives on the data volume.
ENV HOTPLANE_LISTEN=0.0.0.0:50051 \
    HOTPLANE_DATABASE_URL=sqlite:///data/hotplane.db
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 50051
# `hotplane health` asks grpc.health.v1 on 127.0.0.1 at HOTPLANE_LISTEN's port (or at
# HOTPLANE_HEALTH_LISTEN's, the plaintext probe port beside TLS, when set): exit 0 when SERVING,
# 1 otherwise (NOT_SERVING while draining and until the first load, or no answer).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["hotplane", "health"]
# Exec form: hotplane is PID 1 and gets `docker stop`'s SIGTERM (drain, then exit 0).
ENTRYPOINT ["/usr/local/bin/hotplane"]

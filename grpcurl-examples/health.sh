#!/usr/bin/env bash
# Checks gRPC health (grpc.health.v1), as load balancers and Kubernetes probes do: first the
# whole server (service ""), then one service. Both answer NOT_SERVING until the first pattern
# load has succeeded, then SERVING.
#
# Usage: ./health.sh [SERVICE]        (default hotplane.v1.Patterns; HOTPLANE_ADDR: server address)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
SERVICE="${1:-hotplane.v1.Patterns}"

# The whole server.
grpcurl -plaintext -d '{"service": ""}' "$ADDR" grpc.health.v1.Health/Check
# One service.
grpcurl -plaintext -d "{\"service\": \"$SERVICE\"}" "$ADDR" grpc.health.v1.Health/Check

#!/usr/bin/env bash
# Lists the services this server offers, discovered through server reflection (no .proto files
# needed): hotplane.v1.HotReload, hotplane.v1.Patterns, hotplane.v1.Drain, grpc.health.v1.Health
# and the reflection services themselves.
#
# Usage: ./list.sh        (HOTPLANE_ADDR: server address, default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"

grpcurl -plaintext "$ADDR" list

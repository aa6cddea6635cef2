#!/usr/bin/env bash
# Shows what this instance serves: its instance id and version, and for each target the current
# generation (number, content hash, store revision, source, load mode, item count), the retained
# generations, and the health of its loads (last success, last error, failure counts); then the
# store in use (backend, URL without password, pending hit counts) and the drain state.
# Replicas serving the same patterns report the same content hash.
#
# Usage: ./status.sh        (HOTPLANE_ADDR: server address, default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"

grpcurl -plaintext "$ADDR" hotplane.v1.HotReload/GetStatus

#!/usr/bin/env bash
# Undoes a bad change in one call: serves a retained generation again (as a new generation, with
# the old content hash) and pins it, so bus and poll reloads are held (counted as pending in
# GetStatus) until an explicit Reload unpins. The retained generations are listed by status.sh.
#
# Usage: ./rollback.sh [TO_GENERATION]   (default 0: the previous generation)
#   REASON   why (default: "grpcurl example")
#   HOTPLANE_ADDR  server address (default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
TO="${1:-0}"
REASON="${REASON:-grpcurl example}"

grpcurl -plaintext -d "{\"target\": \"TARGET_PATTERNS\", \"toGeneration\": \"$TO\", \"reason\": \"$REASON\"}" \
    "$ADDR" hotplane.v1.HotReload/Rollback

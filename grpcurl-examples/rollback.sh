#!/usr/bin/env bash
# Undoes a bad change in one call: serves a retained generation again (as a new generation, with
# the old content hash) and pins it, so bus and poll reloads are held (counted as pending in
# GetStatus) until an explicit Reload unpins. The retained generations are listed by status.sh.
#
# With BROADCAST=true (needs --redis-url) every replica rolls back too: the content hash is
# announced on the bus and each replica serves its retained generation with that hash, pinned
# (one that does not retain it keeps serving and reports why: fleet[].rollbackError). With WAIT
# (e.g. 10s) the answer waits until every live replica serves the hash, and lists them.
#
# Usage: ./rollback.sh [TO_GENERATION]   (default 0: the previous generation)
#   REASON     why (default: "grpcurl example")
#   BROADCAST  true: roll back every replica (default false)
#   WAIT       with BROADCAST: how long to wait for the fleet (default: do not wait)
#   HOTPLANE_ADDR  server address (default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
TO="${1:-0}"
REASON="${REASON:-grpcurl example}"
BROADCAST="${BROADCAST:-false}"
WAIT_FIELD=""
if [[ -n "${WAIT:-}" ]]; then
    WAIT_FIELD=", \"waitForFleet\": \"$WAIT\""
fi

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.HotReload/Rollback <<EOF2
{"target": "TARGET_PATTERNS", "toGeneration": "$TO", "reason": "$REASON", "broadcast": $BROADCAST$WAIT_FIELD}
EOF2

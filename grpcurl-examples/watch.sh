#!/usr/bin/env bash
# Follows a replica live: a status snapshot first, then every event (reload started / succeeded /
# failed, pattern learned / approved / disabled / deleted, drain changes) with an increasing
# eventId, and a heartbeat every few seconds. Pass the last eventId you saw to resume exactly
# where you left off (or get a snapshot marked "resync" if that is too old).
#
# Usage: ./watch.sh [AFTER_EVENT_ID]     (default 0: start with a snapshot)
#   KINDS     optional JSON list of event kinds, e.g. '["EVENT_KIND_RELOAD_SUCCEEDED"]'
#   MAX_TIME  stop after this many seconds (default: follow until interrupted)
#   HOTPLANE_ADDR  server address (default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
AFTER="${1:-${AFTER_EVENT_ID:-0}}"
KINDS="${KINDS:-[]}"
args=()
if [[ -n "${MAX_TIME:-}" ]]; then
    args+=(-max-time "$MAX_TIME")
fi

grpcurl -plaintext "${args[@]}" -d "{\"afterEventId\": \"$AFTER\", \"kinds\": $KINDS}" \
    "$ADDR" hotplane.v1.HotReload/WatchStatus

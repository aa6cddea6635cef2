#!/usr/bin/env bash
# Moves the pattern store to another database without a restart (blue/green): the new pool is
# connected, migrated and read in full before it replaces the old one, which closes once its
# running queries finish; requests keep being answered throughout. Any failure keeps the old
# pool serving (FAILED_PRECONDITION says why; a URL hotplane cannot use is INVALID_ARGUMENT).
# The answer has target TARGET_STORE, the new generation and what changed; status.sh shows the
# new URL (password removed) under store.url.
#
# Usage: ./reload_store.sh [DATABASE_URL]   (postgres://... or sqlite://...; default: reconnect
#                                           to the current database)
#   HOTPLANE_ADDR  server address (default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
DATABASE_URL="${1:-}"

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.HotReload/Reload <<EOF2
{"target": "TARGET_STORE", "databaseUrl": "$DATABASE_URL", "reason": "grpcurl example: store swap"}
EOF2

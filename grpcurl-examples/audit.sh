#!/usr/bin/env bash
# Lists the audit trail, newest first: every change of served state (reloads, rollbacks, store and
# bus swaps, drain start/stop, config reloads, pattern writes), who asked for it (the caller, or
# "bus:<instance>", "poll", "signal"), where from, the generations before and after, the result
# and how long it took. Rows are written asynchronously, so a change shows up shortly after its
# answer. Admin scope (loopback is enough when no credentials are configured).
#
# Usage: ./audit.sh [ACTION]   (e.g. reload, rollback, pattern_delete, config_reload; default: all)
#   CALLER      only this caller, exactly as recorded (e.g. "loopback:127.0.0.1")
#   PAGE_SIZE   rows per page, 1..1000 (default 20)
#   PAGE_TOKEN  a previous answer's nextPageToken, for the next (older) page
#   HOTPLANE_ADDR  server address (default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
ACTION="${1:-}"

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.HotReload/ListAudit <<EOF2
{"pageSize": ${PAGE_SIZE:-20}, "pageToken": "${PAGE_TOKEN:-}", "action": "$ACTION", "caller": "${CALLER:-}"}
EOF2

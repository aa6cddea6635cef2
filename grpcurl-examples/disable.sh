#!/usr/bin/env bash
# Disables a pattern: the row is kept (status disabled, enabled false) but no longer served, so
# a match right after this call no longer finds it. approve.sh brings it back.
# An unknown id is NOT_FOUND.
#
# Usage: ./disable.sh [ID]        (default: $PATTERN_ID or 1; HOTPLANE_ADDR: server address)
#   REASON  why, recorded in the logs (default: "wrong answers reported")
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
PATTERN_ID="${1:-${PATTERN_ID:-1}}"
REASON="${REASON:-wrong answers reported}"

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.Patterns/DisablePattern <<EOF
{"id": $PATTERN_ID, "reason": "$REASON"}
EOF

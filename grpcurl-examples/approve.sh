#!/usr/bin/env bash
# Approves (and re-enables) a pattern so it is served: the answer holds the row and the
# pattern-cache generation that serves it, so a match right after this call finds it.
# An unknown id is NOT_FOUND.
#
# Usage: ./approve.sh [ID]        (default: $PATTERN_ID or 1; HOTPLANE_ADDR: server address)
#   REASON  why, recorded in the logs (default: "reviewed")
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
PATTERN_ID="${1:-${PATTERN_ID:-1}}"
REASON="${REASON:-reviewed}"

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.Patterns/ApprovePattern <<EOF
{"id": $PATTERN_ID, "reason": "$REASON"}
EOF

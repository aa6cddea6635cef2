#!/usr/bin/env bash
# Deletes a pattern row for good; it stops being served before the call returns. Afterwards
# get_pattern.sh with the same id is NOT_FOUND, and so is a second delete.
#
# Usage: ./delete.sh [ID]        (default: $PATTERN_ID or 1; HOTPLANE_ADDR: server address)
#   REASON  why, recorded in the logs (default: "duplicate of a better pattern")
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
PATTERN_ID="${1:-${PATTERN_ID:-1}}"
REASON="${REASON:-duplicate of a better pattern}"

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.Patterns/DeletePattern <<EOF
{"id": $PATTERN_ID, "reason": "$REASON"}
EOF

#!/usr/bin/env bash
# Reads one pattern row by id, whether it is served or not, and says whether this replica serves
# it now. An unknown id is NOT_FOUND (grpcurl prints the error and exits non-zero).
#
# Usage: ./get_pattern.sh [ID]        (default: $PATTERN_ID or 1; HOTPLANE_ADDR: server address)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
PATTERN_ID="${1:-${PATTERN_ID:-1}}"

grpcurl -plaintext -d "{\"id\": $PATTERN_ID}" "$ADDR" hotplane.v1.Patterns/GetPattern

#!/usr/bin/env bash
# Reloads the pattern cache from the store, in the four ways HotReload.Reload offers. Each answer
# gives the generation before and after, whether the served content changed, how many patterns
# were added / updated / removed, how the store was read (mode) and the new current generation.
# Rows that other services wrote directly with SQL are picked up too.
#   1. delta: read only the rows changed since the served generation (a no-op if none changed)
#   2. full: read every row
#   3. one row: re-read just the row with PATTERN_ID
#   4. validate_only: build and check a full generation, report what would change, swap nothing
#
# Usage: ./reload.sh [PATTERN_ID]        (default: $PATTERN_ID or 1; HOTPLANE_ADDR: server address)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
PATTERN_ID="${1:-${PATTERN_ID:-1}}"

# 1. Delta (the default).
grpcurl -plaintext -d '{"target": "TARGET_PATTERNS", "reason": "grpcurl example: delta"}' \
    "$ADDR" hotplane.v1.HotReload/Reload
# 2. Full.
grpcurl -plaintext -d '{"target": "TARGET_PATTERNS", "full": true, "reason": "grpcurl example: full"}' \
    "$ADDR" hotplane.v1.HotReload/Reload
# 3. One pattern.
grpcurl -plaintext -d @ "$ADDR" hotplane.v1.HotReload/Reload <<EOF
{"target": "TARGET_PATTERNS", "pattern_id": $PATTERN_ID, "reason": "grpcurl example: one pattern"}
EOF
# 4. Validate only: nothing is swapped in.
grpcurl -plaintext -d '{"target": "TARGET_PATTERNS", "full": true, "validate_only": true}' \
    "$ADDR" hotplane.v1.HotReload/Reload

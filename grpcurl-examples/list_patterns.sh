#!/usr/bin/env bash
# Lists pattern rows by ascending id, one page at a time, optionally filtered by status and
# category. When there are more rows, the answer has a next_page_token: pass it as the argument
# to get the next page.
#
# Usage: ./list_patterns.sh [PAGE_TOKEN]
#   PAGE_SIZE  rows per page, 1..1000 (default: 20)
#   STATUS     PATTERN_STATUS_PENDING, PATTERN_STATUS_APPROVED, PATTERN_STATUS_DISABLED, or
#              PATTERN_STATUS_UNSPECIFIED for any (the default)
#   CATEGORY   only this category (default: any)
#   HOTPLANE_ADDR  server address (default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
PAGE_TOKEN="${1:-}"
PAGE_SIZE="${PAGE_SIZE:-20}"
STATUS="${STATUS:-PATTERN_STATUS_UNSPECIFIED}"
CATEGORY="${CATEGORY:-}"

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.Patterns/ListPatterns <<EOF
{
  "page_size": $PAGE_SIZE,
  "page_token": "$PAGE_TOKEN",
  "status": "$STATUS",
  "category": "$CATEGORY"
}
EOF

#!/usr/bin/env bash
# Learns a pattern: the query is normalized and upserted keyed on its normalized text, if it
# passes the learning rules (confidence at or above the threshold, 0.9 by default; a category;
# at least 3 characters once normalized). The answer shows the stored row, whether it was
# created or updated, whether it is served now (new patterns are approved by default) and the
# pattern-cache generation that includes it. A rejected proposal is INVALID_ARGUMENT naming the
# rule that failed (try CONFIDENCE=0.5).
#
# Usage: ./learn.sh [QUERY]
#   QUERY       the raw query text (default: "Quali sono i workflow attivi?")
#   CATEGORY    the category a match answers with (default: workflow_status)
#   CONFIDENCE  the classifier's confidence, 0..1 (default: 0.95)
#   HOTPLANE_ADDR  server address (default 127.0.0.1:50051)
# (Values are pasted into JSON as they are: avoid double quotes and backslashes in them.)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
QUERY="${1:-${QUERY:-Quali sono i workflow attivi?}}"
CATEGORY="${CATEGORY:-workflow_status}"
CONFIDENCE="${CONFIDENCE:-0.95}"

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.Patterns/LearnPattern <<EOF
{
  "query": "$QUERY",
  "category": "$CATEGORY",
  "confidence": $CONFIDENCE,
  "metadata": {"action": "list_workflows"},
  "created_by": "manual"
}
EOF

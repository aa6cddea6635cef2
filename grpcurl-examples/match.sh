#!/usr/bin/env bash
# Matches a query against the served patterns, from memory (never the database). The query is
# normalized first (lower case, trimmed, punctuation stripped from each word, trailing ?!.
# dropped), so "  quali sono i WORKFLOW attivi!" finds the pattern learn.sh stored. A match
# returns the pattern (id, normalized text, category, confidence, accuracy, metadata); every
# answer carries the normalized query and the generation that answered.
# grpcurl leaves out fields with default values: no "matched" in the output means false.
#
# Usage: ./match.sh [QUERY]        (HOTPLANE_ADDR: server address, default 127.0.0.1:50051)
#   MIN_GENERATION  fail with FAILED_PRECONDITION unless this generation is served (default 0)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
QUERY="${1:-${QUERY:-  quali sono i WORKFLOW attivi!}}"
MIN_GENERATION="${MIN_GENERATION:-0}"

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.Patterns/MatchPattern <<EOF
{"query": "$QUERY", "min_generation": $MIN_GENERATION}
EOF

#!/usr/bin/env bash
# Matches several queries in one call (up to 1,000), all answered from one snapshot: one result
# per query, in request order, and the single generation that answered them all. By default:
# a query that matches the pattern learn.sh stored, and one that matches nothing.
#
# Usage: ./batch_match.sh [QUERY...]        (HOTPLANE_ADDR: server address, default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
if (($# == 0)); then
    set -- "Quali sono i workflow ATTIVI" "Che tempo fa a Milano?"
fi

# The queries as a JSON array of strings.
queries="$(printf '"%s", ' "$@")"
queries="[${queries%, }]"

grpcurl -plaintext -d @ "$ADDR" hotplane.v1.Patterns/BatchMatchPatterns <<EOF
{"queries": $queries}
EOF

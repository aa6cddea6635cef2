#!/usr/bin/env bash
# Shows the API documentation that travels with the server: `describe` prints a service, RPC or
# message together with the comments from its .proto file. By default it describes the
# Patterns.MatchPattern RPC and its request message; pass other symbols to describe those
# (e.g. ./describe.sh hotplane.v1.HotReload hotplane.v1.GenerationInfo).
#
# Usage: ./describe.sh [SYMBOL...]        (HOTPLANE_ADDR: server address, default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
if (($# == 0)); then
    set -- hotplane.v1.Patterns.MatchPattern hotplane.v1.MatchPatternRequest
fi

for symbol in "$@"; do
    grpcurl -plaintext "$ADDR" describe "$symbol"
done

#!/usr/bin/env bash
# Takes this replica out of rotation and back: StartDrain turns health NOT_SERVING and refuses new
# work (MatchPattern, LearnPattern, pattern writes) with UNAVAILABLE while running work finishes;
# with "wait" it returns once nothing is in flight or the grace expires, listing what still runs.
# GetDrainStatus shows the state and in-flight counts; StopDrain takes work again.
#
# Usage: ./drain.sh [start|status|stop|cycle]   (default: cycle = start with wait, status, stop)
#   REASON   why (default: "grpcurl example")
#   GRACE    how long "wait" may take (default: 5s)
#   HOTPLANE_ADDR  server address (default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
REASON="${REASON:-grpcurl example}"
GRACE="${GRACE:-5s}"

start() {
    grpcurl -plaintext -d "{\"reason\": \"$REASON\", \"grace\": \"$GRACE\", \"wait\": true}" \
        "$ADDR" hotplane.v1.Drain/StartDrain
}
status() { grpcurl -plaintext "$ADDR" hotplane.v1.Drain/GetDrainStatus; }
stop() { grpcurl -plaintext "$ADDR" hotplane.v1.Drain/StopDrain; }

case "${1:-cycle}" in
start) start ;;
status) status ;;
stop) stop ;;
cycle) start; status; stop ;;
*) echo "usage: $0 [start|status|stop|cycle]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Moves the Redis bus to another Redis without a restart (blue/green), in two calls:
#   1. validate_only: connect and subscribe to the new URL, then drop it (nothing moves)
#   2. the swap: the new connection subscribes before the old one unsubscribes, so every
#      message published meanwhile reaches one of them; announcements and the fleet heartbeat
#      move with it. Any failure keeps the old connection (FAILED_PRECONDITION says why).
# Each answer has target TARGET_BUS, redisUrl and previousRedisUrl (passwords removed);
# status.sh shows bus.redisUrl, bus.swaps and bus.swappedAt. Needs a server started with
# --redis-url (FAILED_PRECONDITION otherwise).
#
# Usage: ./reload_bus.sh [REDIS_URL]   (redis://[user:password@]host:port or rediss://...;
#                                     default: reconnect to the current Redis)
#   HOTPLANE_ADDR  server address (default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"
REDIS_URL="${1:-}"

# 1. Check that the new Redis is reachable and accepts the subscription.
grpcurl -plaintext -d @ "$ADDR" hotplane.v1.HotReload/Reload <<EOF2
{"target": "TARGET_BUS", "redisUrl": "$REDIS_URL", "validateOnly": true}
EOF2
# 2. Swap.
grpcurl -plaintext -d @ "$ADDR" hotplane.v1.HotReload/Reload <<EOF2
{"target": "TARGET_BUS", "redisUrl": "$REDIS_URL", "reason": "grpcurl example: bus swap"}
EOF2

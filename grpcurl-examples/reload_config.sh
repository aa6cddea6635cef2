#!/usr/bin/env bash
# Re-reads the server's config file (the TOML file it was started with: --config FILE or
# HOTPLANE_CONFIG), as `kill -HUP <pid>` does. Edit the file first, for example:
#     [learn]
#     min_confidence = 0.8
#   1. validate_only: checks the whole file and lists what would change (configApplied, old ->
#      new); applies nothing
#   2. applies it: live keys (log filter, normalizer, learning rules, rate limits, poll interval, fleet
#      heartbeat and TTL) change at once; keys that need a restart (listen address, database
#      URL, ...) are listed in configRestartRequired with the reason and keep their running value
# An invalid file (a typo in a key, a wrong type, a value out of range) fails both with
# InvalidArgument naming every key at fault, and nothing changes. A server started without a
# config file answers FailedPrecondition. ./status.sh shows the settings in effect (config) and
# the file's generation and reload health (the TARGET_CONFIG entry of targets).
#
# Usage: ./reload_config.sh        (HOTPLANE_ADDR: server address, default 127.0.0.1:50051)
set -euo pipefail
ADDR="${HOTPLANE_ADDR:-127.0.0.1:50051}"

# 1. Check only.
grpcurl -plaintext -d '{"target": "TARGET_CONFIG", "validate_only": true}' \
    "$ADDR" hotplane.v1.HotReload/Reload
# 2. Apply.
grpcurl -plaintext -d '{"target": "TARGET_CONFIG", "reason": "grpcurl example"}' \
    "$ADDR" hotplane.v1.HotReload/Reload

#!/usr/bin/env bash
# Measures hotplane's resident memory around a flood of bus messages (issue 16, item 7).
#
#   scripts/bus-flood-rss.sh [BINARY] [MESSAGES]
#
# Starts BINARY (default target/debug/hotplane) on a fresh SQLite file, subscribed to a fresh
# channel on $REDIS_URL (default redis://127.0.0.1:6379), then PUBLISHes MESSAGES (default
# 200000) `reload` messages (PAYLOAD=ignored: `{"action":"noop"}`, rejected without any load;
# PAYLOAD=padded: the same with 4 KiB of padding)
# through one pipelined redis-cli --pipe, as fast as Redis takes them.
# Prints VmRSS before, VmHWM (the peak) and VmRSS 5 s after the flood, the drops, and (with
# LOG_FILTER=warn,hotplane::bus::subscriber=info) the line saying the allocator was asked to give
# memory back once the burst was over, with how long that took.
set -euo pipefail
BIN="${1:-target/debug/hotplane}"
N="${2:-200000}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
ch="hotplane:flood:$$"
"$BIN" --listen 127.0.0.1:0 --database-url "sqlite://$work/db.sqlite" --redis-url "$REDIS_URL" \
    --bus-channel "$ch" --poll-interval 0s --log-filter "${LOG_FILTER:-warn}" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    [[ "$(redis-cli -u "$REDIS_URL" PUBSUB NUMSUB "$ch" | tail -1)" == 1 ]] && break
    sleep 0.1
done
sleep 1
rss() { awk -v k="$1:" '$1 == k {print $2 / 1024 " MB"}' "/proc/$pid/status"; }
echo "before:   VmRSS $(rss VmRSS)"
python3 - "$ch" "$N" "${PAYLOAD:-reload}" >"$work/flood.resp" <<'PY'
import sys
ch, n, kind = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3]
out = sys.stdout.buffer
for i in range(1, n + 1):
    if kind == "reload":
        msg = b'{"action":"reload","pattern_id":%d}' % i
    elif kind == "padded":
        msg = b'{"action":"noop","pad":"%s"}' % (b"x" * 4096)
    else:
        msg = b'{"action":"noop"}'
    out.write(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(ch), ch, len(msg), msg))
PY
start=$(date +%s.%N)
redis-cli -u "$REDIS_URL" --pipe <"$work/flood.resp" | tail -1
echo "published $N in $(echo "$(date +%s.%N) - $start" | bc) s"
sleep 5
echo "peak:     VmHWM $(rss VmHWM)"
echo "after 5s: VmRSS $(rss VmRSS)"
grep -E "dropped|overflow|WARN|freed memory back" "$work/log" | tail -3 || true

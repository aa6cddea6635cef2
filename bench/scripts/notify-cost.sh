#!/usr/bin/env bash
# What the PostgreSQL bus's statement-level NOTIFY triggers (migration
# 20261207000002_bus_notify.sql, installed whatever bus is configured) cost writers: the same
# statements with those triggers enabled and disabled, alternating, in one fresh database.
#
#   bench/scripts/notify-cost.sh [ROWS] [ROUNDS]      (defaults 200000 and 5)
#
# Statements: an UPDATE of every row's served content (confidence), an UPDATE of hit counters
# only (times_used of 1 row in 40, as a hit flush batch does), an INSERT of 10,000 rows and the
# DELETE of them. Prints each round and the medians. Needs psql and the test PostgreSQL
# (HOTPLANE_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
ROWS="${1:-200000}"
ROUNDS="${2:-5}"
ADMIN="${HOTPLANE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="hotplane_bench_notify_$$"
URL="${ADMIN%/*}/$DB"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
psql -q "$ADMIN" -c "CREATE DATABASE $DB"
trap 'psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"' EXIT
for f in migrations/postgres/*.sql; do psql -q "$URL" -v ON_ERROR_STOP=1 -f "$f" >/dev/null 2>&1; done
psql -q "$URL" -c "INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, confidence, status, enabled)
    SELECT 'p ' || n, 'p ' || n, 'c', 0.5, 'approved', true FROM generate_series(1, $ROWS) n"
psql -q "$URL" -c "VACUUM ANALYZE auto_learned_patterns"

# Seconds one statement takes, by the server's clock (psql's \timing, in ms).
timed() {
    psql -q "$URL" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
}
notify() { # ENABLE | DISABLE
    for t in insert update delete truncate; do
        psql -q "$URL" -c "ALTER TABLE auto_learned_patterns $1 TRIGGER hotplane_patterns_notify_$t"
    done
}
declare -A all
for round in $(seq 1 "$ROUNDS"); do
    for mode in ENABLE DISABLE; do
        notify "$mode"
        content=$(timed "UPDATE auto_learned_patterns SET confidence = CASE WHEN confidence > 0.5 THEN confidence - 0.000001 ELSE confidence + 0.000001 END")
        hits=$(timed "UPDATE auto_learned_patterns SET times_used = COALESCE(times_used, 0) + 1 WHERE id % 40 = 0")
        insert=$(timed "INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, confidence, status, enabled)
            SELECT 'x ' || n, 'x ' || n, 'c', 0.5, 'approved', true FROM generate_series(1, 10000) n")
        delete=$(timed "DELETE FROM auto_learned_patterns WHERE pattern LIKE 'x %'")
        echo "round $round notify=${mode,,}: content update ${content} ms, hit update ${hits} ms, insert 10k ${insert} ms, delete 10k ${delete} ms"
        all[$mode,content]+="$content "; all[$mode,hits]+="$hits "; all[$mode,insert]+="$insert "; all[$mode,delete]+="$delete "
    done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "| statement ($ROWS rows, $ROUNDS rounds, medians) | notify triggers on | off (baseline) | ratio |"
echo "|---|---:|---:|---:|"
for s in content hits insert delete; do
    on=$(echo "${all[ENABLE,$s]}" | median); off=$(echo "${all[DISABLE,$s]}" | median)
    printf '| %s | %.1f ms | %.1f ms | %.3f |\n' "$s" "$on" "$off" "$(awk -v a="$on" -v b="$off" 'BEGIN {print a / b}')"
done

#!/usr/bin/env bash
# The fresh-machine check: the README's two commands, run as a new user would on a minimal
# Debian 12 with only the Rust toolchain, on a network of its own. CI (.ci/run) runs it.
#
# What it does (each phase logs its time; any failure names its phase and exits non-zero):
#   1. tools + daemon   Debian's docker.io, debootstrap and iptables where missing; a private
#                       dockerd whose images are kept in $HOTPLANE_CONTAINER_CACHE
#                       (default /var/cache/hotplane-containers), see scripts/lib/container.sh.
#   2. images           debian:bookworm-slim from debootstrap minbase (made once, reused), and
#                       hotplane-fresh:KEY (ctr_ensure_toolchain_image, shared with the container
#                       test's builder stand-in) = that + ONLY the host's Rust toolchain (its sysroot
#                       without share/doc, cargo-nextest in ~/.cargo/bin) + the host's CA bundle
#                       (the machine's HTTPS proxy). KEY changes with the toolchain, nextest, the
#                       CA bundle or this recipe, and only then is the image rebuilt. No procps,
#                       git, python, PostgreSQL or Redis: the test command must install them.
#   3. checkout         the committed HEAD (git archive on the host: the fresh machine has no
#                       git), copied into a new container on the default bridge (never the host's
#                       network). Nothing of cargo's or apt's downloads is cached in there.
#   4. isolation        INPUT rules REJECT the host's ports 5432, 6379 and 50051 from docker0,
#                       then, before anything else, the container checks they are closed on
#                       every host address (and its own loopback); egress to the package
#                       registries is a NAT MASQUERADE rule added for the run.
#   5. test command     `./scripts/test.sh` in the checkout, with CI=true as .ci/run has it,
#                       and HOTPLANE_TEST_INSIDE_CONTAINER=fresh-machine: its container test step is
#                       skipped in here (no Docker daemon can run in a container; the host's run
#                       of the test command, just before this script in .ci/run, did it).
#   6. run command      `cargo run --release`; SERVING on grpc.health.v1.Health/Check,
#                       `grpcurl -plaintext 127.0.0.1:50051 list` shows hotplane.v1.Patterns
#                       (grpcurl from the test command's .tools/bin), then SIGTERM (bash's kill:
#                       there is no kill program) and exit status 0 required.
# The container, the daemon, the rules and the mounts are removed on every exit (trap).
#
# Usage: ./scripts/fresh-machine.sh [--worktree] [--keep]
#   --worktree  use the working tree (tracked and untracked, not ignored files) instead of the
#               committed HEAD, to iterate on uncommitted changes
#   --keep      do not remove the container at the end (it stops with the daemon and stays in the
#               cache folder until the next run prunes it)
# Needs root (dockerd, iptables). Only one dockerd can own docker0: it refuses to start beside
# another one. Time: the images take ~2.7 min on a first run (debootstrap ~2 min, toolchain
# image ~20 s) and ~1 s when cached; everything inside is fresh on every run, so the test command
# dominates. Measured at 4034210 on 2 cores shared with other builds (load 4-9): 44.6 min in all,
# test command 41.5 min = apt/pip/npm installs 5.5, clippy 9.2, release build 20.8, doc tests
# 3.4, test build 1.5, tests 1.0; the run command then starts in 0.6 s.
set -Eeuo pipefail
LC_NUMERIC=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib/container.sh
source "$ROOT/scripts/lib/container.sh"

readonly BLOCKED_PORTS=(5432 6379 50051)
readonly RUN_BUILD_TIMEOUT_S=2400 # cargo run --release: build + start to SERVING

WORKTREE=false
KEEP=false
while (($#)); do
    case "$1" in
    --worktree) WORKTREE=true ;;
    --keep) KEEP=true ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "scripts/fresh-machine.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# ---------------------------------------------------------------------------------------------
# Logging, timing, failing, cleanup

PHASE="setup"
PHASE_T0="$EPOCHREALTIME"
RUN_T0="$EPOCHREALTIME"
TIMINGS=()
CONTAINER=""

log() { printf '%s\n' "$*"; }
seconds_since() { LC_ALL=C awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
phase_start() {
    PHASE="$1"
    PHASE_T0="$EPOCHREALTIME"
    log ""
    log "==> [fresh machine] $PHASE"
}
phase_end() {
    local dt
    dt="$(seconds_since "$PHASE_T0")"
    TIMINGS+=("$(printf '  %-42s %8ss' "$PHASE" "$dt")")
    log "<== [fresh machine] $PHASE: ok (${dt}s)"
}
print_timings() {
    log ""
    log "==> [fresh machine] phase timings"
    ((${#TIMINGS[@]})) && printf '%s\n' "${TIMINGS[@]}"
    log "$(printf '  %-42s %8ss' total "$(seconds_since "$RUN_T0")")"
}
fail() {
    log "" >&2
    log "ERROR [fresh machine, phase: $PHASE]: $*" >&2
    exit 1
}
on_err() { log "ERROR [fresh machine, phase: $PHASE]: command failed (exit $1, line $2): $3" >&2; }

cleanup() {
    local rc="$1"
    trap - EXIT INT TERM
    set +e
    if ((rc != 0)); then
        TIMINGS+=("$(printf '  %-42s %8ss  FAILED' "$PHASE" "$(seconds_since "$PHASE_T0")")")
    fi
    if [[ -n "$CONTAINER" ]] && ! $KEEP; then
        ctr_docker rm -f "$CONTAINER" >/dev/null 2>&1
    fi
    ctr_net_cleanup
    ctr_daemon_stop
    rm -rf "$CTR_CACHE/toolchain-context"
    local left
    left="$(ctr_net_leftovers)"
    if [[ -n "$left" ]]; then
        log "ERROR: iptables rules of this script are still in place; delete them by hand:" >&2
        log "$left" >&2
        rc=1
    fi
    if ((rc == 0)); then
        print_timings
        log "fresh machine: PASSED (both README commands)"
    else
        print_timings >&2
        log "fresh machine: FAILED in phase: $PHASE (exit $rc)" >&2
    fi
    exit "$rc"
}
# Long commands run in the background and are waited for: bash runs a trap only once the
# foreground command ends, but `wait` returns on a signal, so SIGTERM/SIGINT clean up at once.
interruptible() {
    "$@" &
    wait "$!"
}
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR
trap 'cleanup $?' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Phases

phase_daemon() {
    phase_start "tools + daemon"
    ctr_install_tools
    ctr_daemon_start
    ctr_net_cleanup # rules a killed run (SIGKILL: no trap) may have left
    phase_end
}

phase_images() {
    phase_start "images"
    ctr_ensure_base_image
    # The base + only the Rust toolchain (scripts/lib/container.sh), shared with the container
    # test's builder stand-in.
    ctr_ensure_toolchain_image
    FRESH_IMAGE="$CTR_TOOLCHAIN_IMAGE"
    ctr_prune_images "$CTR_TOOLCHAIN_REPO" "$CTR_TOOLCHAIN_KEY"
    phase_end
}

phase_checkout() {
    phase_start "checkout"
    CONTAINER="hotplane-fresh-$$"
    ctr_docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
    # --init reaps what the test command leaves running (PostgreSQL, Redis) as a real init would;
    # /dev/shm as a machine has it, not Docker's 64 MB.
    # (Docker warns that IPv4 forwarding is off: it is, until the isolation phase has checked.)
    local err
    err="$(ctr_docker run -d --init --name "$CONTAINER" --hostname fresh-machine --network bridge \
        --shm-size 1g "$FRESH_IMAGE" sleep infinity 2>&1 >/dev/null)" ||
        fail "could not start a container from $FRESH_IMAGE: $err"
    err="$(grep -v 'IPv4 forwarding is disabled' <<<"$err" || true)"
    [[ -z "$err" ]] || log "$err"
    local what
    if $WORKTREE; then
        what="working tree of $(git rev-parse --short HEAD) (uncommitted changes included)"
        git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do if [[ -e "$f" ]]; then printf '%s\0' "$f"; fi; done |
            tar --null -T - --transform 's,^,hotplane/,' --owner=0 --group=0 -c |
            ctr_docker cp - "$CONTAINER:/root/" || fail "could not copy the working tree into the container"
    else
        what="committed HEAD $(git rev-parse --short HEAD)"
        [[ -z "$(git status --porcelain --untracked-files=no)" ]] ||
            log "    (uncommitted changes in $ROOT are NOT used; --worktree would use them)"
        git archive --format=tar --prefix=hotplane/ HEAD |
            ctr_docker cp - "$CONTAINER:/root/" || fail "could not copy the checkout into the container"
    fi
    log "    container $CONTAINER ($FRESH_IMAGE), /root/hotplane = $what"
    # shellcheck disable=SC2016 # expanded in the container
    log "    $(ctr_docker exec "$CONTAINER" bash -c 'echo "$(. /etc/os-release; echo "$PRETTY_NAME"), $(dpkg-query -f . -W | wc -c) packages, $(rustc -V), $(cargo nextest --version | head -n1)"')"
    local missing
    local extra
    # shellcheck disable=SC2016 # expanded in the container
    extra="$(ctr_docker exec "$CONTAINER" bash -c 'for p in git python3 psql redis-server kill ps npm cc; do type -P $p; done; true')"
    [[ -z "$extra" ]] || fail "the image is not fresh: it already has $(tr '\n' ' ' <<<"$extra")"
    phase_end
}

phase_isolation() {
    phase_start "isolation"
    ctr_net_block_host "${BLOCKED_PORTS[@]}"
    ctr_check_ports_closed "$CONTAINER" "${BLOCKED_PORTS[@]}"
    ctr_net_egress_on
    phase_end
}

phase_test_command() {
    phase_start "test command"
    log "    # cd hotplane && CI=true HOTPLANE_TEST_INSIDE_CONTAINER=fresh-machine ./scripts/test.sh"
    local out="$CTR_CACHE/test-command.log"
    # shellcheck disable=SC2016 # $0 and $@ are the inner bash's
    interruptible bash -c 'set -o pipefail; "$@" 2>&1 | tee "$0"' "$out" \
        "$CTR_DOCKER" exec -e CI=true -e HOTPLANE_TEST_INSIDE_CONTAINER=fresh-machine -w /root/hotplane "$CONTAINER" ./scripts/test.sh ||
        fail "./scripts/test.sh failed on the fresh machine (its own error is above)"
    phase_end
    # Where the time went: test.sh's own step lines, and nextest's summary.
    local line
    while IFS= read -r line; do
        TIMINGS+=("$line")
    done < <(sed -n 's/^<== \(.*\): ok (\([0-9.]*\)s)$/\1|\2|/p; s/^ *Summary \[ *\([0-9.]*\)s\] \(.*\)$/run tests|\1|\2/p' "$out" |
        awk -F'|' '{ printf "    - %-40s %8.1fs  %s\n", $1, $2, $3 }')
}

# Runs inside the container (bash -c): the README's run command, then probes and SIGTERM.
# shellcheck disable=SC2016 # expanded by the container's bash
readonly RUN_PROBE='
set -uo pipefail
cd /root/hotplane
export PATH="$PWD/.tools/bin:$PATH"
command -v grpcurl >/dev/null || { echo "no grpcurl in .tools/bin (the test command installs it)"; exit 1; }
if (exec 3<>/dev/tcp/127.0.0.1/50051) 2>/dev/null; then echo "something already listens on 127.0.0.1:50051"; exit 1; fi
logf=/tmp/cargo-run-release.log
echo "    # cd hotplane && cargo run --release    (output: $logf)"
t0=$EPOCHREALTIME
cargo run --release >"$logf" 2>&1 &
pid=$!
since() { awk -v a="$1" -v b="$EPOCHREALTIME" "BEGIN { printf \"%.1f\", b - a }"; }
built=""
health=""
while :; do
    if [[ ! -d /proc/$pid ]] || [[ "$(cat /proc/$pid/stat 2>/dev/null | cut -d" " -f3)" == Z ]]; then
        wait "$pid"; rc=$?
        tail -n 40 "$logf"
        echo "cargo run --release exited with status $rc before SERVING"
        exit 1
    fi
    if [[ -z "$built" ]] && grep -q "Running \`" "$logf"; then
        built=$EPOCHREALTIME
        echo "    built and started after $(since "$t0")s: $(grep -m1 "Finished" "$logf" | sed "s/^ *//")"
    fi
    if [[ -n "$built" ]]; then
        health="$(grpcurl -plaintext -max-time 5 -d "{\"service\":\"\"}" 127.0.0.1:50051 grpc.health.v1.Health/Check 2>&1)" &&
            [[ "$health" == *"\"SERVING\""* ]] && break
    fi
    if (( ${EPOCHREALTIME%.*} - ${t0%.*} > TIMEOUT )); then
        tail -n 40 "$logf"
        echo "not SERVING within ${TIMEOUT}s (last health answer: ${health:-none})"
        kill -TERM "$pid"
        exit 1
    fi
    sleep 0.5
done
echo "    SERVING $(since "$built")s after the binary started ($(since "$t0")s in all): $(tr -d "\n " <<<"$health")"
list="$(grpcurl -plaintext 127.0.0.1:50051 list)" || { echo "grpcurl list failed: $list"; exit 1; }
echo "    grpcurl -plaintext 127.0.0.1:50051 list:" $list
grep -qx "hotplane.v1.Patterns" <<<"$list" || { echo "hotplane.v1.Patterns is not listed"; exit 1; }
exe="$(readlink /proc/$pid/exe)"
[[ "$exe" == */target/release/hotplane ]] || { echo "PID $pid is $exe, not the server (cargo did not exec it?)"; kill -TERM "$pid"; exit 1; }
t1=$EPOCHREALTIME
kill -TERM "$pid"
for ((i = 0; i < 300; i++)); do
    [[ "$(cut -d" " -f3 /proc/$pid/stat 2>/dev/null)" == Z || ! -d /proc/$pid ]] && break
    sleep 0.1
done
if [[ -d /proc/$pid && "$(cut -d" " -f3 /proc/$pid/stat 2>/dev/null)" != Z ]]; then
    tail -n 20 "$logf"; echo "the server did not exit within 30 s of SIGTERM"; kill -KILL "$pid"; exit 1
fi
wait "$pid"; rc=$?
echo "    SIGTERM: exited with status $rc after $(since "$t1")s; last lines:"
tail -n 3 "$logf" | sed "s/^/        /"
(( rc == 0 )) || { echo "the server exited with status $rc on SIGTERM, not 0"; exit 1; }
'

phase_run_command() {
    phase_start "run command"
    interruptible "$CTR_DOCKER" exec -e "TIMEOUT=$RUN_BUILD_TIMEOUT_S" "$CONTAINER" bash -c "$RUN_PROBE" ||
        fail "cargo run --release did not reach SERVING, list hotplane.v1.Patterns and exit 0 on SIGTERM (above)"
    phase_end
}

main() {
    log "hotplane fresh-machine check: $(date -u '+%Y-%m-%dT%H:%M:%SZ'), $(nproc) cores, cache $CTR_CACHE"
    phase_daemon
    phase_images
    phase_checkout
    phase_isolation
    phase_test_command
    phase_run_command
}

main

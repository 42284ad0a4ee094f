#!/usr/bin/env bash
# Test hosts on one machine, for the tests of jobs on several hosts: network namespaces joined by
# a bridge, with addresses only inside namespaces this script made.
#
#   scripts/testbed.sh up [N] [--slurm]
#                               make hosts lfh1..lfhN (default 3) at 10.77.0.1..N, named in /etc/hosts;
#                               with --slurm, also a Slurm cluster over them (munge, slurmctld on
#                               the first host, a slurmd on each), configured by $SLURM_CONF as printed
#   scripts/testbed.sh down     stop the daemons, remove every namespace and /etc/hosts line it made
#   scripts/testbed.sh status   say what is up
#   scripts/testbed.sh rsh HOST CMD…
#                               run CMD (one shell command line) on test host HOST: Open MPI's
#                               remote launcher for the test hosts,
#                               OMPI_MCA_plm_rsh_agent="scripts/testbed.sh rsh"
#
# Run a command on a host with `nsenter --net=/run/netns/lfh2 CMD`; cut a host's link with
# `ip -n lfsw link set v-lfh2 down`. Needs root and iproute2; says so in one line otherwise.
# Every name carries the prefix in LIFELINE_TESTBED_PREFIX (default lf), so two test beds with
# other prefixes can live side by side.
set -euo pipefail

PREFIX="${LIFELINE_TESTBED_PREFIX:-lf}"
SUBNET="${LIFELINE_TESTBED_SUBNET:-10.77.0}"
SWITCH="${PREFIX}sw"
MARK="# lifeline-testbed ${PREFIX}:"
STATE="/run/lifeline-testbed-${PREFIX}"

need() {
    if [ "$(id -u)" != 0 ]; then echo "testbed: needs root (network namespaces)" >&2; exit 2; fi
    for tool in ip nsenter; do
        command -v "$tool" >/dev/null || { echo "testbed: needs $tool (apt-get install iproute2 util-linux)" >&2; exit 2; }
    done
}

hosts_up() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}h[0-9]+$" | sort -V || true
}

stop_daemons() {
    [ -d "$STATE" ] || return 0
    for pidfile in "$STATE"/*.pid; do
        [ -f "$pidfile" ] || continue
        kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    done
    rm -rf "$STATE"
}

down() {
    stop_daemons
    for host in $(hosts_up); do
        # Deleting a namespace leaves its processes running: end them first (ranks, job steps).
        for pid in $(ip netns pids "$host" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns delete "$host" 2>/dev/null || true
    done
    ip netns delete "$SWITCH" 2>/dev/null || true
    if [ -w /etc/hosts ] && grep -qF "$MARK" /etc/hosts; then
        # /etc/hosts may be a bind mount: rewrite it in place rather than replace it, and only
        # from a complete copy.
        local kept
        kept="$(mktemp)"
        local status=0
        grep -vF "$MARK" /etc/hosts > "$kept" || status=$?
        if [ "$status" -le 1 ]; then cat "$kept" > /etc/hosts; fi
        rm -f "$kept"
    fi
}

up() {
    local count="${1:-3}"
    down
    ip netns add "$SWITCH"
    ip -n "$SWITCH" link add br0 type bridge
    ip -n "$SWITCH" link set br0 up
    ip -n "$SWITCH" link set lo up
    for index in $(seq 1 "$count"); do
        local host="${PREFIX}h${index}"
        ip netns add "$host"
        ip link add "v-$host" netns "$SWITCH" type veth peer name eth0 netns "$host"
        ip -n "$SWITCH" link set "v-$host" master br0
        ip -n "$SWITCH" link set "v-$host" up
        ip -n "$host" link set lo up
        ip -n "$host" addr add "${SUBNET}.${index}/24" dev eth0
        ip -n "$host" link set eth0 up
        echo "${SUBNET}.${index} ${host} ${MARK}" >> /etc/hosts
    done
    # The bridge forwards at once (no learning delay on fresh ports).
    ip -n "$SWITCH" link set br0 type bridge forward_delay 0 2>/dev/null || true
    for index in $(seq 2 "$count"); do
        nsenter --net="/run/netns/${PREFIX}h1" ping -c1 -W2 "${SUBNET}.${index}" >/dev/null 2>&1 || true
    done
    echo "testbed: hosts $(hosts_up | tr '\n' ' ')up on ${SUBNET}.0/24"
}

# Starts a daemon with none of this script's descriptors: no standard streams, and none
# inherited from the caller (a caller that learns of this script's end from a descriptor its
# child holds, as Foundation's Process does, would otherwise wait for the daemon).
daemon() {
    (
        for fd in /proc/self/fd/*; do
            fd="${fd##*/}"
            if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec ${fd}>&-" 2>/dev/null || true; fi
        done
        exec "$@"
    ) </dev/null >/dev/null 2>&1
}

# Slurm 22.05 from Debian (slurm-wlm, munge) over the hosts, without systemd: munged on this
# machine (its socket is shared by every namespace), slurmctld on the first host, slurmd -N on
# each; state, spool, logs and pid files under $STATE.
slurm_up() {
    local count="$1"
    for tool in slurmctld slurmd munged srun scontrol; do
        command -v "$tool" >/dev/null || { echo "testbed: --slurm needs $tool (apt-get install slurm-wlm munge)" >&2; exit 2; }
    done
    mkdir -p "$STATE/state" "$STATE/spool"
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        chown munge:munge /run/munge /var/log/munge /var/lib/munge
        [ -f /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || /usr/sbin/create-munge-key -f >/dev/null 2>&1; }
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        daemon runuser -u munge -- /usr/sbin/munged --force
        pgrep -n -x munged > "$STATE/munged.pid"
    fi
    local conf="$STATE/slurm.conf"
    {
        echo "ClusterName=lifeline-testbed"
        echo "SlurmctldHost=$(hostname)(${SUBNET}.1)"
        echo "SlurmUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_CPU"
        echo "ReturnToService=2"
        echo "MpiDefault=none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "StateSaveLocation=$STATE/state"
        echo "SlurmdSpoolDir=$STATE/spool/%n"
        echo "SlurmctldPidFile=$STATE/slurmctld.pid"
        echo "SlurmdPidFile=$STATE/slurmd-%n.pid"
        echo "SlurmctldLogFile=$STATE/slurmctld.log"
        echo "SlurmdLogFile=$STATE/slurmd-%n.log"
        echo "SlurmdTimeout=30"
        for index in $(seq 1 "$count"); do
            echo "NodeName=${PREFIX}h${index} NodeAddr=${SUBNET}.${index} CPUs=2 RealMemory=2000"
        done
        echo "PartitionName=debug Nodes=ALL Default=YES OverSubscribe=YES MaxTime=INFINITE State=UP"
    } > "$conf"
    export SLURM_CONF="$conf"
    daemon nsenter --net="/run/netns/${PREFIX}h1" slurmctld -i
    for index in $(seq 1 "$count"); do
        mkdir -p "$STATE/spool/${PREFIX}h${index}"
        daemon nsenter --net="/run/netns/${PREFIX}h${index}" slurmd -N "${PREFIX}h${index}"
    done
    for _ in $(seq 1 60); do
        local idle
        idle="$(nsenter --net="/run/netns/${PREFIX}h1" sinfo --noheader --states=idle --format=%D 2>/dev/null | head -1)"
        if [ "${idle:-0}" = "$count" ]; then
            echo "testbed: Slurm up on ${count} nodes: export SLURM_CONF=$conf"
            return 0
        fi
        sleep 0.5
    done
    echo "testbed: the Slurm nodes did not come up; see $STATE/*.log" >&2
    exit 1
}

case "${1:-}" in
    up)
        need
        # A failure half way leaves nothing behind.
        trap 'status=$?; if [ "$status" != 0 ]; then down; fi' EXIT
        count=3
        slurm=""
        shift
        for argument in "$@"; do
            case "$argument" in
                --slurm) slurm=1 ;;
                *) count="$argument" ;;
            esac
        done
        up "$count"
        if [ -n "$slurm" ]; then slurm_up "$count"; fi
        ;;
    down) need; down; echo "testbed: down" ;;
    status)
        up_hosts="$(hosts_up | tr '\n' ' ')"
        echo "testbed: ${up_hosts:-no hosts up}"
        ;;
    rsh)
        # Open MPI calls its agent as `AGENT HOST COMMAND…`, the command a shell line.
        [ $# -ge 3 ] || { echo "usage: scripts/testbed.sh rsh HOST COMMAND…" >&2; exit 2; }
        host="$2"
        shift 2
        [ -e "/run/netns/$host" ] || { echo "testbed: no test host $host" >&2; exit 2; }
        exec nsenter --net="/run/netns/$host" /bin/sh -c "$*"
        ;;
    *) echo "usage: scripts/testbed.sh up [N] [--slurm] | down | status | rsh HOST COMMAND…" >&2; exit 2 ;;
esac

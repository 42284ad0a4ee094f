#!/usr/bin/env bash
# Test hosts on one machine, for the tests of jobs on several hosts: network namespaces joined by
# a bridge, with addresses only inside namespaces this script made.
#
#   scripts/testbed.sh up [N]   make hosts lfh1..lfhN (default 3) at 10.77.0.1..N, named in /etc/hosts
#   scripts/testbed.sh down     remove every namespace and /etc/hosts line it made
#   scripts/testbed.sh status   say what is up
#
# Run a command on a host with `nsenter --net=/run/netns/lfh2 CMD`; cut a host's link with
# `ip -n lfsw link set v-lfh2 down`. Needs root and iproute2; says so in one line otherwise.
# Every name carries the prefix in LIFELINE_TESTBED_PREFIX (default lf), so two test beds with
# other prefixes can live side by side.
set -euo pipefail

PREFIX="${LIFELINE_TESTBED_PREFIX:-lf}"
SUBNET="${LIFELINE_TESTBED_SUBNET:-10.77.0}"
SWITCH="${PREFIX}sw"
MARK="# lifeline-testbed ${PREFIX}"

need() {
    if [ "$(id -u)" != 0 ]; then echo "testbed: needs root (network namespaces)" >&2; exit 2; fi
    for tool in ip nsenter; do
        command -v "$tool" >/dev/null || { echo "testbed: needs $tool (apt-get install iproute2 util-linux)" >&2; exit 2; }
    done
}

hosts_up() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}h[0-9]+$" | sort -V || true
}

down() {
    for host in $(hosts_up); do ip netns delete "$host" 2>/dev/null || true; done
    ip netns delete "$SWITCH" 2>/dev/null || true
    if [ -w /etc/hosts ] && grep -q "$MARK" /etc/hosts; then
        # /etc/hosts may be a bind mount: rewrite it in place rather than replace it.
        grep -v "$MARK" /etc/hosts > /etc/hosts.lifeline-testbed || true
        cat /etc/hosts.lifeline-testbed > /etc/hosts
        rm -f /etc/hosts.lifeline-testbed
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

case "${1:-}" in
    up) need; up "${2:-3}" ;;
    down) need; down; echo "testbed: down" ;;
    status)
        up_hosts="$(hosts_up | tr '\n' ' ')"
        echo "testbed: ${up_hosts:-no hosts up}"
        ;;
    *) echo "usage: scripts/testbed.sh up [N] | down | status" >&2; exit 2 ;;
esac

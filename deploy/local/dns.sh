#!/usr/bin/env bash
# DNS SRV records for a local cluster, served by dnsmasq on loopback, so that clients
# (and conclave-spec --domain localhost --dns-server 127.0.0.1:PORT) find the nodes the
# way they find a real deployment.
#   dns.sh start    serve the records of the nodes `cluster.sh up` started
#   dns.sh stop     stop dnsmasq
#   dns.sh status   whether it runs, and its records
# For each node i of the cluster (its STARTTLS port P):
#   _xmpps-client._tcp.localhost  SRV 10 W P+1 nodeI.localhost   (Direct TLS)
#   _xmpp-client._tcp.localhost   SRV 10 W P   nodeI.localhost   (STARTTLS)
#   nodeI.localhost               A   127.0.0.1
# Environment:
#   CONCLAVE_DNS_PORT      the UDP port (default 5353)
#   CONCLAVE_DNS_WEIGHTS   the nodes' SRV weights, e.g. "1 1 2" (default 1 each)
#   CONCLAVE_CLUSTER_DIR   the cluster's directory (default .conclave/cluster); the pid
#                          file and log (dnsmasq.pid, dnsmasq.log) go there too
# Needs dnsmasq (Debian: apt-get install dnsmasq).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
port="${CONCLAVE_DNS_PORT:-5353}"
dir="${CONCLAVE_CLUSTER_DIR:-.conclave/cluster}"
case "$dir" in /*) ;; *) dir="$root/$dir" ;; esac
nodes_file="$dir/nodes"
pid_file="$dir/dnsmasq.pid"
log="$dir/dnsmasq.log"
read -r -a weights <<<"${CONCLAVE_DNS_WEIGHTS:-}"

running() {
    local pid
    pid=$(cat "$pid_file" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -q dnsmasq
}

start() {
    local dnsmasq i name starttls direct link weight records=()
    dnsmasq=$(command -v dnsmasq || ls /usr/sbin/dnsmasq /sbin/dnsmasq 2>/dev/null | head -1)
    [ -n "$dnsmasq" ] || { echo "dnsmasq is needed (Debian: apt-get install dnsmasq)" >&2; exit 1; }
    [ -s "$nodes_file" ] || { echo "no cluster in ${dir#"$root"/} (start one with 'make cluster-up')" >&2; exit 1; }
    running && { echo "dnsmasq already runs (pid $(cat "$pid_file"))" >&2; exit 1; }
    i=0
    while read -r name starttls direct link; do
        [ -n "$name" ] || continue
        weight="${weights[$i]:-1}"
        i=$((i + 1))
        records+=(--srv-host="_xmpps-client._tcp.localhost,$name.localhost,$direct,10,$weight")
        records+=(--srv-host="_xmpp-client._tcp.localhost,$name.localhost,$starttls,10,$weight")
        records+=(--host-record="$name.localhost,127.0.0.1")
    done <"$nodes_file"
    # As root, dnsmasq drops to an unprivileged user, so the pid file is written by
    # this script (from $!), not by dnsmasq.
    # Until it says "started", the child is only checked for being alive: right after
    # the fork it is still this script (not yet dnsmasq in /proc/PID/cmdline).
    "$dnsmasq" --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
        --listen-address=127.0.0.1 --bind-interfaces --port="$port" --log-queries --log-facility=- \
        "${records[@]}" </dev/null >"$log" 2>&1 &
    local pid=$! status
    echo "$pid" >"$pid_file"
    for _ in $(seq 1 200); do
        grep -q "started" "$log" 2>/dev/null && break
        # A dnsmasq that exited is a zombie until it is waited for: state Z.
        if ! kill -0 "$pid" 2>/dev/null || [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
            wait "$pid"
            status=$?
            echo "dnsmasq did not start (exit status $status):" >&2
            cat "$log" >&2
            rm -f "$pid_file"
            exit 1
        fi
        sleep 0.05
    done
    if ! grep -q "started" "$log" 2>/dev/null; then
        echo "dnsmasq did not say it started within 10 s:" >&2
        cat "$log" >&2
        kill "$pid" 2>/dev/null
        rm -f "$pid_file"
        exit 1
    fi
    echo "dnsmasq on 127.0.0.1:$port serves SRV records of localhost for $i node(s) (log: ${log#"$root"/}):"
    printf '  %s\n' "${records[@]#--srv-host=}" | grep -v host-record
}

stop() {
    if running; then
        kill "$(cat "$pid_file")"
        for _ in $(seq 1 50); do running || break; sleep 0.1; done
        echo "dnsmasq stopped"
    fi
    rm -f "$pid_file"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status)
    if running; then
        echo "dnsmasq runs (pid $(cat "$pid_file")), port $(tr '\0' '\n' <"/proc/$(cat "$pid_file")/cmdline" | sed -n 's/^--port=//p')"
        tr '\0' '\n' <"/proc/$(cat "$pid_file")/cmdline" | sed -n 's/^--srv-host=/  /p'
    else
        echo "dnsmasq is not running"
        exit 3
    fi
    ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# bench/idle.sh: what capd costs the host when nothing is captured, and what a live stream costs
# on a quiet link, next to tcpdump -w on the same quiet link. Run by hand, as root; not a CI job.
#
# How it works: a network namespace of its own with a veth pair that carries no traffic. Three
# measurements of IDLE_S seconds each, after a second to settle:
#   agent:   capd with no client (installed and waiting, as on most production hosts);
#   stream:  capd + capctl stream -f udp -w FILE (a capture left open on a quiet link);
#   tcpdump: tcpdump -w FILE udp with its default buffering (-B as bench/run.sh uses).
# CPU is the processes' exact on-CPU time (schedstat, bench/sched.sh) and wake-ups the number
# of times their threads were put on a CPU, both per second. On a VM each wake-up costs tens of
# microseconds (cold caches, timer exits), so wake-ups are most of the cost of a quiet process,
# and that cost swings with the host's load: each case is measured ROUNDS times and the median
# is what counts.
#
# Usage: sudo bench/idle.sh [BUILD_DIR]   (BUILD_DIR holds agent/capd and client/capctl; ./build)
# Settings (environment):
#   IDLE_S=10 ROUNDS=3        seconds per measurement, measurements per case
#   TCPDUMP_BUFFER_KIB=32768  tcpdump -B
#   TSV=                      append one key=value line per case to this file (bench/all.sh)
set -euo pipefail

BUILD_DIR=${1:-./build}
IDLE_S=${IDLE_S:-10}
ROUNDS=${ROUNDS:-3}
TCPDUMP_BUFFER_KIB=${TCPDUMP_BUFFER_KIB:-32768}
TSV=${TSV:-}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$BENCH_DIR/sched.sh"  # sched_snapshot, sched_delta, sched_runs, wait_for

die() { printf 'idle: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root (network namespaces, AF_PACKET)"
CAPD=$(realpath "$BUILD_DIR/agent/capd" 2>/dev/null) || die "$BUILD_DIR/agent/capd not found"
CAPCTL=$(realpath "$BUILD_DIR/client/capctl" 2>/dev/null) || die "$BUILD_DIR/client/capctl not found"
command -v tcpdump >/dev/null || die "tcpdump not found"

NS=capd-idle-$$
LISTEN=127.0.0.1:50961  # the namespace's own loopback: no other test can hold it
TMP=$(mktemp -d /tmp/capd-idle.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
ip -n "$NS" link add idle0 type veth peer name idle1
for dev in lo idle0 idle1; do ip -n "$NS" link set "$dev" up; done

# measure_once CASE PID...: "CPU-ns runs" of the processes over IDLE_S seconds.
measure_once() {
  local case=$1 pid ns=0 runs=0
  shift
  for pid in "$@"; do sched_snapshot "$pid" >"$TMP/$case.$pid.0"; done
  sleep "$IDLE_S"
  for pid in "$@"; do
    sched_snapshot "$pid" >"$TMP/$case.$pid.1"
    ns=$((ns + $(sched_delta "$TMP/$case.$pid.0" "$TMP/$case.$pid.1")))
    runs=$((runs + $(sched_runs "$TMP/$case.$pid.0" "$TMP/$case.$pid.1")))
  done
  echo "$ns $runs"
}

# measure CASE PID...: ROUNDS measurements after a second to settle; prints each and the median
# (by CPU) per second.
measure() {
  local case=$1 r line all=""
  shift
  sleep 1
  for ((r = 1; r <= ROUNDS; r++)); do
    line=$(measure_once "$case" "$@")
    all+="$line"$'\n'
  done
  printf '%s' "$all" | sort -n | awk -v c="$case" -v s="$IDLE_S" -v n="$ROUNDS" -v tsv="$TSV" '
    { ns[NR] = $1; runs[NR] = $2; each = each (NR > 1 ? " " : "") sprintf("%.0f", $1 / 1000 / s) }
    END {
      m = int((n + 1) / 2)
      printf "%-8s %10.0f %12.1f   (%s)\n", c, ns[m] / 1000 / s, runs[m] / s, each
      if (tsv != "") printf "case=%s\tidle_s=%s\trounds=%s\tcpu_ns=%s\truns=%s\tcpu_us_each=%s\n", c, s, n, ns[m], runs[m], each >> tsv
    }'
}

printf '%-8s %10s %12s   %s\n' case "CPU us/s" "wake-ups/s" "(CPU us/s of each round, sorted)"

ip netns exec "$NS" "$CAPD" --listen "$LISTEN" --name idle >"$TMP/capd.log" 2>&1 &
CAPD_PID=$!
PIDS+=("$CAPD_PID")
wait_for "$TMP/capd.log" "listening on" "$CAPD_PID"
measure agent "$CAPD_PID"

ip netns exec "$NS" "$CAPCTL" stream --agent "$LISTEN" -i idle0 -f udp -w "$TMP/stream.pcapng" \
  2>"$TMP/capctl.err" &
CAPCTL_PID=$!
PIDS+=("$CAPCTL_PID")
wait_for "$TMP/capctl.err" "capturing on" "$CAPCTL_PID"
measure stream "$CAPD_PID" "$CAPCTL_PID"
kill -INT "$CAPCTL_PID"
wait "$CAPCTL_PID" || die "capctl failed: $(tail -3 "$TMP/capctl.err")"

ip netns exec "$NS" tcpdump -i idle0 -B "$TCPDUMP_BUFFER_KIB" -w "$TMP/tcpdump.pcap" udp \
  2>"$TMP/tcpdump.err" &
TCPDUMP_PID=$!
PIDS+=("$TCPDUMP_PID")
wait_for "$TMP/tcpdump.err" "listening on" "$TCPDUMP_PID"
measure tcpdump "$TCPDUMP_PID"

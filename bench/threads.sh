#!/usr/bin/env bash
# bench/threads.sh: where capd's and capctl's CPU and wake-ups go, thread by thread, during one
# burst; tcpdump on its own burst for comparison. Run by hand, as root; not a CI job.
#
# One capd + one `capctl stream -w FILE` (as bench/run.sh runs them) on a veth in a namespace of
# its own; trafgen sends COUNT frames of SIZE bytes at RATE. Before and after the burst (until
# the file stops growing) every thread's schedstat is read; the table sums on-CPU time and
# wake-ups (times put on a CPU) per thread name, per million packets, and each process's minor page
# faults (memory taken fresh from the kernel: churn in the allocator) and its peak RSS (VmHWM). With PERF=1 `perf record -g`
# samples capd and capctl during the burst and `perf report` (by symbol, no children) is printed.
#
# Usage: sudo bench/threads.sh [BUILD_DIR]
# Settings: SIZE=64 COUNT=250000 RATE=50000pps (empty: as fast as trafgen goes) SETTLE_S=1.5
#           TCPDUMP=1 (0: capd + capctl only) CAPCTL_ARGS= CAPD_ARGS=
#           CAPD_ENV= (VAR=VALUE ... for capd alone, e.g. GLIBC_TUNABLES=...)
#           PERF=0 PERF_FREQ=4000 PERF_CALLGRAPH=-g ("--call-graph dwarf,8192" through libraries
#           without frame pointers) PERF_SORT=comm,dso,symbol PERF_REPORT_ARGS= PERF_LINES=60
#           PERF_OUT= (a path: perf.data of capd + capctl is kept there)
#           PERF_EVENTS="-F \$PERF_FREQ" (e.g. "-e page-faults -c 1": where each minor fault comes from)
set -euo pipefail

BUILD_DIR=${1:-./build}
SIZE=${SIZE:-64}
COUNT=${COUNT:-250000}
RATE=${RATE-50000pps}
SETTLE_S=${SETTLE_S:-1.5}
PERF=${PERF:-0}
TCPDUMP=${TCPDUMP:-1}
CAPCTL_ARGS=${CAPCTL_ARGS:-}
CAPD_ARGS=${CAPD_ARGS:-}
CAPD_ENV=${CAPD_ENV:-}
PORT=50051

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/sched.sh
source "$BENCH_DIR/sched.sh"
log() { printf '[threads %(%T)T] %s\n' -1 "$*" >&2; }
die() { printf 'threads: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
CAPD=$(realpath "$BUILD_DIR/agent/capd")
CAPCTL=$(realpath "$BUILD_DIR/client/capctl")

ID=$(printf '%x%04x' $$ $((RANDOM)))
SND_NS=capt-$ID-snd CAP_NS=capt-$ID-cap SND_IF=ct${ID}s CAP_IF=ct${ID}c
TMP=$(mktemp -d /tmp/capd-threads.XXXXXX)
PIDS=()
cleanup() {
  local rc=$? pid
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  ip netns del "$SND_NS" 2>/dev/null
  ip netns del "$CAP_NS" 2>/dev/null
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_veth_pair "$SND_NS" "$SND_IF" 10.214.0.1 "$CAP_NS" "$CAP_IF" 10.214.0.2
SND_MAC=$(ip netns exec "$SND_NS" cat "/sys/class/net/$SND_IF/address")
CAP_MAC=$(ip netns exec "$CAP_NS" cat "/sys/class/net/$CAP_IF/address")
cat >"$TMP/t.cfg" <<EOF
{ eth(da=$CAP_MAC, sa=$SND_MAC), ipv4(saddr=10.214.0.1, daddr=10.214.0.2, ttl=64),
  udp(sport=40000, dport=9), fill(0x5a, $((SIZE - 42))) }
EOF

# thread_snapshot PID: "tid name on-CPU-ns runs" per thread.
thread_snapshot() {
  local stat tid
  for stat in /proc/"$1"/task/*/schedstat; do
    tid=${stat%/schedstat}
    tid=${tid##*/}
    printf '%s %s %s\n' "$tid" "$(tr ' ' _ <"/proc/$1/task/$tid/comm" 2>/dev/null)" \
      "$(cat "$stat" 2>/dev/null)"
  done
}
# by_name BEFORE AFTER TOOL: per thread name, ms of CPU and wake-ups, and per million packets.
by_name() {
  awk -v tool="$3" -v n="$SENT" 'NR == FNR { ns[$1] = $3; runs[$1] = $5; next }
    { d = $3 - ($1 in ns ? ns[$1] : 0); r = $5 - ($1 in runs ? runs[$1] : 0)
      cpu[$2] += d; wk[$2] += r; tc += d; tr += r }
    END { for (k in cpu) if (wk[k] > 0)
            printf "%-8s %-18s %9.1f ms %9d wake-ups  %7.3f s/Mpkt %8.0f wake-ups/Mpkt\n",
                   tool, k, cpu[k] / 1e6, wk[k], cpu[k] / 1e3 / n, wk[k] * 1e6 / n
          printf "%-8s %-18s %9.1f ms %9d wake-ups  %7.3f s/Mpkt %8.0f wake-ups/Mpkt\n",
                 tool, "(all)", tc / 1e6, tr, tc / 1e3 / n, tr * 1e6 / n }' "$1" "$2" | sort -k2
}
# minor_faults PID: field 10 of /proc/PID/stat (counted after the ")" that ends the name).
minor_faults() { sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f8; }
# faults_line TOOL BEFORE AFTER PID
faults_line() {
  printf '%-8s %-18s %9d faults %14s  %7.0f faults/Mpkt   VmHWM %s\n' "$1" "(minor faults)" \
    $(($3 - $2)) "" "$(awk -v d=$(($3 - $2)) -v n="$SENT" 'BEGIN { print d * 1e6 / n }')" \
    "$(awk '/VmHWM/ { print $2 " " $3 }' "/proc/$4/status")"
}
rx() { ip netns exec "$CAP_NS" cat "/sys/class/net/$CAP_IF/statistics/rx_packets"; }
burst() {
  local args=(--dev "$SND_IF" --conf "$TMP/t.cfg" --num "$COUNT" --cpus 1 --no-sock-mem
    --notouch-irq)
  [[ -n $RATE ]] && args+=(--rate "$RATE")
  ip netns exec "$SND_NS" trafgen "${args[@]}" >"$TMP/trafgen.log" 2>&1 || die "trafgen failed"
}

start_perf() {  # start_perf FILE PIDS
  local callgraph=() events=()
  read -r -a callgraph <<<"${PERF_CALLGRAPH:--g}"
  read -r -a events <<<"${PERF_EVENTS:--F ${PERF_FREQ:-4000}}"
  perf record "${events[@]}" "${callgraph[@]}" -o "$1" -p "$2" 2>"$TMP/perf.err" \
    >/dev/null &
  PERF_PID=$!
  PIDS+=("$PERF_PID")
  sleep 0.3
}
stop_perf() {
  kill -INT "$PERF_PID"
  wait "$PERF_PID" 2>/dev/null || true
  forget "$PERF_PID"
}
report() {  # report FILE
  local extra=()
  read -r -a extra <<<"${PERF_REPORT_ARGS:-}"
  perf report -i "$1" --no-children --sort "${PERF_SORT:-comm,dso,symbol}" --stdio -g none \
    "${extra[@]}" 2>/dev/null |
    grep -v "^#" | grep "%" | head -"${PERF_LINES:-60}" || true
}

log "load average: $(cut -d' ' -f1-3 /proc/loadavg); $COUNT x ${SIZE} B at ${RATE:-full rate}"
if [[ $TCPDUMP == 1 ]]; then
  ip netns exec "$CAP_NS" tcpdump -i "$CAP_IF" -B 32768 --time-stamp-precision nano \
    -w "$TMP/t.pcap" udp 2>"$TMP/tcpdump.err" &
  TD=$!
  PIDS+=("$TD")
  wait_for "$TMP/tcpdump.err" "listening on" "$TD"
  sleep 0.5
  thread_snapshot "$TD" >"$TMP/td.0"
  rx0=$(rx)
  [[ $PERF != 1 ]] || start_perf "$TMP/perf.td.data" "$TD"
  burst
  wait_quiet "$TMP/t.pcap" || true
  thread_snapshot "$TD" >"$TMP/td.1"
  [[ $PERF != 1 ]] || stop_perf
  SENT=$(($(rx) - rx0))
  by_name "$TMP/td.0" "$TMP/td.1" tcpdump
  kill -TERM "$TD"
  wait "$TD" 2>/dev/null || true
  forget "$TD"
fi

read -r -a capd_extra <<<"$CAPD_ARGS"
read -r -a capctl_extra <<<"$CAPCTL_ARGS"
read -r -a capd_env <<<"$CAPD_ENV"
env "${capd_env[@]}" ip netns exec "$CAP_NS" "$CAPD" --listen "127.0.0.1:$PORT" "${capd_extra[@]}" \
  >"$TMP/capd.log" 2>&1 &
CAPD_PID=$!  # (env execs ip, which execs capd: the same process)
PIDS+=("$CAPD_PID")
wait_for "$TMP/capd.log" "listening on" "$CAPD_PID"
ip netns exec "$CAP_NS" "$CAPCTL" stream --agent "127.0.0.1:$PORT" -i "$CAP_IF" -f udp \
  -w "$TMP/t.pcapng" "${capctl_extra[@]}" 2>"$TMP/capctl.err" &
CTL=$!
PIDS+=("$CTL")
wait_for "$TMP/capctl.err" "capturing on" "$CTL"
sleep 0.5
thread_snapshot "$CAPD_PID" >"$TMP/capd.0"
thread_snapshot "$CTL" >"$TMP/ctl.0"
capd_faults0=$(minor_faults "$CAPD_PID")
ctl_faults0=$(minor_faults "$CTL")
rx0=$(rx)
[[ $PERF != 1 ]] || start_perf "$TMP/perf.data" "$CAPD_PID,$CTL"
burst
wait_quiet "$TMP/t.pcapng" || true
thread_snapshot "$CAPD_PID" >"$TMP/capd.1"
thread_snapshot "$CTL" >"$TMP/ctl.1"
capd_faults1=$(minor_faults "$CAPD_PID")
ctl_faults1=$(minor_faults "$CTL")
SENT=$(($(rx) - rx0))
[[ $PERF != 1 ]] || stop_perf
by_name "$TMP/capd.0" "$TMP/capd.1" capd
by_name "$TMP/ctl.0" "$TMP/ctl.1" capctl
faults_line capd "$capd_faults0" "$capd_faults1" "$CAPD_PID"
faults_line capctl "$ctl_faults0" "$ctl_faults1" "$CTL"
kill -INT "$CTL"
wait "$CTL" 2>/dev/null || true
forget "$CTL"
log "sent $SENT; capctl: $(grep -o '[0-9]* packets written[^;]*' "$TMP/capctl.err" | tail -1)"
if [[ $PERF == 1 ]]; then
  [[ $TCPDUMP != 1 ]] || report "$TMP/perf.td.data"
  report "$TMP/perf.data"
  [[ -z ${PERF_OUT:-} ]] || cp "$TMP/perf.data" "$PERF_OUT"
fi

#!/usr/bin/env bash
# bench/run.sh: capd -> capctl against tcpdump on the same traffic in the same run.
# Run by hand, as root; not a CI job, not a ctest test.
#
# How it works: two network namespaces of its own joined by a veth pair. trafgen sends UDP from the
# sender namespace; capd, capctl and tcpdump run in the capture namespace on the other end.
#   1. Completeness + CPU: a burst of PACKETS frames of SIZE bytes (then LARGE_PACKETS frames of
#      LARGE_SIZE bytes) captured by tcpdump alone, by capd+capctl alone, then by both at once.
#      Captured packets are counted in the files (capinfos); CPU is utime+stime from
#      /proc/PID/stat, read once the capturers are ready (start-up excluded) and again when their
#      files stop growing.
#      With MODES=clients, one burst per N in CLIENTS captured by N capctl streams from one capd
#      at once (the cost of fan-out: capd opens one capture per stream).
#   2. Latency: LAT_PACKETS lone packets LAT_GAP apart; the capture stream goes through a FIFO to
#      latency_reader, which records arrival (CLOCK_REALTIME) minus the packet's kernel timestamp.
# With TSV=FILE every measurement is also appended to FILE as one line of key=value fields, with
# the exact on-CPU time of each process (schedstat, see sched_snapshot) and capd's memory after
# each burst (VmHWM, VmRSS): bench/all.sh builds its table from these lines.
#
# Usage: sudo bench/run.sh [BUILD_DIR]   (BUILD_DIR holds agent/capd and client/capctl; ./build)
# Settings (environment):
#   PACKETS=1000000 SIZE=64               first burst; SIZE = frame length without FCS, 60..1514
#   LARGE_PACKETS=200000 LARGE_SIZE=1500  second burst; LARGE_PACKETS=0 skips it
#   BURSTS=                               "SIZE:COUNT ..." (e.g. "64:250000 512:250000"); when set,
#                                         replaces the two bursts above
#   RATE=                                 trafgen --rate (e.g. 200000pps); empty: as fast as it goes
#   SENDERS=1                             trafgen processes (--cpus); 2 starves the capturers
#   MODES="alone both"                    alone: each capturer on its own burst; both: one burst
#                                         for both; clients: capd + N capctl streams, one burst
#   CLIENTS="1 2 4"                       the stream counts N of MODES=clients
#   LAT_PACKETS=200 LAT_GAP=20ms          latency run; LAT_PACKETS=0 skips it
#   TCPDUMP_BUFFER_KIB=32768              tcpdump -B (capd's ring is 32 MiB too)
#   SETTLE_S=2                            a file unchanged this long means the capturer is done
#   CAPD_LOG_LEVEL=info KEEP=0            KEEP=1 keeps the temporary directory (captures, logs)
#   CAPD_ARGS=                            more capd flags, e.g. "--block-timeout-ms 10"
#   TSV=                                  append machine-readable results to this file
set -euo pipefail

BUILD_DIR=${1:-./build}
PACKETS=${PACKETS:-1000000}
SIZE=${SIZE:-64}
LARGE_PACKETS=${LARGE_PACKETS:-200000}
LARGE_SIZE=${LARGE_SIZE:-1500}
RATE=${RATE:-}
SENDERS=${SENDERS:-1}
MODES=${MODES:-alone both}
CLIENTS=${CLIENTS:-1 2 4}
BURSTS=${BURSTS:-}
TSV=${TSV:-}
LAT_PACKETS=${LAT_PACKETS:-200}
LAT_GAP=${LAT_GAP:-20ms}
TCPDUMP_BUFFER_KIB=${TCPDUMP_BUFFER_KIB:-32768}
SETTLE_S=${SETTLE_S:-2}
CAPD_LOG_LEVEL=${CAPD_LOG_LEVEL:-info}
CAPD_ARGS=${CAPD_ARGS:-}
KEEP=${KEEP:-0}
PORT=50051  # capd listens inside the capture namespace, so the usual port never clashes

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/sched.sh
source "$BENCH_DIR/sched.sh"  # sched_snapshot, sched_delta, wait_for, wait_quiet, forget

log() { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (network namespaces, AF_PACKET)"
CAPD=$BUILD_DIR/agent/capd
CAPCTL=$BUILD_DIR/client/capctl
[[ -x $CAPD ]] || die "$CAPD not found or not executable (build the capd target; BUILD_DIR is \$1)"
[[ -x $CAPCTL ]] || die "$CAPCTL not found or not executable (build the capctl target)"
CAPD=$(realpath "$CAPD")
CAPCTL=$(realpath "$CAPCTL")
for tool in ip trafgen tcpdump capinfos awk; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
((LAT_PACKETS == 0)) || command -v g++ >/dev/null || die "g++ is required (latency_reader)"
if [[ -z $BURSTS ]]; then
  BURSTS="$SIZE:$PACKETS"
  ((LARGE_PACKETS > 0)) && BURSTS+=" $LARGE_SIZE:$LARGE_PACKETS"
fi
for spec in $BURSTS; do
  [[ $spec =~ ^[0-9]+:[0-9]+$ ]] || die "BURSTS: '$spec' is not SIZE:COUNT"
  ((${spec%%:*} >= 60)) || die "frame sizes must be >= 60 (Ethernet minimum): $spec"
  ((${spec%%:*} <= 1514)) || die "frame sizes must be <= 1514 (MTU 1500): $spec"
done
for n in $CLIENTS; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "CLIENTS: '$n' is not a positive number"
done

CLK_TCK=$(getconf CLK_TCK)
ID=$(printf '%x%04x' $$ $((RANDOM)))
SND_NS=capb-$ID-snd
CAP_NS=capb-$ID-cap
SND_IF=cb${ID}s  # <= 15 characters
CAP_IF=cb${ID}c
SND_IP=10.213.0.1
CAP_IP=10.213.0.2
TMP=$(mktemp -d /tmp/capd-bench.XXXXXX)
PIDS=()  # everything this script started and may still need to stop

cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null
  done
  ip netns del "$SND_NS" 2>/dev/null
  ip netns del "$CAP_NS" 2>/dev/null
  if [[ $KEEP == 1 ]]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Foreground only: backgrounded, a function runs in a subshell and $! would not be the process.
in_snd() { ip netns exec "$SND_NS" "$@"; }
in_cap() { ip netns exec "$CAP_NS" "$@"; }

# utime+stime of a whole process (all threads) in clock ticks.
cpu_ticks() {
  local stat
  stat=$(<"/proc/$1/stat") || { echo 0; return; }
  stat=${stat##*) }  # drop "pid (comm) ": comm may hold spaces
  awk '{ print $12 + $13 }' <<<"$stat"
}
ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }
cap_rx() { in_cap cat "/sys/class/net/$CAP_IF/statistics/rx_packets"; }  # frames that reached it

# expect_comm PID NAME: $! must be the capturer itself (ip netns exec execs it in place), or the
# CPU figures and signals would go to the wrong process.
expect_comm() {
  local i comm=""
  for ((i = 0; i < 50; i++)); do
    comm=$(cat "/proc/$1/comm" 2>/dev/null) || break
    [[ $comm == "$2" ]] && return 0
    sleep 0.02  # still "ip" until the exec
  done
  die "pid $1 is '$comm', expected $2"
}




stop_and_wait() {  # stop_and_wait PID: SIGTERM (background jobs ignore SIGINT), then reap
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}

count_packets() {  # packets in a capture file (pcap or pcapng)
  [[ -s $1 ]] || { echo 0; return; }
  capinfos -M -c "$1" 2>/dev/null | awk -F': *' '/Number of packets/ { print $2 }'
}

# sched_mark TAG PIDS... then sched_ns TAG PIDS...: SCHED_NS = on-CPU ns of PIDS in between,
# summed, and SCHED_RUNS = how many times their threads were put on a CPU (variables, not
# output: a command substitution's subshell would lose the NOTES).
sched_mark() {
  local tag=$1 pid
  shift
  for pid in "$@"; do sched_snapshot "$pid" >"$TMP/sched.$tag.$pid.0"; done
}
SCHED_NS=0
SCHED_RUNS=0
sched_ns() {
  local tag=$1 pid ns
  shift
  SCHED_NS=0
  SCHED_RUNS=0
  for pid in "$@"; do
    sched_snapshot "$pid" >"$TMP/sched.$tag.$pid.1"
    ns=$(sched_delta "$TMP/sched.$tag.$pid.0" "$TMP/sched.$tag.$pid.1" 2>"$TMP/lost")
    [[ -s $TMP/lost ]] && NOTES+=("$RUN: $tag threads ended during the burst ($(<"$TMP/lost"))")
    SCHED_NS=$((SCHED_NS + ns))
    SCHED_RUNS=$((SCHED_RUNS + $(sched_runs "$TMP/sched.$tag.$pid.0" "$TMP/sched.$tag.$pid.1")))
  done
}

# proc_mem_kib PID: "VmHWM VmRSS RssAnon RssFile" in KiB. VmHWM is the peak since the process
# started; RssFile includes the mmap'ed capture rings (packet_mmap's pages count as file pages).
proc_mem_kib() {
  awk '/^(VmHWM|VmRSS|RssAnon|RssFile):/ { v[$1] = $2 }
       END { print v["VmHWM:"] + 0, v["VmRSS:"] + 0, v["RssAnon:"] + 0, v["RssFile:"] + 0 }' \
    "/proc/$1/status" 2>/dev/null || echo "0 0 0 0"
}

# tsv KEY=VALUE...: one line of results for bench/all.sh, when TSV is set.
tsv() {
  [[ -n $TSV ]] || return 0
  local IFS=$'\t'
  printf '%s\n' "rate=${RATE:-max}	$*" >>"$TSV"
}

# ---------------------------------------------------------------------------------------------
# Network: sender ns --veth-- capture ns. IPv6 off so that no ND/MLD chatter lands in the counts.
setup_network() {
  ip netns add "$SND_NS"
  ip netns add "$CAP_NS"
  ip link add "$SND_IF" type veth peer name "$CAP_IF"
  ip link set "$SND_IF" netns "$SND_NS"
  ip link set "$CAP_IF" netns "$CAP_NS"
  for ns in "$SND_NS" "$CAP_NS"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
      net.ipv6.conf.default.disable_ipv6=1
  done
  in_snd sysctl -qw "net.ipv6.conf.$SND_IF.disable_ipv6=1"
  in_cap sysctl -qw "net.ipv6.conf.$CAP_IF.disable_ipv6=1"
  in_snd ip addr add "$SND_IP/24" dev "$SND_IF"
  in_cap ip addr add "$CAP_IP/24" dev "$CAP_IF"
  in_snd ip link set "$SND_IF" up
  in_cap ip link set "$CAP_IF" up
  in_cap ip link set lo up
  SND_MAC=$(in_snd cat "/sys/class/net/$SND_IF/address")
  CAP_MAC=$(in_cap cat "/sys/class/net/$CAP_IF/address")
  # Static neighbours: the ARP exchange for the kernel's ICMP errors would add frames to rx_packets.
  in_cap ip neigh replace "$SND_IP" lladdr "$SND_MAC" dev "$CAP_IF" nud permanent
  in_snd ip neigh replace "$CAP_IP" lladdr "$CAP_MAC" dev "$SND_IF" nud permanent
}

# trafgen config: one Ethernet/IPv4/UDP frame of $1 bytes (without FCS) to the capture veth. The
# port has no listener; the kernel's ICMP errors are rate-limited and are not UDP, so not captured.
write_trafgen_config() {
  local size=$1 file=$2
  cat >"$file" <<EOF
{
  eth(da=$CAP_MAC, sa=$SND_MAC),
  ipv4(saddr=$SND_IP, daddr=$CAP_IP, ttl=64),
  udp(sport=40000, dport=9),
  fill(0x5a, $((size - 42)))
}
EOF
}

# send CONFIG COUNT [GAP]: trafgen, SENDERS processes for a burst (one for lone packets), without
# touching the global socket-memory sysctls or IRQ affinity. Prints the wall time in seconds.
send() {
  local cfg=$1 count=$2 gap=${3:-} args=() t0 t1
  args=(--dev "$SND_IF" --conf "$cfg" --num "$count" --no-sock-mem --notouch-irq)
  if [[ -n $gap ]]; then
    args+=(--gap "$gap" --cpus 1)
  else
    args+=(--cpus "$SENDERS")
  fi
  [[ -z $gap && -n $RATE ]] && args+=(--rate "$RATE")
  t0=$(date +%s.%N)
  if ! in_snd trafgen "${args[@]}" >"$TMP/trafgen.log" 2>&1; then
    cat "$TMP/trafgen.log" >&2
    die "trafgen failed"
  fi
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

# ---------------------------------------------------------------------------------------------
CAPD_PID=""
start_capd() {
  local extra=()
  read -r -a extra <<<"$CAPD_ARGS"
  ip netns exec "$CAP_NS" "$CAPD" --listen "127.0.0.1:$PORT" --log-level "$CAPD_LOG_LEVEL" \
    "${extra[@]}" >"$TMP/capd.log" 2>&1 &
  CAPD_PID=$!
  PIDS+=("$CAPD_PID")
  expect_comm "$CAPD_PID" capd
  wait_for "$TMP/capd.log" "listening on" "$CAPD_PID"
}

# start_capctl OUTPUT_ARGS...: sets CAPCTL_PID, CAPCTL_ERR
start_capctl() {
  CAPCTL_ERR=$TMP/capctl.$RUN.err
  ip netns exec "$CAP_NS" "$CAPCTL" stream --agent "127.0.0.1:$PORT" -i "$CAP_IF" -f udp "$@" \
    2>"$CAPCTL_ERR" &
  CAPCTL_PID=$!
  PIDS+=("$CAPCTL_PID")
  expect_comm "$CAPCTL_PID" capctl
}

# start_tcpdump EXTRA_ARGS...: sets TCPDUMP_PID, TCPDUMP_ERR
start_tcpdump() {
  TCPDUMP_ERR=$TMP/tcpdump.$RUN.err
  ip netns exec "$CAP_NS" tcpdump -i "$CAP_IF" -B "$TCPDUMP_BUFFER_KIB" \
    --time-stamp-precision nano "$@" udp \
    2>"$TCPDUMP_ERR" &
  TCPDUMP_PID=$!
  PIDS+=("$TCPDUMP_PID")
  expect_comm "$TCPDUMP_PID" tcpdump
}

capctl_drops() {  # "kernel/interface/agent" from capctl's summary line
  local n='\([0-9]*\)'
  sed -n "s|.*dropped: $n by kernel, $n by interface, $n by agent.*|\\1/\\2/\\3|p" "$1" | tail -1
}
capctl_written() { sed -n 's/^capctl: \([0-9]*\) packets written.*/\1/p' "$1" | tail -1; }
tcpdump_drops() {  # "kernel/interface" from tcpdump's exit statistics
  local k i
  k=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$1" | tail -1)
  i=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by interface.*/\1/p' "$1" | tail -1)
  echo "${k:-?}/${i:-0}"
}
sum_drops() { awk -F/ '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s }' <<<"$1"; }

ROWS=()   # final table rows, tab-separated
NOTES=()

# burst MODE SIZE COUNT: MODE is tcpdump, capd (one capctl), both (tcpdump and one capctl on the
# same burst) or clientsN (N capctl streams from the one capd on the same burst).
burst() {
  local mode=$1 size=$2 count=$3 cfg wall rx0 rx1 sent nclients=0 i base
  local capd0=0 capd1=0 ctl0=0 ctl1=0 td0=0 td1=0 files=() ctl_pids=() ctl_errs=() ctl_outs=()
  local td_ns=0 capd_ns=0 ctl_ns=0 td_runs=0 capd_runs=0 ctl_runs=0 mem
  case $mode in
    capd | both) nclients=1 ;;
    clients*) nclients=${mode#clients} ;;
  esac
  base=burst-$size-$mode
  RUN=$base
  cfg=$TMP/udp$size.cfg
  write_trafgen_config "$size" "$cfg"
  log "burst: $count x ${size}B, capturer(s): $mode"
  TCPDUMP_PID="" CAPCTL_PID=""
  if [[ $mode == tcpdump || $mode == both ]]; then
    start_tcpdump -w "$TMP/$RUN.tcpdump.pcap"
    wait_for "$TCPDUMP_ERR" "listening on" "$TCPDUMP_PID"
    files+=("$TMP/$RUN.tcpdump.pcap")
  fi
  for ((i = 1; i <= nclients; i++)); do
    [[ $mode == clients* ]] && RUN=$base-c$i
    start_capctl -w "$TMP/$RUN.capctl.pcapng"
    wait_for "$CAPCTL_ERR" "capturing on" "$CAPCTL_PID"
    files+=("$TMP/$RUN.capctl.pcapng")
    ctl_pids+=("$CAPCTL_PID") ctl_errs+=("$CAPCTL_ERR") ctl_outs+=("$TMP/$RUN.capctl.pcapng")
  done
  RUN=$base
  sleep 0.5
  rx0=$(cap_rx)
  if [[ -n $TCPDUMP_PID ]]; then
    td0=$(cpu_ticks "$TCPDUMP_PID")
    sched_mark tcpdump "$TCPDUMP_PID"
  fi
  if ((nclients > 0)); then
    for i in "${ctl_pids[@]}"; do ctl0=$((ctl0 + $(cpu_ticks "$i"))); done
    capd0=$(cpu_ticks "$CAPD_PID")
    sched_mark capctl "${ctl_pids[@]}"
    sched_mark capd "$CAPD_PID"
  fi

  wall=$(send "$cfg" "$count")
  wait_quiet "${files[@]}" || log "warning: captures still growing after 120 s"

  if [[ -n $TCPDUMP_PID ]]; then
    td1=$(cpu_ticks "$TCPDUMP_PID")
    sched_ns tcpdump "$TCPDUMP_PID"
    td_ns=$SCHED_NS td_runs=$SCHED_RUNS
  fi
  if ((nclients > 0)); then
    for i in "${ctl_pids[@]}"; do ctl1=$((ctl1 + $(cpu_ticks "$i"))); done
    capd1=$(cpu_ticks "$CAPD_PID")
    sched_ns capctl "${ctl_pids[@]}"
    ctl_ns=$SCHED_NS ctl_runs=$SCHED_RUNS
    sched_ns capd "$CAPD_PID"
    capd_ns=$SCHED_NS capd_runs=$SCHED_RUNS
    mem=$(proc_mem_kib "$CAPD_PID")
    log "  capd memory (KiB): VmHWM VmRSS RssAnon RssFile = $mem"
  fi
  rx1=$(cap_rx)
  sent=$((rx1 - rx0))
  local pps
  pps=$(awk -v n="$sent" -v s="$wall" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  log "  trafgen: $(grep -o '[0-9]* packets outgoing' "$TMP/trafgen.log" | head -1) in ${wall}s;" \
    "$sent reached $CAP_IF (~$pps pkt/s)"
  [[ $sent == "$count" ]] ||
    NOTES+=("${size}B $mode: trafgen sent $count, $CAP_IF received $sent (lost before capture)")

  local label="${size}B alone"
  [[ $mode != both ]] || label="${size}B together"
  if [[ $mode == clients* ]]; then
    label="${size}B $nclients clients"
    ((nclients > 1)) || label="${size}B 1 client"
  fi
  local got drops written
  if [[ -n $TCPDUMP_PID ]]; then
    stop_and_wait "$TCPDUMP_PID"
    got=$(count_packets "$TMP/$RUN.tcpdump.pcap")
    drops=$(tcpdump_drops "$TCPDUMP_ERR")
    record_burst "$label" "tcpdump" "$sent" "$got" "$drops" $((td1 - td0)) "$wall"
    tsv kind=burst "size=$size" "mode=$mode" clients=0 tool=tcpdump "sent=$sent" "captured=$got" \
      "captured_each=$got" "drops=$drops" "ticks=$((td1 - td0))" "cpu_ns=$td_ns" "runs=$td_runs" \
      "wall_s=$wall" "pps=$pps"
    [[ $KEEP == 1 ]] || rm -f "$TMP/$RUN.tcpdump.pcap"
  fi
  if ((nclients > 0)); then
    # Each client is stopped, then its file counted: the minimum over clients is the row's figure.
    local min="" each=() worst_drops="" tool=capd+capctl
    for ((i = 0; i < nclients; i++)); do
      stop_and_wait "${ctl_pids[i]}"
      got=$(count_packets "${ctl_outs[i]}")
      drops=$(capctl_drops "${ctl_errs[i]}")
      written=$(capctl_written "${ctl_errs[i]}")
      [[ -n $drops ]] ||
        { cat "${ctl_errs[i]}" >&2; NOTES+=("$label: capctl $((i + 1)) printed no summary line"); }
      [[ -z $written || $written == "$got" ]] ||
        NOTES+=("$label: capctl $((i + 1)) says $written written, the file holds $got")
      each+=("$got")
      if [[ -z $min ]] || ((got < min)); then min=$got worst_drops=${drops:-?}; fi
      [[ $KEEP == 1 ]] || rm -f "${ctl_outs[i]}"
    done
    [[ $mode != clients* ]] || tool="capd+${nclients}capctl"
    record_burst "$label" "$tool" "$sent" "$min" "$worst_drops" \
      $((capd1 - capd0 + ctl1 - ctl0)) "$wall"
    log "  capd $(ticks_to_s $((capd1 - capd0)))s + capctl $(ticks_to_s $((ctl1 - ctl0)))s CPU;" \
      "on CPU (schedstat) capd $((capd_ns / 1000000)) ms + capctl $((ctl_ns / 1000000)) ms"
    local IFS=,
    tsv kind=burst "size=$size" "mode=$mode" "clients=$nclients" tool=capd+capctl "sent=$sent" \
      "captured=$min" "captured_each=${each[*]}" "drops=$worst_drops" \
      "ticks=$((capd1 - capd0 + ctl1 - ctl0))" "capd_ticks=$((capd1 - capd0))" \
      "capctl_ticks=$((ctl1 - ctl0))" "cpu_ns=$((capd_ns + ctl_ns))" "capd_ns=$capd_ns" \
      "capctl_ns=$ctl_ns" "capd_runs=$capd_runs" "capctl_runs=$ctl_runs" "wall_s=$wall" \
      "pps=$pps" \
      "capd_mem_kib=$(tr ' ' , <<<"$mem")"
  fi
  kill -0 "$CAPD_PID" 2>/dev/null || die "capd died during $RUN (see $TMP/capd.log; KEEP=1)"
}

declare -A CPU_PER_M  # "label|tool" -> CPU s per million packets
record_burst() {  # label tool sent captured drops cpu_ticks wall
  local label=$1 tool=$2 sent=$3 got=$4 drops=$5 ticks=$6
  local pct cpu per_m
  pct=$(awk -v g="$got" -v s="$sent" 'BEGIN { printf "%.2f", (s > 0 ? 100 * g / s : 0) }')
  cpu=$(ticks_to_s "$ticks")
  per_m=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v s="$sent" \
    'BEGIN { printf "%.2f", (s > 0 ? (t / hz) / (s / 1e6) : 0) }')
  CPU_PER_M["$label|$tool"]=$per_m
  log "  $tool: captured $got/$sent ($pct%), drops $drops, CPU ${cpu}s (${per_m} s/Mpkt)"
  ROWS+=("$label	$tool	$sent	$got	$pct	$drops	$cpu	$per_m	RATIO	-	-")
}

# latency TOOL: TOOL is capctl, tcpdump or tcpdump-immediate.
latency() {
  local tool=$1 fifo reader_pid out cap_pid err rx0 rx1 result
  RUN=latency-$tool
  fifo=$TMP/$RUN.fifo
  out=$TMP/$RUN.out
  mkfifo "$fifo"
  "$TMP/latency_reader" --raw "$TMP/$RUN.raw" "$fifo" >"$out" 2>"$TMP/$RUN.reader.err" &
  reader_pid=$!
  PIDS+=("$reader_pid")
  case $tool in
    capctl)
      start_capctl --fifo "$fifo"
      cap_pid=$CAPCTL_PID err=$CAPCTL_ERR
      wait_for "$err" "capturing on" "$cap_pid"
      ;;
    tcpdump)
      start_tcpdump -U -w "$fifo"
      cap_pid=$TCPDUMP_PID err=$TCPDUMP_ERR
      wait_for "$err" "listening on" "$cap_pid"
      ;;
    tcpdump-immediate)
      start_tcpdump --immediate-mode -U -w "$fifo"
      cap_pid=$TCPDUMP_PID err=$TCPDUMP_ERR
      wait_for "$err" "listening on" "$cap_pid"
      ;;
  esac
  log "latency: $LAT_PACKETS lone packets ${LAT_GAP} apart -> $tool -> FIFO -> latency_reader"
  sleep 0.5
  rx0=$(cap_rx)
  send "$TMP/udp64.cfg" "$LAT_PACKETS" "$LAT_GAP" >/dev/null
  sleep 1.5  # longer than tcpdump's 1 s block timeout: the last packets reach the reader
  rx1=$(cap_rx)
  stop_and_wait "$cap_pid"
  wait "$reader_pid" || { cat "$TMP/$RUN.reader.err" >&2; die "latency_reader failed ($tool)"; }
  forget "$reader_pid"
  result=$(<"$out")
  log "  $result"
  local n p50 p99 sent drops label
  n=$(sed -n 's/.*packets=\([0-9]*\).*/\1/p' <<<"$result")
  p50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$result")
  p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$result")
  sent=$((rx1 - rx0))
  case $tool in
    capctl) drops=$(capctl_drops "$err"); label="capd+capctl --fifo" ;;
    tcpdump) drops=$(tcpdump_drops "$err"); label="tcpdump -U -w FIFO" ;;
    tcpdump-immediate) drops=$(tcpdump_drops "$err"); label="tcpdump -U --immediate-mode" ;;
  esac
  local pct
  pct=$(awk -v g="$n" -v s="$sent" 'BEGIN { printf "%.2f", (s > 0 ? 100 * g / s : 0) }')
  ROWS+=("latency $LAT_GAP	$label	$sent	$n	$pct	${drops:-?}	-	-	-	$p50	$p99")
  tsv kind=latency "tool=$tool" "gap=$LAT_GAP" "sent=$sent" "captured=$n" "drops=${drops:-?}" \
    "p50_ms=$p50" "p99_ms=$p99"
}

print_table() {
  local fmt='%-14s %-27s %9s %9s %8s %11s %7s %7s %6s %9s %9s\n'
  # shellcheck disable=SC2059
  printf "$fmt" run tool sent captured compl% "drops" "CPU s" "s/Mpkt" ratio "p50 ms" "p99 ms"
  local row label tool sent got pct drops cpu per_m ratio p50 p99 td
  for row in "${ROWS[@]}"; do
    IFS=$'\t' read -r label tool sent got pct drops cpu per_m ratio p50 p99 <<<"$row"
    if [[ $ratio == RATIO ]]; then
      ratio=-
      if [[ $tool == capd+capctl ]]; then
        td=${CPU_PER_M["$label|tcpdump"]:-}
        [[ -n $td ]] && ratio=$(awk -v a="$per_m" -v b="$td" \
          'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }')
      fi
    fi
    # shellcheck disable=SC2059
    printf "$fmt" "$label" "$tool" "$sent" "$got" "$pct" "$drops" "$cpu" "$per_m" "$ratio" \
      "$p50" "$p99"
  done
}

# ---------------------------------------------------------------------------------------------
main() {
  if ((LAT_PACKETS > 0)); then
    log "building latency_reader"
    g++ -O2 -std=c++20 -Wall -Wextra "$BENCH_DIR/latency_reader.cc" -o "$TMP/latency_reader"
  fi
  setup_network
  write_trafgen_config 64 "$TMP/udp64.cfg"
  start_capd
  log "namespaces $SND_NS -> $CAP_NS, $SND_IF -> $CAP_IF ($CAP_MAC); capd pid $CAPD_PID"
  sleep 1  # let link-up settle before counting

  local spec size count n
  for spec in $BURSTS; do
    size=${spec%%:*} count=${spec##*:}
    if [[ " $MODES " == *" alone "* ]]; then
      burst tcpdump "$size" "$count"
      burst capd "$size" "$count"
    fi
    if [[ " $MODES " == *" both "* ]]; then
      burst both "$size" "$count"
    fi
    if [[ " $MODES " == *" clients "* ]]; then
      for n in $CLIENTS; do burst "clients$n" "$size" "$count"; done
    fi
  done
  if ((LAT_PACKETS > 0)); then
    latency capctl
    latency tcpdump
    latency tcpdump-immediate
  fi

  echo
  echo "capd -> capctl vs tcpdump on $(uname -r), $(nproc) CPUs; $(date -u '+%F %T UTC')"
  echo "command: PACKETS=$PACKETS SIZE=$SIZE LARGE_PACKETS=$LARGE_PACKETS LARGE_SIZE=$LARGE_SIZE" \
    "BURSTS=\"$BURSTS\" RATE=${RATE:-} SENDERS=$SENDERS MODES=\"$MODES\" CLIENTS=\"$CLIENTS\"" \
    "LAT_PACKETS=$LAT_PACKETS LAT_GAP=$LAT_GAP SETTLE_S=$SETTLE_S $0 $BUILD_DIR"
  echo "sent = frames that reached the capture veth (its rx counter)"
  echo "drops = tcpdump: kernel/interface; capd+capctl: kernel/interface/agent (capctl's summary)"
  echo "CPU = utime+stime (capd + capctl together) from /proc/PID/stat, start-up excluded;"
  echo "  'alone' rows: each capturer had its own burst; 'together' rows: one burst, both capturing;"
  echo "  (they compete for the 2 CPUs with trafgen, so use the 'alone' rows for the CPU ratio);"
  echo "  'N clients' rows: N capctl streams from one capd, captured = the least complete client"
  echo "ratio = (capd+capctl) s/Mpkt / tcpdump s/Mpkt in the same row group;" \
    "tcpdump -B $TCPDUMP_BUFFER_KIB KiB"
  echo "latency = arrival at a FIFO reader (CLOCK_REALTIME) - kernel timestamp, per lone packet"
  echo
  print_table
  if ((${#NOTES[@]} > 0)); then
    echo
    printf 'note: %s\n' "${NOTES[@]}"
  fi
}

main

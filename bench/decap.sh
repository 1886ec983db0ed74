#!/usr/bin/env bash
# bench/decap.sh: the CPU cost of mirror-target mode. The same VXLAN burst captured by
# capd -> capctl plainly (`-f 'udp dst port 4789'`, whole outer frames) and with `--decap vxlan`
# (inner frames, one interface per VNI). Issue 3's bar: decapsulation costs at most 10 % more
# CPU per packet than the plain capture of the same traffic.
# Run by hand, as root; not a CI job, not a ctest test. Companion of bench/run.sh (same set-up).
#
# How it works: two network namespaces of its own joined by a veth pair. trafgen sends pre-built
# VXLAN frames (outer Ethernet/IPv4/UDP 4789/VXLAN VNI 42, inner Ethernet/IPv4/UDP) from the
# sender namespace to the capture veth; capd and capctl run in the capture namespace. Each round
# sends one burst per mode (plain, decap; the order alternates between rounds), and measures the
# CPU of capd and capctl twice: utime+stime from /proc/PID/stat (tick-sampled, as bench/run.sh)
# and the threads' exact on-CPU time from /proc/PID/task/*/schedstat, each read once capctl is
# ready (start-up excluded) and again when its file stops growing. The kernel filter is the same
# in both modes ("udp dst port 4789"): only what happens to each packet after the ring differs.
#
# Usage: sudo bench/decap.sh [BUILD_DIR]   (BUILD_DIR holds agent/capd and client/capctl; ./build)
# Settings (environment):
#   PACKETS=2000000 SIZE=114        small burst; SIZE = outer frame length without FCS (inner is
#                                   SIZE - 50), 92..1514
#   LARGE_PACKETS=300000 LARGE_SIZE=1514   large burst; LARGE_PACKETS=0 skips it
#   ROUNDS=5                        bursts per mode and size (alternating plain/decap first)
#   RATE=                           trafgen --rate (e.g. 200000pps); empty: as fast as it goes
#   SETTLE_S=2 CAPD_LOG_LEVEL=info KEEP=0
set -euo pipefail
# shellcheck source=bench/sched.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sched.sh"  # sched_snapshot, sched_delta, wait_for, wait_quiet, forget

BUILD_DIR=${1:-./build}
PACKETS=${PACKETS:-2000000}
SIZE=${SIZE:-114}
LARGE_PACKETS=${LARGE_PACKETS:-300000}
LARGE_SIZE=${LARGE_SIZE:-1514}
ROUNDS=${ROUNDS:-5}
RATE=${RATE:-}
SETTLE_S=${SETTLE_S:-2}
CAPD_LOG_LEVEL=${CAPD_LOG_LEVEL:-info}
KEEP=${KEEP:-0}
PORT=50051
VNI=42

log() { printf '[decap-bench %(%T)T] %s\n' -1 "$*" >&2; }
die() { printf 'decap-bench: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (network namespaces, AF_PACKET)"
CAPD=$BUILD_DIR/agent/capd
CAPCTL=$BUILD_DIR/client/capctl
[[ -x $CAPD ]] || die "$CAPD not found or not executable (build the capd target; BUILD_DIR is \$1)"
[[ -x $CAPCTL ]] || die "$CAPCTL not found or not executable (build the capctl target)"
CAPD=$(realpath "$CAPD")
CAPCTL=$(realpath "$CAPCTL")
for tool in ip trafgen capinfos awk; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
(( SIZE >= 92 && LARGE_SIZE >= 92 )) || die "SIZE and LARGE_SIZE must be >= 92 (VXLAN + inner UDP)"
(( SIZE <= 1514 && LARGE_SIZE <= 1514 )) || die "SIZE and LARGE_SIZE must be <= 1514 (MTU 1500)"

CLK_TCK=$(getconf CLK_TCK)
ID=$(printf '%x%04x' $$ $((RANDOM)))
SND_NS=capx-$ID-snd
CAP_NS=capx-$ID-cap
SND_IF=cx${ID}s  # <= 15 characters
CAP_IF=cx${ID}c
SND_IP=10.214.0.1
CAP_IP=10.214.0.2
TMP=$(mktemp -d /tmp/capd-decap-bench.XXXXXX)
PIDS=()

cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  ip netns del "$SND_NS" 2>/dev/null
  ip netns del "$CAP_NS" 2>/dev/null
  if [[ $KEEP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_snd() { ip netns exec "$SND_NS" "$@"; }
in_cap() { ip netns exec "$CAP_NS" "$@"; }

cpu_ticks() {  # utime+stime of a whole process (all threads, dead ones included), clock ticks
  local stat
  stat=$(<"/proc/$1/stat") || { echo 0; return; }
  stat=${stat##*) }
  awk '{ print $12 + $13 }' <<<"$stat"
}
cap_rx() { in_cap cat "/sys/class/net/$CAP_IF/statistics/rx_packets"; }

expect_comm() {  # $! must be the process itself (ip netns exec execs in place)
  local i comm=""
  for ((i = 0; i < 50; i++)); do
    comm=$(cat "/proc/$1/comm" 2>/dev/null) || break
    [[ $comm == "$2" ]] && return 0
    sleep 0.02
  done
  die "pid $1 is '$comm', expected $2"
}

stop_and_wait() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; forget "$1"; }

count_packets() {
  [[ -s $1 ]] || { echo 0; return; }
  capinfos -M -c "$1" 2>/dev/null | awk -F': *' '/Number of packets/ { print $2 }'
}

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
  in_cap ip neigh replace "$SND_IP" lladdr "$SND_MAC" dev "$CAP_IF" nud permanent
  in_snd ip neigh replace "$CAP_IP" lladdr "$CAP_MAC" dev "$SND_IF" nud permanent
}

# bytes N: N as two comma-separated big-endian bytes for a trafgen config.
bytes16() { printf '0x%02x, 0x%02x' $(($1 >> 8)) $(($1 & 0xff)); }

# IPv4 header checksum of the inner header (10.77.0.1 -> 10.77.0.2, UDP, TTL 64, id 0).
inner_ip_checksum() {
  local total=$1 sum
  sum=$((0x4500 + total + 0x0000 + 0x0000 + 0x4011 + 0x0a4d + 0x0001 + 0x0a4d + 0x0002))
  while ((sum >> 16)); do sum=$(((sum & 0xffff) + (sum >> 16))); done
  echo $((~sum & 0xffff))
}

# trafgen config: one VXLAN frame of $1 bytes (without FCS). trafgen fills in the outer IPv4 and
# UDP lengths and checksums; the VXLAN header and the inner frame are literal bytes.
write_trafgen_config() {
  local size=$1 file=$2 inner_ip=$(($1 - 64)) inner_udp=$(($1 - 84)) fill=$(($1 - 92))
  cat >"$file" <<EOF
{
  eth(da=$CAP_MAC, sa=$SND_MAC),
  ipv4(saddr=$SND_IP, daddr=$CAP_IP, ttl=64),
  udp(sport=40000, dport=4789),
  0x08, 0x00, 0x00, 0x00, 0x00, 0x00, $VNI, 0x00,
  0x02, 0x00, 0x00, 0x00, 0x77, 0x02, 0x02, 0x00, 0x00, 0x00, 0x77, 0x01, 0x08, 0x00,
  0x45, 0x00, $(bytes16 $inner_ip), 0x00, 0x00, 0x00, 0x00, 64, 17,
  $(bytes16 "$(inner_ip_checksum $inner_ip)"), 10, 77, 0, 1, 10, 77, 0, 2,
  $(bytes16 50000), $(bytes16 7000), $(bytes16 $inner_udp), 0x00, 0x00,
  fill(0x5a, $fill)
}
EOF
}

send() {  # send CONFIG COUNT: prints the wall time in seconds
  local cfg=$1 count=$2 args t0 t1
  args=(--dev "$SND_IF" --conf "$cfg" --num "$count" --no-sock-mem --notouch-irq --cpus 1)
  [[ -n $RATE ]] && args+=(--rate "$RATE")
  t0=$(date +%s.%N)
  if ! in_snd trafgen "${args[@]}" >"$TMP/trafgen.log" 2>&1; then
    cat "$TMP/trafgen.log" >&2
    die "trafgen failed"
  fi
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

CAPD_PID=""
start_capd() {
  ip netns exec "$CAP_NS" "$CAPD" --listen "127.0.0.1:$PORT" --log-level "$CAPD_LOG_LEVEL" \
    >"$TMP/capd.log" 2>&1 &
  CAPD_PID=$!
  PIDS+=("$CAPD_PID")
  expect_comm "$CAPD_PID" capd
  wait_for "$TMP/capd.log" "listening on" "$CAPD_PID"
}

ROUNDS_TSV=""  # set in main: one line per burst, see burst()
NOTES=()

# burst MODE SIZE COUNT ROUND: MODE is plain or decap.
burst() {
  local mode=$1 size=$2 count=$3 round=$4 run cfg err out wall rx0 rx1 sent got
  local capd0 capd1 ctl0 ctl1 args capd_ns ctl_ns
  run=$size-$mode-$round
  cfg=$TMP/vxlan$size.cfg
  err=$TMP/$run.err
  out=$TMP/$run.pcapng
  if [[ $mode == plain ]]; then
    args=(-f "udp dst port 4789")
  else
    args=(--decap vxlan)
  fi
  ip netns exec "$CAP_NS" "$CAPCTL" stream --agent "127.0.0.1:$PORT" -i "$CAP_IF" "${args[@]}" \
    -w "$out" 2>"$err" &
  local ctl=$!
  PIDS+=("$ctl")
  expect_comm "$ctl" capctl
  wait_for "$err" "capturing on" "$ctl"
  sleep 0.5
  rx0=$(cap_rx)
  ctl0=$(cpu_ticks "$ctl")
  capd0=$(cpu_ticks "$CAPD_PID")
  sched_snapshot "$ctl" >"$TMP/ctl.0"
  sched_snapshot "$CAPD_PID" >"$TMP/capd.0"
  wall=$(send "$cfg" "$count")
  wait_quiet "$out" || log "warning: capture still growing after 120 s"
  ctl1=$(cpu_ticks "$ctl")
  capd1=$(cpu_ticks "$CAPD_PID")
  sched_snapshot "$ctl" >"$TMP/ctl.1"
  sched_snapshot "$CAPD_PID" >"$TMP/capd.1"
  rx1=$(cap_rx)
  stop_and_wait "$ctl"
  capd_ns=$(sched_delta "$TMP/capd.0" "$TMP/capd.1" 2>"$TMP/lost")
  [[ -s $TMP/lost ]] && NOTES+=("$run: capd threads ended during the burst ($(<"$TMP/lost"))")
  ctl_ns=$(sched_delta "$TMP/ctl.0" "$TMP/ctl.1" 2>"$TMP/lost")
  [[ -s $TMP/lost ]] && NOTES+=("$run: capctl threads ended during the burst ($(<"$TMP/lost"))")
  sent=$((rx1 - rx0))
  got=$(count_packets "$out")
  [[ $sent == "$count" ]] || NOTES+=("$run: trafgen sent $count, $CAP_IF received $sent")
  [[ $got == "$sent" ]] || NOTES+=("$run: captured $got of $sent ($(grep -o 'dropped.*' "$err"))")
  if [[ $mode == decap ]] && ! grep -q "tunnel packets: $sent decapsulated (" "$err"; then
    NOTES+=("$run: not every packet decapsulated: $(grep -o 'tunnel packets.*' "$err")")
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$mode" "$round" "$sent" "$got" \
    $((capd1 - capd0)) $((ctl1 - ctl0)) "$capd_ns" "$ctl_ns" >>"$ROUNDS_TSV"
  log "  $run: $got/$sent captured in ${wall}s; CPU capd $((capd1 - capd0)) + capctl" \
    "$((ctl1 - ctl0)) ticks, $((capd_ns / 1000000)) + $((ctl_ns / 1000000)) ms on CPU"
  [[ $KEEP == 1 ]] || rm -f "$out"
  kill -0 "$CAPD_PID" 2>/dev/null || die "capd died during $run (see $TMP/capd.log; KEEP=1)"
}

# The tables, from ROUNDS_TSV.
report() {
  awk -F'\t' -v hz="$CLK_TCK" '
    function per_m(seconds, packets) { return packets > 0 ? seconds / (packets / 1e6) : 0 }
    function median(list, n,   a, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ratio(a, b) { return b > 0 ? sprintf("%.3f", a / b) : "inf" }
    BEGIN {
      fmt = "%-6s %-6s %5s %9s %9s %6s %6s %8s %8s %9s %9s\n"
      printf fmt, "size", "mode", "round", "sent", "captured", "capd", "capctl", "capd", "capctl",
        "s/Mpkt", "s/Mpkt"
      printf fmt, "", "", "", "", "", "ticks", "ticks", "ms CPU", "ms CPU", "(ticks)", "(sched)"
    }
    {
      size = $1; mode = $2; k = size "|" mode
      if (!(size in seen_size)) { seen_size[size] = 1; sizes[++nsizes] = size }
      t = per_m(($6 + $7) / hz, $4); s = per_m(($8 + $9) / 1e9, $4)
      printf "%-6s %-6s %5s %9s %9s %6s %6s %8.0f %8.0f %9.3f %9.3f\n", $1, $2, $3, $4, $5, $6, $7,
        $8 / 1e6, $9 / 1e6, t, s
      sent[k] += $4; ticks[k] += $6 + $7; ns[k] += $8 + $9; capd_ns[k] += $8
      rounds_ticks[k] = rounds_ticks[k] " " t; rounds_sched[k] = rounds_sched[k] " " s
    }
    END {
      print ""
      print "decap / plain, all rounds: CPU per packet (sum of CPU over sum of packets) and the median of"
      print "the rounds'"'"' s/Mpkt; capd+capctl unless said otherwise"
      fmt = "%-6s %13s %13s %9s %13s %13s %9s %10s %11s\n"
      printf fmt, "size", "plain s/Mpkt", "decap s/Mpkt", "ratio", "plain median", "decap median",
        "med. ratio", "capd ratio", "ticks ratio"
      for (i = 1; i <= nsizes; i++) {
        size = sizes[i]; p = size "|plain"; d = size "|decap"
        ps = per_m(ns[p] / 1e9, sent[p]); ds = per_m(ns[d] / 1e9, sent[d])
        pm = median(rounds_sched[p]); dm = median(rounds_sched[d])
        printf "%-6s %13.3f %13.3f %9s %13.3f %13.3f %9s %10s %11s\n", size "B", ps, ds,
          ratio(ds, ps), pm, dm, ratio(dm, pm),
          ratio(per_m(capd_ns[d] / 1e9, sent[d]), per_m(capd_ns[p] / 1e9, sent[p])),
          ratio(per_m(ticks[d] / hz, sent[d]), per_m(ticks[p] / hz, sent[p]))
      }
    }' "$ROUNDS_TSV"
}

main() {
  ROUNDS_TSV=$TMP/rounds.tsv
  : >"$ROUNDS_TSV"
  setup_network
  start_capd
  log "namespaces $SND_NS -> $CAP_NS, $SND_IF -> $CAP_IF; capd pid $CAPD_PID"
  sleep 1
  local sizes=("$SIZE:$PACKETS") spec size count round
  ((LARGE_PACKETS > 0)) && sizes+=("$LARGE_SIZE:$LARGE_PACKETS")
  for spec in "${sizes[@]}"; do
    size=${spec%%:*} count=${spec##*:}
    write_trafgen_config "$size" "$TMP/vxlan$size.cfg"
    log "burst: $count x ${size}B VXLAN frames (inner $((size - 50))B), $ROUNDS rounds"
    for ((round = 1; round <= ROUNDS; round++)); do
      if ((round % 2)); then
        burst plain "$size" "$count" "$round"
        burst decap "$size" "$count" "$round"
      else
        burst decap "$size" "$count" "$round"
        burst plain "$size" "$count" "$round"
      fi
    done
  done

  echo
  echo "capd -> capctl, VXLAN bursts, plain vs --decap vxlan, on $(uname -r), $(nproc) CPUs;" \
    "$(date -u '+%F %T UTC')"
  echo "command: PACKETS=$PACKETS SIZE=$SIZE LARGE_PACKETS=$LARGE_PACKETS LARGE_SIZE=$LARGE_SIZE" \
    "ROUNDS=$ROUNDS RATE=${RATE:-} $0 $BUILD_DIR"
  echo "plain = -f 'udp dst port 4789' (outer frames written); decap = --decap vxlan (inner frames)"
  echo "CPU of capd and capctl, start-up excluded: ticks = utime+stime from /proc/PID/stat (1/$CLK_TCK s,"
  echo "  tick-sampled); sched = on-CPU time of their threads from /proc/PID/task/*/schedstat (exact)"
  echo
  report
  echo "ratios from sched figures except 'ticks ratio'; issue 3's bar: ratio <= 1.10"
  if ((${#NOTES[@]} > 0)); then
    echo
    printf 'note: %s\n' "${NOTES[@]}"
  fi
}

main

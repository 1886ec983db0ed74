#!/usr/bin/env bash
# bench/compress.sh: what compressed batches (capctl --compress) cost and save, against plain
# batches, on the same traffic. Run by hand, as root; not a CI job.
#
# How it works: two network namespaces of its own joined by a veth pair; trafgen sends UDP from
# one; capd listens on loopback in the other and one `capctl stream -c PACKETS` captures each
# burst there, with --no-compress and then with --compress, alternating ROUNDS times. For each
# burst: the bytes that crossed loopback (the capture namespace's lo rx_bytes: the gRPC stream
# with its TCP/IP headers, i.e. what a tunnel would carry), capd's CPU time (utime + stime of
# /proc/PID/stat, which keeps the time of threads that ended, such as the capture's; 10 ms
# ticks) and capctl's (getrusage of the child, less its CPU once it was ready), per packet.
# Traffic: frames of each size in SIZES, payload "zero" (bench/run.sh's trafgen frames: best
# case for compression) or "random" (trafgen drnd: encrypted traffic, worst case), at RATE.
#
# Usage: sudo bench/compress.sh [BUILD_DIR]
#   PACKETS=400000 RATE=100000pps SIZES="64 512 1500" PAYLOADS="zero random" ROUNDS=2
set -euo pipefail

BUILD_DIR=$(cd "${1:-./build}" && pwd)
PACKETS=${PACKETS:-400000}
RATE=${RATE:-100000pps}
SIZES=${SIZES:-64 512 1500}
PAYLOADS=${PAYLOADS:-zero random}
ROUNDS=${ROUNDS:-2}
CAPD=$BUILD_DIR/agent/capd
CAPCTL=$BUILD_DIR/client/capctl
for tool in ip trafgen python3; do
  command -v "$tool" >/dev/null || { echo "bench/compress.sh: $tool is missing" >&2; exit 1; }
done

ID=czb$$
SND=$ID-snd CAP=$ID-cap
TMP=$(mktemp -d /tmp/capd-compress.XXXXXX)
CAPD_PID=
cleanup() {
  [[ -n $CAPD_PID ]] && kill "$CAPD_PID" 2>/dev/null && wait "$CAPD_PID" 2>/dev/null
  ip netns del "$SND" 2>/dev/null || true
  ip netns del "$CAP" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$SND"
ip netns add "$CAP"
ip link add "${ID}a" netns "$SND" type veth peer name "${ID}b" netns "$CAP"
ip -n "$SND" addr add 10.211.0.2/24 dev "${ID}a"
ip -n "$CAP" addr add 10.211.0.1/24 dev "${ID}b"
for ns in "$SND" "$CAP"; do ip -n "$ns" link set lo up; done
ip -n "$SND" link set "${ID}a" up
ip -n "$CAP" link set "${ID}b" up
CAP_MAC=$(ip -n "$CAP" -br link show "${ID}b" | awk '{print $3}')
SND_MAC=$(ip -n "$SND" -br link show "${ID}a" | awk '{print $3}')

ip netns exec "$CAP" "$CAPD" --listen 127.0.0.1:50051 --no-metadata >"$TMP/capd.log" 2>&1 &
CAPD_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$TMP/capd.log" && break; sleep 0.1; done

cpu_ns() {  # on-CPU ns of every thread of $1, ended threads included (utime + stime, ticks)
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.0f\n", ($12 + $13) * 1e9 / hz }' "/proc/$1/stat"
}
lo_bytes() { ip netns exec "$CAP" cat /sys/class/net/lo/statistics/rx_bytes; }

printf "%-5s %-7s %-12s %9s %12s %10s %10s %8s  %s\n" size payload mode packets "wire B/pkt" \
  "capd us/p" "capctl us/p" ratio summary
for _ in $(seq "$ROUNDS"); do
  for size in $SIZES; do
    for payload in $PAYLOADS; do
      fill="fill(0x5a, $((size - 42)))"
      [[ $payload == random ]] && fill="drnd($((size - 42)))"
      cat >"$TMP/t.cfg" <<CFG
{ eth(da=$CAP_MAC, sa=$SND_MAC), ipv4(saddr=10.211.0.2, daddr=10.211.0.1, ttl=64),
  udp(sport=40000, dport=9), $fill }
CFG
      for mode in --no-compress --compress; do
        rm -f "$TMP/out.pcapng" "$TMP/capctl.err"
        ip netns exec "$CAP" python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[2:], stderr=open(sys.argv[1], "w"))
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(int((r.ru_utime + r.ru_stime) * 1e9))' "$TMP/capctl.err" "$CAPCTL" stream \
          --agent 127.0.0.1:50051 -i "${ID}b" -f udp -c "$PACKETS" "$mode" \
          -w "$TMP/out.pcapng" >"$TMP/capctl.cpu" &
        client=$!
        for _ in $(seq 100); do grep -q "capturing on" "$TMP/capctl.err" 2>/dev/null && break; sleep 0.1; done
        # capctl's start-up (connecting, the file header) is left out: its CPU so far.
        capctl_pid=$(pgrep -P "$client")
        capd0=$(cpu_ns "$CAPD_PID") lo0=$(lo_bytes) capctl0=$(cpu_ns "$capctl_pid")
        ip netns exec "$SND" trafgen --dev "${ID}a" --conf "$TMP/t.cfg" --num "$PACKETS" \
          --rate "$RATE" --no-sock-mem --notouch-irq >/dev/null 2>&1
        wait "$client"
        capd1=$(cpu_ns "$CAPD_PID") lo1=$(lo_bytes)
        summary=$(grep "packets written" "$TMP/capctl.err" | sed 's/.*pcapng; //')
        ratio=$(sed -n 's/.*compressed \([0-9.]*:1\).*/\1/p' <<<"$summary")
        awk -v s="$size" -v p="$payload" -v m="${mode#--}" -v n="$PACKETS" -v w=$((lo1 - lo0)) \
          -v a=$((capd1 - capd0)) -v c=$(($(cat "$TMP/capctl.cpu") - capctl0)) -v r="${ratio:--}" \
          -v sum="$(grep -o 'dropped: [^(]*' <<<"$summary" | cut -c1-60)" \
          'BEGIN { printf "%-5s %-7s %-12s %9d %12.1f %10.3f %10.3f %8s  %s\n", s, p, m, n, w / n, a / n / 1000, c / n / 1000, r, sum }'
      done
    done
  done
done

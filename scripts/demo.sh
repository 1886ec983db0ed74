#!/usr/bin/env bash
# The README's first command: install dependencies, build, start capd on loopback, capture from
# the default-route interface through the agent into capture.pcapng, and show what was captured.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PORT="${CAPD_PORT:-50051}"
OUT="${OUT:-capture.pcapng}"

$SUDO ./build/agent/capd --listen "127.0.0.1:${PORT}" &
CAPD_PID=$!
trap '$SUDO kill "$CAPD_PID" 2>/dev/null || true; wait "$CAPD_PID" 2>/dev/null || true' EXIT

# capd listens a moment after it starts: wait for its port (up to 10 s) before the first request.
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null && break
  kill -0 "$CAPD_PID" 2>/dev/null || { echo "demo: capd exited" >&2; exit 1; }
  sleep 0.2
done

./build/client/capctl interfaces --agent "127.0.0.1:${PORT}"
# Make a little traffic on the default interface so a quiet machine still shows packets: UDP
# datagrams to the default gateway's discard port (and the ARP that finds it), never leaving
# the local link, naming no server.
GATEWAY=$(ip -4 route show default 2>/dev/null | awk '/^default/ { print $3; exit }')
( for i in 1 2 3 4 5; do
    if [ -n "$GATEWAY" ]; then echo "capd demo $i" 2>/dev/null >"/dev/udp/${GATEWAY}/9" || true; fi
    sleep 1
  done ) &
TRAFFIC_PID=$!
./build/client/capctl stream --agent "127.0.0.1:${PORT}" -c 50 --duration 10 -w "$OUT"
wait "$TRAFFIC_PID" || true
echo
capinfos "$OUT" | grep -E 'File type|Number of packets|Number of interfaces|precision' || true
tshark -r "$OUT" 2>/dev/null | head -20 || true
echo "Open it in Wireshark: wireshark $OUT"

#!/usr/bin/env bash
# bench/connections.sh: what idle TCP connections to capd's port cost. Run by hand, as root; not a
# CI job, not a ctest test.
#
# The old design looked in /proc for the owner of every connection to capd's port: an attacker
# test found that 600 idle connections from any local user made a new capture take 7.5 s to
# start, 1,500 made it 68 s and capd 3.0 GB of RSS, and that one connection closed and reopened
# every 5 s made every running capture recompile its filter (a 20 kpps stream lost 30 % of its
# packets). Now only the peer of an authorized stream is looked up (NETLINK_SOCK_DIAG and the
# capd-peers helper), so an idle connection should cost no more than gRPC's own state for it.
#
# How it works: two network namespaces of its own joined by a veth pair (agent 10.251.x.1, peer
# 10.251.x.2, IPv6 off, static neighbours: the link carries only what the script sends). In the
# agent namespace capd runs as deployed, started as root: capd --user nobody --listen
# 127.0.0.1:50051 --no-metadata. The "holder" is a python3 process running as uid HOLDER_UID (not
# root, in no group: setpriv --reuid --regid --clear-groups) in the agent namespace, that opens N
# TCP connections to 127.0.0.1:50051 and keeps them open. Each connection is an idle gRPC client:
# it sends the HTTP/2 preface and an empty SETTINGS frame and acknowledges the agent's SETTINGS
# and PINGs, nothing else (a bare TCP connection would be closed by gRPC after its 120 s
# handshake timeout). On SIGUSR1 it starts replacing its oldest connection (close, then open a
# new one) every TOGGLE_S seconds (with N=0: it opens one, then replaces it), on SIGUSR2 it stops
# and reports. For each N in CONNECTIONS:
#   1. start: STARTS times, the wall time from launching capctl stream --agent 127.0.0.1:50051
#      -i IF -c 1 -w FILE (as root, in the agent namespace) until its stderr says "capctl:
#      capturing on" (the file polled every POLL_S); then capctl is stopped with SIGINT.
#      Median and max. It includes ip netns exec and capctl's own start (a few ms).
#   2. memory: capd's VmRSS and open fds (/proc/PID/status, /proc/PID/fd) with the N held.
#   3. toggling: capctl stream -f 'udp port UDP_PORT' -w FILE on IF while the holder replaces a
#      connection every TOGGLE_S and trafgen sends RATE_PPS datagrams/s of SIZE bytes from the
#      peer for SEND_S seconds: packets in the file (capinfos) out of those that reached the
#      agent's UDP layer, the drops capctl's summary reports, and the "carriers changed" lines
#      capd logged meanwhile (each is a recompiled filter; expected 0).
#
# Usage: sudo bench/connections.sh [BUILD_DIR [OUT_DIR]]   (BUILD_DIR holds agent/capd and
#        client/capctl, default ./build; OUT_DIR gets connections.tsv, .txt, .md and logs/,
#        default a new /tmp/capd-conn-results.XXXXXX). About 30 s with the defaults.
# Settings (environment):
#   CONNECTIONS="0 1000 1500"   the N held, in this order (capd's RSS is not given back between)
#   STARTS=5 POLL_S=0.005       capture starts per N; how often capctl's stderr is read
#   START_TIMEOUT_S=120         a start that takes longer counts as a timeout
#   TOGGLE_S=0.5                the holder's period of replacing one connection (step 3)
#   RATE_PPS=20000 SEND_S=5     step 3's traffic: trafgen --rate, seconds
#   SIZE=64 UDP_PORT=6000       its frame length without FCS (60..1514), destination port
#   SETTLE_S=1.5                a capture file unchanged this long is finished
#   HOLDER_UID=12345            the holder's uid and gid
#   CAPD_USER=nobody            capd --user
#   RESULTS=bench/RESULTS.md    its marked section replaced (or added) there; empty: not
#   TSV=                        also append the key=value lines to this file
#   KEEP=0                      1 keeps the temporary directory (captures, holder logs)
set -euo pipefail
export LC_ALL=C  # a '.' in $EPOCHREALTIME

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_DIR=${1:-./build}
OUT_DIR=${2:-}
CONNECTIONS=${CONNECTIONS:-0 1000 1500}
STARTS=${STARTS:-5}
POLL_S=${POLL_S:-0.005}
START_TIMEOUT_S=${START_TIMEOUT_S:-120}
TOGGLE_S=${TOGGLE_S:-0.5}
RATE_PPS=${RATE_PPS:-20000}
SEND_S=${SEND_S:-5}
SIZE=${SIZE:-64}
UDP_PORT=${UDP_PORT:-6000}
SETTLE_S=${SETTLE_S:-1.5}
HOLDER_UID=${HOLDER_UID:-12345}
CAPD_USER=${CAPD_USER:-nobody}
RESULTS=${RESULTS-$BENCH_DIR/RESULTS.md}
TSV=${TSV:-}
KEEP=${KEEP:-0}
PORT=50051  # capd's port inside the agent namespace: the default, nothing else can hold it there
PYTHON=/usr/bin/python3
LOUD='\] \[(warn|warning|error|critical)\]'  # capd's log lines worth a note

log() { printf '[conn %(%T)T] %s\n' -1 "$*" >&2; }
die() { printf 'connections.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=bench/sched.sh
source "$BENCH_DIR/sched.sh"  # wait_quiet, update_results, alive, forget, make_veth_pair

[[ $(id -u) == 0 ]] || die "must run as root (network namespaces, capd --user)"
[[ -x $BUILD_DIR/agent/capd ]] ||
  die "$BUILD_DIR/agent/capd not found (build the capd target; BUILD_DIR is \$1)"
[[ -x $BUILD_DIR/client/capctl ]] || die "$BUILD_DIR/client/capctl not found (build the capctl target)"
CAPD=$(realpath "$BUILD_DIR/agent/capd")
CAPCTL=$(realpath "$BUILD_DIR/client/capctl")
for tool in ip ss setpriv trafgen capinfos awk; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[[ -x $PYTHON ]] || die "$PYTHON is required (apt-get install python3)"
id "$CAPD_USER" >/dev/null 2>&1 || die "no user $CAPD_USER (CAPD_USER)"
[[ $STARTS =~ ^[1-9][0-9]*$ && $RATE_PPS =~ ^[1-9][0-9]*$ && $HOLDER_UID =~ ^[1-9][0-9]*$ ]] ||
  die "STARTS, RATE_PPS and HOLDER_UID are whole numbers >= 1"
for n in $CONNECTIONS; do [[ $n =~ ^[0-9]+$ ]] || die "CONNECTIONS: '$n' is not a whole number"; done
((SIZE >= 60 && SIZE <= 1514)) || die "SIZE must be 60..1514"
PACKETS=$(awk -v r="$RATE_PPS" -v s="$SEND_S" 'BEGIN { printf "%d", r * s }')
((PACKETS > 0)) || die "RATE_PPS x SEND_S is no packet"

ID=$$
AG_NS=capdb-conn-$ID-agent
PE_NS=capdb-conn-$ID-peer
AG_IF=cc${ID}a  # <= 15 characters (pids have at most 7 digits)
PE_IF=cc${ID}p
NET=10.251.$((ID % 256))
AG_IP=$NET.1
PE_IP=$NET.2
TMP=$(mktemp -d /tmp/capd-conn.XXXXXX)
if [[ -z $OUT_DIR ]]; then OUT_DIR=$(mktemp -d /tmp/capd-conn-results.XXXXXX); fi
mkdir -p "$OUT_DIR/logs"
OUT_DIR=$(realpath "$OUT_DIR")
: >"$OUT_DIR/connections.tsv"
PIDS=()  # processes this script started and may still have to stop
NOTES=()
CAPD_PID="" HOLDER_PID=""

cleanup() {
  local rc=$? pid
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  ip netns del "$AG_NS" 2>/dev/null
  ip netns del "$PE_NS" 2>/dev/null
  if [[ $KEEP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------------
in_ag() { ip netns exec "$AG_NS" "$@"; }
in_pe() { ip netns exec "$PE_NS" "$@"; }

# finish PID WHAT: waits for PID (stopped past 10 s, noted); sets FINISH_RC to its exit status.
FINISH_RC=0
finish() {
  local pid=$1 what=$2 i
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    NOTES+=("$what did not end within 10 s; killed")
    kill -KILL "$pid" 2>/dev/null || true
  fi
  FINISH_RC=0
  wait "$pid" 2>/dev/null || FINISH_RC=$?
  forget "$pid"
}
# expect_comm PID NAME: $! must become the process itself (ip netns exec and setpriv exec in place).
expect_comm() {
  local i comm=""
  for ((i = 0; i < 100; i++)); do
    comm=$(cat "/proc/$1/comm" 2>/dev/null) || break
    [[ $comm == "$2" ]] && return 0
    sleep 0.02
  done
  die "pid $1 is '$comm', expected $2"
}
now_us() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
# await FILE TEXT PID TIMEOUT_S: until FILE holds TEXT (a plain string), read with builtins every
# POLL_S. Sets AWAIT_US to the time it took from T0_US; returns 1 if PID ended first, 2 on timeout.
AWAIT_US=0
await() {
  local file=$1 text=$2 pid=$3 limit_us=$(($4 * 1000000)) content
  while :; do
    content=""
    IFS= read -r -d '' content 2>/dev/null <"$file" || true
    AWAIT_US=$(($(now_us) - T0_US))
    [[ $content == *"$text"* ]] && return 0
    alive "$pid" || return 1
    ((AWAIT_US < limit_us)) || return 2
    sleep "$POLL_S"
  done
}

setup_network() {
  make_veth_pair "$AG_NS" "$AG_IF" "$AG_IP" "$PE_NS" "$PE_IF" "$PE_IP"
  AG_MAC=$(in_ag cat "/sys/class/net/$AG_IF/address")  # for trafgen's frames
  PE_MAC=$(in_pe cat "/sys/class/net/$PE_IF/address")
  # Step 3's datagrams. Nothing listens on UDP_PORT; the kernel's ICMP errors are rate-limited
  # and are not UDP, so not captured.
  cat >"$TMP/udp.cfg" <<EOF
{
  eth(da=$AG_MAC, sa=$PE_MAC),
  ipv4(saddr=$PE_IP, daddr=$AG_IP, ttl=64),
  udp(sport=40000, dport=$UDP_PORT),
  fill(0x5a, $((SIZE - 42)))
}
EOF
}

start_capd() {
  : >"$OUT_DIR/logs/capd.log"  # the parent reads it before the child's redirection opens it
  ip netns exec "$AG_NS" "$CAPD" --user "$CAPD_USER" --listen "127.0.0.1:$PORT" --no-metadata \
    </dev/null >"$OUT_DIR/logs/capd.log" 2>&1 &
  CAPD_PID=$!
  PIDS+=("$CAPD_PID")
  expect_comm "$CAPD_PID" capd
  T0_US=$(now_us)
  await "$OUT_DIR/logs/capd.log" "listening on" "$CAPD_PID" 20 ||
    { cat "$OUT_DIR/logs/capd.log" >&2; die "capd did not start"; }
}

# The holder: N idle gRPC connections (HTTP/2 preface, SETTINGS; it acknowledges the agent's
# SETTINGS and answers PINGs). argv: N PORT TOGGLE_S. Says "holding N" once every connection has
# had the agent's SETTINGS; SIGUSR1 starts replacing the oldest connection every TOGGLE_S,
# SIGUSR2 stops that and says "toggles K closed_by_agent C goaway G".
read -r -d '' HOLDER_PY <<'EOF' || true
import resource, selectors, signal, socket, sys, time

n, port, toggle_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if n + 32 > hard:
    sys.exit(f"holder: RLIMIT_NOFILE hard limit {hard} is too low for {n} connections")

def frame(kind, flags, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + bytes(4) + payload

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0)
sel = selectors.DefaultSelector()
held = []   # oldest first
state = {}  # socket -> [received bytes, had the agent's SETTINGS]
stats = {"toggles": 0, "closed_by_agent": 0, "goaway": 0}
toggling = False
next_toggle = 0.0

def say(text):
    print(text, flush=True)

def open_one():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(PREFACE)
    s.setblocking(False)
    state[s] = [bytearray(), False]
    sel.register(s, selectors.EVENT_READ)
    held.append(s)

def close_one(s):
    sel.unregister(s)
    del state[s]
    held.remove(s)
    s.close()

def readable(s):
    try:
        data = s.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        stats["closed_by_agent"] += 1
        close_one(s)
        return
    buf = state[s][0]
    buf += data
    while len(buf) >= 9:
        length = int.from_bytes(buf[:3], "big")
        if len(buf) < 9 + length:
            break
        kind, flags, payload = buf[3], buf[4], bytes(buf[9:9 + length])
        del buf[:9 + length]
        if kind == 4 and not flags & 1:
            s.send(frame(4, 1))
            state[s][1] = True
        elif kind == 6 and not flags & 1:
            s.send(frame(6, 1, payload))
        elif kind == 7:
            stats["goaway"] += 1

def poll(timeout):
    for key, _ in sel.select(timeout):
        if key.fileobj in state:
            readable(key.fileobj)

def start_toggling(*_):
    global toggling, next_toggle
    toggling, next_toggle = True, time.monotonic() + toggle_s

def stop_toggling(*_):
    global toggling
    toggling = False
    say(f"toggles {stats['toggles']} closed_by_agent {stats['closed_by_agent']} goaway {stats['goaway']}")

signal.signal(signal.SIGUSR1, start_toggling)
signal.signal(signal.SIGUSR2, stop_toggling)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
for _ in range(n):
    open_one()
deadline = time.monotonic() + 60
while not all(ready for _, ready in state.values()):
    if time.monotonic() > deadline:
        sys.exit("holder: not every connection had the agent's SETTINGS within 60 s")
    poll(1.0)
say(f"holding {len(held)} (soft RLIMIT_NOFILE {hard})")
while True:
    poll(max(0.0, next_toggle - time.monotonic()) if toggling else 1.0)
    if toggling and time.monotonic() >= next_toggle:
        if held:
            close_one(held[0])
        open_one()
        stats["toggles"] += 1
        next_toggle += toggle_s
EOF

# start_holder N: sets HOLDER_PID, HOLDER_LOG.
start_holder() {
  local n=$1
  HOLDER_LOG=$OUT_DIR/logs/holder-$n.log
  : >"$HOLDER_LOG"
  (
    cd /
    exec ip netns exec "$AG_NS" setpriv --reuid "$HOLDER_UID" --regid "$HOLDER_UID" \
      --clear-groups "$PYTHON" -c "$HOLDER_PY" "$n" "$PORT" "$TOGGLE_S" </dev/null >"$HOLDER_LOG" 2>&1
  ) &
  HOLDER_PID=$!
  PIDS+=("$HOLDER_PID")
  expect_comm "$HOLDER_PID" python3
  T0_US=$(now_us)
  await "$HOLDER_LOG" "holding $n" "$HOLDER_PID" 120 ||
    { cat "$HOLDER_LOG" >&2; die "the holder did not open its $n connections"; }
  log "  holder (pid $HOLDER_PID, uid $HOLDER_UID) holds $n connections after $((AWAIT_US / 1000)) ms"
}
stop_holder() {
  kill -TERM "$HOLDER_PID" 2>/dev/null || true
  finish "$HOLDER_PID" "the holder"
}

# The capd fds that are TCP sockets to or from port PORT, from the agent namespace's view.
established() {
  in_ag ss -Htn state established "( sport = :$PORT )" 2>/dev/null | wc -l
}
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
udp_in() {  # datagrams that reached the agent's UDP layer (each passed the capture taps first)
  # shellcheck disable=SC2016  # awk's fields, not the shell's
  in_ag awk '/^Udp:/ { if (seen) { print $2 + $3 + $4; exit } seen = 1 }' /proc/net/snmp
}
count_all() { capinfos -M -c "$1" 2>/dev/null | awk -F': *' '/Number of packets/ { print $2 + 0 }'; }
drops_of() {  # capctl's summary: "kernel/interface/agent"
  local n='\([0-9]*\)' k
  k=$(sed -n "s|.*dropped: $n by kernel, $n by interface, $n by agent.*|\\1/\\2/\\3|p" "$1" | tail -1)
  echo "${k:-?}"
}
tsv() {  # tsv KEY=VALUE...: one line to OUT_DIR/connections.tsv (and TSV)
  local IFS=$'\t' line
  line="$*"
  printf '%s\n' "$line" >>"$OUT_DIR/connections.tsv"
  [[ -z $TSV ]] || printf '%s\n' "$line" >>"$TSV"
}

# ------------------------------------------------------------------------------------------------
# starts N: STARTS capture starts; sets START_MED_MS, START_MAX_MS, START_EACH, START_FAILS.
starts() {
  local n=$1 i pid err rc ms all=()
  START_FAILS=0
  for ((i = 1; i <= STARTS; i++)); do
    err=$OUT_DIR/logs/start-$n-$i.err
    : >"$err"
    T0_US=$(now_us)
    ip netns exec "$AG_NS" "$CAPCTL" stream --agent "127.0.0.1:$PORT" -i "$AG_IF" -c 1 -w "$TMP/start.pcapng" \
      </dev/null >/dev/null 2>"$err" &
    pid=$!
    PIDS+=("$pid")
    rc=0
    await "$err" "capctl: capturing on" "$pid" "$START_TIMEOUT_S" || rc=$?
    ms=$(awk -v u="$AWAIT_US" 'BEGIN { printf "%.1f", u / 1000 }')
    kill -INT "$pid" 2>/dev/null || true
    finish "$pid" "capctl (start $i with $n connections)"
    case $rc in
      0) all+=("$ms") ;;
      1) START_FAILS=$((START_FAILS + 1))
         NOTES+=("N=$n start $i: capctl ended (status $FINISH_RC) before capturing: $(tail -1 "$err")") ;;
      *) START_FAILS=$((START_FAILS + 1))
         NOTES+=("N=$n start $i: no 'capturing on' within ${START_TIMEOUT_S} s") ;;
    esac
    ((rc != 0 || FINISH_RC == 0)) ||
      NOTES+=("N=$n start $i: capctl exited with status $FINISH_RC: $(tail -1 "$err")")
    rm -f "$TMP/start.pcapng"
  done
  START_EACH=${all[*]:-}
  read -r START_MED_MS START_MAX_MS < <(printf '%s\n' "${all[@]}" | sort -g | awk '
    NF { v[++n] = $1 }
    END { if (!n) { print "- -"; exit }
          printf "%.1f %.1f\n", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2, v[n] }')
  log "  capture start, ms: $START_EACH (median $START_MED_MS, max $START_MAX_MS)"
}

# toggled_stream N: step 3. Sets SENT, GOT, DROPS, PPS, TOGGLES, CARRIERS, OTHER_LOG, WINDOW_S.
toggled_stream() {
  local n=$1
  local err=$OUT_DIR/logs/stream-$n.err file=$TMP/stream-$n.pcapng pid lines0 in0 in1
  local t0 t1 w0 w1 outgoing
  : >"$err"
  T0_US=$(now_us)
  ip netns exec "$AG_NS" "$CAPCTL" stream --agent "127.0.0.1:$PORT" -i "$AG_IF" -f "udp port $UDP_PORT" \
    -w "$file" </dev/null >/dev/null 2>"$err" &
  pid=$!
  PIDS+=("$pid")
  await "$err" "capctl: capturing on" "$pid" "$START_TIMEOUT_S" ||
    { cat "$err" >&2; die "N=$n: the stream for the toggling test did not start"; }
  lines0=$(wc -l <"$OUT_DIR/logs/capd.log")
  w0=$(now_us)
  kill -USR1 "$HOLDER_PID"
  sleep "$TOGGLE_S"  # the first replacement happens before the traffic
  in0=$(udp_in)
  t0=$(now_us)
  in_pe trafgen --dev "$PE_IF" --conf "$TMP/udp.cfg" --num "$PACKETS" --rate "${RATE_PPS}pps" \
    --cpus 1 --no-sock-mem --notouch-irq >"$TMP/trafgen.log" 2>&1 ||
    { cat "$TMP/trafgen.log" >&2; die "trafgen failed"; }
  t1=$(now_us)
  wait_quiet "$file" || NOTES+=("N=$n: the capture was still growing after 120 s")
  in1=$(udp_in)
  kill -USR2 "$HOLDER_PID"
  T0_US=$(now_us)
  await "$HOLDER_LOG" "toggles" "$HOLDER_PID" 10 || die "N=$n: the holder did not report"
  w1=$(now_us)
  CARRIERS=$(tail -n "+$((lines0 + 1))" "$OUT_DIR/logs/capd.log" | grep -c "carriers changed" || true)
  OTHER_LOG=$(tail -n "+$((lines0 + 1))" "$OUT_DIR/logs/capd.log" | grep -Ec "$LOUD" || true)
  kill -INT "$pid" 2>/dev/null || true
  finish "$pid" "capctl (stream with $n connections)"
  ((FINISH_RC == 0)) || NOTES+=("N=$n stream: capctl exited with status $FINISH_RC: $(tail -1 "$err")")
  SENT=$((in1 - in0))
  GOT=$(count_all "$file")
  DROPS=$(drops_of "$err")
  PPS=$(awk -v n="$SENT" -v us="$((t1 - t0))" 'BEGIN { printf "%.0f", (us > 0 ? n * 1e6 / us : 0) }')
  WINDOW_S=$(awk -v us="$((w1 - w0))" 'BEGIN { printf "%.1f", us / 1e6 }')
  read -r TOGGLES CLOSED_BY_AGENT GOAWAY < <(awk '$1 == "toggles" { print $2, $4, $6; exit }' "$HOLDER_LOG")
  outgoing=$(grep -o '[0-9]* packets outgoing' "$TMP/trafgen.log" | head -1 | awk '{ print $1 }')
  [[ ${outgoing:-$PACKETS} == "$SENT" ]] ||
    NOTES+=("N=$n stream: trafgen sent ${outgoing:-?}, $SENT reached the agent's UDP layer")
  ((CARRIERS == 0)) || NOTES+=("N=$n stream: capd logged 'carriers changed' $CARRIERS times")
  ((OTHER_LOG == 0)) ||
    NOTES+=("N=$n stream: capd logged $OTHER_LOG warnings or errors meanwhile, e.g.: $(tail -n \
      "+$((lines0 + 1))" "$OUT_DIR/logs/capd.log" | grep -E "$LOUD" | head -1 | cut -c1-200)")
  log "  stream: $GOT/$SENT captured, drops $DROPS, ~$PPS pkt/s; $TOGGLES connections replaced" \
    "in ${WINDOW_S}s, 'carriers changed' $CARRIERS"
  [[ $KEEP == 1 ]] || rm -f "$file"
}

measure() {
  local n=$1 fds rss hwm est helper_rss=-
  log "N=$n idle connections"
  start_holder "$n"
  sleep 1
  est=$(established)
  ((est >= n)) || NOTES+=("N=$n: only $est established connections to :$PORT in the agent namespace")
  fds=$(fd_count "$CAPD_PID")
  rss=$(status_kib "$CAPD_PID" VmRSS)
  [[ -z $HELPER_PID ]] || helper_rss=$(status_kib "$HELPER_PID" VmRSS 2>/dev/null || echo -)
  log "  capd: VmRSS $rss KiB, $fds fds ($est connections established to :$PORT)"
  starts "$n"
  toggled_stream "$n"
  hwm=$(status_kib "$CAPD_PID" VmHWM)
  stop_holder
  alive "$CAPD_PID" || die "capd died with $n connections (see $OUT_DIR/logs/capd.log)"
  ((CLOSED_BY_AGENT == 0 && GOAWAY == 0)) ||
    NOTES+=("N=$n: capd closed $CLOSED_BY_AGENT of the holder's connections ($GOAWAY GOAWAY)")
  tsv kind=connections "connections=$n" "starts=$STARTS" "start_median_ms=$START_MED_MS" \
    "start_max_ms=$START_MAX_MS" "start_ms_each=${START_EACH// /,}" "start_fails=$START_FAILS" \
    "capd_rss_kib=$rss" "capd_hwm_kib=$hwm" "capd_fds=$fds" "helper_rss_kib=$helper_rss" \
    "established=$est" "sent=$SENT" "captured=$GOT" "drops=$DROPS" "pps=$PPS" \
    "toggle_s=$TOGGLE_S" "toggles=$TOGGLES" "toggle_window_s=$WINDOW_S" \
    "carriers_changed=$CARRIERS" "capd_warnings=$OTHER_LOG" \
    "closed_by_agent=$CLOSED_BY_AGENT"
}

# ------------------------------------------------------------------------------------------------
# Tables, from connections.tsv.

# shellcheck disable=SC2016  # awk's fields, not the shell's
AWK_FIELDS='{ delete f; for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v } }'

text_table() {
  awk -F'\t' "$AWK_FIELDS"'
    BEGIN { printf "%11s %9s %9s %9s %6s %8s %8s %7s %9s %7s %8s\n", "connections", "start ms",
              "start ms", "capd RSS", "capd", "sent", "captured", "compl%", "drops", "toggles", "carriers" }
    NR == 1 { printf "%11s %9s %9s %9s %6s %8s %8s %7s %9s %7s %8s\n", "held", "median", "max", "MiB",
                "fds", "", "", "", "k/i/a", "", "changed" }
    { printf "%11s %9s %9s %9.1f %6s %8s %8s %7.2f %9s %7s %8s\n", f["connections"], f["start_median_ms"],
        f["start_max_ms"], f["capd_rss_kib"] / 1024, f["capd_fds"], f["sent"], f["captured"],
        (f["sent"] > 0 ? 100 * f["captured"] / f["sent"] : 0), f["drops"], f["toggles"], f["carriers_changed"] }
  ' "$OUT_DIR/connections.tsv"
}

md_table() {
  echo "| idle connections held | capture start, ms: median (max) of $STARTS | capd VmRSS MiB | capd fds | stream: captured / sent | compl % | drops k/i/a | connections replaced (window) | carriers changed |"
  echo "|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' "$AWK_FIELDS"'
    { printf "| %s | %s (%s) | %.1f | %s | %s / %s | %.2f | %s | %s (%s s) | %s |\n", f["connections"],
        f["start_median_ms"], f["start_max_ms"], f["capd_rss_kib"] / 1024, f["capd_fds"], f["captured"],
        f["sent"], (f["sent"] > 0 ? 100 * f["captured"] / f["sent"] : 0), f["drops"], f["toggles"],
        f["toggle_window_s"], f["carriers_changed"] }
  ' "$OUT_DIR/connections.tsv"
}

# The issue's figures next to this run's (every N; the stream row: the largest N).
before_after_md() {
  awk -F'\t' "$AWK_FIELDS"'
    { n = f["connections"] + 0
      start = start (start == "" ? "" : "; ") f["start_median_ms"] " ms with " n
      rss = rss (rss == "" ? "" : "; ") sprintf("%.1f MiB with %d", f["capd_rss_kib"] / 1024, n)
      if (NR == 1 || n >= maxn) { maxn = n; for (k in f) big[k] = f[k] } }
    END {
      if (NR == 0) exit
      lost = (big["sent"] > 0 ? 100 - 100 * big["captured"] / big["sent"] : 0)
      print "| | before (from the issue) | now (this run) |"
      print "|---|---|---|"
      printf "| capture start (median) with N idle connections held | 7.5 s with 600; 68 s with 1,500 | %s |\n", start
      printf "| capd RSS with N idle connections held | 3.0 GB with 1,500 | %s |\n", rss
      printf "| a 20 kpps stream while one connection is closed and reopened | 30 %% lost (one every 5 s); every capture recompiled its filter | %.2f %% lost (one every %s s, %d held), drops %s; %s \"carriers changed\" |\n",
        lost, big["toggle_s"], maxn, big["drops"], big["carriers_changed"]
    }' "$OUT_DIR/connections.tsv"
}

section_md() {
  local rev dirty=""
  rev=$(git -C "$BENCH_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -z $(git -C "$BENCH_DIR" status --porcelain --untracked-files=no 2>/dev/null) ]] ||
    dirty=" (the work tree had uncommitted changes)"
  echo "<!-- bench/connections.sh: begin (replaced by each run of bench/connections.sh) -->"
  echo "## Idle connections to capd's port (bench/connections.sh)"
  echo
  echo "- date: $(date -u '+%F %T UTC'); commit: $rev$dirty"
  echo "- binaries (modified): capd $BIN_TIMES"
  echo "- command: \`$COMMAND\`"
  echo "- load average (1/5/15 min): $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo
  echo "capd started as root: \`capd --user $CAPD_USER --listen 127.0.0.1:$PORT --no-metadata\`. A process"
  echo "running as uid $HOLDER_UID (no groups: not allowed to capture) holds N idle gRPC connections to it"
  echo "(HTTP/2 preface and SETTINGS, nothing else). Capture start: wall time from launching"
  echo "\`capctl stream --agent 127.0.0.1:$PORT -i IF -c 1 -w FILE\` (root) until it prints \`capturing on\`."
  echo "Stream: \`capctl stream -f 'udp port $UDP_PORT' -w FILE\` while ${RATE_PPS} datagrams/s of ${SIZE} B"
  echo "arrive for ${SEND_S} s and the holder replaces one connection (close, open) every ${TOGGLE_S} s;"
  echo "sent = datagrams that reached the agent's UDP layer; carriers changed = capd's log lines saying a"
  echo "capture recompiled its filter for new carrier connections."
  echo
  before_after_md
  echo
  md_table
  echo
  echo '```'
  text_table
  echo '```'
  if ((${#NOTES[@]} > 0)); then
    echo
    printf -- '- note: %s\n' "${NOTES[@]}"
  fi
  echo "<!-- bench/connections.sh: end -->"
}

# ------------------------------------------------------------------------------------------------
main() {
  COMMAND="CONNECTIONS=\"$CONNECTIONS\" STARTS=$STARTS TOGGLE_S=$TOGGLE_S RATE_PPS=$RATE_PPS"
  COMMAND+=" SEND_S=$SEND_S SIZE=$SIZE bench/connections.sh $BUILD_DIR"
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  # Now, not at the end: a newer build may replace the files while this runs.
  BIN_TIMES="$(date -u -r "$CAPD" '+%F %T UTC'), capctl $(date -u -r "$CAPCTL" '+%F %T UTC')"
  setup_network
  start_capd
  sleep 0.5
  HELPER_PID=$(awk '{ print $1; exit }' "/proc/$CAPD_PID/task/$CAPD_PID/children" 2>/dev/null || true)
  log "agent $AG_NS ($AG_IF $AG_IP: capd pid $CAPD_PID as $CAPD_USER, helper ${HELPER_PID:-none})," \
    "peer $PE_NS ($PE_IF $PE_IP)"
  local line n
  while IFS= read -r line; do  # what capd says at start-up about its helper or privileges
    NOTES+=("capd at start-up: ${line:0:240}")
  done < <(grep -iE 'helper|peers|warn|error' "$OUT_DIR/logs/capd.log" | head -3)

  for n in $CONNECTIONS; do measure "$n"; done

  text_table >"$OUT_DIR/connections.txt"
  section_md >"$OUT_DIR/connections.md"
  echo
  cat "$OUT_DIR/connections.txt"
  echo
  echo "TSV ($OUT_DIR/connections.tsv):"
  cat "$OUT_DIR/connections.tsv"
  if ((${#NOTES[@]} > 0)); then
    echo
    printf -- 'note: %s\n' "${NOTES[@]}"
  fi
  if [[ -n $RESULTS ]]; then
    update_results "$RESULTS" "$OUT_DIR/connections.md" connections.sh
    log "updated the section in $RESULTS"
  fi
  log "results in $OUT_DIR (connections.tsv, connections.txt, connections.md, logs/)"
}

main

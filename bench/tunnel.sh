#!/usr/bin/env bash
# bench/tunnel.sh: a capture through a thin tunnel (issue 19). The agent sits behind a link
# shaped to RATE (20 Mbit/s by default, a typical SSH or SSM tunnel over the internet) while its
# capture interface carries more than that; what reaches the engineer's FIFO reader, at what CPU
# cost, for four workflows through a real sshd:
#   (a) ssh root@AGENT 'tcpdump -U -i CAP -w -' > FIFO
#   (b) the same with ssh -C (zlib, ssh's only answer to a thin link)
#   (c) capctl stream --agent ssh://root@AGENT/CAP --fifo FIFO, without compression
#       (--no-compress when this capctl has the flag)
#   (d) the same with --compress; skipped when `capctl stream --help` does not list --compress
#   (e) a hand-made forward, `ssh -N -L 127.0.0.1:50151:127.0.0.1:50051 root@AGENT`, and
#       capctl stream --agent 127.0.0.1:50151/CAP --no-compress --fifo FIFO: loopback to capctl
#   (f) the same with CAPCTL_ALT's capctl (an A/B of two capctl builds in one set-up)
# each read by tshark -i FIFO -w FILE. Run by hand, as root; not a CI job, not a ctest test.
#
# How it works: three network namespaces of its own.
#   client  (ssh, capctl, tshark)  <── tunnel veth ──>  agent (sshd, capd)  <── capture veth ──>  traffic
# The agent's end of the tunnel veth is shaped on egress with tc tbf to RATE (what the agent
# sends to the client: the capture), optionally with DELAY_MS of netem delay on both ends (the
# internet's round trip). The traffic namespace sends, for DURATION seconds, across the capture veth:
#   - TCP bulk: socat from /dev/urandom (PAYLOAD=random: payloads that do not compress, like
#     TLS) or from a text corpus in a loop (PAYLOAD=text: Debian's changelogs, ~20 MB of plain
#     English, names and dates, like a plain-text protocol or logs) to a socat sink in the agent
#     namespace, through a tbf of TRAFFIC_RATE on the traffic end (so that TCP
#     settles at that rate), GSO off (gso_max_size 1500: frames as a NIC would deliver them,
#     not 64 KiB veth super-packets); the agent's ACKs come back the other way;
#   - small packets: trafgen, SMALL_PPS UDP datagrams per second of SMALL_SIZE bytes (DNS-,
#     NTP-, telemetry-like), to a socat sink in the agent namespace.
# The capture (no filter) is on the agent's end of the capture veth: both directions.
# sent = the change of that veth's rx_packets + tx_packets over the traffic.
# delivered = the packets in tshark's file (capinfos); per second: over the time from the start
# of the traffic to the last growth of the file (the backlog a capturer held drains after the
# traffic stops and counts, as it would in a long capture).
# CPU from cgroups made here, as bench/ssh.sh: sshd (every sshd process), ssh, tcpdump or capd,
# capctl, from 0.5 s before the traffic until the file has not grown for SETTLE_S; tshark apart.
# The capturers' own drop figures: tcpdump's "dropped by kernel" (through ssh, after SIGTERM);
# capctl's summary "dropped: K by kernel, I by interface, A by agent".
#
# Usage: sudo bench/tunnel.sh [BUILD_DIR [OUT_DIR]]   (BUILD_DIR holds agent/capd and
#        client/capctl, default ./build; OUT_DIR gets tunnel.tsv, tunnel.md and the logs, default
#        a new /tmp/capd-tunnel-results.XXXXXX)
# Settings (environment):
#   RATE=20mbit            the tunnel: tc rate of the agent's egress towards the client
#   DELAY_MS=0             netem delay on each end of the tunnel veth (round trip 2x); 0: none
#                          (needs sch_netem, which some kernels, this VM's among them, lack)
#   DELAY_PROXY_MS=0       without sch_netem: ssh's ProxyCommand is bench/delayline.py, holding
#                          every chunk this long in each direction (round trip 2x); its CPU
#                          counts as ssh's
#   CAPCTL_ALT=            workflow (f)'s capctl (default: BUILD_DIR's)
#   TRAFFIC_RATE=60mbit    tc rate of the TCP bulk on the capture veth (3x RATE)
#   PAYLOAD=random         the bulk's bytes: random (TLS-like, incompressible) or text
#   SMALL_PPS=2000 SMALL_SIZE=120   the small UDP packets (frame length without FCS)
#   DURATION=20            seconds of traffic per workflow
#   ROUNDS=1               rounds (each: every workflow); medians reported
#   WORKFLOWS="a b c d"    which workflows (also e, f)
#   SETTLE_S=3             a capture file unchanged this long is finished
#   CAPD_USER=nobody       capd --user
#   RESULTS=bench/RESULTS.md   section "Through a thin tunnel" replaced (or added); empty: not
#   TSV=                   also append the key=value lines to this file
#   KEEP=0                 1 keeps the temporary directory (captures, keys, configs)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_DIR=${1:-./build}
OUT_DIR=${2:-}
RATE=${RATE:-20mbit}
DELAY_MS=${DELAY_MS:-0}
TRAFFIC_RATE=${TRAFFIC_RATE:-60mbit}
PAYLOAD=${PAYLOAD:-random}
SMALL_PPS=${SMALL_PPS:-2000}
SMALL_SIZE=${SMALL_SIZE:-120}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-1}
WORKFLOWS=${WORKFLOWS:-a b c d}
SETTLE_S=${SETTLE_S:-3}
CAPD_USER=${CAPD_USER:-nobody}
RESULTS=${RESULTS-$BENCH_DIR/RESULTS.md}
TSV=${TSV:-}
KEEP=${KEEP:-0}
PORT=50051        # capd's port inside the agent namespace
BULK_PORT=5001    # the TCP bulk's sink in the agent namespace
SMALL_PORT=5353   # the small datagrams' sink

log() { printf '[tunnel %(%T)T] %s\n' -1 "$*" >&2; }
die() { printf 'tunnel.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=bench/sched.sh
source "$BENCH_DIR/sched.sh"  # wait_quiet, update_results, alive, forget, make_veth_pair

[[ $(id -u) == 0 ]] || die "must run as root (network namespaces, sshd, cgroups, tc)"
[[ -x $BUILD_DIR/agent/capd ]] ||
  die "$BUILD_DIR/agent/capd not found (build the capd target; BUILD_DIR is \$1)"
[[ -x $BUILD_DIR/client/capctl ]] || die "$BUILD_DIR/client/capctl not found (build the capctl target)"
CAPD=$(realpath "$BUILD_DIR/agent/capd")
CAPCTL=$(realpath "$BUILD_DIR/client/capctl")
CAPCTL_ALT=$(realpath "${CAPCTL_ALT:-$CAPCTL}")
DELAY_PROXY_MS=${DELAY_PROXY_MS:-0}
LOCAL_FWD_PORT=50151  # (e), (f): the hand-made forward's port in the client namespace
SSHD=/usr/sbin/sshd
[[ -x $SSHD ]] || die "$SSHD not found (apt-get install openssh-server)"
for tool in ip tc ssh ssh-keygen tshark capinfos trafgen socat timeout awk; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
id "$CAPD_USER" >/dev/null 2>&1 || die "no user $CAPD_USER (CAPD_USER)"
[[ $DURATION =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ && $SMALL_PPS =~ ^[0-9]+$ &&
  $DELAY_MS =~ ^[0-9]+$ && $DELAY_PROXY_MS =~ ^[0-9]+$ ]] ||
  die "DURATION, ROUNDS, SMALL_PPS, DELAY_MS and DELAY_PROXY_MS are whole numbers"
((SMALL_SIZE >= 60 && SMALL_SIZE <= 1514)) || die "SMALL_SIZE must be 60..1514"
[[ $PAYLOAD == random || $PAYLOAD == text ]] || die "PAYLOAD is random or text"
for wf in $WORKFLOWS; do [[ $wf =~ ^[abcdef]$ ]] || die "WORKFLOWS: a, b, c, d, e or f, not '$wf'"; done

# What this capctl can do about compression (another change adds the flags).
HAS_COMPRESS=0
# The help is read whole first: under pipefail, grep -q leaving early would make capctl's
# SIGPIPE the pipeline's status, and a capctl with the flag would look as if it had none.
CAPCTL_STREAM_HELP=$("$CAPCTL" stream --help 2>/dev/null || true)
if grep -q -- '--compress' <<<"$CAPCTL_STREAM_HELP"; then HAS_COMPRESS=1; fi

ID=$$
AG_NS=capdb-tun-$ID-agent
CL_NS=capdb-tun-$ID-client
TX_NS=capdb-tun-$ID-traffic
TUN_AG=ct${ID}a  # <= 15 characters (pids have at most 7 digits)
TUN_CL=ct${ID}c
CAP_AG=ct${ID}p
CAP_TX=ct${ID}t
TUN_NET=10.251.$((ID % 256))
CAP_NET=10.252.$((ID % 256))
AG_IP=$TUN_NET.1
CL_IP=$TUN_NET.2
CAP_IP=$CAP_NET.1
TX_IP=$CAP_NET.2
TMP=$(mktemp -d /tmp/capd-tunnel.XXXXXX)
if [[ -z $OUT_DIR ]]; then OUT_DIR=$(mktemp -d /tmp/capd-tunnel-results.XXXXXX); fi
mkdir -p "$OUT_DIR/logs"
OUT_DIR=$(realpath "$OUT_DIR")
: >"$OUT_DIR/tunnel.tsv"
PIDS=()
NOTES=()
MADE_RUN_SSHD=0
CG_KIND="" CG_BASE="" CG_MOUNT=""
GROUPS_=(sshd ssh tcpdump capd capctl reader traffic)

# ------------------------------------------------------------------------------------------------
# cgroups: one per part of the pipeline (as bench/ssh.sh).

cg_setup() {
  local mnt
  mnt=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpuacct(,|$)/ { print $2; exit }' /proc/mounts)
  if [[ -n $mnt ]]; then
    CG_KIND=v1
  else
    mnt=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
    if [[ -n $mnt ]]; then
      CG_KIND=v2
    else
      CG_MOUNT=$TMP/cpuacct
      mkdir "$CG_MOUNT"
      mount -t cgroup -o cpuacct capdb-tun "$CG_MOUNT" ||
        { CG_MOUNT=""; die "no cgroup with CPU accounting (cpuacct v1 or cgroup2)"; }
      mnt=$TMP/cpuacct CG_KIND=v1
    fi
  fi
  CG_BASE=$mnt/capdb-tun-$ID
  mkdir "$CG_BASE"
  local g
  for g in "${GROUPS_[@]}"; do mkdir "$CG_BASE/$g"; done
}
cg_add() { echo "$2" >"$CG_BASE/$1/cgroup.procs"; }
cg_pids() { cat "$CG_BASE/$1/cgroup.procs" 2>/dev/null; }
cg_ns() {
  if [[ $CG_KIND == v1 ]]; then
    cat "$CG_BASE/$1/cpuacct.usage"
  else
    awk '$1 == "usage_usec" { printf "%d\n", $2 * 1000 }' "$CG_BASE/$1/cpu.stat"
  fi
}
cg_teardown() {
  local g pid i
  [[ -n $CG_BASE && -d $CG_BASE ]] || return 0
  for g in "${GROUPS_[@]}"; do
    for pid in $(cg_pids "$g"); do kill -KILL "$pid" 2>/dev/null; done
  done
  for g in "${GROUPS_[@]}"; do
    for ((i = 0; i < 50; i++)); do
      [[ -z $(cg_pids "$g") ]] && break
      sleep 0.1
    done
    rmdir "$CG_BASE/$g" 2>/dev/null
  done
  rmdir "$CG_BASE" 2>/dev/null
  [[ -z $CG_MOUNT ]] || umount "$CG_MOUNT"
}

cleanup() {
  local rc=$? pid
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  cg_teardown
  ip netns del "$AG_NS" 2>/dev/null
  ip netns del "$CL_NS" 2>/dev/null
  ip netns del "$TX_NS" 2>/dev/null
  ((MADE_RUN_SSHD == 0)) || rmdir /run/sshd 2>/dev/null
  if [[ $KEEP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ag() { ip netns exec "$AG_NS" "$@"; }
in_cl() { ip netns exec "$CL_NS" "$@"; }
in_tx() { ip netns exec "$TX_NS" "$@"; }

REAP_RC=0
reap() {  # reap PID WHAT [TIMEOUT_S]: waits for PID; past TIMEOUT_S (default 10) stops it (noted)
  local pid=$1 what=$2 t=${3:-10} i
  for ((i = 0; i < t * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    NOTES+=("$RUN: $what did not end within ${t}s; stopped")
    kill -TERM "$pid" 2>/dev/null
    sleep 1
    kill -KILL "$pid" 2>/dev/null || true
  fi
  REAP_RC=0
  wait "$pid" 2>/dev/null || REAP_RC=$?
  forget "$pid"
}
wait_ready() {  # wait_ready FILE PATTERN PID WHAT: until FILE holds PATTERN (20 s at most)
  local file=$1 pattern=$2 pid=$3 what=$4 i
  for ((i = 0; i < 200; i++)); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    alive "$pid" || { cat "$file" >&2; die "$RUN: $what ended before '$pattern'"; }
    sleep 0.1
  done
  cat "$file" >&2
  die "$RUN: timed out waiting for '$pattern' from $what"
}
# spawn GROUP LOG CMD...: CMD in the background in cgroup GROUP, output to LOG. Sets SPAWNED.
spawn() {
  local group=$1 logfile=$2
  shift 2
  (
    echo "$BASHPID" >"$CG_BASE/$group/cgroup.procs"
    exec "$@" </dev/null >"$logfile" 2>&1
  ) &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
}

# ------------------------------------------------------------------------------------------------
setup_network() {
  make_veth_pair "$AG_NS" "$TUN_AG" "$AG_IP" "$CL_NS" "$TUN_CL" "$CL_IP"
  # The capture veth: the agent namespace exists; the traffic namespace is new.
  ip netns add "$TX_NS"
  ip link add "$CAP_AG" type veth peer name "$CAP_TX"
  ip link set "$CAP_AG" netns "$AG_NS"
  ip link set "$CAP_TX" netns "$TX_NS"
  in_tx sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  in_ag sysctl -qw "net.ipv6.conf.$CAP_AG.disable_ipv6=1"
  in_tx sysctl -qw "net.ipv6.conf.$CAP_TX.disable_ipv6=1"
  ip -n "$TX_NS" link set lo up
  ip -n "$AG_NS" addr add "$CAP_IP/24" dev "$CAP_AG"
  ip -n "$TX_NS" addr add "$TX_IP/24" dev "$CAP_TX"
  # Frames of at most the MTU, as a NIC delivers them (veth would pass 64 KiB GSO packets).
  ip -n "$TX_NS" link set "$CAP_TX" gso_max_size 1500
  ip -n "$AG_NS" link set "$CAP_AG" gso_max_size 1500
  ip -n "$AG_NS" link set "$CAP_AG" up
  ip -n "$TX_NS" link set "$CAP_TX" up
  CAP_AG_MAC=$(in_ag cat "/sys/class/net/$CAP_AG/address")
  CAP_TX_MAC=$(in_tx cat "/sys/class/net/$CAP_TX/address")
  ip -n "$AG_NS" neigh replace "$TX_IP" lladdr "$CAP_TX_MAC" dev "$CAP_AG" nud permanent
  ip -n "$TX_NS" neigh replace "$CAP_IP" lladdr "$CAP_AG_MAC" dev "$CAP_TX" nud permanent
  # The tunnel: the agent's egress at RATE (tbf, up to 50 ms of queue), with the internet's delay.
  tc -n "$AG_NS" qdisc add dev "$TUN_AG" root handle 1: tbf rate "$RATE" burst 32kb latency 50ms
  if ((DELAY_MS > 0)); then
    tc -n "$AG_NS" qdisc add dev "$TUN_AG" parent 1:1 handle 10: netem delay "${DELAY_MS}ms" ||
      die "tc netem failed (no sch_netem in this kernel?): run with DELAY_MS=0"
    tc -n "$CL_NS" qdisc add dev "$TUN_CL" root netem delay "${DELAY_MS}ms"
  fi
  # The TCP bulk's rate on the capture veth.
  tc -n "$TX_NS" qdisc add dev "$CAP_TX" root tbf rate "$TRAFFIC_RATE" burst 64kb latency 50ms
}

setup_ssh() {  # keys and configurations as bench/ssh.sh (root by key only, the host key pinned)
  local dir=$TMP/ssh
  mkdir -m 700 "$dir"
  ssh-keygen -q -t ed25519 -N "" -C "capd bench host" -f "$dir/host_key"
  ssh-keygen -q -t ed25519 -N "" -C "capd bench client" -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  echo "$AG_IP $(cat "$dir/host_key.pub")" >"$dir/known_hosts"
  cat >"$dir/sshd_config" <<EOF
Port 22
ListenAddress $AG_IP
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PidFile $dir/sshd.pid
AllowTcpForwarding yes
Compression yes
EOF
  SSH_CONFIG=$dir/ssh_config
  cat >"$SSH_CONFIG" <<EOF
Host $AG_IP
  User root
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
EOF
  if ((DELAY_PROXY_MS > 0)); then
    echo "  ProxyCommand python3 $BENCH_DIR/delayline.py %h %p $DELAY_PROXY_MS" >>"$SSH_CONFIG"
  fi
  if [[ ! -d /run/sshd ]]; then
    mkdir -m 755 /run/sshd
    MADE_RUN_SSHD=1
  fi
  "$SSHD" -t -f "$dir/sshd_config" || die "sshd -t refused the configuration"
  RUN=sshd
  spawn sshd "$OUT_DIR/logs/sshd.log" ip netns exec "$AG_NS" "$SSHD" -D -e -f "$dir/sshd_config"
  SSHD_PID=$SPAWNED
  wait_ready "$OUT_DIR/logs/sshd.log" "Server listening on $AG_IP port 22" "$SSHD_PID" sshd
}

start_capd() {
  RUN=capd
  spawn capd "$OUT_DIR/logs/capd.log" ip netns exec "$AG_NS" "$CAPD" --user "$CAPD_USER" \
    --listen "127.0.0.1:$PORT" --no-metadata
  CAPD_PID=$SPAWNED
  wait_ready "$OUT_DIR/logs/capd.log" "listening on" "$CAPD_PID" capd
}

start_sinks() {  # the traffic's receivers in the agent namespace (no ICMP errors, real ACKs)
  RUN=sinks
  spawn traffic "$OUT_DIR/logs/bulk-sink.log" ip netns exec "$AG_NS" socat -u \
    "TCP-LISTEN:$BULK_PORT,bind=$CAP_IP,reuseaddr,fork" /dev/null
  spawn traffic "$OUT_DIR/logs/small-sink.log" ip netns exec "$AG_NS" socat -u \
    "UDP-RECV:$SMALL_PORT,bind=$CAP_IP" /dev/null
  cat >"$TMP/small.cfg" <<EOF
{
  eth(da=$CAP_AG_MAC, sa=$CAP_TX_MAC),
  ipv4(saddr=$TX_IP, daddr=$CAP_IP, ttl=64),
  udp(sport=dinc(1024, 65000), dport=$SMALL_PORT),
  drnd($((SMALL_SIZE - 42)))
}
EOF
  if [[ $PAYLOAD == text ]]; then
    # Plain text, looped: the Debian changelogs on this machine (zcat -f also takes plain files).
    find /usr/share/doc -name 'changelog*' -type f -print0 2>/dev/null |
      xargs -0 zcat -f 2>/dev/null | head -c 20000000 >"$TMP/corpus.txt" || true
    (($(stat -c %s "$TMP/corpus.txt") > 1000000)) || die "PAYLOAD=text: too little text in /usr/share/doc"
    # A script, not socat's SYSTEM: socat cuts that address at its first ';'.
    printf 'while :; do cat %s; done\n' "$TMP/corpus.txt" >"$TMP/corpus-loop.sh"
  fi
  sleep 0.5
}

# veth_count: rx_packets + tx_packets and rx_bytes + tx_bytes of the capture veth, agent side.
veth_count() {
  local d=/sys/class/net/$CAP_AG/statistics
  in_ag sh -c "echo \$((\$(cat $d/rx_packets) + \$(cat $d/tx_packets))) \$((\$(cat $d/rx_bytes) + \$(cat $d/tx_bytes)))"
}
tunnel_bytes() { in_ag cat "/sys/class/net/$TUN_AG/statistics/tx_bytes"; }

# The traffic: DURATION seconds of TCP bulk and small datagrams, in the foreground.
send_traffic() {
  local bulk small=""
  (
    echo "$BASHPID" >"$CG_BASE/traffic/cgroup.procs"
    if [[ $PAYLOAD == text ]]; then
      exec ip netns exec "$TX_NS" timeout "$DURATION" socat -u "EXEC:sh $TMP/corpus-loop.sh" \
        "TCP:$CAP_IP:$BULK_PORT,sndbuf=262144" 2>"$TMP/bulk.log"
    fi
    exec ip netns exec "$TX_NS" timeout "$DURATION" socat -u /dev/urandom \
      "TCP:$CAP_IP:$BULK_PORT,sndbuf=262144" 2>"$TMP/bulk.log"
  ) &
  bulk=$!
  if ((SMALL_PPS > 0)); then
    (
      echo "$BASHPID" >"$CG_BASE/traffic/cgroup.procs"
      exec ip netns exec "$TX_NS" trafgen --dev "$CAP_TX" --conf "$TMP/small.cfg" \
        --num $((SMALL_PPS * DURATION)) --rate "${SMALL_PPS}pps" --cpus 1 --no-sock-mem \
        --notouch-irq >"$TMP/trafgen.log" 2>&1
    ) &
    small=$!
  fi
  wait "$bulk" || true  # timeout's 124: the bulk ran for DURATION
  [[ -z $small ]] || wait "$small" || NOTES+=("$RUN: trafgen failed: $(tail -1 "$TMP/trafgen.log")")
}

# ------------------------------------------------------------------------------------------------
# One workflow into tshark. start_pipeline WF: sets READER_PID, WRITER_PID, WRITER_ERR, FILE.
start_pipeline() {
  local wf=$1 fifo=$TMP/$RUN.fifo
  FILE=$TMP/$RUN.pcapng
  mkfifo -m 600 "$fifo"
  spawn reader "$OUT_DIR/logs/$RUN.tshark.log" ip netns exec "$CL_NS" tshark -n -q -i "$fifo" \
    -w "$FILE"
  READER_PID=$SPAWNED
  WRITER_ERR=$OUT_DIR/logs/$RUN.err
  if [[ $wf == a || $wf == b ]]; then
    local compress=()
    [[ $wf == a ]] || compress=(-C)
    (
      echo "$BASHPID" >"$CG_BASE/ssh/cgroup.procs"
      exec ip netns exec "$CL_NS" ssh "${compress[@]}" -F "$SSH_CONFIG" "root@$AG_IP" \
        "tcpdump -U -i $CAP_AG -w -" </dev/null >"$fifo" 2>"$WRITER_ERR"
    ) &
    WRITER_PID=$!
    PIDS+=("$WRITER_PID")
    wait_ready "$WRITER_ERR" "listening on" "$WRITER_PID" "ssh + tcpdump"
    local pid i
    TCPDUMP_PID=""
    for ((i = 0; i < 50; i++)); do
      for pid in $(cg_pids sshd); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) != tcpdump ]] || TCPDUMP_PID=$pid
      done
      [[ -z $TCPDUMP_PID ]] || break
      sleep 0.1
    done
    [[ -n $TCPDUMP_PID ]] || die "$RUN: the remote tcpdump was not found among sshd's processes"
    cg_add tcpdump "$TCPDUMP_PID"
  elif [[ $wf == e || $wf == f ]]; then
    # A hand-made forward: ssh -L, then capctl at 127.0.0.1:LOCAL_FWD_PORT.
    spawn ssh "$OUT_DIR/logs/$RUN.fwd.log" ip netns exec "$CL_NS" ssh -F "$SSH_CONFIG" -N \
      -o ExitOnForwardFailure=yes -L "127.0.0.1:$LOCAL_FWD_PORT:127.0.0.1:$PORT" "root@$AG_IP"
    FWD_PID=$SPAWNED
    local i
    for ((i = 0; i < 100; i++)); do
      ip netns exec "$CL_NS" ss -Hltn "sport = :$LOCAL_FWD_PORT" | grep -q LISTEN && break
      sleep 0.1
    done
    sleep 0.3
    local bin=$CAPCTL
    [[ $wf == e ]] || bin=$CAPCTL_ALT
    spawn capctl "$WRITER_ERR" ip netns exec "$CL_NS" "$bin" stream \
      --agent "127.0.0.1:$LOCAL_FWD_PORT/$CAP_AG" --no-compress --fifo "$fifo"
    WRITER_PID=$SPAWNED
    wait_ready "$WRITER_ERR" "capturing on" "$WRITER_PID" capctl
  else
    local args=(stream --agent "ssh://root@$AG_IP/$CAP_AG" --fifo "$fifo")
    if ((HAS_COMPRESS)); then
      if [[ $wf == c ]]; then args+=(--no-compress); else args+=(--compress); fi
    fi
    spawn capctl "$WRITER_ERR" ip netns exec "$CL_NS" env "CAPCTL_SSH_COMMAND=ssh -F $SSH_CONFIG" \
      "$CAPCTL" "${args[@]}"
    WRITER_PID=$SPAWNED
    wait_ready "$WRITER_ERR" "capturing on" "$WRITER_PID" capctl
    local pid
    for pid in $(cg_pids capctl); do  # capctl's ssh child (the tunnel) counts as ssh
      [[ $pid == "$WRITER_PID" ]] || cg_add ssh "$pid"
    done
  fi
}

stop_pipeline() {
  local wf=$1 pid i
  if [[ $wf == a || $wf == b ]]; then
    kill -TERM "$TCPDUMP_PID" 2>/dev/null || NOTES+=("$RUN: the remote tcpdump had ended")
    reap "$WRITER_PID" ssh 60
  else
    kill -TERM "$WRITER_PID" 2>/dev/null || true
    reap "$WRITER_PID" capctl 60
    ((REAP_RC == 0)) || NOTES+=("$RUN: capctl exited with status $REAP_RC: $(tail -1 "$WRITER_ERR")")
    if [[ $wf == e || $wf == f ]]; then
      kill -TERM "$FWD_PID" 2>/dev/null || true
      reap "$FWD_PID" ssh 10
    fi
  fi
  reap "$READER_PID" tshark 30
  for ((i = 0; i < 20; i++)); do
    [[ -n $(cg_pids tcpdump) ]] || break
    sleep 0.1
  done
  for pid in $(cg_pids tcpdump); do
    NOTES+=("$RUN: a remote tcpdump (pid $pid) was still running after ssh ended; killed")
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$TMP/$RUN.fifo"
}

declare -A CPU0 CPU
cpu_mark() { local g; for g in "${GROUPS_[@]}"; do CPU0[$g]=$(cg_ns "$g"); done; }
cpu_read() { local g; for g in "${GROUPS_[@]}"; do CPU[$g]=$(($(cg_ns "$g") - CPU0[$g])); done; }

count_all() { capinfos -M -c "$1" 2>/dev/null | awk -F': *' '/Number of packets/ { print $2 + 0 }'; }

drops_of() {  # drops_of WF ERR: tcpdump "kernel/interface", capctl "kernel/interface/agent"
  local n='\([0-9]*\)' k i
  if [[ $1 == a || $1 == b ]]; then
    k=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$2" | tail -1)
    i=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by interface.*/\1/p' "$2" | tail -1)
    echo "${k:-?}/${i:-0}"
  else
    k=$(sed -n "s|.*dropped: $n by kernel, $n by interface, $n by agent.*|\\1/\\2/\\3|p" "$2" |
      tail -1)
    echo "${k:-?}"
  fi
}

tsv() {
  local IFS=$'\t' line
  line="$*"
  printf '%s\n' "$line" >>"$OUT_DIR/tunnel.tsv"
  [[ -z $TSV ]] || printf '%s\n' "$line" >>"$TSV"
}

now() { date +%s.%N; }

# run_workflow ROUND WF
run_workflow() {
  local round=$1 wf=$2 c0 c1 sent bytes t0 t_end got drops tun0 tun1
  RUN=r$round-$wf
  if [[ $wf == d ]] && ((!HAS_COMPRESS)); then
    log "(d) skipped: this capctl has no --compress"
    if ((round == 1)); then
      echo "(d) skipped: this capctl has no --compress"
      NOTES+=("(d) skipped: this capctl has no --compress")
    fi
    return 0
  fi
  log "round $round: ($wf), ${DURATION}s of traffic"
  start_pipeline "$wf"
  sleep 0.5
  read -r c0 bytes < <(veth_count)
  local b0=$bytes
  tun0=$(tunnel_bytes)
  cpu_mark
  t0=$(now)
  send_traffic
  # The bytes offered: over the traffic's DURATION. The packets: also what followed it (the
  # bulk's last ACKs and FIN), which the capturers capture too.
  read -r c1 bytes < <(veth_count)
  wait_quiet "$FILE" || NOTES+=("$RUN: the capture was still growing after 120 s")
  read -r c1 _ < <(veth_count)
  t_end=$(awk -v t="$(now)" -v s="$SETTLE_S" 'BEGIN { printf "%.3f", t - s }')
  cpu_read
  tun1=$(tunnel_bytes)
  stop_pipeline "$wf"
  sent=$((c1 - c0))
  got=$(count_all "$FILE")
  drops=$(drops_of "$wf" "$WRITER_ERR")
  local secs offered
  secs=$(awk -v a="$t0" -v b="$t_end" 'BEGIN { printf "%.2f", b - a }')
  offered=$(awk -v b="$((bytes - b0))" -v d="$DURATION" 'BEGIN { printf "%.1f", b * 8 / d / 1e6 }')
  log "  ($wf) $got/$sent delivered in ${secs}s, drops $drops, offered ${offered} Mbit/s;" \
    "CPU ms: sshd $((CPU[sshd] / 1000000)) ssh $((CPU[ssh] / 1000000))" \
    "tcpdump $((CPU[tcpdump] / 1000000)) capd $((CPU[capd] / 1000000))" \
    "capctl $((CPU[capctl] / 1000000)) (tshark $((CPU[reader] / 1000000)))"
  local hint
  hint=$(grep -m1 -o 'is dropping packets: [^;]*' "$WRITER_ERR" 2>/dev/null || true)
  [[ -z $hint || $round != 1 ]] || NOTES+=("$RUN: capctl said: ${hint:0:160}")
  tsv kind=tunnel "round=$round" "workflow=$wf" "sent=$sent" "delivered=$got" "drops=$drops" \
    "seconds=$secs" "offered_mbit=$offered" "tunnel_bytes=$((tun1 - tun0))" \
    "sshd_ns=${CPU[sshd]}" "ssh_ns=${CPU[ssh]}" "tcpdump_ns=${CPU[tcpdump]}" \
    "capd_ns=${CPU[capd]}" "capctl_ns=${CPU[capctl]}" "reader_ns=${CPU[reader]}"
  [[ $KEEP == 1 ]] || rm -f "$FILE"
  alive "$CAPD_PID" || die "capd died during $RUN (see $OUT_DIR/logs/capd.log)"
}

# ------------------------------------------------------------------------------------------------
# shellcheck disable=SC2016  # awk's fields, not the shell's
AWK_FIELDS='{ delete f; for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v ~ /^-?[0-9]+(\.[0-9]+)?$/ ? v + 0 : v } }'

# table_md: one row per workflow (medians over the rounds), then the ratios the issue asks for.
table_md() {
  awk -F'\t' "$AWK_FIELDS"'
    function median(list,    a, n, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) a[i] += 0
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n == 0 ? "" : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
    }
    f["kind"] == "tunnel" {
      wf = f["workflow"]; seen[wf] = 1
      cap = (wf == "a" || wf == "b") ? f["tcpdump_ns"] : f["capd_ns"]
      tot = f["sshd_ns"] + f["ssh_ns"] + cap + f["capctl_ns"]
      pps[wf] = pps[wf] " " (f["seconds"] > 0 ? f["delivered"] / f["seconds"] : 0)
      compl[wf] = compl[wf] " " (f["sent"] > 0 ? 100 * f["delivered"] / f["sent"] : 0)
      sent[wf] = sent[wf] " " f["sent"]; got[wf] = got[wf] " " f["delivered"]
      offered[wf] = offered[wf] " " f["offered_mbit"]
      link[wf] = link[wf] " " (f["seconds"] > 0 ? f["tunnel_bytes"] * 8 / f["seconds"] / 1e6 : 0)
      if (f["delivered"] > 0) {
        cpu[wf] = cpu[wf] " " tot / 1e3 / f["delivered"]
        p_sshd[wf] = p_sshd[wf] " " f["sshd_ns"] / 1e3 / f["delivered"]
        p_ssh[wf] = p_ssh[wf] " " f["ssh_ns"] / 1e3 / f["delivered"]
        p_cap[wf] = p_cap[wf] " " cap / 1e3 / f["delivered"]
        p_ctl[wf] = p_ctl[wf] " " f["capctl_ns"] / 1e3 / f["delivered"]
      }
      drops[wf] = drops[wf] (drops[wf] == "" ? "" : ", ") f["drops"]
    }
    END {
      name["a"] = "(a) ssh + tcpdump -U -w -"; name["b"] = "(b) ssh -C + tcpdump -U -w -"
      name["c"] = "(c) capctl ssh://, no compression"; name["d"] = "(d) capctl ssh://, --compress"
      name["e"] = "(e) ssh -L by hand, capctl 127.0.0.1"; name["f"] = "(f) as (e), CAPCTL_ALT"
      print "| workflow | sent on CAP | offered Mbit/s | delivered | completeness | delivered pkt/s | tunnel Mbit/s used | capturer drops | CPU us / delivered pkt | sshd / ssh / tcpdump or capd / capctl |"
      print "|---|---|---|---|---|---|---|---|---|---|"
      for (k = 1; k <= 6; k++) {
        wf = substr("abcdef", k, 1)
        if (!(wf in seen)) { if (wf == "d") print "| " name[wf] " | skipped: this capctl has no --compress | | | | | | | | |"; continue }
        printf "| %s | %.0f | %.1f | %.0f | %.1f %% | %.0f | %.1f | %s | %.2f | %.2f / %.2f / %.2f / %s |\n", name[wf],
          median(sent[wf]), median(offered[wf]), median(got[wf]), median(compl[wf]), median(pps[wf]),
          median(link[wf]), drops[wf], median(cpu[wf]), median(p_sshd[wf]), median(p_ssh[wf]), median(p_cap[wf]),
          (wf == "a" || wf == "b") ? "-" : sprintf("%.2f", median(p_ctl[wf]))
        m[wf] = median(pps[wf])
      }
      print ""
      print "| ratio of delivered pkt/s | value | goal (issue 19) | met |"
      print "|---|---|---|---|"
      # Ratios and verdicts into variables first: a ">" among the arguments of printf redirects.
      if (("c" in m) && m["a"] > 0) { r = m["c"] / m["a"]; printf "| (c) / (a) | %.2f | - | - |\n", r }
      if (("c" in m) && m["b"] > 0) { r = m["c"] / m["b"]; printf "| (c) / (b) | %.2f | - | - |\n", r }
      if (("d" in m) && m["a"] > 0) {
        r = m["d"] / m["a"]; met = r >= 2 ? "yes" : "no"
        printf "| (d) / (a) | %.2f | >= 2 | %s |\n", r, met
      } else {
        print "| (d) / (a) | - (no (d), or no (a)) | >= 2 | - |"
      }
      if (("d" in m) && m["b"] > 0) {
        r = m["d"] / m["b"]; met = r > 1 ? "yes" : "no"
        printf "| (d) / (b) | %.2f | > 1 | %s |\n", r, met
      } else {
        print "| (d) / (b) | - (no (d), or no (b)) | > 1 | - |"
      }
    }' "$OUT_DIR/tunnel.tsv"
}

section_md() {
  local rev dirty=""
  rev=$(git -C "$BENCH_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -z $(git -C "$BENCH_DIR" status --porcelain --untracked-files=no 2>/dev/null) ]] ||
    dirty=" (the work tree had uncommitted changes)"
  echo "<!-- bench/$MARKER: begin (replaced by each run of bench/tunnel.sh or bench/all.sh) -->"
  echo "## Through a thin tunnel: tcpdump over ssh vs capd over ssh:// (bench/tunnel.sh, PAYLOAD=$PAYLOAD)"
  echo
  echo "- date: $(date -u '+%F %T UTC'); commit: $rev$dirty"
  echo "- binaries (modified): capd $BIN_TIMES"
  echo "- command: \`$COMMAND\`"
  echo "- load average (1/5/15 min): $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "- $(ssh -V 2>&1 | head -1); tcpdump $(tcpdump --version 2>&1 | head -1 | awk '{ print $3 }')"
  echo
  echo "The agent's egress to the client shaped to $RATE (tc tbf) with ${DELAY_MS} ms of netem delay on each"
  local bulk="/dev/urandom payloads"
  [[ $PAYLOAD == random ]] || bulk="plain text (Debian changelogs, looped)"
  echo "end; for ${DURATION} s its capture interface carries TCP bulk of $bulk (tbf $TRAFFIC_RATE,"
  echo "frames <= 1514 B) with its ACKs, and $SMALL_PPS UDP datagrams/s of $SMALL_SIZE B. No capture filter."
  echo "Delivered: packets in the FIFO reader's file (tshark -i FIFO -w FILE); per second over the time"
  echo "from the start of the traffic to the file's last growth. CPU: sshd + ssh + tcpdump or capd +"
  echo "capctl per delivered packet (cgroups); tshark apart. Capturer drops: tcpdump kernel/interface,"
  echo "capctl kernel/interface/agent. Rounds: $ROUNDS (medians)."
  ((DELAY_PROXY_MS == 0)) ||
    echo "ssh's ProxyCommand: bench/delayline.py, ${DELAY_PROXY_MS} ms each way (its CPU is ssh's)."
  echo
  table_md
  if ((${#NOTES[@]} > 0)); then
    echo
    printf -- '- note: %s\n' "${NOTES[@]}"
  fi
  echo "<!-- bench/$MARKER: end -->"
}

main() {
  COMMAND="RATE=$RATE DELAY_MS=$DELAY_MS TRAFFIC_RATE=$TRAFFIC_RATE PAYLOAD=$PAYLOAD SMALL_PPS=$SMALL_PPS"
  COMMAND+=" SMALL_SIZE=$SMALL_SIZE DURATION=$DURATION ROUNDS=$ROUNDS WORKFLOWS=\"$WORKFLOWS\""
  ((DELAY_PROXY_MS == 0)) || COMMAND+=" DELAY_PROXY_MS=$DELAY_PROXY_MS"
  COMMAND+=" bench/tunnel.sh $BUILD_DIR"
  # One section of RESULTS.md per payload: "tunnel.sh" (random, as before) and "tunnel.sh text".
  MARKER=tunnel.sh
  [[ $PAYLOAD == random ]] || MARKER="tunnel.sh $PAYLOAD"
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  BIN_TIMES="$(date -u -r "$CAPD" '+%F %T UTC'), capctl $(date -u -r "$CAPCTL" '+%F %T UTC')"
  cg_setup
  setup_network
  setup_ssh
  start_capd
  start_sinks
  log "agent $AG_NS (tunnel $TUN_AG $AG_IP at $RATE; capture $CAP_AG $CAP_IP), client $CL_NS," \
    "traffic $TX_NS; CPU from cgroup $CG_KIND $CG_BASE"
  local r wf
  for ((r = 1; r <= ROUNDS; r++)); do
    for wf in $WORKFLOWS; do run_workflow "$r" "$wf"; done
  done
  section_md >"$OUT_DIR/tunnel.md"
  echo
  cat "$OUT_DIR/tunnel.md"
  if [[ -n $RESULTS ]]; then
    update_results "$RESULTS" "$OUT_DIR/tunnel.md" "$MARKER"
    log "updated the section in $RESULTS"
  fi
  log "results in $OUT_DIR (tunnel.tsv, tunnel.md, logs/)"
}

main

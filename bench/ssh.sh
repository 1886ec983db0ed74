#!/usr/bin/env bash
# bench/ssh.sh: the seed workflow (tcpdump through ssh into a FIFO that tshark reads) against
# capd through SSH (capctl stream --agent ssh://... --fifo), side by side in one run, through a
# real sshd. Run by hand, as root; not a CI job, not a ctest test.
#
# How it works: two network namespaces of its own joined by a veth pair. The agent namespace
# holds sshd (Debian's /usr/sbin/sshd -D -e, a host key and a client key of its own, made here
# with ssh-keygen) and capd, started as root the way deploy/systemd/capd.service runs it
# (--user nobody: it drops to nobody keeping CAP_NET_RAW and CAP_NET_ADMIN). ssh, capctl, tshark
# and trafgen run in the client namespace. The capture interface IF is the agent's end of the
# veth: the one the SSH connection itself crosses.
#   tcpdump workflow: ssh root@AGENT 'tcpdump -U -i IF -w - [FILTER]' > FIFO
#   capd workflow:    capctl stream --agent ssh://root@AGENT/IF --fifo FIFO [-f FILTER]
# each read by tshark -i FIFO -w FILE. Per round and workflow (the order alternates by round):
#   1. idle:  IDLE_S seconds of capture with no filter and no other traffic; the packets with
#             TCP port 22 in tshark's file are the capture's own SSH session.
#   2. burst: PACKETS UDP frames of SIZE bytes from trafgen (client -> agent, across IF),
#             captured with the filter 'udp port UDP_PORT'; packets in tshark's file out of those
#             that reached the agent's UDP layer, the drops the capturer reports, and the CPU of
#             the whole pipeline per packet: sshd (every sshd process), ssh, tcpdump or capd
#             (with any process it starts), capctl. tshark (with its dumpcap) is the same reader
#             for both and is reported apart, not summed.
# CPU is read from cgroups made here (cpuacct.usage of cgroup v1, or cpu.stat of v2): each
# process is put in one when it starts, and what it starts inherits it, so sshd's per-connection
# processes count, also those that end before the reading. Moved later: the remote tcpdump
# (from the sshd cgroup, once it listens) and capctl's ssh (from capctl's, once it captures).
# The window is from 0.5 s before the burst until tshark's file has not grown for SETTLE_S.
# The remote tcpdump is stopped with SIGTERM so that its statistics come back through ssh;
# capctl is stopped with SIGTERM; tshark then ends at the end of its FIFO.
#
# Usage: sudo bench/ssh.sh [BUILD_DIR [OUT_DIR]]   (BUILD_DIR holds agent/capd and
#        client/capctl, default ./build; OUT_DIR gets ssh.tsv, ssh.txt, ssh.md and the logs,
#        default a new /tmp/capd-ssh-results.XXXXXX)
# Settings (environment):
#   IDLE_S=3                    seconds of the idle capture
#   PACKETS=300000 SIZE=64      the burst: frames and frame length without FCS (60..1514)
#   RATE=                       trafgen --rate (e.g. 100000pps); empty: as fast as it goes
#   ROUNDS=5                    rounds (each: both workflows, idle and burst); medians reported
#   SETTLE_S=2                  a capture file unchanged this long is finished
#   UDP_PORT=5555               the burst's destination port (nothing listens)
#   CAPD_USER=nobody            capd --user
#   GOAL_SSH_CPU_RATIO=0.5      the goal for capd workflow / tcpdump workflow CPU per packet
#   RESULTS=bench/RESULTS.md    section "Through SSH" replaced (or added) there; empty: not
#   TSV=                        also append the key=value lines to this file
#   KEEP=0                      1 keeps the temporary directory (captures, keys, configs)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_DIR=${1:-./build}
OUT_DIR=${2:-}
IDLE_S=${IDLE_S:-3}
PACKETS=${PACKETS:-300000}
SIZE=${SIZE:-64}
RATE=${RATE:-}
ROUNDS=${ROUNDS:-5}
SETTLE_S=${SETTLE_S:-2}
UDP_PORT=${UDP_PORT:-5555}
CAPD_USER=${CAPD_USER:-nobody}
GOAL_SSH_CPU_RATIO=${GOAL_SSH_CPU_RATIO:-0.5}
RESULTS=${RESULTS-$BENCH_DIR/RESULTS.md}
TSV=${TSV:-}
KEEP=${KEEP:-0}
PORT=50051  # capd's port inside the agent namespace: the default, nothing else can hold it there

log() { printf '[ssh %(%T)T] %s\n' -1 "$*" >&2; }
die() { printf 'ssh.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=bench/sched.sh
source "$BENCH_DIR/sched.sh"  # wait_quiet, update_results, alive, forget, make_veth_pair

[[ $(id -u) == 0 ]] || die "must run as root (network namespaces, sshd, cgroups)"
[[ -x $BUILD_DIR/agent/capd ]] ||
  die "$BUILD_DIR/agent/capd not found (build the capd target; BUILD_DIR is \$1)"
[[ -x $BUILD_DIR/client/capctl ]] || die "$BUILD_DIR/client/capctl not found (build the capctl target)"
CAPD=$(realpath "$BUILD_DIR/agent/capd")
CAPCTL=$(realpath "$BUILD_DIR/client/capctl")
SSHD=/usr/sbin/sshd
[[ -x $SSHD ]] || die "$SSHD not found (apt-get install openssh-server)"
for tool in ip ssh ssh-keygen tshark capinfos trafgen awk; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
id "$CAPD_USER" >/dev/null 2>&1 || die "no user $CAPD_USER (CAPD_USER)"
[[ $IDLE_S =~ ^[0-9]+$ && $PACKETS =~ ^[0-9]+$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] ||
  die "IDLE_S, PACKETS and ROUNDS are whole numbers (ROUNDS >= 1)"
((SIZE >= 60 && SIZE <= 1514)) || die "SIZE must be 60..1514"

ID=$$
AG_NS=capdb-ssh-$ID-agent
CL_NS=capdb-ssh-$ID-client
AG_IF=cs${ID}a  # <= 15 characters (pids have at most 7 digits)
CL_IF=cs${ID}c
NET=10.250.$((ID % 256))
AG_IP=$NET.1
CL_IP=$NET.2
TMP=$(mktemp -d /tmp/capd-ssh.XXXXXX)
if [[ -z $OUT_DIR ]]; then OUT_DIR=$(mktemp -d /tmp/capd-ssh-results.XXXXXX); fi
mkdir -p "$OUT_DIR/logs"
OUT_DIR=$(realpath "$OUT_DIR")
: >"$OUT_DIR/ssh.tsv"
PIDS=()       # processes this script started and may still have to stop
NOTES=()
MADE_RUN_SSHD=0
CG_KIND="" CG_BASE="" CG_MOUNT=""
GROUPS_=(sshd ssh tcpdump capd capctl reader witness)

# ------------------------------------------------------------------------------------------------
# cgroups: one per part of the pipeline, read before and after each window.

cg_setup() {
  local mnt
  mnt=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpuacct(,|$)/ { print $2; exit }' /proc/mounts)
  if [[ -n $mnt ]]; then
    CG_KIND=v1
  else
    mnt=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
    if [[ -n $mnt ]]; then
      CG_KIND=v2
    else  # neither: mount cpuacct (v1) for the run
      CG_MOUNT=$TMP/cpuacct
      mkdir "$CG_MOUNT"
      mount -t cgroup -o cpuacct capdb-ssh "$CG_MOUNT" ||
        { CG_MOUNT=""; die "no cgroup with CPU accounting (cpuacct v1 or cgroup2)"; }
      mnt=$TMP/cpuacct CG_KIND=v1
    fi
  fi
  CG_BASE=$mnt/capdb-ssh-$ID
  mkdir "$CG_BASE"
  local g
  for g in "${GROUPS_[@]}"; do mkdir "$CG_BASE/$g"; done
}
cg_add() { echo "$2" >"$CG_BASE/$1/cgroup.procs"; }  # cg_add GROUP PID
cg_pids() { cat "$CG_BASE/$1/cgroup.procs" 2>/dev/null; }
cg_ns() {  # on-CPU ns of everything that ran in GROUP, ended processes included
  if [[ $CG_KIND == v1 ]]; then
    cat "$CG_BASE/$1/cpuacct.usage"
  else
    awk '$1 == "usage_usec" { printf "%d\n", $2 * 1000 }' "$CG_BASE/$1/cpu.stat"
  fi
}
cg_sys_ns() {  # the part of it in the kernel (tick-sampled where the kernel samples ticks)
  if [[ $CG_KIND == v1 ]]; then
    cat "$CG_BASE/$1/cpuacct.usage_sys"
  else
    awk '$1 == "system_usec" { printf "%d\n", $2 * 1000 }' "$CG_BASE/$1/cpu.stat"
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
  cg_teardown  # what the processes above started (sshd's sessions, a remote tcpdump)
  ip netns del "$AG_NS" 2>/dev/null
  ip netns del "$CL_NS" 2>/dev/null
  ((MADE_RUN_SSHD == 0)) || rmdir /run/sshd 2>/dev/null
  if [[ $KEEP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------------
in_ag() { ip netns exec "$AG_NS" "$@"; }
in_cl() { ip netns exec "$CL_NS" "$@"; }

# reap PID WHAT [TIMEOUT_S]: waits for PID to end by itself; past TIMEOUT_S (default 10) it is
# stopped (noted). Sets REAP_RC to its exit status.
REAP_RC=0
reap() {
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
# wait_ready FILE PATTERN PID WHAT: until FILE holds PATTERN; dies if PID ends first or after 20 s.
wait_ready() {
  local file=$1 pattern=$2 pid=$3 what=$4 i
  for ((i = 0; i < 200; i++)); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    alive "$pid" || { cat "$file" >&2; die "$RUN: $what ended before '$pattern'"; }
    sleep 0.1
  done
  cat "$file" >&2
  die "$RUN: timed out waiting for '$pattern' from $what"
}
# expect_comm PID NAME: $! must become the process itself (ip netns exec execs it in place).
expect_comm() {
  local i comm=""
  for ((i = 0; i < 100; i++)); do
    comm=$(cat "/proc/$1/comm" 2>/dev/null) || break
    [[ $comm == "$2" ]] && return 0
    sleep 0.02
  done
  die "pid $1 is '$comm', expected $2"
}

# spawn GROUP LOG CMD...: CMD in the background, in cgroup GROUP from its first instruction
# (the subshell moves itself there, then execs), stdout and stderr to LOG. Sets SPAWNED.
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
  make_veth_pair "$AG_NS" "$AG_IF" "$AG_IP" "$CL_NS" "$CL_IF" "$CL_IP"
  AG_MAC=$(in_ag cat "/sys/class/net/$AG_IF/address")  # for trafgen's frames
  CL_MAC=$(in_cl cat "/sys/class/net/$CL_IF/address")
}

# Keys and configurations as tests/support/test_sshd.cc makes them: root by key only, the host
# key pinned in a known_hosts file, StrictHostKeyChecking yes, BatchMode yes.
setup_ssh() {
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
  if [[ ! -d /run/sshd ]]; then  # the privilege separation directory (Debian's unit makes it)
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
  expect_comm "$CAPD_PID" capd
  wait_ready "$OUT_DIR/logs/capd.log" "listening on" "$CAPD_PID" capd
}

# The burst: Ethernet/IPv4/UDP frames of SIZE bytes to the agent's veth. Nothing listens on
# UDP_PORT; the kernel's ICMP errors are rate-limited and are not UDP, so not captured.
write_trafgen_config() {
  cat >"$TMP/burst.cfg" <<EOF
{
  eth(da=$AG_MAC, sa=$CL_MAC),
  ipv4(saddr=$CL_IP, daddr=$AG_IP, ttl=64),
  udp(sport=40000, dport=$UDP_PORT),
  fill(0x5a, $((SIZE - 42)))
}
EOF
}
# UDP datagrams that reached the agent's UDP layer (InDatagrams + NoPorts + InErrors): they all
# passed the capture taps of IF first.
udp_in() {
  # shellcheck disable=SC2016  # awk's fields, not the shell's
  in_ag awk '/^Udp:/ { if (seen) { print $2 + $3 + $4; exit } seen = 1 }' /proc/net/snmp
}
send_burst() {  # prints trafgen's wall time in seconds
  local args=(--dev "$CL_IF" --conf "$TMP/burst.cfg" --num "$PACKETS" --cpus 1 --no-sock-mem
    --notouch-irq) t0 t1
  [[ -z $RATE ]] || args+=(--rate "$RATE")
  t0=$(date +%s.%N)
  in_cl trafgen "${args[@]}" >"$TMP/trafgen.log" 2>&1 || { cat "$TMP/trafgen.log" >&2; die "trafgen failed"; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

# ------------------------------------------------------------------------------------------------
# One capture through one workflow into tshark. start_pipeline WORKFLOW FILTER: sets READER_PID,
# WRITER_PID (ssh or capctl), WRITER_ERR, FILE.
start_pipeline() {
  local wf=$1 filter=$2 fifo=$TMP/$RUN.fifo
  FILE=$TMP/$RUN.pcapng
  mkfifo -m 600 "$fifo"
  spawn reader "$OUT_DIR/logs/$RUN.tshark.log" ip netns exec "$CL_NS" tshark -n -q -i "$fifo" \
    -w "$FILE"
  READER_PID=$SPAWNED
  WRITER_ERR=$OUT_DIR/logs/$RUN.$wf.err
  if [[ $wf == tcpdump ]]; then
    # The seed workflow: ssh host 'tcpdump -U -i IF -w -' > FIFO (the shell's open of the FIFO
    # waits for tshark's dumpcap; stderr, with tcpdump's, to a file).
    local remote="tcpdump -U -i $AG_IF -w -"
    [[ -z $filter ]] || remote+=" $filter"
    (
      echo "$BASHPID" >"$CG_BASE/ssh/cgroup.procs"
      exec ip netns exec "$CL_NS" ssh -F "$SSH_CONFIG" "root@$AG_IP" "$remote" \
        </dev/null >"$fifo" 2>"$WRITER_ERR"
    ) &
    WRITER_PID=$!
    PIDS+=("$WRITER_PID")
    wait_ready "$WRITER_ERR" "listening on" "$WRITER_PID" "ssh + tcpdump"
    expect_comm "$WRITER_PID" ssh
    # The remote tcpdump started in sshd's cgroup (sshd's session); give it its own.
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
  else
    local args=(stream --agent "ssh://root@$AG_IP/$AG_IF" --fifo "$fifo")
    [[ -z $filter ]] || args+=(-f "$filter")
    spawn capctl "$WRITER_ERR" ip netns exec "$CL_NS" env "CAPCTL_SSH_COMMAND=ssh -F $SSH_CONFIG" \
      "$CAPCTL" "${args[@]}"
    WRITER_PID=$SPAWNED
    expect_comm "$WRITER_PID" capctl
    wait_ready "$WRITER_ERR" "capturing on" "$WRITER_PID" capctl
    # capctl's ssh child (the tunnel) started in capctl's cgroup; give it ssh's.
    local pid
    for pid in $(cg_pids capctl); do
      [[ $pid == "$WRITER_PID" ]] || cg_add ssh "$pid"
    done
  fi
}

# stop_pipeline WORKFLOW: stops the capturer so that it reports its drops, then waits for the
# writer and tshark to end by themselves.
stop_pipeline() {
  local wf=$1 pid
  if [[ $wf == tcpdump ]]; then
    kill -TERM "$TCPDUMP_PID" 2>/dev/null || NOTES+=("$RUN: the remote tcpdump had ended")
    reap "$WRITER_PID" ssh
  else
    kill -TERM "$WRITER_PID" 2>/dev/null || true
    reap "$WRITER_PID" capctl
    ((REAP_RC == 0)) || NOTES+=("$RUN: capctl exited with status $REAP_RC: $(tail -1 "$WRITER_ERR")")
  fi
  reap "$READER_PID" tshark
  local i
  for ((i = 0; i < 20; i++)); do  # its parent in the sshd session reaps it
    [[ -n $(cg_pids tcpdump) ]] || break
    sleep 0.1
  done
  for pid in $(cg_pids tcpdump); do  # a remote tcpdump left behind (none expected)
    NOTES+=("$RUN: a remote tcpdump (pid $pid) was still running after ssh ended; killed")
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$TMP/$RUN.fifo"
}

cpu_mark() {  # cpu_mark: CPU0[GROUP] = ns now, SYS0[GROUP] its kernel part
  local g
  for g in "${GROUPS_[@]}"; do
    CPU0[$g]=$(cg_ns "$g")
    SYS0[$g]=$(cg_sys_ns "$g")
  done
}
cpu_read() {  # cpu_read: CPU[GROUP] = ns since cpu_mark, SYS[GROUP] its kernel part
  local g
  for g in "${GROUPS_[@]}"; do
    CPU[$g]=$(($(cg_ns "$g") - CPU0[$g]))
    SYS[$g]=$(($(cg_sys_ns "$g") - SYS0[$g]))
  done
}
declare -A CPU0 CPU SYS0 SYS

count_all() { capinfos -M -c "$1" 2>/dev/null | awk -F': *' '/Number of packets/ { print $2 + 0 }'; }
count_ssh() { tshark -n -r "$1" -Y tcp.port==22 -T fields -e frame.number 2>/dev/null | wc -l; }

drops_of() {  # drops_of WORKFLOW ERR: tcpdump "kernel/interface", capctl "kernel/interface/agent"
  local n='\([0-9]*\)' k i
  if [[ $1 == tcpdump ]]; then
    k=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$2" | tail -1)
    i=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by interface.*/\1/p' "$2" | tail -1)
    echo "${k:-?}/${i:-0}"
  else
    k=$(sed -n "s|.*dropped: $n by kernel, $n by interface, $n by agent.*|\\1/\\2/\\3|p" "$2" |
      tail -1)
    echo "${k:-?}"
  fi
}

tsv() {  # tsv KEY=VALUE...: one line to OUT_DIR/ssh.tsv (and TSV)
  local IFS=$'\t' line
  line="$*"
  printf '%s\n' "$line" >>"$OUT_DIR/ssh.tsv"
  [[ -z $TSV ]] || printf '%s\n' "$line" >>"$TSV"
}

# idle ROUND WORKFLOW: IDLE_S seconds of capture, no filter, no other traffic. A witness
# (tcpdump --immediate-mode 'tcp port 22' on IF, in the agent namespace, to a file there) counts
# the SSH packets that crossed IF meanwhile: a capture that holds none of them has left them out.
idle() {
  local round=$1 wf=$2 own all witness_pid witnessed
  RUN=r$round-idle-$wf
  log "round $round: $wf workflow, ${IDLE_S}s on a quiet link, no filter"
  spawn witness "$OUT_DIR/logs/$RUN.witness.log" ip netns exec "$AG_NS" tcpdump -i "$AG_IF" \
    --immediate-mode -w "$TMP/$RUN.witness.pcap" tcp port 22
  witness_pid=$SPAWNED
  wait_ready "$OUT_DIR/logs/$RUN.witness.log" "listening on" "$witness_pid" "the witness tcpdump"
  start_pipeline "$wf" ""
  cpu_mark
  sleep "$IDLE_S"
  cpu_read
  stop_pipeline "$wf"
  kill -TERM "$witness_pid" 2>/dev/null || true
  reap "$witness_pid" "the witness tcpdump"
  witnessed=$(count_all "$TMP/$RUN.witness.pcap")
  all=$(count_all "$FILE")
  own=$(count_ssh "$FILE")
  log "  $own of $all packets in the file are tcp port 22 ($witnessed crossed $AG_IF meanwhile)"
  if [[ $wf == capd && $round == 1 ]]; then  # the same in every round but for pid and port
    local said
    said=$(grep -m1 -o 'exclud[^|]*' "$WRITER_ERR" || true)
    [[ -z $said ]] || NOTES+=("$RUN: capctl said: ${said:0:200}")
  fi
  tsv kind=idle "round=$round" "workflow=$wf" "idle_s=$IDLE_S" "own_ssh=$own" "packets=$all" \
    "witness_ssh=$witnessed" \
    "sshd_ns=${CPU[sshd]}" "ssh_ns=${CPU[ssh]}" "tcpdump_ns=${CPU[tcpdump]}" \
    "capd_ns=${CPU[capd]}" "capctl_ns=${CPU[capctl]}" "reader_ns=${CPU[reader]}"
  [[ $KEEP == 1 ]] || rm -f "$FILE" "$TMP/$RUN.witness.pcap"
}

# burst ROUND WORKFLOW: PACKETS frames captured with 'udp port UDP_PORT'.
burst() {
  local round=$1 wf=$2 in0 in1 sent got wall drops pps
  RUN=r$round-burst-$wf
  log "round $round: $wf workflow, $PACKETS x ${SIZE}B to udp port $UDP_PORT"
  start_pipeline "$wf" "udp port $UDP_PORT"
  sleep 0.5
  in0=$(udp_in)
  cpu_mark
  wall=$(send_burst)
  wait_quiet "$FILE" || NOTES+=("$RUN: the capture was still growing after 120 s")
  cpu_read
  in1=$(udp_in)
  stop_pipeline "$wf"
  sent=$((in1 - in0))
  got=$(count_all "$FILE")
  drops=$(drops_of "$wf" "$WRITER_ERR")
  pps=$(awk -v n="$sent" -v s="$wall" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  local outgoing
  outgoing=$(grep -o '[0-9]* packets outgoing' "$TMP/trafgen.log" | head -1 | awk '{ print $1 }')
  [[ ${outgoing:-$PACKETS} == "$sent" ]] ||
    NOTES+=("$RUN: trafgen sent ${outgoing:-?}, $sent reached the agent's UDP layer")
  log "  $got/$sent in the file, drops $drops, ~$pps pkt/s; CPU ms: sshd $((CPU[sshd] / 1000000))" \
    "ssh $((CPU[ssh] / 1000000)) tcpdump $((CPU[tcpdump] / 1000000)) capd $((CPU[capd] / 1000000))" \
    "capctl $((CPU[capctl] / 1000000)) (tshark $((CPU[reader] / 1000000)))"
  tsv kind=burst "round=$round" "workflow=$wf" "size=$SIZE" "sent=$sent" "received=$got" \
    "drops=$drops" "wall_s=$wall" "pps=$pps" "sshd_ns=${CPU[sshd]}" "ssh_ns=${CPU[ssh]}" \
    "tcpdump_ns=${CPU[tcpdump]}" "capd_ns=${CPU[capd]}" "capctl_ns=${CPU[capctl]}" \
    "reader_ns=${CPU[reader]}" "sshd_sys_ns=${SYS[sshd]}" "ssh_sys_ns=${SYS[ssh]}" \
    "tcpdump_sys_ns=${SYS[tcpdump]}" "capd_sys_ns=${SYS[capd]}" "capctl_sys_ns=${SYS[capctl]}"
  # ssh decrypts in user space: a burst in which it spent most of its time in the kernel is worth
  # a note (softirq work of the burst, charged to whatever runs on that CPU; bench/README.md).
  if ((CPU[ssh] > 50000000 && SYS[ssh] * 2 > CPU[ssh])); then
    NOTES+=("$RUN: ssh used $((CPU[ssh] / 1000000)) ms, $((100 * SYS[ssh] / CPU[ssh])) % of it in the kernel")
  fi
  [[ $KEEP == 1 ]] || rm -f "$FILE"
  alive "$CAPD_PID" || die "capd died during $RUN (see $OUT_DIR/logs/capd.log)"
}

# ------------------------------------------------------------------------------------------------
# Tables, from ssh.tsv.

# The awk preamble that splits a key=value line into f[].
# shellcheck disable=SC2016  # awk's fields, not the shell's
# The awk preamble that splits a key=value line into f[] (numbers as numbers).
AWK_FIELDS='{ delete f; for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v ~ /^-?[0-9]+(\.[0-9]+)?$/ ? v + 0 : v } }'

text_tables() {
  awk -F'\t' "$AWK_FIELDS"'
    function ms(ns) { return sprintf("%.1f", ns / 1e6) }
    function us(ns, n) { return n > 0 ? sprintf("%.2f", ns / 1e3 / n) : "-" }
    function cap(wf) { return wf == "tcpdump" ? f["tcpdump_ns"] : f["capd_ns"] }
    function total() { return f["sshd_ns"] + f["ssh_ns"] + cap(f["workflow"]) + f["capctl_ns"] }
    f["kind"] == "idle" {
      idle[++ni] = sprintf("%-5s %-8s %8s %8s %8s %8s %8s %9s %8s %10s %8s", f["round"], f["workflow"],
        f["own_ssh"], f["packets"], f["witness_ssh"], ms(f["sshd_ns"]), ms(f["ssh_ns"]), ms(cap(f["workflow"])),
        ms(f["capctl_ns"]), ms(total() / f["idle_s"]), ms(f["reader_ns"]))
    }
    f["kind"] == "burst" {
      n = f["sent"]
      burst[++nb] = sprintf("%-5s %-8s %8s %8s %7.2f %9s %7s %7s %7s %8s %7s %8s %8s %8s", f["round"],
        f["workflow"], n, f["received"], n > 0 ? 100 * f["received"] / n : 0, f["drops"], f["pps"],
        us(f["sshd_ns"], n), us(f["ssh_ns"], n), us(cap(f["workflow"]), n), us(f["capctl_ns"], n),
        us(total(), n), us(total(), f["received"]), us(f["reader_ns"], n))
    }
    END {
      print "idle: own SSH packets (tcp port 22) in the capture, all its packets, the tcp port 22 packets"
      print "that crossed IF meanwhile (witness), CPU ms over the capture, and the pipeline total per s"
      printf "%-5s %-8s %8s %8s %8s %8s %8s %9s %8s %10s %8s\n", "round", "workflow", "tcp/22", "packets",
        "witness", "sshd", "ssh", "capture", "capctl", "total/s", "tshark"
      for (i = 1; i <= ni; i++) print idle[i]
      print ""
      print "burst: packets in the file / sent, drops, and CPU us per packet sent (total/rcv: the"
      print "pipeline per packet received)"
      printf "%-5s %-8s %8s %8s %7s %9s %7s %7s %7s %8s %7s %8s %8s %8s\n", "round", "workflow", "sent",
        "received", "compl%", "drops", "pkt/s", "sshd", "ssh", "capture", "capctl", "total",
        "total/rcv", "tshark"
      for (i = 1; i <= nb; i++) print burst[i]
    }' "$OUT_DIR/ssh.tsv"
}

# summary_md: the goals table, medians over the rounds.
summary_md() {
  awk -F'\t' -v goal="$GOAL_SSH_CPU_RATIO" "$AWK_FIELDS"'
    function median(list,    a, n, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) a[i] += 0
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n == 0 ? "" : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
    }
    function fmt(f, v) { return v == "" ? "" : sprintf(f, v) }
    function range(list, f,    a, n, i, lo, hi) {
      n = split(list, a, " "); lo = hi = a[1] + 0
      for (i = 2; i <= n; i++) { if (a[i] + 0 < lo) lo = a[i] + 0; if (a[i] + 0 > hi) hi = a[i] + 0 }
      return n < 2 ? "" : sprintf(" (" f "–" f ")", lo, hi)
    }
    {
      wf = f["workflow"]; cap = wf == "tcpdump" ? f["tcpdump_ns"] : f["capd_ns"]
      tot = f["sshd_ns"] + f["ssh_ns"] + cap + f["capctl_ns"]
    }
    f["kind"] == "idle" { own[wf] = own[wf] " " f["own_ssh"]; if (f["own_ssh"] > maxown[wf]) maxown[wf] = f["own_ssh"]
                          witness[wf] = witness[wf] " " f["witness_ssh"]
                          idlecpu[wf] = idlecpu[wf] " " sprintf("%.1f", tot / 1e6 / f["idle_s"]) }
    f["kind"] == "burst" && f["sent"] > 0 {
      compl[wf] = compl[wf] " " sprintf("%.2f", 100 * f["received"] / f["sent"])
      cpu[wf] = cpu[wf] " " sprintf("%.2f", tot / 1e3 / f["sent"])
      if (f["received"] > 0) cpurcv[wf] = cpurcv[wf] " " sprintf("%.2f", tot / 1e3 / f["received"])
      part["sshd", wf] = part["sshd", wf] " " f["sshd_ns"] / 1e3 / f["sent"]
      part["ssh", wf] = part["ssh", wf] " " f["ssh_ns"] / 1e3 / f["sent"]
      part["cap", wf] = part["cap", wf] " " cap / 1e3 / f["sent"]
      part["capctl", wf] = part["capctl", wf] " " f["capctl_ns"] / 1e3 / f["sent"]
      drops[wf] = drops[wf] (drops[wf] == "" ? "" : ", ") f["drops"]
    }
    END {
      print "| figure | tcpdump workflow | capd workflow | goal | met |"
      print "|---|---|---|---|---|"
      printf "| own SSH packets (tcp port 22) in an idle capture, median (min–max) | %s%s | %s%s | 0 | %s |\n",
        fmt("%.10g", median(own["tcpdump"])), range(own["tcpdump"], "%d"), fmt("%.10g", median(own["capd"])), range(own["capd"], "%d"),
        own["capd"] == "" ? "-" : (maxown["capd"] + 0 == 0 ? "yes" : "no")
      printf "| tcp port 22 packets that crossed IF meanwhile (witness), median | %s | %s | - | - |\n",
        fmt("%.10g", median(witness["tcpdump"])), fmt("%.10g", median(witness["capd"]))
      ct = fmt("%.2f", median(compl["tcpdump"])); cc = fmt("%.2f", median(compl["capd"]))
      printf "| burst completeness %%, median (min–max) | %s%s | %s%s | >= tcpdump workflow | %s |\n",
        ct, range(compl["tcpdump"], "%.2f"), cc, range(compl["capd"], "%.2f"),
        (ct == "" || cc == "") ? "-" : (cc + 0 >= ct + 0 ? "yes" : "no")
      printf "| drops the tools report, per round | %s | %s | - | - |\n", drops["tcpdump"], drops["capd"]
      pt = fmt("%.2f", median(cpu["tcpdump"])); pc = fmt("%.2f", median(cpu["capd"]))
      ratio = (pt != "" && pc != "" && pt + 0 > 0) ? sprintf("%.2f", pc / pt) : "-"
      printf "| pipeline CPU us per packet, median (min–max) | %s%s | %s%s | <= %s x tcpdump workflow | %s |\n",
        pt, range(cpu["tcpdump"], "%.2f"), pc, range(cpu["capd"], "%.2f"), goal,
        ratio == "-" ? "-" : (ratio + 0 <= goal + 0 ? "yes" : "no") " (ratio " ratio ")"
      qt = fmt("%.2f", median(cpurcv["tcpdump"])); qc = fmt("%.2f", median(cpurcv["capd"]))
      printf "| pipeline CPU us per packet received (where drops flatter the per-sent figure), median | %s%s | %s%s | - | (ratio %s) |\n",
        qt, range(cpurcv["tcpdump"], "%.2f"), qc, range(cpurcv["capd"], "%.2f"),
        (qt != "" && qc != "" && qt + 0 > 0) ? sprintf("%.2f", qc / qt) : "-"
      printf "| of which sshd / ssh / tcpdump or capd / capctl, us per packet (median) | %.2f / %.2f / %.2f / - | %.2f / %.2f / %.2f / %.2f | - | - |\n",
        median(part["sshd", "tcpdump"]), median(part["ssh", "tcpdump"]), median(part["cap", "tcpdump"]),
        median(part["sshd", "capd"]), median(part["ssh", "capd"]), median(part["cap", "capd"]),
        median(part["capctl", "capd"])
      printf "| pipeline CPU ms per second on the idle link (median) | %s | %s | - | - |\n",
        fmt("%.1f", median(idlecpu["tcpdump"])), fmt("%.1f", median(idlecpu["capd"]))
    }' "$OUT_DIR/ssh.tsv"
}

section_md() {
  local rev dirty=""
  rev=$(git -C "$BENCH_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -z $(git -C "$BENCH_DIR" status --porcelain --untracked-files=no 2>/dev/null) ]] ||
    dirty=" (the work tree had uncommitted changes)"
  echo "<!-- bench/ssh.sh: begin (replaced by each run of bench/ssh.sh or bench/all.sh) -->"
  echo "## Through SSH: tcpdump into tshark vs capd into tshark (bench/ssh.sh)"
  echo
  echo "- date: $(date -u '+%F %T UTC'); commit: $rev$dirty"
  echo "- binaries (modified): capd $BIN_TIMES"
  echo "- command: \`$COMMAND\`"
  echo "- load average (1/5/15 min): $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo
  echo "tcpdump workflow: \`ssh root@AGENT 'tcpdump -U -i IF -w - [udp port $UDP_PORT]' > FIFO\`;"
  echo "capd workflow: \`capctl stream --agent ssh://root@AGENT/IF --fifo FIFO [-f 'udp port $UDP_PORT']\`"
  echo "with capd started as \`capd --user $CAPD_USER --listen 127.0.0.1:$PORT --no-metadata\`;"
  echo "both read by \`tshark -i FIFO -w FILE\`, through a real sshd, capturing on the interface the"
  echo "SSH connection crosses. Idle: ${IDLE_S} s, no filter, no other traffic. Burst: $PACKETS x ${SIZE} B"
  echo "UDP (trafgen, rate ${RATE:-as fast as it goes}); sent = datagrams that reached the agent's UDP"
  echo "layer. CPU = sshd (all its processes) + ssh + tcpdump or capd (+ children) + capctl, from"
  echo "cgroups, 0.5 s before the burst until the file is unchanged for ${SETTLE_S} s; tshark apart."
  echo "Rounds: $ROUNDS, the order of the workflows alternating from round to round."
  echo
  summary_md
  echo
  echo '```'
  text_tables
  echo '```'
  if ((${#NOTES[@]} > 0)); then
    echo
    printf -- '- note: %s\n' "${NOTES[@]}"
  fi
  echo "<!-- bench/ssh.sh: end -->"
}

# ------------------------------------------------------------------------------------------------
main() {
  COMMAND="IDLE_S=$IDLE_S PACKETS=$PACKETS SIZE=$SIZE RATE=$RATE ROUNDS=$ROUNDS SETTLE_S=$SETTLE_S"
  COMMAND+=" bench/ssh.sh $BUILD_DIR"
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  # Now, not at the end: a newer build may replace the files while this runs.
  BIN_TIMES="$(date -u -r "$CAPD" '+%F %T UTC'), capctl $(date -u -r "$CAPCTL" '+%F %T UTC')"
  cg_setup
  setup_network
  setup_ssh
  start_capd
  write_trafgen_config
  log "agent $AG_NS ($AG_IF $AG_IP: sshd, capd pid $CAPD_PID as $CAPD_USER), client $CL_NS" \
    "($CL_IF $CL_IP); CPU from cgroup $CG_KIND $CG_BASE"
  local line
  while IFS= read -r line; do  # what capd says at start-up about a helper or its privileges
    NOTES+=("capd at start-up: ${line:0:240}")
  done < <(grep -iE 'helper|peers|warn|error' "$OUT_DIR/logs/capd.log" | head -3)
  sleep 1

  local r wf order
  for ((r = 1; r <= ROUNDS; r++)); do
    order="tcpdump capd"
    ((r % 2 == 1)) || order="capd tcpdump"
    for wf in $order; do idle "$r" "$wf"; done
    for wf in $order; do burst "$r" "$wf"; done
  done

  text_tables >"$OUT_DIR/ssh.txt"
  section_md >"$OUT_DIR/ssh.md"
  echo
  cat "$OUT_DIR/ssh.md"
  if [[ -n $RESULTS ]]; then
    update_results "$RESULTS" "$OUT_DIR/ssh.md" ssh.sh
    log "updated the section in $RESULTS"
  fi
  log "results in $OUT_DIR (ssh.tsv, ssh.txt, ssh.md, logs/)"
}

main

#!/usr/bin/env bash
# capd.service's SystemCallFilter and RestrictAddressFamilies hold every call and socket family
# capd uses. systemd cannot run here, so capd runs as systemd would start it (an unprivileged
# user with the unit's four capabilities as ambient capabilities, no_new_privs, `--user`
# trimming), under strace -f (so its helper capd-peers too), while capctl lists interfaces and
# captures a packet on lo; every system call seen must be in the unit's filter as systemd-analyze
# expands it. Also: once capd listens, capd holds CAP_NET_RAW/CAP_NET_ADMIN only, its child
# capd-peers CAP_SYS_PTRACE/CAP_DAC_READ_SEARCH only and its child capd-filters (which forks a
# child per filter compile, traced too) none, none with ambient capabilities.
set -euo pipefail
unit=$1 capd=$2 capctl=$3
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root (capture, setpriv)"
  exit 77
fi
for tool in strace setpriv systemd-analyze python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool not found (Debian: strace, util-linux, systemd, python3)"
    exit 77
  fi
done
work=$(mktemp -d)
tracer_pid=""
capd_pid=""
cleanup() {
  if [ -n "$capd_pid" ]; then kill "$capd_pid" 2>/dev/null || true; fi
  if [ -n "$tracer_pid" ]; then kill "$tracer_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
chmod 0755 "$work"
user=$(id -nu 65534)
# strace writes the trace as that user.
touch "$work/trace"
chown 65534 "$work/trace"

mkfifo "$work/capd.err"
# The unit's AmbientCapabilities= and CapabilityBoundingSet=.
caps=-all,+net_raw,+net_admin,+sys_ptrace,+dac_read_search
setpriv --reuid 65534 --regid 65534 --clear-groups --no-new-privs \
  --inh-caps="$caps" --ambient-caps="$caps" --bounding-set="$caps" \
  strace -f -qq -o "$work/trace" "$capd" --user "$user" --listen 127.0.0.1:0 --name syscalls \
  2>"$work/capd.err" &
tracer_pid=$!
exec {log}<"$work/capd.err"
port=""
while IFS= read -r -t 30 -u "$log" line; do
  echo "capd: $line"
  if [[ $line =~ listening\ on\ 127\.0\.0\.1:([0-9]+) ]]; then
    port=${BASH_REMATCH[1]}
    break
  fi
done
if [ -z "$port" ]; then
  echo "FAIL: capd did not start as $user with ambient capabilities"
  exit 1
fi
cat <&"$log" >"$work/capd.log" &
capd_pid=$(pgrep -P "$tracer_pid")

# What each process kept (/proc/PID/status, hex masks; capability numbers from
# linux/capability.h: DAC_READ_SEARCH 2, NET_ADMIN 12, NET_RAW 13, SYS_PTRACE 19).
status_field() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
check_process() { # PID NAME EXPECTED_PERMITTED_MASK
  local prm amb nnp
  prm=$(status_field "$1" CapPrm) amb=$(status_field "$1" CapAmb)
  nnp=$(status_field "$1" NoNewPrivs)
  if ((16#$prm != $3)); then
    printf 'FAIL: %s (pid %s) has permitted capabilities %s, expected %016x\n' "$2" "$1" "$prm" "$3"
    exit 1
  fi
  if ((16#$amb != 0)) || [ "$nnp" != 1 ]; then
    echo "FAIL: $2 (pid $1) has ambient capabilities $amb or no no_new_privs ($nnp)"
    exit 1
  fi
}
check_process "$capd_pid" capd $(((1 << 12) | (1 << 13)))
helpers=$(pgrep -P "$capd_pid" || true)
if [ "$(wc -w <<<"$helpers")" -ne 2 ]; then
  echo "FAIL: capd (pid $capd_pid) has not exactly two children (capd-peers, capd-filters):" \
    "'${helpers//$'\n'/ }'"
  exit 1
fi
peers="" filters=""
for helper in $helpers; do
  case $(cat "/proc/$helper/comm") in
    capd-peers) peers=$helper ;;
    capd-filters) filters=$helper ;;
  esac
done
if [ -z "$peers" ] || [ -z "$filters" ]; then
  echo "FAIL: capd's children are not capd-peers and capd-filters: '${helpers//$'\n'/ }'"
  exit 1
fi
check_process "$peers" capd-peers $(((1 << 2) | (1 << 19)))
check_process "$filters" capd-filters 0
echo "capd keeps cap_net_raw,cap_net_admin; capd-peers (pid $peers) the other two;" \
  "capd-filters (pid $filters) none"

"$capctl" interfaces --agent "127.0.0.1:$port" >/dev/null
udp_port=$((40000 + RANDOM % 20000))
"$capctl" stream --agent "127.0.0.1:$port" -i lo -c 1 --duration 20 -w "$work/one.pcapng" \
  "udp port $udp_port" 2>"$work/capctl.err" &
capctl_pid=$!
while kill -0 "$capctl_pid" 2>/dev/null; do
  printf 'capd' >"/dev/udp/127.0.0.1/$udp_port" 2>/dev/null || true
  sleep 0.1
done
wait "$capctl_pid"
grep -q '1 packets written' "$work/capctl.err"
kill -TERM "$capd_pid"
wait "$tracer_pid"
tracer_pid=""
capd_pid=""

python3 - "$unit" "$work/trace" <<'PY'
import re, subprocess, sys

unit, trace = sys.argv[1], sys.argv[2]
listing = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                         check=True).stdout
groups, current = {}, None
for line in listing.splitlines():
    if line.startswith("@"):
        current = groups.setdefault(line.split()[0], set())
    elif current is not None and line.strip() and not line.strip().startswith("#"):
        current.add(line.split()[0])

def expand(name, seen=()):
    if not name.startswith("@"):
        return {name}
    out = set()
    for member in groups.get(name, ()):
        if member not in seen:
            out |= expand(member, seen + (name,))
    return out

allowed, denied, families = set(), set(), set()
for line in open(unit):
    key, _, value = line.strip().partition("=")
    if key == "SystemCallFilter":
        target = denied if value.startswith("~") else allowed
        for item in value.lstrip("~").split():
            target |= expand(item)
    elif key == "RestrictAddressFamilies":
        families |= set(value.split())
allowed -= denied

used, used_families = {}, set()
for line in open(trace):
    match = re.match(r"^\d+\s+([a-z0-9_]+)\(", line)
    if match:
        used[match.group(1)] = used.get(match.group(1), 0) + 1
    family = re.search(r"\bsocket\((AF_[A-Z0-9]+)", line)
    if family:
        used_families.add(family.group(1))
outside = sorted(set(used) - allowed)
# libpcap's pcap_findalldevs probes for Bluetooth; the unit refuses it (EAFNOSUPPORT), which
# libpcap takes as "no Bluetooth devices" (pcap-bt-linux.c, libpcap 1.10).
refused_on_purpose = {"AF_BLUETOOTH"}
bad_families = sorted(used_families - families - refused_on_purpose)
print(f"{len(used)} distinct system calls, {sum(used.values())} in all; families {sorted(used_families)}")
if outside:
    print("FAIL: calls outside SystemCallFilter:", ", ".join(f"{n} ({used[n]}x)" for n in outside))
if bad_families:
    print("FAIL: socket families outside RestrictAddressFamilies:", ", ".join(bad_families))
if not used or outside or bad_families:
    sys.exit(1)
print("PASS: every call is in the unit's SystemCallFilter, every socket family allowed")
PY

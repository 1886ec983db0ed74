#!/usr/bin/env bash
# The bundle needs nothing from the host: unpacked alone into an empty directory and chrooted
# into, capd and capctl run through the bundle's loader, capd serves capctl and captures on lo.
# Nothing is mounted (no /proc, /sys or /dev in the root): capd does not need them to start,
# list interfaces or capture (it then marks no default-route interface). There is no /etc/passwd
# or /etc/group either: capd serves capctl because capctl runs as root (uid 0 needs no lookup,
# and the missing default group capd is no reason not to start), and its helper capd-peers,
# which has no /proc to read here, cannot stop it from serving.
set -euo pipefail
bundle=$1 version=$2
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root (chroot, capture)"
  exit 77
fi
root=$(mktemp -d)    # the empty root: the bundle's files and nothing else
outside=$(mktemp -d) # the test's own files
capd_pid=""
cleanup() {
  if [ -n "$capd_pid" ]; then kill "$capd_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$root" "$outside"
}
trap cleanup EXIT

tar -xzf "$bundle" -C "$root" --strip-components=1
for host_thing in bin/sh usr etc proc dev sys lib64 tmp; do
  if [ -e "$root/$host_thing" ]; then
    echo "FAIL: the root is not empty of the host: $host_thing exists"
    exit 1
  fi
done
echo "root $root: $(cd "$root" && find . -type f | wc -l) files, $(du -sh "$root" | cut -f1)"
in_root() { chroot "$root" /lib/ld-linux-x86-64.so.2 --library-path /lib "$@"; }

in_root /libexec/capd --version | grep -qx "capd $version"
in_root /libexec/capctl --version | grep -qx "capctl $version"
echo "PASS: capd and capctl --version in the empty root"

# capd's log goes through a FIFO: the test reads it until capd says where it listens (port 0:
# the kernel picks a free one), then a background cat keeps draining it.
mkfifo "$outside/capd.err"
# chroot execs the loader, which becomes capd: $! is capd's own pid.
chroot "$root" /lib/ld-linux-x86-64.so.2 --library-path /lib /libexec/capd --listen 127.0.0.1:0 \
  --name chroot-test 2>"$outside/capd.err" &
capd_pid=$!
exec {log}<"$outside/capd.err"
port=""
while IFS= read -r -t 20 -u "$log" line; do
  echo "capd: $line"
  if [[ $line =~ listening\ on\ 127\.0\.0\.1:([0-9]+) ]]; then
    port=${BASH_REMATCH[1]}
    break
  fi
done
if [ -z "$port" ]; then
  echo "FAIL: capd did not start in the empty root"
  exit 1
fi
cat <&"$log" >"$outside/capd.log" &

interfaces=$(in_root /libexec/capctl interfaces --agent "127.0.0.1:$port")
echo "$interfaces"
grep -q "agent chroot-test (capd $version)" <<<"$interfaces"
grep -Eq '^ +lo +up' <<<"$interfaces"
echo "PASS: capctl interfaces against capd, both in the empty root"

# One captured packet end to end: UDP to a port nobody uses, sent until capctl has it.
udp_port=$((40000 + RANDOM % 20000))
in_root /libexec/capctl stream --agent "127.0.0.1:$port" -i lo -c 1 --duration 20 \
  -w /capture.pcapng "udp port $udp_port" 2>"$outside/capctl.err" &
capctl_pid=$!
while kill -0 "$capctl_pid" 2>/dev/null; do
  printf 'capd' >"/dev/udp/127.0.0.1/$udp_port" 2>/dev/null || true
  sleep 0.1
done
wait "$capctl_pid"
cat "$outside/capctl.err"
grep -q '1 packets written' "$outside/capctl.err"
[ "$(head -c 4 "$root/capture.pcapng" | od -An -tx1 | tr -d ' \n')" = 0a0d0d0a ]
echo "PASS: capctl stream captured on lo through capd in the empty root"

kill -TERM "$capd_pid"
status=0
wait "$capd_pid" || status=$?
capd_pid=""
if [ "$status" -ne 0 ]; then
  cat "$outside/capd.log"
  echo "FAIL: capd exited $status on SIGTERM"
  exit 1
fi
echo "PASS: capd stopped cleanly"

# The launchers (they need a /bin/sh, so they run outside the empty root), also through a symlink
# as install.sh makes them.
"$root/bin/capd" --version | grep -qx "capd $version"
ln -s "$root/bin/capctl" "$outside/capctl"
"$outside/capctl" --version | grep -qx "capctl $version"
echo "PASS: bin/capd and bin/capctl launchers (also through a symlink)"

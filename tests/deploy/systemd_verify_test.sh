#!/usr/bin/env bash
# systemd-analyze verify reports nothing for capd.service, and the hardening it promises is there.
# verify insists that ExecStart's program exists: the copy checked here points at the built capd,
# the rest of the file is byte for byte the shipped unit.
set -euo pipefail
unit=$1 capd=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze not found (Debian: systemd)"
  exit 77
fi
failures=0
# The four capabilities, exactly: capture (NET_RAW, NET_ADMIN) for capd, reading other users'
# /proc/PID/fd (SYS_PTRACE, DAC_READ_SEARCH) for its helper capd-peers.
caps='CAP_NET_RAW CAP_NET_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH'
# shellcheck disable=SC2016 # $CAPD_OPTS is literal text in the unit
for line in 'User=capd' 'Group=capd' "AmbientCapabilities=$caps" "CapabilityBoundingSet=$caps" \
  'NoNewPrivileges=yes' 'ProtectSystem=strict' \
  'ProtectHome=yes' 'PrivateTmp=yes' \
  'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_PACKET AF_NETLINK' \
  'SystemCallFilter=@system-service' 'StateDirectory=capd' 'Restart=on-failure' \
  'EnvironmentFile=-/etc/capd/capd.conf' 'ExecStart=/usr/bin/capd --user capd $CAPD_OPTS'; do
  if ! grep -qxF "$line" "$unit"; then
    echo "FAIL: $unit has no line '$line'"
    failures=$((failures + 1))
  fi
done
# ...and no other line grants one (a second AmbientCapabilities= line adds to the first).
for key in AmbientCapabilities CapabilityBoundingSet; do
  if [ "$(grep -c "^$key=" "$unit")" -ne 1 ]; then
    echo "FAIL: $unit has more than one $key= line"
    failures=$((failures + 1))
  fi
done
if grep -q '^ProtectProc=invisible' "$unit"; then
  echo "FAIL: ProtectProc=invisible hides the /proc/PID/fd that capd-peers reads"
  failures=$((failures + 1))
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|^ExecStart=/usr/bin/capd |ExecStart=$capd |" "$unit" >"$work/capd.service"
if output=$(systemd-analyze verify "$work/capd.service" 2>&1); then status=0; else status=$?; fi
if [ -n "$output" ] || [ "$status" -ne 0 ]; then
  echo "FAIL: systemd-analyze verify (exit $status):"
  echo "$output"
  failures=$((failures + 1))
fi
if [ "$failures" -ne 0 ]; then exit 1; fi
echo "PASS: systemd-analyze verify reports nothing; hardening lines present"

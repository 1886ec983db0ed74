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
# shellcheck disable=SC2016 # $CAPD_OPTS is literal text in the unit
for line in 'User=capd' 'Group=capd' 'AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN' \
  'CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
  'ProtectHome=yes' 'PrivateTmp=yes' \
  'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_PACKET AF_NETLINK' \
  'SystemCallFilter=@system-service' 'StateDirectory=capd' 'Restart=on-failure' \
  'EnvironmentFile=-/etc/capd/capd.conf' 'ExecStart=/usr/bin/capd --user capd $CAPD_OPTS'; do
  if ! grep -qxF "$line" "$unit"; then
    echo "FAIL: $unit has no line '$line'"
    failures=$((failures + 1))
  fi
done
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

#!/usr/bin/env bash
# install.sh against a temporary root: installs, installs again (same result, config kept),
# --uninstall keeps config, recordings and user, --uninstall --purge leaves the root as it was.
set -euo pipefail
bundle=$1
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root (install.sh makes a user and chowns /var/lib/capd)"
  exit 77
fi
if ! command -v useradd >/dev/null; then
  echo "SKIP: useradd not found"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bundle" "$work/root"
tar -xzf "$bundle" -C "$work/bundle" --strip-components=1
root=$work/root

# A small system: the folders install.sh expects to exist, and account files.
mkdir -p "$root"/{etc/systemd/system,usr/local/bin,usr/sbin,var/lib,opt}
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
echo 'root:*:19000:0:99999:7:::' >"$root/etc/shadow"
echo 'root:*::' >"$root/etc/gshadow"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"

# The tree as paths, types, modes, owners and content hashes. shadow's tools keep a backup
# (passwd-, group-, ...) of each file they change: ignored.
snapshot() {
  (cd "$root" && find . -path './etc/*-' -prune -o -printf '%p %y %m %u:%g %l\n' | sort)
  (cd "$root" && find . -type f ! -name '*-' -exec sha256sum {} + | sort -k2)
}
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
expect() { # DESCRIPTION COMMAND...
  local what=$1
  shift
  "$@" || fail "$what"
}

before=$(snapshot)
sh "$work/bundle/install.sh" --root "$root" | tee "$work/install.out"
expect "says how to grant access (group capd)" grep -q 'usermod -aG capd USER' "$work/install.out"
expect "capd installed" test -x "$root/opt/capd/libexec/capd"
expect "loader installed" test -x "$root/opt/capd/lib/ld-linux-x86-64.so.2"
expect "capctl launcher" test -x "$root/opt/capd/bin/capctl"
expect "symlink" test "$(readlink "$root/usr/local/bin/capd")" = /opt/capd/bin/capd
# shellcheck disable=SC2016 # $CAPD_OPTS is literal text in the unit
expect "unit ExecStart" grep -qx 'ExecStart=/opt/capd/bin/capd --user capd $CAPD_OPTS' \
  "$root/etc/systemd/system/capd.service"
expect "unit enabled" test "$(readlink "$root/etc/systemd/system/multi-user.target.wants/capd.service")" \
  = /etc/systemd/system/capd.service
expect "config" grep -q '^CAPD_OPTS=' "$root/etc/capd/capd.conf"
expect "user" grep -q '^capd:x:[0-9]*:[0-9]*:.*:/var/lib/capd:' "$root/etc/passwd"
expect "group" grep -q '^capd:x:' "$root/etc/group"
uid=$(awk -F: '$1 == "capd" { print $3 }' "$root/etc/passwd")
expect "state dir owner and mode" test "$(stat -c '%u %a' "$root/var/lib/capd")" = "$uid 750"
expect "installed launcher runs" "$root/opt/capd/bin/capd" --version
expect "no staging left" test -z "$(find "$root/opt" -maxdepth 1 -name 'capd.*')"

echo 'CAPD_OPTS="--listen 127.0.0.1:50099"' >"$root/etc/capd/capd.conf"
touch "$root/var/lib/capd/recording-1.pcapng"
first=$(snapshot)
sh "$work/bundle/install.sh" --root "$root"
second=$(snapshot)
if [ "$first" != "$second" ]; then
  fail "a second install changed the tree:"
  diff <(echo "$first") <(echo "$second") || true
fi

sh "$root/opt/capd/install.sh" --root "$root" --uninstall
expect "program removed" test ! -e "$root/opt/capd"
expect "unit removed" test ! -e "$root/etc/systemd/system/capd.service"
expect "unit disabled" test ! -L "$root/etc/systemd/system/multi-user.target.wants/capd.service"
expect "symlinks removed" test ! -L "$root/usr/local/bin/capctl"
expect "config kept" grep -q 50099 "$root/etc/capd/capd.conf"
expect "recordings kept" test -f "$root/var/lib/capd/recording-1.pcapng"
expect "user kept" grep -q '^capd:' "$root/etc/passwd"

sh "$work/bundle/install.sh" --root "$root" --uninstall --purge
after=$(snapshot)
if [ "$before" != "$after" ]; then
  fail "--uninstall --purge left the root different from before the install:"
  diff <(echo "$before") <(echo "$after") || true
fi

# The SSM Distributor package: a zip with install.sh at its top and a manifest holding the zip's
# SHA-256. Unpacked the way a zip tool may do it, without file modes, it still installs.
distributor=$(dirname "$bundle")/$(basename "$bundle" -linux-x86_64.tar.gz)-distributor
zip=$distributor/$(basename "$bundle" .tar.gz).zip
expect "manifest names the zip's sha256" \
  grep -q "\"sha256\": \"$(sha256sum "$zip" | cut -d' ' -f1)\"" "$distributor/manifest.json"
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" \
  "$work/zip"
expect "zip has install.sh and uninstall.sh at its top" \
  test -f "$work/zip/install.sh" -a -f "$work/zip/uninstall.sh"
(cd "$work/zip" && sh install.sh --root "$root" --no-start)
expect "installed from the zip, modes set" "$root/opt/capd/bin/capctl" --version
(cd "$work/zip" && sh uninstall.sh --root "$root" --purge)
after=$(snapshot)
if [ "$before" != "$after" ]; then
  fail "the Distributor zip's uninstall.sh --purge left the root different:"
  diff <(echo "$before") <(echo "$after") || true
fi

if [ "$failures" -ne 0 ]; then exit 1; fi
echo "PASS: install, reinstall (idempotent), uninstall (keeps config/recordings/user), purge (nothing left), Distributor zip"

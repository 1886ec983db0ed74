#!/usr/bin/env bash
# The .deb holds what issue 6 lists, with the right modes, control fields and maintainer scripts.
set -euo pipefail
deb_dir=$1 version=$2 deploy=$3
if ! command -v dpkg-deb >/dev/null; then
  echo "SKIP: dpkg-deb not found"
  exit 77
fi
deb=$(ls "$deb_dir"/capd_"$version"_amd64.deb)
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

contents=$(dpkg-deb -c "$deb")
echo "$contents"
expect_entry() { # MODE PATH
  if ! grep -Eq "^$1 root/root +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" <<<"$contents"; then
    fail "no $2 with mode $1 owned by root"
  fi
}
expect_entry -rwxr-xr-x usr/bin/capd
expect_entry -rwxr-xr-x usr/bin/capctl
expect_entry -rwxr-xr-x usr/bin/capd-upload
expect_entry -rw-r--r-- lib/systemd/system/capd.service
expect_entry -rw-r--r-- lib/systemd/system/capd-upload.service
expect_entry -rw-r--r-- etc/capd/capd.conf
expect_entry -rw-r--r-- etc/capd/capd-upload.conf
if grep -Eq '\./(usr/)?(lib|share)/.*\.(a|h|so)$' <<<"$contents"; then fail "development files in the package"; fi

info=$(dpkg-deb -I "$deb")
echo "$info"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = capd ] || fail "Package is $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version is $(field Version)"
[ "$(field Architecture)" = amd64 ] || fail "Architecture is $(field Architecture)"
depends=$(field Depends)
for dependency in adduser libc6 libpcap0.8 libcap2 'libgrpc\+\+1.51' libspdlog; do
  grep -Eq "(^|, )${dependency}" <<<"$depends" || fail "Depends lacks $dependency: $depends"
done

control=$(mktemp -d)
trap 'rm -rf "$control"' EXIT
dpkg-deb -e "$deb" "$control/DEBIAN"
dpkg-deb -x "$deb" "$control/root"
grep -qx /etc/capd/capd.conf "$control/DEBIAN/conffiles" || fail "capd.conf is not a conffile"
grep -qx /etc/capd/capd-upload.conf "$control/DEBIAN/conffiles" || fail "capd-upload.conf is not a conffile"
for script in postinst prerm postrm; do
  [ -x "$control/DEBIAN/$script" ] || fail "no executable $script"
  cmp -s "$control/DEBIAN/$script" "$deploy/debian/$script" || fail "$script differs from deploy/debian"
done
grep -q 'adduser --system --group' "$control/DEBIAN/postinst" || fail "postinst makes no system user"
grep -q '/var/lib/capd' "$control/DEBIAN/postinst" || fail "postinst makes no /var/lib/capd"
grep -q 'usermod -aG capd USER' "$control/DEBIAN/postinst" || fail "postinst does not say how to grant access"
grep -q 'systemctl stop capd.service' "$control/DEBIAN/prerm" || fail "prerm does not stop capd"
# Purge, and only purge, deletes the recordings.
awk '/^if \[ "\$1" = purge \]/,/^fi/' "$control/DEBIAN/postrm" | grep -q 'rm -rf /var/lib/capd' ||
  fail "postrm does not remove /var/lib/capd on purge"
[ "$(grep -c 'rm -rf /var/lib/capd' "$control/DEBIAN/postrm")" -eq 1 ] ||
  fail "postrm removes /var/lib/capd outside purge"
cmp -s "$control/root/lib/systemd/system/capd.service" "$deploy/systemd/capd.service" ||
  fail "the packaged unit differs from deploy/systemd/capd.service"
cmp -s "$control/root/etc/capd/capd.conf" "$deploy/capd.conf" || fail "packaged capd.conf differs"
cmp -s "$control/root/lib/systemd/system/capd-upload.service" "$deploy/systemd/capd-upload.service" ||
  fail "the packaged unit differs from deploy/systemd/capd-upload.service"
grep -qx 'CapabilityBoundingSet=' "$control/root/lib/systemd/system/capd-upload.service" ||
  fail "capd-upload.service keeps capabilities"
"$control/root/usr/bin/capd-upload" --help | grep -q -- '--once' || fail "packaged capd-upload --help"
"$control/root/usr/bin/capd" --version | grep -qx "capd $version" || fail "packaged capd --version"
"$control/root/usr/bin/capctl" --version | grep -qx "capctl $version" || fail "packaged capctl --version"

if [ "$failures" -ne 0 ]; then exit 1; fi
echo "PASS: $(basename "$deb") ($(stat -c %s "$deb") bytes)"

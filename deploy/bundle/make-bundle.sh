#!/usr/bin/env bash
# Makes the self-contained bundle (run by the `bundle` target, see deploy/CMakeLists.txt):
#   OUT_DIR/capd-VERSION-linux-x86_64.tar.gz      bin/ launchers, libexec/ the binaries, lib/ every
#                                                 shared library ldd names plus the loader, share/
#                                                 unit and config, install.sh, uninstall.sh, README
#   OUT_DIR/capd-VERSION-distributor/             the same files as a zip with install.sh at its
#                                                 top (what SSM Distributor runs) and manifest.json
# A fully static link is not possible with Debian's archives (libpcap.a wants libdbus and
# libsystemd, which ship no .a), so the bundle carries the shared libraries and starts the
# binaries through its own ld-linux: nothing is taken from the host, whatever its glibc.
set -euo pipefail

if [ $# -ne 6 ]; then
  echo "usage: $0 OUT_DIR VERSION CAPD CAPCTL DEPLOY_SOURCE_DIR CMAKE" >&2
  exit 2
fi
out_dir=$1 version=$2 capd=$3 capctl=$4 deploy=$5 cmake=$6
name="capd-${version}-linux-x86_64"
work="${out_dir}/bundle-staging"
root="${work}/${name}"

rm -rf "$work"
mkdir -p "$root/bin" "$root/libexec" "$root/lib" "$root/share"

for program in capd capctl; do
  if [ "$program" = capd ]; then binary=$capd; else binary=$capctl; fi
  # Debian's libraries are stripped already; our own binaries carry a symbol table.
  strip --strip-unneeded -o "$root/libexec/$program" "$binary"
  sed "s/@PROGRAM@/${program}/g" "$deploy/bundle/launcher.sh.in" >"$root/bin/$program"
  chmod 0755 "$root/bin/$program" "$root/libexec/$program"
done

# ldd lines: "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" and, for the loader,
# "/lib64/ld-linux-x86-64.so.2 (0x...)". Each library is copied (symlinks followed) under the
# name the binaries ask for. A library ldd cannot find fails the bundle here, not on a host.
libraries=$(ldd "$capd" "$capctl" | awk '
  /not found/ { print "MISSING " $1; next }
  $2 == "=>" && $3 ~ /^\// { print $1 " " $3; next }
  $1 ~ /^\/.*ld-linux/ { n = split($1, part, "/"); print part[n] " " $1 }' | sort -u)
if grep -q '^MISSING' <<<"$libraries"; then
  echo "make-bundle: ldd cannot find: $(grep '^MISSING' <<<"$libraries" | cut -d' ' -f2 | xargs)" >&2
  exit 1
fi
loader_found=no
while read -r soname path; do
  cp -L "$path" "$root/lib/$soname"
  chmod 0644 "$root/lib/$soname"
  if [ "$soname" = ld-linux-x86-64.so.2 ]; then loader_found=yes; fi
done <<<"$libraries"
if [ "$loader_found" != yes ]; then
  echo "make-bundle: ldd named no ld-linux-x86-64.so.2 (not an x86_64 glibc build?)" >&2
  exit 1
fi
chmod 0755 "$root/lib/ld-linux-x86-64.so.2"

cp "$deploy/systemd/capd.service" "$deploy/capd.conf" "$root/share/"
cp "$deploy/bundle/install.sh" "$deploy/bundle/uninstall.sh" "$root/"
cp "$deploy/bundle/README.md" "$root/README.md"
chmod 0755 "$root/install.sh" "$root/uninstall.sh"
chmod 0644 "$root/share/"* "$root/README.md"
echo "$version" >"$root/VERSION"

# Same bytes for the same inputs: sorted names, fixed owner and time.
tarball="${out_dir}/${name}.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf - "$name" |
  gzip -n -6 >"${tarball}.tmp"
mv "${tarball}.tmp" "$tarball"

# SSM Distributor: a zip per platform with install.sh and uninstall.sh at its top, and a
# manifest naming each zip with its sha256 (Distributor checks it before running install.sh).
distributor="${out_dir}/capd-${version}-distributor"
rm -rf "$distributor"
mkdir -p "$distributor"
zip_name="${name}.zip"
(cd "$root" && "$cmake" -E tar cf "${distributor}/${zip_name}" --format=zip --mtime=1980-01-01 -- \
  README.md VERSION bin install.sh lib libexec share uninstall.sh)
zip_sha256=$(sha256sum "${distributor}/${zip_name}" | cut -d' ' -f1)
sed -e "s/@VERSION@/${version}/g" -e "s/@ZIP@/${zip_name}/g" -e "s/@SHA256@/${zip_sha256}/g" \
  "$deploy/ssm/distributor/manifest.json" >"${distributor}/manifest.json"

rm -rf "$work"
size=$(du -k "$tarball" | cut -f1)
echo "make-bundle: ${tarball} (${size} KiB), ${distributor}/{manifest.json,${zip_name}}"

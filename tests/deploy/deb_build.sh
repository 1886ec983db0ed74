#!/usr/bin/env bash
# Fixture: the .deb, made the documented way (cpack -G DEB in the build folder), into OUT_DIR.
set -euo pipefail
build=$1 out=$2
for tool in cpack dpkg-deb; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool not found (Debian: cmake, dpkg)"
    exit 77
  fi
done
rm -rf "$out"
cd "$build"
cpack -G DEB -B "$out"
ls "$out"/capd_*_amd64.deb

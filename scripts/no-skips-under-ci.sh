#!/usr/bin/env bash
# Usage: no-skips-under-ci.sh BUILD_DIR CTEST_LOG
# Under CI (CI=true) a test that skipped fails the run: the machine has what install-deps.sh
# installs, so a skip means a missing tool or a broken environment that would otherwise hide
# untested code. Each skipped test is run again verbosely to print its reason. Outside CI skips
# are only listed.
set -euo pipefail
build_dir=$1
log=$2
mapfile -t skipped < <(sed -n 's/^.*Test *#[0-9]*: \([^ ]*\) .*\*\*\*Skipped.*$/\1/p' "$log")
[ "${#skipped[@]}" -eq 0 ] && exit 0
echo "skipped tests (${#skipped[@]}):"
for name in "${skipped[@]}"; do
  # GoogleTest prints "FILE:LINE: Skipped" and the reason on the next line.
  output=$(cd "$build_dir" && ctest -R "^${name//./\\.}\$" -V 2>&1) || true
  reason=$(grep -A1 -m1 ": Skipped$" <<<"$output" | tail -n 1 | sed 's/^[0-9]*: //') || true
  echo "  $name: ${reason:-no reason printed}"
done
if [ "${CI:-}" = "true" ]; then
  echo "under CI a skipped test is a failure: install what it needs in scripts/install-deps.sh" >&2
  exit 1
fi

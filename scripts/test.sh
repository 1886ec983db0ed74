#!/usr/bin/env bash
# The README's test command: install dependencies, build, run every test; then the unit and
# integration tests again under AddressSanitizer+UBSan (scripts/test-asan.sh, build-asan/).
# Integration tests need root (network namespaces, capture): they skip with a printed reason
# otherwise; under CI (CI=true) any skipped test fails the run (scripts/no-skips-under-ci.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
(cd build && ctest --output-on-failure -j2 --timeout 300) | tee build/ctest.log
bash scripts/no-skips-under-ci.sh build build/ctest.log
bash scripts/test-asan.sh

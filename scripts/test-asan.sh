#!/usr/bin/env bash
# The unit and integration tests again, built with AddressSanitizer+UBSan (LeakSanitizer included)
# into build-asan. Suppressions for Debian's uninstrumented libraries: tests/sanitizers/.
# Instrumented code is 2-3x slower: timeouts are doubled. scripts/test.sh (the CI job) runs it
# after the normal tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DCAPD_SANITIZE=address
cmake --build build-asan -j2
# deploy tests build packages and bundles, not code the sanitizers look into.
(cd build-asan && ctest --output-on-failure -j2 --timeout 600 -LE deploy) | tee build-asan/ctest.log
bash scripts/no-skips-under-ci.sh build-asan build-asan/ctest.log

#!/usr/bin/env bash
# The README's test command: install dependencies, build, run every test; then build again with
# AddressSanitizer+UBSan (CAPD_SANITIZE=address) into build-asan and run the tests there too.
# Integration tests need root (network namespaces, capture): they skip with a printed reason
# otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
(cd build && ctest --output-on-failure -j2 --timeout 300)

# Sanitized build: the unit and integration tests again, under ASan+UBSan (LeakSanitizer
# included). Suppressions for Debian's uninstrumented libraries: tests/sanitizers/.
# Instrumented code is 2-3x slower: timeouts are doubled.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DCAPD_SANITIZE=address
cmake --build build-asan -j2
(cd build-asan && ctest --output-on-failure -j2 --timeout 600)

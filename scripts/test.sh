#!/usr/bin/env bash
# The README's test command: install dependencies, build, run every test; then build again with
# AddressSanitizer+UBSan (CAPD_SANITIZE=address) into build-asan and run the unit and integration
# tests there too.
# Integration tests need root (network namespaces, capture): they skip with a printed reason
# otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
(cd build && ctest --output-on-failure -j2 --timeout 300)

# Sanitized build: the unit and integration tests again under ASan+UBSan, LeakSanitizer included;
# options and suppressions for Debian's uninstrumented libraries come from tests/sanitizers/.
# Left out here, run in the normal build above:
#   - the deploy tests (label deploy): they check the release artifacts (bundle, .deb, the
#     systemd unit's syscall allow-list) and run capd under strace, where LeakSanitizer cannot run;
#   - the two tests that bound capd's RSS: ASan's quarantine (256 MiB of freed memory held back
#     to catch use-after-free) and shadow memory make RSS say nothing about capd.
# A test without its own TIMEOUT gets 600 s here: instrumented code is 2-3x slower.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DCAPD_SANITIZE=address
cmake --build build-asan -j2
(cd build-asan && ctest --output-on-failure -j2 --timeout 600 -LE deploy \
  -E 'CaptureFaultTest\.ThousandShortStreamsLeaveFdsAndMemoryWhereTheyWere|SlowClientTest\.StalledClientKeepsRssBoundedAndIsToldWhatItLost')

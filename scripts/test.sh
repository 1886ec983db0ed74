#!/usr/bin/env bash
# The README's test command: install dependencies, build, run every test.
# Integration tests need root (network namespaces, capture): they skip with a printed reason
# otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j2 --timeout 300

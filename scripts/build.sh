#!/usr/bin/env bash
# Configure and build capd and capctl (and the tests) into ./build. Two jobs: our machines have
# two cores and gRPC headers are heavy.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2

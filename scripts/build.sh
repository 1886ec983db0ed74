#!/usr/bin/env bash
# Configure and build capd and capctl (and the tests) into ./build. Two jobs: our machines have
# two cores and gRPC headers are heavy.
set -euo pipefail
cd "$(dirname "$0")/.."
# The micro-benchmarks are built (not run) so that they keep compiling; bench/README.md.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCAPD_BUILD_BENCHMARKS=ON
cmake --build build -j2

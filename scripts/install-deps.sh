#!/usr/bin/env bash
# The one list of capd's build and test dependencies (Debian 12 packages).
# Used by the README's set-up commands and by .ci/run.
set -euo pipefail

BUILD_PACKAGES=(
  build-essential cmake pkg-config
  libpcap-dev libtins-dev libboost-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc libssl-dev
  libspdlog-dev libfmt-dev libcli11-dev libcap-dev libzstd-dev googletest libgtest-dev libgmock-dev libbenchmark-dev
)
# Tools the tests use as independent readers and to build test networks.
TEST_PACKAGES=(libclang-rt-14-dev tcpdump tcpreplay tshark wireshark-common iproute2 netsniff-ng procps openssh-server openssh-client socat shellcheck python3 python3-yaml strace dpkg-dev systemd nftables awscli)
# The TLS key-log tests: a real TLS server and client.
TEST_PACKAGES+=(openssl curl)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer "no" without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
# The upload tests' S3-compatible server, s3rver, from npm, on Debian's nodejs and npm (a node
# and npm already installed, e.g. a newer nodejs, are used as they are).
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y --no-install-recommends nodejs npm
fi
if ! command -v s3rver >/dev/null 2>&1; then
  $SUDO npm install -g s3rver@3
fi

#!/usr/bin/env bash
# Seeds the decap fuzzer's corpus from the real captures: one file per packet, laid out as the
# fuzzer reads it (selector byte, lengths byte, packet). Every packet is written with the
# Ethernet/auto/4789 selector, and the port-8472 and GPE captures also with the port that makes
# them tunnels. Packets are cut at 4 KiB: the headers are what the fuzzer should work on.
#
#   tests/fuzz/seed_corpus.sh OUT_DIR [CAPTURE_DIR]
set -euo pipefail
out=${1:?usage: seed_corpus.sh OUT_DIR [CAPTURE_DIR]}
captures=${2:-"$(dirname "$0")/../data/real"}
mkdir -p "$out"
python3 - "$out" "$captures" <<'EOF'
import os, struct, sys

out, captures = sys.argv[1], sys.argv[2]
# Byte 1: bits 0-1 choose the VXLAN port (0: 4789, 1: 8472, 2: 4790), bits 2-3 the original
# length (0: as captured). Byte 0: 0 = Ethernet, auto mode.
ports = {"vxlan_port_8472.pcap": [0, 1], "nsh-over-vxlan-gpe.pcap": [0, 2]}
count = 0
for name in sorted(os.listdir(captures)):
    if not name.endswith(".pcap"):
        continue
    data = open(os.path.join(captures, name), "rb").read()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link_type = struct.unpack(endian + "I", data[20:24])[0]
    assert link_type == 1, (name, link_type)
    offset, index = 24, 0
    while offset + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        packet = data[offset + 16:offset + 16 + caplen][:4096]
        offset += 16 + caplen
        index += 1
        for port in ports.get(name, [0]):
            path = os.path.join(out, "%s-%03d-p%d" % (name[:-5], index, port))
            with open(path, "wb") as f:
                f.write(bytes([0x00, port]) + packet)
            count += 1
print("wrote %d seeds to %s" % (count, out))
EOF

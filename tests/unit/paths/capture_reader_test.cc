// capture_reader.h on pcapng and pcap bytes written here from the specifications
// (draft-ietf-opsawg-pcapng, pcap's savefile format), in both byte orders, through fmemopen as
// a stream like stdin.

#include "paths/capture_reader.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace capd::paths {
namespace {

using Bytes = std::vector<uint8_t>;

// Writes numbers in the chosen byte order.
struct Writer {
  bool big = false;
  Bytes out;
  void U8(uint8_t v) { out.push_back(v); }
  void U16(uint16_t v) {
    if (big) {
      U8(v >> 8), U8(v & 0xFF);
    } else {
      U8(v & 0xFF), U8(v >> 8);
    }
  }
  void U32(uint32_t v) {
    if (big) {
      U16(v >> 16), U16(v & 0xFFFF);
    } else {
      U16(v & 0xFFFF), U16(v >> 16);
    }
  }
  void Raw(const Bytes& b) { out.insert(out.end(), b.begin(), b.end()); }
  void Pad() {
    while (out.size() % 4) U8(0);
  }
};

Bytes Block(bool big, uint32_t type, const Bytes& body) {
  Writer w{big, {}};
  w.U32(type);
  w.U32(static_cast<uint32_t>(12 + body.size()));
  w.Raw(body);
  w.U32(static_cast<uint32_t>(12 + body.size()));
  return w.out;
}

Bytes SectionHeader(bool big) {
  Writer w{big, {}};
  w.U32(0x1A2B3C4D);
  w.U16(1);
  w.U16(0);
  w.U32(0xFFFFFFFF);
  w.U32(0xFFFFFFFF);
  return Block(big, 0x0A0D0D0A, w.out);
}

Bytes Interface(bool big, uint16_t link_type, const std::string& name, int tsresol) {
  Writer w{big, {}};
  w.U16(link_type);
  w.U16(0);
  w.U32(262144);
  if (!name.empty()) {
    w.U16(2);
    w.U16(static_cast<uint16_t>(name.size()));
    w.Raw(Bytes(name.begin(), name.end()));
    w.Pad();
  }
  if (tsresol >= 0) {
    w.U16(9);
    w.U16(1);
    w.U8(static_cast<uint8_t>(tsresol));
    w.Pad();
  }
  w.U16(0);
  w.U16(0);
  return Block(big, 1, w.out);
}

Bytes Packet(bool big, uint32_t interface, uint64_t ts, const Bytes& data) {
  Writer w{big, {}};
  w.U32(interface);
  w.U32(static_cast<uint32_t>(ts >> 32));
  w.U32(static_cast<uint32_t>(ts));
  w.U32(static_cast<uint32_t>(data.size()));
  w.U32(static_cast<uint32_t>(data.size()));
  w.Raw(data);
  w.Pad();
  return Block(big, 6, w.out);
}

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

struct Read {
  std::vector<CaptureInterface> interfaces;
  std::vector<CapturedFrame> frames;
  std::vector<Bytes> data;
  CaptureReader::Result end;
  std::string error;
  bool truncated = false;
};

Read ReadAll(Bytes bytes, const std::string& pcap_name = "file.pcap") {
  Read r;
  std::FILE* f = fmemopen(bytes.data(), bytes.size(), "rb");
  CaptureReader reader(f, pcap_name);
  CapturedFrame frame;
  while ((r.end = reader.Next(frame)) == CaptureReader::Result::kPacket) {
    r.frames.push_back(frame);
    r.data.emplace_back(frame.data.begin(), frame.data.end());
  }
  r.interfaces = reader.interfaces();
  r.error = reader.error();
  r.truncated = reader.truncated();
  std::fclose(f);
  return r;
}

class PcapngReadTest : public ::testing::TestWithParam<bool> {};

TEST_P(PcapngReadTest, InterfacesNamedTimestampsInNanoseconds) {
  const bool big = GetParam();
  const Bytes file =
      Cat({SectionHeader(big), Interface(big, 1, "client:veth0", 9),
           Interface(big, 101, "server:ens5", -1), Packet(big, 0, 1'500'000'000'123ULL, {1, 2, 3}),
           Packet(big, 1, 1'500'000'000ULL, {4, 5, 6, 7, 8})});
  const Read r = ReadAll(file);
  EXPECT_EQ(r.end, CaptureReader::Result::kEnd) << r.error;
  ASSERT_EQ(r.interfaces.size(), 2u);
  EXPECT_EQ(r.interfaces[0].name, "client:veth0");
  EXPECT_EQ(r.interfaces[0].link_type, 1);
  EXPECT_EQ(r.interfaces[1].name, "server:ens5");
  EXPECT_EQ(r.interfaces[1].link_type, 101);
  ASSERT_EQ(r.frames.size(), 2u);
  EXPECT_EQ(r.frames[0].interface, 0u);
  EXPECT_EQ(r.frames[0].ts_ns, 1'500'000'000'123ULL);
  EXPECT_EQ(r.data[0], (Bytes{1, 2, 3}));
  EXPECT_EQ(r.frames[1].interface, 1u);
  EXPECT_EQ(r.frames[1].ts_ns, 1'500'000'000'000ULL);  // microseconds by default
  EXPECT_EQ(r.data[1], (Bytes{4, 5, 6, 7, 8}));
  EXPECT_FALSE(r.truncated);
}

INSTANTIATE_TEST_SUITE_P(ByteOrders, PcapngReadTest, ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? "BigEndian" : "LittleEndian";
                         });

TEST(CaptureReaderTest, ACutLastBlockEndsTheInput) {
  Bytes file = Cat({SectionHeader(false), Interface(false, 1, "a", 9), Packet(false, 0, 1, {1}),
                    Packet(false, 0, 2, {2, 2})});
  file.resize(file.size() - 5);
  const Read r = ReadAll(file);
  EXPECT_EQ(r.end, CaptureReader::Result::kEnd);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.frames.size(), 1u);
}

TEST(CaptureReaderTest, BadLengthsAndUndeclaredInterfacesAreErrors) {
  Bytes file = Cat({SectionHeader(false), Interface(false, 1, "a", 9), Packet(false, 3, 1, {1})});
  Read r = ReadAll(file);
  EXPECT_EQ(r.end, CaptureReader::Result::kError);
  EXPECT_NE(r.error.find("interface 3"), std::string::npos) << r.error;

  file = Cat({SectionHeader(false), Interface(false, 1, "a", 9)});
  file.insert(file.end(), {6, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F});  // a 2 GiB block
  r = ReadAll(file);
  EXPECT_EQ(r.end, CaptureReader::Result::kError);

  r = ReadAll(Bytes{'h', 'e', 'l', 'l', 'o', '\n'});
  EXPECT_EQ(r.end, CaptureReader::Result::kError);
  EXPECT_NE(r.error.find("not a pcap or pcapng"), std::string::npos);

  r = ReadAll(Bytes{});
  EXPECT_EQ(r.end, CaptureReader::Result::kError);
}

TEST(CaptureReaderTest, PcapNanosecondsNamedAfterTheFile) {
  for (const bool big : {false, true}) {
    Writer w{big, {}};
    w.U32(0xA1B23C4D);
    w.U16(2);
    w.U16(4);
    w.U32(0);
    w.U32(0);
    w.U32(65535);
    w.U32(113);
    w.U32(7);
    w.U32(5);
    w.U32(2);
    w.U32(60);
    w.Raw({9, 9});
    const Read r = ReadAll(w.out, "one.pcap");
    EXPECT_EQ(r.end, CaptureReader::Result::kEnd) << r.error;
    ASSERT_EQ(r.interfaces.size(), 1u);
    EXPECT_EQ(r.interfaces[0].name, "one.pcap");
    EXPECT_EQ(r.interfaces[0].link_type, 113);
    ASSERT_EQ(r.frames.size(), 1u);
    EXPECT_EQ(r.frames[0].ts_ns, 7'000'000'005ULL);
    EXPECT_EQ(r.frames[0].original_length, 60u);
    EXPECT_EQ(r.data[0], (Bytes{9, 9}));
  }
}

// Every prefix and many single-byte corruptions of a valid file read without crashing.
TEST(CaptureReaderTest, DamagedFilesNeverCrash) {
  const Bytes file = Cat({SectionHeader(false), Interface(false, 1, "client:veth0", 9),
                          Packet(false, 0, 1, Bytes(30, 7)), SectionHeader(true),
                          Interface(true, 101, "b", 6), Packet(true, 0, 5, Bytes(9, 1))});
  for (size_t n = 0; n <= file.size(); ++n) (void)ReadAll(Bytes(file.begin(), file.begin() + n));
  for (size_t i = 0; i < file.size(); ++i) {
    for (uint8_t v : {0x00, 0x7F, 0xFF}) {
      Bytes damaged = file;
      damaged[i] = v;
      (void)ReadAll(damaged);
    }
  }
}

TEST(CaptureReaderTest, ASecondSectionKeepsPointNames) {
  const Bytes file =
      Cat({SectionHeader(false), Interface(false, 1, "a:x", 9), Packet(false, 0, 1, {1}),
           SectionHeader(true), Interface(true, 1, "b:y", 9), Interface(true, 1, "a:x", 9),
           Packet(true, 1, 2, {2})});
  const Read r = ReadAll(file);
  EXPECT_EQ(r.end, CaptureReader::Result::kEnd) << r.error;
  ASSERT_EQ(r.frames.size(), 2u);
  EXPECT_EQ(r.frames[0].interface, 0u);
  EXPECT_EQ(r.frames[1].interface, 0u);  // "a:x" again
  EXPECT_EQ(r.interfaces.size(), 2u);
}

}  // namespace
}  // namespace capd::paths

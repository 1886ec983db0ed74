#include "client/cli/options.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace capd::client {
namespace {

StatusOr<CommandLine> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "capctl");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return ParseCommandLine(static_cast<int>(args.size()), argv.data());
}

TEST(OptionsTest, StreamFlagsAsTcpdumpUsersWriteThem) {
  unsetenv("CAPD_AGENT");
  auto line = Parse({"stream", "-i", "eth0", "-c", "100", "-s", "96", "-w", "out.pcapng", "-p",
                     "--duration", "2.5", "--format", "pcap", "-f", "udp port 53"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  const StreamOptions& s = line->stream;
  EXPECT_EQ(s.interface, "eth0");
  EXPECT_EQ(s.count, 100u);
  EXPECT_EQ(s.snaplen, 96u);
  EXPECT_EQ(s.write_path, "out.pcapng");
  EXPECT_FALSE(s.promiscuous);
  EXPECT_EQ(s.duration_ms, 2500u);
  EXPECT_EQ(s.format, FileFormat::kPcap);
  EXPECT_EQ(s.filter, "udp port 53");
  ASSERT_EQ(s.agents.size(), 1u);
  EXPECT_EQ(s.agents[0].target, "127.0.0.1:50051");
}

TEST(OptionsTest, FilterWordsAfterOptions) {
  auto line = Parse({"stream", "-w", "-", "not", "port", "22"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->stream.filter, "not port 22");
  EXPECT_FALSE(Parse({"stream", "-f", "tcp", "udp"}).ok());
}

TEST(OptionsTest, AgentFromEnvironmentAndInterfaceFromAddress) {
  setenv("CAPD_AGENT", "10.1.2.3:6000/ens5", 1);
  auto line = Parse({"stream", "-w", "x"});
  unsetenv("CAPD_AGENT");
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->stream.agents[0].target, "10.1.2.3:6000");
  EXPECT_EQ(line->stream.interface, "ens5");
}

TEST(OptionsTest, RefusesBadValuesWithOneLine) {
  for (std::vector<std::string> args :
       std::vector<std::vector<std::string>>{{"stream", "-c", "0"},
                                             {"stream", "-c", "ten"},
                                             {"stream", "-s", "262145"},
                                             {"stream", "--duration", "-1"},
                                             {"stream", "--format", "erf"},
                                             {"stream", "-w", "a", "--fifo", "b"},
                                             {"stream", "--bogus"},
                                             {"stream", "-i"},
                                             {"frobnicate"},
                                             {}}) {
    auto line = Parse(args);
    EXPECT_FALSE(line.ok()) << (args.empty() ? "(none)" : args[0]);
    if (!line.ok()) {
      EXPECT_EQ(line.status().message().find('\n'), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace capd::client

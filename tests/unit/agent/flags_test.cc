// capd's command line (agent/cli/flags.h): what an operator writes in a unit file or on a
// terminal, and the one line a mistake gets.

#include "agent/cli/flags.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace capd::agent {
namespace {

StatusOr<AgentCommandLine> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "capd");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return ParseAgentCommandLine(static_cast<int>(args.size()), argv.data());
}

TEST(AgentFlagsTest, DefaultsAreTheDocumentedOnes) {
  auto line = Parse({});
  ASSERT_TRUE(line.ok()) << line.status().message();
  const AgentFlags& f = line->flags;
  EXPECT_EQ(line->action, AgentCommandLine::Action::kRun);
  EXPECT_EQ(f.access.listen, "127.0.0.1:50051");
  EXPECT_EQ(f.max_streams, 16u);
  EXPECT_EQ(f.max_queue_bytes, 32u << 20);
  EXPECT_EQ(f.ring.buffer_bytes, 32 << 20);
  EXPECT_EQ(f.stall_timeout_seconds, 60u);
  EXPECT_EQ(f.log_level, "info");
  EXPECT_TRUE(f.carrier_exclusion);
  EXPECT_FALSE(f.metadata_endpoint.empty());
  EXPECT_FALSE(f.name_given);
  EXPECT_FALSE(f.name.empty()) << "the host name";
}

TEST(AgentFlagsTest, EveryFlagLandsInItsField) {
  auto line = Parse({"--listen",
                     "[::1]:7000",
                     "--name",
                     "edge-1",
                     "--user",
                     "capd",
                     "--max-streams=4",
                     "--max-connections",
                     "100",
                     "--max-connections-per-client",
                     "10",
                     "--max-queue-bytes",
                     "16MiB",
                     "--max-decap-interfaces",
                     "32",
                     "--stall-timeout",
                     "30",
                     "--max-recordings",
                     "3",
                     "--max-fetches",
                     "2",
                     "--buffer-size",
                     "4MiB",
                     "--block-timeout-ms",
                     "20",
                     "--tls-cert",
                     "c.pem",
                     "--tls-key",
                     "k.pem",
                     "--tls-client-ca",
                     "ca.pem",
                     "--auth-token-file",
                     "t",
                     "--allow-group",
                     "ops",
                     "--allow-group",
                     "dev",
                     "--allow-user",
                     "alice",
                     "--no-carrier-exclusion",
                     "--record-dir",
                     "/var/lib/capd",
                     "--no-metadata",
                     "--log-level",
                     "debug"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  const AgentFlags& f = line->flags;
  EXPECT_EQ(f.access.listen, "[::1]:7000");
  EXPECT_EQ(f.name, "edge-1");
  EXPECT_TRUE(f.name_given);
  EXPECT_EQ(f.user, "capd");
  EXPECT_EQ(f.max_streams, 4u);
  EXPECT_EQ(f.connections.max_connections, 100u);
  EXPECT_EQ(f.connections.max_per_client, 10u);
  EXPECT_EQ(f.max_queue_bytes, 16u << 20);
  EXPECT_EQ(f.max_decap_interfaces, 32u);
  EXPECT_EQ(f.stall_timeout_seconds, 30u);
  EXPECT_EQ(f.max_recordings, 3u);
  EXPECT_EQ(f.max_fetches, 2u);
  EXPECT_EQ(f.ring.buffer_bytes, 4 << 20);
  EXPECT_EQ(f.ring.block_timeout_ms, 20);
  EXPECT_EQ(f.access.tls_cert_file, "c.pem");
  EXPECT_EQ(f.access.tls_key_file, "k.pem");
  EXPECT_EQ(f.access.tls_client_ca_file, "ca.pem");
  EXPECT_EQ(f.access.token_file, "t");
  EXPECT_EQ(f.allow_groups, (std::vector<std::string>{"ops", "dev"}));
  EXPECT_EQ(f.allow_users, (std::vector<std::string>{"alice"}));
  EXPECT_FALSE(f.carrier_exclusion);
  EXPECT_EQ(f.record_dir, "/var/lib/capd");
  EXPECT_TRUE(f.metadata_endpoint.empty());
  EXPECT_EQ(f.log_level, "debug");
}

// k, M, G count in powers of 1000 and KiB, MiB, GiB in powers of 1024, as in capctl.
TEST(AgentFlagsTest, SizesFollowTheOneGrammar) {
  EXPECT_EQ(Parse({"--buffer-size", "4M"})->flags.ring.buffer_bytes, 4'000'000);
  EXPECT_EQ(Parse({"--buffer-size", "1GiB"})->flags.ring.buffer_bytes, 1 << 30);
  EXPECT_EQ(Parse({"--max-queue-bytes", "32M"})->flags.max_queue_bytes, 32'000'000u);
}

TEST(AgentFlagsTest, HelpAndVersion) {
  auto help = Parse({"--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_EQ(help->action, AgentCommandLine::Action::kHelp);
  for (const char* flag : {"--listen", "--max-streams", "--buffer-size", "--allow-group",
                           "--record-dir", "--no-metadata", "KiB"}) {
    EXPECT_NE(help->help.find(flag), std::string::npos) << flag;
  }
  EXPECT_EQ(Parse({"--version"})->action, AgentCommandLine::Action::kVersion);
}

// One line: the flag, what it takes, what was given, and where the help is.
TEST(AgentFlagsTest, MistakesAreOneLine) {
  const struct {
    std::vector<std::string> args;
    std::string says;
  } cases[] = {
      {{"--max-streams", "1k"}, "--max-streams takes 1..1024, not '1k'"},
      {{"--max-streams", "0"}, "--max-streams takes 1..1024"},
      {{"--stall-timeout", "1m"}, "--stall-timeout takes 1..3600 seconds"},
      {{"--max-recordings", "257"}, "--max-recordings takes 1..256"},
      {{"--max-decap-interfaces", "4097"}, "--max-decap-interfaces takes 1..4096"},
      {{"--buffer-size", "512k"}, "--buffer-size takes a size of 1M..1GiB"},
      {{"--buffer-size", "2G"}, "--buffer-size takes"},
      {{"--block-timeout-ms", "soon"}, "--block-timeout-ms takes 1..1000 milliseconds"},
      {{"--max-queue-bytes", "lots"}, "--max-queue-bytes takes"},
      {{"--log-level", "loud"}, "--log-level takes trace, debug"},
      {{"--record-dir", ""}, "--record-dir takes a folder"},
      {{"--record-keep-free", "150%"}, "--record-keep-free takes a size ("},
      {{"--record-keep-free", "lots"}, "a percentage 0%..100% or 0, not 'lots'"},
      {{"--allow-user", ""}, "--allow-user takes a user name or id"},
      {{"--listen", "127.0.0.1"}, "--listen takes ADDRESS:PORT"},
      {{"--listen", "::1:50051"}, "--listen takes ADDRESS:PORT"},
      {{"--listen", "unix:/run/capd.sock"}, "unix sockets are not supported"},
      {{"--bogus"}, "--bogus"},
      {{"extra"}, "extra"},
      {{"--listen"}, "--listen"},
  };
  for (const auto& c : cases) {
    auto line = Parse(c.args);
    ASSERT_FALSE(line.ok()) << c.says;
    EXPECT_EQ(line.status().code(), StatusCode::kInvalidArgument);
    const std::string& message = line.status().message();
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_NE(message.find("see `capd --help`"), std::string::npos) << message;
  }
}

// --record-keep-free: the larger of 1 GiB and 5 % unless given; a size, a percentage, or 0 (off).
TEST(AgentFlagsTest, RecordKeepFreeTakesASizeAPercentageOrZero) {
  auto line = Parse({});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->flags.record_keep_free.bytes, uint64_t{1} << 30);
  EXPECT_EQ(line->flags.record_keep_free.percent, 5u);
  line = Parse({"--record-keep-free", "2GiB"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->flags.record_keep_free.bytes, uint64_t{2} << 30);
  EXPECT_EQ(line->flags.record_keep_free.percent, 0u);
  line = Parse({"--record-keep-free", "10%"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->flags.record_keep_free.bytes, 0u);
  EXPECT_EQ(line->flags.record_keep_free.percent, 10u);
  line = Parse({"--record-keep-free", "0"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_TRUE(line->flags.record_keep_free.off());
}

// --tls-keylog-dir: absent is off (the unit and the package set none); repeatable.
TEST(AgentFlagsTest, TlsKeyLogFoldersAreOffUnlessGivenAndRepeatable) {
  auto line = Parse({});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_TRUE(line->flags.tls_keylog_dirs.empty());
  line = Parse({"--tls-keylog-dir", "/run/keys", "--tls-keylog-dir", "/var/log/app"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->flags.tls_keylog_dirs, (std::vector<std::string>{"/run/keys", "/var/log/app"}));
  line = Parse({"--tls-keylog-dir", ""});
  ASSERT_FALSE(line.ok());
  EXPECT_NE(line.status().message().find("--tls-keylog-dir takes a folder"), std::string::npos)
      << line.status().message();
}

}  // namespace
}  // namespace capd::agent

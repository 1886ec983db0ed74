#include "client/cli/options.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/byte_size.h"

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

// Compression is asked of agents behind a tunnel (a few MB/s) and not of direct addresses,
// unless the user says otherwise; stream and serve take the same flags.
TEST(OptionsTest, CompressionByTransportUnlessTold) {
  unsetenv("CAPD_AGENT");
  auto line = Parse({"stream", "-w", "x", "--agent", "10.0.0.5:50051", "--agent",
                     "ssh://admin@bastion", "--agent", "ssm://i-0123456789abcdef0"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  const StreamOptions& s = line->stream;
  ASSERT_EQ(s.agents.size(), 3u);
  EXPECT_FALSE(CompressionFor(s, s.agents[0]));
  EXPECT_TRUE(CompressionFor(s, s.agents[1]));
  EXPECT_TRUE(CompressionFor(s, s.agents[2]));

  line = Parse({"stream", "-w", "x", "--compress"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_TRUE(CompressionFor(line->stream, line->stream.agents[0]));
  line = Parse({"serve", "--agent", "ssh://bastion", "--no-compress"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_FALSE(CompressionFor(line->serve.stream, line->serve.stream.agents[0]));
  EXPECT_FALSE(Parse({"stream", "-w", "x", "--compress", "--no-compress"}).ok());
}

TEST(OptionsTest, RefusesBadValuesWithOneLine) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"stream", "-c", "0"},
           {"stream", "-c", "ten"},
           {"stream", "-s", "262145"},
           {"stream", "--duration", "-1"},
           {"stream", "--format", "erf"},
           {"stream", "-w", "a", "--fifo", "b"},
           {"stream", "--bogus"},
           {"stream", "-i"},
           {"stream", "--before", "5"},
           {"stream", "--stop-on", "udp", "--after", "1", "--after-count", "3"},
           {"stream", "--after-count", "3"},
           {"stream", "--start-on", "udp", "--before", "4000"},
           {"stream", "--start-on", "udp", "--decap", "vxlan"},
           {"record", "start", "--name", "x", "--after", "1"},
           {"frobnicate"},
           {}}) {
    auto line = Parse(args);
    EXPECT_FALSE(line.ok()) << (args.empty() ? "(none)" : args[0]);
    if (!line.ok()) {
      EXPECT_EQ(line.status().message().find('\n'), std::string::npos);
    }
  }
}

TEST(OptionsTest, TriggerFlags) {
  auto line = Parse({"stream", "-w", "x", "--start-on", "udp port 53", "--before", "2.5",
                     "--stop-on", "icmp", "--after-count", "7"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->stream.start_on, "udp port 53");
  EXPECT_EQ(line->stream.before_ms, 2500u);
  EXPECT_EQ(line->stream.stop_on, "icmp");
  EXPECT_EQ(line->stream.after_count, 7u);
  EXPECT_EQ(line->stream.after_ms, 0u);
  line = Parse({"stream", "-w", "x", "--start-on", "tcp"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->stream.before_ms, 10'000u);  // the default history
  line = Parse({"record", "start", "--name", "r", "--stop-on", "tcp", "--after", "3"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->record.stop_on, "tcp");
  EXPECT_EQ(line->record.after_ms, 3000u);
}

// What a user reads after a mistake: one line, the problem, and the help of the command used.
TEST(OptionsTest, AnErrorIsOneLineNamingTheRightHelp) {
  unsetenv("CAPD_AGENT");
  const struct {
    std::vector<std::string> args;
    std::string says;
    std::string help;
  } cases[] = {
      {{"stream", "-c", "ten"}, "--count takes 1..", "capctl stream --help"},
      {{"stream", "--bogus"}, "unknown option '--bogus'", "capctl stream --help"},
      {{"serve", "--client-queue", "1k"}, "--client-queue takes a size", "capctl serve --help"},
      {{"serve", "-w", "x"}, "-w, --fifo and --wireshark do not apply", "capctl serve --help"},
      {{"record", "start", "-i", "eth0"}, "--name is required", "capctl record start --help"},
      {{"record", "fetch"}, "needs a NAME", "capctl record fetch --help"},
      {{"interfaces", "--remote-port", "0"},
       "--remote-port takes 1..65535",
       "capctl interfaces --help"},
      {{"decap", "in.pcap"}, "--write is required", "capctl decap --help"},
      {{"frobnicate"}, "frobnicate", "capctl --help"},
      {{}, "no command given", "capctl --help"},
  };
  for (const auto& c : cases) {
    auto line = Parse(c.args);
    ASSERT_FALSE(line.ok()) << c.says;
    EXPECT_EQ(line.status().code(), StatusCode::kInvalidArgument);
    const std::string& message = line.status().message();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
    EXPECT_NE(message.find("see `" + c.help + "`"), std::string::npos) << message;
  }
}

// --help on every subcommand: exit 0 (kHelp) with that command's own options in the text.
TEST(OptionsTest, EverySubcommandHasHelpNamingItsOptions) {
  const struct {
    std::vector<std::string> args;
    std::vector<std::string> names;
  } cases[] = {
      {{"--help"}, {"stream", "serve", "record", "decap", "interfaces", "extcap", "KiB"}},
      {{"help"}, {"stream", "serve", "record"}},
      {{"help", "stream"}, {"capctl stream", "--rotate-size", "--decap"}},
      {{"stream", "--help"},
       {"capctl stream", "-i,--interface", "-w,--write", "--fifo", "--rotate-size", "--decap",
        "--tls-ca", "--remote-port", "tcp port 80"}},
      {{"serve", "--help"}, {"capctl serve", "--listen", "--client-queue", "--agent"}},
      {{"interfaces", "--help"}, {"capctl interfaces", "--agent", "--token-file"}},
      {{"decap", "--help"}, {"capctl decap", "IN", "--vni", "--inner-filter"}},
      {{"record", "--help"}, {"start", "stop", "list", "fetch", "delete"}},
      {{"record", "start", "--help"}, {"capctl record start", "--name", "--rotate-files"}},
      {{"record", "stop", "-h"}, {"capctl record stop", "NAME"}},
      {{"record", "list", "--help"}, {"capctl record list", "--agent"}},
      {{"record", "fetch", "--help"}, {"capctl record fetch", "--out"}},
      {{"record", "delete", "--help"}, {"capctl record delete", "NAME"}},
  };
  for (const auto& c : cases) {
    auto line = Parse(c.args);
    ASSERT_TRUE(line.ok()) << line.status().message();
    EXPECT_EQ(line->command, CommandLine::Command::kHelp);
    for (const std::string& name : c.names) {
      EXPECT_NE(line->help.find(name), std::string::npos) << c.args[0] << ": no " << name << " in\n"
                                                          << line->help;
    }
  }
  // record start takes no --post-rotate: an agent runs no command a client sends it.
  EXPECT_EQ(Parse({"record", "start", "--help"})->help.find("--post-rotate"), std::string::npos);
  EXPECT_EQ(Parse({"version"})->command, CommandLine::Command::kVersion);
  EXPECT_EQ(Parse({"--version"})->command, CommandLine::Command::kVersion);
}

// One size grammar for every size flag: k, M, G in powers of 1000, KiB, MiB, GiB in powers of
// 1024; counts take no suffix at all.
TEST(OptionsTest, SizesAndCounts) {
  EXPECT_EQ(capd::ParseByteSize("100"), 100u);
  EXPECT_EQ(capd::ParseByteSize("20k"), 20'000u);
  EXPECT_EQ(capd::ParseByteSize("20kB"), 20'000u);
  EXPECT_EQ(capd::ParseByteSize("5M"), 5'000'000u);
  EXPECT_EQ(capd::ParseByteSize("2G"), 2'000'000'000u);
  EXPECT_EQ(capd::ParseByteSize("4KiB"), 4096u);
  EXPECT_EQ(capd::ParseByteSize("32MiB"), 32u << 20);
  EXPECT_EQ(capd::ParseByteSize("1gib"), 1u << 30);
  for (const char* bad : {"", "k", "-1", "1.5M", "10X", "1 M", "5Mi B", "99999999999999999999",
                          "20000000000T", "0x10"}) {
    EXPECT_FALSE(capd::ParseByteSize(bad).has_value()) << bad;
  }

  auto serve = Parse({"serve", "--client-queue", "1MiB"});
  ASSERT_TRUE(serve.ok()) << serve.status().message();
  EXPECT_EQ(serve->serve.client_queue_bytes, 1u << 20);
  EXPECT_EQ(Parse({"serve", "--client-queue", "65536"})->serve.client_queue_bytes, 65536u);

  for (const std::vector<std::string>& counts : std::vector<std::vector<std::string>>{
           {"stream", "-c", "1k"},
           {"stream", "-s", "0x10"},
           {"stream", "-w", "x", "--rotate-files", "1k"},
           {"stream", "-w", "x", "--rotate-seconds", "1M"},
           {"record", "start", "--name", "n", "--rotate-files", "2k"}}) {
    auto line = Parse(counts);
    ASSERT_FALSE(line.ok()) << counts[counts.size() - 2];
    EXPECT_NE(line.status().message().find(", not '" + counts.back() + "'"), std::string::npos)
        << line.status().message();
  }
  EXPECT_EQ(Parse({"stream", "-c", "1000"})->stream.count, 1000u);
  EXPECT_EQ(Parse({"stream", "-c", "010"})->stream.count, 10u);  // decimal, not C's octal
}

// An interface named twice, differently, is a question only the user can answer.
TEST(OptionsTest, InterfaceAndAgentInterfaceMustAgree) {
  unsetenv("CAPD_AGENT");
  auto conflict = Parse({"stream", "-i", "eth0", "--agent", "10.0.0.1:50051/eth1", "-w", "x"});
  ASSERT_FALSE(conflict.ok());
  EXPECT_NE(conflict.status().message().find("-i eth0 and --agent 10.0.0.1:50051/eth1"),
            std::string::npos)
      << conflict.status().message();
  EXPECT_FALSE(
      Parse({"record", "start", "--name", "n", "-i", "eth0", "--agent", "10.0.0.1:50051/eth1"})
          .ok());

  auto same = Parse({"stream", "-i", "eth1", "--agent", "10.0.0.1:50051/eth1", "-w", "x"});
  ASSERT_TRUE(same.ok()) << same.status().message();
  EXPECT_EQ(same->stream.interface, "eth1");

  // $CAPD_AGENT's /IFACE is a default, which -i overrides.
  setenv("CAPD_AGENT", "10.1.2.3:6000/ens5", 1);
  auto overridden = Parse({"stream", "-i", "lo", "-w", "x"});
  unsetenv("CAPD_AGENT");
  ASSERT_TRUE(overridden.ok()) << overridden.status().message();
  EXPECT_EQ(overridden->stream.interface, "lo");
}

TEST(OptionsTest, UnsupportedSchemeIsNamed) {
  auto line = Parse({"stream", "--agent", "http://10.0.0.1:50051", "-w", "x"});
  ASSERT_FALSE(line.ok());
  const std::string& message = line.status().message();
  EXPECT_NE(message.find("http:// is not supported"), std::string::npos) << message;
  EXPECT_NE(message.find("ssh://"), std::string::npos) << message;
  EXPECT_NE(message.find("ssm://"), std::string::npos) << message;
  EXPECT_NE(message.find("HOST:PORT"), std::string::npos) << message;
}

TEST(OptionsTest, OtherSubcommands) {
  unsetenv("CAPD_AGENT");
  auto serve = Parse({"serve", "--listen", "127.0.0.1:0", "--agent", "10.0.0.1:1", "--agent",
                      "ssh://ops@bastion/eth0", "udp"});
  ASSERT_TRUE(serve.ok()) << serve.status().message();
  EXPECT_EQ(serve->command, CommandLine::Command::kServe);
  EXPECT_EQ(serve->serve.listen, "127.0.0.1:0");
  ASSERT_EQ(serve->serve.stream.agents.size(), 2u);
  EXPECT_EQ(serve->serve.stream.agents[1].transport, AgentAddress::Transport::kSsh);
  EXPECT_EQ(serve->serve.stream.filter, "udp");
  EXPECT_EQ(serve->serve.stream.format, FileFormat::kPcap);
  // pcapng for the readers that take it (several link types under --decap).
  auto pcapng = Parse({"serve", "--agent", "10.0.0.1:1", "--format", "pcapng"});
  ASSERT_TRUE(pcapng.ok()) << pcapng.status().message();
  EXPECT_EQ(pcapng->serve.stream.format, FileFormat::kPcapng);
  EXPECT_FALSE(Parse({"serve", "--format", "text"}).ok());

  auto decap = Parse({"decap", "in.pcap", "-w", "-", "--vni", "7,8", "--vni", "9"});
  ASSERT_TRUE(decap.ok()) << decap.status().message();
  EXPECT_EQ(decap->decap_file.input, "in.pcap");
  EXPECT_EQ(decap->decap_file.write_path, "-");
  EXPECT_EQ(decap->decap_file.decap.mode, DecapOptions::Mode::kAuto);
  EXPECT_EQ(decap->decap_file.decap.vnis, (std::vector<uint32_t>{7, 8, 9}));
  EXPECT_FALSE(Parse({"decap", "in.pcap", "-w", "-", "--vni", "16777216"}).ok());

  auto interfaces = Parse({"interfaces", "--agent", "[::1]:7000", "--tls-ca", "ca.pem"});
  ASSERT_TRUE(interfaces.ok()) << interfaces.status().message();
  EXPECT_EQ(interfaces->interfaces.agent.target, "[::1]:7000");
  EXPECT_TRUE(interfaces->interfaces.connection.tls());
  EXPECT_FALSE(Parse({"interfaces", "extra"}).ok());
  EXPECT_FALSE(Parse({"interfaces", "--tls-cert", "c.pem"}).ok());  // without --tls-key

  auto stream = Parse({"stream", "--decap", "geneve", "--geneve-port", "6082", "--remote-port",
                       "2222", "--wireshark", "--", "not", "port", "22"});
  ASSERT_TRUE(stream.ok()) << stream.status().message();
  EXPECT_EQ(stream->stream.decap.mode, DecapOptions::Mode::kGeneve);
  EXPECT_EQ(stream->stream.decap.geneve_port, 6082u);
  EXPECT_EQ(stream->stream.connection.remote_port, 2222u);
  EXPECT_TRUE(stream->stream.wireshark);
  EXPECT_EQ(stream->stream.filter, "not port 22");
  EXPECT_FALSE(Parse({"stream", "--vni", "5"}).ok());  // --vni without --decap
}

// --tls-keylog: `stream` only, and pcapng only (pcap files cannot hold keys): exit 2.
TEST(OptionsTest, TlsKeyLogNeedsPcapng) {
  unsetenv("CAPD_AGENT");
  auto line = Parse({"stream", "-w", "x.pcapng", "--tls-keylog", "/run/keys/app.log"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->stream.tls_keylog, "/run/keys/app.log");
  EXPECT_TRUE(Parse({"stream", "-w", "x"}).value().stream.tls_keylog.empty());
  line = Parse({"stream", "-w", "x.pcap", "--format", "pcap", "--tls-keylog", "app.log"});
  ASSERT_FALSE(line.ok());
  EXPECT_EQ(ExitCodeFor(line.status().code()), 2);
  EXPECT_NE(line.status().message().find("--tls-keylog needs the pcapng format"), std::string::npos)
      << line.status().message();
  EXPECT_FALSE(Parse({"serve", "--tls-keylog", "app.log"}).ok());
}

TEST(OptionsTest, PathsReport) {
  auto paths = Parse({"paths", "--json", "--grace", "0.25", "--max-flows", "500", "both.pcapng"});
  ASSERT_TRUE(paths.ok()) << paths.status().message();
  EXPECT_EQ(paths->command, CommandLine::Command::kPaths);
  EXPECT_EQ(paths->paths.input, "both.pcapng");
  EXPECT_TRUE(paths->paths.json);
  EXPECT_DOUBLE_EQ(paths->paths.grace_seconds, 0.25);
  EXPECT_EQ(paths->paths.max_flows, 500u);
  auto piped = Parse({"paths", "-"});
  ASSERT_TRUE(piped.ok()) << piped.status().message();
  EXPECT_EQ(piped->paths.input, "-");
  EXPECT_FALSE(piped->paths.json);
  EXPECT_DOUBLE_EQ(piped->paths.grace_seconds, 1.0);
  EXPECT_FALSE(Parse({"paths"}).ok());  // no input
  EXPECT_FALSE(Parse({"paths", "a", "b"}).ok());
  EXPECT_FALSE(Parse({"paths", "--max-flows", "0", "a"}).ok());
  const auto missing = Parse({"paths"});
  EXPECT_NE(missing.status().message().find("capctl paths --help"), std::string::npos)
      << missing.status().message();
}

// Instances selected through SSM: stream, serve and interfaces take a selection and --max-agents;
// a malformed selection is refused while parsing; a recording is one agent's, so record refuses it.
TEST(OptionsTest, FleetSelectionsAndMaxAgents) {
  auto stream = Parse({"stream", "--agent", "ssm://tag:Env=prod,tag:Role=web/ens5", "-w", "x"});
  ASSERT_TRUE(stream.ok()) << stream.status().message();
  EXPECT_EQ(stream->stream.max_agents, kDefaultMaxAgents);
  ASSERT_EQ(stream->stream.agents.size(), 1u);
  EXPECT_EQ(stream->stream.agents[0].text, "ssm://tag:Env=prod,tag:Role=web/ens5");

  auto raised = Parse({"stream", "--agent", "ssm://asg:web", "--max-agents", "50", "-w", "x"});
  ASSERT_TRUE(raised.ok()) << raised.status().message();
  EXPECT_EQ(raised->stream.max_agents, 50u);
  EXPECT_FALSE(Parse({"stream", "--agent", "ssm://asg:web", "--max-agents", "0", "-w", "x"}).ok());

  auto listed = Parse({"interfaces", "--agent", "ssm://tag:Env=prod", "--max-agents", "30"});
  ASSERT_TRUE(listed.ok()) << listed.status().message();
  EXPECT_EQ(listed->interfaces.max_agents, 30u);

  auto malformed = Parse({"stream", "--agent", "ssm://tag:Env", "-w", "x"});
  ASSERT_FALSE(malformed.ok());
  EXPECT_NE(malformed.status().message().find("tag:KEY=VALUE needs an '='"), std::string::npos)
      << malformed.status().message();
  EXPECT_FALSE(Parse({"interfaces", "--agent", "ssm://tag:=x"}).ok());

  auto record = Parse({"record", "list", "--agent", "ssm://tag:Env=prod"});
  ASSERT_FALSE(record.ok());
  EXPECT_NE(record.status().message().find("not a selection of instances"), std::string::npos)
      << record.status().message();
}

}  // namespace
}  // namespace capd::client

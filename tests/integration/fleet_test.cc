// capctl --agent ssm://tag:... and ssm://asg:... (issue 22 item 1) against a stand-in for the
// AWS CLI (tests/support/aws-standin/aws, first on PATH) that answers the describe calls with
// recorded JSON of the real shape (tests/data/aws/) and carries each SSM port forward into the
// namespace standing for the instance.
//
// Topology: one TestNetwork per instance (tests/support/test_network.h): capd in its agent
// namespace, as deployed (--user nobody), listening on that namespace's 127.0.0.1:50051 as on an
// instance's loopback, capturing veth0 (its default-route interface, as ens5 is on EC2); UDP sent
// from the peer namespace to 10.200.0.1:7000 with payloads of the instance's own. capctl runs in
// the test's own namespace, reaching each agent only through the stand-in's forward. tshark reads
// the merged file as an independent reader.
//
// No sleeps as synchronisation: every wait polls a process, a log line or the capture file.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/agent_fixture.h"
#include "tests/support/capture_file.h"
#include "tests/support/pcapng_file.h"
#include "tests/support/programs.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_network.h"

namespace capd::test {
namespace {

constexpr uint16_t kUdpPort = 7000;

// An instance of the recorded fixtures and the namespace standing for it.
struct Instance {
  std::string id;
  std::string name;  // its Name tag
  std::string Label() const { return name.empty() ? id : id + " (" + name + ")"; }
  std::unique_ptr<TestNetwork> network;
  std::unique_ptr<Subprocess> capd;
  UniqueFd sink;
};

const std::vector<std::pair<std::string, std::string>> kWeb = {
    {"i-0a1b2c3d4e5f60001", "web-1"},
    {"i-0a1b2c3d4e5f60002", "web-2"},
    {"i-0a1b2c3d4e5f60003", "web-3"},
};

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, packet capture)";
    if (!HaveProgram("socat")) GTEST_SKIP() << "needs socat (apt-get install socat)";
    dir_ = std::make_unique<TestDir>();
    ASSERT_TRUE(dir_->ok());
    std::filesystem::create_directories(AwsDir() / "sessions");
    // The test binary's folder holds no copy: the stand-in is read where it is in the sources.
    standin_ = std::filesystem::path(CAPD_SOURCE_DIR) / "tests/support/aws-standin";
  }

  void TearDown() override {
    for (auto& instance : instances_) {
      if (!instance->capd) continue;
      EXPECT_TRUE(instance->capd->Running()) << instance->capd->Describe();
      instance->capd->Signal(SIGTERM);
      const auto status = instance->capd->WaitFor(kExitTimeout);
      EXPECT_TRUE(status.has_value() && status->Exited(0)) << instance->capd->Describe();
    }
    if (HasFailure()) {
      std::fprintf(stderr, "aws calls:\n%s\n", ReadFileToString(AwsDir() / "calls.log").c_str());
    }
    for (auto& instance : instances_) KillForwardsInto(instance->network->agent_ns());
  }

  // The stand-in's port forwards into `netns` that outlived capctl (a failed test kills capctl
  // with SIGKILL, so it cannot stop its tunnels): found by the namespace name, unique to this
  // test, in their command line.
  static void KillForwardsInto(const std::string& netns) {
    const std::string needle = "EXEC:ip netns exec " + netns + " ";
    std::error_code error;  // processes come and go while /proc is listed
    for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
      const std::string name = entry.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      const std::string cmdline = ReadFileToString(entry.path() / "cmdline");
      if (cmdline.rfind("socat", 0) == 0 && cmdline.find(needle) != std::string::npos) {
        ::kill(static_cast<pid_t>(std::stol(name)), SIGTERM);
      }
    }
  }

  std::filesystem::path AwsDir() const { return dir_->File("aws"); }
  std::filesystem::path File(std::string_view name) const { return dir_->File(name); }

  // What the stand-in answers to describe-instances and describe-instance-information.
  void Answer(const std::string& instances, const std::string& information) {
    const std::filesystem::path data = std::filesystem::path(CAPD_SOURCE_DIR) / "tests/data/aws";
    std::filesystem::copy_file(data / instances, AwsDir() / "describe-instances.json",
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(data / information, AwsDir() / "describe-instance-information.json",
                               std::filesystem::copy_options::overwrite_existing);
  }

  // A namespace pair with capd --user nobody listening on its 127.0.0.1:50051; the stand-in
  // forwards SSM sessions to `id` there unless `reachable` is false.
  void StartInstance(const std::string& id, const std::string& name, bool reachable = true) {
    auto instance = std::make_unique<Instance>();
    instance->id = id;
    instance->name = name;
    auto network = TestNetwork::Create();
    if (!network.ok() && network.status().code() == StatusCode::kFailedPrecondition) {
      GTEST_SKIP() << network.status().message();
    }
    ASSERT_TRUE(network.ok()) << network.status().message();
    instance->network = std::move(network).value();
    ASSERT_TRUE(instance->network->AddDefaultRoute().ok());
    SubprocessOptions options;
    options.argv = {kCapdPath,
                    "--listen",
                    kAgentTarget,
                    "--name",
                    (name.empty() ? id : name) + "-host",
                    "--no-metadata",
                    "--user",
                    "nobody",
                    "--log-level",
                    "info"};
    options.netns = instance->network->agent_ns();
    options.stderr_path = File("capd-" + id + ".err");
    auto capd = Subprocess::Start(std::move(options));
    ASSERT_TRUE(capd.ok()) << capd.status().message();
    instance->capd = std::move(capd).value();
    ASSERT_TRUE(
        instance->capd->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
        << instance->capd->Describe();
    auto sink =
        OpenUdpSocketIn(instance->network->agent_ns(), TestNetwork::kAgentAddress, kUdpPort);
    ASSERT_TRUE(sink.ok()) << sink.status().message();
    instance->sink = std::move(sink).value();
    if (reachable) std::ofstream(AwsDir() / "sessions" / id) << instance->network->agent_ns();
    instances_.push_back(std::move(instance));
  }

  // capctl ARGS with the stand-in first on PATH, in the test's own namespace.
  void StartCapctl(const std::vector<std::string>& args, std::unique_ptr<Subprocess>* out) {
    const char* path = std::getenv("PATH");
    SubprocessOptions options;
    options.argv = {"env",
                    "PATH=" + standin_.string() + ":" + (path != nullptr ? path : "/usr/bin:/bin"),
                    "AWS_STANDIN_DIR=" + AwsDir().string(),
                    "AWS_PROFILE=capd-test",
                    "AWS_REGION=eu-west-1",
                    kCapctlPath};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.stdout_path = File("capctl.out");
    options.stderr_path = File("capctl.err");
    auto process = Subprocess::Start(std::move(options));
    ASSERT_TRUE(process.ok()) << process.status().message();
    *out = std::move(process).value();
  }

  void ExpectExit(Subprocess& process, int code) {
    const auto status = process.WaitFor(kExitTimeout);
    ASSERT_TRUE(status.has_value()) << "did not end: " << process.Describe();
    EXPECT_TRUE(status->Exited(code)) << "expected exit " << code << ": " << process.Describe();
  }

  // The stand-in's calls, one line each ("ARGS|AWS_PROFILE=..|AWS_REGION=..").
  std::vector<std::string> Calls() const {
    std::vector<std::string> calls;
    std::ifstream in(AwsDir() / "calls.log");
    for (std::string line; std::getline(in, line);) calls.push_back(line);
    return calls;
  }
  size_t CallsOf(const std::string& what) const {
    const auto calls = Calls();
    return static_cast<size_t>(std::count_if(calls.begin(), calls.end(), [&](const auto& c) {
      return c.find(what) != std::string::npos;
    }));
  }

  // `count` datagrams "<name>-<i>-..." from the instance's peer namespace to its veth0.
  std::vector<std::string> Send(const Instance& instance, int count) {
    auto payloads = MakePayloads(count, instance.name);
    auto peer = OpenUdpSocketIn(instance.network->peer_ns());
    EXPECT_TRUE(peer.ok()) << peer.status().message();
    if (!peer.ok()) return {};
    for (const std::string& payload : payloads) {
      EXPECT_TRUE(SendUdp(peer->get(), TestNetwork::kAgentAddress, kUdpPort, payload).ok());
    }
    return payloads;
  }

  // The UDP payloads filed under each interface name of the pcapng file, in file order.
  static std::map<std::string, std::vector<std::string>> PayloadsByInterface(
      const PcapngFile& file) {
    std::map<std::string, std::vector<std::string>> out;
    for (const PcapngPacket& p : file.packets) {
      uint16_t dst = 0;
      const CapturedPacket packet = ToCapturedPacket(file, p);  // the payload points into it
      const auto payload = UdpPayload(packet, &dst);
      if (payload && dst == kUdpPort) {
        out[file.interfaces.at(p.interface_id).name].emplace_back(*payload);
      }
    }
    return out;
  }

  // Polls the capture file until it holds every payload of `expected`.
  bool WaitForPayloads(const std::filesystem::path& path, Subprocess& capctl,
                       const std::map<std::string, std::vector<std::string>>& expected) {
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (std::chrono::steady_clock::now() < deadline && capctl.Running()) {
      auto file = ReadPcapng(path);  // may meet a half-written block: polled again
      if (file.ok() && PayloadsByInterface(*file) == expected) return true;
      capctl.WaitFor(std::chrono::milliseconds(20));
    }
    return false;
  }

  // tshark's count of packets per interface name (frame.interface_name) of a capture file.
  static std::map<std::string, int> TsharkInterfaces(const std::filesystem::path& path) {
    const CommandResult r =
        RunCommand({"tshark", "-n", "-r", path.string(), "-Y", "udp.port == 7000", "-T", "fields",
                    "-e", "frame.interface_name"});
    EXPECT_TRUE(r.status.Exited(0)) << r.output;
    std::map<std::string, int> out;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line.rfind("Running as user", 0) != 0) ++out[line];
    }
    return out;
  }

  std::unique_ptr<TestDir> dir_;
  std::filesystem::path standin_;
  std::vector<std::unique_ptr<Instance>> instances_;
};

// Three instances selected by two tags, merged into one pcapng: tshark sees three interfaces
// named after the instances and their Name tags, each with its own namespace's packets.
TEST_F(FleetTest, ThreeInstancesByTagMergedIntoOneStream) {
  if (!HaveProgram("tshark")) GTEST_SKIP() << "needs tshark (apt-get install tshark)";
  Answer("describe-instances-web.json", "describe-instance-information.json");
  for (const auto& [id, name] : kWeb) ASSERT_NO_FATAL_FAILURE(StartInstance(id, name));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartCapctl({"stream", "--agent", "ssm://tag:Env=prod,tag:Role=web", "-f",
                                       "udp port 7000", "-w", File("out.pcapng").string()},
                                      &capctl));
  for (const auto& instance : instances_) {
    ASSERT_TRUE(capctl->WaitForStderr("capctl: capturing on " + instance->Label() + ":veth0 (",
                                      kStartTimeout))
        << capctl->Describe();
  }
  std::map<std::string, std::vector<std::string>> expected;
  for (const auto& instance : instances_) {
    expected[instance->Label() + ":veth0"] = Send(*instance, 10);
  }
  ASSERT_TRUE(WaitForPayloads(File("out.pcapng"), *capctl, expected)) << capctl->Describe();
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));

  auto file = ReadPcapng(File("out.pcapng"));
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(PayloadsByInterface(*file), expected);
  EXPECT_EQ(TsharkInterfaces(File("out.pcapng")),
            (std::map<std::string, int>{{"i-0a1b2c3d4e5f60001 (web-1):veth0", 10},
                                        {"i-0a1b2c3d4e5f60002 (web-2):veth0", 10},
                                        {"i-0a1b2c3d4e5f60003 (web-3):veth0", 10}}));
  // The calls a user's IAM policy must allow, with the tags as filters, under the user's own
  // profile and region.
  EXPECT_EQ(CallsOf("ec2 describe-instances --filters Name=tag:Env,Values=prod "
                    "Name=tag:Role,Values=web Name=instance-state-name,Values=running --output "
                    "json|AWS_PROFILE=capd-test|AWS_REGION=eu-west-1"),
            1u);
  EXPECT_EQ(CallsOf("ssm describe-instance-information --filters Key=InstanceIds,Values="
                    "i-0a1b2c3d4e5f60001,i-0a1b2c3d4e5f60002,i-0a1b2c3d4e5f60003 --output json"),
            1u);
  EXPECT_EQ(CallsOf("ssm start-session --target i-0a1b2c3d4e5f6000"), 3u);
}

// web-3's SSM session fails: one line names it, web-1 and web-2 stream, and capctl's exit
// status says that not every instance was captured.
TEST_F(FleetTest, AnInstanceWhoseForwardFailsIsReportedAndTheOthersStream) {
  Answer("describe-instances-web.json", "describe-instance-information.json");
  ASSERT_NO_FATAL_FAILURE(StartInstance(kWeb[0].first, kWeb[0].second));
  ASSERT_NO_FATAL_FAILURE(StartInstance(kWeb[1].first, kWeb[1].second));
  ASSERT_NO_FATAL_FAILURE(StartInstance(kWeb[2].first, kWeb[2].second, /*reachable=*/false));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartCapctl({"stream", "--agent", "ssm://tag:Env=prod", "-f",
                                       "udp port 7000", "-w", File("out.pcapng").string()},
                                      &capctl));
  for (size_t k = 0; k < 2; ++k) {
    ASSERT_TRUE(capctl->WaitForStderr("capctl: capturing on " + instances_[k]->Label() + ":veth0 (",
                                      kStartTimeout))
        << capctl->Describe();
  }
  std::map<std::string, std::vector<std::string>> expected;
  for (size_t k = 0; k < 2; ++k) {
    expected[instances_[k]->Label() + ":veth0"] = Send(*instances_[k], 5);
  }
  Send(*instances_[2], 5);  // captured by nobody
  ASSERT_TRUE(WaitForPayloads(File("out.pcapng"), *capctl, expected)) << capctl->Describe();
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 1));
  const std::string err = capctl->Stderr();
  EXPECT_NE(err.find("capctl: i-0a1b2c3d4e5f60003 (web-3): SSM session to i-0a1b2c3d4e5f60003 "
                     "failed: An error occurred (TargetNotConnected) when calling the "
                     "StartSession operation: i-0a1b2c3d4e5f60003 is not connected.; the others "
                     "go on\n"),
            std::string::npos)
      << err;
  auto file = ReadPcapng(File("out.pcapng"));
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(PayloadsByInterface(*file), expected);
}

// Instances SSM does not see online are left out before any session: one line each, the
// others listed, exit 1. A selection of which no instance can be reached says so once.
TEST_F(FleetTest, InstancesNotOnlineInSsmAreLeftOutAndTheOthersListed) {
  Answer("describe-instances-web.json", "describe-instance-information-web2-lost.json");
  ASSERT_NO_FATAL_FAILURE(StartInstance(kWeb[0].first, kWeb[0].second));
  std::unique_ptr<Subprocess> listed;
  ASSERT_NO_FATAL_FAILURE(StartCapctl({"interfaces", "--agent", "ssm://tag:Env=prod"}, &listed));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*listed, 1));
  EXPECT_NE(listed->Stdout().find(") at i-0a1b2c3d4e5f60001 (web-1)\n"), std::string::npos)
      << listed->Describe();
  EXPECT_EQ(listed->Stderr(),
            "capctl: i-0a1b2c3d4e5f60002 (web-2): not online in SSM (PingStatus "
            "ConnectionLost); the others go on\n"
            "capctl: i-0a1b2c3d4e5f60003 (web-3): not managed by SSM (no SSM Agent registered "
            "it: is the agent running, and does the instance profile allow it, e.g. "
            "AmazonSSMManagedInstanceCore?); the others go on\n");
  EXPECT_EQ(CallsOf("start-session --target i-0a1b2c3d4e5f60001"), 1u);
  EXPECT_EQ(CallsOf("start-session"), 1u);

  // Only web-1 is online, and its forward fails: nothing to capture.
  std::filesystem::remove(AwsDir() / "sessions" / kWeb[0].first);
  std::unique_ptr<Subprocess> none;
  ASSERT_NO_FATAL_FAILURE(StartCapctl(
      {"stream", "--agent", "ssm://tag:Env=prod", "-w", File("out.pcapng").string()}, &none));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*none, 1));
  const std::string err = none->Stderr();
  EXPECT_NE(err.find("capctl: i-0a1b2c3d4e5f60001 (web-1): SSM session to i-0a1b2c3d4e5f60001 "
                     "failed: An error occurred (TargetNotConnected)"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("\ncapctl: none of the selected instances could be captured\n"),
            std::string::npos)
      << err;
  EXPECT_EQ(CountOccurrences(err, "\n"), 4u) << err;
  EXPECT_FALSE(std::filesystem::exists(File("out.pcapng")));
}

// 4 instances match and --max-agents 3: refused with the count and the flag before SSM is asked
// anything or a session opens; --max-agents 4 lists all four (capctl interfaces).
TEST_F(FleetTest, TheCapIsEnforcedBeforeAnySessionOpensAndCanBeRaised) {
  Answer("describe-instances-web4.json", "describe-instance-information.json");
  ASSERT_NO_FATAL_FAILURE(StartInstance(kWeb[0].first, kWeb[0].second));
  // The other three sessions lead to the same agent: the listing is what is checked.
  for (const char* id : {"i-0a1b2c3d4e5f60002", "i-0a1b2c3d4e5f60003", "i-0a1b2c3d4e5f60004"}) {
    std::ofstream(AwsDir() / "sessions" / id) << instances_[0]->network->agent_ns();
  }
  std::unique_ptr<Subprocess> refused;
  ASSERT_NO_FATAL_FAILURE(StartCapctl({"stream", "--agent", "ssm://tag:Role=web", "--max-agents",
                                       "3", "-w", File("out.pcapng").string()},
                                      &refused));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*refused, 2));
  EXPECT_EQ(refused->Stderr(),
            "capctl: 4 instances match the selection, more than --max-agents 3 allows; give "
            "--max-agents 4 to open them all, or narrow the selection\n");
  EXPECT_EQ(CallsOf("start-session"), 0u);
  EXPECT_EQ(CallsOf("describe-instance-information"), 0u);
  EXPECT_FALSE(std::filesystem::exists(File("out.pcapng")));

  std::unique_ptr<Subprocess> listed;
  ASSERT_NO_FATAL_FAILURE(
      StartCapctl({"interfaces", "--agent", "ssm://tag:Role=web", "--max-agents", "4"}, &listed));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*listed, 0));
  const std::string out = listed->Stdout();
  for (int k = 1; k <= 4; ++k) {
    const std::string at =
        ") at i-0a1b2c3d4e5f6000" + std::to_string(k) + " (web-" + std::to_string(k) + ")\n";
    EXPECT_NE(out.find(at), std::string::npos) << out;
  }
  EXPECT_EQ(CountOccurrences(out, "* veth0"), 4u) << out;
  EXPECT_EQ(CallsOf("start-session"), 4u);
}

// ssm://asg:NAME selects by the tag Auto Scaling puts on its instances; instances without a
// Name tag are named by their id alone.
TEST_F(FleetTest, AutoScalingGroupSelection) {
  Answer("describe-instances-asg.json", "describe-instance-information.json");
  ASSERT_NO_FATAL_FAILURE(StartInstance("i-0a1b2c3d4e5f60021", ""));
  ASSERT_NO_FATAL_FAILURE(StartInstance("i-0a1b2c3d4e5f60022", ""));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartCapctl({"stream", "--agent", "ssm://asg:capd-workers/veth0", "-f",
                                       "udp port 7000", "-w", File("out.pcapng").string()},
                                      &capctl));
  std::map<std::string, std::vector<std::string>> expected;
  for (const auto& instance : instances_) {
    ASSERT_TRUE(
        capctl->WaitForStderr("capctl: capturing on " + instance->id + ":veth0 (", kStartTimeout))
        << capctl->Describe();
  }
  for (const auto& instance : instances_) expected[instance->id + ":veth0"] = Send(*instance, 3);
  ASSERT_TRUE(WaitForPayloads(File("out.pcapng"), *capctl, expected)) << capctl->Describe();
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  EXPECT_EQ(CallsOf("ec2 describe-instances --filters "
                    "Name=tag:aws:autoscaling:groupName,Values=capd-workers "
                    "Name=instance-state-name,Values=running --output json"),
            1u);
}

// No running instance matches: one clear line, exit 2, nothing opened.
TEST_F(FleetTest, ZeroMatchesIsAClearErrorWithExit2) {
  Answer("describe-instances-none.json", "describe-instance-information.json");
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartCapctl(
      {"stream", "--agent", "ssm://tag:Env=staging", "-w", File("out.pcapng").string()}, &capctl));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 2));
  EXPECT_EQ(capctl->Stderr(),
            "capctl: ssm://tag:Env=staging: no running instance matches (aws ec2 "
            "describe-instances found none; check the tag or group name, and "
            "AWS_REGION/AWS_PROFILE)\n");
  EXPECT_EQ(Calls().size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(File("out.pcapng")));
}

}  // namespace
}  // namespace capd::test

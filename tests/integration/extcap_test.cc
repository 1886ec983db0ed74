// capctl as a Wireshark extcap: its answers to Wireshark's queries (interfaces, DLTs, the
// configuration dialog and its reload from the agent, capture filter checks), `capctl extcap
// install` into a temporary HOME, tshark capturing through it (`tshark -i capd -o
// extcap.capd.agent:... -f FILTER -c N`), and the control pipes Wireshark's GUI reads.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/agent_fixture.h"
#include "tests/support/programs.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7000;
constexpr uint16_t kOtherPort = 7001;
constexpr char kUdpFilter[] = "udp port 7000";
constexpr char kCaptureOpenLine[] = "stream on veth0: link type";

// One extcap sentence: "arg {number=0}{call=--agent}..." -> kind "arg", fields by key.
struct Sentence {
  std::string kind;
  std::map<std::string, std::string> fields;
};

// The value of `key`, "" when the sentence has none.
std::string Field(const Sentence& sentence, const std::string& key) {
  const auto it = sentence.fields.find(key);
  return it == sentence.fields.end() ? "" : it->second;
}

// Parses every line of `text`; fails the test on a line that is not a sentence.
std::vector<Sentence> ParseSentences(const std::string& text) {
  std::vector<Sentence> sentences;
  std::istringstream in(text);
  const std::regex field(R"(\{([a-z]+)=([^{}]*)\})");
  for (std::string line; std::getline(in, line);) {
    Sentence s;
    const size_t space = line.find(' ');
    EXPECT_NE(space, std::string::npos) << "not a sentence: " << line;
    if (space == std::string::npos) continue;
    s.kind = line.substr(0, space);
    std::string rest = line.substr(space + 1);
    // The whole rest must be {key=value} groups, nothing between them.
    EXPECT_TRUE(std::regex_match(rest, std::regex(R"((\{[a-z]+=[^{}]*\})+)"))) << line;
    for (std::sregex_iterator it(rest.begin(), rest.end(), field), end; it != end; ++it) {
      EXPECT_EQ(s.fields.count((*it)[1].str()), 0u) << "repeated key in " << line;
      s.fields[(*it)[1].str()] = (*it)[2].str();
    }
    sentences.push_back(std::move(s));
  }
  return sentences;
}

// capctl's stdout alone (stderr separately), run outside any namespace.
struct Output {
  ExitStatus status;
  std::string out;
  std::string err;
};

class ExtcapTest : public AgentTest {
 protected:
  Output Capctl(const std::vector<std::string>& args, const std::string& netns = "",
                const std::string& program = kCapctlPath) {
    SubprocessOptions options;
    options.argv = {program};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.netns = netns;
    const std::string name = "capctl-" + std::to_string(++runs_);
    options.stdout_path = File(name + ".out");
    options.stderr_path = File(name + ".err");
    auto process = Subprocess::Start(std::move(options));
    EXPECT_TRUE(process.ok()) << process.status().message();
    if (!process.ok()) return {};
    const auto status = (*process)->WaitFor(kExitTimeout);
    EXPECT_TRUE(status.has_value()) << (*process)->Describe();
    return {status.value_or(ExitStatus{}), (*process)->Stdout(), (*process)->Stderr()};
  }

  // A HOME of the test's own, as Wireshark started by its user would see it.
  std::vector<std::string> HomeEnv() {
    const auto home = File("home");
    std::filesystem::create_directories(home);
    return {"env", "HOME=" + home.string(), "XDG_CONFIG_HOME=" + (home / ".config").string()};
  }

  int runs_ = 0;
};

TEST_F(ExtcapTest, InterfacesAndDltsUnderAnyName) {
  // Wireshark runs whatever is in its extcap folder: a link named `capd` behaves the same.
  const auto link = File("capd");
  std::filesystem::create_symlink(kCapctlPath, link);
  for (const std::string& program : {std::string(kCapctlPath), link.string()}) {
    SCOPED_TRACE(program);
    const Output listed = Capctl({"--extcap-interfaces", "--extcap-version=4.0"}, "", program);
    EXPECT_TRUE(listed.status.Exited(0)) << listed.status << listed.err;
    EXPECT_EQ(listed.err, "");
    const auto sentences = ParseSentences(listed.out);
    ASSERT_EQ(sentences.size(), 8u) << listed.out;
    EXPECT_EQ(sentences[0].kind, "extcap");
    EXPECT_TRUE(std::regex_match(Field(sentences[0], "version"), std::regex(R"(\d+\.\d+\.\d+)")))
        << listed.out;
    EXPECT_EQ(sentences[1].kind, "interface");
    EXPECT_EQ(Field(sentences[1], "value"), "capd");
    EXPECT_EQ(Field(sentences[1], "display"), "capd remote capture");
    EXPECT_EQ(sentences[2].kind, "control");
    EXPECT_EQ(Field(sentences[2], "type"), "button");
    EXPECT_EQ(Field(sentences[2], "role"), "logger");
    // The toolbar (toolbar_test.cc drives it): three strings, Apply, and the drops shown.
    const std::vector<std::pair<std::string, std::string>> toolbar = {{"string", "Capture filter"},
                                                                      {"string", "VNIs"},
                                                                      {"string", "Inner filter"},
                                                                      {"button", "Apply"},
                                                                      {"string", "Drops"}};
    for (size_t i = 0; i < toolbar.size(); ++i) {
      EXPECT_EQ(sentences[3 + i].kind, "control");
      EXPECT_EQ(Field(sentences[3 + i], "number"), std::to_string(i + 1));
      EXPECT_EQ(Field(sentences[3 + i], "type"), toolbar[i].first);
      EXPECT_EQ(Field(sentences[3 + i], "display"), toolbar[i].second);
    }

    const Output version = Capctl({"--extcap-version=4.2"}, "", program);
    EXPECT_TRUE(version.status.Exited(0)) << version.status << version.err;
    ASSERT_EQ(ParseSentences(version.out).size(), 1u) << version.out;
    EXPECT_EQ(ParseSentences(version.out)[0].kind, "extcap");

    const Output dlts = Capctl({"--extcap-dlts", "--extcap-interface", "capd"}, "", program);
    EXPECT_TRUE(dlts.status.Exited(0)) << dlts.status << dlts.err;
    const auto dlt = ParseSentences(dlts.out);
    ASSERT_EQ(dlt.size(), 1u) << dlts.out;
    EXPECT_EQ(dlt[0].kind, "dlt");
    EXPECT_EQ(Field(dlt[0], "number"), "1");
    EXPECT_EQ(Field(dlt[0], "name"), "EN10MB");
  }
  const Output unknown = Capctl({"--extcap-dlts", "--extcap-interface", "eth0"});
  EXPECT_TRUE(unknown.status.Exited(2)) << unknown.status;
  EXPECT_EQ(unknown.out, "");
  EXPECT_NE(unknown.err.find("unknown extcap interface 'eth0'"), std::string::npos) << unknown.err;
}

TEST_F(ExtcapTest, ConfigDescribesEveryArgument) {
  const Output config = Capctl({"--extcap-config", "--extcap-interface", "capd"});
  ASSERT_TRUE(config.status.Exited(0)) << config.status << config.err;
  EXPECT_EQ(config.err, "");
  const auto sentences = ParseSentences(config.out);
  std::map<std::string, Sentence> args;                 // by call
  std::map<std::string, std::string> call_of;           // number -> call
  std::map<std::string, std::vector<Sentence>> values;  // by arg number
  for (const Sentence& s : sentences) {
    if (s.kind == "arg") {
      for (const char* key : {"number", "call", "display", "type"}) {
        EXPECT_TRUE(s.fields.count(key)) << "arg without " << key << ": " << config.out;
      }
      EXPECT_TRUE(call_of.emplace(s.fields.at("number"), s.fields.at("call")).second)
          << "number given twice: " << s.fields.at("number");
      EXPECT_TRUE(args.emplace(s.fields.at("call"), s).second) << s.fields.at("call");
    } else if (s.kind == "value") {
      values[s.fields.at("arg")].push_back(s);
    } else {
      ADD_FAILURE() << "unexpected sentence kind " << s.kind;
    }
  }
  const std::map<std::string, std::string> expected_types = {
      {"--agent", "string"},        {"--remote-interface", "selector"},
      {"--decap", "selector"},      {"--vni", "string"},
      {"--inner-filter", "string"}, {"--snaplen", "unsigned"},
      {"--tls-ca", "fileselect"},   {"--tls-cert", "fileselect"},
      {"--tls-key", "fileselect"},  {"--token-file", "fileselect"},
      {"--since", "string"},        {"--start-on", "string"},
      {"--before", "double"},       {"--stop-on", "string"},
      {"--after", "double"},        {"--after-count", "unsigned"}};
  for (const auto& [call, type] : expected_types) {
    ASSERT_TRUE(args.count(call)) << call << " missing: " << config.out;
    EXPECT_EQ(Field(args[call], "type"), type) << call;
  }
  EXPECT_EQ(Field(args["--agent"], "default"), "127.0.0.1:50051");
  EXPECT_EQ(Field(args["--remote-interface"], "reload"), "true");
  // No defaults: Wireshark passes a default, and a passed --before needs --start-on.
  for (const char* call :
       {"--since", "--start-on", "--before", "--stop-on", "--after", "--after-count"}) {
    EXPECT_EQ(Field(args[call], "default"), "") << call;
  }
  // Every value belongs to an argument; every selector has values and exactly one default.
  for (const auto& [number, list] : values) {
    ASSERT_TRUE(call_of.count(number)) << "value for unknown arg " << number;
  }
  for (const auto& [call, arg] : args) {
    if (arg.fields.at("type") != "selector") continue;
    const auto& list = values[arg.fields.at("number")];
    EXPECT_FALSE(list.empty()) << call;
    size_t defaults = 0;
    for (const Sentence& v : list) defaults += v.fields.count("default");
    EXPECT_EQ(defaults, 1u) << call;
  }
  std::set<std::string> decap;
  for (const Sentence& v : values[Field(args["--decap"], "number")]) {
    decap.insert(Field(v, "value"));
  }
  EXPECT_EQ(decap, (std::set<std::string>{"none", "vxlan", "geneve", "auto"}));
}

TEST_F(ExtcapTest, CaptureFilterCheck) {
  // Valid: no output at all (Wireshark's contract); invalid: the reason on the first line.
  for (const char* filter : {"udp port 7000", "", "tcp and not port 22"}) {
    const Output ok = Capctl({"--extcap-interface", "capd", "--extcap-capture-filter", filter});
    EXPECT_TRUE(ok.status.Exited(0)) << filter << ": " << ok.status;
    EXPECT_EQ(ok.out, "") << filter;
  }
  const Output bad = Capctl({"--extcap-capture-filter", "udp port", "--extcap-interface", "capd"});
  EXPECT_TRUE(bad.status.Exited(0)) << bad.status;
  EXPECT_NE(bad.out.find("udp port"), std::string::npos) << bad.out;
  EXPECT_EQ(std::count(bad.out.begin(), bad.out.end(), '\n'), 1) << bad.out;
}

TEST_F(ExtcapTest, ReloadListsTheAgentsInterfaces) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const Output reload =
      Capctl({"--extcap-config", "--extcap-interface", "capd", "--extcap-reload-option",
              "remote-interface", "--agent", kAgentTarget, "--decap", "none"},
             network().agent_ns());
  ASSERT_TRUE(reload.status.Exited(0)) << reload.status << reload.err;
  std::set<std::string> listed;
  for (const Sentence& s : ParseSentences(reload.out)) {
    EXPECT_EQ(s.kind, "value");
    EXPECT_EQ(s.fields.at("arg"), "1");  // --remote-interface
    listed.insert(s.fields.at("value"));
  }
  EXPECT_TRUE(listed.count("veth0")) << reload.out;
  EXPECT_TRUE(listed.count("lo")) << reload.out;

  // An agent that cannot be reached: the default entry, saying why.
  const Output unreachable =
      Capctl({"--extcap-config", "--extcap-interface", "capd", "--extcap-reload-option",
              "remote-interface", "--agent", "127.0.0.1:1"},
             network().agent_ns());
  ASSERT_TRUE(unreachable.status.Exited(0)) << unreachable.status;
  const auto sentences = ParseSentences(unreachable.out);
  ASSERT_EQ(sentences.size(), 1u) << unreachable.out;
  EXPECT_EQ(sentences[0].fields.at("value"), "*");
  EXPECT_NE(sentences[0].fields.at("display").find("cannot reach agent"), std::string::npos)
      << unreachable.out;
}

// `capctl extcap install` into a temporary HOME, then tshark (with that HOME) lists capd and
// captures through it with its preferences and a capture filter.
TEST_F(ExtcapTest, InstalledTsharkCapturesExactlyTheMatchingPackets) {
  if (!HaveProgram("tshark")) GTEST_SKIP() << "needs tshark (apt-get install tshark)";
  constexpr int kCount = 12;
  const std::vector<std::string> env = HomeEnv();

  auto with_env = [&env](std::vector<std::string> argv) {
    argv.insert(argv.begin(), env.begin(), env.end());
    return argv;
  };
  const CommandResult install = RunCommand(with_env({kCapctlPath, "extcap", "install"}));
  ASSERT_TRUE(install.status.Exited(0)) << install.status << install.output;

  // Where Wireshark reads personal extcaps under that HOME: named by 4.2 and later, the
  // personal configuration's extcap folder before.
  const CommandResult folders = RunCommand(with_env({"tshark", "-G", "folders"}));
  ASSERT_TRUE(folders.status.Exited(0)) << folders.output;
  std::smatch m;
  std::string folder;
  if (std::regex_search(folders.output, m, std::regex(R"(Personal Extcap path:\s*\t([^\n]+))"))) {
    folder = m[1].str();
  } else {
    ASSERT_TRUE(
        std::regex_search(folders.output, m, std::regex(R"(Personal configuration:\s*\t([^\n]+))")))
        << folders.output;
    folder = m[1].str() + "/extcap";
  }
  ASSERT_EQ(folder.rfind(File("home").string(), 0), 0u) << folder << " is not under the HOME";
  const std::filesystem::path link = folder + "/capctl";
  ASSERT_TRUE(std::filesystem::is_symlink(link)) << install.output;
  EXPECT_EQ(std::filesystem::canonical(link), std::filesystem::canonical(kCapctlPath));
  EXPECT_NE(install.output.find(link.string()), std::string::npos) << install.output;

  const CommandResult listed = RunCommand(with_env({"tshark", "-D"}));
  ASSERT_TRUE(listed.status.Exited(0)) << listed.output;
  EXPECT_NE(listed.output.find("capd (capd remote capture)"), std::string::npos) << listed.output;

  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd other_sink = AgentSocket(kDst, kOtherPort);
  std::unique_ptr<Subprocess> tshark;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("tshark",
            with_env({"tshark", "-n", "-i", "capd", "-o",
                      std::string("extcap.capd.agent:") + kAgentTarget, "-o",
                      std::string("extcap.capd.remoteinterface:") + kIface, "-f", kUdpFilter, "-c",
                      std::to_string(kCount), "-w", File("tshark.pcapng").string()}),
            &tshark));
  ASSERT_TRUE(agent().WaitForStderr(kCaptureOpenLine, kStartTimeout)) << agent().Describe() << "\n"
                                                                      << tshark->Describe();
  // The typed capture filter became the agent's filter.
  EXPECT_NE(agent().Stderr().find("interface 'veth0', filter 'udp port 7000'"), std::string::npos)
      << agent().Describe();

  // Matching and other datagrams interleaved: exactly the matching ones, in order.
  const auto payloads = MakePayloads(kCount, "extcap");
  const auto others = MakePayloads(kCount, "other");
  const UniqueFd peer = PeerSocket();
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kOtherPort, others[i]).ok());
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, payloads[i]).ok());
  }
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tshark, 0));
  EXPECT_EQ(tshark->Stderr().find("Error by extcap pipe"), std::string::npos) << tshark->Describe();
  ExpectUdpPayloads(ReadOrFail(File("tshark.pcapng")), payloads, kPort);
  // capctl (tshark's extcap child) ended its stream.
  EXPECT_TRUE(agent().WaitForStderr("stream on veth0 ended", kStartTimeout)) << agent().Describe();

  // The preference names install printed are the ones this Wireshark derived (a misspelt -o is
  // ignored silently): every one of them, and as many as tshark has.
  const CommandResult prefs = RunCommand(with_env({"tshark", "-G", "currentprefs"}));
  ASSERT_TRUE(prefs.status.Exited(0)) << prefs.output;
  std::smatch printed;
  ASSERT_TRUE(std::regex_search(install.output, printed,
                                std::regex(R"(tshark -o NAME:VALUE takes them: ([^\n]+))")))
      << install.output;
  const std::string names = printed[1].str();
  size_t named = 0;
  for (size_t at = 0; at < names.size();) {
    size_t end = names.find(", ", at);
    if (end == std::string::npos) end = names.size();
    const std::string name = names.substr(at, end - at);
    EXPECT_NE(prefs.output.find("#" + name + ":"), std::string::npos) << name;
    ++named;
    at = end + 2;
  }
  const std::regex tshark_pref(R"(#extcap\.capd\.[a-z]+:)");
  EXPECT_EQ(named, static_cast<size_t>(std::distance(
                       std::sregex_iterator(prefs.output.begin(), prefs.output.end(), tshark_pref),
                       std::sregex_iterator())));

  // uninstall takes it away again; a second uninstall finds nothing and says so.
  const CommandResult removed = RunCommand(with_env({kCapctlPath, "extcap", "uninstall"}));
  ASSERT_TRUE(removed.status.Exited(0)) << removed.output;
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(link))) << removed.output;
  const CommandResult relisted = RunCommand(with_env({"tshark", "-D"}));
  EXPECT_EQ(relisted.output.find("capd (capd remote capture)"), std::string::npos)
      << relisted.output;
  const CommandResult again = RunCommand(with_env({kCapctlPath, "extcap", "uninstall"}));
  EXPECT_TRUE(again.status.Exited(0)) << again.output;
  EXPECT_NE(again.output.find("nothing to remove"), std::string::npos) << again.output;
}

// Without tshark, install cannot ask Wireshark: it uses the folder Wireshark 4.0 reads (as capctl
// always chose), says so and names the folder of 4.2 and later; uninstall finds the same folder.
TEST_F(ExtcapTest, InstallWithoutTsharkSaysWhichFolderAndWhy) {
  std::vector<std::string> env = HomeEnv();
  env.push_back("PATH=" + File("empty-path").string());  // no tshark on it
  auto with_env = [&env](std::vector<std::string> argv) {
    argv.insert(argv.begin(), env.begin(), env.end());
    return argv;
  };
  const CommandResult install = RunCommand(with_env({kCapctlPath, "extcap", "install"}));
  ASSERT_TRUE(install.status.Exited(0)) << install.status << install.output;
  const std::filesystem::path link = File("home") / ".config/wireshark/extcap/capctl";
  EXPECT_TRUE(std::filesystem::is_symlink(link)) << install.output;
  EXPECT_NE(install.output.find("tshark is not installed"), std::string::npos) << install.output;
  EXPECT_NE(install.output.find((File("home") / ".local/lib/wireshark/extcap").string()),
            std::string::npos)
      << install.output;
  const CommandResult removed = RunCommand(with_env({kCapctlPath, "extcap", "uninstall"}));
  ASSERT_TRUE(removed.status.Exited(0)) << removed.output;
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(link))) << removed.output;
}

// What capctl --capture told Wireshark's GUI: the packets in the FIFO, and the control packets
// ('T', 3-byte length (payload + 2), control number, command, payload) on control-out.
struct GuiCapture {
  std::string pcapng;
  std::vector<std::string> status_messages;  // command 6: the status bar
  std::vector<std::string> log_entries;      // control 0, command 2: the log
  std::string stderr_text;
};

void ParseControl(const std::string& control, GuiCapture* out) {
  for (size_t at = 0; at < control.size();) {
    ASSERT_GE(control.size() - at, 6u) << "truncated control packet";
    ASSERT_EQ(control[at], 'T');
    const size_t length = (static_cast<uint8_t>(control[at + 1]) << 16) |
                          (static_cast<uint8_t>(control[at + 2]) << 8) |
                          static_cast<uint8_t>(control[at + 3]);
    ASSERT_GE(length, 2u);
    ASSERT_LE(at + 4 + length, control.size()) << "truncated control packet";
    const int number = static_cast<uint8_t>(control[at + 4]);
    const int command = static_cast<uint8_t>(control[at + 5]);
    const std::string payload = control.substr(at + 6, length - 2);
    if (command == 6) out->status_messages.push_back(payload);
    if (command == 2 && number == 0) out->log_entries.push_back(payload);
    at += 4 + length;
  }
}

class ExtcapGuiTest : public ExtcapTest {
 protected:
  // What Wireshark's GUI does with an extcap that declares a toolbar control: a FIFO for the
  // packets, and control pipes in both directions; capctl --capture for `agent` (capctl opens
  // control-in, else the GUI's blocking open would hang). Once the agent's capture is open,
  // `payloads` are sent; the GUI reads until the last one is in the FIFO and, when given,
  // `control_text` is on control-out, then stops capctl with SIGTERM (Wireshark's stop), which
  // must end it with 0.
  void RunGuiCapture(const std::string& agent, const std::vector<std::string>& payloads,
                     const std::string& control_text, GuiCapture* out) {
    const UniqueFd sink = AgentSocket(kDst, kPort);
    const std::string data = File("data.fifo").string();
    const std::string to_capctl = File("control-in.fifo").string();
    const std::string from_capctl = File("control-out.fifo").string();
    for (const auto& fifo : {data, to_capctl, from_capctl}) {
      ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
    }
    // Wireshark's reader ends, opened before capctl writes (non-blocking opens succeed at once).
    UniqueFd data_reader(::open(data.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    UniqueFd control_reader(::open(from_capctl.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    ASSERT_TRUE(data_reader.valid() && control_reader.valid()) << std::strerror(errno);

    std::unique_ptr<Subprocess> capctl;
    ASSERT_NO_FATAL_FAILURE(Spawn("capctl",
                                  {kCapctlPath,
                                   "--capture",
                                   "--extcap-interface",
                                   "capd",
                                   "--extcap-capture-filter",
                                   kUdpFilter,
                                   "--fifo",
                                   data,
                                   "--extcap-control-out",
                                   from_capctl,
                                   "--extcap-control-in",
                                   to_capctl,
                                   "--agent",
                                   agent,
                                   "--remote-interface",
                                   kIface,
                                   "--decap",
                                   "none",
                                   "--snaplen",
                                   "0",
                                   "--remote-port",
                                   "50051"},
                                  &capctl));
    // The GUI's side of control-in: opening it for writing succeeds once capctl holds it open.
    UniqueFd control_writer;
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (!control_writer.valid() && std::chrono::steady_clock::now() < deadline &&
           capctl->Running()) {
      control_writer.Reset(::open(to_capctl.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
      if (!control_writer.valid()) capctl->WaitFor(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(control_writer.valid())
        << "capctl never opened --extcap-control-in: " << capctl->Describe();
    const char initialized[] = {'T', 0, 0, 2, 0, 0};  // control 0, command 0 (Initialized)
    ASSERT_EQ(::write(control_writer.get(), initialized, sizeof initialized), 6);

    ASSERT_TRUE(agent_->WaitForStderr(kCaptureOpenLine, kStartTimeout)) << capctl->Describe();
    const UniqueFd peer = PeerSocket();
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
    std::string control;
    const auto read_deadline = std::chrono::steady_clock::now() + kStartTimeout;
    char buffer[65536];
    while ((out->pcapng.find(payloads.back()) == std::string::npos ||
            control.find(control_text) == std::string::npos) &&
           std::chrono::steady_clock::now() < read_deadline) {
      const ssize_t n = ::read(data_reader.get(), buffer, sizeof buffer);
      if (n > 0) out->pcapng.append(buffer, n);
      const ssize_t c = ::read(control_reader.get(), buffer, sizeof buffer);
      if (c > 0) control.append(buffer, c);
      if (n <= 0 && c <= 0) capctl->WaitFor(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(capctl->Signal(SIGTERM));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
    out->stderr_text = capctl->Stderr();
    for (ssize_t n; (n = ::read(data_reader.get(), buffer, sizeof buffer)) > 0;) {
      out->pcapng.append(buffer, n);
    }
    for (ssize_t n; (n = ::read(control_reader.get(), buffer, sizeof buffer)) > 0;) {
      control.append(buffer, n);
    }
    ASSERT_NO_FATAL_FAILURE(ParseControl(control, out));
  }
};

// Status bar and log messages on control-out in Wireshark's framing, nothing on stderr.
TEST_F(ExtcapGuiTest, ControlPipesCarryStatusAndLog) {
  constexpr int kCount = 5;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const auto payloads = MakePayloads(kCount, "control");
  GuiCapture gui;
  ASSERT_NO_FATAL_FAILURE(RunGuiCapture(kAgentTarget, payloads, "", &gui));
  EXPECT_EQ(gui.stderr_text, "") << "Wireshark shows an extcap's stderr as an error";
  std::ofstream(File("data.pcapng"), std::ios::binary) << gui.pcapng;
  ExpectUdpPayloads(ReadOrFail(File("data.pcapng")), payloads, kPort);
  ASSERT_GE(gui.status_messages.size(), 2u);
  EXPECT_EQ(gui.status_messages.front().rfind("capd: capturing on veth0", 0), 0u)
      << gui.status_messages.front();
  EXPECT_NE(gui.status_messages.back().find(std::to_string(kCount) + " packets written"),
            std::string::npos)
      << gui.status_messages.back();
  ASSERT_FALSE(gui.log_entries.empty());
  EXPECT_EQ(gui.log_entries.front().rfind("capctl: capturing on veth0", 0), 0u)
      << gui.log_entries.front();
  EXPECT_EQ(gui.log_entries.front().back(), '\n');
}

// A stream whose relay capd cannot identify (its peer helper lacks CAP_SYS_PTRACE and
// CAP_DAC_READ_SEARCH, as under a unit that grants only the capture capabilities; the relay is a
// root socat): Wireshark's status bar and log say that the relay's traffic is in the capture.
TEST_F(ExtcapGuiTest, UnidentifiedRelayIsAWarningInTheStatusBar) {
  if (!HaveProgram("socat")) GTEST_SKIP() << "needs socat (apt-get install socat)";
  ASSERT_NO_FATAL_FAILURE(
      Spawn("capd",
            {"setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--inh-caps",
             "-all,+net_raw,+net_admin", "--ambient-caps", "-all,+net_raw,+net_admin", "--",
             kCapdPath, "--listen", kAgentTarget, "--user", "nobody", "--no-metadata"},
            &agent_));
  ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
      << agent_->Describe();
  std::unique_ptr<Subprocess> relay;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("relay",
            {"socat", "-d", "-d", std::string("TCP-LISTEN:50053,bind=") + kDst + ",reuseaddr,fork",
             std::string("TCP:") + kAgentTarget},
            &relay));
  ASSERT_TRUE(relay->WaitForStderr("listening on", kStartTimeout)) << relay->Describe();
  GuiCapture gui;
  ASSERT_NO_FATAL_FAILURE(
      RunGuiCapture(std::string(kDst) + ":50053", MakePayloads(3, "relayed"), "warning: ", &gui));
  EXPECT_EQ(gui.stderr_text, "") << "Wireshark shows an extcap's stderr as an error";
  const auto warning =
      std::find_if(gui.status_messages.begin(), gui.status_messages.end(),
                   [](const std::string& m) { return m.rfind("capd: warning: agent ", 0) == 0; });
  ASSERT_NE(warning, gui.status_messages.end()) << "no warning in the status bar";
  EXPECT_NE(warning->find("could not identify the process relaying this stream"), std::string::npos)
      << *warning;
  EXPECT_TRUE(std::any_of(gui.log_entries.begin(), gui.log_entries.end(), [](const std::string& e) {
    return e.find("capctl: warning: agent ") != std::string::npos;
  })) << "no warning in the log";
}

// A capture that cannot start says why on stderr (Wireshark's "Error by extcap pipe") and
// exits non-zero.
TEST_F(ExtcapTest, FailedCaptureSaysWhyOnStderr) {
  const std::string data = File("data.fifo").string();
  ASSERT_EQ(::mkfifo(data.c_str(), 0600), 0) << std::strerror(errno);
  UniqueFd data_reader(::open(data.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  const Output failed = Capctl({"--capture", "--extcap-interface", "capd", "--fifo", data,
                                "--agent", "127.0.0.1:1", "--remote-interface", kIface},
                               network().agent_ns());
  EXPECT_TRUE(failed.status.Exited(1)) << failed.status << failed.err;
  EXPECT_NE(failed.err.find("capctl: cannot reach agent at 127.0.0.1:1"), std::string::npos)
      << failed.err;
  EXPECT_EQ(failed.out, "");

  const Output bad = Capctl({"--capture", "--extcap-interface", "capd", "--fifo", data, "--agent",
                             kAgentTarget, "--vni", "7"},
                            network().agent_ns());
  EXPECT_TRUE(bad.status.Exited(2)) << bad.status << bad.err;
  EXPECT_NE(bad.err.find("--vni and --inner-filter select decapsulated frames"), std::string::npos)
      << bad.err;
}

// tshark with the installed extcap, failing in each way a user meets: it ends on its own well
// before its -a duration, non-zero, with capctl's reason on its stderr ("Error by extcap pipe"),
// every time (the reason once raced the FIFO's end and was sometimes lost).
class ExtcapFailureTest : public ExtcapTest {
 protected:
  // A bound on how long tshark may take to give up, far below its -a duration: a hang is a
  // failure, not a slow run.
  static constexpr auto kGiveUpBound = std::chrono::seconds(15);
  static constexpr int kRepeats = 5;

  void SetUp() override {
    ExtcapTest::SetUp();
    if (!HaveProgram("tshark")) GTEST_SKIP() << "needs tshark (apt-get install tshark)";
    env_ = HomeEnv();
    std::vector<std::string> install = env_;
    install.insert(install.end(), {kCapctlPath, "extcap", "install"});
    const CommandResult installed = RunCommand(install);
    ASSERT_TRUE(installed.status.Exited(0)) << installed.status << installed.output;
  }

  // Starts `tshark -i capd -a duration:120 -w FILE` with the given options in the agent's
  // namespace.
  void StartTshark(const std::vector<std::string>& options, std::unique_ptr<Subprocess>* out) {
    std::vector<std::string> argv = env_;
    argv.insert(argv.end(), {"tshark", "-n", "-i", "capd", "-a", "duration:120", "-w",
                             File("tshark-" + std::to_string(++tsharks_) + ".pcapng").string()});
    argv.insert(argv.end(), options.begin(), options.end());
    ASSERT_NO_FATAL_FAILURE(Spawn("tshark-" + std::to_string(tsharks_), argv, out));
  }

  // Expects `tshark` to end within the bound, its stderr holding `reason` on the line Wireshark
  // shows, and non-zero when `started` is false. tshark 4.0 exits 0 once a capture has started,
  // whatever ends it (even an error of dumpcap's own on the pipe): that is not capctl's to change.
  void ExpectGivesUpWith(Subprocess& tshark, const std::string& reason, bool started = false) {
    const auto status = tshark.WaitFor(kGiveUpBound);
    ASSERT_TRUE(status.has_value()) << "tshark still waits: " << tshark.Describe();
    if (!started) {
      EXPECT_FALSE(status->Exited(0)) << tshark.Describe();
    }
    // One line from capctl: the reason, not what came before it.
    const std::string said = tshark.Stderr();
    const size_t at = said.find("Error by extcap pipe: ");
    ASSERT_NE(at, std::string::npos) << tshark.Describe();
    const std::string line = said.substr(at, said.find('\n', at) - at);
    EXPECT_NE(line.find(reason), std::string::npos) << tshark.Describe();
    EXPECT_EQ(said.find("capturing on"), std::string::npos) << tshark.Describe();
    EXPECT_EQ(line.find("/tmp/"), std::string::npos) << "Wireshark's FIFO named: " << line;
  }

  // The reason tshark shows for a capture with these options, checked kRepeats times.
  void ExpectEveryRunGivesUpWith(const std::vector<std::string>& options,
                                 const std::string& reason) {
    for (int i = 0; i < kRepeats; ++i) {
      SCOPED_TRACE("run " + std::to_string(i + 1));
      std::unique_ptr<Subprocess> tshark;
      ASSERT_NO_FATAL_FAILURE(StartTshark(options, &tshark));
      ASSERT_NO_FATAL_FAILURE(ExpectGivesUpWith(*tshark, reason));
    }
  }

  // capd as deployed: --user nobody, keeping only its two capabilities.
  void StartDeployedAgent() {
    ASSERT_NO_FATAL_FAILURE(Spawn("capd",
                                  {kCapdPath, "--listen", kAgentTarget, "--name", "capd-it",
                                   "--log-level", "info", "--user", "nobody", "--no-metadata"},
                                  &agent_));
    ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
        << agent_->Describe();
  }

  std::vector<std::string> env_;
  int tsharks_ = 0;
};

TEST_F(ExtcapFailureTest, UnreachableAgent) {
  ExpectEveryRunGivesUpWith({"-o", "extcap.capd.agent:127.0.0.1:1"},
                            "capctl: cannot reach agent at 127.0.0.1:1");
}

TEST_F(ExtcapFailureTest, FilterThatDoesNotCompile) {
  ASSERT_NO_FATAL_FAILURE(StartDeployedAgent());
  ExpectEveryRunGivesUpWith(
      {"-o", std::string("extcap.capd.agent:") + kAgentTarget, "-f", "udp port 7000 and tcp port"},
      "capctl: filter 'udp port 7000 and tcp port'");
}

TEST_F(ExtcapFailureTest, InterfaceTheAgentDoesNotHave) {
  ASSERT_NO_FATAL_FAILURE(StartDeployedAgent());
  ExpectEveryRunGivesUpWith({"-o", std::string("extcap.capd.agent:") + kAgentTarget, "-o",
                             "extcap.capd.remoteinterface:nosuch0"},
                            "nosuch0");
}

// capd as deployed, killed once its log says the capture is open: at that moment its first
// message may or may not have reached capctl, and either way the reason is that it went away.
TEST_F(ExtcapFailureTest, AgentKilledMidCapture) {
  for (int i = 0; i < kRepeats; ++i) {
    SCOPED_TRACE("run " + std::to_string(i + 1));
    ASSERT_NO_FATAL_FAILURE(StartDeployedAgent());
    std::unique_ptr<Subprocess> tshark;
    ASSERT_NO_FATAL_FAILURE(
        StartTshark({"-o", std::string("extcap.capd.agent:") + kAgentTarget, "-o",
                     std::string("extcap.capd.remoteinterface:") + kIface},
                    &tshark));
    ASSERT_TRUE(agent().WaitForStderr(kCaptureOpenLine, kStartTimeout))
        << agent().Describe() << "\n"
        << tshark->Describe();
    ASSERT_TRUE(agent().Signal(SIGKILL));
    ASSERT_TRUE(agent().WaitFor(kExitTimeout).has_value());
    ASSERT_NO_FATAL_FAILURE(ExpectGivesUpWith(*tshark, "agent went away", /*started=*/true));
  }
}

// The dialog's rewind and trigger arguments, checked by capctl before it connects: a `since` that
// is not a time, a trigger filter that does not compile, `before` without `starton` or out of its
// range.
TEST_F(ExtcapFailureTest, SinceThatIsNotATime) {
  ExpectEveryRunGivesUpWith(
      {"-o", "extcap.capd.agent:127.0.0.1:1", "-o", "extcap.capd.since:yesterday"},
      "capctl: --since 'yesterday'");
}

TEST_F(ExtcapFailureTest, TriggerFilterThatDoesNotCompile) {
  ExpectEveryRunGivesUpWith(
      {"-o", "extcap.capd.agent:127.0.0.1:1", "-o", "extcap.capd.starton:udp port"},
      "--start-on: filter 'udp port'");
}

TEST_F(ExtcapFailureTest, BeforeWithoutStartOn) {
  ExpectEveryRunGivesUpWith({"-o", "extcap.capd.agent:127.0.0.1:1", "-o", "extcap.capd.before:2"},
                            "capctl: --before needs --start-on");
}

TEST_F(ExtcapFailureTest, BeforeOutOfRange) {
  ExpectEveryRunGivesUpWith({"-o", "extcap.capd.agent:127.0.0.1:1", "-o", "extcap.capd.starton:udp",
                             "-o", "extcap.capd.before:5000"},
                            "capctl: --before takes seconds from 0 to 3600");
}

// A value the argument parser itself refuses: tshark showed the reason, then waited until killed.
TEST_F(ExtcapFailureTest, DialogValueTheParserRefuses) {
  ExpectEveryRunGivesUpWith(
      {"-o", "extcap.capd.agent:127.0.0.1:1", "-o", "extcap.capd.decap:bogus"},
      "capctl: --decap takes vxlan, geneve, auto or none, not 'bogus'");
}

// tshark through the installed extcap with the dialog's rewind and trigger arguments, against capd
// as deployed (--user nobody).
class ExtcapRewindTest : public ExtcapFailureTest {
 protected:
  // capd as deployed, keeping recordings in a folder of its user's own.
  void StartRecordingAgent() {
    const std::filesystem::path records = File("records");
    std::filesystem::permissions(File("."), std::filesystem::perms::owner_all |
                                                std::filesystem::perms::group_exec |
                                                std::filesystem::perms::others_exec);
    std::filesystem::create_directories(records);
    ASSERT_EQ(::chown(records.c_str(), 65534, 65534), 0) << std::strerror(errno);
    ASSERT_NO_FATAL_FAILURE(
        Spawn("capd",
              {kCapdPath, "--listen", kAgentTarget, "--name", "capd-it", "--log-level", "info",
               "--user", "nobody", "--no-metadata", "--record-dir", records.string()},
              &agent_));
    ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
        << agent_->Describe();
  }

  std::vector<std::string> AgentOptions() {
    return {"-o", std::string("extcap.capd.agent:") + kAgentTarget, "-o",
            std::string("extcap.capd.remoteinterface:") + kIface};
  }

  std::filesystem::path TsharkFile() const {
    return File("tshark-" + std::to_string(tsharks_) + ".pcapng");
  }
};

// -o extcap.capd.since: tshark reads what the recording kept from then, then the live packets,
// each once and in order; the capture filter holds in both parts.
TEST_F(ExtcapRewindTest, SinceReadsRecordedThenLivePackets) {
  constexpr int kEach = 10;
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd other_sink = AgentSocket(kDst, kOtherPort);
  const Output started = Capctl(
      {"record", "start", "--agent", kAgentTarget, "--name", "ring", "-i", kIface, "-f", "udp"},
      network().agent_ns());
  ASSERT_TRUE(started.status.Exited(0)) << started.status << started.err;
  // After the recording's start, so the whole rewind is inside it.
  const uint64_t since =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  const auto recorded = MakePayloads(kEach, "recorded");
  const auto live = MakePayloads(kEach, "live");
  const auto others = MakePayloads(kEach, "other");
  const UniqueFd peer = PeerSocket();
  for (int i = 0; i < kEach; ++i) {
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kOtherPort, others[i]).ok());
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, recorded[i]).ok());
  }

  std::vector<std::string> options = AgentOptions();
  options.insert(options.end(), {"-o", "extcap.capd.since:" + std::to_string(since), "-f",
                                 kUdpFilter, "-c", std::to_string(2 * kEach)});
  std::unique_ptr<Subprocess> tshark;
  ASSERT_NO_FATAL_FAILURE(StartTshark(options, &tshark));
  // The recorded part is on its way: what is sent now can only come live.
  ASSERT_TRUE(agent().WaitForStderr("rewind on veth0 from recording ring", kStartTimeout))
      << agent().Describe() << "\n"
      << tshark->Describe();
  for (int i = 0; i < kEach; ++i) {
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kOtherPort, others[i]).ok());
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, live[i]).ok());
  }
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tshark, 0));
  EXPECT_EQ(tshark->Stderr().find("Error by extcap pipe"), std::string::npos) << tshark->Describe();
  std::vector<std::string> expected = recorded;
  expected.insert(expected.end(), live.begin(), live.end());
  ExpectUdpPayloads(ReadOrFail(TsharkFile()), expected, kPort);
  EXPECT_NE(agent().Stderr().find("rewind on veth0 from recording ring: " + std::to_string(kEach) +
                                  " recorded packets"),
            std::string::npos)
      << agent().Describe();
}

// -o extcap.capd.starton (and before:0): tshark sees nothing before the marker, then the marker
// with its comment and what follows.
TEST_F(ExtcapRewindTest, StartOnShowsNothingBeforeTheMarker) {
  constexpr int kEach = 5;
  ASSERT_NO_FATAL_FAILURE(StartDeployedAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd other_sink = AgentSocket(kDst, kOtherPort);
  std::vector<std::string> options = AgentOptions();
  options.insert(options.end(),
                 {"-o", "extcap.capd.starton:udp dst port 7001", "-o", "extcap.capd.before:0", "-f",
                  "udp", "-c", std::to_string(kEach + 1)});
  std::unique_ptr<Subprocess> tshark;
  ASSERT_NO_FATAL_FAILURE(StartTshark(options, &tshark));
  ASSERT_TRUE(agent().WaitForStderr(kCaptureOpenLine, kStartTimeout)) << agent().Describe() << "\n"
                                                                      << tshark->Describe();

  const UniqueFd peer = PeerSocket();
  const auto earlier = MakePayloads(kEach, "earlier");
  const auto later = MakePayloads(kEach, "later");
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, earlier));
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kOtherPort, {"the-marker"}));
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, later));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tshark, 0));
  EXPECT_EQ(tshark->Stderr().find("Error by extcap pipe"), std::string::npos) << tshark->Describe();

  std::vector<CapturedPacket> packets = ReadOrFail(TsharkFile());
  ASSERT_EQ(packets.size(), static_cast<size_t>(kEach + 1));
  EXPECT_NE(packets[0].bytes.find("the-marker"), std::string::npos) << "the first is the marker";
  ExpectUdpPayloads({packets.begin() + 1, packets.end()}, later, kPort);
  const CommandResult comments = RunCommand(
      {"tshark", "-n", "-r", TsharkFile().string(), "-T", "fields", "-e", "frame.comment"});
  ASSERT_TRUE(comments.status.Exited(0)) << comments.output;
  std::vector<std::string> lines;
  std::istringstream in(comments.output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Running as user", 0) != 0) lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), packets.size()) << comments.output;
  EXPECT_EQ(lines[0], "capd: start-on matched: udp dst port 7001");
  for (size_t i = 1; i < lines.size(); ++i) EXPECT_EQ(lines[i], "") << "packet " << i;
}

}  // namespace
}  // namespace capd::test

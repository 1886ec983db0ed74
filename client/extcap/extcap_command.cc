#include "client/extcap/extcap_command.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "client/cli/options.h"
#include "client/extcap/control_pipe.h"
#include "client/extcap/extcap_observer.h"
#include "client/extcap/fifo_hold.h"
#include "client/extcap/toolbar.h"
#include "client/stream/agent_channel.h"
#include "client/stream/stream_command.h"
#include "common/command_line.h"
#include "filters/bpf_filter.h"
#include "proto/capture.grpc.pb.h"

#ifndef CAPD_VERSION
#define CAPD_VERSION "0.0.0"
#endif

namespace capd::client {
namespace {

constexpr std::string_view kInterface = "capd";
constexpr char kDisplay[] = "capd remote capture";
// The selector value meaning "the agent's default-route interface": no interface name has '*'.
constexpr std::string_view kDefaultInterface = "*";

// The dialog's arguments, in display order: their numbers are the `arg {number=N}` of
// --extcap-config. Each is the `capctl stream` flag of the same name (-i for remote-interface,
// -s for snaplen), declared by the same option groups (client/cli/options.h).
constexpr std::string_view kDialogArguments[] = {
    "agent",      "remote-interface", "decap",      "vni",         "inner-filter",
    "snaplen",    "tls-ca",           "tls-cert",   "tls-key",     "tls-server-name",
    "token-file", "remote-port",      "tls-keylog", "since",       "start-on",
    "before",     "stop-on",          "after",      "after-count",
};
constexpr int kRemoteInterfaceArg = 1;  // its index above

// What Wireshark asked for.
struct ExtcapRequest {
  bool list_interfaces = false;
  bool version_only = false;  // --extcap-version without --extcap-interfaces
  bool list_dlts = false;
  bool config = false;
  bool capture = false;
  std::string interface;
  std::string reload_option;
  std::optional<std::string> capture_filter;
  std::string fifo;
  std::string control_in;
  std::string control_out;
  // The dialog's arguments: the agent and interface as given, the rest already in place.
  std::string agent;
  std::string remote_interface;
  std::string since;  // ParseSince's grammar, read when the capture starts ("5m" is from then)
  // The trigger arguments' numbers as given (a dialog argument left empty is not given), checked
  // with the rest once the FIFO is held, so that a bad one ends the capture as any failure does.
  std::optional<std::string> before;
  std::optional<std::string> after;
  std::optional<std::string> after_count;
  StreamOptions stream;
};

// Wireshark's extcap sentences are lists of {key=value}: a brace or a line break in a value
// would end it early.
std::string Clean(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '{') c = '(';
    if (c == '}') c = ')';
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

// Wireshark passes a dialog argument left empty as "--vni" "" (or "--vni="): it means "not set".
std::vector<std::string> WithoutEmptyDialogArguments(int argc, char** argv) {
  auto is_dialog = [](std::string_view word) {
    if (!word.starts_with("--")) return false;
    word.remove_prefix(2);
    for (std::string_view call : kDialogArguments) {
      if (word == call) return true;
    }
    return false;
  };
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view word = argv[i];
    if (is_dialog(word) && i + 1 < argc && argv[i + 1][0] == '\0') {
      ++i;
      continue;
    }
    if (word.ends_with("=") && is_dialog(word.substr(0, word.size() - 1))) continue;
    args.emplace_back(word);
  }
  return args;
}

StatusOr<ExtcapRequest> ParseExtcap(int argc, char** argv) {
  ExtcapRequest request;
  CLI::App app{"capctl as a Wireshark extcap", "capctl"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // A newer Wireshark may pass --extcap-* arguments this capctl does not know: not fatal.
  app.allow_extras();
  app.add_flag("--extcap-interfaces", request.list_interfaces);
  std::string wireshark_version;  // Wireshark's own (e.g. "4.0"): nothing depends on it
  CLI::Option* version = app.add_option("--extcap-version", wireshark_version)->expected(0, 1);
  app.add_flag("--extcap-dlts", request.list_dlts);
  app.add_flag("--extcap-config", request.config);
  app.add_option("--extcap-interface", request.interface);
  app.add_option("--extcap-reload-option", request.reload_option);
  app.add_option_function<std::string>(
      "--extcap-capture-filter", [&request](const std::string& f) { request.capture_filter = f; });
  app.add_flag("--capture", request.capture);
  app.add_option("--fifo", request.fifo);
  app.add_option("--extcap-control-in", request.control_in);
  app.add_option("--extcap-control-out", request.control_out);
  // The dialog's arguments, checked as `capctl stream` checks its flags.
  app.add_option("--agent", request.agent);
  app.add_option("--remote-interface", request.remote_interface);
  app.add_option("--snaplen", request.stream.snaplen)->transform(CountIn(0, 262144));
  app.add_option("--tls-keylog", request.stream.tls_keylog);
  app.add_option("--since", request.since);
  // Triggers, with `capctl stream`'s ranges; their filters are checked as the capture filter is,
  // when the capture starts (RunStream).
  app.add_option("--start-on", request.stream.start_on);
  app.add_option("--stop-on", request.stream.stop_on);
  const auto keep = [](std::optional<std::string>& out) {
    return [&out](const std::string& v) { out = v; };
  };
  app.add_option_function<std::string>("--before", keep(request.before));
  app.add_option_function<std::string>("--after", keep(request.after));
  app.add_option_function<std::string>("--after-count", keep(request.after_count));
  AddDecapOptions(app, request.stream.decap);
  AddConnectionOptions(app, request.stream.connection);
  try {
    std::vector<std::string> args = WithoutEmptyDialogArguments(argc, argv);
    std::reverse(args.begin(), args.end());  // CLI11 takes them last first
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return InvalidArgument(ErrorLine(e.what(), ""));
  }
  for (const std::string& extra : app.remaining()) {
    if (extra.starts_with("-") && !extra.starts_with("--extcap-")) {
      return InvalidArgument("unknown or incomplete extcap argument '" + extra + "'");
    }
  }
  request.version_only = version->count() > 0 && !request.list_interfaces;
  return request;
}

// `text` as seconds from 0 to `max_seconds` (decimals allowed), in milliseconds rounded up as
// `capctl stream` does.
StatusOr<uint32_t> SecondsArgument(const char* flag, const std::string& text, double max_seconds) {
  char* end = nullptr;
  const double seconds = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(seconds) || seconds < 0 ||
      seconds > max_seconds) {
    return InvalidArgument(std::string(flag) + " takes seconds from 0 to " +
                           std::to_string(static_cast<uint64_t>(max_seconds)) + ", not '" + text +
                           "'");
  }
  return static_cast<uint32_t>(std::ceil(seconds * 1000));
}

// The stream options the dialog's arguments describe (with Wireshark's FIFO and capture filter
// when it gives them), checked as `capctl stream` checks its command line.
StatusOr<StreamOptions> ToStreamOptions(const ExtcapRequest& request) {
  StreamOptions options = request.stream;
  if (request.remote_interface != kDefaultInterface) options.interface = request.remote_interface;
  options.fifo_path = request.fifo;
  if (request.capture_filter) options.filter = *request.capture_filter;
  if (!request.since.empty()) {
    const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::system_clock::now().time_since_epoch());
    auto since = ParseSince(request.since, static_cast<uint64_t>(now.count()));
    if (!since.ok()) return since.status();
    options.since_ns = *since;
  }
  if (request.before) {
    auto ms = SecondsArgument("--before", *request.before, 3600);
    if (!ms.ok()) return ms.status();
    options.before_ms = *ms;
  }
  if (request.after) {
    auto ms = SecondsArgument("--after", *request.after, 30.0 * 24 * 3600);
    if (!ms.ok()) return ms.status();
    options.after_ms = *ms;
  }
  if (request.after_count) {
    const std::string& text = *request.after_count;
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || text[0] == '-' || *end != '\0' || errno != 0 || n > 1'000'000'000'000) {
      return InvalidArgument("--after-count takes packets from 0 to 1000000000000, not '" + text +
                             "'");
    }
    options.after_count = n;
  }
  CAPD_RETURN_IF_ERROR(CheckTriggers({.before = request.before.has_value(),
                                      .after = request.after.has_value(),
                                      .after_count = request.after_count.has_value()},
                                     options.start_on, options.stop_on, options.decap));
  std::vector<std::string> agents;
  if (!request.agent.empty()) agents.push_back(request.agent);
  CAPD_RETURN_IF_ERROR(CompleteStreamOptions(agents, options));
  return options;
}

void PrintVersion() { std::printf("extcap {version=%s}{display=%s}\n", CAPD_VERSION, kDisplay); }

void PrintInterfaces() {
  PrintVersion();
  std::printf("interface {value=%s}{display=%s}\n", std::string(kInterface).c_str(), kDisplay);
  // A logger button: the capture's log (agent, interface, excluded carriers, summary) opens in a
  // window. Declaring a control also makes Wireshark's GUI pass the control pipes.
  std::printf(
      "control {number=%u}{type=button}{role=logger}{display=Log}"
      "{tooltip=What capctl reported about this capture}\n",
      ControlPipes::kLoggerControl);
  // The toolbar: filters changed while the capture runs, and capd's drops (toolbar.h).
  PrintToolbarControls(stdout);
}

void PrintDlts() {
  // The link type is only known once a stream starts (the agent's interface decides; mirror-
  // target mode adds interfaces of other types). Wireshark wants one DLT per extcap interface
  // beforehand, and then reads each interface's real link type from the pcapng capctl writes, so
  // Ethernet here is a placeholder for the common case, not a promise.
  std::puts("dlt {number=1}{name=EN10MB}{display=Ethernet (each capture names its own)}");
}

std::string DefaultAgentText() {
  const char* env = std::getenv("CAPD_AGENT");
  return Clean(env != nullptr && *env != '\0' ? env : std::string(kDefaultAgent));
}

void PrintDefaultInterfaceValue(const std::string& note) {
  std::printf("value {arg=%d}{value=%s}{display=the agent's default-route interface%s}%s\n",
              kRemoteInterfaceArg, std::string(kDefaultInterface).c_str(), note.c_str(),
              "{default=true}");
}

void PrintConfig() {
  // Numbers follow kDialogArguments. No {required=true}: Wireshark then insists on the dialog
  // while an argument still has its default, and every default here works.
  std::printf(
      "arg {number=0}{call=--agent}{display=Agent}{type=string}{default=%s}"
      "{tooltip=HOST:PORT, ssh://[user@]host[:port] (an ssh -L forward to the agent's loopback "
      "port) or ssm://i-xxxx (AWS Session Manager port forwarding)}{group=Agent}\n",
      DefaultAgentText().c_str());
  std::printf(
      "arg {number=%d}{call=--remote-interface}{display=Interface on the agent's host}"
      "{type=selector}{reload=true}{placeholder=Load the agent's interfaces}"
      "{tooltip=Load lists the interfaces of the agent given above}{group=Agent}\n",
      kRemoteInterfaceArg);
  PrintDefaultInterfaceValue("");
  std::puts(
      "arg {number=2}{call=--decap}{display=Decapsulate (mirror target)}{type=selector}"
      "{tooltip=Strip VXLAN or Geneve from traffic mirrored to this host; the capture filter "
      "then applies to the outer packets}{group=Mirror target}");
  std::puts("value {arg=2}{value=none}{display=No}{default=true}");
  std::puts("value {arg=2}{value=vxlan}{display=VXLAN (UDP 4789)}");
  std::puts("value {arg=2}{value=geneve}{display=Geneve (UDP 6081)}");
  std::puts("value {arg=2}{value=auto}{display=VXLAN and Geneve}");
  std::puts(
      "arg {number=3}{call=--vni}{display=VNIs}{type=string}"
      "{tooltip=Keep only these VNIs (mirror sessions), separated by commas}"
      "{group=Mirror target}");
  std::puts(
      "arg {number=4}{call=--inner-filter}{display=Inner filter}{type=string}"
      "{tooltip=BPF filter on the decapsulated frames}{group=Mirror target}");
  std::puts(
      "arg {number=5}{call=--snaplen}{display=Snapshot length}{type=unsigned}{range=0,262144}"
      "{default=0}{tooltip=Bytes kept per packet; 0 keeps 262144}{group=Capture}");
  std::puts(
      "arg {number=6}{call=--tls-ca}{display=TLS CA certificate}{type=fileselect}"
      "{mustexist=true}{tooltip=Verify the agent's certificate with this CA (enables TLS)}"
      "{group=Security}");
  std::puts(
      "arg {number=7}{call=--tls-cert}{display=TLS client certificate}{type=fileselect}"
      "{mustexist=true}{tooltip=For an agent that requires mutual TLS}{group=Security}");
  std::puts(
      "arg {number=8}{call=--tls-key}{display=TLS client key}{type=fileselect}{mustexist=true}"
      "{group=Security}");
  std::puts(
      "arg {number=9}{call=--tls-server-name}{display=TLS server name}{type=string}"
      "{tooltip=The name in the agent's certificate, when it is not the address (e.g. through "
      "ssh://)}{group=Security}");
  std::puts(
      "arg {number=10}{call=--token-file}{display=Token file}{type=fileselect}{mustexist=true}"
      "{tooltip=Send the bearer token in this file (capd --auth-token-file)}{group=Security}");
  std::puts(
      "arg {number=11}{call=--remote-port}{display=Agent port on the instance}{type=unsigned}"
      "{range=1,65535}{default=50051}{tooltip=ssh:// and ssm://: the port capd listens on, on "
      "the instance's loopback}{group=Agent}");
  std::puts(
      "arg {number=12}{call=--tls-keylog}{display=TLS key log on the agent's host}{type=string}"
      "{tooltip=A file some process writes as SSLKEYLOGFILE, inside a folder capd "
      "--tls-keylog-dir allows: its keys come with the packets and Wireshark decrypts TLS "
      "(packets reach Wireshark 0.5 s later)}{group=Capture}");
  std::puts(
      "arg {number=13}{call=--since}{display=Since}{type=string}"
      "{tooltip=Begin with the packets a recording running on the agent (capctl record start) "
      "kept from then on, then go on live: a time back (5m, 90s, 1.5h), an RFC 3339 time "
      "(2026-12-07T10:00:00Z) or nanoseconds since the Unix epoch}{group=Rewind and triggers}");
  std::puts(
      "arg {number=14}{call=--start-on}{display=Start on}{type=string}"
      "{tooltip=Show nothing until a packet matches this BPF filter, then the packets of the "
      "seconds before it and on; the matching packet gets a comment}"
      "{group=Rewind and triggers}");
  std::puts(
      "arg {number=15}{call=--before}{display=Seconds before the start}{type=double}"
      "{range=0,3600}{tooltip=With Start on: seconds of history before the match (empty: 10)}"
      "{group=Rewind and triggers}");
  std::puts(
      "arg {number=16}{call=--stop-on}{display=Stop on}{type=string}"
      "{tooltip=End the capture after a packet matches this BPF filter and the time or packets "
      "below have passed; the matching packet gets a comment}{group=Rewind and triggers}");
  std::puts(
      "arg {number=17}{call=--after}{display=Seconds after the stop}{type=double}"
      "{range=0,2592000}{tooltip=With Stop on: seconds of packet time to go on after the match "
      "(not with packets after the stop)}{group=Rewind and triggers}");
  std::puts(
      "arg {number=18}{call=--after-count}{display=Packets after the stop}{type=unsigned}"
      "{range=0,1000000000000}{tooltip=With Stop on: packets to go on for after the match "
      "(empty: 0)}{group=Rewind and triggers}");
}

// --extcap-reload-option remote-interface: the agent's interfaces, asked of the agent the
// dialog names. An agent that cannot be asked still leaves the default entry, saying why.
void PrintRemoteInterfaces(const ExtcapRequest& request) {
  auto options = ToStreamOptions(request);
  if (!options.ok()) {
    PrintDefaultInterfaceValue(" (cannot list: " + Clean(options.status().message()) + ")");
    return;
  }
  auto connection = AgentConnection::Connect(options->agents[0], options->connection);
  if (!connection.ok()) {
    PrintDefaultInterfaceValue(" (cannot list: " + Clean(connection.status().message()) + ")");
    return;
  }
  auto stub = v1::Capture::NewStub(connection->channel());
  grpc::ClientContext context;
  connection->Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListInterfacesResponse response;
  const grpc::Status status = stub->ListInterfaces(&context, {}, &response);
  if (!status.ok()) {
    PrintDefaultInterfaceValue(" (cannot list: " + Clean(DescribeRefusal(status)) + ")");
    return;
  }
  const bool has_default = !response.default_interface().empty();
  if (!has_default) PrintDefaultInterfaceValue(" (it has none)");
  for (const v1::NetworkInterface& i : response.interfaces()) {
    std::string addresses;
    for (const std::string& a : i.addresses()) addresses += (addresses.empty() ? "" : ", ") + a;
    std::string display = i.name() + (i.up() ? (i.running() ? "" : ", no link") : ", down");
    if (!addresses.empty()) display += ": " + addresses;
    const bool is_default = i.name() == response.default_interface();
    if (is_default) display += " (default route)";
    std::printf("value {arg=%d}{value=%s}{display=%s}%s\n", kRemoteInterfaceArg,
                Clean(i.name()).c_str(), Clean(display).c_str(),
                is_default ? "{default=true}" : "");
  }
}

// How long a capture waits for Wireshark's dumpcap to open the FIFO before going on without
// holding it (dumpcap opens it within milliseconds; a person running --capture by hand may not).
constexpr std::chrono::seconds kFifoReaderWait{10};

// The capture itself: a stream session into Wireshark's FIFO, its messages to the control pipes.
// Whatever fails, before or after the capture starts, ends the same way: the reason on stderr,
// then the FIFO closed (fifo_hold.h says why in this order), then a non-zero exit.
int RunCapture(const ExtcapRequest& request) {
  if (request.fifo.empty()) {
    std::fputs("capctl: --capture needs --fifo PATH\n", stderr);
    return 2;
  }
  auto held = FifoHold::Open(request.fifo, kFifoReaderWait);
  FifoHold hold = held.ok() ? std::move(held.value()) : FifoHold();
  const auto fail = [&hold](const std::vector<std::string>& lines, int code) {
    for (const std::string& line : lines) std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
    hold.Release();
    return code;
  };

  auto options = ToStreamOptions(request);
  if (!options.ok()) return fail({"capctl: " + options.status().message()}, 2);

  ControlPipes pipes(request.control_in, request.control_out);
  ExtcapObserver observer(pipes);
  ToolbarObserver toolbar_observer(observer, pipes);
  StreamChanger changer;
  const StreamOptions& o = options.value();
  ToolbarReader toolbar(
      pipes, changer, toolbar_observer,
      {o.filter, o.decap.mode != DecapOptions::Mode::kNone, o.decap.vnis, o.decap.inner_filter});
  const int code = RunStream(
      options.value(), toolbar_observer,
      [&]() {
        auto opened = OpenCaptureOutput(options.value());
        // The FIFO's path is Wireshark's own business: the summary says where the packets went.
        if (opened.ok()) opened->output.name = "Wireshark";
        return opened;
      },
      &changer);
  if (code == 0) return 0;
  // Wireshark shows an extcap's stderr when the capture ends ("Error by extcap pipe: ..."): one
  // line, the reason. The session's last line is it (the summary, which says why the capture
  // ended, or the message of a failure before it started); earlier lines (the interface) are in
  // the log window.
  const std::vector<std::string>& said = observer.lines();
  return fail({said.empty() ? "capctl: the capture failed" : said.back()}, code);
}

// The --fifo of a --capture command line the parser refused; "" when it is not a capture.
std::string CaptureFifoArgument(int argc, char** argv) {
  bool capture = false;
  std::string fifo;
  for (int i = 1; i < argc; ++i) {
    const std::string_view word = argv[i];
    if (word == "--capture") capture = true;
    if (word == "--fifo" && i + 1 < argc) fifo = argv[i + 1];
    if (word.starts_with("--fifo=")) fifo = word.substr(7);
  }
  return capture ? fifo : "";
}

}  // namespace

std::vector<std::string> ExtcapPreferenceNames() {
  std::vector<std::string> names;
  for (std::string_view call : kDialogArguments) {
    std::string name = "extcap." + std::string(kInterface) + ".";
    for (char c : call) {
      if (c != '-') name += c;  // Wireshark drops the dashes
    }
    names.push_back(std::move(name));
  }
  return names;
}

bool IsExtcapInvocation(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--extcap-", 9) == 0 || std::strcmp(argv[i], "--capture") == 0) {
      return true;
    }
  }
  return false;
}

int RunExtcap(int argc, char** argv) {
  auto parsed = ParseExtcap(argc, argv);
  if (!parsed.ok()) {
    // A capture refused by the parser (a dialog value it does not take) still holds Wireshark's
    // FIFO until the reason is written, as RunCapture does: without it dumpcap shows the reason
    // but waits on the FIFO for ever.
    const std::string fifo = CaptureFifoArgument(argc, argv);
    auto held =
        fifo.empty() ? StatusOr<FifoHold>(FifoHold()) : FifoHold::Open(fifo, kFifoReaderWait);
    std::fprintf(stderr, "capctl: %s\n", parsed.status().message().c_str());
    std::fflush(stderr);
    if (held.ok()) held->Release();
    return 2;
  }
  const ExtcapRequest& request = parsed.value();
  if (request.list_interfaces) {
    PrintInterfaces();
    return 0;
  }
  if (request.version_only) {
    PrintVersion();
    return 0;
  }
  if (request.interface != kInterface) {
    std::fprintf(stderr, "capctl: unknown extcap interface '%s' (capctl offers '%s')\n",
                 request.interface.c_str(), std::string(kInterface).c_str());
    return 2;
  }
  if (request.list_dlts) {
    PrintDlts();
    return 0;
  }
  if (request.config) {
    if (request.reload_option.empty()) {
      PrintConfig();
    } else if (request.reload_option == "remote-interface") {
      PrintRemoteInterfaces(request);
    }
    return 0;
  }
  if (request.capture) return RunCapture(request);
  if (request.capture_filter) {
    // Wireshark asks while the filter is typed, with no other argument (so not the agent): the
    // check is local, against the link types a capture commonly has. The agent checks again
    // against the capture's real link type when the capture starts, and refuses with the reason.
    const Status status = filters::PrecheckFilter(*request.capture_filter);
    if (!status.ok()) std::printf("%s\n", Clean(status.message()).c_str());
    return 0;
  }
  std::fputs(
      "capctl: no extcap step given (--extcap-interfaces, --extcap-dlts, --extcap-config, "
      "--capture)\n",
      stderr);
  return 2;
}

}  // namespace capd::client

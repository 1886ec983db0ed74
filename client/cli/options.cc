#include "client/cli/options.h"

#include <getopt.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace capd::client {

const char kUsage[] =
    "usage: capctl interfaces [--agent A]\n"
    "       capctl stream [--agent A] [-i IFACE] [-f FILTER] [-c COUNT] [--duration SEC]\n"
    "                     [-s SNAPLEN] [-p] [-w FILE|-] [--fifo PATH] [--format pcapng|pcap]\n"
    "                     [FILTER WORDS...]\n"
    "  --agent A       HOST:PORT[/IFACE] of a capd agent (default $CAPD_AGENT or 127.0.0.1:50051)\n"
    "  -i IFACE        interface to capture on (default: the agent's default-route interface)\n"
    "  -f FILTER       capture filter in BPF syntax, as for tcpdump\n"
    "  -c COUNT        stop after COUNT packets\n"
    "  --duration SEC  stop after SEC seconds\n"
    "  -s SNAPLEN      bytes kept per packet (1..262144; 0 = 262144)\n"
    "  -p              do not put the interface into promiscuous mode\n"
    "  -w FILE|-       write to FILE, or to stdout with '-' (e.g. | wireshark -k -i -)\n"
    "  --fifo PATH     create the FIFO PATH if needed and write to it (Wireshark: -k -i PATH)\n"
    "  --format F      pcapng (default) or pcap (nanosecond timestamps)\n"
    "exit status: 0 done, 2 bad arguments or a request the agent refused, 1 anything else\n";

namespace {

Status Bad(const std::string& message) { return InvalidArgument(message); }

template <typename T>
bool ParseUnsigned(const char* text, T& out) {
  const char* end = text + std::strlen(text);
  auto [ptr, error] = std::from_chars(text, end, out);
  return error == std::errc() && ptr == end && end != text;
}

StatusOr<AgentAddress> DefaultAgent() {
  const char* env = std::getenv("CAPD_AGENT");
  return ParseAgentAddress(env != nullptr && *env != '\0' ? env : kDefaultAgent);
}

Status ParseStream(int argc, char** argv, StreamOptions& out) {
  enum { kAgent = 1000, kDuration, kFifo, kFormat };
  static const option kOptions[] = {{"agent", required_argument, nullptr, kAgent},
                                    {"interface", required_argument, nullptr, 'i'},
                                    {"filter", required_argument, nullptr, 'f'},
                                    {"count", required_argument, nullptr, 'c'},
                                    {"duration", required_argument, nullptr, kDuration},
                                    {"snaplen", required_argument, nullptr, 's'},
                                    {"no-promiscuous-mode", no_argument, nullptr, 'p'},
                                    {"write", required_argument, nullptr, 'w'},
                                    {"fifo", required_argument, nullptr, kFifo},
                                    {"format", required_argument, nullptr, kFormat},
                                    {nullptr, 0, nullptr, 0}};
  bool filter_given = false;
  int c;
  // '+': stop at the first non-option, so filter words like "not port 22" stay together.
  while ((c = getopt_long(argc, argv, "+i:f:c:s:pw:", kOptions, nullptr)) != -1) {
    switch (c) {
      case kAgent: {
        auto agent = ParseAgentAddress(optarg);
        if (!agent.ok()) return agent.status();
        out.agents.push_back(std::move(agent.value()));
        break;
      }
      case 'i':
        out.interface = optarg;
        break;
      case 'f':
        out.filter = optarg;
        filter_given = true;
        break;
      case 'c':
        if (!ParseUnsigned(optarg, out.count) || out.count == 0) {
          return Bad(std::string("-c takes a positive packet count, not '") + optarg + "'");
        }
        break;
      case kDuration: {
        char* end = nullptr;
        const double seconds = std::strtod(optarg, &end);
        if (end == optarg || *end != '\0' || !(seconds > 0) || seconds > 1e9) {
          return Bad(std::string("--duration takes a positive number of seconds, not '") + optarg +
                     "'");
        }
        out.duration_ms = static_cast<uint64_t>(std::ceil(seconds * 1000));
        break;
      }
      case 's':
        if (!ParseUnsigned(optarg, out.snaplen) || out.snaplen > 262144) {
          return Bad(std::string("-s takes a snaplen of 1..262144 (0 = 262144), not '") + optarg +
                     "'");
        }
        break;
      case 'p':
        out.promiscuous = false;
        break;
      case 'w':
        out.write_path = optarg;
        break;
      case kFifo:
        out.fifo_path = optarg;
        break;
      case kFormat:
        if (std::strcmp(optarg, "pcapng") == 0) {
          out.format = FileFormat::kPcapng;
        } else if (std::strcmp(optarg, "pcap") == 0) {
          out.format = FileFormat::kPcap;
        } else {
          return Bad(std::string("--format takes pcapng or pcap, not '") + optarg + "'");
        }
        break;
      default:
        return Bad(std::string("unknown or incomplete option '") + argv[optind - 1] + "'");
    }
  }
  if (optind < argc) {
    if (filter_given) return Bad("give the filter either with -f or as words, not both");
    for (int i = optind; i < argc; ++i) {
      if (!out.filter.empty()) out.filter += ' ';
      out.filter += argv[i];
    }
  }
  if (!out.write_path.empty() && !out.fifo_path.empty()) {
    return Bad("-w and --fifo are alternatives: give one");
  }
  if (out.agents.empty()) {
    auto agent = DefaultAgent();
    if (!agent.ok()) return agent.status();
    out.agents.push_back(std::move(agent.value()));
  }
  if (out.agents.size() > 1)
    return Bad("streaming from several agents at once is not supported yet");
  if (out.agents[0].transport != AgentAddress::Transport::kDirect) {
    return Bad("agent '" + out.agents[0].text +
               "': ssh:// and ssm:// transports are not supported " +
               "yet; forward the port yourself (ssh -L 50051:127.0.0.1:50051 host) and use " +
               "--agent 127.0.0.1:50051");
  }
  if (out.interface.empty()) out.interface = out.agents[0].interface;
  return Status::Ok();
}

Status ParseInterfaces(int argc, char** argv, InterfacesOptions& out) {
  static const option kOptions[] = {{"agent", required_argument, nullptr, 'a'},
                                    {nullptr, 0, nullptr, 0}};
  bool given = false;
  int c;
  while ((c = getopt_long(argc, argv, "+", kOptions, nullptr)) != -1) {
    if (c != 'a')
      return Bad(std::string("unknown or incomplete option '") + argv[optind - 1] + "'");
    auto agent = ParseAgentAddress(optarg);
    if (!agent.ok()) return agent.status();
    out.agent = std::move(agent.value());
    given = true;
  }
  if (optind < argc) return Bad(std::string("unexpected argument '") + argv[optind] + "'");
  if (!given) {
    auto agent = DefaultAgent();
    if (!agent.ok()) return agent.status();
    out.agent = std::move(agent.value());
  }
  if (out.agent.transport != AgentAddress::Transport::kDirect) {
    return Bad("ssh:// and ssm:// transports are not supported yet");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<CommandLine> ParseCommandLine(int argc, char** argv) {
  CommandLine line;
  if (argc < 2) return Bad("no command given");
  const std::string command = argv[1];
  opterr = 0;
  optind = 1;  // parse argv[1..] as if argv[1] were the program name
  if (command == "-h" || command == "--help" || command == "help") {
    line.command = CommandLine::Command::kHelp;
  } else if (command == "--version" || command == "version") {
    line.command = CommandLine::Command::kVersion;
  } else if (command == "interfaces") {
    line.command = CommandLine::Command::kInterfaces;
    CAPD_RETURN_IF_ERROR(ParseInterfaces(argc - 1, argv + 1, line.interfaces));
  } else if (command == "stream") {
    line.command = CommandLine::Command::kStream;
    CAPD_RETURN_IF_ERROR(ParseStream(argc - 1, argv + 1, line.stream));
  } else {
    return Bad("unknown command '" + command + "'");
  }
  return line;
}

}  // namespace capd::client

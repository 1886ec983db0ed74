// capd: the capture agent. Wires the gRPC service to a server and handles signals; everything
// else lives in capture/, stream/ and service/.

#include <getopt.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <string>

#include "agent/capture/interfaces.h"
#include "agent/service/capture_service.h"

#ifndef CAPD_VERSION
#define CAPD_VERSION "0.0.0"
#endif

namespace {

constexpr char kUsage[] =
    "usage: capd [--listen ADDRESS:PORT] [--name NAME] [--log-level LEVEL] [--version]\n"
    "  --listen ADDRESS:PORT  where clients connect (default 127.0.0.1:50051)\n"
    "  --name NAME            this agent's name in capture files (default: the host name)\n"
    "  --log-level LEVEL      trace, debug, info, warn, error or off (default info)\n"
    "  --version              print the version and exit\n";

struct Flags {
  std::string listen = "127.0.0.1:50051";
  std::string name;
  std::string log_level = "info";
};

// Exit code 2 with one line for bad arguments, as capctl does.
[[noreturn]] void Usage(const std::string& problem) {
  std::fprintf(stderr, "capd: %s\n%s", problem.c_str(), kUsage);
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  static const option kOptions[] = {{"listen", required_argument, nullptr, 'l'},
                                    {"name", required_argument, nullptr, 'n'},
                                    {"log-level", required_argument, nullptr, 'L'},
                                    {"version", no_argument, nullptr, 'V'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  Flags flags;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "h", kOptions, nullptr)) != -1) {
    switch (c) {
      case 'l':
        flags.listen = optarg;
        break;
      case 'n':
        flags.name = optarg;
        break;
      case 'L':
        flags.log_level = optarg;
        break;
      case 'V':
        std::printf("capd %s\n", CAPD_VERSION);
        std::exit(0);
      case 'h':
        std::fputs(kUsage, stdout);
        std::exit(0);
      default:
        Usage(std::string("unknown or incomplete option '") + argv[optind - 1] + "'");
    }
  }
  if (optind < argc) Usage(std::string("unexpected argument '") + argv[optind] + "'");
  if (flags.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    flags.name = host;
  }
  return flags;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  auto logger = spdlog::stderr_color_mt("capd");
  spdlog::set_default_logger(logger);
  const auto level = spdlog::level::from_str(flags.log_level);
  if (level == spdlog::level::off && flags.log_level != "off") {
    Usage("unknown log level '" + flags.log_level + "'");
  }
  spdlog::set_level(level);
  // A client that goes away must surface as an error on write, not kill the agent.
  signal(SIGPIPE, SIG_IGN);

  capd::agent::ServiceOptions options;
  options.identity.name = flags.name;
  options.identity.os = capd::agent::OperatingSystemDescription();
  options.version = CAPD_VERSION;
  capd::agent::CaptureService service(options);

  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(flags.listen, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  // Dead peers are noticed by keepalive (a live client that stops reading is the queue's job).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    spdlog::error("cannot listen on {} (address in use, or not an address:port?)", flags.listen);
    return 1;
  }
  service.SetListeningPort(static_cast<uint16_t>(bound_port));
  const std::string host = flags.listen.substr(0, flags.listen.rfind(':'));
  spdlog::info("capd {} '{}' listening on {}:{}", CAPD_VERSION, flags.name, host, bound_port);

  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int signal_number) {
    spdlog::info("{}: ending all streams", strsignal(signal_number));
    service.BeginShutdown();
  });
  io.run();

  // Streams send their last packets, statistics and end reason; give them a moment, then stop.
  if (!service.WaitForStreams(std::chrono::seconds(3))) {
    spdlog::warn("streams still draining after 3 s; cancelling them");
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  service.WaitForStreams(std::chrono::seconds(2));
  spdlog::info("capd stopped");
  return 0;
}

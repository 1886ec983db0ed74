// capd: the capture agent. Wires the gRPC service to a server and handles signals; everything
// else lives in capture/, stream/ and service/.

#include <getopt.h>
#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <malloc.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "agent/capture/filter_sandbox.h"
#include "agent/capture/interfaces.h"
#include "agent/listener/tcp_listener.h"
#include "agent/metadata/instance_metadata.h"
#include "agent/peers/carrier_registry.h"
#include "agent/peers/local_access.h"
#include "agent/peers/peer_helper.h"
#include "agent/recording/recording_manager.h"
#include "agent/security/access.h"
#include "agent/security/privileges.h"
#include "agent/service/capture_service.h"
#include "common/printable.h"

#ifndef CAPD_VERSION
#define CAPD_VERSION "0.0.0"
#endif

namespace {

// Set when a helper capd cannot replace has died: capd then ends with exit status 1.
std::atomic<bool> helper_lost{false};

constexpr char kUsage[] =
    "usage: capd [--listen ADDRESS:PORT] [--name NAME] [--user USER] [--max-streams N]\n"
    "            [--max-queue-bytes SIZE] [--buffer-size SIZE] [--block-timeout-ms N]\n"
    "            [--max-decap-interfaces N] [--stall-timeout SEC]\n"
    "            [--max-recordings N] [--max-fetches N]\n"
    "            [--tls-cert F --tls-key F [--tls-client-ca F]]\n"
    "            [--auth-token-file F] [--allow-group G] [--allow-user U]\n"
    "            [--max-connections N] [--max-connections-per-client N]\n"
    "            [--record-dir DIR] [--log-level LEVEL] [--version]\n"
    "  --listen ADDRESS:PORT  where clients connect (default 127.0.0.1:50051); any address\n"
    "                         other than loopback requires TLS\n"
    "  --name NAME            this agent's name in capture files (default: the host name)\n"
    "  --user USER            after start-up run as USER with only CAP_NET_RAW and\n"
    "                         CAP_NET_ADMIN; the peer helper (capd-peers) keeps only\n"
    "                         CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to find the relays\n"
    "                         of streams\n"
    "  --max-streams N        streams served at once (default 16)\n"
    "  --max-connections N    connections open at once (default 512; at most the descriptor\n"
    "                         limit less 256); more wait in the kernel's queue\n"
    "  --max-connections-per-client N  connections open at once from one remote address or\n"
    "                         one local user (default 64); more are closed at once\n"
    "  --max-queue-bytes SIZE per-stream queue for a slow client, e.g. 32M (default 32M)\n"
    "  --max-decap-interfaces N  decapsulated sessions (encapsulation, VNI) per capture\n"
    "                         (default 256, 1..4096); frames of further sessions are\n"
    "                         dropped, counted as interface_limit and reported to clients\n"
    "  --stall-timeout SEC    end a stream or fetch whose client read nothing for SEC\n"
    "                         seconds (default 60, 1..3600)\n"
    "  --buffer-size SIZE     each capture's kernel ring, like tcpdump -B (default 32M,\n"
    "                         1M..1G); it counts in capd's memory once traffic fills it\n"
    "  --block-timeout-ms N   longest a lone packet waits in the ring (default 3, 1..1000);\n"
    "                         more saves CPU at high packet rates, less is more live\n"
    "  --tls-cert F, --tls-key F   serve TLS with this certificate chain and key (PEM)\n"
    "  --tls-client-ca F      require client certificates signed by this CA (mutual TLS)\n"
    "  --auth-token-file F    require this bearer token from clients (capctl --token-file)\n"
    "  --record-dir DIR       enable recordings (capctl record ...), kept under DIR; those\n"
    "                         running when capd stops resume when it starts again\n"
    "  --max-recordings N     recordings running at once (default 8, 1..256); apart from\n"
    "                         --max-streams\n"
    "  --max-fetches N        recording fetches served at once (default 8, 1..256)\n"
    "  --metadata-endpoint URL  EC2 instance metadata (IMDSv2), default http://169.254.169.254;\n"
    "                         --no-metadata skips it. On EC2 the instance id names the agent\n"
    "                         (unless --name) and interfaces get their ENI, VPC and subnet\n"
    "  --allow-group GROUP    local clients in GROUP may capture (repeatable; default: the\n"
    "                         group capd, if it exists); root always may\n"
    "  --allow-user USER      local clients running as USER may capture (repeatable)\n"
    "  --no-carrier-exclusion capture the connections of local relays (sshd, the SSM worker,\n"
    "                         socat) that carry capd's streams; excluded by default\n"
    "  --log-level LEVEL      trace, debug, info, warn, error or off (default info)\n"
    "  --version              print the version and exit\n";

capd::agent::AccessOptions DefaultAccess() {
  capd::agent::AccessOptions access;
  access.listen = "127.0.0.1:50051";
  return access;
}

struct Flags {
  capd::agent::AccessOptions access = DefaultAccess();
  std::string name;
  std::string user;
  std::string log_level = "info";
  size_t max_streams = 16;
  capd::agent::ConnectionLimits connections;
  size_t max_queue_bytes = 32 * 1024 * 1024;
  size_t max_decap_interfaces = capd::agent::kDefaultMaxDecapInterfaces;
  size_t stall_timeout_seconds = 60;
  size_t max_recordings = capd::agent::kDefaultMaxRecordings;
  size_t max_fetches = 8;
  capd::agent::RingSettings ring;
  bool carrier_exclusion = true;
  std::string metadata_endpoint = capd::agent::kDefaultMetadataEndpoint;
  bool name_given = false;  // else the host name, replaced by the instance id on EC2
  std::string record_dir;
  std::vector<std::string> allow_groups;  // empty: the group capd
  std::vector<std::string> allow_users;
};

// "32M", "512k", "1G" (powers of 1024) or plain bytes.
bool ParseSize(const char* text, size_t& out) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || errno != 0) return false;
  unsigned long long scale = 1;
  if (*end == 'k' || *end == 'K')
    scale = 1ULL << 10, ++end;
  else if (*end == 'm' || *end == 'M')
    scale = 1ULL << 20, ++end;
  else if (*end == 'g' || *end == 'G')
    scale = 1ULL << 30, ++end;
  if (*end != '\0' || value > (1ULL << 40) / scale) return false;
  out = static_cast<size_t>(value * scale);
  return true;
}

// A plain decimal count.
bool ParseCount(const char* text, size_t& out) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || errno != 0 || *text == '-') return false;
  out = static_cast<size_t>(value);
  return true;
}

// "HOST:PORT" or "[IPV6]:PORT" with a port of 0..65535 (gRPC would take "127.0.0.1" alone as
// port 443), or a unix: address (refused below with its own reason).
bool IsAddressAndPort(const std::string& listen) {
  if (listen.starts_with("unix:")) return true;
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  const std::string host = listen.substr(0, colon), port = listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(port) > 65535) {
    return false;
  }
  // An IPv6 address has colons of its own: only in brackets is the last one the port's.
  if (host.find(':') != std::string::npos) {
    return host.size() > 2 && host.front() == '[' && host.back() == ']';
  }
  return true;
}

// Exit code 2 with one line for bad arguments, as capctl does.
[[noreturn]] void Usage(const std::string& problem) {
  std::fprintf(stderr, "capd: %s\n%s", problem.c_str(), kUsage);
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  enum {
    kUser = 1000,
    kMaxStreams,
    kMaxQueue,
    kTlsCert,
    kTlsKey,
    kTlsClientCa,
    kToken,
    kNoCarrier,
    kRecordDir,
    kMetadataEndpoint,
    kNoMetadata,
    kBufferSize,
    kBlockTimeout,
    kAllowGroup,
    kAllowUser,
    kMaxConnections,
    kMaxConnectionsPerClient,
    kMaxDecapInterfaces,
    kStallTimeout,
    kMaxRecordings,
    kMaxFetches
  };
  static const option kOptions[] = {
      {"listen", required_argument, nullptr, 'l'},
      {"name", required_argument, nullptr, 'n'},
      {"user", required_argument, nullptr, kUser},
      {"max-streams", required_argument, nullptr, kMaxStreams},
      {"max-queue-bytes", required_argument, nullptr, kMaxQueue},
      {"max-connections", required_argument, nullptr, kMaxConnections},
      {"max-connections-per-client", required_argument, nullptr, kMaxConnectionsPerClient},
      {"max-decap-interfaces", required_argument, nullptr, kMaxDecapInterfaces},
      {"stall-timeout", required_argument, nullptr, kStallTimeout},
      {"max-recordings", required_argument, nullptr, kMaxRecordings},
      {"max-fetches", required_argument, nullptr, kMaxFetches},
      {"buffer-size", required_argument, nullptr, kBufferSize},
      {"block-timeout-ms", required_argument, nullptr, kBlockTimeout},
      {"tls-cert", required_argument, nullptr, kTlsCert},
      {"tls-key", required_argument, nullptr, kTlsKey},
      {"tls-client-ca", required_argument, nullptr, kTlsClientCa},
      {"auth-token-file", required_argument, nullptr, kToken},
      {"no-carrier-exclusion", no_argument, nullptr, kNoCarrier},
      {"allow-group", required_argument, nullptr, kAllowGroup},
      {"allow-user", required_argument, nullptr, kAllowUser},
      {"record-dir", required_argument, nullptr, kRecordDir},
      {"metadata-endpoint", required_argument, nullptr, kMetadataEndpoint},
      {"no-metadata", no_argument, nullptr, kNoMetadata},
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
        flags.access.listen = optarg;
        break;
      case kUser:
        flags.user = optarg;
        break;
      case kMaxStreams: {
        size_t n = 0;
        if (!ParseSize(optarg, n) || n == 0 || n > 1024) Usage("--max-streams takes 1..1024");
        flags.max_streams = n;
        break;
      }
      case kMaxConnections: {
        size_t n = 0;
        if (!ParseCount(optarg, n) || n == 0 || n > 1'000'000) {
          Usage("--max-connections takes 1..1000000");
        }
        flags.connections.max_connections = n;
        break;
      }
      case kMaxConnectionsPerClient: {
        size_t n = 0;
        if (!ParseCount(optarg, n) || n == 0 || n > 1'000'000) {
          Usage("--max-connections-per-client takes 1..1000000");
        }
        flags.connections.max_per_client = n;
        break;
      }
      case kMaxQueue:
        if (!ParseSize(optarg, flags.max_queue_bytes) || flags.max_queue_bytes < (1 << 20)) {
          Usage("--max-queue-bytes takes a size of at least 1M, e.g. 32M");
        }
        break;
      case kMaxDecapInterfaces: {
        size_t n = 0;
        if (!ParseSize(optarg, n) || n == 0 || n > capd::agent::kMaxDecapInterfaces) {
          Usage("--max-decap-interfaces takes 1..4096");
        }
        flags.max_decap_interfaces = n;
        break;
      }
      case kStallTimeout: {
        size_t seconds = 0;
        if (!ParseSize(optarg, seconds) || seconds == 0 || seconds > 3600) {
          Usage("--stall-timeout takes 1..3600 seconds");
        }
        flags.stall_timeout_seconds = seconds;
        break;
      }
      case kMaxRecordings: {
        size_t n = 0;
        if (!ParseSize(optarg, n) || n == 0 || n > 256) Usage("--max-recordings takes 1..256");
        flags.max_recordings = n;
        break;
      }
      case kMaxFetches: {
        size_t n = 0;
        if (!ParseSize(optarg, n) || n == 0 || n > 256) Usage("--max-fetches takes 1..256");
        flags.max_fetches = n;
        break;
      }
      case kBufferSize: {
        size_t bytes = 0;
        if (!ParseSize(optarg, bytes) || bytes < (1 << 20) || bytes > (1 << 30)) {
          Usage("--buffer-size takes a size from 1M to 1G, e.g. 32M");
        }
        flags.ring.buffer_bytes = static_cast<int>(bytes);
        break;
      }
      case kBlockTimeout: {
        size_t ms = 0;
        if (!ParseSize(optarg, ms) || ms == 0 || ms > 1000) {
          Usage("--block-timeout-ms takes 1..1000 milliseconds");
        }
        flags.ring.block_timeout_ms = static_cast<int>(ms);
        break;
      }
      case kTlsCert:
        flags.access.tls_cert_file = optarg;
        break;
      case kTlsKey:
        flags.access.tls_key_file = optarg;
        break;
      case kTlsClientCa:
        flags.access.tls_client_ca_file = optarg;
        break;
      case kToken:
        flags.access.token_file = optarg;
        break;
      case kNoCarrier:
        flags.carrier_exclusion = false;
        break;
      case kAllowGroup:
        if (*optarg == '\0') Usage("--allow-group takes a group name or id");
        flags.allow_groups.emplace_back(optarg);
        break;
      case kAllowUser:
        if (*optarg == '\0') Usage("--allow-user takes a user name or id");
        flags.allow_users.emplace_back(optarg);
        break;
      case kMetadataEndpoint:
        flags.metadata_endpoint = optarg;
        break;
      case kNoMetadata:
        flags.metadata_endpoint.clear();
        break;
      case kRecordDir:
        if (*optarg == '\0') Usage("--record-dir takes a folder");
        flags.record_dir = optarg;
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
  if (!IsAddressAndPort(flags.access.listen)) {
    Usage("--listen takes ADDRESS:PORT (IPv6 as [ADDRESS]:PORT), e.g. 127.0.0.1:50051, not '" +
          capd::PrintableText(flags.access.listen) + "'");
  }
  // gRPC gives no peer credentials for a unix socket, so capd could not tell who connects.
  if (flags.access.listen.starts_with("unix:")) {
    Usage("--listen " + flags.access.listen +
          ": unix sockets are not supported (capd could not tell which user connects); use a "
          "loopback address such as 127.0.0.1:50051");
  }
  flags.name_given = !flags.name.empty();
  if (flags.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    flags.name = host;
  }
  return flags;
}

// capd's log on stderr with every message made printable: filters, interface and recording
// names, peers' process names and libpcap's messages come from others, and a newline or an
// escape sequence in them could forge log lines or rewrite a terminal.
class PrintableStderrSink final : public spdlog::sinks::stderr_color_sink_mt {
 public:
  void log(const spdlog::details::log_msg& msg) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (std::none_of(payload.begin(), payload.end(), [](char c) {
          const auto byte = static_cast<unsigned char>(c);
          return byte < 0x20 || byte >= 0x7f;
        })) {
      spdlog::sinks::stderr_color_sink_mt::log(msg);
      return;
    }
    const std::string printable = capd::PrintableText(payload);
    spdlog::details::log_msg copy = msg;
    copy.payload = spdlog::string_view_t(printable.data(), printable.size());
    spdlog::sinks::stderr_color_sink_mt::log(copy);
  }
};

// gRPC's log lines go through capd's logger, at the matching level.
void GrpcLogToSpdlog(gpr_log_func_args* args) {
  const auto level = args->severity == GPR_LOG_SEVERITY_ERROR  ? spdlog::level::err
                     : args->severity == GPR_LOG_SEVERITY_INFO ? spdlog::level::info
                                                               : spdlog::level::debug;
  spdlog::log(level, "grpc: {}", args->message);
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  auto logger = std::make_shared<spdlog::logger>("capd", std::make_shared<PrintableStderrSink>());
  spdlog::set_default_logger(logger);
  const auto level = spdlog::level::from_str(flags.log_level);
  if (level == spdlog::level::off && flags.log_level != "off") {
    Usage("unknown log level '" + flags.log_level + "'");
  }
  spdlog::set_level(level);
  gpr_set_log_function(GrpcLogToSpdlog);
  // A client that goes away must surface as an error on write, not kill the agent.
  signal(SIGPIPE, SIG_IGN);
  // gRPC holds a descriptor per connection, idle ones too; the usual soft limit (1,024, also
  // systemd's) would let a thousand idle local connections starve captures and accepts. The hard
  // limit is the admin's bound (systemd: 524,288); capd takes up to 65,536 of it.
  constexpr rlim_t kWantedFiles = 65536;
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < kWantedFiles &&
                      files.rlim_cur < files.rlim_max) {
    files.rlim_cur = std::min(files.rlim_max, kWantedFiles);
    (void)setrlimit(RLIMIT_NOFILE, &files);
  }

  // Everything that needs root or reads protected files happens before privileges drop, and
  // privileges drop before gRPC starts any thread (capabilities are per thread).
  auto credentials = capd::agent::MakeServerCredentials(flags.access);
  if (!credentials.ok()) {
    spdlog::error("{}", credentials.status().message());
    return 2;
  }
  capd::agent::ServiceOptions options;
  options.identity.name = flags.name;
  options.identity.os = capd::agent::OperatingSystemDescription();
  options.version = CAPD_VERSION;
  options.max_streams = flags.max_streams;
  options.max_queue_bytes = flags.max_queue_bytes;
  options.max_fetches = flags.max_fetches;
  options.stall_timeout = std::chrono::seconds(flags.stall_timeout_seconds);
  options.identity.ring = flags.ring;
  options.identity.max_decap_interfaces = flags.max_decap_interfaces;
  options.client_certificates = !flags.access.tls_client_ca_file.empty();
  auto local_access = capd::agent::LocalAccessPolicy::Make(flags.allow_users, flags.allow_groups);
  if (!local_access.ok()) {
    spdlog::error("{}", local_access.status().message());
    return 2;
  }
  options.local_access = std::move(local_access).value();
  if (!flags.access.token_file.empty()) {
    auto token = capd::agent::TokenCheck::FromFile(flags.access.token_file);
    if (!token.ok()) {
      spdlog::error("{}", token.status().message());
      return 2;
    }
    options.token = std::move(token.value());
  }
  // Every request's filter compiles in capd-filters' children, within a budget. Forked now,
  // while capd has no thread: its children run libpcap after a fork (filter_sandbox.h).
  {
    auto sandbox = capd::agent::FilterSandbox::Start(flags.user);
    if (!sandbox.ok()) {
      spdlog::error("{}", sandbox.status().message());
      return sandbox.status().code() == capd::StatusCode::kInvalidArgument ? 2 : 1;
    }
    options.identity.filter_sandbox = std::move(sandbox).value();
    options.identity.filter_sandbox->SetOnLost([] {
      spdlog::error(
          "capd-filters is gone (killed?): capd stops with a failure, for its service manager "
          "to start it again");
      helper_lost.store(true);
      kill(getpid(), SIGTERM);
    });
    spdlog::info("filters compile in capd-filters (pid {}) within {} each",
                 options.identity.filter_sandbox->pid(),
                 options.identity.filter_sandbox->budget().Describe());
  }
  // Bound before privileges drop (a port below 1024 needs CAP_NET_BIND_SERVICE). Connections
  // stay below the descriptor limit, with room for captures, files and the peer helper.
  constexpr size_t kReservedFiles = 256;
  capd::agent::ConnectionLimits connection_limits = flags.connections;
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY) {
    const size_t room = files.rlim_cur > kReservedFiles + 16 ? files.rlim_cur - kReservedFiles : 16;
    if (room < connection_limits.max_connections) {
      spdlog::warn("descriptor limit {}: at most {} connections (raise LimitNOFILE for more)",
                   files.rlim_cur, room);
      connection_limits.max_connections = room;
    }
  }
  // Local users allowed to capture keep a reserve of places however many strangers connect.
  auto listener = capd::agent::TcpListener::Bind(
      flags.access.listen, connection_limits,
      [policy = *options.local_access](uid_t uid) { return !policy.Refusal(uid).has_value(); });
  if (!listener.ok()) {
    spdlog::error("{}", listener.status().message());
    return listener.status().code() == capd::StatusCode::kInvalidArgument ? 2 : 1;
  }
  // The peer helper is forked while capd still holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH
  // (root, or the unit's ambient set); it keeps those, capd drops them below.
  if (flags.carrier_exclusion) {
    options.identity.carriers = std::make_shared<capd::agent::CarrierRegistry>();
    auto helper = capd::agent::PeerHelper::Start(flags.user);
    if (!helper.ok()) {
      options.peer_helper_problem = helper.status().message();
      spdlog::warn(
          "{}: the relays of streams (sshd, the SSM worker, socat) cannot be identified, "
          "and their connections will be captured",
          options.peer_helper_problem);
    } else {
      options.peer_helper = std::move(helper).value();
      if (options.peer_helper->CanReadEveryProcess()) {
        spdlog::info("peer helper ({}) identifies the relays of streams",
                     options.peer_helper->Describe());
      } else {
        spdlog::warn(
            "peer helper ({}) lacks CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH: relays run by "
            "other users (sshd sessions, the SSM worker) cannot be identified, and their "
            "connections will be captured",
            options.peer_helper->Describe());
      }
    }
  }
  if (!flags.user.empty()) {
    if (capd::Status dropped = capd::agent::DropPrivileges(flags.user); !dropped.ok()) {
      spdlog::error("{}", dropped.message());
      return dropped.code() == capd::StatusCode::kInvalidArgument ? 2 : 1;
    }
    spdlog::info("running as {} ({})", flags.user, capd::agent::DescribeCredentials());
  } else if (geteuid() == 0) {
    spdlog::info("running as root; --user USER keeps only CAP_NET_RAW and CAP_NET_ADMIN");
  }
  capd::agent::CaptureService service(options);

  grpc::ServerBuilder builder;
  // capd accepts (TcpListener) and gRPC serves what it hands over, TLS included.
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor =
      builder.experimental().AddExternalConnectionAcceptor(
          grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
          credentials.value()());
  builder.RegisterService(&service);
  // Dead peers are noticed by keepalive (a live client that stops reading is the queue's job).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A connection that has not finished TLS and sent HTTP/2's settings by then is closed, so that
  // a flood of silent connects drains; an idle one is closed after two minutes (capctl opens
  // one per command and reconnects by itself).
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, 120000);
  // capctl runs one or two calls per connection; 32 bounds what one connection can hold open.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 32);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    spdlog::error("cannot start the gRPC server on {}", flags.access.listen);
    return 1;
  }
  const uint16_t bound_port = (*listener)->port();
  service.SetListeningPort(bound_port);
  (*listener)->Start([&acceptor](int listener_fd, int connection_fd) {
    grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters connection;
    connection.listener_fd = listener_fd;
    connection.fd = connection_fd;
    acceptor->HandleNewConnection(&connection);
  });
  // Recordings start once the port is known (their own-traffic exclusion needs it) and run as
  // the --user capd runs as: DIR must be writable by it.
  capd::agent::AgentIdentity recording_identity = options.identity;
  recording_identity.own_traffic.tcp_ports = {bound_port};
  std::unique_ptr<capd::agent::RecordingManager> recordings;
  if (!flags.record_dir.empty()) {
    auto opened = capd::agent::RecordingManager::Open(flags.record_dir, recording_identity,
                                                      flags.max_recordings);
    if (!opened.ok()) {
      spdlog::error("{}", opened.status().message());
      (*listener)->Stop();
      server->Shutdown();
      return 2;
    }
    recordings = std::move(opened).value();
    recordings->ResumeAll();
    service.SetRecordings(recordings.get());
  }
  const std::string host = flags.access.listen.substr(0, flags.access.listen.rfind(':'));
  spdlog::info("capd {} '{}' listening on {}:{}{}{}", CAPD_VERSION, flags.name, host, bound_port,
               flags.access.tls_cert_file.empty() ? "" : " (TLS)",
               flags.access.token_file.empty() ? "" : " (token required)");

  spdlog::info("local clients allowed: {}{}", options.local_access->Describe(),
               flags.access.token_file.empty() ? "" : "; others with the token");
  boost::asio::io_context io;
  boost::asio::steady_timer trim_timer(io);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  bool stopping = false;
  signals.async_wait([&](const boost::system::error_code&, int signal_number) {
    spdlog::info("{}: ending all streams", strsignal(signal_number));
    stopping = true;
    service.BeginShutdown();
    trim_timer.cancel();
  });
  // glibc keeps the heap it has freed; after a burst (an HTTP/2 flood, a thousand streams ending)
  // that would stay capd's RSS for good. Handing free pages back every 10 s costs
  // microseconds when there is nothing to hand back.
  std::function<void()> trim_later = [&] {
    trim_timer.expires_after(std::chrono::seconds(10));
    trim_timer.async_wait([&](const boost::system::error_code& error) {
      if (error || stopping) return;
      malloc_trim(0);
      trim_later();
    });
  };
  trim_later();
  // Off EC2 the metadata service never answers: ask in the background so nothing waits for it.
  std::thread metadata_thread;
  if (!flags.metadata_endpoint.empty()) {
    metadata_thread = std::thread([&service, &flags] {
      auto metadata = capd::agent::FetchInstanceMetadata(flags.metadata_endpoint,
                                                         std::chrono::milliseconds(1000));
      if (!metadata.ok()) {
        spdlog::debug("no instance metadata: {}", metadata.status().message());
        return;
      }
      spdlog::info("EC2 instance {} in {}", metadata->instance_id, metadata->availability_zone);
      service.SetInstanceMetadata(
          std::make_shared<capd::agent::InstanceMetadata>(std::move(metadata.value())),
          /*use_as_name=*/!flags.name_given);
    });
  }
  io.run();
  (*listener)->Stop();
  if (metadata_thread.joinable()) metadata_thread.join();

  // Every capture ends (each stream is handed what was captured, its statistics and its end) and
  // its thread is joined; so are the recording calls in progress.
  service.JoinWork();
  // Recordings finish their files and keep their state "running", to resume at the next start.
  if (recordings) recordings->StopAll();
  // gRPC writes what the streams have queued to clients that read, for up to 3 s, then cancels
  // the rest; every reactor is then done and goes.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
  service.WaitForStreams();
  spdlog::info("capd stopped");
  return helper_lost.load() ? 1 : 0;
}

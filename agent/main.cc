// capd: the capture agent. Wires the gRPC service to a server and handles signals; everything
// else lives in capture/, stream/ and service/.

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
#include "agent/cli/flags.h"
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

// Bad arguments exit 2 with one line; --help and --version exit 0.
capd::agent::AgentFlags ParseFlags(int argc, char** argv) {
  auto line = capd::agent::ParseAgentCommandLine(argc, argv);
  if (!line.ok()) {
    std::fprintf(stderr, "capd: %s\n", line.status().message().c_str());
    std::exit(2);
  }
  switch (line->action) {
    case capd::agent::AgentCommandLine::Action::kHelp:
      std::fputs(line->help.c_str(), stdout);
      std::exit(0);
    case capd::agent::AgentCommandLine::Action::kVersion:
      std::printf("capd %s\n", CAPD_VERSION);
      std::exit(0);
    case capd::agent::AgentCommandLine::Action::kRun:
      break;
  }
  return std::move(line->flags);
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
  const capd::agent::AgentFlags flags = ParseFlags(argc, argv);
  auto logger = std::make_shared<spdlog::logger>("capd", std::make_shared<PrintableStderrSink>());
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(flags.log_level));  // a known level (agent/cli)
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
  options.identity.max_trigger_history_bytes = flags.max_trigger_history_bytes;
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
  // Key-log folders are opened now, as root: a folder given is a folder that exists. The files in
  // them are opened per stream, as --user.
  if (!flags.tls_keylog_dirs.empty()) {
    auto folders = capd::agent::keylog::KeyLogFolders::Open(flags.tls_keylog_dirs);
    if (!folders.ok()) {
      spdlog::error("{}", folders.status().message());
      return 2;
    }
    options.keylog_folders = std::move(folders).value();
    spdlog::info("streams may follow TLS key logs in {}", options.keylog_folders->Describe());
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
  builder.RegisterService(service.grpc_service());
  // Every method is async: the service's accepting thread waits in this queue for new calls.
  std::unique_ptr<grpc::ServerCompletionQueue> accept_queue = builder.AddCompletionQueue();
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
    accept_queue->Shutdown();
    return 1;
  }
  service.Serve(std::move(accept_queue));
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
                                                      flags.max_recordings, flags.record_keep_free);
    if (!opened.ok()) {
      spdlog::error("{}", opened.status().message());
      (*listener)->Stop();
      server->Shutdown();
      service.StopServing();
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
  // the rest; every stream's and fetch's writer then finishes its call and goes.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
  service.WaitForStreams();
  service.StopServing();
  spdlog::info("capd stopped");
  return helper_lost.load() ? 1 : 0;
}

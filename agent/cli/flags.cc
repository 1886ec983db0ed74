#include "agent/cli/flags.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "agent/recording/recording_manager.h"
#include "common/command_line.h"
#include "common/printable.h"

namespace capd::agent {
namespace {

static_assert(AgentFlags{}.max_recordings == kDefaultMaxRecordings);

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

Status Bad(const std::string& message) { return InvalidArgument(ErrorLine(message, "capd")); }

}  // namespace

StatusOr<AgentCommandLine> ParseAgentCommandLine(int argc, char** argv) {
  AgentCommandLine line;
  AgentFlags& f = line.flags;
  f.access.listen = "127.0.0.1:50051";
  CLI::App app{"capd: the capture agent. Clients (capctl) stream packets from it over gRPC.",
               "capd"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.footer(
      "Sizes: a number of bytes with k, M, G (powers of 1000) or KiB, MiB, GiB (powers of "
      "1024). Counts take no suffix.\n"
      "Exit status: 0 stopped by SIGINT/SIGTERM, 2 bad arguments or settings, 1 anything else.");
  bool version = false;
  app.add_flag("--version", version, "print the version and exit");

  CLI::Option_group* service = app.add_option_group("Service", "where and how capd serves");
  service
      ->add_option("--listen", f.access.listen,
                   "where clients connect; any address other than loopback requires TLS")
      ->type_name("ADDRESS:PORT")
      ->capture_default_str();
  service->add_option("--name", f.name, "this agent's name in capture files (default: host name)")
      ->type_name("NAME");
  service
      ->add_option("--user", f.user,
                   "after start-up run as USER with only CAP_NET_RAW and CAP_NET_ADMIN; the "
                   "peer helper (capd-peers) keeps only CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH "
                   "to find the relays of streams")
      ->type_name("USER");
  service->add_option("--log-level", f.log_level, "trace, debug, info, warn, error or off")
      ->type_name("LEVEL")
      ->transform(
          OneOf({"trace", "debug", "info", "warn", "warning", "error", "err", "critical", "off"}))
      ->capture_default_str();
  service
      ->add_option("--record-dir", f.record_dir,
                   "enable recordings (capctl record ...), kept under DIR; those running when "
                   "capd stops resume when it starts again")
      ->type_name("DIR")
      ->check(NotEmpty("a folder"));
  service
      ->add_option_function<std::string>(
          "--record-keep-free",
          [&f](const std::string& text) {
            f.record_keep_free = *capfile::ParseFreeSpaceFloor(text);
          },
          "free space recordings leave on --record-dir's filesystem: a size or a percentage "
          "of the filesystem; below it a ring kept for its upload deletes its oldest files not "
          "uploaded yet, and a recording stops rather than fill the disk; a start whose ring "
          "does not fit above it is refused; 0 turns it off (default: the larger of 1GiB and "
          "5%)")
      ->type_name("SIZE|PCT%")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            if (capfile::ParseFreeSpaceFloor(text)) return "";
            return "takes a size (" + std::string(kByteSizeGrammar) +
                   "), a percentage 0%..100% or 0, not '" + text + "'";
          },
          "", "size or percentage"));
  service
      ->add_option("--tls-keylog-dir", f.tls_keylog_dirs,
                   "let streams follow TLS key logs (SSLKEYLOGFILE, NSS format) in DIR "
                   "(repeatable; capctl stream --tls-keylog): files inside DIR only, no symbolic "
                   "links, readable by capd's --user; default: none")
      ->type_name("DIR")
      ->check(NotEmpty("a folder"));
  service
      ->add_option("--metadata-endpoint", f.metadata_endpoint,
                   "EC2 instance metadata (IMDSv2); on EC2 the instance id names the agent "
                   "(unless --name) and interfaces get their ENI, VPC and subnet")
      ->type_name("URL")
      ->capture_default_str();
  service->add_flag_callback(
      "--no-metadata", [&f] { f.metadata_endpoint.clear(); }, "do not ask for instance metadata");

  CLI::Option_group* limits = app.add_option_group("Limits", "what capd serves at once");
  limits
      ->add_option("--max-streams", f.max_streams,
                   "streams served at once; beyond, RESOURCE_EXHAUSTED")
      ->type_name("N")
      ->transform(CountIn(1, 1024))
      ->capture_default_str();
  limits
      ->add_option("--max-connections", f.connections.max_connections,
                   "connections open at once (at most the descriptor limit less 256); more "
                   "wait in the kernel's queue")
      ->type_name("N")
      ->transform(CountIn(1, 1'000'000))
      ->capture_default_str();
  limits
      ->add_option("--max-connections-per-client", f.connections.max_per_client,
                   "connections open at once from one remote address or one local user; more "
                   "are closed at once")
      ->type_name("N")
      ->transform(CountIn(1, 1'000'000))
      ->capture_default_str();
  limits
      ->add_option("--max-queue-bytes", f.max_queue_bytes,
                   "per-stream queue for a slow client (default 32MiB); beyond, whole batches "
                   "are dropped and counted")
      ->type_name("SIZE")
      ->transform(ByteSizeIn(1'000'000, uint64_t{1} << 40, "1M..1TiB"));
  limits
      ->add_option("--max-trigger-history", f.max_trigger_history_bytes,
                   "history a stream waiting for its start trigger (capctl --start-on) may hold "
                   "(default 32MiB); beyond, its oldest packets are dropped and counted")
      ->type_name("SIZE")
      ->transform(ByteSizeIn(1'000'000, uint64_t{1} << 40, "1M..1TiB"));
  limits
      ->add_option("--max-decap-interfaces", f.max_decap_interfaces,
                   "decapsulated sessions (encapsulation, VNI) per capture; frames of further "
                   "sessions are dropped, counted as interface_limit and reported to clients")
      ->type_name("N")
      ->transform(CountIn(1, kMaxDecapInterfaces))
      ->capture_default_str();
  limits
      ->add_option("--stall-timeout", f.stall_timeout_seconds,
                   "end a stream or fetch whose client read nothing for SEC seconds")
      ->type_name("SEC")
      ->transform(CountIn(1, 3600, "seconds"))
      ->capture_default_str();
  limits
      ->add_option("--max-recordings", f.max_recordings,
                   "recordings running at once, apart from --max-streams")
      ->type_name("N")
      ->transform(CountIn(1, 256))
      ->capture_default_str();
  limits->add_option("--max-fetches", f.max_fetches, "recording fetches served at once")
      ->type_name("N")
      ->transform(CountIn(1, 256))
      ->capture_default_str();

  CLI::Option_group* ring = app.add_option_group("Capture ring", "each capture's kernel ring");
  ring->add_option("--buffer-size", f.ring.buffer_bytes,
                   "like tcpdump -B (default 32MiB); it counts in capd's memory once traffic "
                   "fills it")
      ->type_name("SIZE")
      ->transform(ByteSizeIn(1'000'000, uint64_t{1} << 30, "1M..1GiB"));
  ring->add_option("--block-timeout-ms", f.ring.block_timeout_ms,
                   "longest a lone packet waits in the ring; more saves CPU at high packet "
                   "rates, less is more live")
      ->type_name("MS")
      ->transform(CountIn(1, 1000, "milliseconds"))
      ->capture_default_str();

  CLI::Option_group* access = app.add_option_group("Access", "who may capture");
  access
      ->add_option("--tls-cert", f.access.tls_cert_file,
                   "serve TLS with this certificate chain (PEM)")
      ->type_name("FILE");
  access->add_option("--tls-key", f.access.tls_key_file, "and this key (PEM)")->type_name("FILE");
  access
      ->add_option("--tls-client-ca", f.access.tls_client_ca_file,
                   "require client certificates signed by this CA (mutual TLS)")
      ->type_name("FILE");
  access
      ->add_option("--auth-token-file", f.access.token_file,
                   "require this bearer token from clients (capctl --token-file)")
      ->type_name("FILE");
  access
      ->add_option("--allow-group", f.allow_groups,
                   "local clients in GROUP may capture (repeatable; default: the group capd, "
                   "if it exists); root always may")
      ->type_name("GROUP")
      ->check(NotEmpty("a group name or id"))
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  access
      ->add_option("--allow-user", f.allow_users,
                   "local clients running as USER may capture (repeatable)")
      ->type_name("USER")
      ->check(NotEmpty("a user name or id"))
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  access->add_flag_callback(
      "--no-carrier-exclusion", [&f] { f.carrier_exclusion = false; },
      "capture the connections of local relays (sshd, the SSM worker, socat) that carry capd's "
      "streams; excluded by default");

  try {
    std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
    std::reverse(args.begin(), args.end());  // CLI11 takes them last first
    app.parse(args);
  } catch (const CLI::CallForHelp&) {
    line.action = AgentCommandLine::Action::kHelp;
    line.help = app.help();
    return line;
  } catch (const CLI::ParseError& e) {
    return Bad(e.what());
  }
  if (version) {
    line.action = AgentCommandLine::Action::kVersion;
    return line;
  }
  if (!IsAddressAndPort(f.access.listen)) {
    return Bad("--listen takes ADDRESS:PORT (IPv6 as [ADDRESS]:PORT), e.g. 127.0.0.1:50051, not '" +
               PrintableText(f.access.listen) + "'");
  }
  // gRPC gives no peer credentials for a unix socket, so capd could not tell who connects.
  if (f.access.listen.starts_with("unix:")) {
    return Bad("--listen " + PrintableText(f.access.listen) +
               ": unix sockets are not supported (capd could not tell which user connects); use "
               "a loopback address such as 127.0.0.1:50051");
  }
  f.name_given = !f.name.empty();
  if (f.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    f.name = host;
  }
  return line;
}

}  // namespace capd::agent

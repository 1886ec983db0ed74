#include "client/cli/options.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>

#include "common/command_line.h"

namespace capd::client {
namespace {

constexpr uint64_t kMaxSize = uint64_t{1} << 60;  // an exabyte: past any disk

// A number of seconds, decimals allowed: (0, 1e9].
CLI::Validator PositiveSeconds() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        const double seconds = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !(seconds > 0) || seconds > 1e9) {
          return "takes a positive number of seconds, not '" + text + "'";
        }
        return "";
      },
      "", "seconds");
}

// "N[,N...]" with VNIs 0..16777215.
CLI::Validator VniList() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        size_t start = 0;
        while (start <= text.size()) {
          const size_t comma = std::min(text.find(',', start), text.size());
          std::string item = text.substr(start, comma - start);
          if (!CountIn(0, 0xFFFFFF).operator()(item).empty()) {
            return "takes VNIs 0..16777215 separated by commas, not '" + item + "'";
          }
          start = comma + 1;
        }
        return "";
      },
      "", "vnis");
}

std::vector<uint32_t> SplitVnis(const std::string& text) {
  std::vector<uint32_t> vnis;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    vnis.push_back(static_cast<uint32_t>(std::stoul(text.substr(start, comma - start))));
    start = comma + 1;
  }
  return vnis;
}

StatusOr<AgentAddress> AgentFrom(const std::string& text) {
  if (!text.empty()) return ParseAgentAddress(text);
  const char* env = std::getenv("CAPD_AGENT");
  return ParseAgentAddress(env != nullptr && *env != '\0' ? env : kDefaultAgent);
}

// -i and an --agent HOST/IFACE that names another interface: which one the user meant is not
// ours to guess. (The /IFACE of $CAPD_AGENT is a default, which -i overrides.)
Status CheckInterface(const std::string& interface, const std::vector<AgentAddress>& agents,
                      bool agents_given) {
  if (interface.empty() || !agents_given) return Status::Ok();
  for (const AgentAddress& agent : agents) {
    if (!agent.interface.empty() && agent.interface != interface) {
      return InvalidArgument("-i " + interface + " and --agent " + agent.text +
                             " name different interfaces: give the interface once");
    }
  }
  return Status::Ok();
}

Status CheckConnection(const ConnectionOptions& c) {
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return InvalidArgument("--tls-cert and --tls-key go together");
  }
  return Status::Ok();
}

// --vni and --inner-filter mean nothing without decapsulation: say so rather than ignore them.
Status CheckDecap(const DecapOptions& decap) {
  if (decap.mode == DecapOptions::Mode::kNone &&
      (!decap.vnis.empty() || !decap.inner_filter.empty())) {
    return InvalidArgument(
        "--vni and --inner-filter select decapsulated frames: add --decap vxlan|geneve|auto");
  }
  return Status::Ok();
}

CLI::Option* AddAgentOption(CLI::App& app, std::string& text) {
  return app
      .add_option("--agent", text,
                  "HOST:PORT[/IFACE], ssh://[user@]host[:port][/IFACE] or "
                  "ssm://i-xxxx[/IFACE] (default: $CAPD_AGENT, else 127.0.0.1:50051)")
      ->type_name("ADDRESS");
}

CLI::Option* AddMaxAgentsOption(CLI::App& app, size_t& max_agents) {
  return app
      .add_option("--max-agents", max_agents,
                  "ssm://tag: and ssm://asg: open at most N instances (default " +
                      std::to_string(kDefaultMaxAgents) + "); more matching is refused")
      ->type_name("N")
      ->transform(CountIn(1, 10000, "instances"));
}

CLI::Option* AddFormatOption(CLI::App& app, FileFormat& format) {
  return app
      .add_option_function<std::string>(
          "--format",
          [&format](const std::string& v) {
            format = v == "pcap" ? FileFormat::kPcap : FileFormat::kPcapng;
          },
          "pcapng (default) or pcap (nanosecond timestamps)")
      ->type_name("FORMAT")
      ->check(OneOf({"pcapng", "pcap"}));
}

// The rotation flags of `stream` (all of them) and `record start` (no --post-rotate or
// --min-free: an agent runs no command a client sends it, and watches its own disk).
struct RotationFlags {
  std::vector<CLI::Option*> given;  // any of these with a count: rotation was asked for
};
RotationFlags AddRotationOptions(CLI::App& app, uint64_t& max_bytes, uint32_t& seconds,
                                 uint32_t& max_files, std::string* post_rotate,
                                 uint64_t* min_free) {
  CLI::Option_group* group = app.add_option_group(
      "Rotation",
      "a ring of pcapng files PATH_NNNNN_YYYYmmddHHMMSS.pcapng; sizes: k, M, G "
      "= powers of 1000, KiB, MiB, GiB = powers of 1024");
  RotationFlags flags;
  flags.given.push_back(group
                            ->add_option("--rotate-size", max_bytes,
                                         "start a new file before one would exceed SIZE bytes")
                            ->type_name("SIZE")
                            ->transform(ByteSizeIn(1, kMaxSize, "1 byte or more")));
  flags.given.push_back(group
                            ->add_option("--rotate-seconds", seconds,
                                         "start a new file every SEC seconds since midnight UTC")
                            ->type_name("SEC")
                            ->transform(CountIn(1, 86400, "seconds")));
  flags.given.push_back(group->add_option("--rotate-files", max_files, "keep the newest N files")
                            ->type_name("N")
                            ->transform(CountIn(1, UINT32_MAX, "files")));
  if (post_rotate != nullptr) {
    flags.given.push_back(
        group
            ->add_option("--post-rotate", *post_rotate,
                         "run CMD FILE for each finished file (retried when it fails; "
                         "capctl waits for it at exit)")
            ->type_name("CMD")
            ->check(NotEmpty("a command")));
  }
  if (min_free != nullptr) {
    flags.given.push_back(
        group
            ->add_option("--min-free", *min_free,
                         "delete the oldest file when the disk has less than SIZE free (never "
                         "one not handed off yet); stop writing when none is left")
            ->type_name("SIZE")
            ->transform(ByteSizeIn(1, kMaxSize, "1 byte or more")));
  }
  return flags;
}

bool AnyGiven(const std::vector<CLI::Option*>& options) {
  for (const CLI::Option* o : options) {
    if (o->count() > 0) return true;
  }
  return false;
}

}  // namespace

void AddConnectionOptions(CLI::App& app, ConnectionOptions& out) {
  CLI::Option_group* group = app.add_option_group("Connection", "how to reach the agent securely");
  group
      ->add_option("--tls-ca", out.tls_ca_file,
                   "verify the agent's TLS certificate with this CA (enables TLS)")
      ->type_name("FILE");
  group->add_option("--tls-cert", out.tls_cert_file, "client certificate for mutual TLS")
      ->type_name("FILE");
  group->add_option("--tls-key", out.tls_key_file, "its key")->type_name("FILE");
  group
      ->add_option("--tls-server-name", out.tls_server_name,
                   "the name in the agent's certificate, if not the address")
      ->type_name("NAME");
  group
      ->add_option("--token-file", out.token_file,
                   "send the bearer token in this file (capd --auth-token-file)")
      ->type_name("FILE");
  group
      ->add_option("--remote-port", out.remote_port,
                   "ssh:// and ssm://: the agent's port on the instance's loopback")
      ->type_name("PORT")
      ->transform(CountIn(1, 65535))
      ->capture_default_str();
}

// The trigger flags of `capctl stream` and `capctl record start`, and their options for the
// checks that span flags.
struct TriggerFlags {
  CLI::Option* before = nullptr;
  CLI::Option* after = nullptr;
  CLI::Option* after_count = nullptr;
};

CLI::Option* SecondsOption(CLI::App& app, const std::string& name, uint32_t& out_ms,
                           const std::string& help, double max_seconds) {
  return app
      .add_option_function<std::string>(
          name,
          [&out_ms](const std::string& v) {
            out_ms = static_cast<uint32_t>(std::ceil(std::strtod(v.c_str(), nullptr) * 1000));
          },
          help)
      ->type_name("SEC")
      ->check(CLI::Range(0.0, max_seconds));
}

void AddTriggerOptions(CLI::App& app, std::string& start_on, uint32_t& before_ms,
                       std::string& stop_on, uint32_t& after_ms, uint64_t& after_count,
                       TriggerFlags& flags) {
  app.add_option("--start-on", start_on,
                 "write nothing until a packet matches FILTER (BPF), then the packets of the "
                 "--before seconds before it (held by the agent) and on; the matching packet "
                 "gets a comment")
      ->type_name("FILTER")
      ->check(NotEmpty("a filter"));
  flags.before = SecondsOption(
      app, "--before", before_ms,
      "with --start-on: seconds of history before the match (default 10, at most 3600)", 3600.0);
  app.add_option("--stop-on", stop_on,
                 "end after a packet matches FILTER (BPF) and --after or --after-count more has "
                 "passed; the matching packet gets a comment")
      ->type_name("FILTER")
      ->check(NotEmpty("a filter"));
  flags.after = SecondsOption(app, "--after", after_ms,
                              "with --stop-on: seconds of packet time to go on after the match",
                              30.0 * 24 * 3600);
  flags.after_count = app.add_option("--after-count", after_count,
                                     "with --stop-on: packets to go on for after the match "
                                     "(default 0)")
                          ->type_name("N")
                          ->transform(CountIn(0, 1'000'000'000'000, "packets"));
  flags.after->excludes(flags.after_count);
}

Status CheckTriggers(const TriggerFlags& flags, const std::string& start_on,
                     const std::string& stop_on, const DecapOptions& decap) {
  if (flags.before == nullptr) return Status::Ok();
  return CheckTriggers({.before = flags.before->count() > 0,
                        .after = flags.after->count() > 0,
                        .after_count = flags.after_count->count() > 0},
                       start_on, stop_on, decap);
}

void AddDecapOptions(CLI::App& app, DecapOptions& out) {
  CLI::Option_group* group = app.add_option_group(
      "Decapsulation", "mirror target: one output interface per VNI; -f filters the outer packets");
  group
      ->add_option_function<std::string>(
          "--decap",
          [&out](const std::string& v) {
            out.mode = v == "vxlan"    ? DecapOptions::Mode::kVxlan
                       : v == "geneve" ? DecapOptions::Mode::kGeneve
                       : v == "auto"   ? DecapOptions::Mode::kAuto
                                       : DecapOptions::Mode::kNone;
          },
          "strip VXLAN (UDP 4789), Geneve (UDP 6081) or both (auto)")
      ->type_name("MODE")
      ->check(OneOf({"vxlan", "geneve", "auto", "none"}));
  group->add_option("--vxlan-port", out.vxlan_port, "VXLAN's UDP port")
      ->type_name("PORT")
      ->transform(CountIn(1, 65535))
      ->capture_default_str();
  group->add_option("--geneve-port", out.geneve_port, "Geneve's UDP port")
      ->type_name("PORT")
      ->transform(CountIn(1, 65535))
      ->capture_default_str();
  group
      ->add_option_function<std::vector<std::string>>(
          "--vni",
          [&out](const std::vector<std::string>& lists) {
            for (const std::string& list : lists) {
              for (uint32_t vni : SplitVnis(list)) out.vnis.push_back(vni);
            }
          },
          "keep only these VNIs (mirror sessions); repeatable")
      ->type_name("N[,N...]")
      ->check(VniList())
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  group->add_option("--inner-filter", out.inner_filter, "BPF filter on the decapsulated frames")
      ->type_name("FILTER");
}

Status CompleteStreamOptions(const std::vector<std::string>& agent_texts, StreamOptions& out) {
  for (const std::string& text : agent_texts) {
    auto agent = ParseAgentAddress(text);
    if (!agent.ok()) return agent.status();
    out.agents.push_back(std::move(agent.value()));
  }
  if (out.agents.empty()) {
    auto agent = AgentFrom("");
    if (!agent.ok()) return agent.status();
    out.agents.push_back(std::move(agent.value()));
  }
  for (const AgentAddress& agent : out.agents) {
    if (IsFleetSelector(agent)) CAPD_RETURN_IF_ERROR(ParseFleetSelector(agent.text).status());
  }
  CAPD_RETURN_IF_ERROR(CheckInterface(out.interface, out.agents, !agent_texts.empty()));
  CAPD_RETURN_IF_ERROR(CheckDecap(out.decap));
  CAPD_RETURN_IF_ERROR(CheckConnection(out.connection));
  // With one agent its /IFACE is the interface; with several, each agent keeps its own.
  if (out.interface.empty() && out.agents.size() == 1) out.interface = out.agents[0].interface;
  return Status::Ok();
}

namespace {

Status Bad(const CLI::App& app, const std::string& message) {
  return InvalidArgument(ErrorLine(message, CommandPath(app)));
}

// How `stream` hands each finished file off (upload/file_handoff.h): these tune the
// --post-rotate command's runs; given without it they are refused.
std::vector<CLI::Option*> AddHandoffOptions(CLI::App& app, RotationOptions& rotation) {
  CLI::Option_group* group = app.add_option_group(
      "Hand-off",
      "each finished file goes to --post-rotate or --upload; the ring never deletes a file before "
      "that succeeded; a failure is retried after 1, 2, 4, 8... s (at most 60 s)");
  group
      ->add_option("--upload", rotation.upload_url,
                   "put each finished file (without --rotate-*: the -w file at the end) into S3 "
                   "with the aws CLI, as PREFIX/AGENT/IFACE/YYYY/MM/DD/START_END_NNNNN.pcapng")
      ->type_name("s3://BUCKET/PREFIX");
  group
      ->add_option("--upload-endpoint-url", rotation.upload_endpoint_url,
                   "an S3-compatible store's URL, for aws --endpoint-url")
      ->type_name("URL")
      ->check(NotEmpty("a URL"));
  std::vector<CLI::Option*> given;
  given.push_back(group
                      ->add_option("--handoff-jobs", rotation.handoff_jobs,
                                   "run at most N commands or uploads at once")
                      ->type_name("N")
                      ->capture_default_str()
                      ->transform(CountIn(1, 64, "commands")));
  given.push_back(group
                      ->add_option("--handoff-attempts", rotation.handoff_attempts,
                                   "try each file N times before giving up on it (it stays)")
                      ->type_name("N")
                      ->capture_default_str()
                      ->transform(CountIn(1, 100, "attempts")));
  given.push_back(
      group
          ->add_option("--handoff-wait", rotation.handoff_wait_seconds,
                       "at exit, wait up to SEC for commands or uploads running or queued "
                       "(a second Ctrl-C stops waiting; capctl exits 1 if any "
                       "file was not handed off)")
          ->type_name("SEC")
          ->capture_default_str()
          ->transform(CountIn(0, 86400, "seconds")));
  return given;
}

// Where each subcommand's values land before they are checked together.
struct Parser {
  CLI::App app{"capctl: the capd client (packet capture from capd agents)", "capctl"};
  CommandLine line;
  CLI::App* interfaces = nullptr;
  CLI::App* stream = nullptr;
  CLI::App* serve = nullptr;
  CLI::App* decap = nullptr;
  CLI::App* record = nullptr;
  CLI::App* paths = nullptr;
  CLI::App* version = nullptr;

  // stream and serve
  struct StreamFlags {
    std::vector<std::string> agents;
    CLI::Option* filter = nullptr;
    RotationFlags rotation;
    RotationOptions rotation_values;
    std::vector<CLI::Option*> handoff;  // stream: --handoff-*
    std::vector<CLI::Option*> outputs;  // serve: -w, --fifo, --wireshark (refused)
    TriggerFlags triggers;              // stream only (unset elsewhere)
  };
  StreamFlags stream_flags, serve_flags;
  std::string serve_unused_text;
  bool serve_unused_flag = false;
  CLI::Option* serve_format = nullptr;

  // record
  struct RecordAction {
    CLI::App* app = nullptr;
    std::string agent;
    std::string name;  // the positional NAME of stop and fetch
  };
  RecordAction record_start, record_stop, record_list, record_fetch, record_delete;
  TriggerFlags record_triggers;

  std::string interfaces_agent;
  // stream and serve: the words after "--", all of them filter words (CLI11 would refuse them).
  std::vector<std::string> words_after_dashes;

  Parser() {
    // A flag given twice: the last one counts, as getopt had it.
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app.require_subcommand(0, 1);
    app.footer(
        "Sizes: a number of bytes with k, M, G (powers of 1000, as tcpdump -C and dumpcap count) "
        "or KiB, MiB, GiB (powers of 1024). Counts take no suffix.\n"
        "Exit status: 0 done, 2 bad arguments or a request the agent refused, 1 anything else.\n"
        "`capctl COMMAND --help` describes each command.");
    version = app.add_subcommand("version", "print capctl's version");
    app.add_flag_callback(
        "--version", [this] { line.command = CommandLine::Command::kVersion; },
        "print capctl's version");
    app.add_subcommand("help", "this help; `capctl help COMMAND` a command's");

    interfaces = app.add_subcommand("interfaces", "list the interfaces of an agent's host");
    AddAgentOption(*interfaces, interfaces_agent)
        ->description(
            "HOST:PORT, ssh://[user@]host[:port], ssm://i-xxxx, or instances selected through "
            "SSM: ssm://tag:KEY=VALUE[,tag:KEY=VALUE] or ssm://asg:NAME, each listed (default: "
            "$CAPD_AGENT, else 127.0.0.1:50051)");
    AddMaxAgentsOption(*interfaces, line.interfaces.max_agents);
    AddConnectionOptions(*interfaces, line.interfaces.connection);

    stream = app.add_subcommand(
        "stream",
        "capture on an agent (or several, merged) into a file, stdout, a FIFO or "
        "Wireshark");
    AddStream(*stream, line.stream, stream_flags);
    stream
        ->add_option("-w,--write", line.stream.write_path,
                     "write to FILE, or to stdout with - (e.g. | wireshark -k -i -)")
        ->type_name("FILE|-");
    stream
        ->add_option("--fifo", line.stream.fifo_path,
                     "create the FIFO PATH if needed and write to it (Wireshark: -k -i PATH)")
        ->type_name("PATH");
    stream->add_flag("--wireshark", line.stream.wireshark,
                     "start Wireshark ($WIRESHARK or wireshark) on a private FIFO");
    AddFormatOption(*stream, line.stream.format);
    stream_flags.rotation = AddRotationOptions(
        *stream, stream_flags.rotation_values.max_bytes, stream_flags.rotation_values.seconds,
        stream_flags.rotation_values.max_files, &stream_flags.rotation_values.post_rotate_command,
        &stream_flags.rotation_values.min_free_bytes);
    stream_flags.handoff = AddHandoffOptions(*stream, stream_flags.rotation_values);

    serve = app.add_subcommand(
        "serve", "serve a stream as PCAP-over-IP to every TCP client (Wireshark -i TCP@HOST:PORT)");
    AddStream(*serve, line.serve.stream, serve_flags);
    serve->add_option("--listen", line.serve.listen, "HOST:PORT to listen on (port 0: any free)")
        ->type_name("HOST:PORT")
        ->capture_default_str();
    serve
        ->add_option("--client-queue", line.serve.client_queue_bytes,
                     "bytes queued per client, then its packets are dropped")
        ->type_name("SIZE")
        ->transform(ByteSizeIn(65536, kMaxSize, "64KiB or more"))
        ->capture_default_str();
    serve_format = AddFormatOption(*serve, line.serve.stream.format)
                       ->description(
                           "pcap (default; nanosecond timestamps, one link type, as every "
                           "PCAP-over-IP reader takes it) or pcapng (for readers that take it, "
                           "such as Wireshark: each interface its own link type)");
    // Outputs `serve` does not have, declared (hidden) to say why rather than "unknown".
    serve_flags.outputs = {serve->add_option("-w,--write", serve_unused_text)->group(""),
                           serve->add_option("--fifo", serve_unused_text)->group(""),
                           serve->add_flag("--wireshark", serve_unused_flag)->group("")};

    decap = app.add_subcommand("decap", "decapsulate VXLAN/Geneve in a capture file");
    decap->add_option("IN", line.decap_file.input, "a pcap or pcapng file")
        ->type_name("IN")
        ->required();
    decap->add_option("-w,--write", line.decap_file.write_path, "OUT file, or - for stdout")
        ->type_name("OUT|-")
        ->required();
    AddFormatOption(*decap, line.decap_file.format);
    line.decap_file.decap.mode = DecapOptions::Mode::kAuto;
    AddDecapOptions(*decap, line.decap_file.decap);

    paths = app.add_subcommand(
        "paths", "where each flow of a (merged) capture was seen, with a verdict per flow");
    paths->add_option("FILE", line.paths.input, "a pcapng or pcap file, or - for stdin")
        ->type_name("FILE|-")
        ->required();
    paths->add_flag("--json", line.paths.json, "JSON lines, one object per flow (README)");
    paths
        ->add_option("--grace", line.paths.grace_seconds,
                     "packets this close to the capture's end are not called lost")
        ->type_name("SEC")
        ->check(CLI::Range(0.0, 3600.0))
        ->capture_default_str();
    paths
        ->add_option("--max-flows", line.paths.max_flows,
                     "flows tracked; packets of further flows are only counted")
        ->type_name("N")
        ->check(CLI::Range(size_t{1}, size_t{10'000'000}))
        ->capture_default_str();

    record = app.add_subcommand("record", "recordings kept by the agent (capd --record-dir)");
    record->require_subcommand(1, 1);
    RecordOptions& r = line.record;
    record_start.app = record->add_subcommand("start", "start a recording on the agent");
    record_start.app->add_option("--name", r.name, "the recording's name")
        ->type_name("NAME")
        ->required();
    record_start.app
        ->add_option("-i,--interface", r.interface,
                     "interface (default: the agent's default-route interface)")
        ->type_name("IFACE");
    record_start.app->add_option("-f,--filter", r.filter, "capture filter in BPF syntax")
        ->type_name("FILTER");
    AddDecapOptions(*record_start.app, r.decap);
    AddRotationOptions(*record_start.app, r.rotate_bytes, r.rotate_seconds, r.rotate_files, nullptr,
                       nullptr);
    record_start.app
        ->add_option("--upload", r.upload,
                     "put each finished file into S3 (capd-upload on the agent's host sends them; "
                     "the ring deletes no file before it is uploaded)")
        ->type_name("s3://BUCKET[/PREFIX]");
    AddTriggerOptions(*record_start.app, r.start_on, r.before_ms, r.stop_on, r.after_ms,
                      r.after_count, record_triggers);
    record_stop.app = record->add_subcommand("stop", "stop a recording (its files stay)");
    record_stop.app->add_option("NAME", record_stop.name, "the recording")->type_name("NAME");
    record_stop.app->add_option("--name", r.name, "the same, as a flag")->type_name("NAME");
    record_list.app = record->add_subcommand("list", "list the agent's recordings");
    record_fetch.app = record->add_subcommand("fetch", "copy a recording's files here");
    record_fetch.app->add_option("NAME", record_fetch.name, "the recording")->type_name("NAME");
    record_fetch.app->add_option("--name", r.name, "the same, as a flag")->type_name("NAME");
    record_fetch.app->add_option("--out", r.out_dir, "the folder to copy into")
        ->type_name("DIR")
        ->capture_default_str();
    record_delete.app = record->add_subcommand(
        "delete", "remove a stopped recording and its files; its name is free again");
    record_delete.app->add_option("NAME", record_delete.name, "the recording")->type_name("NAME");
    record_delete.app->add_option("--name", r.name, "the same, as a flag")->type_name("NAME");
    for (RecordAction* action :
         {&record_start, &record_stop, &record_list, &record_fetch, &record_delete}) {
      AddAgentOption(*action->app, action->agent);
      AddConnectionOptions(*action->app, r.connection);
    }

    // Handled before this parser sees the command line (client/extcap); here for --help.
    app.add_subcommand(
        "extcap",
        "capctl as a Wireshark extcap: `capctl extcap install --help`, `capctl extcap uninstall`");
  }

  void AddStream(CLI::App& sub, StreamOptions& out, StreamFlags& flags) {
    // tcpdump's way: the words after the options are the filter ("-i eth0 tcp port 80"). CLI11
    // stops at the first word it does not know and leaves the rest in remaining().
    sub.prefix_command();
    sub.footer("Words after the options are the capture filter, as tcpdump takes them:\n  capctl " +
               sub.get_name() + " -i eth0 tcp port 80");
    sub.add_option("--agent", flags.agents,
                   "HOST:PORT[/IFACE], ssh://[user@]host[:port][/IFACE] or ssm://i-xxxx[/IFACE]; "
                   "or instances selected through SSM: ssm://tag:KEY=VALUE[,tag:KEY=VALUE][/IFACE] "
                   "or ssm://asg:NAME[/IFACE]; repeatable: the streams are merged (default: "
                   "$CAPD_AGENT, else 127.0.0.1:50051)")
        ->type_name("ADDRESS")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
        ->allow_extra_args(false);
    AddMaxAgentsOption(sub, out.max_agents);
    sub.add_option("-i,--interface", out.interface,
                   "interface to capture on (default: the agent's default-route interface)")
        ->type_name("IFACE");
    flags.filter =
        sub.add_option("-f,--filter", out.filter, "capture filter in BPF syntax, as for tcpdump")
            ->type_name("FILTER");
    sub.add_option("-c,--count", out.count, "stop after COUNT packets")
        ->type_name("COUNT")
        ->transform(CountIn(1, 1'000'000'000'000, "packets"));
    sub.add_option_function<std::string>(
           "--duration",
           [&out](const std::string& v) {
             out.duration_ms =
                 static_cast<uint64_t>(std::ceil(std::strtod(v.c_str(), nullptr) * 1000));
           },
           "stop after SEC seconds (decimals allowed)")
        ->type_name("SEC")
        ->check(PositiveSeconds());
    sub.add_option("-s,--snaplen", out.snaplen, "bytes kept per packet (0 = 262144)")
        ->type_name("SNAPLEN")
        ->transform(CountIn(0, 262144));
    sub.add_flag_callback(
        "-p,--no-promiscuous-mode", [&out] { out.promiscuous = false; },
        "do not put the interface into promiscuous mode");
    CLI::Option* compress = sub.add_flag_callback(
        "--compress", [&out] { out.compress = true; },
        "ask the agents for zstd-compressed batches (default: on for ssh:// and ssm:// agents, "
        "off for HOST:PORT)");
    sub.add_flag_callback(
           "--no-compress", [&out] { out.compress = false; }, "never ask for compressed batches")
        ->excludes(compress);
    if (sub.get_name() == "stream") {
      sub.add_option("--tls-keylog", out.tls_keylog,
                     "follow the TLS key log PATH on the agent's host (a file some process "
                     "writes as SSLKEYLOGFILE, inside a folder capd --tls-keylog-dir allows) and "
                     "write its new keys into the pcapng file as Decryption Secrets Blocks, which "
                     "Wireshark decrypts with; not with --format pcap")
          ->type_name("PATH")
          ->check(NotEmpty("a path"));
      AddTriggerOptions(sub, out.start_on, out.before_ms, out.stop_on, out.after_ms,
                        out.after_count, flags.triggers);
      sub.add_option_function<std::string>(
             "--since",
             [&out](const std::string& v) {
               const uint64_t now =
                   static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
               auto since = ParseSince(v, now);
               if (!since.ok()) throw CLI::ValidationError("--since", since.status().message());
               out.since_ns = *since;
             },
             "begin with the packets a recording running on the agent (capctl record start) "
             "kept from WHEN on, then go on live: WHEN is a time back (5m, 90s, 1.5h), an RFC "
             "3339 time (2026-12-07T10:00:00Z) or nanoseconds since the Unix epoch")
          ->type_name("WHEN");
    }
    AddDecapOptions(sub, out.decap);
    AddConnectionOptions(sub, out.connection);
  }

  // The filter words, then the checks that span flags.
  Status FinishStream(CLI::App& sub, StreamOptions& out, StreamFlags& flags) {
    std::vector<std::string> words = sub.remaining();
    if (!words.empty() && words[0].size() > 1 && words[0][0] == '-') {
      return Bad(sub, "unknown option '" + words[0] + "'");
    }
    words.insert(words.end(), words_after_dashes.begin(), words_after_dashes.end());
    if (!words.empty()) {
      if (flags.filter->count() > 0) {
        return Bad(sub, "give the filter either with -f or as words, not both");
      }
      for (const std::string& word : words) {
        if (!out.filter.empty()) out.filter += ' ';
        out.filter += word;
      }
    }
    const RotationOptions& handoff = flags.rotation_values;
    const bool upload = !handoff.upload_url.empty();
    if (upload && !handoff.post_rotate_command.empty()) {
      return Bad(sub, "--upload and --post-rotate are alternatives: give one");
    }
    if (AnyGiven(flags.handoff) && handoff.post_rotate_command.empty() && !upload) {
      return Bad(sub,
                 "--handoff-jobs, --handoff-attempts and --handoff-wait need --post-rotate or "
                 "--upload");
    }
    if (!handoff.upload_endpoint_url.empty() && !upload) {
      return Bad(sub, "--upload-endpoint-url needs --upload");
    }
    if (upload) {
      if (handoff.upload_url.rfind("s3://", 0) != 0 || handoff.upload_url.size() <= 5 ||
          handoff.upload_url[5] == '/') {
        return Bad(sub, "--upload takes s3://BUCKET[/PREFIX], not '" + handoff.upload_url + "'");
      }
      if (out.write_path.empty() || out.write_path == "-" || !out.fifo_path.empty() ||
          out.wireshark) {
        return Bad(sub, "--upload needs -w PATH (a file, not - or --fifo)");
      }
    }
    if (AnyGiven(flags.rotation.given)) {
      // A ring is files in a folder: stdout, a FIFO and Wireshark have nowhere to rotate to.
      if (out.write_path.empty() || out.write_path == "-" || !out.fifo_path.empty() ||
          out.wireshark) {
        return Bad(sub,
                   "--rotate-size, --rotate-seconds, --rotate-files, --post-rotate and --min-free "
                   "need -w PATH (a file, not - or --fifo)");
      }
      if (out.format != FileFormat::kPcapng) return Bad(sub, "rotating files are pcapng only");
      flags.rotation_values.path = out.write_path;
      out.rotation = flags.rotation_values;
    } else if (upload) {
      flags.rotation_values.path = out.write_path;
      out.single_file_handoff = flags.rotation_values;
    }
    if (Status s = CheckTriggers(flags.triggers, out.start_on, out.stop_on, out.decap); !s.ok()) {
      return Bad(sub, s.message());
    }
    if (!out.tls_keylog.empty() && out.format != FileFormat::kPcapng) {
      // pcap has no block for secrets; a key log beside the file would be a second output to
      // keep in step: refused, so nobody expects decryption from a pcap file.
      return Bad(sub, "--tls-keylog needs the pcapng format: pcap files cannot hold TLS keys");
    }
    if ((!out.write_path.empty()) + (!out.fifo_path.empty()) + out.wireshark > 1) {
      return Bad(sub, "-w, --fifo and --wireshark are alternatives: give one");
    }
    if (Status s = CompleteStreamOptions(flags.agents, out); !s.ok()) {
      return Bad(sub, s.message());
    }
    return Status::Ok();
  }

  StatusOr<AgentAddress> Agent(const CLI::App& sub, const std::string& text) {
    auto agent = AgentFrom(text);
    if (!agent.ok()) return Bad(sub, agent.status().message());
    return agent;
  }

  Status FinishRecord() {
    RecordOptions& r = line.record;
    RecordAction* action = nullptr;
    for (RecordAction* a :
         {&record_start, &record_stop, &record_list, &record_fetch, &record_delete}) {
      if (a->app->parsed()) action = a;
    }
    if (action == &record_start) r.action = RecordOptions::Action::kStart;
    if (action == &record_stop) r.action = RecordOptions::Action::kStop;
    if (action == &record_list) r.action = RecordOptions::Action::kList;
    if (action == &record_fetch) r.action = RecordOptions::Action::kFetch;
    if (action == &record_delete) r.action = RecordOptions::Action::kDelete;
    if (!action->name.empty()) {
      if (!r.name.empty()) return Bad(*action->app, "give NAME or --name, not both");
      r.name = action->name;
    }
    if (r.action != RecordOptions::Action::kList && r.name.empty()) {
      return Bad(*action->app, "record " + action->app->get_name() + " needs a NAME");
    }
    auto agent = Agent(*action->app, action->agent);
    if (!agent.ok()) return agent.status();
    r.agent = std::move(agent.value());
    if (IsFleetSelector(r.agent)) {
      return Bad(*action->app,
                 "a recording is kept by one agent: give ssm://i-xxxx, not a selection of "
                 "instances");
    }
    const std::vector<AgentAddress> agents = {r.agent};
    Status checked = CheckInterface(r.interface, agents, !action->agent.empty());
    if (checked.ok()) checked = CheckDecap(r.decap);
    if (checked.ok()) checked = CheckTriggers(record_triggers, r.start_on, r.stop_on, r.decap);
    if (checked.ok()) checked = CheckConnection(r.connection);
    if (!checked.ok()) return Bad(*action->app, checked.message());
    if (r.interface.empty()) r.interface = r.agent.interface;
    return Status::Ok();
  }

  Status Finish() {
    if (stream->parsed()) {
      line.command = CommandLine::Command::kStream;
      return FinishStream(*stream, line.stream, stream_flags);
    }
    if (serve->parsed()) {
      line.command = CommandLine::Command::kServe;
      for (const CLI::Option* o : serve_flags.outputs) {
        if (o->count() == 0) continue;
        return Bad(*serve,
                   "serve sends the capture to its TCP clients: -w, --fifo and --wireshark do "
                   "not apply");
      }
      if (serve_format->count() == 0) line.serve.stream.format = FileFormat::kPcap;
      return FinishStream(*serve, line.serve.stream, serve_flags);
    }
    if (interfaces->parsed()) {
      line.command = CommandLine::Command::kInterfaces;
      auto agent = Agent(*interfaces, interfaces_agent);
      if (!agent.ok()) return agent.status();
      line.interfaces.agent = std::move(agent.value());
      if (IsFleetSelector(line.interfaces.agent)) {
        if (Status s = ParseFleetSelector(line.interfaces.agent.text).status(); !s.ok()) {
          return Bad(*interfaces, s.message());
        }
      }
      if (Status s = CheckConnection(line.interfaces.connection); !s.ok()) {
        return Bad(*interfaces, s.message());
      }
      return Status::Ok();
    }
    if (decap->parsed()) {
      line.command = CommandLine::Command::kDecapFile;
      if (line.decap_file.decap.mode == DecapOptions::Mode::kNone) {
        return Bad(*decap, "decap takes --decap vxlan, geneve or auto");
      }
      return Status::Ok();
    }
    if (paths->parsed()) {
      line.command = CommandLine::Command::kPaths;
      return Status::Ok();
    }
    if (record->parsed()) {
      line.command = CommandLine::Command::kRecord;
      return FinishRecord();
    }
    if (version->parsed()) line.command = CommandLine::Command::kVersion;
    if (line.command == CommandLine::Command::kVersion) return Status::Ok();
    return Bad(app, "no command given");
  }
};

}  // namespace

StatusOr<CommandLine> ParseCommandLine(int argc, char** argv) {
  Parser parser;
  CLI::App& app = parser.app;
  if (argc >= 2 && std::string_view(argv[1]) == "help") {
    parser.line.command = CommandLine::Command::kHelp;
    parser.line.help = app.help();
    if (argc >= 3) {
      for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
        if (sub->get_name() == argv[2]) parser.line.help = sub->help("capctl");
      }
    }
    return std::move(parser.line);
  }
  try {
    // CLI11 takes the arguments in reverse, without the program name.
    std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
    if (!args.empty() && (args[0] == "stream" || args[0] == "serve")) {
      if (auto dashes = std::find(args.begin(), args.end(), "--"); dashes != args.end()) {
        parser.words_after_dashes.assign(dashes + 1, args.end());
        args.erase(dashes, args.end());
      }
    }
    std::reverse(args.begin(), args.end());
    app.parse(args);
  } catch (const CLI::CallForHelp&) {
    parser.line.command = CommandLine::Command::kHelp;
    parser.line.help = app.help();
    return std::move(parser.line);
  } catch (const CLI::ParseError& e) {
    return InvalidArgument(ErrorLine(e.what(), CommandPath(app)));
  }
  CAPD_RETURN_IF_ERROR(parser.Finish());
  return std::move(parser.line);
}

bool CompressionFor(const StreamOptions& options, const AgentAddress& agent) {
  if (options.compress) return *options.compress;
  return agent.transport != AgentAddress::Transport::kDirect;
}

StatusOr<uint64_t> ParseSince(const std::string& text, uint64_t now_ns) {
  const auto bad = [&text] {
    return InvalidArgument("--since '" + text +
                           "': expected a time back (5m, 90s, 1.5h, 2d), an RFC 3339 time "
                           "(2026-12-07T10:00:00Z) or nanoseconds since the Unix epoch");
  };
  if (text.empty()) return bad();
  const bool digits =
      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits) {
    // Fewer digits would be before 2001 as nanoseconds: a duration without its unit, surely.
    if (text.size() < 19 || text.size() > 20) return bad();
    errno = 0;
    const unsigned long long ns = std::strtoull(text.c_str(), nullptr, 10);
    if (errno != 0) return bad();
    return static_cast<uint64_t>(ns);
  }
  const char unit = text.back();
  if (text.find('T') == std::string::npos &&
      std::string_view("smhd").find(unit) != std::string_view::npos) {
    const std::string number = text.substr(0, text.size() - 1);
    if (number.empty() || number.find_first_not_of("0123456789.") != std::string::npos)
      return bad();
    char* end = nullptr;
    const double value = std::strtod(number.c_str(), &end);
    if (end == number.c_str() || *end != '\0' || !(value > 0)) return bad();
    const double scale = unit == 's' ? 1e9 : unit == 'm' ? 60e9 : unit == 'h' ? 3600e9 : 86400e9;
    const double back = value * scale;
    if (back >= static_cast<double>(now_ns)) return bad();
    return now_ns - static_cast<uint64_t>(back);
  }
  // RFC 3339: date, 'T' (or a space), time, optional fraction, then Z or an offset.
  int year, month, day, hour, minute, second, used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &year, &month, &day, &hour,
                  &minute, &second, &used) != 6 ||
      used != 19) {
    return bad();
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return bad();
  }
  size_t at = 19;
  uint64_t fraction_ns = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    uint64_t scale = 100'000'000;
    const size_t first = at;
    for (; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at) {
      fraction_ns += static_cast<uint64_t>(text[at] - '0') * scale;
      scale /= 10;
    }
    if (at == first) return bad();
  }
  int64_t offset_s = 0;
  if (at < text.size() && (text[at] == 'Z' || text[at] == 'z') && at + 1 == text.size()) {
    // UTC
  } else if (at + 6 == text.size() && (text[at] == '+' || text[at] == '-') && text[at + 3] == ':') {
    int oh = 0, om = 0;
    if (std::sscanf(text.c_str() + at + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59) {
      return bad();
    }
    offset_s = (text[at] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  } else {
    return bad();  // a time without its zone would be read in a zone the user did not mean
  }
  struct tm utc {};
  utc.tm_year = year - 1900;
  utc.tm_mon = month - 1;
  utc.tm_mday = day;
  utc.tm_hour = hour;
  utc.tm_min = minute;
  utc.tm_sec = second;
  const int64_t seconds = static_cast<int64_t>(timegm(&utc)) - offset_s;
  if (seconds <= 0) return bad();
  return static_cast<uint64_t>(seconds) * 1'000'000'000ULL + fraction_ns;
}

Status CheckTriggers(const TriggerModifiers& given, const std::string& start_on,
                     const std::string& stop_on, const DecapOptions& decap) {
  if (given.before && start_on.empty()) return InvalidArgument("--before needs --start-on");
  if ((given.after || given.after_count) && stop_on.empty()) {
    return InvalidArgument("--after and --after-count need --stop-on");
  }
  if (given.after && given.after_count) {
    return InvalidArgument("--after and --after-count are alternatives: give one");
  }
  if ((!start_on.empty() || !stop_on.empty()) && decap.mode != DecapOptions::Mode::kNone) {
    return InvalidArgument("--start-on and --stop-on are not available with --decap");
  }
  return Status::Ok();
}

}  // namespace capd::client

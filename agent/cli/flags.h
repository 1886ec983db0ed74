#pragma once
// capd's command line, parsed by CLI11 into AgentFlags: what main.cc wires. No I/O beyond
// gethostname (the default --name) and no privilege needed, so every flag's parsing is
// unit-tested (tests/unit/agent/flags_test.cc). Sizes follow common/byte_size.h; counts take no
// suffix.

#include <cstddef>
#include <string>
#include <vector>

#include "agent/listener/connection_admission.h"
#include "agent/metadata/instance_metadata.h"
#include "agent/security/access.h"
#include "agent/stream/capture_hub.h"
#include "capfile/free_space.h"
#include "common/status.h"

namespace capd::agent {

struct AgentFlags {
  AccessOptions access;     // listen defaults to 127.0.0.1:50051
  std::string name;         // --name, else the host name
  bool name_given = false;  // else the host name, replaced by the instance id on EC2
  std::string user;
  std::string log_level = "info";  // one spdlog::level::from_str takes
  size_t max_streams = 16;
  ConnectionLimits connections;
  size_t max_queue_bytes = 32 * 1024 * 1024;
  uint64_t max_trigger_history_bytes = 32ULL << 20;  // per stream with --start-on
  size_t max_decap_interfaces = kDefaultMaxDecapInterfaces;
  size_t stall_timeout_seconds = 60;
  size_t max_recordings = 8;  // recording_manager.h's kDefaultMaxRecordings
  size_t max_fetches = 8;
  RingSettings ring;
  bool carrier_exclusion = true;
  std::string metadata_endpoint = kDefaultMetadataEndpoint;  // empty with --no-metadata
  std::string record_dir;
  // --record-keep-free: free space recordings leave on --record-dir's filesystem.
  capfile::FreeSpaceFloor record_keep_free = capfile::kDefaultRecordKeepFree;
  // --tls-keylog-dir, repeatable: folders streams may follow TLS key logs in; empty: none.
  std::vector<std::string> tls_keylog_dirs;
  std::vector<std::string> allow_groups;  // empty: the group capd
  std::vector<std::string> allow_users;
};

struct AgentCommandLine {
  enum class Action { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  AgentFlags flags;
  std::string help;  // kHelp: the text to print
};

// kInvalidArgument with one line ending "; see `capd --help`" for anything wrong; the caller
// prints "capd: " and the message and exits 2.
StatusOr<AgentCommandLine> ParseAgentCommandLine(int argc, char** argv);

}  // namespace capd::agent

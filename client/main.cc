// capctl: the capd client. Parses the command line and runs one command; the work lives in
// cli/, stream/ and output/.

#include <grpc/support/log.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "client/cli/options.h"
#include "client/extcap/extcap_command.h"
#include "client/offline/decap_command.h"
#include "client/paths/paths_command.h"
#include "client/record/record_command.h"
#include "client/serve/serve_command.h"
#include "client/stream/signal_watcher.h"
#include "client/stream/stream_command.h"

#ifndef CAPD_VERSION
#define CAPD_VERSION "0.0.0"
#endif

namespace {
// gRPC's own log lines (e.g. a TLS handshake failing) repeat what capctl says in one line;
// CAPCTL_GRPC_LOG=1 shows them when debugging.
void DropGrpcLog(gpr_log_func_args*) {}
}  // namespace

int main(int argc, char** argv) {
  capd::client::BlockTerminationSignals();  // before gRPC starts any thread
  if (std::getenv("CAPCTL_GRPC_LOG") == nullptr) gpr_set_log_function(DropGrpcLog);
  // Wireshark runs capctl, under whatever name it has in the extcap folder, with --extcap-*.
  if (capd::client::IsExtcapInvocation(argc, argv)) return capd::client::RunExtcap(argc, argv);
  if (argc >= 2 && std::string_view(argv[1]) == "extcap") {
    return capd::client::RunExtcapCommand(argc - 1, argv + 1);
  }
  auto line = capd::client::ParseCommandLine(argc, argv);
  if (!line.ok()) {
    std::fprintf(stderr, "capctl: %s\n", line.status().message().c_str());
    return 2;
  }
  switch (line->command) {
    case capd::client::CommandLine::Command::kHelp:
      std::fputs(line->help.c_str(), stdout);
      // CLI11's footer ends without a line break: a shell prompt would follow on the same line.
      if (!line->help.empty() && line->help.back() != '\n') std::fputc('\n', stdout);
      return 0;
    case capd::client::CommandLine::Command::kVersion:
      std::printf("capctl %s\n", CAPD_VERSION);
      return 0;
    case capd::client::CommandLine::Command::kInterfaces:
      return capd::client::RunInterfacesCommand(line->interfaces);
    case capd::client::CommandLine::Command::kStream:
      return capd::client::RunStreamCommand(line->stream);
    case capd::client::CommandLine::Command::kDecapFile:
      return capd::client::RunDecapFileCommand(line->decap_file);
    case capd::client::CommandLine::Command::kRecord:
      return capd::client::RunRecordCommand(line->record);
    case capd::client::CommandLine::Command::kServe:
      return capd::client::RunServeCommand(line->serve);
    case capd::client::CommandLine::Command::kPaths:
      return capd::client::RunPathsCommand(line->paths);
  }
  return 1;
}

// `capctl extcap install`: puts capctl where the installed Wireshark looks for extcaps.

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "client/extcap/extcap_command.h"
#include "common/status.h"

namespace capd::client {
namespace {

constexpr char kInstallUsage[] =
    "usage: capctl extcap install [--dir DIR] [--copy]\n"
    "  links capctl into Wireshark's personal extcap folder (as `tshark -G folders` reports it),\n"
    "  so Wireshark lists the interface \"capd remote capture\"\n"
    "  --dir DIR  use this folder instead (Wireshark: Help > About > Folders > Personal Extcap)\n"
    "  --copy     copy the executable instead of linking to it\n";

// The value of a `tshark -G folders` line ("Label:<spaces>\t<value>"), or "" when absent.
std::string FolderValue(const std::string& report, std::string_view label) {
  size_t start = 0;
  while (start < report.size()) {
    size_t end = report.find('\n', start);
    if (end == std::string::npos) end = report.size();
    const std::string line = report.substr(start, end - start);
    start = end + 1;
    if (line.rfind(label, 0) != 0) continue;
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    std::string value = line.substr(tab + 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.pop_back();
    return value;
  }
  return "";
}

// Where the installed Wireshark reads personal extcaps, from `tshark -G folders` (with this
// process's HOME and XDG_CONFIG_HOME, as Wireshark started by this user would have them).
StatusOr<std::string> PersonalExtcapFolder() {
  // tshark's stderr ("Running as user root ...") is noise here.
  FILE* pipe = popen("tshark -G folders 2>/dev/null", "r");
  if (pipe == nullptr) return Internal(std::string("popen(tshark): ") + std::strerror(errno));
  std::string report;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) report.append(buffer, n);
  const int status = pclose(pipe);
  if (status != 0 || report.empty()) {
    return Status(StatusCode::kFailedPrecondition,
                  "cannot ask Wireshark for its extcap folder (`tshark -G folders` failed; is "
                  "tshark installed?): give it with --dir (Wireshark: Help > About > Folders)");
  }
  // Wireshark 4.2 and later name it; 4.0 reads <personal configuration>/extcap.
  std::string folder = FolderValue(report, "Personal Extcap path:");
  if (!folder.empty()) return folder;
  folder = FolderValue(report, "Personal configuration:");
  if (!folder.empty()) return folder + "/extcap";
  return Internal("`tshark -G folders` names no personal folder:\n" + report);
}

Status Install(const std::string& folder, bool copy) {
  char self[PATH_MAX];
  if (realpath("/proc/self/exe", self) == nullptr) {
    return Internal(std::string("realpath(/proc/self/exe): ") + std::strerror(errno));
  }
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  if (error) return Internal("mkdir -p " + folder + ": " + error.message());
  const std::string target = folder + "/capctl";
  // Replace what an earlier install left (a link or a copy), never follow it.
  if (unlink(target.c_str()) != 0 && errno != ENOENT) {
    return Internal("unlink(" + target + "): " + std::strerror(errno));
  }
  if (!copy) {
    if (symlink(self, target.c_str()) != 0) {
      return Internal("symlink(" + std::string(self) + ", " + target +
                      "): " + std::strerror(errno));
    }
    std::printf("capctl: linked %s -> %s\n", target.c_str(), self);
  } else {
    std::filesystem::copy_file(self, target, error);
    if (error)
      return Internal("copy " + std::string(self) + " to " + target + ": " + error.message());
    if (chmod(target.c_str(), 0755) != 0) {
      return Internal("chmod(" + target + "): " + std::strerror(errno));
    }
    std::printf("capctl: copied %s to %s\n", self, target.c_str());
  }
  std::printf(
      "capctl: Wireshark lists \"capd remote capture\" after a restart (or Capture > Refresh "
      "Interfaces); tshark -i capd -o extcap.capd.agent:HOST:PORT captures from the command "
      "line\n");
  return Status::Ok();
}

}  // namespace

int RunExtcapCommand(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "install") != 0) {
    std::fputs(argc < 2 ? kInstallUsage : "capctl: unknown extcap command\n", stderr);
    if (argc >= 2) std::fputs(kInstallUsage, stderr);
    return 2;
  }
  enum { kDir = 1000, kCopy };
  static const option kOptions[] = {{"dir", required_argument, nullptr, kDir},
                                    {"copy", no_argument, nullptr, kCopy},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  std::string folder;
  bool copy = false;
  // argv[1] is "install": parse from there as if it were the program name.
  const int sub_argc = argc - 1;
  char** sub_argv = argv + 1;
  opterr = 0;
  optind = 0;
  int c;
  while ((c = getopt_long(sub_argc, sub_argv, "h", kOptions, nullptr)) != -1) {
    switch (c) {
      case kDir:
        folder = optarg;
        break;
      case kCopy:
        copy = true;
        break;
      case 'h':
        std::fputs(kInstallUsage, stdout);
        return 0;
      default:
        std::fprintf(stderr, "capctl: unknown or incomplete option '%s'\n%s", sub_argv[optind - 1],
                     kInstallUsage);
        return 2;
    }
  }
  if (optind < sub_argc) {
    std::fprintf(stderr, "capctl: unexpected argument '%s'\n%s", sub_argv[optind], kInstallUsage);
    return 2;
  }
  if (folder.empty()) {
    auto found = PersonalExtcapFolder();
    if (!found.ok()) {
      std::fprintf(stderr, "capctl: %s\n", found.status().message().c_str());
      return 1;
    }
    folder = found.value();
  }
  const Status installed = Install(folder, copy);
  if (!installed.ok()) {
    std::fprintf(stderr, "capctl: %s\n", installed.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace capd::client

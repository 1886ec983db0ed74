// `capctl extcap install`: puts capctl where the installed Wireshark looks for extcaps.

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "client/extcap/extcap_command.h"
#include "client/extcap/extcap_folder.h"
#include "common/command_line.h"
#include "common/status.h"

namespace capd::client {
namespace {

// stdout of `tshark ARGS` (stderr, "Running as user root ...", is noise here), or "" when tshark
// is missing or fails.
std::string TsharkSays(const char* command) {
  FILE* pipe = popen(command, "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  return pclose(pipe) == 0 ? out : "";
}

// Where the installed Wireshark reads personal extcaps, from what its tshark says (with this
// process's HOME and XDG_CONFIG_HOME, as Wireshark started by this user would have them).
ExtcapFolderChoice PersonalExtcapFolder() {
  const std::string folders = TsharkSays("tshark -G folders 2>/dev/null");
  // The version matters only when the report does not name the folder (Wireshark 4.0).
  const std::string version = folders.find("Personal Extcap path:") == std::string::npos
                                  ? TsharkSays("tshark --version 2>/dev/null")
                                  : "";
  const char* home = std::getenv("HOME");
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  return ChooseExtcapFolder(folders, version, home != nullptr ? home : "",
                            xdg != nullptr ? xdg : "");
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
  // Wireshark drops the dashes of the arguments' names: a misspelt -o is ignored silently, so the
  // exact names are worth printing once.
  std::string names;
  for (const std::string& name : ExtcapPreferenceNames())
    names += (names.empty() ? "" : ", ") + name;
  std::printf("capctl: its settings as tshark -o NAME:VALUE takes them: %s\n", names.c_str());
  return Status::Ok();
}

// Removes FOLDER/capctl when it is what install leaves: a link, or a regular file (a copy).
// Anything else there (a folder) is refused; nothing there is not an error.
Status Uninstall(const std::string& folder) {
  const std::string target = folder + "/capctl";
  struct stat st {};
  if (lstat(target.c_str(), &st) != 0) {
    if (errno != ENOENT) return Internal("lstat(" + target + "): " + std::strerror(errno));
    std::printf("capctl: no capctl in %s: nothing to remove\n", folder.c_str());
    return Status::Ok();
  }
  if (!S_ISLNK(st.st_mode) && !S_ISREG(st.st_mode)) {
    return InvalidArgument(
        target + " is not a link or a file that `capctl extcap install` made: left alone");
  }
  if (unlink(target.c_str()) != 0) {
    return Internal("unlink(" + target + "): " + std::strerror(errno));
  }
  std::printf(
      "capctl: removed %s; Wireshark no longer lists \"capd remote capture\" after a "
      "restart\n",
      target.c_str());
  return Status::Ok();
}

}  // namespace

int RunExtcapCommand(int argc, char** argv) {
  CLI::App app{"capctl as a Wireshark extcap", "capctl extcap"};
  app.require_subcommand(1, 1);
  CLI::App* install = app.add_subcommand(
      "install",
      "link capctl into Wireshark's personal extcap folder (as `tshark -G folders` names it, "
      "or as its version implies), so Wireshark lists the interface \"capd remote capture\"");
  std::string folder;
  bool copy = false;
  install
      ->add_option("--dir", folder,
                   "use this folder instead (Wireshark: Help > About > Folders > Personal "
                   "Extcap)")
      ->type_name("DIR")
      ->check(NotEmpty("a folder"));
  install->add_flag("--copy", copy, "copy the executable instead of linking to it");
  CLI::App* uninstall = app.add_subcommand(
      "uninstall",
      "remove capctl from Wireshark's personal extcap folder (what install put there)");
  uninstall
      ->add_option("--dir", folder,
                   "the folder given to install --dir, if any (default: as install finds it)")
      ->type_name("DIR")
      ->check(NotEmpty("a folder"));
  try {
    // argv[0] is "extcap"; CLI11 takes the rest last first.
    std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
    std::reverse(args.begin(), args.end());
    app.parse(args);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "capctl: %s\n", ErrorLine(e.what(), CommandPath(app)).c_str());
    return 2;
  }
  if (folder.empty()) {
    const ExtcapFolderChoice choice = PersonalExtcapFolder();
    if (choice.folder.empty() || choice.folder[0] != '/') {
      std::fprintf(stderr, "capctl: no extcap folder (is HOME set?): give it with --dir\n");
      return 1;
    }
    std::printf("capctl: extcap folder %s: %s\n", choice.folder.c_str(), choice.why.c_str());
    folder = choice.folder;
  }
  const Status done = uninstall->parsed() ? Uninstall(folder) : Install(folder, copy);
  if (!done.ok()) {
    std::fprintf(stderr, "capctl: %s\n", done.message().c_str());
    return ExitCodeFor(done.code());
  }
  return 0;
}

}  // namespace capd::client

#include "client/extcap/extcap_folder.h"

#include <cctype>
#include <charconv>

namespace capd::client {
namespace {

// The value of a `tshark -G folders` line ("Label:<spaces>\t<value>"), or "" when absent.
std::string FolderValue(std::string_view report, std::string_view label) {
  size_t start = 0;
  while (start < report.size()) {
    size_t end = report.find('\n', start);
    if (end == std::string_view::npos) end = report.size();
    std::string_view line = report.substr(start, end - start);
    start = end + 1;
    if (line.substr(0, label.size()) != label) continue;
    const size_t tab = line.find('\t');
    if (tab == std::string_view::npos) continue;
    std::string_view value = line.substr(tab + 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.remove_suffix(1);
    return std::string(value);
  }
  return "";
}

}  // namespace

bool ParseWiresharkVersion(std::string_view text, int* major, int* minor) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) continue;
    if (i > 0 && (std::isalnum(static_cast<unsigned char>(text[i - 1])))) continue;
    int a = 0, b = 0;
    const char* end = text.data() + text.size();
    auto [p, e] = std::from_chars(text.data() + i, end, a);
    if (e != std::errc() || p == end || *p != '.') continue;
    auto [q, f] = std::from_chars(p + 1, end, b);
    if (f != std::errc() || q == p + 1) continue;
    *major = a;
    *minor = b;
    return true;
  }
  return false;
}

ExtcapFolderChoice ChooseExtcapFolder(std::string_view folders_output,
                                      std::string_view version_output, std::string_view home,
                                      std::string_view xdg_config_home) {
  // Wireshark 4.2 and later name the folder.
  if (std::string named = FolderValue(folders_output, "Personal Extcap path:"); !named.empty()) {
    return {named, "Wireshark's personal extcap folder, as `tshark -G folders` names it", true};
  }
  const std::string home_text(home);
  const std::string local_lib = home_text + "/.local/lib/wireshark/extcap";
  int major = 0, minor = 0;
  const bool versioned = ParseWiresharkVersion(version_output, &major, &minor);
  const bool before_4_2 = versioned && (major < 4 || (major == 4 && minor < 2));
  const std::string configuration = FolderValue(folders_output, "Personal configuration:");
  if (!configuration.empty() && (before_4_2 || !versioned)) {
    return {configuration + "/extcap",
            "Wireshark " +
                (versioned ? std::to_string(major) + "." + std::to_string(minor) + " "
                           : std::string("before 4.2 ")) +
                "reads personal extcaps from the extcap folder of its personal configuration "
                "folder (as `tshark -G folders` names it)",
            true};
  }
  if (versioned && !before_4_2) {
    return {local_lib,
            "Wireshark " + std::to_string(major) + "." + std::to_string(minor) +
                " reads personal extcaps from ~/.local/lib/wireshark/extcap (since 4.2); "
                "`tshark -G folders` did not name it",
            false};
  }
  // Nothing from Wireshark: the folder Wireshark 4.0 (Debian 12's) reads, as capctl always chose.
  const std::string config_home =
      xdg_config_home.empty() ? home_text + "/.config" : std::string(xdg_config_home);
  return {config_home + "/wireshark/extcap",
          "tshark is not installed or did not say where Wireshark reads extcaps, so its version "
          "is unknown: this is where Wireshark 4.0 reads them; Wireshark 4.2 and later read " +
              local_lib + " (give that with --dir, or see Help > About > Folders)",
          false};
}

}  // namespace capd::client

#pragma once
// Which folder `capctl extcap install` (and uninstall) uses: where the installed Wireshark reads a
// user's extcaps, from what its tshark says. A pure function: the caller runs tshark.
//
// Wireshark's personal extcap folder by version (tshark.c's `-G folders` report and
// wsutil/filesystem.c):
//   4.0, 4.1   <Personal configuration>/extcap (~/.config/wireshark/extcap, or ~/.wireshark/extcap
//              where that older folder exists); the report names only the global "Extcap path:".
//   4.2 ...    ~/.local/lib/wireshark/extcap, named by the report's "Personal Extcap path:" line
//              (4.6 moved the global folder, which capctl does not use; the personal one stayed).
// The folder a report names always wins over what the version suggests, so a later move (a
// versioned subfolder, another flavour of Wireshark) is followed as long as the report names it.

#include <string>
#include <string_view>

namespace capd::client {

struct ExtcapFolderChoice {
  std::string folder;
  // One line saying why this folder, e.g. "named by `tshark -G folders` (Personal Extcap
  // path)", or why a fallback was chosen and what to do if it is wrong.
  std::string why;
  // False when Wireshark said nothing usable and the folder is capctl's guess.
  bool named_by_wireshark = false;
};

// folders_output: `tshark -G folders`'s stdout, or "" when tshark is missing or failed.
// version_output: `tshark --version`'s stdout, or "" (read only when folders_output names no
// personal extcap folder). home: $HOME; xdg_config_home: $XDG_CONFIG_HOME, may be "".
ExtcapFolderChoice ChooseExtcapFolder(std::string_view folders_output,
                                      std::string_view version_output, std::string_view home,
                                      std::string_view xdg_config_home);

// "4.0.17" from "TShark (Wireshark) 4.0.17 (Git v4.0.17 ...)": the major and minor version of
// the first "N.N" in the text; false when there is none.
bool ParseWiresharkVersion(std::string_view version_output, int* major, int* minor);

}  // namespace capd::client

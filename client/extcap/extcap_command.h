#pragma once
// capctl as a Wireshark extcap (Wireshark's doc/wsdg_src/wsdg_capture.adoc). Wireshark runs every
// executable in its extcap folders with --extcap-* arguments; capctl, linked or copied there
// under any name, answers them:
//
//   --extcap-interfaces [--extcap-version=X]   one interface, "capd", and a log window control
//   --extcap-dlts --extcap-interface capd      one DLT, Ethernet (see PrintDlts in the .cc)
//   --extcap-config --extcap-interface capd    the capture dialog's arguments
//     --extcap-reload-option remote-interface --agent A ...   the agent's interfaces
//   --extcap-capture-filter F --extcap-interface capd   nothing if F is plausible, else why not
//   --capture --extcap-interface capd --fifo PATH [--extcap-capture-filter F] [arguments]
//
// How data flows in a capture: the arguments become StreamOptions (the option groups and checks
// of `capctl stream`, client/cli/options.h, without a command line), RunStreamCommand streams
// pcapng into Wireshark's FIFO, and what it prints on stderr goes to Wireshark's control pipes
// instead (the log window, the status bar). Wireshark shows anything an extcap writes on stderr as
// an error ("Error by extcap pipe: ..."), so capctl writes there only when the capture failed: one
// line, the reason. Whatever fails, before or after the capture starts, capctl holds the FIFO
// open from the start and closes it only after that line (fifo_hold.h): Wireshark then ends the
// capture at once and shows the line, instead of waiting for a FIFO nobody opens.
//
// Wireshark derives a preference from each argument: extcap.capd.<call without dashes>, e.g.
// `tshark -i capd -o extcap.capd.agent:ssh://ops@bastion -o extcap.capd.remoteinterface:eth0`.

#include <string>
#include <vector>

namespace capd::client {

// True when the command line is Wireshark's: any --extcap-* argument, or --capture.
bool IsExtcapInvocation(int argc, char** argv);

// Answers the extcap step the arguments ask for; returns the exit code.
int RunExtcap(int argc, char** argv);

// The preferences Wireshark derives from the dialog's arguments, in the dialog's order, e.g.
// "extcap.capd.agent", "extcap.capd.remoteinterface": the names `tshark -o NAME:VALUE` takes.
std::vector<std::string> ExtcapPreferenceNames();

// `capctl extcap install [--dir DIR] [--copy]` (argv[0] is "extcap"): links (or copies) this
// executable into the folder the installed Wireshark reads extcaps from, as `tshark -G folders`
// reports it: "Personal Extcap path" (Wireshark 4.2 and later, ~/.local/lib/wireshark/extcap),
// else "Personal configuration" + /extcap (4.0, ~/.config/wireshark/extcap), and prints where and
// the preference names. `capctl extcap uninstall [--dir DIR]` removes what install put there.
int RunExtcapCommand(int argc, char** argv);

}  // namespace capd::client

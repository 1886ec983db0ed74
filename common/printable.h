#pragma once
// Text from another party (a process name, an agent's message) made safe to print on a terminal
// or in a log: printable ASCII is kept, every other byte (control characters such as ESC or CR,
// which could rewrite or hide the lines around it, and bytes >= 0x7f) becomes \xNN. With
// `escape_backslash` a backslash becomes \\, so that the result also tells "\x1b" typed as four
// characters from an escape (capd does this for process names; capctl, printing capd's already
// escaped text, does not escape it twice).

#include <string>
#include <string_view>

namespace capd {

inline std::string PrintableText(std::string_view text, bool escape_backslash = false) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte == '\\' && escape_backslash) {
      out += "\\\\";
    } else if (byte >= 0x20 && byte < 0x7f) {
      out += c;
    } else {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    }
  }
  return out;
}

}  // namespace capd

#pragma once
// What capd's and capctl's command lines share on top of CLI11 (header-only, Debian's
// libcli11-dev): value checks whose message completes "--flag takes ...", and the one line an
// argument error prints. Header-only like CLI11 itself; a target that includes this links
// CLI11::CLI11.
//
// Every check here runs inside CLI11's parse (as a Validator), so a bad value stops the parse at
// that flag, and the help lists what each flag takes.

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "common/byte_size.h"

namespace capd {

// A plain decimal count in [min, max]: no sign, no suffix, no 0x or leading-zero octal (CLI11
// alone would read "010" as 8 and "0x10" as 16). `unit` follows the range in the message.
inline CLI::Validator CountIn(uint64_t min, uint64_t max, const std::string& unit = "") {
  const std::string range =
      std::to_string(min) + ".." + std::to_string(max) + (unit.empty() ? "" : " " + unit);
  return CLI::Validator(
      [min, max, range](std::string& text) -> std::string {
        uint64_t value = 0;
        const char* end = text.data() + text.size();
        auto [ptr, error] = std::from_chars(text.data(), end, value);
        if (text.empty() || error != std::errc() || ptr != end || value < min || value > max) {
          return "takes " + range + ", not '" + text + "'";
        }
        text = std::to_string(value);  // "010" is ten, whatever CLI11's conversion thinks
        return "";
      },
      std::to_string(min) + ".." + std::to_string(max), "count");
}

// A size in the grammar of common/byte_size.h, from min to max bytes (`range` says so to a
// user, e.g. "1M..1GiB"). The value becomes its number of bytes before CLI11 converts it.
inline CLI::Validator ByteSizeIn(uint64_t min, uint64_t max, const std::string& range) {
  return CLI::Validator(
      [min, max, range](std::string& text) -> std::string {
        const auto bytes = ParseByteSize(text);
        if (!bytes || *bytes < min || *bytes > max) {
          return "takes a size of " + range + " (" + kByteSizeGrammar + "), not '" + text + "'";
        }
        text = std::to_string(*bytes);
        return "";
      },
      "", "size");
}

// One of a few words.
inline CLI::Validator OneOf(std::vector<std::string> words) {
  std::string list;
  for (size_t i = 0; i < words.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + words[i];
  }
  return CLI::Validator(
      [words, list](std::string& text) -> std::string {
        for (const std::string& w : words) {
          if (text == w) return "";
        }
        return "takes " + list + ", not '" + text + "'";
      },
      "{" +
          [&words] {
            std::string braces;
            for (const std::string& w : words) braces += (braces.empty() ? "" : ",") + w;
            return braces;
          }() +
          "}",
      "word");
}

// A text that may not be empty ("--record-dir ''" is a mistake, not the current folder).
inline CLI::Validator NotEmpty(const std::string& what) {
  return CLI::Validator(
      [what](std::string& text) -> std::string {
        return text.empty() ? "takes " + what + ", not an empty text" : "";
      },
      "", "not-empty");
}

// "capctl stream" for the innermost subcommand a parse reached (CLI11 records a subcommand as
// soon as it meets its name), to point at the right --help.
inline std::string CommandPath(const CLI::App& app) {
  std::string path = app.get_name();
  for (const CLI::App* up = app.get_parent(); up != nullptr; up = up->get_parent()) {
    path = up->get_name() + " " + path;
  }
  const CLI::App* at = &app;
  while (true) {
    const std::vector<CLI::App*> selected = at->get_subcommands();
    if (selected.empty()) break;
    at = selected.front();
    path += " " + at->get_name();
  }
  return path;
}

// The one line for a bad command line: CLI11's message (a check's "--flag: takes ..." made
// "--flag takes ...") and where the help is (nothing with an empty `command_path`).
inline std::string ErrorLine(const std::string& message, const std::string& command_path) {
  std::string text = message;
  if (const size_t at = text.find(": takes "); at != std::string::npos && at < 40) {
    text.erase(at, 1);
  }
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return command_path.empty() ? text : text + "; see `" + command_path + " --help`";
}

}  // namespace capd

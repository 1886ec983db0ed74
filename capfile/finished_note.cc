#include "capfile/finished_note.h"

#include <algorithm>
#include <sstream>

namespace capd::capfile {
namespace {

// Names and agents are printable text from capd's own interface descriptions; a tab or a line
// break in one would break the note's lines.
std::string Field(const std::string& text) {
  std::string out = text;
  for (char& c : out) {
    if (c == '\t' || c == '\n' || c == '\r') c = '_';
  }
  return out;
}

bool Number(const std::string& text, uint64_t* value) {
  if (text.empty() || text.size() > 20 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  try {
    *value = std::stoull(text);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace

std::string FinishedNoteText(const FinishedFile& file) {
  std::ostringstream out;
  out << "number " << file.number << "\n"
      << "opened_seconds " << std::max<int64_t>(0, file.opened_seconds) << "\n"
      << "bytes " << file.bytes << "\n"
      << "packets " << file.packets << "\n"
      << "first_ns " << file.first_ns << "\n"
      << "last_ns " << file.last_ns << "\n";
  out << "link_types";
  for (size_t i = 0; i < file.link_types.size(); ++i)
    out << (i == 0 ? " " : ",") << file.link_types[i];
  out << "\n";
  for (size_t i = 0; i < file.interfaces.size(); ++i) {
    out << "interface " << Field(file.interfaces[i]) << "\t"
        << Field(i < file.agents.size() ? file.agents[i] : "") << "\n";
  }
  return out.str();
}

std::optional<FinishedFile> ParseFinishedNote(const std::string& text, const std::string& path) {
  FinishedFile file;
  file.path = path;
  int seen = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line == "link_types") continue;  // a file without interfaces
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    const std::string key = line.substr(0, space);
    const std::string value = line.substr(space + 1);
    uint64_t n = 0;
    if (key == "interface") {
      const size_t tab = value.find('\t');
      if (tab == std::string::npos) return std::nullopt;
      file.interfaces.push_back(value.substr(0, tab));
      file.agents.push_back(value.substr(tab + 1));
      continue;
    }
    if (key == "link_types") {
      std::istringstream types(value);
      for (std::string type; std::getline(types, type, ',');) {
        if (!Number(type, &n) || n > 0xffff) return std::nullopt;
        file.link_types.push_back(static_cast<uint16_t>(n));
      }
      continue;
    }
    if (!Number(value, &n)) return std::nullopt;
    if (key == "number" && n <= 0xffffffffULL) {
      file.number = static_cast<uint32_t>(n);
    } else if (key == "opened_seconds" && n <= 0x7fffffffffffffffULL) {
      file.opened_seconds = static_cast<int64_t>(n);
    } else if (key == "bytes") {
      file.bytes = n;
    } else if (key == "packets") {
      file.packets = n;
    } else if (key == "first_ns") {
      file.first_ns = n;
    } else if (key == "last_ns") {
      file.last_ns = n;
    } else {
      continue;  // a key of a later version
    }
    ++seen;
  }
  if (seen < 6) return std::nullopt;
  return file;
}

}  // namespace capd::capfile

#include "tests/support/proc_status.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace capd::test {
namespace {

std::string Trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

std::string ProcDir(pid_t pid) { return "/proc/" + std::to_string(pid); }

}  // namespace

StatusOr<std::map<std::string, std::string>> ReadProcStatus(pid_t pid, pid_t tid) {
  const std::string path =
      ProcDir(pid) + (tid != 0 ? "/task/" + std::to_string(tid) : std::string()) + "/status";
  std::ifstream in(path);
  if (!in) return Internal("open(" + path + "): " + std::strerror(errno));
  std::map<std::string, std::string> fields;
  for (std::string line; std::getline(in, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    fields[line.substr(0, colon)] = Trim(line.substr(colon + 1));
  }
  if (fields.empty()) return Internal(path + ": empty (the process is gone?)");
  return fields;
}

StatusOr<uint64_t> ResidentBytes(pid_t pid) {
  auto fields = ReadProcStatus(pid);
  if (!fields.ok()) return fields.status();
  auto it = fields->find("VmRSS");
  if (it == fields->end()) return Internal("no VmRSS in /proc/" + std::to_string(pid) + "/status");
  // "12345 kB"
  try {
    return static_cast<uint64_t>(std::stoull(it->second)) * 1024;
  } catch (const std::exception&) {
    return Internal("cannot parse VmRSS '" + it->second + "'");
  }
}

StatusOr<size_t> OpenFdCount(pid_t pid) {
  std::error_code ec;
  size_t count = 0;
  for (std::filesystem::directory_iterator it(ProcDir(pid) + "/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++count;
  }
  if (ec) return Internal("listing /proc/" + std::to_string(pid) + "/fd: " + ec.message());
  return count;
}

std::string DescribeOpenFds(pid_t pid) {
  std::string text;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(ProcDir(pid) + "/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code link_ec;
    const auto target = std::filesystem::read_symlink(it->path(), link_ec);
    text += it->path().filename().string() + " -> " + (link_ec ? "?" : target.string()) + "\n";
  }
  return text;
}

StatusOr<std::vector<pid_t>> ThreadIds(pid_t pid) {
  std::vector<pid_t> ids;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(ProcDir(pid) + "/task", ec), end; !ec && it != end;
       it.increment(ec)) {
    try {
      ids.push_back(static_cast<pid_t>(std::stol(it->path().filename().string())));
    } catch (const std::exception&) {
    }
  }
  if (ec) return Internal("listing /proc/" + std::to_string(pid) + "/task: " + ec.message());
  return ids;
}

std::string ThreadName(pid_t pid, pid_t tid) {
  std::ifstream in(ProcDir(pid) + "/task/" + std::to_string(tid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

}  // namespace capd::test

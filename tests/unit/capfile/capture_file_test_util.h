#pragma once
// Test helpers for the capture writers: temp files, an fd owner, reading a file back with
// libpcap at nanosecond precision, and running Wireshark's command-line readers if installed.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "capfile/capture_writer.h"

namespace capd::capfile::testing {

// A directory under $TMPDIR (or /tmp) removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/capd-output-test-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// Owns one file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::vector<uint8_t> Pattern(size_t size, uint8_t seed) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7);
  return bytes;
}

struct PcapRecord {
  uint64_t timestamp_ns = 0;
  uint32_t caplen = 0;
  uint32_t len = 0;
  std::vector<uint8_t> data;
};

struct PcapContents {
  std::string error;  // empty when libpcap read the whole file
  int datalink = -1;
  int snaplen = -1;
  std::vector<PcapRecord> records;
};

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};

// Reads a pcap or pcapng file with libpcap, timestamps in nanoseconds (tv_usec holds ns).
inline PcapContents ReadWithLibpcap(const std::string& path) {
  PcapContents contents;
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  std::unique_ptr<pcap_t, PcapCloser> pcap(
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (pcap == nullptr) {
    contents.error = std::string("pcap_open_offline(") + path + "): " + errbuf;
    return contents;
  }
  contents.datalink = pcap_datalink(pcap.get());
  contents.snaplen = pcap_snapshot(pcap.get());
  for (;;) {
    pcap_pkthdr* header = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(pcap.get(), &header, &data);
    if (rc == PCAP_ERROR_BREAK) break;  // end of file
    if (rc != 1) {
      contents.error = std::string("pcap_next_ex: ") + pcap_geterr(pcap.get());
      break;
    }
    PcapRecord record;
    record.timestamp_ns = static_cast<uint64_t>(header->ts.tv_sec) * 1'000'000'000 +
                          static_cast<uint64_t>(header->ts.tv_usec);
    record.caplen = header->caplen;
    record.len = header->len;
    record.data.assign(data, data + header->caplen);
    contents.records.push_back(std::move(record));
  }
  return contents;
}

// The full path of an executable on $PATH, or empty.
inline std::string FindTool(std::string_view name) {
  const char* path_env = std::getenv("PATH");
  std::stringstream dirs(path_env != nullptr ? path_env : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + std::string(name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout
  std::string errors;  // stderr
};

// Runs a shell command line (the caller quotes nothing: test paths have no spaces).
inline CommandResult RunCommand(const std::string& command, const TempDir& dir) {
  CommandResult result;
  const std::string stderr_path = dir.File("command.stderr");
  FILE* pipe = ::popen((command + " 2>" + stderr_path).c_str(), "r");
  if (pipe == nullptr) return result;
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), pipe)) > 0) result.output.append(chunk, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.errors = ReadFileBytes(stderr_path);
  return result;
}

// A sink that keeps every Write() separately, to check when and how often writers write.
class RecordingSink : public ByteSink {
 public:
  explicit RecordingSink(std::vector<std::string>* writes) : writes_(writes) {}
  Status Write(std::string_view bytes) override {
    writes_->emplace_back(bytes);
    return Status::Ok();
  }

 private:
  std::vector<std::string>* writes_;
};

}  // namespace capd::capfile::testing

// A Status check that prints the message on failure.
#define CAPD_ASSERT_OK(expr)                                                             \
  do {                                                                                   \
    const ::capd::Status capd_test_status_ = (expr);                                     \
    ASSERT_TRUE(capd_test_status_.ok()) << #expr << ": " << capd_test_status_.message(); \
  } while (false)

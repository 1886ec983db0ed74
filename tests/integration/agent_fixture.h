#pragma once
// The fixture every integration test uses: a private TestNetwork (see tests/support), a test
// directory for capture files and logs, and helpers to run capd, capctl and tcpdump inside the
// agent namespace and to send UDP from the peer namespace.
//
// How a test flows: StartAgent() runs `capd --listen 127.0.0.1:50051` in the agent namespace and
// waits for its "listening on" line; StartStream() runs `capctl stream` there and waits for its
// "capctl: capturing on IFACE" line (printed after the file header is flushed), so traffic sent
// afterwards is captured. No sleeps: every wait polls a file or a process with a timeout.
//
// Tests skip (with the reason) when not root or when network namespaces cannot be created.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/capture_file.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_network.h"

namespace capd::test {

// From CMake ($<TARGET_FILE:...>), so the tests always run the binaries of this build.
inline constexpr char kCapdPath[] = CAPD_PATH;
inline constexpr char kCapctlPath[] = CAPCTL_PATH;

inline constexpr char kAgentTarget[] = "127.0.0.1:50051";
inline constexpr uint16_t kAgentPort = 50051;
// Generous: the suite runs in parallel on 2 cores, sometimes under sanitizers.
inline constexpr auto kStartTimeout = std::chrono::seconds(15);
inline constexpr auto kExitTimeout = std::chrono::seconds(30);

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override;
  // Stops capd (SIGTERM) if a test left it running and expects a clean exit 0: every test also
  // checks that the agent survived it and shuts down cleanly.
  void TearDown() override;

  const TestNetwork& network() const { return *network_; }
  std::filesystem::path File(std::string_view name) const { return dir_->File(name); }

  // Starts capd in the agent namespace and waits until it listens.
  void StartAgent();
  Subprocess& agent() { return *agent_; }
  // Sends SIGTERM to capd and expects exit code 0 within kExitTimeout.
  void StopAgent();

  // Starts argv in `netns` ("" = the agent namespace), stdout and stderr to
  // <dir>/<name>.out and <dir>/<name>.err.
  void Spawn(const std::string& name, std::vector<std::string> argv,
             std::unique_ptr<Subprocess>* out, const std::string& netns = "");
  // `capctl stream --agent 127.0.0.1:50051 ARGS...` in the agent namespace; waits for the
  // "capctl: capturing on" line unless `wait_ready` is false. `stdout_fd` >= 0 becomes capctl's
  // stdout.
  void StartStream(const std::string& name, const std::vector<std::string>& args,
                   std::unique_ptr<Subprocess>* out, int stdout_fd = -1, bool wait_ready = true);
  // `tcpdump -i IFACE --time-stamp-precision nano -w FILE ARGS...` in the agent namespace; waits
  // for its "listening on" line.
  void StartTcpdump(const std::string& name, const std::string& interface,
                    const std::filesystem::path& file, const std::vector<std::string>& args,
                    std::unique_ptr<Subprocess>* out);

  // The capture rings capd has mapped: a packet socket's ring is a "socket:[inode]" mapping in
  // /proc/PID/maps, one per open capture (what a user sees with `grep socket /proc/PID/maps`).
  struct CaptureRings {
    size_t count = 0;
    uint64_t bytes = 0;
  };
  CaptureRings AgentCaptureRings();

  // Waits until the pcapng file `path` holds at least `packets` packets (capctl writes whole
  // blocks); false after `timeout`.
  bool WaitForPackets(const std::filesystem::path& path, size_t packets,
                      std::chrono::milliseconds timeout = kStartTimeout);

  // Waits for `process` to end and expects exit code `code`.
  void ExpectExit(Subprocess& process, int code, std::chrono::milliseconds timeout = kExitTimeout);

  // UDP sockets: in the peer namespace (traffic to 10.200.0.1 crosses the veth pair), and in the
  // agent namespace. A "sink" bound in the agent namespace keeps the kernel from answering with
  // ICMP port unreachable, so captures hold only what the test sent.
  UniqueFd PeerSocket();
  UniqueFd AgentSocket(const std::string& bind_address = "", uint16_t bind_port = 0);
  // Sends every payload, in order, to address:port.
  void SendAll(int fd, const std::string& address, uint16_t port,
               const std::vector<std::string>& payloads);

  std::unique_ptr<TestNetwork> network_;
  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<Subprocess> agent_;
};

// Distinct UDP payloads of varied sizes, 1 byte and 1400 bytes among them: payload i of a series
// `tag` starts with "<tag>-<i>-" when it is long enough to hold it.
std::vector<std::string> MakePayloads(int count, std::string_view tag);

// The capture file's packets, failing the test when the file cannot be read.
std::vector<CapturedPacket> ReadOrFail(const std::filesystem::path& path);

// The packets of `files` (e.g. a ring of rotated files), in the order given.
std::vector<CapturedPacket> ReadAllOrFail(const std::vector<std::filesystem::path>& files);

// Waits until `path` holds at least `count` packets (capctl writes and flushes every batch), so
// that a test about how a stream ends does not race with the last batch. Fails the test when
// `writer` exits first or kStartTimeout passes.
void WaitForPacketsInFile(const std::filesystem::path& path, size_t count, Subprocess& writer);

// Expects exactly `payloads`, in order, as IPv4 UDP datagrams to `port` over Ethernet, each
// complete (caplen == len).
void ExpectUdpPayloads(const std::vector<CapturedPacket>& packets,
                       const std::vector<std::string>& payloads, uint16_t port);

// Wireshark's capinfos, an independent reader: it reads the whole file without complaint, counts
// `packets` packets, and reports nanosecond timestamps.
void ExpectCapinfos(const std::filesystem::path& path, size_t packets);

// The line of `text` that starts with "capctl: " and contains "packets written" ("" if none).
std::string SummaryLine(const std::string& text);

}  // namespace capd::test

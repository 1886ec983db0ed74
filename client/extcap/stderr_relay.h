#pragma once
// Redirects this process's stderr (fd 2) into a pipe that a thread reads line by line, handing
// each line to a callback. The extcap capture uses it to send what `capctl stream` reports (the
// interface, the excluded carriers, the summary) to Wireshark's control pipes instead of stderr,
// which Wireshark would show as an error.
//
// Thread-safety: on_line runs on the relay's thread until Stop() returns; Start() and Stop() are
// called from one thread. Anything that writes to fd 2 meanwhile (any thread) is relayed.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"

namespace capd::client {

class StderrRelay {
 public:
  using LineCallback = std::function<void(std::string_view line)>;

  // kInternal naming the failing call when the pipe or the redirection cannot be made.
  static StatusOr<std::unique_ptr<StderrRelay>> Start(LineCallback on_line);
  // Restores fd 2, waits for the thread to relay what is left, and returns every line relayed
  // (without newlines). Blocks only while a process still holds the pipe (children started in
  // between get their own stderr, see transport/child_process.h).
  std::vector<std::string> Stop();
  ~StderrRelay();  // Stop() if not stopped
  StderrRelay(const StderrRelay&) = delete;
  StderrRelay& operator=(const StderrRelay&) = delete;

 private:
  StderrRelay(int saved_stderr, int read_fd, LineCallback on_line);
  void Run();

  int saved_stderr_;  // the original fd 2, restored by Stop()
  int read_fd_;
  LineCallback on_line_;
  std::vector<std::string> lines_;  // written by the thread, read after join
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace capd::client

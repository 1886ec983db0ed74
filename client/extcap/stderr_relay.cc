#include "client/extcap/stderr_relay.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace capd::client {

StatusOr<std::unique_ptr<StderrRelay>> StderrRelay::Start(LineCallback on_line) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Internal(std::string("pipe2: ") + std::strerror(errno));
  const int saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (saved < 0) {
    const std::string error = std::strerror(errno);
    close(fds[0]);
    close(fds[1]);
    return Internal("fcntl(2, F_DUPFD_CLOEXEC): " + error);
  }
  std::fflush(stderr);
  if (dup2(fds[1], STDERR_FILENO) < 0) {
    const std::string error = std::strerror(errno);
    close(fds[0]);
    close(fds[1]);
    close(saved);
    return Internal("dup2(pipe, 2): " + error);
  }
  close(fds[1]);  // fd 2 is now the only write end
  std::unique_ptr<StderrRelay> relay(new StderrRelay(saved, fds[0], std::move(on_line)));
  relay->thread_ = std::thread([r = relay.get()] { r->Run(); });
  return relay;
}

StderrRelay::StderrRelay(int saved_stderr, int read_fd, LineCallback on_line)
    : saved_stderr_(saved_stderr), read_fd_(read_fd), on_line_(std::move(on_line)) {}

void StderrRelay::Run() {
  std::string pending;
  char buffer[4096];
  while (true) {
    const ssize_t n = read(read_fd_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // every write end is closed
    pending.append(buffer, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t end; (end = pending.find('\n', start)) != std::string::npos; start = end + 1) {
      lines_.push_back(pending.substr(start, end - start));
      on_line_(lines_.back());
    }
    pending.erase(0, start);
  }
  if (!pending.empty()) {
    lines_.push_back(pending);
    on_line_(lines_.back());
  }
}

std::vector<std::string> StderrRelay::Stop() {
  if (stopped_) return lines_;
  stopped_ = true;
  std::fflush(stderr);
  dup2(saved_stderr_, STDERR_FILENO);  // closes the pipe's last write end: the thread sees EOF
  close(saved_stderr_);
  thread_.join();
  close(read_fd_);
  return lines_;
}

StderrRelay::~StderrRelay() { Stop(); }

}  // namespace capd::client

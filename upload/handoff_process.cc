#include "upload/handoff_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

extern char** environ;

namespace capd::client {

StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(const std::vector<std::string>& argv,
                                                            ChildOutput output) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (output.quiet_stdout) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  }
  int stderr_fd = -1;
  if (output.keep_stderr) {
    stderr_fd = ::memfd_create("capctl-handoff-stderr", MFD_CLOEXEC);
    if (stderr_fd < 0) {
      const int err = errno;
      posix_spawn_file_actions_destroy(&actions);
      return Internal(std::string("memfd_create: ") + std::strerror(err));
    }
    // dup2 onto stderr clears close-on-exec for the child's copy only.
    posix_spawn_file_actions_adddup2(&actions, stderr_fd, STDERR_FILENO);
  }
  posix_spawnattr_init(&attr);
  // capctl blocks SIGINT/SIGTERM for its signal thread and ignores SIGPIPE; the child gets the
  // defaults back. Its own process group: Ctrl-C on capctl does not cut an upload short.
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const int error = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (error != 0) {
    if (stderr_fd >= 0) ::close(stderr_fd);
    return Internal("could not start " + argv[0] + ": " + std::strerror(error));
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, stderr_fd));
}

ChildProcess::~ChildProcess() {
  // Not waited for: a process capctl stopped waiting for goes on; reap it if it has ended.
  if (!reaped_) (void)::waitpid(pid_, nullptr, WNOHANG);
  if (stderr_fd_ >= 0) ::close(stderr_fd_);
}

std::string ChildProcess::LastStderrLine() const {
  if (stderr_fd_ < 0) return "";
  // The end of what it wrote is enough for its last line (a URL with its key may be long).
  constexpr off_t kTail = 4096;
  const off_t size = ::lseek(stderr_fd_, 0, SEEK_END);
  if (size <= 0) return "";
  std::string tail(static_cast<size_t>(std::min(size, kTail)), '\0');
  const ssize_t got =
      ::pread(stderr_fd_, tail.data(), tail.size(), size - static_cast<off_t>(tail.size()));
  if (got <= 0) return "";
  tail.resize(static_cast<size_t>(got));
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r' || tail.back() == ' ')) {
    tail.pop_back();
  }
  const size_t newline = tail.find_last_of('\n');
  std::string line = newline == std::string::npos ? tail : tail.substr(newline + 1);
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  constexpr size_t kMaxLine = 1000;
  if (line.size() > kMaxLine) line = line.substr(0, kMaxLine) + "...";
  return line;
}

void ChildProcess::DropOldStderr() const {
  if (stderr_fd_ < 0) return;
  // Only the last line is ever read: beyond kKeptStderrBytes the older part is released (a hole
  // in the memfd, which holds no memory), so a child that writes without end cannot use up
  // capctl's or capd-upload's memory. Its write offset, and so the tail, stay where they are.
  const off_t size = ::lseek(stderr_fd_, 0, SEEK_END);
  if (size > static_cast<off_t>(kKeptStderrBytes)) {
    (void)::fallocate(stderr_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                      size - static_cast<off_t>(kKeptStderrBytes / 2));
  }
}

std::optional<Status> ChildProcess::Poll() {
  if (reaped_) return Status::Ok();
  DropOldStderr();
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == 0) return std::nullopt;
  reaped_ = true;
  if (done != pid_) return Internal(std::string("waitpid: ") + std::strerror(errno));
  std::string why;
  if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) == 0) return Status::Ok();
    why = "exit status " + std::to_string(WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    why = "killed by signal " + std::to_string(WTERMSIG(status));
  } else {
    why = "ended with wait status " + std::to_string(status);
  }
  if (const std::string line = LastStderrLine(); !line.empty()) why += ": " + line;
  return Internal(why);
}

void ChildProcess::Kill() {
  // Its own process group (POSIX_SPAWN_SETPGROUP): whatever it started goes too.
  if (!reaped_) ::kill(-pid_, SIGKILL);
}

std::string ChildProcess::Abandon() { return "left running, process " + std::to_string(pid_); }

StatusOr<std::unique_ptr<HandoffJob>> PostRotateAction::Start(const FinishedFile& file) {
  auto child = ChildProcess::Spawn(
      {"/bin/sh", "-c", command_ + " \"$1\"", "sh", CommandArgument(file.path)});
  if (!child.ok()) return child.status();
  return std::unique_ptr<HandoffJob>(std::move(child).value());
}

}  // namespace capd::client

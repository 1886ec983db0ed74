#include "client/transport/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace capd::client {

StatusOr<pid_t> SpawnChild(const std::vector<std::string>& argv, const std::string& log_path,
                           const std::string& stderr_path, bool own_process_group) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (stderr_path.empty()) {
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
  }
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // capctl blocks SIGINT/SIGTERM for its signal thread; the child must get default handling.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  short flags = POSIX_SPAWN_SETSIGMASK;
  if (own_process_group) {
    posix_spawnattr_setpgroup(&attributes, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(&attributes, flags);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, &attributes, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0) return Internal("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

namespace {

// A private temporary file, removed when this goes away.
class TempFile {
 public:
  TempFile() {
    char name[] = "/tmp/capctl-run-XXXXXX";
    const int fd = mkstemp(name);
    if (fd >= 0) {
      close(fd);
      path_ = name;
    }
  }
  ~TempFile() {
    if (!path_.empty()) unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }
  size_t Size() const {
    struct stat st {};
    return stat(path_.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
  }
  std::string Read() const {
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    return content.str();
  }

 private:
  std::string path_;
};

std::string LastLineOf(const std::string& text) {
  std::istringstream in(text);
  std::string line, last;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) last = line;
  }
  return last;
}

}  // namespace

StatusOr<std::string> RunForOutput(const std::vector<std::string>& argv,
                                   std::chrono::seconds timeout, size_t max_output_bytes) {
  std::string what;
  for (size_t i = 0; i < argv.size() && i < 3; ++i) what += (i == 0 ? "" : " ") + argv[i];
  TempFile out, err;
  if (out.path().empty() || err.path().empty()) {
    return Internal(std::string("mkstemp: ") + std::strerror(errno));
  }
  auto pid = SpawnChild(argv, out.path(), err.path(), /*own_process_group=*/true);
  if (!pid.ok()) return pid.status();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  bool timed_out = false;
  bool too_much = false;
  while (waitpid(pid.value(), &status, WNOHANG) != pid.value()) {
    too_much = out.Size() + err.Size() > max_output_bytes;
    if (too_much || std::chrono::steady_clock::now() > deadline) {
      // The whole group (SpawnChild made the child its leader), so what a script started dies
      // too; the leader is not reaped yet, so the group id cannot name anyone else's group.
      kill(-pid.value(), SIGKILL);
      waitpid(pid.value(), &status, 0);
      timed_out = !too_much;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // It may also have printed too much in its last moments before exiting.
  too_much = too_much || out.Size() + err.Size() > max_output_bytes;
  if (too_much) {
    return Unavailable(what + " printed more than " + std::to_string(max_output_bytes) +
                       " bytes: stopped");
  }
  if (timed_out) {
    return Unavailable(what + " did not finish within " + std::to_string(timeout.count()) + " s");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string reason = LastLineOf(err.Read());
    if (reason.size() > kMaxReasonChars) reason = reason.substr(0, kMaxReasonChars) + "...";
    return Unavailable(what + " failed" + (reason.empty() ? "" : ": " + reason));
  }
  return out.Read();
}

}  // namespace capd::client

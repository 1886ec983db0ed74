#include "tests/support/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

namespace capd::test {
namespace {

constexpr auto kPollInterval = 10ms;

// Only async-signal-safe calls between fork and exec (no allocation, no stdio): the test process
// may have other threads, e.g. OpenSocketIn's, holding locks the child would inherit.
void ChildFail(const char* what) {
  const int err = errno;
  const char* text = strerror(err);  // not strictly async-signal-safe, but glibc's is in practice
  (void)!write(STDERR_FILENO, "subprocess: ", 12);
  (void)!write(STDERR_FILENO, what, strlen(what));
  (void)!write(STDERR_FILENO, ": ", 2);
  (void)!write(STDERR_FILENO, text, strlen(text));
  (void)!write(STDERR_FILENO, "\n", 1);
  _exit(127);
}

// Opens `path` for the child's output, or /dev/null when empty.
StatusOr<UniqueFd> OpenOutput(const std::filesystem::path& path) {
  const std::string p = path.empty() ? std::string("/dev/null") : path.string();
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Internal("open(" + p + "): " + strerror(errno));
  return UniqueFd(fd);
}

ExitStatus FromWaitStatus(int wstatus) {
  ExitStatus s;
  if (WIFEXITED(wstatus)) {
    s.exited = true;
    s.code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    s.signal = WTERMSIG(wstatus);
  }
  return s;
}

}  // namespace

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string ExitStatus::ToString() const {
  if (exited) return "exit code " + std::to_string(code);
  if (signal != 0) return std::string("killed by signal ") + strsignal(signal);
  return "not ended";
}

std::ostream& operator<<(std::ostream& os, const ExitStatus& status) {
  return os << status.ToString();
}

Status RunToSuccess(const std::vector<std::string>& argv) {
  const CommandResult r = RunCommand(argv);
  if (r.status.Exited(0)) return Status::Ok();
  // Appended piecewise: GCC 12 warns (-Wrestrict, falsely) on "`" + std::string&&.
  std::string message = "`";
  message.append(JoinArgs(argv)).append("`: ").append(r.status.ToString());
  message.append(": ").append(r.output);
  return Internal(message);
}

std::string JoinArgs(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    const bool quote = a.empty() || a.find_first_of(" \t'\"|&;<>*?$") != std::string::npos;
    out += quote ? "'" + a + "'" : a;
  }
  return out;
}

std::string ReadFileToString(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(SubprocessOptions options) {
  if (options.argv.empty()) return InvalidArgument("Subprocess::Start: empty argv");

  // Everything the child needs is prepared here, before fork.
  UniqueFd netns_fd;
  if (!options.netns.empty()) {
    const std::string ns_path = "/run/netns/" + options.netns;
    netns_fd.Reset(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns_fd.valid()) return Internal("open(" + ns_path + "): " + strerror(errno));
  }
  UniqueFd out_file;
  UniqueFd err_file;
  if (options.stdout_fd < 0) {
    auto fd = OpenOutput(options.stdout_path);
    if (!fd.ok()) return fd.status();
    out_file = std::move(fd).value();
  }
  if (options.stderr_fd < 0) {
    auto fd = OpenOutput(options.stderr_path);
    if (!fd.ok()) return fd.status();
    err_file = std::move(fd).value();
  }
  const int out_fd = options.stdout_fd >= 0 ? options.stdout_fd : out_file.get();
  const int err_fd = options.stderr_fd >= 0 ? options.stderr_fd : err_file.get();
  UniqueFd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_in.valid()) return Internal(std::string("open(/dev/null): ") + strerror(errno));
  const int in_fd = options.stdin_fd >= 0 ? options.stdin_fd : null_in.get();

  std::vector<char*> argv;
  for (auto& a : options.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const char* sysfs_source = options.netns.empty() ? "" : options.netns.c_str();

  const pid_t pid = ::fork();
  if (pid < 0) return Internal(std::string("fork: ") + strerror(errno));
  if (pid == 0) {
    // Child. Die with the test process, even if it is SIGKILLed by ctest's timeout.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail("prctl");
    if (::getppid() != parent) _exit(127);
    ::setpgid(0, 0);  // a terminal's ^C goes to the test, which then kills us itself
    if (::dup2(in_fd, STDIN_FILENO) < 0) ChildFail("dup2 stdin");
    if (::dup2(out_fd, STDOUT_FILENO) < 0) ChildFail("dup2 stdout");
    if (::dup2(err_fd, STDERR_FILENO) < 0) ChildFail("dup2 stderr");
    if (netns_fd.valid()) {
      // What `ip netns exec` does (iproute2 lib/namespace.c): join the netns, then remount /sys in
      // a private mount namespace, otherwise /sys/class/net shows the creator's interfaces.
      if (::setns(netns_fd.get(), CLONE_NEWNET) != 0) ChildFail("setns");
      if (::unshare(CLONE_NEWNS) != 0) ChildFail("unshare(CLONE_NEWNS)");
      if (::mount("", "/", "none", MS_SLAVE | MS_REC, nullptr) != 0) ChildFail("mount / slave");
      ::umount2("/sys", MNT_DETACH);
      if (::mount(sysfs_source, "/sys", "sysfs", 0, nullptr) != 0) ChildFail("mount /sys");
    }
    // Nothing else leaks into the child (a pipe's read end would keep a "reader" alive).
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    // The signal mask and dispositions are inherited through exec; start from the defaults.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::execvp(argv[0], argv.data());
    ChildFail(argv[0]);
  }
  return std::unique_ptr<Subprocess>(new Subprocess(std::move(options), pid));
}

Subprocess::~Subprocess() {
  if (!status_) {
    ::kill(pid_, SIGKILL);
    int wstatus = 0;
    while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
    }
  }
}

bool Subprocess::Signal(int signal) {
  if (status_) return false;
  return ::kill(pid_, signal) == 0;
}

bool Subprocess::Running() { return !WaitFor(0ms).has_value(); }

std::optional<ExitStatus> Subprocess::WaitFor(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!status_) {
    int wstatus = 0;
    const pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_) {
      status_ = FromWaitStatus(wstatus);
      break;
    }
    if (r < 0 && errno != EINTR) {
      status_ = ExitStatus{};  // cannot happen for our own child; do not spin
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPollInterval);
  }
  return status_;
}

std::string Subprocess::Stdout() const {
  return options_.stdout_path.empty() ? "" : ReadFileToString(options_.stdout_path);
}

std::string Subprocess::Stderr() const {
  return options_.stderr_path.empty() ? "" : ReadFileToString(options_.stderr_path);
}

bool Subprocess::WaitForStderr(std::string_view text, std::chrono::milliseconds timeout) {
  if (WaitForFileContains(options_.stderr_path, text, timeout, [this] { return Running(); })) {
    return true;
  }
  // It may have written the text just before exiting.
  return Stderr().find(text) != std::string::npos;
}

std::string Subprocess::Describe() const {
  // Appends only: GCC 12 warns falsely (-Wrestrict, GCC bug 105329) on "literal" + std::string&&.
  std::string out = "`";
  out.append(JoinArgs(options_.argv)).append("`");
  if (!options_.netns.empty()) out.append(" in netns ").append(options_.netns);
  out.append(" (").append(status_ ? status_->ToString() : "running").append(")");
  std::string err = Stderr();
  constexpr size_t kTail = 3000;
  if (err.size() > kTail) err = "..." + err.substr(err.size() - kTail);
  if (!err.empty()) out += "\n--- stderr ---\n" + err + "--- end ---";
  return out;
}

bool WaitForFileContains(const std::filesystem::path& path, std::string_view text,
                         std::chrono::milliseconds timeout,
                         const std::function<bool()>& keep_waiting) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (ReadFileToString(path).find(text) != std::string::npos) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (keep_waiting && !keep_waiting()) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
}

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& netns,
                         std::chrono::milliseconds timeout) {
  CommandResult result;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    result.output = std::string("pipe2: ") + strerror(errno);
    return result;
  }
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  SubprocessOptions options;
  options.argv = argv;
  options.netns = netns;
  options.stdout_fd = write_end.get();
  options.stderr_fd = write_end.get();
  auto started = Subprocess::Start(std::move(options));
  write_end.Reset();  // only the child writes now: EOF when it exits
  if (!started.ok()) {
    result.output = started.status().message();
    return result;
  }
  auto& process = *started;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) break;
    pollfd pfd{read_end.get(), POLLIN, 0};
    const int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    const ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (auto status = process->WaitFor(std::max(left, 0ms))) {
    result.status = *status;
  } else {
    process->Signal(SIGKILL);
    result.status = process->WaitFor(5s).value_or(ExitStatus{});
    result.output += "\n(killed after timeout)";
  }
  return result;
}

TestDir::TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info != nullptr ? std::string(info->test_suite_name()) + "." + info->name()
                                     : std::string("capdt");
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/capdt-" + name + "-XXXXXX";
  if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
}

TestDir::~TestDir() {
  if (path_.empty()) return;
  const char* keep = std::getenv("CAPD_TEST_KEEP");
  if (::testing::Test::HasFailure() || (keep != nullptr && *keep != '\0' && *keep != '0')) {
    std::fprintf(stderr, "test files kept in %s\n", path_.c_str());
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace capd::test

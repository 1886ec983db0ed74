#include "agent/capture/filter_sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "agent/security/privileges.h"

namespace capd::agent {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kRequestMagic = 0x31514643;  // "CFQ1"
constexpr uint32_t kAnswerMagic = 0x31414643;   // "CFA1"
constexpr char kReady = 'R';
// A request is at most a 16 KiB filter plus capd's own exclusion and scope; anything much larger
// is not from capd.
constexpr size_t kMaxRequestBytes = 1 << 20;

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { out_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void Bytes(std::string_view v) {
    U32(static_cast<uint32_t>(v.size()));
    out_.append(v);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(uint8_t& v) { return Raw(&v, sizeof v); }
  bool U32(uint32_t& v) { return Raw(&v, sizeof v); }
  bool I32(int32_t& v) { return Raw(&v, sizeof v); }
  bool Bytes(std::string& v) {
    uint32_t n = 0;
    if (!U32(n) || n > in_.size()) return false;
    v.assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  bool Raw(void* to, size_t n) {
    if (n > in_.size()) return false;
    std::memcpy(to, in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }
  size_t left() const { return in_.size(); }

 private:
  std::string_view in_;
};

std::string Seconds(std::chrono::milliseconds ms) {
  const auto whole = ms.count() / 1000;
  const auto tenths = (ms.count() % 1000) / 100;
  // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a known false positive in
  // char_traits' memcpy) about an inlined `"." + std::string`.
  std::string text = std::to_string(whole);
  if (tenths != 0) {
    text += '.';
    text += std::to_string(tenths);
  }
  text += " s";
  return text;
}

// libpcap's texts when an allocation fails (gencode.c "out of memory", optimize.c "malloc").
bool IsAllocationFailure(const std::string& message) {
  return message.find("out of memory") != std::string::npos ||
         message.find("malloc") != std::string::npos ||
         message.find("calloc") != std::string::npos ||
         message.find("realloc") != std::string::npos;
}

// Waits for `fd` to be ready for `events`; false on the deadline or when `cancel_fd` is readable
// (then `cancelled` is set).
bool WaitFor(int fd, short events, int cancel_fd, Clock::time_point deadline, bool& cancelled) {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd fds[2] = {{fd, events, 0}, {cancel_fd, POLLIN, 0}};
    const int n = poll(fds, cancel_fd >= 0 ? 2 : 1, static_cast<int>(left) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (cancel_fd >= 0 && (fds[1].revents & POLLIN) != 0) {
      cancelled = true;
      return false;
    }
    if (fds[0].revents != 0) return true;
  }
}

void WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// The compile child: forked by the single-threaded helper, so it may call anything.
[[noreturn]] void RunCompileChild(int fd, const CompileBudget& budget) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (dup2(fd, 3) < 0) _exit(1);
  // The control socket, the signalfd and the other compiles' sockets are not this child's.
  if (syscall(SYS_close_range, 4U, ~0U, 0U) != 0) {
    for (int other = 4; other < 1024; ++other) close(other);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // Below capd's capture threads: a costly compile takes the CPU they leave, not theirs (an
  // ordinary filter needs milliseconds, at any niceness).
  setpriority(PRIO_PROCESS, 0, 10);
  // A killed compile leaves no core file; the CPU budget's hard limit is SIGKILL (soft = hard).
  const rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  const rlim_t cpu = static_cast<rlim_t>(std::max(1, budget.cpu_seconds));
  const rlimit cpu_limit{cpu, cpu};
  setrlimit(RLIMIT_CPU, &cpu_limit);
  // The budget is what the compile adds to the address space inherited from capd.
  uint64_t pages = 0;
  if (const int statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC); statm >= 0) {
    char text[64] = {};
    if (read(statm, text, sizeof text - 1) > 0) pages = std::strtoull(text, nullptr, 10);
    close(statm);
  }
  const rlim_t address_space = static_cast<rlim_t>(
      pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) + budget.memory_bytes);
  const rlimit memory_limit{address_space, address_space};
  setrlimit(RLIMIT_AS, &memory_limit);

  std::string request;
  char buffer[16384];
  while (request.size() <= kMaxRequestBytes) {
    const ssize_t n = read(3, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) _exit(1);
    if (n == 0) break;
    request.append(buffer, static_cast<size_t>(n));
  }
  WriteAll(3, AnswerComposeRequest(request, budget));
  shutdown(3, SHUT_WR);  // the helper still holds this socket: EOF must not wait for it
  _exit(0);
}

struct Compile {
  pid_t pid;
  int fd;  // the helper's copy of the child's socket: POLLHUP when capd closed its end
  Clock::time_point deadline;
  bool killed = false;
};

// The connection passed in one control datagram, or -1; `hangup` when capd is gone.
int ReceiveConnection(int fd, bool& hangup) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) {
    hangup = errno != EINTR && errno != EAGAIN;
    return -1;
  }
  if (n == 0) {
    hangup = true;
    return -1;
  }
  int received = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
      std::memcpy(&received, CMSG_DATA(c), sizeof received);
    }
  }
  return received;
}

}  // namespace

std::string CompileBudget::Describe() const {
  return std::to_string(cpu_seconds) + " s of CPU, " + std::to_string(memory_bytes >> 20) +
         " MiB, " + Seconds(wall) + " in all";
}

Status TooCostly(const CompileBudget& budget) {
  return InvalidArgument("filter too costly to compile (over its budget of " + budget.Describe() +
                         "): simplify it");
}

bool IsTooCostly(const Status& status) {
  return status.code() == StatusCode::kInvalidArgument &&
         status.message().rfind("filter too costly to compile", 0) == 0;
}

std::string EncodeComposeRequest(const ComposeRequest& request) {
  Writer w;
  w.U32(kRequestMagic);
  w.I32(request.link_type);
  w.I32(request.snaplen);
  w.Bytes(request.user_filter);
  w.Bytes(request.scope);
  w.Bytes(request.own.carriers);
  w.U32(static_cast<uint32_t>(request.own.tcp_ports.size()));
  for (uint16_t port : request.own.tcp_ports) w.U32(port);
  return w.Take();
}

std::optional<ComposeRequest> DecodeComposeRequest(std::string_view bytes) {
  Reader r(bytes);
  ComposeRequest request;
  uint32_t magic = 0;
  uint32_t ports = 0;
  if (!r.U32(magic) || magic != kRequestMagic || !r.I32(request.link_type) ||
      !r.I32(request.snaplen) || !r.Bytes(request.user_filter) || !r.Bytes(request.scope) ||
      !r.Bytes(request.own.carriers) || !r.U32(ports) || ports > r.left() / 4) {
    return std::nullopt;
  }
  for (uint32_t i = 0; i < ports; ++i) {
    uint32_t port = 0;
    if (!r.U32(port) || port > 65535) return std::nullopt;
    request.own.tcp_ports.push_back(static_cast<uint16_t>(port));
  }
  if (!r.done()) return std::nullopt;
  return request;
}

std::string EncodeComposeAnswer(const StatusOr<filters::ComposedFilter>& answer) {
  Writer w;
  w.U32(kAnswerMagic);
  w.U8(answer.ok() ? 1 : 0);
  if (!answer.ok()) {
    w.U32(static_cast<uint32_t>(answer.status().code()));
    w.Bytes(answer.status().message());
    return w.Take();
  }
  const filters::ComposedFilter& composed = answer.value();
  w.U8(composed.excludes_own_traffic ? 1 : 0);
  w.I32(composed.link_type);
  w.I32(composed.snaplen);
  w.Bytes(composed.expression);
  const bpf_program* program = composed.program.program();
  w.Bytes(std::string_view(reinterpret_cast<const char*>(program->bf_insns),
                           program->bf_len * sizeof(bpf_insn)));
  return w.Take();
}

std::optional<StatusOr<filters::ComposedFilter>> DecodeComposeAnswer(std::string_view bytes) {
  Reader r(bytes);
  uint32_t magic = 0;
  uint8_t ok = 0;
  if (!r.U32(magic) || magic != kAnswerMagic || !r.U8(ok)) return std::nullopt;
  if (ok == 0) {
    uint32_t code = 0;
    std::string message;
    if (!r.U32(code) || !r.Bytes(message) || !r.done() || code == 0 ||
        code > static_cast<uint32_t>(StatusCode::kInternal)) {
      return std::nullopt;
    }
    return StatusOr<filters::ComposedFilter>(
        Status(static_cast<StatusCode>(code), std::move(message)));
  }
  filters::ComposedFilter composed;
  uint8_t excludes = 0;
  std::string instructions;
  if (!r.U8(excludes) || !r.I32(composed.link_type) || !r.I32(composed.snaplen) ||
      !r.Bytes(composed.expression) || !r.Bytes(instructions) || !r.done() ||
      instructions.size() % sizeof(bpf_insn) != 0) {
    return std::nullopt;
  }
  composed.excludes_own_traffic = excludes != 0;
  std::vector<bpf_insn> program(instructions.size() / sizeof(bpf_insn));
  std::memcpy(program.data(), instructions.data(), instructions.size());
  composed.program = filters::CompiledFilter::FromInstructions(program.data(), program.size());
  return StatusOr<filters::ComposedFilter>(std::move(composed));
}

std::string AnswerComposeRequest(std::string_view bytes, const CompileBudget& budget) {
  const std::optional<ComposeRequest> request = DecodeComposeRequest(bytes);
  if (!request) return EncodeComposeAnswer(Internal("the filter compiler got a malformed request"));
  auto composed = filters::ComposeCaptureFilter(
      request->user_filter, request->own, request->link_type, request->snaplen, request->scope);
  if (!composed.ok() && IsAllocationFailure(composed.status().message())) {
    return EncodeComposeAnswer(TooCostly(budget));
  }
  return EncodeComposeAnswer(composed);
}

void ServeCompileRequests(int fd, const CompileBudget& budget) {
  sigset_t child_exits;
  sigemptyset(&child_exits);
  sigaddset(&child_exits, SIGCHLD);
  sigprocmask(SIG_BLOCK, &child_exits, nullptr);
  const int exits = signalfd(-1, &child_exits, SFD_CLOEXEC | SFD_NONBLOCK);
  std::vector<Compile> compiles;
  bool serving = true;
  std::vector<pollfd> fds;
  while (serving || !compiles.empty()) {
    fds.clear();
    fds.push_back({serving ? fd : -1, POLLIN, 0});
    fds.push_back({exits, POLLIN, 0});
    Clock::time_point wake = Clock::time_point::max();
    for (const Compile& c : compiles) {
      // No events asked: POLLHUP (capd closed its end) is reported anyway.
      fds.push_back({c.killed ? -1 : c.fd, 0, 0});
      if (!c.killed) wake = std::min(wake, c.deadline);
    }
    int timeout_ms = -1;
    if (wake != Clock::time_point::max()) {
      timeout_ms = static_cast<int>(std::max<int64_t>(
          0,
          std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now()).count() + 1));
    }
    // Without a signalfd, children are reaped at least every 100 ms.
    if (exits < 0 && (timeout_ms < 0 || timeout_ms > 100)) timeout_ms = 100;
    if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) break;
    const Clock::time_point now = Clock::now();

    for (size_t i = 0; i + 2 < fds.size(); ++i) {
      Compile& c = compiles[i];
      const bool abandoned = (fds[i + 2].revents & (POLLHUP | POLLERR)) != 0;
      if (!c.killed && (abandoned || now >= c.deadline)) {
        kill(c.pid, SIGKILL);  // not reaped yet, so the pid is still this child's
        c.killed = true;
      }
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      bool hangup = false;
      const int connection = ReceiveConnection(fd, hangup);
      if (hangup) {
        serving = false;
        for (Compile& c : compiles) {
          if (!c.killed) kill(c.pid, SIGKILL);
          c.killed = true;
        }
      } else if (connection >= 0 && compiles.size() >= FilterSandbox::kMaxConcurrentCompiles) {
        WriteAll(connection,
                 EncodeComposeAnswer(Status(
                     StatusCode::kResourceExhausted,
                     "too many filters compiling at once (" +
                         std::to_string(FilterSandbox::kMaxConcurrentCompiles) + "): try again")));
        close(connection);
      } else if (connection >= 0) {
        const pid_t pid = fork();
        if (pid == 0) RunCompileChild(connection, budget);
        if (pid < 0) {
          WriteAll(connection, EncodeComposeAnswer(Internal(std::string("fork (filter compile): ") +
                                                            std::strerror(errno))));
          close(connection);
        } else {
          compiles.push_back({pid, connection, now + budget.wall});
        }
      }
    }
    if (exits >= 0) {
      signalfd_siginfo info;
      while (read(exits, &info, sizeof info) > 0) {
      }
    }
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      auto it = std::find_if(compiles.begin(), compiles.end(),
                             [pid](const Compile& c) { return c.pid == pid; });
      if (it == compiles.end()) continue;
      // Closing the helper's copy ends the socket: capd reads EOF, with or without an answer.
      close(it->fd);
      compiles.erase(it);
    }
  }
  if (exits >= 0) close(exits);
}

namespace {

// In the helper, before anything else: only stderr and the control socket open, dies with capd,
// no privileges. Exits on any failure (capd sees no ready message).
[[noreturn]] void RunHelper(int fd, pid_t parent, const std::string& user,
                            const CompileBudget& budget) {
  BecomeHelper(fd, parent, "capd-filters", user, KeptCapabilities::kNone);
  if (send(3, &kReady, 1, MSG_NOSIGNAL) != 1) _exit(1);
  ServeCompileRequests(3, budget);
  _exit(0);
}

}  // namespace

StatusOr<std::unique_ptr<FilterSandbox>> FilterSandbox::Start(const std::string& user,
                                                              const CompileBudget& budget) {
  // Checked here too, so that a wrong --user is the caller's error (exit 2), not a helper that
  // did not start.
  if (!user.empty() && getpwnam(user.c_str()) == nullptr) {
    return InvalidArgument("--user " + user + ": no such user");
  }
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Internal(std::string("socketpair(AF_UNIX, SOCK_SEQPACKET): ") + std::strerror(errno));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    close(pair[0]);
    close(pair[1]);
    return Internal(std::string("fork (filter compiler): ") + std::strerror(error));
  }
  if (pid == 0) {
    close(pair[0]);
    RunHelper(pair[1], parent, user, budget);
  }
  close(pair[1]);
  bool cancelled = false;
  char ready = 0;
  if (!WaitFor(pair[0], POLLIN, -1, Clock::now() + std::chrono::seconds(1), cancelled) ||
      recv(pair[0], &ready, 1, MSG_DONTWAIT) != 1 || ready != kReady) {
    close(pair[0]);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return Internal("the filter compiler (capd-filters) did not start (see the line before)");
  }
  return std::unique_ptr<FilterSandbox>(new FilterSandbox(pair[0], pid, budget));
}

FilterSandbox::~FilterSandbox() {
  close(fd_);  // the helper kills its children, reaps them and exits
  for (int i = 0; i < 100 && waitpid(pid_, nullptr, WNOHANG) == 0; ++i) usleep(10000);
  if (kill(pid_, SIGKILL) == 0) waitpid(pid_, nullptr, 0);
}

StatusOr<filters::ComposedFilter> FilterSandbox::Compose(const ComposeRequest& request,
                                                         int cancel_fd) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return Internal(std::string("socketpair(AF_UNIX, SOCK_STREAM): ") + std::strerror(errno));
  }
  // Ours only: the child reads and writes its end blocking.
  fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK);
  // Closing our end, however this returns, tells the helper to kill the child if it still runs.
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } ours{pair[0]};
  {
    Closer theirs{pair[1]};
    char byte = 0;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pair[1], sizeof(int));
    if (sendmsg(fd_, &msg, MSG_NOSIGNAL) != 1) {
      const Status gone = Unavailable(std::string("the filter compiler (capd-filters) is gone: ") +
                                      std::strerror(errno));
      if (on_lost_) std::call_once(lost_once_, on_lost_);
      return gone;
    }
  }
  // The helper enforces the wall budget; this one is for a helper that is itself stuck.
  const Clock::time_point deadline = Clock::now() + budget_.wall + std::chrono::seconds(1);
  bool cancelled = false;
  auto gave_up = [&]() -> Status {
    if (cancelled) return Unavailable("the stream ended while its filter compiled");
    return TooCostly(budget_);
  };
  const std::string bytes = EncodeComposeRequest(request);
  std::string_view to_send = bytes;
  while (!to_send.empty()) {
    const ssize_t n = send(ours.fd, to_send.data(), to_send.size(), MSG_NOSIGNAL);
    if (n > 0) {
      to_send.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return gave_up();  // the child is gone already
    if (!WaitFor(ours.fd, POLLOUT, cancel_fd, deadline, cancelled)) return gave_up();
  }
  shutdown(ours.fd, SHUT_WR);
  std::string answer;
  char buffer[65536];
  while (true) {
    const ssize_t n = recv(ours.fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      answer.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) break;
    if (!WaitFor(ours.fd, POLLIN, cancel_fd, deadline, cancelled)) return gave_up();
  }
  auto decoded = DecodeComposeAnswer(answer);
  // No whole answer: the child was killed (CPU or wall budget) or died allocating (memory).
  if (!decoded) return TooCostly(budget_);
  return std::move(decoded.value());
}

}  // namespace capd::agent

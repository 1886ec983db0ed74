#pragma once
// The filter sandbox: capd compiles every request's BPF filter in a short-lived process with a
// CPU, memory and time budget, so that no filter text can take the agent's memory, a core, or
// other clients' captures with it.
//
// Why: libpcap's compiler, and its optimizer most, is super-linear in the expression. A 16 KiB
// filter of 1,344 `port N or` terms (under the request size limit) took capd from 17 to 799 MB
// and a core for minutes, and no size limit bounds the cost of a shorter one. libpcap cannot be
// interrupted or bounded in-process; a process can be killed and given rlimits.
//
// Design: a pre-forked helper, as capd-peers (agent/peers/peer_helper.h). FilterSandbox::Start
// forks "capd-filters" early in main, before gRPC starts a thread: forking a multi-threaded
// process and then running libpcap (malloc, stdio, locale) in the child could deadlock on a lock
// another thread held at the fork. The helper is single-threaded, so its own forks are safe. It
// keeps no capability (no_new_privs, capd's --user) and dies with capd (PR_SET_PDEATHSIG).
//
// One compile = one connection = one child:
//   capd thread                        capd-filters (poll loop)          child (one per compile)
//   socketpair(a, b); send b  ──────►  fork ───────────────────────────► rlimits: RLIMIT_CPU,
//   write request to a, shut down                                          RLIMIT_AS (+budget),
//   read the answer until EOF  ◄──────────────────────────────────────── compile, answer, exit
//   close a (done, timed out, or       SIGKILL the child when capd closed
//   the stream was cancelled)          `a` or the wall-clock budget ran out
// The helper only forks and watches: it never reads a request or runs libpcap, so a costly
// compile holds nothing but its own child, and compiles run in parallel (at most
// kMaxConcurrentCompiles; more at once are refused with kResourceExhausted: an ordinary filter
// compiles in milliseconds, so only that many costly ones in flight, each for at most the wall
// budget, can fill the slots). Children run at nice 10, below capd's capture threads. capd's side
// needs no lock: each call has its own socket pair, and a datagram on the SOCK_SEQPACKET control
// socket is sent atomically.
//
// A filter over budget is refused with kInvalidArgument (gRPC INVALID_ARGUMENT, capctl exit 2):
// the cost depends on the text alone, so retrying cannot help, as for a filter that does not
// compile; the message names the budget and says to simplify the filter. kResourceExhausted is
// kept for what may succeed later (too many compiles at once).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "filters/bpf_filter.h"

namespace capd::agent {

// What one compile may use. The defaults leave any filter a person writes (milliseconds, a few
// MiB) far inside, and refuse the 16 KiB optimizer-heavy one in about a second.
struct CompileBudget {
  // RLIMIT_CPU, whole seconds (the kernel's granularity); the child is killed when it is used.
  int cpu_seconds = 1;
  // Address space the child may add to what it has at the fork (RLIMIT_AS).
  uint64_t memory_bytes = 256ULL << 20;
  // From the request to the answer, whatever the machine's load.
  std::chrono::milliseconds wall{1500};

  // "1 s of CPU, 256 MiB, 1.5 s in all"
  std::string Describe() const;
};

// Everything ComposeCaptureFilter needs (filters/bpf_filter.h).
struct ComposeRequest {
  std::string user_filter;
  filters::OwnTraffic own;
  std::string scope;
  int link_type = 0;  // DLT_
  int snaplen = 0;
};

// The wire format between capd and a compile child (exposed for tests and the fuzzer).
std::string EncodeComposeRequest(const ComposeRequest& request);
std::optional<ComposeRequest> DecodeComposeRequest(std::string_view bytes);
std::string EncodeComposeAnswer(const StatusOr<filters::ComposedFilter>& answer);
// nullopt when `bytes` is not one whole answer (e.g. the child was killed while writing it).
std::optional<StatusOr<filters::ComposedFilter>> DecodeComposeAnswer(std::string_view bytes);

// The child's work, in-process: decode the request, compose, encode the answer. A libpcap
// failure to allocate (the memory budget) comes back as the budget's refusal.
std::string AnswerComposeRequest(std::string_view request, const CompileBudget& budget);

// The refusal of a filter over `budget`, and whether `status` is such a refusal.
Status TooCostly(const CompileBudget& budget);
bool IsTooCostly(const Status& status);

// The helper's loop on the control socket `fd`: one child per received connection, killed when
// capd closes its end or `budget.wall` has passed. Returns when capd closes `fd` (children are
// killed first).
void ServeCompileRequests(int fd, const CompileBudget& budget);

class FilterSandbox {
 public:
  static constexpr int kMaxConcurrentCompiles = 8;

  // Forks the helper (see the top of this file for when). It switches to `user` ("" stays) and
  // keeps no capability (kInvalidArgument when `user` does not exist). Waits for its ready
  // message (at most a second).
  static StatusOr<std::unique_ptr<FilterSandbox>> Start(const std::string& user,
                                                        const CompileBudget& budget = {});
  ~FilterSandbox();  // closes the control socket (the helper kills its children and exits)
  FilterSandbox(const FilterSandbox&) = delete;
  FilterSandbox& operator=(const FilterSandbox&) = delete;

  // ComposeCaptureFilter, in a child, within the budget. Blocks the calling thread for at most
  // the budget's wall time (plus a second should the helper itself be stuck); returns sooner,
  // with kUnavailable, once `cancel_fd` (if >= 0) is readable. Thread-safe, no lock.
  StatusOr<filters::ComposedFilter> Compose(const ComposeRequest& request, int cancel_fd = -1);

  pid_t pid() const { return pid_; }
  const CompileBudget& budget() const { return budget_; }

  // Called once, from the thread of the Compose that finds capd-filters gone (killed: by
  // anyone running as capd's user). capd cannot fork a new one safely once it has threads, so it
  // ends with a failure for its service manager to restart it; unset, Compose only fails.
  void SetOnLost(std::function<void()> on_lost) { on_lost_ = std::move(on_lost); }

 private:
  FilterSandbox(int fd, pid_t pid, const CompileBudget& budget)
      : fd_(fd), pid_(pid), budget_(budget) {}

  const int fd_;
  const pid_t pid_;
  const CompileBudget budget_;
  std::function<void()> on_lost_;
  std::once_flag lost_once_;
};

}  // namespace capd::agent

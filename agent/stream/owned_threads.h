#pragma once
// Threads an object owns: started for a piece of work, joined by the owner, never detached.
//
// Contract: Start runs `work` on a new thread unless JoinAll has begun (then it returns false and
// `work` is not run). A thread whose work has returned is joined at the next Start (so a
// long-lived owner keeps only the threads still working) and by JoinAll, which blocks until every
// thread started has returned. Interrupting the work is the owner's job (a stop signal the work
// polls), done before JoinAll. The destructor joins too.
//
// Thread-safety: every method may be called from any thread, except JoinAll from one of the
// owned threads (it would wait for itself).

#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace capd::agent {

class OwnedThreads {
 public:
  OwnedThreads() = default;
  ~OwnedThreads() { JoinAll(); }
  OwnedThreads(const OwnedThreads&) = delete;
  OwnedThreads& operator=(const OwnedThreads&) = delete;

  // `name` (at most 15 characters) is what ps and top show for the thread.
  bool Start(std::string name, std::function<void()> work);
  void JoinAll();
  // Threads started and not yet joined (including ones whose work has returned).
  size_t size() const;

 private:
  void JoinExitedLocked();

  mutable std::mutex mu_;
  std::list<std::thread> threads_;       // guarded by mu_
  std::vector<std::thread::id> exited_;  // their work returned; guarded by mu_
  bool closed_ = false;                  // guarded by mu_
};

}  // namespace capd::agent

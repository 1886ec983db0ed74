#include "agent/stream/owned_threads.h"

#include <pthread.h>

#include <algorithm>

namespace capd::agent {

bool OwnedThreads::Start(std::string name, std::function<void()> work) {
  std::lock_guard lock(mu_);
  JoinExitedLocked();
  if (closed_) return false;
  // The new thread takes mu_ only after its work, so it cannot report its exit before it is
  // listed here.
  threads_.emplace_back([this, name = std::move(name), work = std::move(work)]() mutable {
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    work();
    work = nullptr;  // what it captured goes before the thread reports its exit
    std::lock_guard exit_lock(mu_);
    exited_.push_back(std::this_thread::get_id());
  });
  return true;
}

void OwnedThreads::JoinExitedLocked() {
  // A thread listed in exited_ has only to return: joining it here does not wait on its work.
  for (const std::thread::id id : exited_) {
    auto found = std::find_if(threads_.begin(), threads_.end(),
                              [id](const std::thread& t) { return t.get_id() == id; });
    if (found == threads_.end()) continue;
    found->join();
    threads_.erase(found);
  }
  exited_.clear();
}

void OwnedThreads::JoinAll() {
  std::list<std::thread> joining;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    joining.swap(threads_);
  }
  for (std::thread& t : joining) t.join();
  std::lock_guard lock(mu_);
  exited_.clear();
}

size_t OwnedThreads::size() const {
  std::lock_guard lock(mu_);
  return threads_.size();
}

}  // namespace capd::agent

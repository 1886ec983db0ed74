#include "agent/service/stream_handles.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace capd::agent {

StatusOr<std::string> NewStreamHandle() {
  unsigned char bytes[StreamHandles::kHandleBytes];
  size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal(std::string("getrandom: ") + strerror(errno));
    got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (unsigned char b : bytes) {
    text.push_back(kHex[b >> 4]);
    text.push_back(kHex[b & 0xf]);
  }
  return text;
}

void StreamHandles::Add(const std::string& handle, const std::string& principal,
                        uint64_t subscription, const void* owner) {
  std::lock_guard lock(mu_);
  Entry& entry = entries_[handle];
  entry.principal = principal;
  entry.subscription = subscription;
  entry.owner = owner;
  entry.tokens = budget_.burst;
  entry.refilled = Clock::now();
}

void StreamHandles::RemoveOwner(const void* owner) {
  std::lock_guard lock(mu_);
  std::erase_if(entries_, [owner](const auto& e) { return e.second.owner == owner; });
}

StatusOr<uint64_t> StreamHandles::BeginChange(const std::string& handle,
                                              const std::string& principal, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto found = entries_.find(handle);
  // One answer for "no such handle" and "not yours".
  if (found == entries_.end() || found->second.principal != principal) {
    return NotFound("no such stream");
  }
  Entry& e = found->second;
  if (e.changing) {
    return Status(StatusCode::kResourceExhausted, "a change of this stream is still being applied");
  }
  if (now > e.refilled) {
    const double earned = std::chrono::duration<double>(now - e.refilled) /
                          std::chrono::duration<double>(budget_.period);
    e.tokens = std::min<double>(budget_.burst, e.tokens + earned);
    e.refilled = now;
  }
  if (e.tokens < 1) {
    return Status(StatusCode::kResourceExhausted,
                  "too many filter changes: " + std::to_string(budget_.burst) +
                      " at once, then one every " +
                      std::to_string(budget_.period.count() / 1000.0).substr(0, 3) + " s");
  }
  e.tokens -= 1;
  e.changing = true;
  return e.subscription;
}

void StreamHandles::EndChange(const std::string& handle) {
  std::lock_guard lock(mu_);
  auto found = entries_.find(handle);
  if (found != entries_.end()) found->second.changing = false;
}

size_t StreamHandles::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace capd::agent

#include "upload/file_handoff.h"

#include <algorithm>
#include <thread>
#include <utility>

namespace capd::client {

std::string CommandArgument(const std::string& path) {
  return !path.empty() && path.front() == '-' ? "./" + path : path;
}
namespace {

class RealClock final : public HandoffClock {
 public:
  TimePoint Now() override { return std::chrono::steady_clock::now(); }
  void SleepFor(std::chrono::milliseconds duration) override {
    std::this_thread::sleep_for(duration);
  }
};

std::string Seconds(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " s";
}

// In file order, as a user lists them: commands run side by side finish in any order, and ring
// files' names sort by their zero-padded sequence numbers.
std::string Names(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

std::string Files(size_t n) { return std::to_string(n) + (n == 1 ? " file" : " files"); }

}  // namespace

HandoffClock& HandoffClock::Real() {
  static RealClock clock;
  return clock;
}

FileHandoff::FileHandoff(std::unique_ptr<HandoffAction> action, HandoffSettings settings,
                         std::function<void(const std::string&)> log, HandoffClock& clock)
    : action_(std::move(action)),
      settings_(settings),
      log_(std::move(log)),
      clock_(clock),
      name_(action_->Name()) {}

FileHandoff::~FileHandoff() {
  // Finish is the only wait; a hand-off that was never finished leaves its commands running.
  for (Entry& entry : entries_) {
    if (entry.job) (void)entry.job->Abandon();
  }
}

void FileHandoff::Add(const FinishedFile& file) {
  Entry entry;
  entry.file = file;
  entries_.push_back(std::move(entry));
  StartDue();
}

std::chrono::milliseconds FileHandoff::BackOff(uint32_t failures) const {
  auto delay = settings_.first_retry;
  for (uint32_t i = 1; i < failures && delay < settings_.max_retry; ++i) delay *= 2;
  return std::min(delay, settings_.max_retry);
}

bool FileHandoff::Failed(Entry& entry, const std::string& why) {
  const std::string head = name_ + " for " + entry.file.path + " failed: " + why + " (attempt " +
                           std::to_string(entry.attempts) + " of " +
                           std::to_string(settings_.max_attempts) + ")";
  if (entry.attempts >= settings_.max_attempts) {
    log_(head + "; giving up: " + entry.file.path + " stays where it is");
    failed_.push_back(entry.file.path);
    return true;
  }
  const auto delay = BackOff(entry.attempts);
  log_(head + "; retrying in " + Seconds(delay));
  entry.not_before = clock_.Now() + delay;
  return false;
}

void FileHandoff::Poll() {
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& entry = *it;
    if (!entry.job) {
      ++it;
      continue;
    }
    std::optional<Status> outcome = entry.job->Poll();
    if (!outcome) {
      ++it;
      continue;
    }
    entry.job.reset();
    --running_;
    if (outcome->ok()) {
      ++succeeded_;
      it = entries_.erase(it);
      continue;
    }
    it = Failed(entry, outcome->message()) ? entries_.erase(it) : it + 1;
  }
  StartDue();
}

// The oldest files first, as long as there is room: a retry that is due counts as queued.
void FileHandoff::StartDue() {
  const auto now = clock_.Now();
  for (auto it = entries_.begin(); it != entries_.end() && running_ < settings_.max_running;) {
    Entry& entry = *it;
    if (entry.job || entry.not_before > now) {
      ++it;
      continue;
    }
    ++entry.attempts;
    auto job = action_->Start(entry.file);
    if (job.ok()) {
      entry.job = std::move(job).value();
      ++running_;
      ++it;
      continue;
    }
    it = Failed(entry, job.status().message()) ? entries_.erase(it) : it + 1;
  }
}

bool FileHandoff::MayDelete(const std::string& path) const {
  for (const Entry& entry : entries_) {
    if (entry.file.path == path) return false;
  }
  return std::find(failed_.begin(), failed_.end(), path) == failed_.end() &&
         std::find(gave_up_.begin(), gave_up_.end(), path) == gave_up_.end();
}

size_t FileHandoff::pending() const { return entries_.size(); }

bool FileHandoff::Finish() {
  if (finished_) return failed_.empty() && gave_up_.empty();
  finished_ = true;
  Poll();
  if (!entries_.empty()) {
    log_("waiting up to " + Seconds(settings_.exit_wait) + " (--handoff-wait) for the " + name_ +
         ": " + std::to_string(running_) + " running, " +
         std::to_string(entries_.size() - running_) +
         " queued or waiting to retry (a second Ctrl-C stops waiting)");
    const auto deadline = clock_.Now() + settings_.exit_wait;
    while (!entries_.empty() && !stop_waiting_.load() && clock_.Now() < deadline) {
      clock_.SleepFor(settings_.wait_poll);
      Poll();
    }
  }
  if (!entries_.empty()) {
    std::vector<std::string> running, not_started;
    for (Entry& entry : entries_) {
      if (entry.job) {
        running.push_back(entry.file.path + " (" + entry.job->Abandon() + ")");
      } else {
        not_started.push_back(entry.file.path);
      }
      gave_up_.push_back(entry.file.path);
    }
    entries_.clear();
    running_ = 0;
    std::string text =
        std::string("stopped waiting for the ") + name_ +
        (stop_waiting_.load() ? " (Ctrl-C)" : " after " + Seconds(settings_.exit_wait));
    if (!running.empty()) text += "; still running: " + Names(running);
    if (!not_started.empty()) text += "; not handed off: " + Names(not_started);
    log_(text);
  }
  std::string summary = Files(succeeded_) + " handed off to the " + name_;
  if (!failed_.empty()) {
    summary += "; " + Files(failed_.size()) + " failed after " +
               std::to_string(settings_.max_attempts) +
               (settings_.max_attempts == 1 ? " attempt: " : " attempts: ") + Names(failed_);
  }
  if (!gave_up_.empty()) {
    summary += "; " + Files(gave_up_.size()) +
               " not settled when capctl stopped waiting: " + Names(gave_up_);
  }
  log_(summary);
  return failed_.empty() && gave_up_.empty();
}

}  // namespace capd::client

#pragma once
// capctl's hand-off of finished capture files to what takes them elsewhere (the --post-rotate
// command, an upload): nothing is lost on the way.
//
// Contract:
// - Every file given to Add is handed to the action until the action succeeds once, or fails
//   settings.max_attempts times. At most settings.max_running actions run at once; the others
//   wait in a queue, oldest first.
// - A failure (a non-zero exit, a signal, a command that could not start) is retried after a
//   back-off of first_retry, doubling at each failure, at most max_retry: with the defaults 1 s,
//   2 s, 4 s, 8 s between the 5 attempts. Each failure is one line through `log` naming the file,
//   the attempt and what comes next ("retrying in N s", or "giving up: FILE stays where it is").
// - MayDelete(path) is true only once the file's action has succeeded (or for a file never given
//   to Add): the ring asks it before deleting a file, so a file is never deleted while its action
//   runs, waits for a retry, or after it failed for good.
// - Finish() waits for the queued and running actions, up to settings.exit_wait: it says what it
//   waits for, and, when it gives up (the bound, or StopWaiting from a second Ctrl-C), which
//   files it gave up on; running commands are left running (an upload outlives capctl, as with
//   tcpdump -z), queued ones are never started. Then one summary line: N files handed off, M not
//   (their names). Finish's result is false when any file was not handed off.
//
// How data flows: the ring's writer thread calls Add (on_file_details), Poll (at every Tick and
// Flush of the ring) and Finish; Poll collects the actions that ended, starts retries that are
// due and queued files while there is room. Nothing here blocks except Finish.
//
// Thread-safety: one thread (the ring's) calls everything but StopWaiting, which any thread may
// call (capctl's signal thread).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "capfile/rotating_writer.h"
#include "common/status.h"

namespace capd::client {

using capfile::FinishedFile;

// `path` as it is given to a command as an argument: a relative path that starts with '-' (from
// `-w -cap.pcapng`) gets "./" in front, so that no command (gzip, aws) reads it as an option.
std::string CommandArgument(const std::string& path);

// One run of an action for one file.
class HandoffJob {
 public:
  virtual ~HandoffJob() = default;
  // Never blocks: nullopt while the job runs; then Ok, or why it failed (the text of the log
  // line: "exit status 1", "killed by signal 9").
  virtual std::optional<Status> Poll() = 0;
  // Left running when capctl stops waiting: a short word on what that means ("left running").
  virtual std::string Abandon() = 0;
  // Ends the job at once (a process and its group: SIGKILL); Poll then reports how it ended.
  // Nothing by default: a job without a process has nothing to end.
  virtual void Kill() {}
};

// What is done with each finished file.
class HandoffAction {
 public:
  virtual ~HandoffAction() = default;
  // For messages: "post-rotate command", "upload to s3://bucket/prefix".
  virtual std::string Name() const = 0;
  // Starts the action for `file` without waiting for it; a status when it cannot start (counted
  // as a failed attempt).
  virtual StatusOr<std::unique_ptr<HandoffJob>> Start(const FinishedFile& file) = 0;
};

struct HandoffSettings {
  uint32_t max_running = 2;                      // --handoff-jobs
  uint32_t max_attempts = 5;                     // --handoff-attempts
  std::chrono::milliseconds first_retry{1000};   // doubles after each failure
  std::chrono::milliseconds max_retry{60'000};   // the longest back-off
  std::chrono::milliseconds exit_wait{300'000};  // --handoff-wait
  std::chrono::milliseconds wait_poll{50};       // Finish looks at its jobs this often
};

// The clock the hand-off schedules retries and its exit wait by; tests move it by hand.
class HandoffClock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~HandoffClock() = default;
  virtual TimePoint Now() = 0;
  virtual void SleepFor(std::chrono::milliseconds duration) = 0;
  static HandoffClock& Real();
};

class FileHandoff {
 public:
  // log: one line per message, without the "capctl: " prefix. clock: must outlive the hand-off.
  FileHandoff(std::unique_ptr<HandoffAction> action, HandoffSettings settings,
              std::function<void(const std::string&)> log,
              HandoffClock& clock = HandoffClock::Real());
  FileHandoff(const FileHandoff&) = delete;
  FileHandoff& operator=(const FileHandoff&) = delete;
  ~FileHandoff();

  void Add(const FinishedFile& file);
  void Poll();
  bool MayDelete(const std::string& path) const;
  // The bounded wait at exit and the summary; false when any file was not handed off. Once.
  bool Finish();
  // Ends Finish's wait at its next look (any thread).
  void StopWaiting() { stop_waiting_.store(true); }

  // What happened so far, for tests and the summary.
  size_t succeeded() const { return succeeded_; }
  const std::vector<std::string>& failed() const { return failed_; }  // failed for good
  size_t pending() const;  // queued, running or waiting for a retry
  const std::string& action_name() const { return name_; }

 private:
  struct Entry {
    FinishedFile file;
    uint32_t attempts = 0;                 // started so far
    HandoffClock::TimePoint not_before{};  // a retry's back-off
    std::unique_ptr<HandoffJob> job;       // while running
  };
  void StartDue();
  // Logs the failure and schedules the retry; true when the file failed for good.
  bool Failed(Entry& entry, const std::string& why);
  std::chrono::milliseconds BackOff(uint32_t failures) const;

  const std::unique_ptr<HandoffAction> action_;
  const HandoffSettings settings_;
  const std::function<void(const std::string&)> log_;
  HandoffClock& clock_;
  const std::string name_;

  std::deque<Entry> entries_;  // not settled yet, in the order the files were finished
  size_t running_ = 0;
  size_t succeeded_ = 0;
  std::vector<std::string> failed_;
  std::vector<std::string> gave_up_;  // not settled when Finish stopped waiting
  bool finished_ = false;
  std::atomic<bool> stop_waiting_{false};
};

}  // namespace capd::client

// capctl's hand-off of finished files (upload/file_handoff.h) on a clock moved by hand and
// with jobs the test ends: the bound on jobs at once, the retries and their back-off, the files
// the ring may delete, the wait at exit and what it says. One real short command at the end.

#include "upload/file_handoff.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "upload/handoff_process.h"
#include "client/output/rotation.h"

namespace capd::client {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class FakeClock final : public HandoffClock {
 public:
  TimePoint Now() override { return now_; }
  void SleepFor(milliseconds d) override {
    now_ += d;
    if (on_sleep) on_sleep();
  }
  void Advance(milliseconds d) { now_ += d; }
  std::function<void()> on_sleep;  // what happens while Finish waits

 private:
  TimePoint now_{};
};

// A job whose outcome the test sets.
struct JobState {
  std::optional<Status> outcome;
  bool abandoned = false;
};

class FakeJob final : public HandoffJob {
 public:
  explicit FakeJob(std::shared_ptr<JobState> state) : state_(std::move(state)) {}
  std::optional<Status> Poll() override { return state_->outcome; }
  std::string Abandon() override {
    state_->abandoned = true;
    return "left running";
  }

 private:
  std::shared_ptr<JobState> state_;
};

// Records every start, by file; each start gets a fresh job the test can end.
class FakeAction final : public HandoffAction {
 public:
  std::string Name() const override { return "test action"; }
  StatusOr<std::unique_ptr<HandoffJob>> Start(const FinishedFile& file) override {
    starts.push_back(file.path);
    if (refuse_to_start) return Internal("could not start");
    auto state = std::make_shared<JobState>();
    jobs[file.path].push_back(state);
    return std::unique_ptr<HandoffJob>(std::make_unique<FakeJob>(state));
  }
  size_t Running() const {
    size_t n = 0;
    for (const auto& [path, list] : jobs) {
      for (const auto& job : list) n += !job->outcome && !job->abandoned;
    }
    return n;
  }
  void End(const std::string& path, Status outcome) { jobs[path].back()->outcome = outcome; }

  std::vector<std::string> starts;
  std::map<std::string, std::vector<std::shared_ptr<JobState>>> jobs;
  bool refuse_to_start = false;
};

FinishedFile File(const std::string& path) {
  FinishedFile file;
  file.path = path;
  return file;
}

struct Fixture {
  explicit Fixture(HandoffSettings settings = {}) {
    auto owned = std::make_unique<FakeAction>();
    action = owned.get();
    handoff = std::make_unique<FileHandoff>(
        std::move(owned), settings, [this](const std::string& m) { log.push_back(m); }, clock);
  }
  FakeClock clock;
  FakeAction* action = nullptr;
  std::vector<std::string> log;
  std::unique_ptr<FileHandoff> handoff;
};

TEST(FileHandoffTest, AtMostMaxRunningAtOnceOldestFirst) {
  HandoffSettings settings;
  settings.max_running = 2;
  Fixture f(settings);
  for (const char* path : {"a", "b", "c", "d"}) f.handoff->Add(File(path));
  EXPECT_EQ(f.action->starts, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.action->Running(), 2u);
  f.action->End("b", Status::Ok());
  f.handoff->Poll();
  EXPECT_EQ(f.action->starts, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(f.action->Running(), 2u);
  f.action->End("a", Status::Ok());
  f.action->End("c", Status::Ok());
  f.handoff->Poll();
  EXPECT_EQ(f.action->starts, (std::vector<std::string>{"a", "b", "c", "d"}));
  f.action->End("d", Status::Ok());
  f.handoff->Poll();
  EXPECT_EQ(f.handoff->succeeded(), 4u);
  EXPECT_EQ(f.handoff->pending(), 0u);
  EXPECT_TRUE(f.log.empty());
}

TEST(FileHandoffTest, AFileMayBeDeletedOnlyOnceItsActionSucceeded) {
  Fixture f;
  f.handoff->Add(File("a"));
  EXPECT_FALSE(f.handoff->MayDelete("a"));  // running
  EXPECT_TRUE(f.handoff->MayDelete("never given"));
  f.action->End("a", Internal("exit status 1"));
  f.handoff->Poll();
  EXPECT_FALSE(f.handoff->MayDelete("a"));  // waiting for its retry
  f.clock.Advance(seconds(1));
  f.handoff->Poll();
  EXPECT_FALSE(f.handoff->MayDelete("a"));  // the retry runs
  f.action->End("a", Status::Ok());
  f.handoff->Poll();
  EXPECT_TRUE(f.handoff->MayDelete("a"));
}

// The schedule: 1 s, 2 s, 4 s, 8 s between the default 5 attempts; each failure one line naming
// the file and what comes next; after the last the file is kept (never deletable) and named.
TEST(FileHandoffTest, FailuresAreRetriedWithDoublingBackOffThenGivenUp) {
  Fixture f;
  f.handoff->Add(File("/ring/x.pcapng"));
  const std::vector<int> back_off_ms = {1000, 2000, 4000, 8000};
  for (size_t attempt = 0; attempt < 5; ++attempt) {
    ASSERT_EQ(f.action->starts.size(), attempt + 1);
    f.action->End("/ring/x.pcapng", Internal("exit status 3"));
    f.handoff->Poll();
    if (attempt == 4) break;
    const milliseconds wait(back_off_ms[attempt]);
    f.clock.Advance(wait - milliseconds(1));
    f.handoff->Poll();
    EXPECT_EQ(f.action->starts.size(), attempt + 1) << "retried before its back-off";
    f.clock.Advance(milliseconds(1));
    f.handoff->Poll();
  }
  ASSERT_EQ(f.log.size(), 5u);
  EXPECT_EQ(f.log[0],
            "test action for /ring/x.pcapng failed: exit status 3 (attempt 1 of 5); retrying in "
            "1 s");
  EXPECT_EQ(f.log[3],
            "test action for /ring/x.pcapng failed: exit status 3 (attempt 4 of 5); retrying in "
            "8 s");
  EXPECT_EQ(f.log[4],
            "test action for /ring/x.pcapng failed: exit status 3 (attempt 5 of 5); giving up: "
            "/ring/x.pcapng stays where it is");
  EXPECT_EQ(f.handoff->failed(), (std::vector<std::string>{"/ring/x.pcapng"}));
  EXPECT_FALSE(f.handoff->MayDelete("/ring/x.pcapng"));
  EXPECT_FALSE(f.handoff->Finish());
  EXPECT_EQ(f.log.back(),
            "0 files handed off to the test action; 1 file failed after 5 attempts: "
            "/ring/x.pcapng");
}

TEST(FileHandoffTest, BackOffIsCappedAtMaxRetry) {
  HandoffSettings settings;
  settings.max_attempts = 10;
  settings.max_retry = milliseconds(5000);
  Fixture f(settings);
  f.handoff->Add(File("a"));
  for (int i = 0; i < 5; ++i) {
    f.action->End("a", Internal("exit status 1"));
    f.handoff->Poll();
    f.clock.Advance(seconds(60));
    f.handoff->Poll();
  }
  EXPECT_NE(f.log[2].find("retrying in 4 s"), std::string::npos) << f.log[2];
  EXPECT_NE(f.log[3].find("retrying in 5 s"), std::string::npos) << f.log[3];
  EXPECT_NE(f.log[4].find("retrying in 5 s"), std::string::npos) << f.log[4];
}

TEST(FileHandoffTest, AnActionThatCannotStartCountsAsAFailedAttempt) {
  HandoffSettings settings;
  settings.max_attempts = 2;
  Fixture f(settings);
  f.action->refuse_to_start = true;
  f.handoff->Add(File("a"));
  EXPECT_EQ(f.log.size(), 1u);
  f.clock.Advance(seconds(1));
  f.handoff->Poll();
  ASSERT_EQ(f.log.size(), 2u);
  EXPECT_NE(f.log[1].find("could not start (attempt 2 of 2); giving up"), std::string::npos)
      << f.log[1];
  EXPECT_EQ(f.handoff->failed().size(), 1u);
}

// Finish waits for running and queued jobs (and for retries), says what it waits for, and
// reports the outcome.
TEST(FileHandoffTest, FinishWaitsForRunningQueuedAndRetries) {
  HandoffSettings settings;
  settings.max_running = 1;
  Fixture f(settings);
  f.handoff->Add(File("a"));
  f.handoff->Add(File("b"));
  // While Finish waits, each job ends a while after it started; b fails once.
  int sleeps = 0;
  bool b_failed = false;
  f.clock.on_sleep = [&] {
    if (++sleeps % 10 != 0) return;
    for (auto& [path, jobs] : f.action->jobs) {
      auto& job = jobs.back();
      if (job->outcome) continue;
      if (path == "b" && !b_failed) {
        b_failed = true;
        job->outcome = Internal("exit status 1");
      } else {
        job->outcome = Status::Ok();
      }
    }
  };
  EXPECT_TRUE(f.handoff->Finish());
  EXPECT_EQ(f.action->starts, (std::vector<std::string>{"a", "b", "b"}));
  ASSERT_GE(f.log.size(), 3u);
  EXPECT_EQ(f.log.front(),
            "waiting up to 300 s (--handoff-wait) for the test action: 1 running, 1 queued or "
            "waiting to retry (a second Ctrl-C stops waiting)");
  EXPECT_EQ(f.log.back(), "2 files handed off to the test action");
}

// The bound: what is still running is left running and named, what never started is named, and
// Finish says the hand-off did not complete.
TEST(FileHandoffTest, FinishGivesUpAtItsBound) {
  HandoffSettings settings;
  settings.max_running = 1;
  settings.exit_wait = seconds(10);
  Fixture f(settings);
  f.handoff->Add(File("a"));
  f.handoff->Add(File("b"));
  const auto start = f.clock.Now();
  EXPECT_FALSE(f.handoff->Finish());
  EXPECT_EQ(f.clock.Now() - start, seconds(10));
  EXPECT_TRUE(f.action->jobs["a"].back()->abandoned);
  EXPECT_EQ(f.action->starts, (std::vector<std::string>{"a"}));
  ASSERT_GE(f.log.size(), 2u);
  EXPECT_EQ(f.log[f.log.size() - 2],
            "stopped waiting for the test action after 10 s; still running: a (left running); "
            "not handed off: b");
  EXPECT_EQ(f.log.back(),
            "0 files handed off to the test action; 2 files not settled when capctl stopped "
            "waiting: a, b");
  EXPECT_FALSE(f.handoff->MayDelete("a"));
}

TEST(FileHandoffTest, StopWaitingEndsTheWait) {
  Fixture f;
  f.handoff->Add(File("a"));
  int sleeps = 0;
  f.clock.on_sleep = [&] {
    if (++sleeps == 3) f.handoff->StopWaiting();
  };
  const auto start = f.clock.Now();
  EXPECT_FALSE(f.handoff->Finish());
  EXPECT_LT(f.clock.Now() - start, seconds(1));
  EXPECT_NE(f.log[f.log.size() - 2].find("stopped waiting for the test action (Ctrl-C)"),
            std::string::npos)
      << f.log[f.log.size() - 2];
}

TEST(FileHandoffTest, NothingToWaitForSaysOnlyTheSummary) {
  Fixture f;
  f.handoff->Add(File("a"));
  f.action->End("a", Status::Ok());
  EXPECT_TRUE(f.handoff->Finish());
  EXPECT_EQ(f.log, (std::vector<std::string>{"1 file handed off to the test action"}));
}

// A real command: its exit status and signal reach the hand-off.
TEST(FileHandoffTest, ChildProcessReportsExitAndSignal) {
  auto run = [](const std::string& script) -> Status {
    auto child = ChildProcess::Spawn({"/bin/sh", "-c", script});
    if (!child.ok()) return child.status();
    for (int i = 0; i < 500; ++i) {
      if (auto outcome = (*child)->Poll()) return *outcome;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return Internal("did not end within 5 s");
  };
  EXPECT_TRUE(run("exit 0").ok());
  EXPECT_EQ(run("exit 4").message(), "exit status 4");
  EXPECT_EQ(run("kill -9 $$").message(), "killed by signal 9");
  auto missing = ChildProcess::Spawn({"/nonexistent/command"});
  EXPECT_FALSE(missing.ok());
  // keep_stderr: the last line the command wrote on stderr ends the failure's text.
  auto kept = ChildProcess::Spawn(
      {"/bin/sh", "-c", "echo first >&2; printf 'the\\treason\\n\\n' >&2; exit 2"},
      {.quiet_stdout = true, .keep_stderr = true});
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  std::optional<Status> outcome;
  for (int i = 0; i < 500 && !(outcome = (*kept)->Poll()); ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->message(), "exit status 2: the reason");
}

}  // namespace
}  // namespace capd::client

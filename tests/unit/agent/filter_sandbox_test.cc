#include "agent/capture/filter_sandbox.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <string>
#include <thread>

namespace capd::agent {
namespace {

using Clock = std::chrono::steady_clock;

// `port 1 or port 2 or ... or port n`: libpcap's optimizer is super-linear in it (1,344 terms
// are 16,361 bytes, under capd's 16 KiB limit, and took minutes and gigabytes).
std::string ManyPorts(int n) {
  std::string text;
  for (int port = 1; port <= n; ++port) {
    text += (port > 1 ? " or port " : "port ") + std::to_string(port);
  }
  return text;
}

ComposeRequest Request(std::string user_filter) {
  ComposeRequest request;
  request.user_filter = std::move(user_filter);
  request.own.tcp_ports = {50051};
  request.link_type = DLT_EN10MB;
  request.snaplen = 262144;
  return request;
}

std::string Instructions(const filters::CompiledFilter& filter) {
  const bpf_program* p = filter.program();
  return std::string(reinterpret_cast<const char*>(p->bf_insns), p->bf_len * sizeof(bpf_insn));
}

// The helper's children now (/proc/PID/task/PID/children).
std::string ChildrenOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::string children;
  std::getline(in, children);
  return children;
}

bool NoChildrenWithin(pid_t pid, std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  while (!ChildrenOf(pid).empty()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

class FilterSandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = FilterSandbox::Start("");
    ASSERT_TRUE(started.ok()) << started.status().message();
    sandbox_ = std::move(started).value();
  }
  std::unique_ptr<FilterSandbox> sandbox_;
};

TEST(ComposeWireTest, RequestAndAnswerRoundTrip) {
  ComposeRequest request = Request("udp port 53");
  request.own.carriers = "host 10.0.0.1";
  request.scope = "udp port 4789";
  auto decoded = DecodeComposeRequest(EncodeComposeRequest(request));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->user_filter, request.user_filter);
  EXPECT_EQ(decoded->own.tcp_ports, request.own.tcp_ports);
  EXPECT_EQ(decoded->own.carriers, request.own.carriers);
  EXPECT_EQ(decoded->scope, request.scope);
  EXPECT_EQ(decoded->link_type, DLT_EN10MB);

  auto composed = filters::ComposeCaptureFilter("udp port 53", request.own, DLT_EN10MB, 262144);
  ASSERT_TRUE(composed.ok());
  const std::string bytes = EncodeComposeAnswer(composed);
  auto answer = DecodeComposeAnswer(bytes);
  ASSERT_TRUE(answer.has_value() && answer->ok());
  EXPECT_EQ((*answer)->expression, composed->expression);
  EXPECT_EQ(Instructions((*answer)->program), Instructions(composed->program));
  // A cut answer (a child killed while writing) is no answer.
  EXPECT_FALSE(DecodeComposeAnswer(std::string_view(bytes).substr(0, bytes.size() - 1)));
  EXPECT_FALSE(DecodeComposeRequest("garbage"));
}

TEST_F(FilterSandboxTest, ProgramIsTheInProcessCompilersByteForByte) {
  const ComposeRequest request = Request("tcp port 443 or udp");
  auto sandboxed = sandbox_->Compose(request);
  ASSERT_TRUE(sandboxed.ok()) << sandboxed.status().message();
  auto local = filters::ComposeCaptureFilter(request.user_filter, request.own, DLT_EN10MB, 262144);
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(sandboxed->expression, local->expression);
  EXPECT_TRUE(sandboxed->excludes_own_traffic);
  EXPECT_EQ(sandboxed->link_type, DLT_EN10MB);
  EXPECT_GT(sandboxed->program.instruction_count(), 0u);
  EXPECT_EQ(Instructions(sandboxed->program), Instructions(local->program));
}

TEST_F(FilterSandboxTest, FilterThatDoesNotCompileKeepsLibpcapsMessage) {
  auto sandboxed = sandbox_->Compose(Request("tcp port"));
  ASSERT_FALSE(sandboxed.ok());
  EXPECT_EQ(sandboxed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(sandboxed.status().message().find("'tcp port'"), std::string::npos);
  EXPECT_NE(sandboxed.status().message().find("syntax error"), std::string::npos)
      << sandboxed.status().message();
}

TEST_F(FilterSandboxTest, CostlyFilterIsRefusedWithinTheBudgetNamingIt) {
  const auto start = Clock::now();
  auto sandboxed = sandbox_->Compose(Request(ManyPorts(1344)));
  const auto took = Clock::now() - start;
  ASSERT_FALSE(sandboxed.ok());
  EXPECT_EQ(sandboxed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(sandboxed.status().message().find("too costly to compile"), std::string::npos)
      << sandboxed.status().message();
  EXPECT_NE(sandboxed.status().message().find(sandbox_->budget().Describe()), std::string::npos);
  EXPECT_LT(took, sandbox_->budget().wall + std::chrono::milliseconds(500));
  EXPECT_TRUE(NoChildrenWithin(sandbox_->pid(), std::chrono::seconds(1)))
      << "left behind: " << ChildrenOf(sandbox_->pid());
}

TEST_F(FilterSandboxTest, OtherCompilesDoNotWaitForACostlyOne) {
  auto costly = std::async(std::launch::async,
                           [this] { return sandbox_->Compose(Request(ManyPorts(1344))); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let it start: not a sync point
  const auto start = Clock::now();
  auto quick = sandbox_->Compose(Request("udp port 53"));
  const auto took = Clock::now() - start;
  EXPECT_TRUE(quick.ok()) << quick.status().message();
  EXPECT_LT(took, std::chrono::milliseconds(500));
  EXPECT_FALSE(costly.get().ok());
}

TEST_F(FilterSandboxTest, CancellingKillsTheChildAtOnce) {
  const int cancel = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(cancel, 0);
  std::thread canceller([cancel] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const uint64_t one = 1;
    [[maybe_unused]] auto n = write(cancel, &one, sizeof one);
  });
  const auto start = Clock::now();
  auto sandboxed = sandbox_->Compose(Request(ManyPorts(1344)), cancel);
  const auto took = Clock::now() - start;
  canceller.join();
  close(cancel);
  ASSERT_FALSE(sandboxed.ok());
  EXPECT_EQ(sandboxed.status().code(), StatusCode::kUnavailable) << sandboxed.status().message();
  EXPECT_LT(took, std::chrono::milliseconds(600));
  EXPECT_TRUE(NoChildrenWithin(sandbox_->pid(), std::chrono::milliseconds(500)))
      << "left behind: " << ChildrenOf(sandbox_->pid());
}

TEST(FilterSandboxBudgetTest, MemoryBudgetRefusesWhatWouldNeedMore) {
  CompileBudget budget;
  budget.cpu_seconds = 30;
  budget.memory_bytes = 2ULL << 20;  // a 400-term filter needs far more
  budget.wall = std::chrono::seconds(30);
  auto started = FilterSandbox::Start("", budget);
  ASSERT_TRUE(started.ok()) << started.status().message();
  auto sandboxed = (*started)->Compose(Request(ManyPorts(400)));
  ASSERT_FALSE(sandboxed.ok());
  EXPECT_NE(sandboxed.status().message().find("too costly to compile"), std::string::npos)
      << sandboxed.status().message();
  EXPECT_NE(sandboxed.status().message().find("2 MiB"), std::string::npos);
  // The same helper still compiles what fits.
  EXPECT_TRUE((*started)->Compose(Request("udp")).ok());
}

TEST(FilterSandboxLifetimeTest, HelperEndsWithTheSandbox) {
  auto started = FilterSandbox::Start("");
  ASSERT_TRUE(started.ok()) << started.status().message();
  const pid_t helper = (*started)->pid();
  EXPECT_TRUE((*started)->Compose(Request("tcp")).ok());
  started->reset();
  EXPECT_NE(kill(helper, 0), 0);  // gone and reaped by the destructor
}

}  // namespace
}  // namespace capd::agent

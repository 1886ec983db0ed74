// capctl stream --since against in-process agents over real gRPC on loopback (no root): an agent
// that predates StreamRequest.since_ns (it ignores the field and streams live packets) is
// refused with exit 2 rather than taken for a rewind; an agent that rewinds sends a Rewind
// first, whose warnings capctl prints.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "proto/capture.grpc.pb.h"
#include "tests/support/capture_file.h"
#include "tests/support/subprocess.h"

namespace capd::test {
namespace {

class Agent final : public v1::Capture::Service {
 public:
  explicit Agent(bool rewinds) : rewinds_(rewinds) {}
  grpc::Status Stream(grpc::ServerContext* /*context*/, const v1::StreamRequest* request,
                      grpc::ServerWriter<v1::StreamResponse>* writer) override {
    since_ = request->since_ns();
    v1::StreamResponse message;
    if (rewinds_) {
      message.mutable_rewind()->set_recording("ring");
      message.mutable_rewind()->add_warnings(
          "the recording on eth0 starts at 2026-12-07T10:00:00.000Z; streaming from there");
      writer->Write(message);
    }
    v1::InterfaceDescription* interface = message.mutable_interface();
    interface->set_name("eth0");
    interface->set_agent_name("test-agent");
    interface->set_link_type(1);
    interface->set_snaplen(262144);
    writer->Write(message);
    v1::PacketBatch* batch = message.mutable_packets();
    batch->set_data(std::string(60, '\x01'));
    batch->add_interface_index(0);
    batch->add_timestamp_ns(1'796'637'600'000'000'000ULL);
    batch->add_original_length(60);
    batch->add_captured_length(60);
    writer->Write(message);
    message.mutable_end()->set_reason(v1::StreamEnd::DURATION_REACHED);
    writer->Write(message);
    return grpc::Status::OK;
  }
  uint64_t since() const { return since_; }

 private:
  const bool rewinds_;
  std::atomic<uint64_t> since_{0};
};

struct StreamRun {
  int code = -1;
  std::string err;
  uint64_t since = 0;
  StatusOr<std::vector<CapturedPacket>> packets = std::vector<CapturedPacket>{};
};

StreamRun StreamSince(bool rewinds) {
  Agent agent(rewinds);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&agent);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  StreamRun run;
  if (server == nullptr || port == 0) return run;
  TestDir dir;
  SubprocessOptions options;
  options.argv = {CAPCTL_PATH, "stream", "--agent", "127.0.0.1:" + std::to_string(port),
                  "--since",   "5m",     "-w",      dir.File("out.pcapng").string()};
  options.stderr_path = dir.File("capctl.err");
  auto capctl = Subprocess::Start(options);
  if (!capctl.ok()) return run;
  const auto ended = (*capctl)->WaitFor(std::chrono::seconds(30));  // a hang guard
  run.err = (*capctl)->Stderr();
  if (ended && ended->exited) run.code = ended->code;
  run.since = agent.since();
  run.packets = ReadCapture(dir.File("out.pcapng"));
  server->Shutdown();
  return run;
}

TEST(RewindAgentTest, AnAgentThatIgnoresSinceIsRefused) {
  StreamRun run = StreamSince(/*rewinds=*/false);
  EXPECT_EQ(run.code, 2) << run.err;
  EXPECT_NE(run.since, 0u) << "capctl sent since_ns";
  EXPECT_NE(run.err.find("this agent does not rewind (--since needs a newer capd)"),
            std::string::npos)
      << run.err;
  // Nothing live was passed off as the rewind.
  if (run.packets.ok()) {
    EXPECT_TRUE(run.packets->empty());
  }
}

TEST(RewindAgentTest, TheAgentsWarningsAreShown) {
  StreamRun run = StreamSince(/*rewinds=*/true);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.err.find("warning: agent 127.0.0.1:"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("the recording on eth0 starts at 2026-12-07T10:00:00.000Z; streaming "
                         "from there"),
            std::string::npos)
      << run.err;
  ASSERT_TRUE(run.packets.ok()) << run.packets.status().message();
  EXPECT_EQ(run.packets->size(), 1u);
}

}  // namespace
}  // namespace capd::test

// capctl against an agent whose compressed batches stop decoding (a bug in a future agent, or
// anything that alters the stream): the real capctl binary, over real gRPC on loopback, against
// an in-process agent that sends one good compressed batch and then a corrupted one. capctl must
// end with a clear error naming the agent, keep what it received, and never crash.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "compress/batch_codec.h"
#include "proto/capture.grpc.pb.h"
#include "tests/support/capture_file.h"
#include "tests/support/subprocess.h"
#include "tests/unit/compress/real_batches.h"

namespace capd::test {
namespace {

class CorruptingAgent final : public v1::Capture::Service {
 public:
  grpc::Status Stream(grpc::ServerContext* /*context*/, const v1::StreamRequest* request,
                      grpc::ServerWriter<v1::StreamResponse>* writer) override {
    asked_ = request->compression();
    v1::StreamResponse message;
    v1::InterfaceDescription* interface = message.mutable_interface();
    interface->set_name("eth0");
    interface->set_agent_name("corrupting-agent");
    interface->set_link_type(1);
    interface->set_snaplen(262144);
    writer->Write(message);
    auto compressor = compress::BatchCompressor::Create().value();
    const auto batches = RealBatches(4);
    for (size_t i = 0; i < 2 && i < batches.size(); ++i) {
      const std::string plain = batches[i].SerializeAsString();
      v1::PacketBatch* batch = message.mutable_packets();
      batch->Clear();
      if (!compressor->Compress(plain, *batch->mutable_compressed()).ok()) {
        return grpc::Status(grpc::StatusCode::INTERNAL, "compress");
      }
      if (i == 1) {  // the second batch arrives altered
        std::string& bytes = *batch->mutable_compressed();
        for (size_t k = 3; k < bytes.size(); k += 4) bytes[k] ^= 0x6b;
      }
      batch->set_compression(v1::COMPRESSION_ZSTD);
      batch->set_uncompressed_length(static_cast<uint32_t>(plain.size()));
      writer->Write(message);
    }
    message.mutable_end()->set_reason(v1::StreamEnd::DURATION_REACHED);
    writer->Write(message);
    return grpc::Status::OK;
  }
  v1::Compression asked() const { return asked_; }

 private:
  std::atomic<v1::Compression> asked_{v1::COMPRESSION_NONE};
};

TEST(UndecodableAgentTest, CapctlEndsWithAnErrorNamingTheAgent) {
  CorruptingAgent agent;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&agent);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);

  TestDir dir;
  const std::string address = "127.0.0.1:" + std::to_string(port);
  SubprocessOptions options;
  options.argv = {CAPCTL_PATH,
                  "stream",
                  "--agent",
                  address,
                  "--compress",
                  "-w",
                  dir.File("out.pcapng").string()};
  options.stderr_path = dir.File("capctl.err");
  auto capctl = Subprocess::Start(options);
  ASSERT_TRUE(capctl.ok()) << capctl.status().message();
  const auto ended = (*capctl)->WaitFor(std::chrono::seconds(30));  // a hang guard
  ASSERT_TRUE(ended.has_value()) << (*capctl)->Stderr();
  EXPECT_TRUE(ended->Exited(1)) << *ended << "\n" << (*capctl)->Stderr();
  EXPECT_EQ(agent.asked(), v1::COMPRESSION_ZSTD);

  const std::string err = (*capctl)->Stderr();
  EXPECT_NE(err.find("agent " + address + " sent a compressed batch (#2) that does not decode"),
            std::string::npos)
      << err;
  // What arrived before the altered batch is in the file.
  auto packets = ReadCapture(dir.File("out.pcapng"));
  ASSERT_TRUE(packets.ok()) << packets.status().message();
  EXPECT_EQ(packets->size(), static_cast<size_t>(RealBatches(4).front().timestamp_ns_size()));
  server->Shutdown();
}

}  // namespace
}  // namespace capd::test

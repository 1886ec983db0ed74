// One rule for capctl's exit codes, whichever command: 2 for bad arguments or a request the agent
// refused as such, 1 for anything else. Agents' gRPC statuses map to it in one place.
#include <grpcpp/support/status.h>
#include <gtest/gtest.h>

#include "client/stream/agent_channel.h"
#include "common/status.h"

namespace capd::client {
namespace {

TEST(ExitCodeTest, RequestsTheAgentRefusedAsSuchExitTwo) {
  for (grpc::StatusCode code : {grpc::StatusCode::INVALID_ARGUMENT, grpc::StatusCode::NOT_FOUND,
                                grpc::StatusCode::FAILED_PRECONDITION,
                                grpc::StatusCode::ALREADY_EXISTS, grpc::StatusCode::OUT_OF_RANGE}) {
    EXPECT_EQ(ExitCodeFor(FromGrpcStatus(grpc::Status(code, "no")).code()), 2) << code;
  }
}

TEST(ExitCodeTest, AccessLoadAndTransportFailuresExitOne) {
  for (grpc::StatusCode code :
       {grpc::StatusCode::UNAUTHENTICATED, grpc::StatusCode::PERMISSION_DENIED,
        grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::UNAVAILABLE,
        grpc::StatusCode::DEADLINE_EXCEEDED, grpc::StatusCode::INTERNAL,
        grpc::StatusCode::UNIMPLEMENTED, grpc::StatusCode::UNKNOWN}) {
    EXPECT_EQ(ExitCodeFor(FromGrpcStatus(grpc::Status(code, "no")).code()), 1) << code;
  }
  EXPECT_EQ(ExitCodeFor(StatusCode::kOk), 0);
}

TEST(ExitCodeTest, TheMessageSaysWhatKindOfRefusalItIs) {
  const Status denied = FromGrpcStatus({grpc::StatusCode::PERMISSION_DENIED, "uid 1000"});
  EXPECT_EQ(denied.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(denied.message(), "permission denied: uid 1000");
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

}  // namespace
}  // namespace capd::client

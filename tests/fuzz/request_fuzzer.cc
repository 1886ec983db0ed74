// Request validation, for the request of each of the seven RPCs: what a client may send capd
// before any capture opens or any file is named. Input: byte 0 chooses the message (mod 7:
// ListInterfacesRequest, StreamRequest, StartRecordingRequest, StopRecordingRequest,
// ListRecordingsRequest, FetchRecordingRequest, ChangeStreamRequest applied to a running
// mirror-target stream), the rest is its wire encoding, parsed as gRPC parses it; the agent's
// validation runs on whatever parses. Invariants:
//   - a refusal is INVALID_ARGUMENT with a message of printable ASCII (it reaches logs and
//     terminals: no client bytes in it unescaped);
//   - an accepted stream request (or a stream as a change leaves it) has UTF-8 text, filters
//     of at most 16 KiB, an interface name a kernel could have, snaplen, duration, count and
//     VNIs within their bounds;
//   - an accepted recording name stays inside --record-dir: UTF-8, 1..64 bytes, no '/' or NUL,
//     not "." or "..", starting with a letter or a digit, DIR/NAME normalising to a child of DIR;
//   - an accepted StartRecordingRequest is within its rotation bounds, and its request.txtpb
//     (what a restart resumes from) reads back as the same request, which is accepted again.
// Whether a filter compiles is filter_fuzzer.cc's part (libpcap), left out here. A crash input
// becomes a case in tests/unit/agent/request_validation_test.cc.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "agent/recording/recording_request.h"
#include "agent/stream/stream_request.h"
#include "common/utf8.h"
#include "proto/capture.pb.h"

namespace {

using namespace capd;
using namespace capd::agent;

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "request_fuzzer: %s\n", what);
  std::abort();
}

void CheckRefusal(const Status& status) {
  Check(status.code() == StatusCode::kInvalidArgument, "a refusal is not INVALID_ARGUMENT");
  Check(!status.message().empty(), "a refusal without a message");
  for (const char c : status.message()) {
    const auto byte = static_cast<unsigned char>(c);
    Check(byte >= 0x20 && byte < 0x7f, "a refusal message holds a byte that is not printable");
  }
}

bool IsInterfaceCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == ':' || c == '@';
}

void CheckAcceptedStream(const v1::StreamRequest& r) {
  Check(IsValidUtf8(r.interface()) && IsValidUtf8(r.filter()) &&
            IsValidUtf8(r.decap().inner_filter()),
        "accepted text that is not UTF-8");
  Check(r.filter().size() <= kMaxFilterBytes, "accepted a filter over 16 KiB");
  Check(r.decap().inner_filter().size() <= kMaxFilterBytes, "accepted an inner filter over 16 KiB");
  Check(r.interface().size() < kInterfaceNameBytes, "accepted an interface name over IFNAMSIZ");
  for (const char c : r.interface()) Check(IsInterfaceCharacter(c), "accepted an odd interface");
  Check(!r.has_snaplen() || (r.snaplen() >= 1 && r.snaplen() <= kDefaultSnaplen),
        "accepted a snaplen outside 1..262144");
  Check(r.duration_ms() <= kMaxDurationMs && r.max_packets() <= kMaxPackets,
        "accepted a duration or count beyond its limit");
  Check(static_cast<size_t>(r.decap().vnis_size()) <= kMaxVnis, "accepted too many VNIs");
  for (const uint32_t vni : r.decap().vnis()) Check(vni <= 0xFFFFFF, "accepted a VNI over 24 bits");
}

void CheckRecordingName(const std::string& name) {
  const Status status = ValidateRecordingName(name);
  if (!status.ok()) {
    CheckRefusal(status);
    return;
  }
  Check(IsValidUtf8(name), "accepted a name that is not UTF-8");
  Check(!name.empty() && name.size() <= kMaxRecordingNameBytes, "accepted a name of odd length");
  Check(name.find('/') == std::string::npos && name.find('\0') == std::string::npos,
        "accepted a name with '/' or NUL");
  Check(name != "." && name != "..", "accepted '.' or '..'");
  const char first = name.front();
  Check((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') ||
            (first >= '0' && first <= '9'),
        "accepted a name that starts with neither a letter nor a digit");
  const std::filesystem::path dir("/records");
  Check((dir / name).lexically_normal().parent_path() == dir, "accepted a name outside DIR");
}

void CheckStartRecording(const v1::StartRecordingRequest& r) {
  const Status status = ValidateStartRecordingRequest(r);
  CheckRecordingName(r.name());
  if (!status.ok()) {
    CheckRefusal(status);
    return;
  }
  Check(ValidateRecordingName(r.name()).ok(), "accepted a request whose name is refused");
  Check(ValidateStreamRequest(StreamRequestFor(r)).ok(), "accepted a request whose stream is not");
  CheckAcceptedStream(StreamRequestFor(r));
  const auto& rotation = r.rotation();
  Check(rotation.seconds() <= kMaxRotationSeconds, "accepted a rotation over a day");
  Check(rotation.max_bytes() == 0 || (rotation.max_bytes() >= kMinRotationBytes &&
                                      rotation.max_bytes() <= kMaxRotationBytes),
        "accepted a rotation size out of bounds");
  Check(rotation.max_files() <= kMaxRotationFiles, "accepted a rotation file count over 100000");

  // What a restart resumes from.
  v1::StartRecordingRequest resumed;
  Check(ParseRecordingRequest(RecordingRequestText(r), &resumed),
        "an accepted request's request.txtpb does not parse");
  v1::StartRecordingRequest known = r;
  known.DiscardUnknownFields();
  Check(resumed.SerializeAsString() == known.SerializeAsString(),
        "an accepted request's request.txtpb reads back as another request");
  Check(ValidateStartRecordingRequest(resumed).ok(), "a resumed request is refused");
}

template <typename Message>
bool Parse(const uint8_t* data, size_t size, Message* message) {
  return message->ParseFromArray(data, static_cast<int>(size));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0] % 7;
  ++data;
  --size;
  switch (selector) {
    case 0: {  // ListInterfaces and ListRecordings carry nothing to validate: they must parse.
      v1::ListInterfacesRequest request;
      Parse(data, size, &request);
      break;
    }
    case 1: {
      v1::StreamRequest request;
      if (!Parse(data, size, &request)) break;
      const Status status = ValidateStreamRequest(request);
      if (status.ok()) {
        CheckAcceptedStream(request);
      } else {
        CheckRefusal(status);
      }
      break;
    }
    case 2: {
      v1::StartRecordingRequest request;
      if (Parse(data, size, &request)) CheckStartRecording(request);
      break;
    }
    case 3: {
      v1::StopRecordingRequest request;
      if (Parse(data, size, &request)) CheckRecordingName(request.name());
      break;
    }
    case 4: {
      v1::ListRecordingsRequest request;
      Parse(data, size, &request);
      break;
    }
    case 5: {
      v1::FetchRecordingRequest request;
      if (Parse(data, size, &request)) CheckRecordingName(request.name());
      break;
    }
    case 6: {
      v1::ChangeStreamRequest change;
      if (!Parse(data, size, &change)) break;
      v1::StreamRequest running;
      running.set_interface("eth0");
      running.mutable_decap()->set_mode(v1::Decapsulation::AUTO);
      const auto changed = ApplyChange(running, change);
      if (changed.ok()) {
        CheckAcceptedStream(changed.value());
      } else {
        CheckRefusal(changed.status());
      }
      break;
    }
  }
  return 0;
}

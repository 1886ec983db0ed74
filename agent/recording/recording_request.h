#pragma once
// What the recording RPCs accept, checked before a name is used as a folder or a request starts
// a capture. Pure functions of the request (no disk, no libpcap, no root): what the request
// fuzzer (tests/fuzz/request_fuzzer.cc) runs.

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::agent {

inline constexpr size_t kMaxRecordingNameBytes = 64;
// Rotation bounds (RecordingRotation). The max_bytes=1 made a file per packet: 10 kB
// holds several full-size frames, and is the smallest ring users and tests rotate quickly with
// (capctl's "10k"); a larger floor would refuse them for little gain, since what bounds the
// folder is the file count: more than 100,000 files would make every list and fetch scan a
// folder that size (and the product, up to 1 GB of 10 kB files, stays the admin's choice).
inline constexpr uint64_t kMinRotationBytes = 10'000;             // capctl's "10k" (powers of 1000)
inline constexpr uint64_t kMaxRotationBytes = 1'000'000'000'000;  // 1 TB
inline constexpr uint32_t kMaxRotationSeconds = 86'400;
inline constexpr uint32_t kMaxRotationFiles = 100'000;

// UTF-8, then [A-Za-z0-9._-]{1,64} starting with a letter or a digit (so never "." or ".."):
// the name is a folder in --record-dir and must stay inside it. kInvalidArgument naming the rule
// otherwise. Used for the names of StartRecording, StopRecording, DeleteRecording and
// FetchRecording.
Status ValidateRecordingName(const std::string& name);

inline constexpr size_t kMaxUploadBytes = 512;

// StartRecordingRequest.upload: "s3://BUCKET[/PREFIX]", BUCKET as S3 names new buckets (3 to 63
// of a-z 0-9 . -), PREFIX printable ASCII without spaces, at most kMaxUploadBytes in all.
// kInvalidArgument naming the rule otherwise.
Status ValidateUploadDestination(const std::string& url);

// StartRecording: the name, then the capture it asks for (ValidateStreamRequest on
// StreamRequestFor(request)), then the rotation bounds, then the upload destination.
// kInvalidArgument naming the field.
Status ValidateStartRecordingRequest(const v1::StartRecordingRequest& request);

// The stream a recording subscribes to.
v1::StreamRequest StreamRequestFor(const v1::StartRecordingRequest& request);

// DIR/NAME/request.txtpb, the accepted request in protobuf text format, and back: what a
// recording resumes from when capd starts again. ParseRecordingRequest(RecordingRequestText(r))
// gives back r's known fields (unknown ones are not kept: text format cannot read them back).
std::string RecordingRequestText(const v1::StartRecordingRequest& request);
bool ParseRecordingRequest(const std::string& text, v1::StartRecordingRequest* request);

}  // namespace capd::agent

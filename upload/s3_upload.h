#pragma once
// `capctl stream --upload s3://BUCKET/PREFIX`: the hand-off action (file_handoff.h) that puts
// each finished capture file into S3 (or an S3-compatible store) with the AWS CLI the machine
// already has (`aws s3 cp`, Debian's awscli 2.9 or any later one). The CLI reads the usual AWS
// environment itself: AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION, credentials from the
// environment, ~/.aws or the instance role; --upload-endpoint-url passes --endpoint-url for an
// S3-compatible store (the CLI reads AWS_ENDPOINT_URL only from 2.13 on).
//
// Object keys, so that a bucket of many agents sorts itself by time:
//   PREFIX/AGENT/IFACE/YYYY/MM/DD/START_END_NNNNN.pcapng
// AGENT: the capd agent's name (capd --name, else its host name; several agents' names joined
// with '+'); IFACE: the capture interface (the file's first); the date folders and START, END:
// the first and last packet's time, UTC, as YYYYmmddTHHMMSS.nnnnnnnnnZ (the file's opening time
// for both when it holds no packet); NNNNN: the ring's file number. Characters other than
// A-Z a-z 0-9 . _ - in AGENT and IFACE become '_'.
// Object metadata (x-amz-meta-*): packets, first-ns, last-ns (Unix nanoseconds), link-types
// (LINKTYPE_* numbers, comma separated), interfaces, agent.
//
// An object appears whole or not at all (S3 publishes a PUT, and a multipart upload, only when
// it completes), so a reader never sees a partial file; the ring deletes the local file only
// after `aws` exited 0 (file_handoff.h's MayDelete).

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "upload/file_handoff.h"

namespace capd::client {

struct S3Location {
  std::string bucket;
  std::string prefix;  // without a leading or trailing '/'; may be empty
};

// "s3://BUCKET[/PREFIX]": kInvalidArgument for anything else (another scheme, no bucket, a
// bucket name S3 would refuse).
StatusOr<S3Location> ParseS3Url(const std::string& url);

// The key described above; `extension` with its dot (".pcapng").
std::string ObjectKey(const S3Location& location, const FinishedFile& file,
                      const std::string& extension = ".pcapng");

// The metadata described above as the JSON map `aws s3 cp --metadata` takes.
std::string ObjectMetadataJson(const FinishedFile& file);

class S3UploadAction final : public HandoffAction {
 public:
  // endpoint_url: "" for AWS itself; aws: the CLI to run (found in PATH when it has no '/').
  S3UploadAction(S3Location location, std::string endpoint_url, std::string aws = "aws")
      : location_(std::move(location)),
        endpoint_url_(std::move(endpoint_url)),
        aws_(std::move(aws)) {}
  std::string Name() const override;
  StatusOr<std::unique_ptr<HandoffJob>> Start(const FinishedFile& file) override;
  // The command line Start runs for `file`.
  std::vector<std::string> Command(const FinishedFile& file) const;

 private:
  const S3Location location_;
  const std::string endpoint_url_;
  const std::string aws_;
};

}  // namespace capd::client

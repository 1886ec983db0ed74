#pragma once
// `capctl stream --rotate-*`: the ring of files' settings (capfile/rotating_writer.h) and the
// command or upload capctl hands each finished file to (client/output/rotation.h, through
// upload/file_handoff.h, which the handoff_* settings tune).

#include <cstdint>
#include <string>

#include "capfile/rotating_writer.h"

namespace capd::client {

struct RotationOptions : capfile::RingOptions {
  // --post-rotate: run as `sh -c 'CMD "$1"' sh FILE` for each finished file; retried when it
  // fails; the ring keeps the file until it has succeeded; capctl waits for it at exit.
  std::string post_rotate_command;
  // --upload s3://BUCKET/PREFIX (upload/s3_upload.h), instead of a command;
  // --upload-endpoint-url: an S3-compatible store's address, passed to `aws --endpoint-url`.
  std::string upload_url;
  std::string upload_endpoint_url;
  uint32_t handoff_jobs = 2;            // --handoff-jobs: commands running at once
  uint32_t handoff_attempts = 5;        // --handoff-attempts: tries per file
  uint32_t handoff_wait_seconds = 300;  // --handoff-wait: the wait at exit (0: none)
};

}  // namespace capd::client

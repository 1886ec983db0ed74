#pragma once
// `capctl stream --rotate-*`: the ring of files' settings (capfile/rotating_writer.h) and the
// command capctl runs on each finished file (client/output/rotation.h runs it).

#include <string>

#include "capfile/rotating_writer.h"

namespace capd::client {

struct RotationOptions : capfile::RingOptions {
  // --post-rotate: run as `sh -c 'CMD "$1"' sh FILE` for each finished file, not waited for.
  std::string post_rotate_command;
};

}  // namespace capd::client

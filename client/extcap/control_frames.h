#pragma once
// Reading Wireshark's control-in pipe (doc/wsdg_src/wsdg_capture.adoc, "Control Protocol"):
// frames of 'T', a 3-byte big-endian length (the payload's plus 2), the control number, the
// command, and the payload. Pure: bytes in, frames out, in whatever pieces the pipe gives them
// (no I/O, no root; tests/unit/client/control_frames_test.cc).
//
// What a writer could send that is not a frame is skipped and counted, never fatal: a byte that
// is not 'T' where a frame starts (skipped up to the next 'T'), a length under 2, and a frame
// whose payload is over kMaxPayload (its bytes are consumed as they come, never kept, so a
// frame announcing 16 MiB costs nothing).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace capd::client {

struct ControlFrame {
  uint8_t control = 0;
  uint8_t command = 0;
  std::string payload;
};

// Wireshark's commands (the same numbers both ways).
enum ControlCommand : uint8_t {
  kControlInitialized = 0,
  kControlSet = 1,
  kControlAdd = 2,
  kControlRemove = 3,
  kControlEnable = 4,
  kControlDisable = 5,
  kControlStatusbar = 6,
  kControlInformation = 7,
  kControlWarning = 8,
  kControlError = 9,
};

class ControlFrameParser {
 public:
  // Larger than any value a toolbar control holds here (a filter is at most 16 KiB).
  static constexpr size_t kMaxPayload = 32 * 1024;

  // The frames `bytes` completes, in order; a partial frame is kept for the next call.
  std::vector<ControlFrame> Feed(std::string_view bytes);

  // Frames skipped for being over kMaxPayload, and bytes skipped for not being a frame.
  uint64_t oversize_frames() const { return oversize_frames_; }
  uint64_t skipped_bytes() const { return skipped_bytes_; }

 private:
  std::string buffer_;     // the start of a frame not complete yet (at most header + payload)
  size_t discarding_ = 0;  // bytes still to skip of an oversize frame
  uint64_t oversize_frames_ = 0;
  uint64_t skipped_bytes_ = 0;
};

}  // namespace capd::client

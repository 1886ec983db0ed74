#include "capfile/encoding.h"

namespace capd::capfile::internal {

Status PacketLengthError(uint32_t original_length, size_t captured_length) {
  if (captured_length > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgument("captured length " + std::to_string(captured_length) +
                           " does not fit a capture file record");
  }
  return InvalidArgument("captured length " + std::to_string(captured_length) +
                         " exceeds original length " + std::to_string(original_length));
}

}  // namespace capd::capfile::internal

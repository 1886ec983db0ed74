#include "client/extcap/control_frames.h"

#include <algorithm>

namespace capd::client {
namespace {
constexpr size_t kHeaderBytes = 4;  // 'T' and the length; the control number and command count
                                    // in the length
}  // namespace

std::vector<ControlFrame> ControlFrameParser::Feed(std::string_view bytes) {
  std::vector<ControlFrame> frames;
  while (!bytes.empty()) {
    if (discarding_ > 0) {
      const size_t n = std::min(discarding_, bytes.size());
      discarding_ -= n;
      bytes.remove_prefix(n);
      continue;
    }
    if (buffer_.empty()) {
      const size_t sync = bytes.find('T');
      const size_t skip = sync == std::string_view::npos ? bytes.size() : sync;
      skipped_bytes_ += skip;
      bytes.remove_prefix(skip);
      if (bytes.empty()) break;
    }
    if (buffer_.size() < kHeaderBytes) {
      const size_t n = std::min(kHeaderBytes - buffer_.size(), bytes.size());
      buffer_.append(bytes.substr(0, n));
      bytes.remove_prefix(n);
      if (buffer_.size() < kHeaderBytes) break;
    }
    const size_t length = (static_cast<size_t>(static_cast<uint8_t>(buffer_[1])) << 16) |
                          (static_cast<size_t>(static_cast<uint8_t>(buffer_[2])) << 8) |
                          static_cast<uint8_t>(buffer_[3]);
    if (length < 2) {  // no room for the control number and command: not a frame
      skipped_bytes_ += buffer_.size();
      buffer_.clear();
      continue;
    }
    if (length - 2 > kMaxPayload) {
      ++oversize_frames_;
      discarding_ = length;
      buffer_.clear();
      continue;
    }
    const size_t total = kHeaderBytes + length;
    const size_t n = std::min(total - buffer_.size(), bytes.size());
    buffer_.append(bytes.substr(0, n));
    bytes.remove_prefix(n);
    if (buffer_.size() < total) break;
    ControlFrame frame;
    frame.control = static_cast<uint8_t>(buffer_[4]);
    frame.command = static_cast<uint8_t>(buffer_[5]);
    frame.payload = buffer_.substr(kHeaderBytes + 2);
    frames.push_back(std::move(frame));
    buffer_.clear();
  }
  return frames;
}

}  // namespace capd::client

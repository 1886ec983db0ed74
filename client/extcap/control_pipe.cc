#include "client/extcap/control_pipe.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>

namespace capd::client {
namespace {

constexpr size_t kHeaderBytes = 6;
// Messages kept while Wireshark's reader has not opened control-out yet.
constexpr size_t kMaxPending = 32;

}  // namespace

std::string FrameControlPacket(uint8_t control, uint8_t command, std::string_view payload) {
  payload = payload.substr(0, PIPE_BUF - kHeaderBytes);
  const size_t length = payload.size() + 2;  // control number and command count too
  std::string packet;
  packet.reserve(kHeaderBytes + payload.size());
  packet.push_back('T');
  packet.push_back(static_cast<char>((length >> 16) & 0xff));
  packet.push_back(static_cast<char>((length >> 8) & 0xff));
  packet.push_back(static_cast<char>(length & 0xff));
  packet.push_back(static_cast<char>(control));
  packet.push_back(static_cast<char>(command));
  packet.append(payload);
  return packet;
}

ControlPipes::ControlPipes(std::string control_in, std::string control_out)
    : out_path_(std::move(control_out)) {
  if (!control_in.empty()) {
    // O_NONBLOCK: opening a FIFO for reading then succeeds without waiting for a writer.
    in_fd_ = open(control_in.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  }
  TryOpenOut();
}

ControlPipes::~ControlPipes() {
  if (TryOpenOut()) {
    while (!pending_.empty() && Write(pending_.front())) pending_.pop_front();
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (in_fd_ >= 0) close(in_fd_);
}

bool ControlPipes::TryOpenOut() {
  if (out_fd_ >= 0) return true;
  if (out_path_.empty()) return false;
  // ENXIO until Wireshark's reader has the FIFO open; then writes stay non-blocking.
  out_fd_ = open(out_path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  return out_fd_ >= 0;
}

bool ControlPipes::Write(const std::string& packet) {
  // At most PIPE_BUF bytes: the write is atomic, all or nothing (pipe(7)).
  ssize_t n;
  do {
    n = write(out_fd_, packet.data(), packet.size());
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(packet.size());
}

void ControlPipes::Send(uint8_t control, uint8_t command, std::string_view payload) {
  if (out_path_.empty()) return;
  std::lock_guard lock(mu_);
  std::string packet = FrameControlPacket(control, command, payload);
  if (!TryOpenOut()) {
    if (pending_.size() == kMaxPending) {
      pending_.pop_front();
      ++dropped_;
    }
    pending_.push_back(std::move(packet));
    return;
  }
  while (!pending_.empty()) {
    if (!Write(pending_.front())) {
      dropped_ += pending_.size() + 1;
      pending_.clear();
      return;
    }
    pending_.pop_front();
  }
  if (!Write(packet)) ++dropped_;
}

void ControlPipes::Log(std::string_view line) {
  std::string entry(line);
  entry += '\n';
  Send(kLoggerControl, kCommandAdd, entry);
}

void ControlPipes::ShowStatus(std::string_view message) {
  Send(kLoggerControl, kCommandStatusbar, message);
}

}  // namespace capd::client

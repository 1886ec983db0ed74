#pragma once
// Wireshark's extcap control pipes (doc/wsdg_src/wsdg_capture.adoc, "Control Protocol"): when the
// interface declares toolbar controls, Wireshark creates two FIFOs and passes them as
// --extcap-control-in (Wireshark -> extcap) and --extcap-control-out (extcap -> Wireshark).
//
// A control packet is 'T', a 3-byte big-endian length (payload + 2), the control number, the
// command, and the payload. capctl declares one control, a logger button (number 0), and sends:
// log lines to it (command 2, Add) and short messages to the status bar (command 6, which
// ignores the control number).
//
// The GUI opens its write end of control-in with a blocking open() on its main thread
// (ui/qt/interface_toolbar.cpp, Wireshark 4.0), so an extcap that never opens control-in hangs
// Wireshark: the constructor opens it at once (non-blocking) and holds it; the toolbar
// (toolbar.h) reads it on a thread of its own (in_fd()).
//
// Control-out is opened lazily: Wireshark's reader thread opens it some time after starting
// capctl. Messages before that are kept (a few), and a message that cannot be written without
// blocking is dropped and counted: status messages must never slow the capture.
//
// Thread-safety: the sending calls are thread-safe (the session's thread logs, the toolbar's
// thread answers Apply).

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>

namespace capd::client {

class ControlPipes {
 public:
  static constexpr uint8_t kLoggerControl = 0;
  static constexpr uint8_t kCommandAdd = 2;
  static constexpr uint8_t kCommandStatusbar = 6;

  // Empty paths: Wireshark gave no control pipes (tshark, or the toolbar is not shown); every
  // call is then a no-op.
  ControlPipes(std::string control_in, std::string control_out);
  ~ControlPipes();
  ControlPipes(const ControlPipes&) = delete;
  ControlPipes& operator=(const ControlPipes&) = delete;

  // One line in the capture's log window (a newline is added).
  void Log(std::string_view line);
  // Replaces the status bar text.
  void ShowStatus(std::string_view message);
  // Any command to any control (control_frames.h: Set, Enable, Disable...).
  void Send(uint8_t control, uint8_t command, std::string_view payload);
  // control-in, open for reading (non-blocking); -1 without control pipes.
  int in_fd() const { return in_fd_; }

  uint64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_;
  }

 private:
  bool TryOpenOut();
  bool Write(const std::string& packet);

  mutable std::mutex mu_;  // guards what follows but in_fd_ (set once)
  std::string out_path_;
  int in_fd_ = -1;
  int out_fd_ = -1;
  std::deque<std::string> pending_;  // framed packets waiting for Wireshark's reader
  uint64_t dropped_ = 0;
};

// The framed bytes of one control packet; the payload is cut to what one atomic pipe write can
// carry (PIPE_BUF, minus the header), so a packet is never written in part.
std::string FrameControlPacket(uint8_t control, uint8_t command, std::string_view payload);

}  // namespace capd::client

#pragma once
// Wireshark's FIFO held open for writing for the whole extcap capture, so that a failure always
// reaches Wireshark the way its extcap protocol expects.
//
// Why (Wireshark 4.0, dumpcap.c cap_pipe_open_live and extcap.c): dumpcap opens the extcap's FIFO
// with a blocking open() and then reads the pcap/pcapng magic. An extcap that exits without ever
// opening the FIFO leaves dumpcap in that open() for good: tshark hangs, even with -a duration.
// When the FIFO is closed before any header, dumpcap ends the capture with no message of its own
// ("jump messaging, if extcap had an error, stderr will provide the correct message") and
// Wireshark shows the extcap's stderr, read when the capture ends ("Error by extcap pipe: ..."):
// the reason must be on stderr *before* the last writer closes the FIFO, or Wireshark may read
// an empty stderr (a bare "tshark: " line).
//
// So the extcap opens the FIFO first (Open), keeps this descriptor while the capture's own writer
// opens, writes and closes the FIFO, writes its reason to stderr, and only then Releases.
//
// Thread-safety: none; move-only, one owner.

#include <chrono>
#include <string>

#include "common/status.h"

namespace capd::client {

class FifoHold {
 public:
  // Opens `path` (an existing FIFO) for writing without blocking, retrying until a reader has
  // opened it or `wait` has passed. kUnavailable when no reader came in time or the FIFO is
  // gone (Wireshark gave up); kInvalidArgument when `path` is not a FIFO; kInternal for other
  // open() errors, naming the call.
  static StatusOr<FifoHold> Open(const std::string& path, std::chrono::milliseconds wait);

  FifoHold() = default;  // holds nothing
  FifoHold(FifoHold&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FifoHold& operator=(FifoHold&& other) noexcept;
  FifoHold(const FifoHold&) = delete;
  FifoHold& operator=(const FifoHold&) = delete;
  ~FifoHold() { Release(); }

  bool held() const { return fd_ >= 0; }
  // Closes the descriptor: once no other writer has the FIFO open, the reader sees its end.
  void Release();

 private:
  explicit FifoHold(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace capd::client

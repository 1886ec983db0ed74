#pragma once
// `capctl stream --wireshark`: a FIFO in a private temporary folder, and Wireshark started on it
// ($WIRESHARK, else wireshark, with -k -i FIFO). The folder and FIFO are removed afterwards;
// Wireshark keeps running so the capture can be looked at.

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace capd::client {

class WiresharkViewer {
 public:
  static StatusOr<std::unique_ptr<WiresharkViewer>> Start();
  ~WiresharkViewer();
  WiresharkViewer(const WiresharkViewer&) = delete;
  WiresharkViewer& operator=(const WiresharkViewer&) = delete;

  const std::string& fifo_path() const { return fifo_path_; }
  // True once Wireshark has exited (reaps it).
  bool Exited();

 private:
  WiresharkViewer(std::string folder, std::string fifo_path, pid_t pid)
      : folder_(std::move(folder)), fifo_path_(std::move(fifo_path)), pid_(pid) {}
  std::string folder_;
  std::string fifo_path_;
  pid_t pid_;
};

}  // namespace capd::client

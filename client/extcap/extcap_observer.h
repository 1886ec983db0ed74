#pragma once
// The extcap's view of a stream session: Wireshark shows an extcap's stderr as an error, so what
// `capctl stream` says on stderr goes to the control pipes instead, as the same lines: each one
// to the capture's log window, the interface, warnings, an agent's drops and the summary also to
// the status bar ("capd: capturing on eth0 (...)"). About once a second the status bar shows the
// progress and the link's throughput instead ("capd: 1200 packets, 0 dropped; link 2.45 MB/s").
// The lines are kept, so that a capture that fails can still say why on stderr (Wireshark's
// "Error by extcap pipe").
//
// Thread-safety: as SessionObserver; ControlPipes is used from the event's thread only.

#include <string>
#include <vector>

#include "client/extcap/control_pipe.h"
#include "client/stream/session_text.h"

namespace capd::client {

class ExtcapObserver : public SessionTextObserver {
 public:
  explicit ExtcapObserver(ControlPipes& pipes) : pipes_(pipes) {}
  // Every line said so far, as `capctl stream` prints it ("capctl: ...").
  const std::vector<std::string>& lines() const { return lines_; }

  void OnProgress(const Progress& progress) override;

 protected:
  void Emit(Line kind, const std::string& text) override;

 private:
  ControlPipes& pipes_;
  std::vector<std::string> lines_;
};

}  // namespace capd::client

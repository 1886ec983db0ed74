#pragma once
// The extcap's control toolbar in Wireshark (View > Interface Toolbars > capd): the capture
// filter, for mirror-target captures the VNIs and inner filter, an Apply button that changes
// what the agent captures without ending the capture (capd.v1 ChangeStream, via
// StreamChanger), and capd's drop counters.
//
// How data flows: Wireshark -> control-in -> ControlFrameParser -> Toolbar (the values, kept
// as the user types; Apply) -> StreamChanger -> each agent; the answers -> the status bar and
// the log (control-out). The session's progress -> ToolbarObserver -> the Drops control.
//
// Wireshark sends the controls' values and then Initialized when a capture starts, and a Set
// for each change as the user types; a button press is a Set of the button with no payload. At
// Initialized capctl sets the controls to what the capture runs with, so the toolbar shows the
// truth, and disables the mirror-target controls of a plain capture and the read-only Drops.
//
// Threading: ToolbarReader reads control-in on a thread of its own (poll on the pipe and a
// stop eventfd), so reading, and waiting for the agents' answers, never holds up the capture.
// tshark passes no control pipes: then nothing starts and nothing changes.

#include <array>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/extcap/control_frames.h"
#include "client/extcap/control_pipe.h"
#include "client/stream/session_observer.h"
#include "client/stream/stream_changer.h"
#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::client {

// The controls' numbers (control 0 is the log button, ControlPipes::kLoggerControl).
enum ToolbarControl : uint8_t {
  kToolbarFilter = 1,
  kToolbarVnis = 2,
  kToolbarInnerFilter = 3,
  kToolbarApply = 4,
  kToolbarDrops = 5,
  kToolbarControls = 6,
};

// The `control` lines of --extcap-interfaces after the log button.
void PrintToolbarControls(std::FILE* out);

// "1, 2,3" -> {1, 2, 3}; empty -> {}; kInvalidArgument naming the bad item (VNIs are 24-bit).
StatusOr<std::vector<uint32_t>> ParseVniList(const std::string& text);

// What the capture started with.
struct ToolbarStart {
  std::string filter;
  bool mirror = false;  // --decap: the VNIs and inner filter apply
  std::vector<uint32_t> vnis;
  std::string inner_filter;
};

// The toolbar's state: the values Wireshark shows. Pure (no I/O).
class Toolbar {
 public:
  enum class Event { kNone, kInitialized, kApply };
  explicit Toolbar(ToolbarStart start);

  // One frame from control-in: keeps a value, or says Wireshark is ready or Apply was pressed.
  Event OnFrame(const ControlFrame& frame);
  // The change Apply asks for: the filter, and for a mirror capture the VNIs and inner filter;
  // kInvalidArgument for VNIs that do not parse.
  StatusOr<v1::ChangeStreamRequest> ChangeRequest() const;
  // Frames that set the controls to what runs (at Initialized): the values, and Disable for
  // what the user cannot change.
  std::vector<ControlFrame> InitialFrames() const;
  // After the agents applied `change`: what runs now.
  void Applied(const v1::ChangeStreamRequest& change);
  const std::string& value(ToolbarControl control) const { return values_[control]; }

 private:
  ToolbarStart running_;
  std::array<std::string, kToolbarControls> values_;
};

// One line for the status bar about the agents' answers to a change: "filter applied on A:
// '...'" or "A refused the filter: <why>; the old filter is kept", joined with "; ".
std::string DescribeChange(const std::vector<AgentChange>& results);

// The drop counters as the Drops control shows them.
std::string DescribeDrops(const DropCounts& drops);

class ToolbarObserver;

// Reads control-in on its own thread and acts on it (see the top of this file).
class ToolbarReader {
 public:
  // Starts reading when `pipes` has control-in. `pipes`, `changer` and `observer` (which keeps
  // the last change's status) outlive the reader.
  ToolbarReader(ControlPipes& pipes, StreamChanger& changer, ToolbarObserver& observer,
                ToolbarStart start);
  ~ToolbarReader();  // stops and joins (after an Apply in progress has its answers)
  ToolbarReader(const ToolbarReader&) = delete;
  ToolbarReader& operator=(const ToolbarReader&) = delete;

 private:
  void Run();
  void Apply();

  ControlPipes& pipes_;
  StreamChanger& changer_;
  ToolbarObserver& observer_;
  Toolbar toolbar_;  // the reader thread's
  ControlFrameParser parser_;
  int stop_fd_ = -1;
  std::thread thread_;
};

// Forwards every event to `inner` and shows the drop counters in the toolbar. A change's new
// capture interface makes `inner` say "capturing on ..." in the status bar, which may come just
// after the change's own status: that status is then shown again, so the bar ends on it.
class ToolbarObserver : public SessionObserver {
 public:
  ToolbarObserver(SessionObserver& inner, ControlPipes& pipes) : inner_(inner), pipes_(pipes) {}
  // The status bar text of the last change (any thread).
  void SetChangeStatus(std::string text);
  void OnInterface(const InterfaceSeen& i) override;
  void OnCarriersExcluded(const AgentRef& a, const std::string& c) override {
    inner_.OnCarriersExcluded(a, c);
  }
  void OnWarning(const AgentRef& a, const std::string& w) override { inner_.OnWarning(a, w); }
  void OnAgentEnded(const AgentRef& a, const FeedOutcome& o) override { inner_.OnAgentEnded(a, o); }
  void OnProgress(const Progress& progress) override;
  void OnMessage(const std::string& m) override { inner_.OnMessage(m); }
  void OnSummary(const SessionSummary& s) override;

 private:
  void ShowDrops(const DropCounts& drops);
  SessionObserver& inner_;
  ControlPipes& pipes_;
  std::optional<std::string> shown_;  // the Drops text last sent
  int capture_interfaces_ = 0;        // interfaces seen that are not decapsulated ones
  std::mutex mu_;
  std::string change_status_;  // guarded by mu_
};

}  // namespace capd::client

#include "client/extcap/toolbar.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

namespace capd::client {
namespace {

std::string JoinVnis(const std::vector<uint32_t>& vnis) {
  std::string text;
  for (uint32_t vni : vnis) {
    if (!text.empty()) text += ',';
    text += std::to_string(vni);
  }
  return text;
}

std::string Trim(std::string_view text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const size_t last = text.find_last_not_of(" \t");
  return std::string(text.substr(first, last - first + 1));
}

ControlFrame Frame(uint8_t control, uint8_t command, std::string payload = {}) {
  return {control, command, std::move(payload)};
}

}  // namespace

void PrintToolbarControls(std::FILE* out) {
  std::fprintf(out,
               "control {number=%u}{type=string}{display=Capture filter}"
               "{tooltip=The agent's capture filter (BPF); Apply changes it without ending the "
               "capture}{placeholder=every packet}\n",
               kToolbarFilter);
  std::fprintf(out,
               "control {number=%u}{type=string}{display=VNIs}"
               "{tooltip=Mirror-target captures (--decap): keep only these VNIs, separated by "
               "commas; empty keeps all}{placeholder=all}\n",
               kToolbarVnis);
  std::fprintf(out,
               "control {number=%u}{type=string}{display=Inner filter}"
               "{tooltip=Mirror-target captures (--decap): BPF filter on the decapsulated "
               "frames}{placeholder=every frame}\n",
               kToolbarInnerFilter);
  std::fprintf(out,
               "control {number=%u}{type=button}{display=Apply}"
               "{tooltip=Send the filters above to the agent; the capture goes on}\n",
               kToolbarApply);
  std::fprintf(out,
               "control {number=%u}{type=string}{display=Drops}"
               "{tooltip=Packets capd dropped so far: in the kernel ring, at the interface, and "
               "in capd's queue for this capture}\n",
               kToolbarDrops);
}

StatusOr<std::vector<uint32_t>> ParseVniList(const std::string& text) {
  std::vector<uint32_t> vnis;
  if (Trim(text).empty()) return vnis;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = Trim(std::string_view(text).substr(start, comma - start));
    uint32_t vni = 0;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), vni);
    if (item.empty() || error != std::errc() || end != item.data() + item.size() ||
        vni > 0xFFFFFF) {
      return InvalidArgument("VNIs are 0..16777215 separated by commas, not '" + item + "'");
    }
    vnis.push_back(vni);
    start = comma + 1;
  }
  return vnis;
}

Toolbar::Toolbar(ToolbarStart start) : running_(std::move(start)) {
  values_[kToolbarFilter] = running_.filter;
  values_[kToolbarVnis] = JoinVnis(running_.vnis);
  values_[kToolbarInnerFilter] = running_.inner_filter;
}

Toolbar::Event Toolbar::OnFrame(const ControlFrame& frame) {
  if (frame.control == 0 && frame.command == kControlInitialized) {
    // What Wireshark remembered from an earlier capture is not what this one runs.
    values_[kToolbarFilter] = running_.filter;
    values_[kToolbarVnis] = JoinVnis(running_.vnis);
    values_[kToolbarInnerFilter] = running_.inner_filter;
    return Event::kInitialized;
  }
  if (frame.command != kControlSet) return Event::kNone;
  switch (frame.control) {
    case kToolbarFilter:
    case kToolbarVnis:
    case kToolbarInnerFilter:
      values_[frame.control] = frame.payload;
      return Event::kNone;
    case kToolbarApply:
      return Event::kApply;
    default:
      return Event::kNone;  // Drops is ours to set; unknown numbers are a newer Wireshark's
  }
}

StatusOr<v1::ChangeStreamRequest> Toolbar::ChangeRequest() const {
  v1::ChangeStreamRequest change;
  change.set_filter(Trim(values_[kToolbarFilter]));
  if (running_.mirror) {
    auto vnis = ParseVniList(values_[kToolbarVnis]);
    if (!vnis.ok()) return vnis.status();
    change.mutable_vnis()->mutable_vnis()->Assign(vnis->begin(), vnis->end());
    change.set_inner_filter(Trim(values_[kToolbarInnerFilter]));
  }
  return change;
}

void Toolbar::Applied(const v1::ChangeStreamRequest& change) {
  running_.filter = change.filter();
  if (change.has_vnis())
    running_.vnis.assign(change.vnis().vnis().begin(), change.vnis().vnis().end());
  if (change.has_inner_filter()) running_.inner_filter = change.inner_filter();
}

std::vector<ControlFrame> Toolbar::InitialFrames() const {
  std::vector<ControlFrame> frames;
  frames.push_back(Frame(kToolbarFilter, kControlSet, values_[kToolbarFilter]));
  frames.push_back(Frame(kToolbarVnis, kControlSet, values_[kToolbarVnis]));
  frames.push_back(Frame(kToolbarInnerFilter, kControlSet, values_[kToolbarInnerFilter]));
  if (!running_.mirror) {
    frames.push_back(Frame(kToolbarVnis, kControlDisable));
    frames.push_back(Frame(kToolbarInnerFilter, kControlDisable));
  }
  frames.push_back(Frame(kToolbarDrops, kControlDisable));  // shown, not edited
  return frames;
}

std::string DescribeChange(const std::vector<AgentChange>& results) {
  if (results.empty()) return "no agent to apply the filter on (the capture has not started)";
  std::string text;
  for (const AgentChange& r : results) {
    if (!text.empty()) text += "; ";
    if (r.status.ok()) {
      text += "filter applied on " + r.agent + ": '" + r.filter + "'";
    } else {
      text += r.agent + " refused the filter: " + r.status.message() + "; the old filter is kept";
    }
  }
  return text;
}

std::string DescribeDrops(const DropCounts& drops) {
  return std::to_string(drops.total()) + " (kernel " + std::to_string(drops.kernel) +
         ", interface " + std::to_string(drops.interface) + ", capd queue " +
         std::to_string(drops.agent) + ")";
}

ToolbarReader::ToolbarReader(ControlPipes& pipes, StreamChanger& changer, ToolbarObserver& observer,
                             ToolbarStart start)
    : pipes_(pipes), changer_(changer), observer_(observer), toolbar_(std::move(start)) {
  if (pipes_.in_fd() < 0) return;
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return;
  thread_ = std::thread(&ToolbarReader::Run, this);
}

ToolbarReader::~ToolbarReader() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  if (stop_fd_ >= 0) close(stop_fd_);
}

void ToolbarReader::Run() {
  char buffer[4096];
  while (true) {
    pollfd fds[2] = {{pipes_.in_fd(), POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    const ssize_t n = read(pipes_.in_fd(), buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    // End of file once Wireshark closed its end (a FIFO never written to shows no hang-up).
    if (n <= 0) return;
    for (const ControlFrame& frame : parser_.Feed({buffer, static_cast<size_t>(n)})) {
      switch (toolbar_.OnFrame(frame)) {
        case Toolbar::Event::kInitialized:
          for (const ControlFrame& f : toolbar_.InitialFrames()) {
            pipes_.Send(f.control, f.command, f.payload);
          }
          break;
        case Toolbar::Event::kApply:
          Apply();
          break;
        case Toolbar::Event::kNone:
          break;
      }
    }
  }
}

void ToolbarReader::Apply() {
  auto change = toolbar_.ChangeRequest();
  if (!change.ok()) {
    const std::string text = "capd: " + change.status().message() + "; nothing was changed";
    pipes_.Log("capctl: " + text.substr(6));
    pipes_.ShowStatus(text);
    return;
  }
  const std::vector<AgentChange> results = changer_.Apply(change.value());
  bool all = !results.empty();
  for (const AgentChange& r : results) all = all && r.status.ok();
  if (all) toolbar_.Applied(change.value());
  const std::string text = DescribeChange(results);
  pipes_.Log("capctl: " + text);
  observer_.SetChangeStatus("capd: " + text);
  pipes_.ShowStatus("capd: " + text);
}

void ToolbarObserver::SetChangeStatus(std::string text) {
  std::lock_guard lock(mu_);
  change_status_ = std::move(text);
}

void ToolbarObserver::OnInterface(const InterfaceSeen& i) {
  inner_.OnInterface(i);
  if (i.decapsulated || capture_interfaces_++ == 0) return;
  std::string status;
  {
    std::lock_guard lock(mu_);
    status = change_status_;
  }
  if (!status.empty()) pipes_.ShowStatus(status);
}

void ToolbarObserver::ShowDrops(const DropCounts& drops) {
  std::string text = DescribeDrops(drops);
  if (shown_ == text) return;  // Wireshark redraws on every Set
  pipes_.Send(kToolbarDrops, kControlSet, text);
  shown_ = std::move(text);
}

void ToolbarObserver::OnProgress(const Progress& progress) {
  ShowDrops(progress.drops);
  inner_.OnProgress(progress);
}

void ToolbarObserver::OnSummary(const SessionSummary& summary) {
  ShowDrops(summary.drops);
  inner_.OnSummary(summary);
}

}  // namespace capd::client

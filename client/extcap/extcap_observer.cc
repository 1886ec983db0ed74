#include "client/extcap/extcap_observer.h"

namespace capd::client {

void ExtcapObserver::Emit(Line kind, const std::string& text) {
  lines_.push_back("capctl: " + text);
  pipes_.Log(lines_.back());
  // The status bar has room for one line at a time: the capture's own interface (not each
  // decapsulated session), what the user must know, and the outcome.
  const bool capture_interface = kind == Line::kInterface && text.rfind("capturing on ", 0) == 0;
  if (capture_interface || kind == Line::kWarning || kind == Line::kAgentDropping ||
      kind == Line::kSummary) {
    pipes_.ShowStatus("capd: " + text);
  }
}

void ExtcapObserver::OnProgress(const Progress& progress) {
  // Only a new rate (about once a second): the status bar is not for every round.
  if (progress.rate_updated) pipes_.ShowStatus("capd: " + ProgressText(progress));
}

}  // namespace capd::client

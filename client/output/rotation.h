#pragma once
// capctl's ring of files (`capctl stream -w PATH --rotate-*`): capfile/'s rotating writer with
// capctl's hand-off of each finished file plugged in (file_handoff.h): the --post-rotate command,
// or --upload's (s3_upload.h). Processes are started here, on the client's side: capd links
// capfile/ and must not be able to start processes through it.
//
// How data flows: the ring reports each finished file (capfile::RingOptions::on_file_details) to
// the FileHandoff, which starts `sh -c 'CMD "$1"' sh FILE` for it (at most --handoff-jobs at
// once), retries it when it fails and reports each failure on stderr; the ring asks the hand-off
// before deleting a file (RingOptions::may_delete), so --rotate-files and --min-free never delete
// a file whose command has not succeeded. The writer polls the hand-off at each Tick and Flush;
// Close finishes the last file, waits for the commands (bounded by --handoff-wait, a second
// Ctrl-C stops it), applies --rotate-files to the files handed off meanwhile, and reports how
// many files were handed off and which were not.
//
// Thread-safety: none, except HandedOffRing::stop_waiting; the writer's thread owns the writer.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "capfile/capture_writer.h"
#include "client/cli/rotation_options.h"
#include "client/output/capture_files.h"
#include "upload/file_handoff.h"
#include "common/status.h"

namespace capd::client {

// The hand-off's settings from the command line's.
HandoffSettings HandoffSettingsOf(const RotationOptions& options);

struct HandedOffRing {
  std::unique_ptr<CaptureWriter> writer;
  // Empty without a hand-off. stop_waiting: ends the wait at Close (any thread, e.g. a second
  // Ctrl-C). all_handed_off: after Close, whether every file was handed off.
  std::function<void()> stop_waiting;
  std::function<bool()> all_handed_off;
};

// The ring for capctl: with options.post_rotate_command or options.upload_url, each finished file
// is handed off as described above; without, capfile's ring as it is. Statuses as
// capfile::MakeRotatingWriter, and kInvalidArgument for an upload_url ParseS3Url refuses.
StatusOr<HandedOffRing> OpenRing(const RotationOptions& options, std::string application);

// -w FILE with --upload (or --post-rotate) and no rotation: `writer`, the plain file at
// options.path, handed off once its Close has completed it (Close waits as the ring's does).
StatusOr<HandedOffRing> WithHandoffAtClose(const RotationOptions& options,
                                           std::unique_ptr<CaptureWriter> writer);

// OpenRing's writer alone.
StatusOr<std::unique_ptr<CaptureWriter>> MakeRotatingWriter(const RotationOptions& options,
                                                            std::string application);

}  // namespace capd::client

#pragma once
// capd-upload's view of capd's recordings folder (--record-dir DIR): which files of a recording
// are finished and not yet uploaded, where they go, and the mark that tells capd a file may leave
// its ring. The files and notes are capd's (agent/recording, capfile/finished_note.h); this side
// only reads them and writes FILE.uploaded.
//
// A file counts as finished only when capd wrote its note (FILE.finished), which it does after
// closing the file for good: the file being written never has one, so it is never uploaded.
//
// Nothing here follows a link: a recording folder, a ring file or a note that is a symbolic link
// is left out. No process is started here. Thread-safety: none needed (free functions).

#include <functional>
#include <string>
#include <vector>

#include "capfile/rotating_writer.h"
#include "common/status.h"

namespace capd::uploader {

// A name capd gives a recording (agent/recording/recording_request.h):
// [A-Za-z0-9][A-Za-z0-9._-]{0,63}, so never "." or "..", a '/', or a character with a meaning
// in a pattern or a shell. Anything else in the folder is not capd's.
bool IsRecordingName(const std::string& name);

// The recordings in DIR (folder names that are recording names), sorted.
std::vector<std::string> RecordingNames(const std::string& record_dir);

// The recording's upload destination from DIR/NAME/request.txtpb ("" when it has none).
// kNotFound when the folder or its request is missing, kInvalidArgument when unreadable.
StatusOr<std::string> RecordingDestination(const std::string& record_dir, const std::string& name);

// Finished files of DIR/NAME without an upload mark, oldest (lowest number) first, each with what
// its note says; path is DIR/NAME/FILE. A note that cannot be parsed leaves its file out (logged
// through `log`). None when NAME is not a recording name.
std::vector<capfile::FinishedFile> FilesToUpload(
    const std::string& record_dir, const std::string& name,
    const std::function<void(const std::string&)>& log);

// Writes FILE.uploaded beside `path` (a temporary renamed over it, 0640): from then on capd's
// ring may delete the file.
Status MarkUploaded(const std::string& path);

}  // namespace capd::uploader

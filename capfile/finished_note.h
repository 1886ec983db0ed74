#pragma once
// The note capd writes beside each finished file of a recording, and capd-upload reads: the file
// is complete and closed for good, and what the ring knew of it (FinishedFile), so the upload's
// object key and metadata are those `capctl stream --upload` gives, without reading the file.
//
// Files in a recording folder, beside FILE (NAME_NNNNN_YYYYmmddHHMMSS.pcapng):
//   FILE.finished  written by capd (atomically) when the ring finishes FILE; the file being
//                  written has none, so nothing reads it as complete before it is
//   FILE.uploaded  written by capd-upload (atomically) once FILE is in its destination; capd's
//                  ring deletes a file of a recording with an upload destination only then
// Both are removed by capd once FILE is gone.
//
// The note's text: one "key value" per line (number, opened_seconds, bytes, packets, first_ns,
// last_ns), "link_types" with the LINKTYPE_* values (comma separated), then one
// "interface NAME<TAB>AGENT" line per interface, in order.
// Pure functions, no I/O.

#include <optional>
#include <string>

#include "capfile/rotating_writer.h"

namespace capd::capfile {

inline constexpr char kFinishedSuffix[] = ".finished";
inline constexpr char kUploadedSuffix[] = ".uploaded";

std::string FinishedNoteText(const FinishedFile& file);
// nullopt when the text is not a note (a missing count, a bad number). path is set to `path`.
std::optional<FinishedFile> ParseFinishedNote(const std::string& text, const std::string& path);

}  // namespace capd::capfile

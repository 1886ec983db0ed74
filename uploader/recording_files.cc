#include "uploader/recording_files.h"

#include <fcntl.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>

#include "capfile/finished_note.h"
#include "proto/capture.pb.h"

namespace capd::uploader {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMaxTextBytes = 1 << 20;

// A regular file (not through a link), up to kMaxTextBytes; nullopt otherwise.
std::optional<std::string> ReadText(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::string text;
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  char buffer[8192];
  while (ok && text.size() < kMaxTextBytes) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = false;
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!ok) return std::nullopt;
  return text;
}

bool IsPlainFolder(const fs::path& path) {
  std::error_code error;
  const fs::file_status status = fs::symlink_status(path, error);
  return !error && fs::is_directory(status);
}

bool IsPlainFile(const fs::path& path) {
  std::error_code error;
  const fs::file_status status = fs::symlink_status(path, error);
  return !error && fs::is_regular_file(status);
}

// A request written by a newer capd may hold fields this program does not know: they are
// skipped, the upload field is what matters here.
class QuietErrors final : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int, int, const std::string& message) override { errors_ += message + "; "; }
  const std::string& errors() const { return errors_; }

 private:
  std::string errors_;
};

}  // namespace

bool IsRecordingName(const std::string& name) {
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

std::vector<std::string> RecordingNames(const std::string& record_dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(record_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (IsRecordingName(name) && IsPlainFolder(entry.path())) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

StatusOr<std::string> RecordingDestination(const std::string& record_dir, const std::string& name) {
  if (!IsRecordingName(name)) return InvalidArgument("'" + name + "' is no recording name");
  const fs::path folder = fs::path(record_dir) / name;
  if (!IsPlainFolder(folder)) return NotFound("no recording folder " + folder.string());
  const std::optional<std::string> text = ReadText(folder / "request.txtpb");
  if (!text) return NotFound("recording " + name + " has no request.txtpb");
  v1::StartRecordingRequest request;
  google::protobuf::TextFormat::Parser parser;
  parser.AllowUnknownField(true);
  QuietErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(*text, &request)) {
    return InvalidArgument("recording " + name + ": request.txtpb unreadable: " + errors.errors());
  }
  return request.upload();
}

std::vector<capfile::FinishedFile> FilesToUpload(
    const std::string& record_dir, const std::string& name,
    const std::function<void(const std::string&)>& log) {
  const fs::path folder = fs::path(record_dir) / name;
  std::vector<capfile::FinishedFile> files;
  // The name becomes part of a pattern below: only '.' of its characters means something there.
  if (!IsRecordingName(name) || !IsPlainFolder(folder)) return files;
  const std::regex pattern(std::regex_replace(name, std::regex(R"([.])"), R"(\.)") +
                           R"(_\d{5,}_\d{14}\.pcapng)");
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    const std::string file_name = entry.path().filename().string();
    if (!std::regex_match(file_name, pattern) || !IsPlainFile(entry.path())) continue;
    const fs::path path = folder / file_name;
    if (fs::exists(fs::symlink_status(path.string() + capfile::kUploadedSuffix, error))) continue;
    const std::optional<std::string> note = ReadText(path.string() + capfile::kFinishedSuffix);
    if (!note) continue;  // being written (or capd stopped before finishing it)
    std::optional<capfile::FinishedFile> file = capfile::ParseFinishedNote(*note, path.string());
    if (!file) {
      log("recording " + name + ": " + file_name + capfile::kFinishedSuffix +
          " is not a note capd wrote: file left out");
      continue;
    }
    files.push_back(std::move(*file));
  }
  std::sort(files.begin(), files.end(),
            [](const capfile::FinishedFile& a, const capfile::FinishedFile& b) {
              return a.number != b.number ? a.number < b.number : a.path < b.path;
            });
  return files;
}

Status MarkUploaded(const std::string& path) {
  const std::string mark = path + capfile::kUploadedSuffix;
  const std::string temporary = mark + ".tmp";
  ::unlink(temporary.c_str());
  const int fd =
      ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
  if (fd < 0) return Internal("open(" + temporary + "): " + std::strerror(errno));
  const bool synced = ::fchmod(fd, 0640) == 0 && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!synced) {
    ::unlink(temporary.c_str());
    return Internal("fsync(" + temporary + "): " + std::strerror(err));
  }
  if (::rename(temporary.c_str(), mark.c_str()) != 0) {
    const int rename_err = errno;
    ::unlink(temporary.c_str());
    return Internal("rename(" + temporary + "): " + std::strerror(rename_err));
  }
  return Status::Ok();
}

}  // namespace capd::uploader

#include "capfile/rotating_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "capfile/encoding.h"
#include "capfile/free_space.h"
#include "capfile/pcapng_scan.h"

namespace capd::capfile {
namespace {

constexpr int64_t kSecondsPerDay = 86400;
constexpr uint16_t kOptComment = 1;
constexpr uint16_t kOptEndOfOpt = 0;
constexpr size_t kShbFixedBytes = 24;  // type, length, magic, version, section length
// The free-space floor is checked at least this often (Tick), for what others write to the disk.
constexpr uint64_t kFloorCheckNs = 1'000'000'000;

// The per-file encoder writes here, so each block's size is known before it reaches the disk.
class MemorySink final : public ByteSink {
 public:
  explicit MemorySink(std::string* out) : out_(out) {}
  Status Write(std::string_view bytes) override {
    out_->append(bytes);
    return Status::Ok();
  }

 private:
  std::string* out_;
};

struct PathParts {
  std::string dir;   // "." when the path has no folder
  std::string stem;  // file name without its extension
};

PathParts SplitPath(const std::string& path) {
  const std::filesystem::path p(path);
  PathParts parts;
  parts.dir = p.has_parent_path() ? p.parent_path().string() : ".";
  std::string name = p.filename().string();
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos && dot > 0) name.resize(dot);
  parts.stem = std::move(name);
  return parts;
}

// Inserts shb_comment as the first option of the section header block at the start of `shb`
// (the encoder has no option for it; the block layout is fixed by the pcapng draft, section 4.1).
void AddSectionComment(std::string& bytes, std::string_view comment) {
  if (comment.empty() || bytes.size() < kShbFixedBytes + 4) return;
  uint32_t length = 0;
  std::memcpy(&length, bytes.data() + 4, sizeof length);
  if (length > bytes.size() || length < kShbFixedBytes + 4) return;
  comment = comment.substr(0, std::min<size_t>(comment.size(), UINT16_MAX));
  std::string option;
  internal::AppendHost<uint16_t>(option, kOptComment);
  internal::AppendHost<uint16_t>(option, static_cast<uint16_t>(comment.size()));
  option.append(comment);
  option.append(internal::PaddingTo4(comment.size()), '\0');
  if (length == kShbFixedBytes + 4) {  // no options yet: they need their end marker
    internal::AppendHost<uint16_t>(option, kOptEndOfOpt);
    internal::AppendHost<uint16_t>(option, 0);
  }
  bytes.insert(kShbFixedBytes, option);
  const auto new_length = static_cast<uint32_t>(length + option.size());
  internal::PutHost<uint32_t>(bytes, 4, new_length);
  internal::PutHost<uint32_t>(bytes, new_length - 4, new_length);
}

// Parses "NNNNN_YYYYmmddHHMMSS.pcapng" after "STEM_"; the number, or nullopt.
std::optional<uint32_t> RingNumber(const std::string& name, const std::string& stem) {
  const std::string_view suffix = ".pcapng";
  if (name.size() < stem.size() + 1 + 5 + 1 + 14 + suffix.size()) return std::nullopt;
  if (name.compare(0, stem.size(), stem) != 0 || name[stem.size()] != '_') return std::nullopt;
  if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return std::nullopt;
  const std::string middle =
      name.substr(stem.size() + 1, name.size() - stem.size() - 1 - suffix.size());
  const size_t underscore = middle.find('_');
  if (underscore == std::string::npos || underscore < 5 || middle.size() - underscore - 1 != 14) {
    return std::nullopt;
  }
  const std::string number = middle.substr(0, underscore);
  const std::string stamp = middle.substr(underscore + 1);
  auto digits = [](const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(number) || !digits(stamp) || number.size() > 9) return std::nullopt;
  return static_cast<uint32_t>(std::stoul(number));
}

// The UTC time in a ring file's name ("..._NNNNN_YYYYmmddHHMMSS.pcapng"), Unix seconds; 0 when
// the name holds none.
int64_t RingNameSeconds(const std::string& name) {
  const std::string_view suffix = ".pcapng";
  if (name.size() < 14 + suffix.size()) return 0;
  const std::string stamp = name.substr(name.size() - suffix.size() - 14, 14);
  struct tm t {};
  if (::strptime(stamp.c_str(), "%Y%m%d%H%M%S", &t) == nullptr) return 0;
  return static_cast<int64_t>(::timegm(&t));
}

class RotatingWriter final : public RingWriter {
 public:
  RotatingWriter(RingOptions options, std::string application)
      : options_(std::move(options)),
        application_(std::move(application)),
        min_free_(options_.keep_free_bytes == 0 && options_.min_free_bytes != 0),
        floor_bytes_(min_free_ ? options_.min_free_bytes : options_.keep_free_bytes),
        floor_policy_(min_free_ ? kMinFreeFloorPolicy : kRecordingFloorPolicy) {
    const PathParts parts = SplitPath(options_.path);
    dir_ = parts.dir;
    stem_ = parts.stem;
    pending_.reserve(internal::kInitialBufferBytes);
  }

  ~RotatingWriter() override {
    // A stopped writer has reported why already (its status went to the caller).
    if (!closed_ && stopped_.ok()) {
      if (Status status = Close(); !status.ok()) {
        Log("finishing " + file_path_ + ": " + status.message());
      }
    }
    if (dir_fd_ >= 0) ::close(dir_fd_);
  }

  RingCounts Counts() const override { return counts_; }

  void Trim() override {
    if (dir_fd_ >= 0) TrimRing();
  }

  // Adopts the files of an earlier run when asked, and opens the first file.
  Status Start() {
    dir_fd_ = options_.dir_fd >= 0 ? ::fcntl(options_.dir_fd, F_DUPFD_CLOEXEC, 0)
                                   : ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd_ < 0) {
      const int err = errno;
      std::string message = "open(" + dir_ + "): " + std::strerror(err);
      stopped_ = err == EMFILE || err == ENFILE ? Internal(std::move(message))
                                                : InvalidArgument(std::move(message));
      return stopped_;
    }
    // Numbering continues after the highest file of this name already there (an earlier run's),
    // so a new run never replaces an earlier file nor starts again at 00001 beside it.
    const std::map<uint32_t, std::string> existing = ExistingFiles();
    if (!existing.empty()) next_number_ = existing.rbegin()->first + 1;
    if (options_.adopt_existing_files) AdoptExisting(existing);
    const int64_t now = static_cast<int64_t>(std::time(nullptr));
    return OpenFile(now, options_.seconds > 0 ? SlotOf(now) : 0);
  }

  Status AddInterface(const InterfaceInfo& info) override {
    CAPD_RETURN_IF_ERROR(Usable());
    interfaces_.push_back(info);
    counters_.emplace_back();
    file_delivered_.push_back(0);
    const size_t before = pending_.size();
    CAPD_RETURN_IF_ERROR(Encode(encoder_->AddInterface(info)));
    file_bytes_ += pending_.size() - before;
    return Status::Ok();
  }

  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data, std::string_view comment) override {
    CAPD_RETURN_IF_ERROR(Usable());
    if (interface_index >= interfaces_.size()) {
      return InvalidArgument("unknown interface index " + std::to_string(interface_index));
    }
    const auto seconds = static_cast<int64_t>(timestamp_ns / 1'000'000'000ULL);
    if (options_.seconds > 0) {
      const int64_t slot = SlotOf(seconds);
      if (slot > file_slot_) CAPD_RETURN_IF_ERROR(Rotate(SlotStart(slot), slot));
    }
    const size_t before = pending_.size();
    CAPD_RETURN_IF_ERROR(Encode(
        encoder_->WritePacket(interface_index, timestamp_ns, original_length, data, comment)));
    const uint64_t block = pending_.size() - before;
    if (options_.max_bytes > 0 && file_packets_ > 0 &&
        file_bytes_ + block + statistics_reserve_ > options_.max_bytes) {
      // The packet goes first in the next file instead: the block is the same there, since
      // every file numbers its interfaces alike.
      std::string moved = pending_.substr(before);
      pending_.resize(before);
      CAPD_RETURN_IF_ERROR(Rotate(seconds, file_slot_));
      pending_ += moved;
    }
    file_bytes_ += block;
    if (file_packets_ == 0 || timestamp_ns < file_first_ns_) file_first_ns_ = timestamp_ns;
    if (file_packets_ == 0 || timestamp_ns > file_last_ns_) file_last_ns_ = timestamp_ns;
    ++file_packets_;
    ++pending_packets_;
    ++file_delivered_[interface_index];
    return Status::Ok();
  }

  // Written into the current file, and kept (up to kMaxRepeatedSecretsBytes, the newest) to
  // start every later file with, after its interfaces: each file decrypts on its own.
  Status WriteDecryptionSecrets(uint32_t secrets_type, std::string_view secrets) override {
    CAPD_RETURN_IF_ERROR(Usable());
    const size_t before = pending_.size();
    CAPD_RETURN_IF_ERROR(Encode(encoder_->WriteDecryptionSecrets(secrets_type, secrets)));
    file_bytes_ += pending_.size() - before;
    secrets_.push_back({secrets_type, std::string(secrets)});
    secrets_bytes_ += secrets.size();
    while (secrets_bytes_ > kMaxRepeatedSecretsBytes && secrets_.size() > 1) {
      secrets_bytes_ -= secrets_.front().second.size();
      secrets_.pop_front();
    }
    return Status::Ok();
  }

  // Kept, not written: each file gets the latest counters in its statistics blocks when it is
  // finished, with isb_usrdeliv = the packets of that interface in that file.
  Status WriteStatistics(uint32_t interface_index, const InterfaceCounters& counters) override {
    CAPD_RETURN_IF_ERROR(Usable());
    if (interface_index >= interfaces_.size()) {
      return InvalidArgument("unknown interface index " + std::to_string(interface_index));
    }
    counters_[interface_index] = counters;
    return MeasureStatisticsBlocks();
  }

  Status Flush() override {
    CAPD_RETURN_IF_ERROR(Usable());
    if (options_.may_delete) TrimRing();  // files held back may have been handed off since
    CAPD_RETURN_IF_ERROR(KeepFloor(/*now=*/false));
    return WritePending();
  }

  Status Tick(uint64_t now_ns) override {
    CAPD_RETURN_IF_ERROR(Usable());
    if (options_.may_delete) TrimRing();
    if (floor_bytes_ != 0 && now_ns >= floor_checked_ns_ + kFloorCheckNs) {
      floor_checked_ns_ = now_ns;
      CAPD_RETURN_IF_ERROR(KeepFloor(/*now=*/true));
    }
    if (options_.seconds == 0 || now_ns < kTickGraceNs) return Status::Ok();
    const auto seconds = static_cast<int64_t>((now_ns - kTickGraceNs) / 1'000'000'000ULL);
    const int64_t slot = SlotOf(seconds);
    if (slot > file_slot_) CAPD_RETURN_IF_ERROR(Rotate(SlotStart(slot), slot));
    return Status::Ok();
  }

  Status Close() override {
    if (closed_) return stopped_;
    closed_ = true;
    if (!stopped_.ok()) return stopped_;
    return FinishFile();
  }

 private:
  // Slots are numbered across days so that they only grow; a day holds ceil(86400 / seconds).
  int64_t SlotsPerDay() const { return (kSecondsPerDay + options_.seconds - 1) / options_.seconds; }
  int64_t SlotOf(int64_t unix_seconds) const {
    const int64_t day = unix_seconds / kSecondsPerDay;
    const int64_t in_day = unix_seconds % kSecondsPerDay;
    return day * SlotsPerDay() + in_day / options_.seconds;
  }
  int64_t SlotStart(int64_t slot) const {
    return slot / SlotsPerDay() * kSecondsPerDay + slot % SlotsPerDay() * options_.seconds;
  }

  Status Usable() const {
    if (!stopped_.ok()) return stopped_;
    if (closed_) return Internal("capture file ring " + options_.path + " is closed");
    return Status::Ok();
  }

  // The encoder writes into pending_ through its MemorySink on every call.
  Status Encode(Status status) {
    CAPD_RETURN_IF_ERROR(status);
    return encoder_->Flush();
  }

  // Packets count once their blocks are on disk. A failed write is never repeated (as
  // PcapngWriter::Flush); what it left of a block is cut off and the writer stops.
  Status WritePending() {
    if (pending_.empty() || !file_) return Status::Ok();
    // Room for these bytes first (a rotation writes up to a file's worth): stopping is decided
    // at Flush, Tick and OpenFile.
    if (floor_bytes_ != 0) CAPD_RETURN_IF_ERROR(MakeRoomAboveFloor(false).status());
    const uint64_t size = pending_.size();
    Status status = file_->Write(pending_);
    pending_.clear();
    const uint64_t packets = std::exchange(pending_packets_, 0);
    if (status.ok()) {
      floor_written_ += size;
      file_written_ += size;
      file_disk_packets_ += packets;
      counts_.packets_on_disk += packets;
      return status;
    }
    if (Status cut = file_->Truncate(file_written_); !cut.ok()) Log(cut.message());
    stopped_ = status;
    return status;
  }

  // How many bytes the statistics blocks at the end of a file take with the counters kept now.
  Status MeasureStatisticsBlocks() {
    std::string scratch;
    auto encoder = MakePcapngWriter(std::make_unique<MemorySink>(&scratch), application_);
    for (const InterfaceInfo& info : interfaces_) CAPD_RETURN_IF_ERROR(encoder->AddInterface(info));
    CAPD_RETURN_IF_ERROR(encoder->Flush());
    const size_t header = scratch.size();
    for (size_t i = 0; i < counters_.size(); ++i) {
      if (counters_[i]) {
        CAPD_RETURN_IF_ERROR(encoder->WriteStatistics(static_cast<uint32_t>(i), *counters_[i]));
      }
    }
    CAPD_RETURN_IF_ERROR(encoder->Flush());
    statistics_reserve_ = scratch.size() - header;
    return Status::Ok();
  }

  Status OpenFile(int64_t name_seconds, int64_t slot) {
    CAPD_RETURN_IF_ERROR(KeepFloor(/*now=*/true));
    const std::string name = RingFileName(options_.path, next_number_, name_seconds);
    const std::string path = dir_ + "/" + name;
    // The file gets its name only once its header is written (below), so a capctl killed in
    // between leaves no empty ring file behind. Without O_TMPFILE: a named file at once.
    auto sink =
        FdSink::CreateUnnamedIn(dir_fd_, dir_, options_.file_mode, options_.exact_file_mode);
    const bool unnamed = sink.ok();
    if (!sink.ok() && sink.status().code() == StatusCode::kFailedPrecondition) {
      sink = FdSink::CreateIn(dir_fd_, name, path, options_.file_mode, options_.exact_file_mode);
    }
    if (!sink.ok()) {
      stopped_ = sink.status();
      return stopped_;
    }
    ++next_number_;
    file_ = std::move(sink).value();
    file_path_ = path;
    file_name_ = name;
    file_slot_ = slot;
    file_packets_ = 0;
    file_first_ns_ = 0;
    file_last_ns_ = 0;
    file_number_ = next_number_ - 1;
    file_name_seconds_ = name_seconds;
    file_written_ = 0;
    file_disk_packets_ = 0;
    pending_packets_ = 0;
    std::fill(file_delivered_.begin(), file_delivered_.end(), 0);
    pending_.clear();
    encoder_ = MakePcapngWriter(std::make_unique<MemorySink>(&pending_), application_);
    CAPD_RETURN_IF_ERROR(encoder_->Flush());  // the section header
    if (first_file_) AddSectionComment(pending_, options_.first_file_comment);
    first_file_ = false;
    for (const InterfaceInfo& info : interfaces_) {
      CAPD_RETURN_IF_ERROR(Encode(encoder_->AddInterface(info)));
    }
    for (const auto& [type, secrets] : secrets_) {
      CAPD_RETURN_IF_ERROR(Encode(encoder_->WriteDecryptionSecrets(type, secrets)));
    }
    file_bytes_ = pending_.size();
    // The header reaches the disk at once: a new file is a valid (empty) capture from the start.
    if (Status written = WritePending(); !written.ok()) {
      file_.reset();  // an unnamed file goes with its descriptor; a named one, empty, goes too
      if (!unnamed) ::unlinkat(dir_fd_, name.c_str(), 0);
      return written;
    }
    if (unnamed) {
      if (Status published = file_->PublishIn(dir_fd_, name, path); !published.ok()) {
        stopped_ = published;
        return published;
      }
    }
    TrimRing();
    return Status::Ok();
  }

  // Statistics blocks, the last bytes, close; then the file is left alone for good.
  Status FinishFile() {
    if (!file_) return Status::Ok();
    for (size_t i = 0; i < counters_.size(); ++i) {
      if (!counters_[i]) continue;
      InterfaceCounters counters = *counters_[i];
      counters.delivered = file_delivered_[i];
      CAPD_RETURN_IF_ERROR(Encode(encoder_->WriteStatistics(static_cast<uint32_t>(i), counters)));
    }
    Status status = WritePending();
    file_.reset();
    finished_.push_back({file_name_, file_path_, file_disk_packets_, file_written_});
    if (!status.ok()) return status;
    if (options_.on_file_finished) options_.on_file_finished(file_path_);
    if (options_.on_file_details) {
      FinishedFile details;
      details.path = file_path_;
      details.number = file_number_;
      details.opened_seconds = file_name_seconds_;
      details.bytes = file_written_;
      details.packets = file_disk_packets_;
      details.first_ns = file_first_ns_;
      details.last_ns = file_last_ns_;
      for (const InterfaceInfo& info : interfaces_) {
        details.interfaces.push_back(info.name);
        details.agents.push_back(info.agent);
        if (std::find(details.link_types.begin(), details.link_types.end(), info.link_type) ==
            details.link_types.end()) {
          details.link_types.push_back(info.link_type);
        }
      }
      options_.on_file_details(details);
    }
    return status;
  }

  Status Rotate(int64_t name_seconds, int64_t slot) {
    CAPD_RETURN_IF_ERROR(FinishFile());
    return OpenFile(name_seconds, slot);
  }

  // The current file counts towards max_files while it is open. Files may_delete holds back are
  // skipped: the oldest of the others go instead.
  void TrimRing() {
    if (options_.max_files == 0) return;
    const size_t keep = closed_ || !file_ ? options_.max_files : options_.max_files - 1;
    size_t i = 0;
    while (finished_.size() > keep && i < finished_.size()) {
      if (MayDelete(finished_[i].path)) {
        RemoveAt(i);
      } else {
        ++i;
      }
    }
    if (finished_.size() > keep && !said_held_) {
      said_held_ = true;
      Log("keeping " + std::to_string(finished_.size() + (keep < options_.max_files ? 1 : 0)) +
          " files in the ring, more than --rotate-files " + std::to_string(options_.max_files) +
          ": the oldest are not handed off yet (each is deleted once it is)");
    }
  }

  bool MayDelete(const std::string& path) const {
    return !options_.may_delete || options_.may_delete(path);
  }

  void RemoveAt(size_t index) {
    const RingFile file = finished_[index];
    finished_.erase(finished_.begin() + static_cast<std::ptrdiff_t>(index));
    if (::unlinkat(dir_fd_, file.name.c_str(), 0) != 0 && errno != ENOENT) {
      Log("cannot delete " + dir_ + "/" + file.name + " from the ring: " + std::strerror(errno));
      return;
    }
    counts_.packets_on_disk -= std::min(counts_.packets_on_disk, file.packets);
    counts_.packets_removed += file.packets;
  }

  StatusOr<uint64_t> FreeBytes() const {
    struct statvfs fs;
    if (::fstatvfs(dir_fd_, &fs) != 0) {
      return Internal("statvfs(" + dir_ + "): " + std::strerror(errno));
    }
    return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  }

  // The floor (capfile/free_space.h): deletes the files its policy allows and says whether free
  // space is still below it. now: statvfs whatever was written since the last check; otherwise
  // only when the bytes written since, and those pending, could have crossed the floor.
  StatusOr<bool> MakeRoomAboveFloor(bool now) {
    const uint64_t floor = floor_bytes_;
    if (floor == 0) return false;
    if (!now && floor_free_ >= floor && floor_free_ - floor >= floor_written_ + pending_.size()) {
      return false;
    }
    auto free = FreeBytes();
    if (!free.ok()) return free.status();
    floor_free_ = free.value();
    floor_written_ = 0;
    // What is pending is about to be written: room for it too.
    const uint64_t needed = floor + pending_.size();
    if (floor_free_ >= needed) return false;
    std::vector<FloorFile> files;
    for (const RingFile& file : finished_) files.push_back({file.bytes, MayDelete(file.path)});
    // The file open now, or the one about to open (rotation), counts towards max_files.
    const size_t keep = options_.max_files == 0 ? std::numeric_limits<size_t>::max()
                        : closed_               ? options_.max_files
                                                : options_.max_files - 1;
    const FloorDecision decision = DecideFloor(floor_free_, needed, files, keep, floor_policy_);
    // Oldest first; each deletion shifts the later indices down by one.
    size_t deleted = 0;
    for (const size_t index : decision.remove) {
      const size_t at = index - deleted++;
      const bool held = !files[index].handed_off;
      if (held) ++counts_.files_deleted_unhanded;
      Log(DeletingLine(finished_[at].path, held));
      RemoveAt(at);
    }
    if (!decision.remove.empty()) {
      free = FreeBytes();
      if (!free.ok()) return free.status();
      floor_free_ = free.value();
    }
    return floor_free_ < floor;
  }

  // Stops the ring when free space stays below the floor. The ring's files stay. capd's
  // recordings finish the current file whole (its statistics blocks, its note); capctl closes it
  // as it is, with what was pending.
  Status KeepFloor(bool now) {
    auto below = MakeRoomAboveFloor(now);
    if (!below.ok()) return stopped_ = below.status();
    if (!below.value()) return Status::Ok();
    const uint64_t left = floor_free_;
    if (!min_free_) {
      const Status finished = FinishFile();
      if (!finished.ok()) return stopped_ = finished;
      stopped_ = Status(StatusCode::kResourceExhausted,
                        "stopped: free space on " + dir_ + " below the floor of " +
                            std::to_string(floor_bytes_) + " bytes (" + std::to_string(left) +
                            " left)");
      return stopped_;
    }
    (void)WritePending();
    file_.reset();
    // Only files not handed off yet are left: they are never deleted to make room.
    std::string held;
    for (const RingFile& file : finished_) held += (held.empty() ? "" : ", ") + file.path;
    stopped_ = Status(
        StatusCode::kResourceExhausted,
        "free space in " + dir_ + " is " + std::to_string(left) + " bytes, below --min-free " +
            std::to_string(floor_bytes_) +
            (finished_.empty() ? ", and no older file of the ring is left to delete"
                               : ", and the older files of the ring are not handed off yet (" +
                                     held + "), so none is deleted") +
            ": stopped writing" + (file_path_.empty() ? "" : " (last file " + file_path_ + ")"));
    return stopped_;
  }

  // The line the ring logs for each file it deletes for the floor, in the words of its option.
  std::string DeletingLine(const std::string& path, bool held) const {
    const std::string free = std::to_string(floor_free_);
    if (min_free_) {
      return "free space in " + dir_ + " is " + free + " bytes, below --min-free " +
             std::to_string(floor_bytes_) + ": deleting " + path;
    }
    return "free space on " + dir_ + " is " + free + " bytes, below the floor of " +
           std::to_string(floor_bytes_) + ": deleting " + path +
           (held ? ", not uploaded yet (" + std::to_string(counts_.files_deleted_unhanded) +
                       " such files deleted so far)"
                 : "");
  }

  // The files of this ring's name already in the folder, by number: an earlier run's (capctl run
  // again with the same -w, a recording resumed).
  std::map<uint32_t, std::string> ExistingFiles() const {
    std::map<uint32_t, std::string> found;
    const int listing = ::fcntl(dir_fd_, F_DUPFD_CLOEXEC, 0);
    DIR* dir = listing >= 0 ? ::fdopendir(listing) : nullptr;
    if (dir == nullptr) {
      if (listing >= 0) ::close(listing);
      Log("cannot list " + dir_ + ": " + std::strerror(errno));
      return found;
    }
    while (const struct dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (auto number = RingNumber(name, stem_)) found[*number] = name;
    }
    ::closedir(dir);
    return found;
  }

  // The ring files of an earlier run, oldest first. Each is scanned for its packets, and a block
  // a crash left half written is cut off (that file is never written again otherwise).
  void AdoptExisting(const std::map<uint32_t, std::string>& found) {
    for (const auto& [number, name] : found) {
      const std::string path = dir_ + "/" + name;
      const int fd = ::openat(dir_fd_, name.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) {
        Log("left " + path + " out of the ring: " + std::strerror(errno));
        continue;
      }
      auto scan = ScanPcapng(fd, path);
      if (scan.ok() && scan->whole_bytes > 0 && scan->whole_bytes < scan->file_bytes) {
        if (::ftruncate(fd, static_cast<off_t>(scan->whole_bytes)) == 0) {
          Log("cut " + path + " from " + std::to_string(scan->file_bytes) + " to " +
              std::to_string(scan->whole_bytes) + " bytes, the end of its last whole block");
        } else {
          Log("cannot cut " + path + " to its last whole block: " + std::strerror(errno));
        }
      }
      ::close(fd);
      if (!scan.ok()) {
        Log("left " + path + " out of the ring: " + scan.status().message());
        continue;
      }
      finished_.push_back({name, path, scan->packets, scan->whole_bytes});
      counts_.packets_on_disk += scan->packets;
      if (options_.on_file_adopted) {
        FinishedFile details;
        details.path = path;
        details.number = number;
        details.opened_seconds = RingNameSeconds(name);
        details.bytes = scan->whole_bytes;
        details.packets = scan->packets;
        details.first_ns = scan->first_ns;
        details.last_ns = scan->last_ns;
        details.interfaces = scan->interface_names;
        details.agents.resize(details.interfaces.size());
        for (uint16_t link_type : scan->interface_link_types) {
          if (std::find(details.link_types.begin(), details.link_types.end(), link_type) ==
              details.link_types.end()) {
            details.link_types.push_back(link_type);
          }
        }
        options_.on_file_adopted(details);
      }
    }
  }

  void Log(const std::string& message) const {
    if (options_.log) {
      options_.log(message);
    } else {
      std::fprintf(stderr, "capctl: %s\n", message.c_str());
    }
  }

  const RingOptions options_;
  const std::string application_;
  // The free-space floor: capd's keep_free_bytes, or capctl's min_free_bytes (min_free_), the
  // same floor with the policy and the words of each.
  const bool min_free_;
  const uint64_t floor_bytes_;  // 0: none
  const FloorPolicy floor_policy_;
  std::string dir_;
  std::string stem_;

  std::vector<InterfaceInfo> interfaces_;
  std::vector<std::optional<InterfaceCounters>> counters_;  // latest, by interface
  // Decryption secrets written so far, repeated at the start of every new file. A TLS key log
  // adds ~0.5 KiB per connection; beyond this bound the oldest go (their connections are
  // usually over, or in earlier files).
  static constexpr size_t kMaxRepeatedSecretsBytes = 4 << 20;
  std::deque<std::pair<uint32_t, std::string>> secrets_;
  size_t secrets_bytes_ = 0;
  uint64_t statistics_reserve_ = 0;  // bytes the statistics blocks will add at the end

  struct RingFile {
    std::string name;  // in the folder
    std::string path;  // as on_file_finished had it (dir/name), for may_delete
    uint64_t packets;  // whole on disk
    uint64_t bytes;    // its size
  };
  int dir_fd_ = -1;  // owned

  // The current file.
  std::unique_ptr<FdSink> file_;
  std::string file_path_;                   // for messages and on_file_finished
  std::string file_name_;                   // in the folder
  uint64_t file_written_ = 0;               // bytes that reached the file whole
  uint64_t file_disk_packets_ = 0;          // packets among them
  uint64_t pending_packets_ = 0;            // packets in pending_
  std::unique_ptr<CaptureWriter> encoder_;  // writes into pending_
  std::string pending_;                     // encoded, not yet written
  uint64_t file_bytes_ = 0;                 // written + pending
  uint64_t file_packets_ = 0;
  uint64_t file_first_ns_ = 0;  // the current file's packets' time range
  uint64_t file_last_ns_ = 0;
  uint32_t file_number_ = 0;
  int64_t file_name_seconds_ = 0;
  std::vector<uint64_t> file_delivered_;  // by interface
  int64_t file_slot_ = 0;

  std::deque<RingFile> finished_;  // oldest first
  RingCounts counts_;
  uint32_t next_number_ = 1;
  bool first_file_ = true;
  bool closed_ = false;
  bool said_held_ = false;  // the ring has said it holds more than max_files
  // The floor: free space at the last statvfs, bytes written since, and when (Tick's clock).
  uint64_t floor_free_ = 0;
  uint64_t floor_written_ = 0;
  uint64_t floor_checked_ns_ = 0;
  Status stopped_;  // not ok: nothing more is written
};

}  // namespace

std::string RingFileName(const std::string& path, uint32_t number, int64_t unix_seconds) {
  const time_t t = static_cast<time_t>(unix_seconds);
  struct tm utc;
  gmtime_r(&t, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &utc);
  char digits[16];
  std::snprintf(digits, sizeof digits, "%05u", number);
  return SplitPath(path).stem + "_" + digits + "_" + stamp + ".pcapng";
}

StatusOr<std::unique_ptr<CaptureWriter>> MakeRotatingWriter(const RingOptions& options,
                                                            std::string application) {
  auto ring = MakeRing(options, std::move(application));
  if (!ring.ok()) return ring.status();
  return std::unique_ptr<CaptureWriter>(std::move(ring).value());
}

StatusOr<std::unique_ptr<RingWriter>> MakeRing(const RingOptions& options,
                                               std::string application) {
  if (options.path.empty() || options.path == "-") {
    return InvalidArgument("rotating files need a file path (-w PATH), not stdout");
  }
  if (options.seconds > kSecondsPerDay) {
    return InvalidArgument("rotation every " + std::to_string(options.seconds) +
                           " s: at most 86400 (a day)");
  }
  if (options.min_free_bytes != 0 && options.keep_free_bytes != 0) {
    return InvalidArgument("min_free_bytes and keep_free_bytes are one floor: set one of them");
  }
  if (SplitPath(options.path).stem.empty()) {
    return InvalidArgument("-w " + options.path + " names a folder, not a file");
  }
  auto writer = std::make_unique<RotatingWriter>(options, std::move(application));
  CAPD_RETURN_IF_ERROR(writer->Start());
  return std::unique_ptr<RingWriter>(std::move(writer));
}

}  // namespace capd::capfile

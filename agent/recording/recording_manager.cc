#include "agent/recording/recording_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <limits>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>
#include <utility>

#include "agent/stream/stop_signal.h"
#include "agent/stream/stream_sink.h"
#include "capfile/ethernet_framing.h"
#include "capfile/finished_note.h"
#include "capfile/rotating_writer.h"
#include "capfile/stream_to_file.h"

namespace capd::agent {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMaxQueueBytes = 64 << 20;  // a few seconds of a busy link
constexpr uint64_t kDefaultMaxBytes = 100'000'000;
constexpr uint32_t kDefaultMaxFiles = 10;
constexpr auto kPersistPeriod = std::chrono::seconds(2);
constexpr char kRequestFile[] = "request.txtpb";
constexpr char kStateFile[] = "recording.state";
constexpr char kReserveFile[] = "recording.reserve";
// Room kept for the last state rewrite: a ring can fill the disk to its last byte, and a failed
// recording whose state file still said running would resume after a restart. A state file is
// a few hundred bytes; its temporary and the old one both exist for a moment.
constexpr off_t kReserveBytes = 64 << 10;
// Whatever umask capd was started with: what is recorded is for capd's user (and its group).
constexpr mode_t kFolderMode = 0750;
constexpr mode_t kFileMode = 0640;
constexpr size_t kMaxStateFileBytes = 1 << 20;

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string IsoTime(uint64_t ns) {
  const time_t t = static_cast<time_t>(ns / 1'000'000'000ULL);
  struct tm utc;
  gmtime_r(&t, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

// What recording.state holds.
struct PersistedState {
  v1::RecordingInfo::State state = v1::RecordingInfo::RUNNING;
  uint64_t started_ns = 0;
  uint64_t last_seen_ns = 0;     // the last time capd was known to be recording
  uint64_t packets = 0;          // whole in the files, those the ring deleted included
  uint64_t removed_packets = 0;  // in files the ring deleted (no longer countable)
  uint64_t drops = 0;
  uint64_t deleted_before_upload = 0;  // files the floor deleted before their upload
  std::vector<std::string> gaps;
  std::string message;
};

std::string Serialize(const PersistedState& s) {
  std::ostringstream out;
  out << "state " << v1::RecordingInfo::State_Name(s.state) << "\n"
      << "started_ns " << s.started_ns << "\n"
      << "last_seen_ns " << s.last_seen_ns << "\n"
      << "packets " << s.packets << "\n"
      << "removed_packets " << s.removed_packets << "\n"
      << "drops " << s.drops << "\n";
  if (s.deleted_before_upload != 0) {
    out << "deleted_before_upload " << s.deleted_before_upload << "\n";
  }
  for (const std::string& gap : s.gaps) out << "gap " << gap << "\n";
  if (!s.message.empty()) out << "message " << s.message << "\n";
  return out.str();
}

PersistedState Parse(const std::string& text) {
  PersistedState s;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    const std::string key = line.substr(0, space);
    const std::string value = line.substr(space + 1);
    try {
      if (key == "state") {
        v1::RecordingInfo::State state;
        if (v1::RecordingInfo::State_Parse(value, &state)) s.state = state;
      } else if (key == "started_ns") {
        s.started_ns = std::stoull(value);
      } else if (key == "last_seen_ns") {
        s.last_seen_ns = std::stoull(value);
      } else if (key == "packets") {
        s.packets = std::stoull(value);
      } else if (key == "removed_packets") {
        s.removed_packets = std::stoull(value);
      } else if (key == "drops") {
        s.drops = std::stoull(value);
      } else if (key == "deleted_before_upload") {
        s.deleted_before_upload = std::stoull(value);
      } else if (key == "gap") {
        s.gaps.push_back(value);
      } else if (key == "message") {
        s.message = value;
      }
    } catch (const std::exception&) {
      // A damaged counter starts again from 0; the recording itself still resumes.
    }
  }
  return s;
}

// A descriptor, closed when it goes away.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

std::string Errno(const std::string& call, const std::string& what, int err) {
  return call + "(" + what + "): " + std::strerror(err);
}

std::string Octal(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// A folder capd records into must be capd's user's own and writable by no one else: another
// user who can write there could plant links that capd (perhaps root) writes through, or files it
// adopts. `what` names the folder in the refusal.
Status CheckOwnFolder(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Internal(Errno("stat", what, errno));
  if (!S_ISDIR(st.st_mode))
    return Status(StatusCode::kFailedPrecondition, what + " is not a folder");
  if (st.st_uid != ::geteuid()) {
    return Status(StatusCode::kFailedPrecondition,
                  what + " belongs to uid " + std::to_string(st.st_uid) +
                      ", not to capd's user (uid " + std::to_string(::geteuid()) +
                      "): refused; chown it to the user capd runs as");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return Status(StatusCode::kFailedPrecondition,
                  what + " is writable by its group or by others (mode " + Octal(st.st_mode) +
                      "): refused, another user could plant links in it; chmod go-w it");
  }
  return Status::Ok();
}

// Written to a temporary file and renamed over the old one, both in the folder `dir_fd`: a crash
// leaves one or the other, and the data is on disk (fsync) before the rename makes it the file.
// The temporary is created with O_EXCL | O_NOFOLLOW after removing whatever has its name, so a
// link planted there is removed, never written through.
Status WriteFileAtomically(int dir_fd, const fs::path& dir, const std::string& name,
                           const std::string& contents) {
  const std::string temporary = name + ".tmp";
  const std::string shown = (dir / temporary).string();
  if (::unlinkat(dir_fd, temporary.c_str(), 0) != 0 && errno != ENOENT) {
    return Internal(Errno("unlink", shown, errno));
  }
  OwnedFd fd(::openat(dir_fd, temporary.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, kFileMode));
  if (!fd) return Internal(Errno("open", shown, errno));
  auto fail = [&](const std::string& call, int err) {
    fd.reset();
    ::unlinkat(dir_fd, temporary.c_str(), 0);  // gives back the space a full disk needs
    return Internal(Errno(call, shown, err));
  };
  if (::fchmod(fd.get(), kFileMode) != 0) return fail("chmod", errno);
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write", n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail("fsync", errno);
  fd.reset();
  if (::renameat(dir_fd, temporary.c_str(), dir_fd, name.c_str()) != 0) {
    const int err = errno;
    ::unlinkat(dir_fd, temporary.c_str(), 0);
    return Internal(Errno("rename", shown, err));
  }
  // The rename is on disk once the folder is.
  if (::fsync(dir_fd) != 0) return Internal(Errno("fsync", dir.string(), errno));
  return Status::Ok();
}

// A regular file in `dir_fd`, not through a link; nullopt otherwise.
std::optional<std::string> ReadFileAt(int dir_fd, const std::string& name) {
  OwnedFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  std::string text;
  char buffer[8192];
  while (text.size() < kMaxStateFileBytes) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

// The folder `name` in `parent_fd`, never through a link.
StatusOr<OwnedFd> OpenFolderAt(int parent_fd, const std::string& name, const std::string& shown) {
  struct stat st {};
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
    return Status(StatusCode::kFailedPrecondition,
                  shown + " is a symbolic link: refused (capd follows no links in --record-dir)");
  }
  OwnedFd fd(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Status(StatusCode::kFailedPrecondition, Errno("open", shown, errno));
  return fd;
}

}  // namespace

// One recording: its capture thread, its queue, its writer thread and its persisted state.
class Recording final : public StreamSink {
 public:
  // parent_fd: DIR, open for as long as the recording exists (the manager's); the recording's
  // folder is DIR/<name>, opened again (never through a link) whenever it is written.
  Recording(int parent_fd, fs::path dir, v1::StartRecordingRequest request, PersistedState state,
            const AgentIdentity& identity, CaptureHub& hub, capfile::FreeSpaceFloor keep_free)
      : parent_fd_(parent_fd),
        dir_(std::move(dir)),
        request_(std::move(request)),
        identity_(identity),
        hub_(hub),
        keep_free_(keep_free),
        state_(std::move(state)) {}

  ~Recording() override {
    if (active_) Stop(v1::StreamEnd::AGENT_SHUTDOWN, /*keep_running=*/true);
  }

  const v1::StartRecordingRequest& request() const { return request_; }

  Status SaveRequest() {
    const std::string text = RecordingRequestText(request_);
    OwnedFd opened;
    const int folder = Folder(opened);
    if (folder < 0) return Internal("cannot open the folder of recording " + request_.name());
    return WriteFileAtomically(folder, dir_, kRequestFile, text);
  }

  // Opens the ring and the capture; returns once the capture runs or failed to open. fresh: a
  // new recording (capctl record start), refused when its ring does not fit above the floor; a
  // resumed one is not (the floor stops it if it must).
  Status Start(const std::string& gap_note, bool fresh) {
    std::lock_guard control(control_mu_);
    // The folder is held open while the recording runs (and only then: a stopped recording
    // holds no descriptor).
    auto folder = OpenOwnFolder();
    if (!folder.ok()) {
      Fail(folder.status().message());
      return folder.status();
    }
    dir_fd_ = std::move(folder).value();
    capfile::RingOptions rotation;
    rotation.path = (dir_ / (request_.name() + ".pcapng")).string();
    rotation.max_bytes =
        request_.rotation().max_bytes() != 0 ? request_.rotation().max_bytes() : kDefaultMaxBytes;
    rotation.seconds = request_.rotation().seconds();
    rotation.max_files =
        request_.rotation().max_files() != 0 ? request_.rotation().max_files() : kDefaultMaxFiles;
    // Adopted files are counted again: after a kill -9 the state file's counters lag them.
    rotation.adopt_existing_files = true;
    rotation.first_file_comment = gap_note;
    auto floor = FloorFor(rotation, fresh);
    if (!floor.ok()) {
      dir_fd_.reset();
      return floor.status();
    }
    rotation.keep_free_bytes = floor.value();
    rotation.dir_fd = dir_fd_.get();
    rotation.file_mode = kFileMode;
    rotation.exact_file_mode = true;
    const std::string name = request_.name();
    rotation.log = [name](const std::string& m) { spdlog::warn("recording {}: {}", name, m); };
    // Each finished file gets its note (capfile/finished_note.h): what capd-upload uploads.
    rotation.on_file_details = [this](const capfile::FinishedFile& file) { NoteFinished(file); };
    // A file of an earlier run without its note was being written when capd died: it is finished
    // now (the ring cut a torn last block and never writes it again), so it gets its note too
    // and capd-upload sends it like any other.
    rotation.on_file_adopted = [this](const capfile::FinishedFile& file) {
      const std::string note = fs::path(file.path).filename().string() + capfile::kFinishedSuffix;
      struct stat st {};
      if (dir_fd_ && ::fstatat(dir_fd_.get(), note.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 &&
          errno == ENOENT) {
        NoteFinished(file);
      }
    };
    if (!request_.upload().empty()) {
      // A file leaves the ring (max_files) only once capd-upload has put it in its destination.
      rotation.may_delete = [this](const std::string& path) {
        const std::string uploaded = fs::path(path).filename().string() + capfile::kUploadedSuffix;
        struct stat st {};
        return dir_fd_ &&
               ::fstatat(dir_fd_.get(), uploaded.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               S_ISREG(st.st_mode);
      };
    }
    CreateReserve();
    auto writer = capfile::MakeRing(rotation, "capd recording " + name);
    if (!writer.ok()) {
      Fail(writer.status().message());  // not resumed again at the next start
      dir_fd_.reset();
      return writer.status();
    }
    writer_ = std::move(writer).value();
    // Files that are uploaded hold one link type each, the form Arkime's reader takes: under
    // decapsulation, bare-IP sessions get the made-up Ethernet header `capctl serve` uses.
    if (!request_.upload().empty() && request_.decap().mode() != v1::Decapsulation::NONE) {
      framing_ = capfile::FrameBareIpAsEthernet(*writer_, capfile::SnaplenRaise::kEveryInterface);
    }
    to_file_ = std::make_unique<capfile::StreamToFile>(framing_ ? *framing_ : *writer_);
    writer_ok_ = true;
    {
      std::lock_guard lock(mu_);
      run_counts_ = writer_->Counts();
      state_.state = v1::RecordingInfo::RUNNING;
      state_.message.clear();
      if (state_.started_ns == 0) state_.started_ns = NowNs();
      state_.last_seen_ns = NowNs();
    }
    // One stop signal (an eventfd) per run: a stopped recording stays listed and fetchable for
    // as long as capd runs, and must not hold a descriptor meanwhile.
    stop_ = std::make_unique<StopSignal>();
    writer_thread_ = std::thread(&Recording::WriterMain, this);
    capture_thread_ = std::thread(&Recording::CaptureMain, this);
    active_ = true;
    std::unique_lock lock(mu_);
    set_up_.wait(lock, [this] { return setup_done_; });
    if (!setup_status_.ok()) {
      lock.unlock();
      JoinThreads();
      Fail(setup_status_.message());
      dir_fd_.reset();
      return setup_status_;
    }
    PersistLocked();
    return Status::Ok();
  }

  // Ends the capture and the files. keep_running: capd is stopping; the state stays "running"
  // so the recording resumes at the next start.
  void Stop(v1::StreamEnd::Reason reason, bool keep_running) {
    std::lock_guard control(control_mu_);
    if (stop_) stop_->Request(reason);
    JoinThreads();
    ReleaseReserve();
    std::lock_guard lock(mu_);
    if (!keep_running && state_.state == v1::RecordingInfo::RUNNING) {
      state_.state = v1::RecordingInfo::STOPPED;
    }
    state_.last_seen_ns = NowNs();
    PersistLocked();
    dir_fd_.reset();
  }

  void Fail(const std::string& message) {
    ReleaseReserve();
    std::lock_guard lock(mu_);
    state_.state = v1::RecordingInfo::FAILED;
    state_.message = message;
    PersistLocked();
  }

  bool running() {
    std::lock_guard lock(mu_);
    return state_.state == v1::RecordingInfo::RUNNING && active_;
  }

  // The ring's files, oldest first.
  std::vector<fs::path> Files() const {
    std::vector<fs::path> files;
    const std::regex pattern(std::regex_replace(request_.name(), std::regex(R"([.])"), R"(\.)") +
                             R"(_\d{5,}_\d{14}\.pcapng)");
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(dir_, error)) {
      // Regular files only: a link under a ring file's name is never listed or fetched.
      if (!entry.is_regular_file(error) || entry.is_symlink(error)) continue;
      if (std::regex_match(entry.path().filename().string(), pattern)) {
        files.push_back(entry.path());
      }
    }
    // Numbers have at least five digits and grow: sort by number, then name.
    std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
      const std::string x = a.filename().string(), y = b.filename().string();
      return x.size() != y.size() ? x.size() < y.size() : x < y;
    });
    return files;
  }

  v1::RecordingInfo Info() {
    v1::RecordingInfo info;
    info.set_name(request_.name());
    info.set_interface(request_.interface());
    info.set_filter(request_.filter());
    *info.mutable_rotation() = request_.rotation();
    uint64_t bytes = 0;
    for (const fs::path& file : Files()) {
      info.add_files(file.filename().string());
      std::error_code error;
      bytes += fs::file_size(file, error);
    }
    info.set_bytes(bytes);
    info.set_upload(request_.upload());
    if (!request_.upload().empty()) info.set_files_awaiting_upload(AwaitingUpload());
    std::lock_guard lock(mu_);
    info.set_files_deleted_before_upload(DeletedBeforeUploadLocked());
    info.set_state(state_.state);
    info.set_started_ns(state_.started_ns);
    info.set_packets(PacketsLocked());
    info.set_drops(state_.drops + RunDropsLocked());
    for (const std::string& gap : state_.gaps) info.add_gaps(gap);
    info.set_message(state_.message);
    return info;
  }

  uint64_t written_through_ns() const { return written_through_ns_.load(); }

  // Finished files (with their note) that have no upload mark yet.
  uint64_t AwaitingUpload() const {
    uint64_t awaiting = 0;
    std::error_code error;
    for (const fs::path& file : Files()) {
      const std::string name = file.string();
      if (fs::is_regular_file(fs::symlink_status(name + capfile::kFinishedSuffix, error)) &&
          !fs::exists(fs::symlink_status(name + capfile::kUploadedSuffix, error))) {
        ++awaiting;
      }
    }
    return awaiting;
  }

  uint64_t last_seen_ns() {
    std::lock_guard lock(mu_);
    return state_.last_seen_ns;
  }

  void AddGap(const std::string& gap) {
    std::lock_guard lock(mu_);
    state_.gaps.push_back(gap);
  }

  // StreamSink (capture thread)
  bool Send(std::unique_ptr<v1::StreamResponse> message, bool droppable) override {
    const size_t size = message->ByteSizeLong();
    std::lock_guard lock(mu_);
    if (!setup_done_) {
      setup_done_ = true;  // the first message: the capture is open
      set_up_.notify_all();
    }
    if (droppable && queued_bytes_ + size > kMaxQueueBytes) {
      if (free_.size() < 16) free_.push_back(std::move(message));
      return false;
    }
    queued_bytes_ += size;
    queue_.push_back({std::move(message), size});
    work_.notify_one();
    return true;
  }

  std::unique_ptr<v1::StreamResponse> NewMessage() override {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      auto message = std::move(free_.back());
      free_.pop_back();
      return message;
    }
    return std::make_unique<v1::StreamResponse>();
  }

 private:
  struct Queued {
    std::unique_ptr<v1::StreamResponse> message;
    size_t bytes;
  };

  void CaptureMain() {
    auto ended = RunCapture(hub_, StreamRequestFor(request_), identity_, *this, *stop_);
    std::lock_guard lock(mu_);
    if (!setup_done_) {
      setup_done_ = true;
      setup_status_ = ended.ok() ? Status::Ok() : ended.status();
      set_up_.notify_all();
    } else if (state_.state != v1::RecordingInfo::RUNNING) {
      // The writer failed (or met the floor) first and stopped the capture: its reason stands.
    } else if (!ended.ok()) {
      state_.state = v1::RecordingInfo::FAILED;
      state_.message = ended.status().message();
    } else if (ended->reason() == v1::StreamEnd::STOP_ON_MATCHED) {
      state_.state = v1::RecordingInfo::STOPPED;
      state_.message = ended->message();
    } else if (ended->reason() == v1::StreamEnd::CAPTURE_ERROR) {
      state_.state = v1::RecordingInfo::FAILED;
      state_.message =
          ended->message().empty() ? "capture failed" : "capture failed: " + ended->message();
    }
    capture_done_ = true;
    work_.notify_one();
  }

  void WriterMain() {
    auto next_persist = std::chrono::steady_clock::now() + kPersistPeriod;
    std::deque<Queued> batch;
    while (true) {
      bool done = false;
      {
        std::unique_lock lock(mu_);
        work_.wait_for(lock, std::chrono::seconds(1),
                       [this] { return !queue_.empty() || capture_done_; });
        batch.swap(queue_);
        queued_bytes_ = 0;
        done = capture_done_ && batch.empty();
      }
      uint64_t newest = 0;
      for (Queued& q : batch) {
        Write(*q.message);
        if (q.message->has_packets() && q.message->packets().timestamp_ns_size() > 0) {
          const auto& times = q.message->packets().timestamp_ns();
          newest = std::max(newest, times[times.size() - 1]);
        }
        std::lock_guard lock(mu_);
        if (q.message->has_packets() && free_.size() < 16) free_.push_back(std::move(q.message));
      }
      batch.clear();
      if (writer_ok_) Check(writer_->Flush());
      // Once flushed: a rewind reads the files up to here (agent/rewind).
      if (writer_ok_ && newest > written_through_ns_.load()) written_through_ns_.store(newest);
      if (writer_ok_) Check(writer_->Tick(NowNs()));
      UpdateCounts();
      if (std::chrono::steady_clock::now() >= next_persist) {
        RemoveOrphanNotes();
        std::lock_guard lock(mu_);
        state_.last_seen_ns = NowNs();
        PersistLocked();
        next_persist = std::chrono::steady_clock::now() + kPersistPeriod;
      }
      if (done) break;
    }
    if (writer_ok_) Check(writer_->Close());
    UpdateCounts();
    to_file_.reset();
    framing_.reset();
    writer_.reset();
    // The end of the run is on disk before anyone is told: a capture that failed is not resumed
    // at the next start.
    std::lock_guard lock(mu_);
    state_.last_seen_ns = NowNs();
    PersistLocked();
  }

  // Writer thread (inside the ring's calls): FILE.finished beside the file the ring just closed.
  // A note that cannot be written is logged; the file then waits for `capctl record fetch`.
  void NoteFinished(const capfile::FinishedFile& finished) {
    if (!dir_fd_) return;
    capfile::FinishedFile file = finished;
    for (std::string& agent : file.agents) {
      if (agent.empty()) agent = identity_.name;
    }
    const std::string name = fs::path(file.path).filename().string() + capfile::kFinishedSuffix;
    Status written =
        WriteFileAtomically(dir_fd_.get(), dir_, name, capfile::FinishedNoteText(file));
    if (!written.ok()) spdlog::warn("recording {}: {}", request_.name(), written.message());
  }

  // Writer thread: the notes and upload marks of files the ring has deleted.
  void RemoveOrphanNotes() {
    if (!dir_fd_) return;
    std::error_code error;
    std::vector<std::string> orphans;
    for (const auto& entry : fs::directory_iterator(dir_, error)) {
      const std::string name = entry.path().filename().string();
      for (const std::string suffix : {capfile::kFinishedSuffix, capfile::kUploadedSuffix}) {
        if (name.size() > suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
          const std::string file = name.substr(0, name.size() - suffix.size());
          struct stat st {};
          if (::fstatat(dir_fd_.get(), file.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 &&
              errno == ENOENT) {
            orphans.push_back(name);
          }
        }
      }
    }
    for (const std::string& name : orphans) ::unlinkat(dir_fd_.get(), name.c_str(), 0);
  }

  // Writer thread: the ring's counts, for Info and the state file.
  void UpdateCounts() {
    if (!writer_) return;
    const capfile::RingCounts counts = writer_->Counts();
    std::lock_guard lock(mu_);
    run_counts_ = counts;
  }

  void CreateReserve() {
    ReleaseReserve();
    if (!dir_fd_) return;
    OwnedFd fd(::openat(dir_fd_.get(), kReserveFile,
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, kFileMode));
    const int error = fd ? ::posix_fallocate(fd.get(), 0, kReserveBytes) : errno;
    if (error != 0) {
      spdlog::warn("recording {}: cannot reserve {} bytes for its state in {}: {}", request_.name(),
                   kReserveBytes, dir_.string(), std::strerror(error));
    }
  }

  void ReleaseReserve() {
    if (dir_fd_) ::unlinkat(dir_fd_.get(), kReserveFile, 0);
  }

  StatusOr<OwnedFd> OpenOwnFolder() const {
    const std::string what = "recording folder " + dir_.string();
    auto folder = OpenFolderAt(parent_fd_, dir_.filename().string(), what);
    if (folder.ok()) CAPD_RETURN_IF_ERROR(CheckOwnFolder(folder->get(), what));
    return folder;
  }

  // The folder's descriptor: the running recording's, or one opened into `opened`; -1 (logged)
  // when it cannot be opened.
  int Folder(OwnedFd& opened) const {
    if (dir_fd_) return dir_fd_.get();
    auto folder = OpenOwnFolder();
    if (!folder.ok()) {
      spdlog::warn("recording {}: {}", request_.name(), folder.status().message());
      return -1;
    }
    opened = std::move(folder).value();
    return opened.get();
  }

  // A malformed batch (never from capd's own capture) is left out and logged; a writer failure
  // ends the recording (Check).
  void Write(const v1::StreamResponse& message) {
    if (!writer_ok_) return;
    if (message.has_interface()) {
      Check(to_file_->AddInterface(0, message.interface()).status());
    } else if (message.has_packets()) {
      auto view = to_file_->View(0, message.packets());
      if (!view.ok()) {
        spdlog::warn("recording {}: batch left out: {}", request_.name(), view.status().message());
        return;
      }
      capfile::BatchCursor cursor;
      Check(to_file_->WriteUntil(0, *view, cursor, {}));
    } else if (message.has_statistics()) {
      const v1::Statistics& s = message.statistics();
      uint64_t drops = 0;
      for (const v1::InterfaceStatistics& i : s.interfaces()) {
        drops += i.kernel_drops() + i.interface_drops() + i.agent_drops();
      }
      if (!Check(to_file_->WriteStatistics(0, s))) return;
      std::lock_guard lock(mu_);
      run_drops_ = drops;
    }
  }

  // A writer failure (disk full, EIO) ends the recording: the capture is stopped, and the state
  // file says failed, why, and what the files hold, written into the room the reserve kept. The
  // ring's stop at the free-space floor (kResourceExhausted) ends it as stopped: nothing failed,
  // capd kept the disk from filling.
  bool Check(const Status& status) {
    if (status.ok()) return true;
    writer_ok_ = false;
    spdlog::warn("recording {}: {}", request_.name(), status.message());
    UpdateCounts();
    ReleaseReserve();
    {
      std::lock_guard lock(mu_);
      state_.state = status.code() == StatusCode::kResourceExhausted ? v1::RecordingInfo::STOPPED
                                                                     : v1::RecordingInfo::FAILED;
      state_.message = status.message();
      state_.last_seen_ns = NowNs();
      PersistLocked();
    }
    stop_->Request(v1::StreamEnd::CAPTURE_ERROR);  // the writer thread runs: stop_ is set
    return false;
  }

  uint64_t RunDropsLocked() const { return run_drops_; }

  uint64_t DeletedBeforeUploadLocked() const {
    return state_.deleted_before_upload + (run_counts_ ? run_counts_->files_deleted_unhanded : 0);
  }

  // The floor in bytes on the recording folder's filesystem (0: none), and for a fresh start
  // whether the ring's full size fits above it.
  StatusOr<uint64_t> FloorFor(const capfile::RingOptions& rotation, bool fresh) {
    if (keep_free_.off()) return uint64_t{0};
    struct statvfs fs {};
    if (::fstatvfs(dir_fd_.get(), &fs) != 0) {
      return Internal(Errno("statvfs", dir_.string(), errno));
    }
    const uint64_t size = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
    const uint64_t free = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    const uint64_t floor = capfile::FloorBytes(keep_free_, size);
    if (!fresh) return floor;
    const uint64_t max = std::numeric_limits<uint64_t>::max();
    const uint64_t ring = rotation.max_bytes > max / rotation.max_files
                              ? max
                              : rotation.max_bytes * rotation.max_files;
    uint64_t existing = 0;
    for (const fs::path& file : Files()) {
      std::error_code error;
      existing += fs::file_size(file, error);
    }
    if (capfile::RingFits(ring, free, existing, floor)) return floor;
    return Status(StatusCode::kFailedPrecondition,
                  "recording " + request_.name() + " does not fit: its ring of " +
                      std::to_string(rotation.max_files) + " files of " +
                      std::to_string(rotation.max_bytes) + " bytes needs " + std::to_string(ring) +
                      " bytes, and " + dir_.parent_path().string() + " has " +
                      std::to_string(free) + " bytes free, its floor " + std::to_string(floor) +
                      " bytes (capd --record-keep-free " + capfile::DescribeFloor(keep_free_) +
                      "); ask for fewer or smaller files (--rotate-files, --rotate-size)");
  }

  // Whole packets in the files (those the ring deleted included): counted by the ring while it
  // runs, from the state file otherwise.
  uint64_t PacketsLocked() const {
    if (!run_counts_) return state_.packets;
    return state_.removed_packets + run_counts_->packets_removed + run_counts_->packets_on_disk;
  }

  void PersistLocked() {
    PersistedState s = state_;
    s.packets = PacketsLocked();
    if (run_counts_) s.removed_packets += run_counts_->packets_removed;
    s.deleted_before_upload = DeletedBeforeUploadLocked();
    s.drops += run_drops_;
    OwnedFd opened;
    const int folder = Folder(opened);
    if (folder < 0) return;
    if (Status saved = WriteFileAtomically(folder, dir_, kStateFile, Serialize(s)); !saved.ok()) {
      spdlog::warn("recording {}: {}", request_.name(), saved.message());
    }
  }

  // Under control_mu_ (Start and Stop), so two stops of one recording never join at once.
  void JoinThreads() {
    if (capture_thread_.joinable()) capture_thread_.join();
    if (writer_thread_.joinable()) writer_thread_.join();
    stop_.reset();
    std::lock_guard lock(mu_);
    active_ = false;
    // This run's counters become the base of the next run.
    state_.packets = PacketsLocked();
    state_.deleted_before_upload = DeletedBeforeUploadLocked();
    if (run_counts_) state_.removed_packets += run_counts_->packets_removed;
    state_.drops += run_drops_;
    run_counts_.reset();
    run_drops_ = 0;
  }

  const int parent_fd_;
  const fs::path dir_;
  // The folder, while a run is active: set by Start, reset once the run's end is persisted (under
  // control_mu_, with no thread of the run alive or before they start).
  OwnedFd dir_fd_;
  const v1::StartRecordingRequest request_;
  const AgentIdentity& identity_;
  CaptureHub& hub_;
  const capfile::FreeSpaceFloor keep_free_;
  std::unique_ptr<StopSignal> stop_;  // while threads run (set by Start, reset by JoinThreads)
  std::mutex control_mu_;             // one Start or Stop at a time
  std::thread capture_thread_;
  std::thread writer_thread_;
  std::atomic<bool> active_ = false;  // threads started and not yet joined
  // The newest packet time flushed to the files: the writer thread stores, anyone reads.
  std::atomic<uint64_t> written_through_ns_{0};

  // Writer thread only.
  std::unique_ptr<capfile::RingWriter> writer_;
  std::unique_ptr<capfile::CaptureWriter> framing_;  // in front of writer_, or null
  std::unique_ptr<capfile::StreamToFile> to_file_;   // into writer_: one feed, 0
  bool writer_ok_ = true;

  std::mutex mu_;
  std::condition_variable set_up_;
  std::condition_variable work_;
  bool setup_done_ = false;
  Status setup_status_;
  bool capture_done_ = false;
  std::deque<Queued> queue_;
  size_t queued_bytes_ = 0;
  std::vector<std::unique_ptr<v1::StreamResponse>> free_;
  PersistedState state_;
  std::optional<capfile::RingCounts> run_counts_;  // while a ring is open (from Start to join)
  uint64_t run_drops_ = 0;  // latest statistics of this run (cumulative within the run)
};

RecordingManager::RecordingManager(std::string dir, int dir_fd, const AgentIdentity& identity,
                                   size_t max_recordings, capfile::FreeSpaceFloor keep_free)
    : dir_(std::move(dir)),
      dir_fd_(dir_fd),
      identity_(identity),
      max_recordings_(max_recordings),
      keep_free_(keep_free) {}

RecordingManager::~RecordingManager() {
  StopAll();
  recordings_.clear();
  ::close(dir_fd_);
}

StatusOr<std::unique_ptr<RecordingManager>> RecordingManager::Open(
    const std::string& dir, const AgentIdentity& identity, size_t max_recordings,
    capfile::FreeSpaceFloor keep_free) {
  const std::string what = "--record-dir " + dir;
  std::error_code error;
  const fs::path requested(dir);
  // Missing parents get 0755 (not 0777 less a umask of 000): nobody else may rename DIR away.
  fs::path parent;
  for (const fs::path& part : requested.parent_path()) {
    parent /= part;
    if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) break;  // mkdir of DIR reports it
  }
  const bool created = ::mkdir(dir.c_str(), kFolderMode) == 0;
  if (!created && errno != EEXIST) return InvalidArgument(Errno("mkdir", what, errno));
  // DIR itself may be a link the administrator made (its name is on the command line); what is
  // in it is never followed.
  OwnedFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) {
    if (errno == ENOTDIR) return InvalidArgument(what + " is not a folder");
    return InvalidArgument(Errno("open", what, errno));
  }
  if (created && ::fchmod(dir_fd.get(), kFolderMode) != 0) {
    return InvalidArgument(Errno("chmod", what, errno));
  }
  if (Status own = CheckOwnFolder(dir_fd.get(), what); !own.ok()) {
    return InvalidArgument(own.message());
  }
  const fs::path canonical = fs::canonical(dir, error);
  if (error) return InvalidArgument(what + ": " + error.message());
  std::vector<std::string> names;
  {
    const int listing = ::fcntl(dir_fd.get(), F_DUPFD_CLOEXEC, 0);
    DIR* entries = listing >= 0 ? ::fdopendir(listing) : nullptr;
    if (entries == nullptr) {
      const int err = errno;
      if (listing >= 0) ::close(listing);
      return InvalidArgument(Errno("opendir", what, err));
    }
    while (const struct dirent* entry = ::readdir(entries)) names.emplace_back(entry->d_name);
    ::closedir(entries);
  }
  std::sort(names.begin(), names.end());
  std::unique_ptr<RecordingManager> manager(new RecordingManager(
      canonical.string(), dir_fd.release(), identity, max_recordings, keep_free));
  for (const std::string& name : names) {
    if (!ValidateRecordingName(name).ok()) continue;
    const fs::path path = canonical / name;
    struct stat st {};
    if (::fstatat(manager->dir_fd_, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !(S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode))) {
      continue;  // not a recording's folder
    }
    auto folder = OpenFolderAt(manager->dir_fd_, name, "recording folder " + path.string());
    Status usable = folder.status();
    if (usable.ok()) {
      usable = CheckOwnFolder(folder->get(), "recording folder " + path.string());
    }
    if (!usable.ok()) {
      spdlog::warn("{}: left alone", usable.message());
      continue;
    }
    auto request_text = ReadFileAt(folder->get(), kRequestFile);
    if (!request_text) continue;
    v1::StartRecordingRequest request;
    if (!ParseRecordingRequest(*request_text, &request) || request.name() != name) {
      spdlog::warn("recording folder {} has an unreadable {}: left alone", path.string(),
                   kRequestFile);
      continue;
    }
    PersistedState state = Parse(ReadFileAt(folder->get(), kStateFile).value_or(""));
    manager->recordings_[name] = std::make_shared<Recording>(
        manager->dir_fd_, path, request, state, manager->identity_, *manager->hub_, keep_free);
  }
  spdlog::info("recordings in {}: {} found; free-space floor {}", canonical.string(),
               manager->recordings_.size(), capfile::DescribeFloor(keep_free));
  return manager;
}

void RecordingManager::ResumeAll() {
  std::map<std::string, std::shared_ptr<Recording>> all;
  {
    std::lock_guard lock(mu_);
    all = recordings_;
  }
  for (auto& [name, recording] : all) {
    v1::RecordingInfo info = recording->Info();
    if (info.state() != v1::RecordingInfo::RUNNING) continue;
    const uint64_t now = NowNs();
    const uint64_t last_seen = recording->last_seen_ns();
    const std::string gap = "capd was not recording from " +
                            (last_seen != 0 ? IsoTime(last_seen) : std::string("(unknown)")) +
                            " to " + IsoTime(now) + " (agent restarted)";
    {
      std::lock_guard lock(mu_);
      if (RunningLocked() >= max_recordings_) {
        const std::string why = "not resumed: " + std::to_string(max_recordings_) +
                                " recordings were already running, capd's limit "
                                "(--max-recordings)";
        spdlog::warn("recording {} {}", name, why);
        recording->Fail(why);
        continue;
      }
    }
    recording->AddGap(gap);
    if (Status started = recording->Start("recording resumed: " + gap, /*fresh=*/false);
        !started.ok()) {
      spdlog::warn("recording {} could not resume: {}", name, started.message());
    } else {
      spdlog::info("recording {} resumed; {}", name, gap);
    }
  }
}

StatusOr<v1::RecordingInfo> RecordingManager::Start(const v1::StartRecordingRequest& request) {
  CAPD_RETURN_IF_ERROR(ValidateStartRecordingRequest(request));
  const fs::path dir = fs::path(dir_) / request.name();
  std::shared_ptr<Recording> recording;
  bool created = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Unavailable("capd is shutting down");
    if (recordings_.count(request.name()) != 0 || deleting_.count(request.name()) != 0) {
      return AlreadyExists("recording '" + request.name() + "' already exists");
    }
    if (const size_t running = RunningLocked(); running >= max_recordings_) {
      return Status(StatusCode::kResourceExhausted,
                    "capd already runs " + std::to_string(running) +
                        " recordings, its limit (--max-recordings); stop one first");
    }
    // The name rules keep it inside DIR; a folder left there (not a recording capd loaded) is
    // used only when it is capd's own, and a link is never followed.
    created = ::mkdirat(dir_fd_, request.name().c_str(), kFolderMode) == 0;
    if (!created && errno != EEXIST) return Internal(Errno("mkdir", dir.string(), errno));
    auto folder = OpenFolderAt(dir_fd_, request.name(), "recording folder " + dir.string());
    Status usable = folder.status();
    if (usable.ok() && created && ::fchmod(folder->get(), kFolderMode) != 0) {
      usable = Internal(Errno("chmod", dir.string(), errno));
    }
    if (usable.ok()) usable = CheckOwnFolder(folder->get(), "recording folder " + dir.string());
    if (!usable.ok()) {
      if (created) ::unlinkat(dir_fd_, request.name().c_str(), AT_REMOVEDIR);
      return usable;
    }
    PersistedState state;
    recording =
        std::make_shared<Recording>(dir_fd_, dir, request, state, identity_, *hub_, keep_free_);
    recordings_[request.name()] = recording;  // reserves the name while it starts
    starting_.insert(request.name());         // and a place
  }
  Status status = recording->SaveRequest();
  if (status.ok()) status = recording->Start("", /*fresh=*/true);
  {
    std::lock_guard lock(mu_);
    starting_.erase(request.name());
  }
  if (!status.ok()) {
    // A request that never captured leaves nothing behind: the name is free again.
    std::lock_guard lock(mu_);
    recordings_.erase(request.name());
    if (created) {
      std::error_code error;
      fs::remove_all(dir, error);  // capd's own new folder; remove_all follows no links
    }
    return status;
  }
  spdlog::info("recording {} started on '{}' with filter '{}'", request.name(), request.interface(),
               request.filter());
  return recording->Info();
}

StatusOr<v1::RecordingInfo> RecordingManager::Stop(const std::string& name) {
  CAPD_RETURN_IF_ERROR(ValidateRecordingName(name));
  std::shared_ptr<Recording> recording = Find(name);
  if (!recording) return NotFound("no recording named '" + name + "'");
  recording->Stop(v1::StreamEnd::CLIENT_CANCELLED, /*keep_running=*/false);
  spdlog::info("recording {} stopped", name);
  return recording->Info();
}

StatusOr<v1::RecordingInfo> RecordingManager::Delete(const std::string& name) {
  CAPD_RETURN_IF_ERROR(ValidateRecordingName(name));
  std::shared_ptr<Recording> recording;
  {
    std::lock_guard lock(mu_);
    auto it = recordings_.find(name);
    if (it == recordings_.end() || deleting_.count(name) != 0) {
      return NotFound("no recording named '" + name + "'");
    }
    if (starting_.count(name) != 0 || it->second->running()) {
      return Status(
          StatusCode::kFailedPrecondition,
          "recording '" + name + "' is running: stop it first (capctl record stop " + name + ")");
    }
    recording = it->second;
    deleting_.insert(name);  // off the list for Start, Stop and Fetch while its files go
  }
  const v1::RecordingInfo info = recording->Info();
  const fs::path dir = fs::path(dir_) / name;
  // Entries are removed through the folder's descriptor, never through a path, and whatever
  // they are (a link planted there is removed, not followed): the ring files first and the
  // state last, so that a failure part-way leaves a recording that still loads.
  Status removed = [&]() -> Status {
    auto folder = OpenFolderAt(dir_fd_, name, "recording folder " + dir.string());
    if (!folder.ok()) return folder.status();
    std::vector<std::string> entries;
    const int listing = ::fcntl(folder->get(), F_DUPFD_CLOEXEC, 0);
    DIR* stream = listing >= 0 ? ::fdopendir(listing) : nullptr;
    if (stream == nullptr) {
      const int err = errno;
      if (listing >= 0) ::close(listing);
      return Internal(Errno("opendir", dir.string(), err));
    }
    while (const struct dirent* entry = ::readdir(stream)) {
      const std::string entry_name = entry->d_name;
      if (entry_name != "." && entry_name != "..") entries.push_back(entry_name);
    }
    ::closedir(stream);
    std::stable_partition(entries.begin(), entries.end(), [](const std::string& e) {
      return e != kStateFile && e != kRequestFile;
    });
    for (const std::string& entry : entries) {
      if (::unlinkat(folder->get(), entry.c_str(), 0) != 0 && errno != ENOENT) {
        return Internal(Errno("unlink", (dir / entry).string(), errno));
      }
    }
    if (::unlinkat(dir_fd_, name.c_str(), AT_REMOVEDIR) != 0) {
      return Internal(Errno("rmdir", dir.string(), errno));
    }
    return Status::Ok();
  }();
  std::lock_guard lock(mu_);
  deleting_.erase(name);
  if (!removed.ok()) return removed;
  recordings_.erase(name);
  spdlog::info("recording {} deleted ({} files, {} bytes)", name, info.files_size(), info.bytes());
  return info;
}

std::vector<v1::RecordingInfo> RecordingManager::List() {
  std::vector<std::shared_ptr<Recording>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, recording] : recordings_) all.push_back(recording);
  }
  std::vector<v1::RecordingInfo> infos;
  for (auto& recording : all) infos.push_back(recording->Info());
  return infos;
}

StatusOr<std::vector<std::string>> RecordingManager::FetchableFiles(const std::string& name) {
  CAPD_RETURN_IF_ERROR(ValidateRecordingName(name));
  std::shared_ptr<Recording> recording = Find(name);
  if (!recording) return NotFound("no recording named '" + name + "'");
  const bool running = recording->running();
  std::vector<fs::path> files = recording->Files();
  if (running && !files.empty()) files.pop_back();  // still being written
  std::vector<std::string> paths;
  for (const fs::path& f : files) paths.push_back(f.string());
  return paths;
}

std::vector<RecordingManager::RunningRecording> RecordingManager::Running() {
  std::vector<std::shared_ptr<Recording>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, recording] : recordings_) {
      if (starting_.count(name) == 0 && deleting_.count(name) == 0) all.push_back(recording);
    }
  }
  std::vector<RunningRecording> running;
  for (auto& recording : all) {
    if (!recording->running()) continue;
    const v1::StartRecordingRequest& request = recording->request();
    RunningRecording r;
    r.name = request.name();
    r.interface = request.interface();
    r.filter = request.filter();
    r.decapsulates = request.has_decap() && request.decap().mode() != v1::Decapsulation::NONE;
    r.files = [recording] {
      std::vector<std::string> paths;
      for (const fs::path& f : recording->Files()) paths.push_back(f.string());
      return paths;
    };
    r.written_through_ns = [recording] { return recording->written_through_ns(); };
    running.push_back(std::move(r));
  }
  return running;
}

void RecordingManager::StopAll() {
  std::map<std::string, std::shared_ptr<Recording>> all;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    all = recordings_;
  }
  for (auto& [name, recording] : all) {
    if (recording->running()) {
      recording->Stop(v1::StreamEnd::AGENT_SHUTDOWN, /*keep_running=*/true);
    }
  }
}

size_t RecordingManager::RunningLocked() {
  size_t running = starting_.size();
  for (auto& [name, recording] : recordings_) {
    if (starting_.count(name) == 0 && recording->running()) ++running;
  }
  return running;
}

std::shared_ptr<Recording> RecordingManager::Find(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = recordings_.find(name);
  return it == recordings_.end() ? nullptr : it->second;
}

}  // namespace capd::agent

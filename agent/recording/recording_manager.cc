#include "agent/recording/recording_manager.h"

#include <google/protobuf/text_format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "agent/stream/stop_signal.h"
#include "agent/stream/stream_sink.h"
#include "client/output/rotating_writer.h"
#include "common/printable.h"

namespace capd::agent {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMaxNameBytes = 64;
constexpr size_t kMaxQueueBytes = 64 << 20;  // a few seconds of a busy link
constexpr uint64_t kDefaultMaxBytes = 100'000'000;
constexpr uint32_t kDefaultMaxFiles = 10;
constexpr auto kPersistPeriod = std::chrono::seconds(2);
constexpr char kRequestFile[] = "request.txtpb";
constexpr char kStateFile[] = "recording.state";

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
  uint64_t last_seen_ns = 0;  // the last time capd was known to be recording
  uint64_t packets = 0;
  uint64_t drops = 0;
  std::vector<std::string> gaps;
  std::string message;
};

std::string Serialize(const PersistedState& s) {
  std::ostringstream out;
  out << "state " << v1::RecordingInfo::State_Name(s.state) << "\n"
      << "started_ns " << s.started_ns << "\n"
      << "last_seen_ns " << s.last_seen_ns << "\n"
      << "packets " << s.packets << "\n"
      << "drops " << s.drops << "\n";
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
      } else if (key == "drops") {
        s.drops = std::stoull(value);
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

// Written to a temporary file and renamed over the old one: a crash leaves one or the other.
Status WriteFileAtomically(const fs::path& path, const std::string& contents) {
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc | std::ios::binary);
    out << contents;
    out.flush();
    if (!out) return Internal("write(" + temporary.string() + ") failed");
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) return Internal("rename(" + temporary.string() + "): " + error.message());
  return Status::Ok();
}

std::optional<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

v1::StreamRequest StreamRequestFor(const v1::StartRecordingRequest& r) {
  v1::StreamRequest s;
  s.set_interface(r.interface());
  s.set_filter(r.filter());
  if (r.has_snaplen()) s.set_snaplen(r.snaplen());
  *s.mutable_decap() = r.decap();
  return s;
}

}  // namespace

Status ValidateRecordingName(const std::string& name) {
  // The first character a letter or digit: no "-rf" that a shell or a tool reads as options,
  // no ".", "..", "..." or hidden folders.
  const bool ok =
      !name.empty() && name.size() <= kMaxNameBytes &&
      std::isalnum(static_cast<unsigned char>(name.front())) &&
      std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      });
  if (ok) return Status::Ok();
  return InvalidArgument("recording name '" + PrintableText(name) +
                         "' is not valid: 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with "
                         "a letter or a digit");
}

// One recording: its capture thread, its queue, its writer thread and its persisted state.
class Recording final : public StreamSink {
 public:
  Recording(fs::path dir, v1::StartRecordingRequest request, PersistedState state,
            const AgentIdentity& identity, CaptureHub& hub)
      : dir_(std::move(dir)),
        request_(std::move(request)),
        identity_(identity),
        hub_(hub),
        state_(std::move(state)) {}

  ~Recording() override {
    if (active_) Stop(v1::StreamEnd::AGENT_SHUTDOWN, /*keep_running=*/true);
  }

  const v1::StartRecordingRequest& request() const { return request_; }

  Status SaveRequest() {
    std::string text;
    google::protobuf::TextFormat::PrintToString(request_, &text);
    return WriteFileAtomically(dir_ / kRequestFile, text);
  }

  // Opens the ring and the capture; returns once the capture runs or failed to open.
  Status Start(const std::string& gap_note) {
    std::lock_guard control(control_mu_);
    client::RotationOptions rotation;
    rotation.path = (dir_ / (request_.name() + ".pcapng")).string();
    rotation.max_bytes =
        request_.rotation().max_bytes() != 0 ? request_.rotation().max_bytes() : kDefaultMaxBytes;
    rotation.seconds = request_.rotation().seconds();
    rotation.max_files =
        request_.rotation().max_files() != 0 ? request_.rotation().max_files() : kDefaultMaxFiles;
    rotation.adopt_existing_files = true;
    rotation.first_file_comment = gap_note;
    const std::string name = request_.name();
    rotation.log = [name](const std::string& m) { spdlog::warn("recording {}: {}", name, m); };
    auto writer = client::MakeRotatingWriter(rotation, "capd recording " + name);
    if (!writer.ok()) return writer.status();
    writer_ = std::move(writer).value();
    {
      std::lock_guard lock(mu_);
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
    std::lock_guard lock(mu_);
    if (!keep_running && state_.state == v1::RecordingInfo::RUNNING) {
      state_.state = v1::RecordingInfo::STOPPED;
    }
    state_.last_seen_ns = NowNs();
    PersistLocked();
  }

  void Fail(const std::string& message) {
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
    std::lock_guard lock(mu_);
    info.set_state(state_.state);
    info.set_started_ns(state_.started_ns);
    info.set_packets(state_.packets + run_packets_);
    info.set_drops(state_.drops + RunDropsLocked());
    for (const std::string& gap : state_.gaps) info.add_gaps(gap);
    info.set_message(state_.message);
    return info;
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
    } else if (!ended.ok()) {
      state_.state = v1::RecordingInfo::FAILED;
      state_.message = ended.status().message();
    } else if (ended->reason() == v1::StreamEnd::CAPTURE_ERROR) {
      state_.state = v1::RecordingInfo::FAILED;
      state_.message = "capture failed: " + ended->message();
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
      for (Queued& q : batch) {
        Write(*q.message);
        std::lock_guard lock(mu_);
        if (q.message->has_packets() && free_.size() < 16) free_.push_back(std::move(q.message));
      }
      batch.clear();
      if (writer_ok_) Check(writer_->Flush());
      if (writer_ok_) Check(writer_->Tick(NowNs()));
      if (std::chrono::steady_clock::now() >= next_persist) {
        std::lock_guard lock(mu_);
        state_.last_seen_ns = NowNs();
        PersistLocked();
        next_persist = std::chrono::steady_clock::now() + kPersistPeriod;
      }
      if (done) break;
    }
    if (writer_ok_) Check(writer_->Close());
    writer_.reset();
  }

  void Write(const v1::StreamResponse& message) {
    if (!writer_ok_) return;
    if (message.has_interface()) {
      const v1::InterfaceDescription& d = message.interface();
      client::InterfaceInfo info;
      info.name = d.name();
      info.description = d.description();
      info.filter = d.filter();
      info.os = d.os();
      info.link_type = static_cast<uint16_t>(d.link_type());
      info.snaplen = d.snaplen();
      if (!Check(writer_->AddInterface(info))) return;
      file_index_[d.index()] = next_file_index_++;
      start_ns_[d.index()] = d.capture_start_ns();
    } else if (message.has_packets()) {
      const v1::PacketBatch& b = message.packets();
      const int n = b.timestamp_ns_size();
      if (b.interface_index_size() != n || b.original_length_size() != n ||
          b.captured_length_size() != n || b.comment_packet_size() != b.comment_size()) {
        return;
      }
      const auto* data = reinterpret_cast<const uint8_t*>(b.data().data());
      size_t offset = 0;
      int next_comment = 0;
      uint64_t written = 0;
      for (int i = 0; i < n; ++i) {
        const uint32_t caplen = b.captured_length(i);
        if (caplen > b.data().size() - offset) break;
        std::string_view comment;
        if (next_comment < b.comment_size() &&
            b.comment_packet(next_comment) == static_cast<uint32_t>(i)) {
          comment = b.comment(next_comment++);
        }
        auto it = file_index_.find(b.interface_index(i));
        if (it != file_index_.end()) {
          if (!Check(writer_->WritePacket(it->second, b.timestamp_ns(i), b.original_length(i),
                                          std::span<const uint8_t>(data + offset, caplen),
                                          comment))) {
            break;
          }
          ++written;
        }
        offset += caplen;
      }
      std::lock_guard lock(mu_);
      run_packets_ += written;
    } else if (message.has_statistics()) {
      const v1::Statistics& s = message.statistics();
      uint64_t drops = 0;
      for (const v1::InterfaceStatistics& i : s.interfaces()) {
        drops += i.kernel_drops() + i.interface_drops() + i.agent_drops();
        auto it = file_index_.find(i.interface_index());
        if (it == file_index_.end()) continue;
        client::InterfaceCounters c;
        c.start_ns = start_ns_[i.interface_index()];
        c.end_ns = s.timestamp_ns();
        c.received = i.packets_received();
        c.interface_drops = i.interface_drops();
        c.kernel_drops = i.kernel_drops();
        c.agent_drops = i.agent_drops();
        if (!Check(writer_->WriteStatistics(it->second, c))) return;
      }
      std::lock_guard lock(mu_);
      run_drops_ = drops;
    }
  }

  // A writer failure (disk full, --min-free) ends the recording: the capture is stopped.
  bool Check(const Status& status) {
    if (status.ok()) return true;
    writer_ok_ = false;
    spdlog::warn("recording {}: {}", request_.name(), status.message());
    {
      std::lock_guard lock(mu_);
      state_.state = v1::RecordingInfo::FAILED;
      state_.message = status.message();
    }
    stop_->Request(v1::StreamEnd::CAPTURE_ERROR);  // the writer thread runs: stop_ is set
    return false;
  }

  uint64_t RunDropsLocked() const { return run_drops_; }

  void PersistLocked() {
    PersistedState s = state_;
    s.packets += run_packets_;
    s.drops += run_drops_;
    if (Status saved = WriteFileAtomically(dir_ / kStateFile, Serialize(s)); !saved.ok()) {
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
    state_.packets += run_packets_;
    state_.drops += run_drops_;
    run_packets_ = 0;
    run_drops_ = 0;
  }

  const fs::path dir_;
  const v1::StartRecordingRequest request_;
  const AgentIdentity& identity_;
  CaptureHub& hub_;
  std::unique_ptr<StopSignal> stop_;  // while threads run (set by Start, reset by JoinThreads)
  std::mutex control_mu_;             // one Start or Stop at a time
  std::thread capture_thread_;
  std::thread writer_thread_;
  std::atomic<bool> active_ = false;  // threads started and not yet joined

  // Writer thread only.
  std::unique_ptr<client::CaptureWriter> writer_;
  bool writer_ok_ = true;
  std::map<uint32_t, uint32_t> file_index_;  // stream interface index -> file interface index
  std::map<uint32_t, uint64_t> start_ns_;
  uint32_t next_file_index_ = 0;

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
  uint64_t run_packets_ = 0;
  uint64_t run_drops_ = 0;  // latest statistics of this run (cumulative within the run)
};

RecordingManager::RecordingManager(std::string dir, const AgentIdentity& identity,
                                   size_t max_recordings)
    : dir_(std::move(dir)), identity_(identity), max_recordings_(max_recordings) {}

RecordingManager::~RecordingManager() { StopAll(); }

StatusOr<std::unique_ptr<RecordingManager>> RecordingManager::Open(const std::string& dir,
                                                                   const AgentIdentity& identity,
                                                                   size_t max_recordings) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) return InvalidArgument("--record-dir " + dir + ": " + error.message());
  const fs::path canonical = fs::canonical(dir, error);
  if (error || !fs::is_directory(canonical)) {
    return InvalidArgument("--record-dir " + dir + " is not a folder");
  }
  std::unique_ptr<RecordingManager> manager(
      new RecordingManager(canonical.string(), identity, max_recordings));
  for (const auto& entry : fs::directory_iterator(canonical, error)) {
    if (!entry.is_directory() || entry.is_symlink()) continue;
    const std::string name = entry.path().filename().string();
    if (!ValidateRecordingName(name).ok()) continue;
    auto request_text = ReadFile(entry.path() / kRequestFile);
    if (!request_text) continue;
    v1::StartRecordingRequest request;
    if (!google::protobuf::TextFormat::ParseFromString(*request_text, &request) ||
        request.name() != name) {
      spdlog::warn("recording folder {} has an unreadable {}: left alone", entry.path().string(),
                   kRequestFile);
      continue;
    }
    PersistedState state = Parse(ReadFile(entry.path() / kStateFile).value_or(""));
    manager->recordings_[name] = std::make_shared<Recording>(entry.path(), request, state,
                                                             manager->identity_, *manager->hub_);
  }
  spdlog::info("recordings in {}: {} found", canonical.string(), manager->recordings_.size());
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
    auto state_text = ReadFile(fs::path(dir_) / name / kStateFile);
    const uint64_t last_seen = Parse(state_text.value_or("")).last_seen_ns;
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
    if (Status started = recording->Start("recording resumed: " + gap); !started.ok()) {
      spdlog::warn("recording {} could not resume: {}", name, started.message());
    } else {
      spdlog::info("recording {} resumed; {}", name, gap);
    }
  }
}

StatusOr<v1::RecordingInfo> RecordingManager::Start(const v1::StartRecordingRequest& request,
                                                    Refusal* refusal) {
  *refusal = Refusal::kNone;
  CAPD_RETURN_IF_ERROR(ValidateRecordingName(request.name()));
  CAPD_RETURN_IF_ERROR(ValidateStreamRequest(StreamRequestFor(request)));
  if (request.rotation().seconds() > 86400) {
    return InvalidArgument("rotation seconds must be 1..86400");
  }
  const uint64_t max_bytes = request.rotation().max_bytes();
  if (max_bytes != 0 && (max_bytes < kMinRotationBytes || max_bytes > kMaxRotationBytes)) {
    return InvalidArgument("rotation size " + std::to_string(max_bytes) +
                           " bytes is out of range: 10 kB to 1 TB (10000..1000000000000)");
  }
  if (request.rotation().max_files() > kMaxRotationFiles) {
    return InvalidArgument("rotation file count " + std::to_string(request.rotation().max_files()) +
                           " is out of range: 1..100000");
  }
  const fs::path dir = fs::path(dir_) / request.name();
  // The name rules keep it inside DIR; a symlink planted there must not lead elsewhere.
  if (dir.lexically_normal().parent_path() != fs::path(dir_) || fs::is_symlink(dir)) {
    return InvalidArgument("recording '" + request.name() + "' would be outside " + dir_);
  }
  std::shared_ptr<Recording> recording;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Unavailable("capd is shutting down");
    if (recordings_.count(request.name()) != 0) {
      *refusal = Refusal::kAlreadyExists;
      return Status(StatusCode::kFailedPrecondition,
                    "recording '" + request.name() + "' already exists");
    }
    if (const size_t running = RunningLocked(); running >= max_recordings_) {
      return Status(StatusCode::kResourceExhausted,
                    "capd already runs " + std::to_string(running) +
                        " recordings, its limit (--max-recordings); stop one first");
    }
    std::error_code error;
    fs::create_directory(dir, error);
    if (error) return Internal("mkdir(" + dir.string() + "): " + error.message());
    PersistedState state;
    recording = std::make_shared<Recording>(dir, request, state, identity_, *hub_);
    recordings_[request.name()] = recording;  // reserves the name while it starts
    starting_.insert(request.name());         // and a place
  }
  Status status = recording->SaveRequest();
  if (status.ok()) status = recording->Start("");
  {
    std::lock_guard lock(mu_);
    starting_.erase(request.name());
  }
  if (!status.ok()) {
    // A request that never captured leaves nothing behind: the name is free again.
    std::lock_guard lock(mu_);
    recordings_.erase(request.name());
    std::error_code error;
    fs::remove_all(dir, error);
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

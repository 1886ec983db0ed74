#include "client/record/record_command.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <string>
#include <utility>

#include "client/stream/agent_channel.h"
#include "client/stream/signal_watcher.h"
#include "client/stream/trigger_fields.h"
#include "proto/capture.grpc.pb.h"
#include "upload/s3_upload.h"

namespace capd::client {
namespace {

constexpr auto kCallTimeout = std::chrono::seconds(30);

// Ctrl-C and SIGTERM cancel the agent call in flight: main() blocks both in every thread, so
// without this a fetch (no deadline) or a delete (300 s) would hold the terminal until it ended.
// The first signal cancels the call (the command then says what is left and exits 1); with no
// call in flight (connecting, or between calls), or at a second signal (a call that does not end
// on its cancel), capctl leaves at once with 1.
// Thread-safety: Watch and interrupted on the command's thread; the signal on the watcher's.
class CallInterrupter {
 public:
  CallInterrupter() : watcher_([this](int) { Interrupt(); }) {}

  // While the returned guard lives, a signal cancels the call made with `context`; a signal that
  // came before cancels it at once (gRPC cancels a call whose context was cancelled before it).
  class Watching {
   public:
    Watching(CallInterrupter& owner, grpc::ClientContext& context) : owner_(owner) {
      std::lock_guard lock(owner_.mu_);
      outer_ = std::exchange(owner_.context_, &context);
      if (owner_.interrupted_) context.TryCancel();
    }
    ~Watching() {
      std::lock_guard lock(owner_.mu_);
      owner_.context_ = outer_;
    }
    Watching(const Watching&) = delete;
    Watching& operator=(const Watching&) = delete;

   private:
    CallInterrupter& owner_;
    grpc::ClientContext* outer_;  // watched again when this guard goes (a call within a call)
  };
  Watching Watch(grpc::ClientContext& context) { return Watching(*this, context); }

  bool interrupted() const {
    std::lock_guard lock(mu_);
    return interrupted_;
  }

 private:
  void Interrupt() {
    std::lock_guard lock(mu_);
    if (interrupted_ || context_ == nullptr) {
      std::fputs("capctl: interrupted\n", stderr);
      std::_Exit(1);
    }
    interrupted_ = true;
    context_->TryCancel();
  }

  mutable std::mutex mu_;
  grpc::ClientContext* context_ = nullptr;  // the call in flight, if any
  bool interrupted_ = false;
  SignalWatcher watcher_;  // last: its thread starts once the rest is set up, and stops first
};

// A call that failed: refused by the agent, or cancelled by a signal (then the agent may or may
// not have done what was asked).
int Refused(const RecordOptions& options, const char* what, const grpc::Status& status,
            const CallInterrupter& interrupter) {
  if (interrupter.interrupted()) {
    std::fprintf(stderr,
                 "capctl: interrupted before agent %s answered (capctl record list shows what it "
                 "did)\n",
                 options.agent.target.c_str());
    return 1;
  }
  std::fprintf(stderr, "capctl: agent %s refused %s: %s\n", options.agent.target.c_str(), what,
               DescribeRefusal(status).c_str());
  return ExitCodeFor(FromGrpcStatus(status).code());
}

const char* StateName(v1::RecordingInfo::State state) {
  switch (state) {
    case v1::RecordingInfo::RUNNING:
      return "running";
    case v1::RecordingInfo::STOPPED:
      return "stopped";
    case v1::RecordingInfo::FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

std::string Time(uint64_t ns) {
  if (ns == 0) return "-";
  const time_t t = static_cast<time_t>(ns / 1'000'000'000ULL);
  struct tm utc;
  gmtime_r(&t, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

void Print(const v1::RecordingInfo& r) {
  std::printf("%s: %s on '%s'%s, %d files, %llu packets, %llu bytes, %llu drops, since %s\n",
              r.name().c_str(), StateName(r.state()), r.interface().c_str(),
              r.filter().empty() ? "" : (" filter '" + r.filter() + "'").c_str(), r.files_size(),
              static_cast<unsigned long long>(r.packets()),
              static_cast<unsigned long long>(r.bytes()),
              static_cast<unsigned long long>(r.drops()), Time(r.started_ns()).c_str());
  if (!r.upload().empty()) {
    const bool over = r.rotation().max_files() != 0 &&
                      static_cast<uint32_t>(r.files_size()) > r.rotation().max_files();
    std::printf("  upload to %s: %llu files awaiting upload%s\n", r.upload().c_str(),
                static_cast<unsigned long long>(r.files_awaiting_upload()),
                over ? (" (kept: the ring is over its " + std::to_string(r.rotation().max_files()) +
                        " files until they are uploaded)")
                           .c_str()
                     : "");
  }
  if (r.files_deleted_before_upload() != 0) {
    std::printf(
        "  %llu files deleted before their upload: free space below capd's floor "
        "(--record-keep-free)\n",
        static_cast<unsigned long long>(r.files_deleted_before_upload()));
  }
  if (!r.message().empty()) std::printf("  %s\n", r.message().c_str());
  for (const std::string& gap : r.gaps()) std::printf("  gap: %s\n", gap.c_str());
}

void SetDecap(const DecapOptions& d, v1::Decapsulation& out) {
  switch (d.mode) {
    case DecapOptions::Mode::kNone:
      return;
    case DecapOptions::Mode::kVxlan:
      out.set_mode(v1::Decapsulation::VXLAN);
      break;
    case DecapOptions::Mode::kGeneve:
      out.set_mode(v1::Decapsulation::GENEVE);
      break;
    case DecapOptions::Mode::kAuto:
      out.set_mode(v1::Decapsulation::AUTO);
      break;
  }
  out.set_vxlan_port(d.vxlan_port);
  out.set_geneve_port(d.geneve_port);
  for (uint32_t vni : d.vnis) out.add_vnis(vni);
  out.set_inner_filter(d.inner_filter);
}

// The file a running recording is still writing ("" when it is not running): the agent leaves it
// out of a fetch, because it is incomplete, and the user should hear so.
std::string OpenFileOf(const RecordOptions& options, v1::Capture::Stub& stub,
                       const AgentConnection& connection, CallInterrupter& interrupter) {
  grpc::ClientContext context;
  connection.Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  const auto watching = interrupter.Watch(context);
  v1::ListRecordingsResponse response;
  if (!stub.ListRecordings(&context, {}, &response).ok()) return "";
  for (const v1::RecordingInfo& r : response.recordings()) {
    if (r.name() == options.name && r.state() == v1::RecordingInfo::RUNNING && r.files_size() > 0) {
      return r.files(r.files_size() - 1);
    }
  }
  return "";
}

// Streams the files into DIR: each written as NAME.part and renamed when its last chunk came, so
// a fetch that ends early never leaves a truncated file under the real name; the .part of the
// file it was in is removed then (a fetch does not resume: a new one fetches that file again),
// and the files completed before it stay.
int Fetch(const RecordOptions& options, v1::Capture::Stub& stub, grpc::ClientContext& context,
          const AgentConnection& connection, CallInterrupter& interrupter) {
  const std::string open_file = OpenFileOf(options, stub, connection, interrupter);
  if (interrupter.interrupted()) {
    std::fprintf(stderr, "capctl: fetch of recording %s interrupted: nothing fetched\n",
                 options.name.c_str());
    return 1;
  }
  std::error_code error;
  std::filesystem::create_directories(options.out_dir, error);
  if (error) {
    std::fprintf(stderr, "capctl: --out %s: %s\n", options.out_dir.c_str(),
                 error.message().c_str());
    return 2;
  }
  v1::FetchRecordingRequest request;
  request.set_name(options.name);
  const auto watching = interrupter.Watch(context);
  auto reader = stub.FetchRecording(&context, request);
  v1::RecordingChunk chunk;
  int fd = -1;
  std::string current, part;
  int files = 0;
  uint64_t bytes = 0;
  while (reader->Read(&chunk)) {
    const std::string name = chunk.file_name();
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      std::fprintf(stderr, "capctl: the agent sent a bad file name '%s'\n", name.c_str());
      context.TryCancel();
      break;
    }
    if (fd < 0 || name != current) {
      if (fd >= 0) ::close(fd);
      current = name;
      part = options.out_dir + "/" + name + ".part";
      fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) {
        std::perror(("capctl: open(" + part + ")").c_str());
        context.TryCancel();
        break;
      }
    }
    const std::string& data = chunk.data();
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n <= 0) {
        std::perror(("capctl: write(" + part + ")").c_str());
        ::close(fd);
        std::filesystem::remove(part, error);
        context.TryCancel();
        (void)reader->Finish();
        return 1;
      }
      done += static_cast<size_t>(n);
    }
    bytes += data.size();
    if (chunk.last()) {
      ::close(fd);
      fd = -1;
      std::filesystem::rename(part, options.out_dir + "/" + name, error);
      ++files;
    }
  }
  if (fd >= 0) {
    ::close(fd);
    std::filesystem::remove(part, error);
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok() && interrupter.interrupted()) {
    std::fprintf(stderr,
                 "capctl: fetch of recording %s interrupted: %d whole files in %s, the one it was "
                 "fetching left out\n",
                 options.name.c_str(), files, options.out_dir.c_str());
    return 1;
  }
  if (!status.ok()) return Refused(options, "the fetch", status, interrupter);
  std::fprintf(stderr, "capctl: fetched %d files (%llu bytes) of recording %s into %s\n", files,
               static_cast<unsigned long long>(bytes), options.name.c_str(),
               options.out_dir.c_str());
  if (!open_file.empty()) {
    std::fprintf(stderr,
                 "capctl: recording %s is running: %s, the file it is writing, is not included "
                 "(fetch again after it rotates, or after `capctl record stop %s`)\n",
                 options.name.c_str(), open_file.c_str(), options.name.c_str());
  }
  return 0;
}

// Stops the recording just started on an agent too old for what was asked; whether it stopped.
bool StopAtOnce(const RecordOptions& options, v1::Capture::Stub& stub,
                const AgentConnection& connection) {
  grpc::ClientContext context;
  connection.Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  v1::StopRecordingRequest request;
  request.set_name(options.name);
  v1::RecordingInfo stopped;
  return stub.StopRecording(&context, request, &stopped).ok();
}

}  // namespace

int RunRecordCommand(const RecordOptions& options) {
  CallInterrupter interrupter;
  auto connection = AgentConnection::Connect(options.agent, options.connection);
  if (!connection.ok()) {
    std::fprintf(stderr, "capctl: %s\n", connection.status().message().c_str());
    return ExitCodeFor(connection.status().code());
  }
  auto stub = v1::Capture::NewStub(connection->channel());
  grpc::ClientContext context;
  connection->Prepare(context);
  const auto watching = interrupter.Watch(context);
  switch (options.action) {
    case RecordOptions::Action::kStart: {
      if (!options.upload.empty()) {
        auto location = ParseS3Url(options.upload);
        if (!location.ok()) {
          std::fprintf(stderr, "capctl: %s\n", location.status().message().c_str());
          return 2;
        }
      }
      context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
      v1::StartRecordingRequest request;
      request.set_name(options.name);
      request.set_interface(options.interface);
      request.set_filter(options.filter);
      SetDecap(options.decap, *request.mutable_decap());
      request.mutable_rotation()->set_max_bytes(options.rotate_bytes);
      request.mutable_rotation()->set_seconds(options.rotate_seconds);
      request.mutable_rotation()->set_max_files(options.rotate_files);
      request.set_upload(options.upload);
      const bool triggers = !options.start_on.empty() || !options.stop_on.empty();
      SetTriggerFields(options, request);
      v1::RecordingInfo info;
      const grpc::Status status = stub->StartRecording(&context, request, &info);
      if (!status.ok()) return Refused(options, "the recording", status, interrupter);
      if (triggers && context.GetServerInitialMetadata().count("capd-trigger") == 0) {
        // An agent that predates triggers records everything: the recording is stopped at once.
        const bool was_stopped = StopAtOnce(options, *stub, *connection);
        std::fprintf(stderr,
                     "capctl: agent %s does not support --start-on/--stop-on (a capd that "
                     "predates them): recording %s %s\n",
                     options.agent.text.c_str(), options.name.c_str(),
                     was_stopped ? "was stopped at once (capctl record delete removes it)"
                                 : "could not be stopped: stop it with capctl record stop");
        return 1;
      }
      if (!options.upload.empty() && info.upload().empty()) {
        // An agent older than the upload field ignores it: a recording that was meant to be
        // uploaded would run and delete files that never left the host.
        (void)StopAtOnce(options, *stub, *connection);
        std::fprintf(stderr,
                     "capctl: agent %s does not know --upload (capd older than capctl): "
                     "recording %s stopped\n",
                     options.agent.text.c_str(), options.name.c_str());
        return 2;
      }
      std::fprintf(stderr, "capctl: recording %s started\n", options.name.c_str());
      Print(info);
      return 0;
    }
    case RecordOptions::Action::kStop: {
      context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
      v1::StopRecordingRequest request;
      request.set_name(options.name);
      v1::RecordingInfo info;
      const grpc::Status status = stub->StopRecording(&context, request, &info);
      if (!status.ok()) return Refused(options, "to stop the recording", status, interrupter);
      std::fprintf(stderr, "capctl: recording %s stopped\n", options.name.c_str());
      Print(info);
      return 0;
    }
    case RecordOptions::Action::kDelete: {
      // A recording of 100,000 files takes a while to remove: longer than the other calls.
      context.set_deadline(std::chrono::system_clock::now() + 10 * kCallTimeout);
      v1::DeleteRecordingRequest request;
      request.set_name(options.name);
      v1::RecordingInfo info;
      const grpc::Status status = stub->DeleteRecording(&context, request, &info);
      if (!status.ok()) return Refused(options, "to delete the recording", status, interrupter);
      std::fprintf(stderr, "capctl: recording %s deleted (%d files, %llu bytes)\n",
                   options.name.c_str(), info.files_size(),
                   static_cast<unsigned long long>(info.bytes()));
      return 0;
    }
    case RecordOptions::Action::kList: {
      context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
      v1::ListRecordingsResponse response;
      const grpc::Status status = stub->ListRecordings(&context, {}, &response);
      if (!status.ok()) return Refused(options, "to list recordings", status, interrupter);
      if (response.recordings().empty()) std::printf("no recordings\n");
      for (const v1::RecordingInfo& r : response.recordings()) Print(r);
      return 0;
    }
    case RecordOptions::Action::kFetch:
      return Fetch(options, *stub, context, *connection, interrupter);
  }
  return 1;
}

}  // namespace capd::client

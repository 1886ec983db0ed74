#include "client/output/rotation.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <utility>

#include "upload/handoff_process.h"
#include "upload/s3_upload.h"

namespace capd::client {
namespace {

// Forwards every call to the ring and drives the hand-off: Poll at Tick and Flush (the session
// calls both every round), the wait at Close. The hand-off outlives the ring (member order), whose
// callbacks point at it.
class RingWithHandoff final : public CaptureWriter {
 public:
  RingWithHandoff(std::shared_ptr<FileHandoff> handoff, std::unique_ptr<capfile::RingWriter> ring)
      : handoff_(std::move(handoff)), ring_(std::move(ring)) {}
  ~RingWithHandoff() override {
    if (!closed_) (void)Close();
  }

  Status AddInterface(const InterfaceInfo& info) override { return ring_->AddInterface(info); }
  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data, std::string_view comment) override {
    return ring_->WritePacket(interface_index, timestamp_ns, original_length, data, comment);
  }
  Status WriteStatistics(uint32_t interface_index, const InterfaceCounters& counters) override {
    return ring_->WriteStatistics(interface_index, counters);
  }
  Status WriteDecryptionSecrets(uint32_t secrets_type, std::string_view secrets) override {
    return ring_->WriteDecryptionSecrets(secrets_type, secrets);
  }
  Status Flush() override {
    handoff_->Poll();
    return ring_->Flush();
  }
  Status Tick(uint64_t now_ns) override {
    handoff_->Poll();
    return ring_->Tick(now_ns);
  }
  Status Close() override {
    if (closed_) return close_status_;
    closed_ = true;
    close_status_ = ring_->Close();  // hands off the last file
    handoff_->Finish();
    ring_->Trim();  // --rotate-files, now that the files handed off meanwhile may go
    return close_status_;
  }

 private:
  std::shared_ptr<FileHandoff> handoff_;
  std::unique_ptr<capfile::RingWriter> ring_;
  bool closed_ = false;
  Status close_status_;
};

// -w FILE --upload without rotation: the one file, handed off once Close has completed it. What
// the ring would know of it is counted on the way.
class FileWithHandoff final : public CaptureWriter {
 public:
  FileWithHandoff(std::shared_ptr<FileHandoff> handoff, std::unique_ptr<CaptureWriter> file,
                  std::string path)
      : handoff_(std::move(handoff)), file_(std::move(file)) {
    details_.path = std::move(path);
    details_.number = 1;
    details_.opened_seconds = static_cast<int64_t>(std::time(nullptr));
  }
  ~FileWithHandoff() override {
    if (!closed_) (void)Close();
  }

  Status AddInterface(const InterfaceInfo& info) override {
    CAPD_RETURN_IF_ERROR(file_->AddInterface(info));
    details_.interfaces.push_back(info.name);
    details_.agents.push_back(info.agent);
    if (std::find(details_.link_types.begin(), details_.link_types.end(), info.link_type) ==
        details_.link_types.end()) {
      details_.link_types.push_back(info.link_type);
    }
    return Status::Ok();
  }
  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data, std::string_view comment) override {
    CAPD_RETURN_IF_ERROR(
        file_->WritePacket(interface_index, timestamp_ns, original_length, data, comment));
    if (details_.packets == 0 || timestamp_ns < details_.first_ns) details_.first_ns = timestamp_ns;
    if (details_.packets == 0 || timestamp_ns > details_.last_ns) details_.last_ns = timestamp_ns;
    ++details_.packets;
    return Status::Ok();
  }
  Status WriteStatistics(uint32_t interface_index, const InterfaceCounters& counters) override {
    return file_->WriteStatistics(interface_index, counters);
  }
  Status WriteDecryptionSecrets(uint32_t secrets_type, std::string_view secrets) override {
    return file_->WriteDecryptionSecrets(secrets_type, secrets);
  }
  Status Flush() override { return file_->Flush(); }
  Status Tick(uint64_t now_ns) override { return file_->Tick(now_ns); }
  Status Close() override {
    if (closed_) return close_status_;
    closed_ = true;
    close_status_ = file_->Close();
    // A file the writer could not complete is not uploaded: it is not what was captured.
    if (close_status_.ok()) handoff_->Add(details_);
    handoff_->Finish();
    return close_status_;
  }

 private:
  std::shared_ptr<FileHandoff> handoff_;
  std::unique_ptr<CaptureWriter> file_;
  FinishedFile details_;
  bool closed_ = false;
  Status close_status_;
};

void StderrLine(const std::string& message) {
  std::fprintf(stderr, "capctl: %s\n", message.c_str());
}

}  // namespace

HandoffSettings HandoffSettingsOf(const RotationOptions& options) {
  HandoffSettings settings;
  settings.max_running = std::max<uint32_t>(1, options.handoff_jobs);
  settings.max_attempts = std::max<uint32_t>(1, options.handoff_attempts);
  settings.exit_wait = std::chrono::seconds(options.handoff_wait_seconds);
  return settings;
}

bool HasHandoff(const RotationOptions& options) {
  return !options.post_rotate_command.empty() || !options.upload_url.empty();
}

StatusOr<std::shared_ptr<FileHandoff>> MakeHandoff(const RotationOptions& options) {
  std::unique_ptr<HandoffAction> action;
  if (!options.upload_url.empty()) {
    auto location = ParseS3Url(options.upload_url);
    if (!location.ok()) return location.status();
    action = std::make_unique<S3UploadAction>(*location, options.upload_endpoint_url);
  } else {
    action = std::make_unique<PostRotateAction>(options.post_rotate_command);
  }
  std::function<void(const std::string&)> log = options.log ? options.log : StderrLine;
  return std::make_shared<FileHandoff>(std::move(action), HandoffSettingsOf(options), log);
}

StatusOr<HandedOffRing> OpenRing(const RotationOptions& options, std::string application) {
  HandedOffRing opened;
  if (!HasHandoff(options)) {
    auto ring = capfile::MakeRotatingWriter(options, std::move(application));
    if (!ring.ok()) return ring.status();
    opened.writer = std::move(ring).value();
    return opened;
  }
  auto made = MakeHandoff(options);
  if (!made.ok()) return made.status();
  std::shared_ptr<FileHandoff> handoff = std::move(made).value();
  capfile::RingOptions ring = options;
  FileHandoff* h = handoff.get();
  ring.on_file_details = [h](const FinishedFile& file) { h->Add(file); };
  ring.may_delete = [h](const std::string& path) { return h->MayDelete(path); };
  auto writer = capfile::MakeRing(ring, std::move(application));
  if (!writer.ok()) return writer.status();
  opened.stop_waiting = [handoff] { handoff->StopWaiting(); };
  opened.all_handed_off = [handoff] { return handoff->Finish(); };  // at once after Close
  opened.writer = std::make_unique<RingWithHandoff>(handoff, std::move(writer).value());
  return opened;
}

StatusOr<HandedOffRing> WithHandoffAtClose(const RotationOptions& options,
                                           std::unique_ptr<CaptureWriter> writer) {
  auto made = MakeHandoff(options);
  if (!made.ok()) return made.status();
  std::shared_ptr<FileHandoff> handoff = std::move(made).value();
  HandedOffRing opened;
  opened.stop_waiting = [handoff] { handoff->StopWaiting(); };
  opened.all_handed_off = [handoff] { return handoff->Finish(); };
  opened.writer = std::make_unique<FileWithHandoff>(handoff, std::move(writer), options.path);
  return opened;
}

StatusOr<std::unique_ptr<CaptureWriter>> MakeRotatingWriter(const RotationOptions& options,
                                                            std::string application) {
  auto ring = OpenRing(options, std::move(application));
  if (!ring.ok()) return ring.status();
  return std::move(ring->writer);
}

}  // namespace capd::client

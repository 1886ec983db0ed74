#pragma once
// What the unit tests of CaptureHub and RecordingManager share: capture files written with
// libpcap, a StreamSink that records what it got, and sources that stand in for a ring's
// counters or failure around the real savefile reader. Nothing here needs root.

#include <pcap/pcap.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/capture/capture_source.h"
#include "agent/capture/savefile_source.h"
#include "agent/stream/stream_sink.h"
#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::agent::testing {

// tests/data/real/<name>.
std::filesystem::path RealCapture(const std::string& name);

// A temporary directory removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Ethernet/IPv4/UDP frames from 10.0.0.1:40000 to 10.0.0.2:`dst_port` with `payload_bytes` of
// payload, `count` of them one microsecond apart, written with libpcap at nanosecond precision.
void WriteUdpCapture(const std::filesystem::path& path, int count, uint16_t dst_port,
                     size_t payload_bytes);
// Appends frames as above to the list `frames` (for files with several kinds of packets).
std::string UdpFrame(uint16_t dst_port, size_t payload_bytes);
void WriteFrames(const std::filesystem::path& path, const std::vector<std::string>& frames);

// Records every message; Send refuses packet batches while `refuse_batches` is set (a full
// queue). Wait* block until the condition holds (a generous bound, only against a hang).
class RecordingSink : public StreamSink {
 public:
  bool Send(std::unique_ptr<v1::StreamResponse> message, bool droppable) override;
  std::unique_ptr<v1::StreamResponse> NewMessage() override;

  void set_refuse_batches(bool refuse);
  // Packets in the batches accepted so far.
  uint64_t packets() const;
  std::vector<v1::StreamResponse> messages() const;
  std::vector<v1::InterfaceDescription> descriptions() const;
  std::vector<v1::PacketBatch> batches() const;
  // The last statistics message (the final one once the subscription is done).
  v1::Statistics last_statistics() const;
  bool WaitForPackets(uint64_t n) const;
  bool WaitForDescriptions(size_t n) const;

 private:
  bool WaitFor(const std::function<bool()>& condition) const;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::vector<v1::StreamResponse> messages_;
  uint64_t packets_ = 0;
  bool refuse_batches_ = false;
};

// The `done` of one subscription, waited for.
class DoneLatch {
 public:
  std::function<void(StatusOr<v1::StreamEnd>)> Callback();
  // The outcome; fails the test (and returns an error) if it does not come.
  StatusOr<v1::StreamEnd> Wait();
  bool called() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<StatusOr<v1::StreamEnd>> outcome_;
  int calls_ = 0;
};

// Wraps the factory's sources: Stats() reports that the ring dropped one packet for every
// `deliver_per_drop` delivered (kernel_drops, and as many interface drops), as a busy live ring
// would; after the file ends, Dispatch fails with `error` if it is set.
class LossyFactory : public CaptureSourceFactory {
 public:
  LossyFactory(std::shared_ptr<SavefileSourceFactory> files, uint64_t deliver_per_drop,
               std::string error = "")
      : files_(std::move(files)), deliver_per_drop_(deliver_per_drop), error_(std::move(error)) {}
  std::optional<int> ExpectedDatalink(const std::string& interface) const override {
    return files_->ExpectedDatalink(interface);
  }
  StatusOr<std::unique_ptr<CaptureSource>> Open(const CaptureConfig& config) override;

 private:
  std::shared_ptr<SavefileSourceFactory> files_;
  uint64_t deliver_per_drop_;
  std::string error_;
};

// Lets packets out of a file only as the test releases them, like a ring the kernel fills: fd()
// is readable while released packets wait, Dispatch delivers those and says kWouldBlock when
// none is left. One source at a time.
class GatedFactory : public CaptureSourceFactory {
 public:
  explicit GatedFactory(std::shared_ptr<SavefileSourceFactory> files);
  ~GatedFactory() override;
  std::optional<int> ExpectedDatalink(const std::string& interface) const override {
    return files_->ExpectedDatalink(interface);
  }
  StatusOr<std::unique_ptr<CaptureSource>> Open(const CaptureConfig& config) override;
  // `n` more packets may be read (all at once, as one burst).
  void Release(uint64_t n);

 private:
  friend class GatedSource;
  std::shared_ptr<SavefileSourceFactory> files_;
  std::atomic<uint64_t> released_{0};
  int fd_;
};

}  // namespace capd::agent::testing

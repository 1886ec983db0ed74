#include "tests/unit/agent/hub_test_support.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tests/support/raw_frames.h"

namespace capd::agent::testing {
namespace {

// Only against a hang: every wait here ends as soon as its condition holds.
constexpr std::chrono::seconds kHangBound{30};

}  // namespace

std::filesystem::path RealCapture(const std::string& name) {
  return std::filesystem::path(CAPD_TESTDATA_DIR) / name;
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "capd-hub-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string UdpFrame(uint16_t dst_port, size_t payload_bytes) {
  const std::string dst_mac("\x02\x00\x00\x00\x00\x02", 6);
  const std::string src_mac("\x02\x00\x00\x00\x00\x01", 6);
  return test::EthernetHeader(dst_mac, src_mac, 0x0800) +
         test::Ipv4Packet({.src = "10.0.0.1", .dst = "10.0.0.2"},
                          test::UdpDatagram(40000, dst_port, std::string(payload_bytes, 'x')));
}

void WriteFrames(const std::filesystem::path& path, const std::vector<std::string>& frames) {
  pcap_t* dead =
      pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144, PCAP_TSTAMP_PRECISION_NANO);
  ASSERT_NE(dead, nullptr);
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  ASSERT_NE(dumper, nullptr) << pcap_geterr(dead);
  for (size_t i = 0; i < frames.size(); ++i) {
    pcap_pkthdr header{};
    header.ts.tv_sec = 1'700'000'000;
    header.ts.tv_usec = static_cast<suseconds_t>(i * 1000);  // nanoseconds at NANO precision
    header.caplen = header.len = static_cast<bpf_u_int32>(frames[i].size());
    pcap_dump(reinterpret_cast<u_char*>(dumper), &header,
              reinterpret_cast<const u_char*>(frames[i].data()));
  }
  pcap_dump_close(dumper);
  pcap_close(dead);
}

void WriteUdpCapture(const std::filesystem::path& path, int count, uint16_t dst_port,
                     size_t payload_bytes) {
  WriteFrames(path, std::vector<std::string>(static_cast<size_t>(count),
                                             UdpFrame(dst_port, payload_bytes)));
}

bool RecordingSink::Send(std::unique_ptr<v1::StreamResponse> message, bool droppable) {
  std::lock_guard lock(mu_);
  if (droppable && refuse_batches_) return false;
  if (message->has_packets()) packets_ += message->packets().timestamp_ns_size();
  messages_.push_back(std::move(*message));
  changed_.notify_all();
  return true;
}

std::unique_ptr<v1::StreamResponse> RecordingSink::NewMessage() {
  return std::make_unique<v1::StreamResponse>();
}

void RecordingSink::set_refuse_batches(bool refuse) {
  std::lock_guard lock(mu_);
  refuse_batches_ = refuse;
}

uint64_t RecordingSink::packets() const {
  std::lock_guard lock(mu_);
  return packets_;
}

std::vector<v1::StreamResponse> RecordingSink::messages() const {
  std::lock_guard lock(mu_);
  return messages_;
}

std::vector<v1::InterfaceDescription> RecordingSink::descriptions() const {
  std::vector<v1::InterfaceDescription> out;
  for (const auto& m : messages()) {
    if (m.has_interface()) out.push_back(m.interface());
  }
  return out;
}

std::vector<v1::PacketBatch> RecordingSink::batches() const {
  std::vector<v1::PacketBatch> out;
  for (const auto& m : messages()) {
    if (m.has_packets()) out.push_back(m.packets());
  }
  return out;
}

v1::Statistics RecordingSink::last_statistics() const {
  v1::Statistics last;
  for (const auto& m : messages()) {
    if (m.has_statistics()) last = m.statistics();
  }
  return last;
}

bool RecordingSink::WaitFor(const std::function<bool()>& condition) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, kHangBound, condition);
}

bool RecordingSink::WaitForPackets(uint64_t n) const {
  return WaitFor([&] { return packets_ >= n; });
}

bool RecordingSink::WaitForDescriptions(size_t n) const {
  return WaitFor([&] {
    size_t seen = 0;
    for (const auto& m : messages_) seen += m.has_interface() ? 1 : 0;
    return seen >= n;
  });
}

std::function<void(StatusOr<v1::StreamEnd>)> DoneLatch::Callback() {
  return [this](StatusOr<v1::StreamEnd> outcome) {
    std::lock_guard lock(mu_);
    ++calls_;
    outcome_.emplace(std::move(outcome));
    cv_.notify_all();
  };
}

StatusOr<v1::StreamEnd> DoneLatch::Wait() {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, kHangBound, [this] { return outcome_.has_value(); })) {
    ADD_FAILURE() << "the subscription never ended";
    return Internal("never ended");
  }
  EXPECT_EQ(calls_, 1) << "done is called exactly once";
  return *outcome_;
}

bool DoneLatch::called() const {
  std::lock_guard lock(mu_);
  return outcome_.has_value();
}

namespace {

class LossySource : public CaptureSource {
 public:
  LossySource(std::unique_ptr<CaptureSource> inner, uint64_t deliver_per_drop, std::string error)
      : inner_(std::move(inner)), deliver_per_drop_(deliver_per_drop), error_(std::move(error)) {}
  Status SetFilter(const filters::ComposedFilter& f) override { return inner_->SetFilter(f); }
  Status ReplaceFilter(const filters::ComposedFilter& f) override {
    return inner_->ReplaceFilter(f);
  }
  RecvStatus Dispatch(int max_packets, PacketCallback callback, void* context) override {
    const RecvStatus status = inner_->Dispatch(max_packets, callback, context);
    if (status == RecvStatus::kEndOfFile && !error_.empty()) return RecvStatus::kError;
    return status;
  }
  StatusOr<CaptureCounters> Stats() override {
    auto counters = inner_->Stats();
    if (!counters.ok()) return counters;
    CaptureCounters c = counters.value();
    const uint64_t drops = c.received / deliver_per_drop_;
    c.received += drops;  // ps_recv counts the dropped ones too
    c.kernel_drops = drops;
    c.interface_drops = drops;
    return c;
  }
  int fd() const override { return inner_->fd(); }
  int datalink() const override { return inner_->datalink(); }
  int snaplen() const override { return inner_->snaplen(); }
  uint32_t nanoseconds_per_tick() const override { return inner_->nanoseconds_per_tick(); }
  const std::string& interface() const override { return inner_->interface(); }
  const std::string& error() const override { return error_; }

 private:
  std::unique_ptr<CaptureSource> inner_;
  uint64_t deliver_per_drop_;
  std::string error_;
};

}  // namespace

StatusOr<std::unique_ptr<CaptureSource>> LossyFactory::Open(const CaptureConfig& config) {
  auto opened = files_->Open(config);
  if (!opened.ok()) return opened.status();
  return std::unique_ptr<CaptureSource>(
      std::make_unique<LossySource>(std::move(opened).value(), deliver_per_drop_, error_));
}

class GatedSource : public CaptureSource {
 public:
  GatedSource(std::unique_ptr<CaptureSource> inner, GatedFactory& gate)
      : inner_(std::move(inner)), gate_(gate) {}
  Status SetFilter(const filters::ComposedFilter& f) override { return inner_->SetFilter(f); }
  Status ReplaceFilter(const filters::ComposedFilter& f) override {
    return inner_->ReplaceFilter(f);
  }
  RecvStatus Dispatch(int, PacketCallback callback, void* context) override {
    uint64_t ignored;
    // Cleared before the check: a Release after it makes the fd readable again.
    [[maybe_unused]] auto n = read(gate_.fd_, &ignored, sizeof ignored);
    const uint64_t waiting = gate_.released_.load() - delivered_;
    if (waiting == 0) return RecvStatus::kWouldBlock;
    const RecvStatus status = inner_->Dispatch(static_cast<int>(waiting), callback, context);
    delivered_ = inner_->Stats().value().received;
    return status;
  }
  StatusOr<CaptureCounters> Stats() override { return inner_->Stats(); }
  int fd() const override { return gate_.fd_; }
  int datalink() const override { return inner_->datalink(); }
  int snaplen() const override { return inner_->snaplen(); }
  uint32_t nanoseconds_per_tick() const override { return inner_->nanoseconds_per_tick(); }
  const std::string& interface() const override { return inner_->interface(); }
  const std::string& error() const override { return inner_->error(); }

 private:
  std::unique_ptr<CaptureSource> inner_;
  GatedFactory& gate_;
  uint64_t delivered_ = 0;
};

GatedFactory::GatedFactory(std::shared_ptr<SavefileSourceFactory> files)
    : files_(std::move(files)), fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

GatedFactory::~GatedFactory() { close(fd_); }

StatusOr<std::unique_ptr<CaptureSource>> GatedFactory::Open(const CaptureConfig& config) {
  auto opened = files_->Open(config);
  if (!opened.ok()) return opened.status();
  return std::unique_ptr<CaptureSource>(
      std::make_unique<GatedSource>(std::move(opened).value(), *this));
}

void GatedFactory::Release(uint64_t n) {
  released_ += n;
  const uint64_t one = 1;
  [[maybe_unused]] auto written = write(fd_, &one, sizeof one);
}

}  // namespace capd::agent::testing

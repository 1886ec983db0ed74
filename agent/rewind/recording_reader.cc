#include "agent/rewind/recording_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace capd::agent::rewind {

StatusOr<std::unique_ptr<RecordingReader>> RecordingReader::Open(
    const std::vector<std::string>& paths, uint64_t since_ns, const filters::CompiledFilter* filter,
    int link_type, size_t max_open) {
  std::unique_ptr<RecordingReader> reader(
      new RecordingReader(paths, since_ns, filter, link_type, max_open));
  // The first ones now: the ring may delete a file while the ones before it are read.
  const Status filled = reader->Fill();
  if (!filled.ok()) return filled;
  return reader;
}

Status RecordingReader::Fill() {
  while (open_.size() < max_open_ && next_path_ < paths_.size()) {
    const std::string& path = paths_[next_path_++];
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) {
        warnings_.push_back("recording file " + path +
                            " rotated away before it could be read: its packets are missing");
        continue;
      }
      return Internal("open(" + path + "): " + std::strerror(errno));
    }
    FILE* stream = ::fdopen(fd, "rb");
    if (stream == nullptr) {
      ::close(fd);
      continue;
    }
    char error[PCAP_ERRBUF_SIZE] = {};
    // Takes the FILE: pcap_close closes it.
    pcap_t* handle =
        pcap_fopen_offline_with_tstamp_precision(stream, PCAP_TSTAMP_PRECISION_NANO, error);
    if (handle == nullptr) {
      std::fclose(stream);
      // A file the ring has only just created may not hold its header yet.
      warnings_.push_back("recording file " + path + " left out: " + error);
      continue;
    }
    if (pcap_datalink(handle) != link_type_) {
      warnings_.push_back("recording file " + path + " left out: link type " +
                          std::to_string(pcap_datalink(handle)) + ", not the stream's " +
                          std::to_string(link_type_));
      pcap_close(handle);
      continue;
    }
    open_.push_back({path, handle});
  }
  return Status::Ok();
}

RecordingReader::~RecordingReader() {
  for (File& f : open_) pcap_close(f.handle);
}

bool RecordingReader::Next(RecordedPacket& packet) {
  while (!open_.empty()) {
    File& file = open_.front();
    pcap_pkthdr* header = nullptr;
    const u_char* data = nullptr;
    const int result = pcap_next_ex(file.handle, &header, &data);
    if (result != 1) {
      // PCAP_ERROR_BREAK is the end of the file; an error here is a block the writer had not
      // finished (the current file) or damage: the file ends there either way.
      const bool last = open_.size() == 1 && next_path_ == paths_.size();
      if (result == PCAP_ERROR && !last) {
        warnings_.push_back("recording file " + file.path +
                            " cut short: " + pcap_geterr(file.handle));
      }
      pcap_close(file.handle);
      open_.pop_front();
      // The next file in turn; one that cannot be opened now is left out, the rest still read.
      if (Status filled = Fill(); !filled.ok()) {
        warnings_.push_back("recording file left out: " + filled.message());
      }
      continue;
    }
    const uint64_t ts = static_cast<uint64_t>(header->ts.tv_sec) * 1'000'000'000ULL +
                        static_cast<uint64_t>(header->ts.tv_usec);  // ns: nano precision
    if (earliest_ns_ == 0) earliest_ns_ = ts;
    if (ts < since_ns_) continue;
    if (filter_ != nullptr && filter_->instruction_count() != 0 &&
        !filter_->Matches(data, header->caplen, header->len)) {
      continue;
    }
    packet.timestamp_ns = ts;
    packet.original_length = header->len;
    packet.bytes = std::string_view(reinterpret_cast<const char*>(data), header->caplen);
    return true;
  }
  return false;
}

}  // namespace capd::agent::rewind

#pragma once
// Capture file encoders, for capctl's output and capd's recordings. How data flows: the stream
// reader (stream_to_file.h) calls AddInterface for each InterfaceDescription, WritePacket for each
// record of a PacketBatch; the caller Flushes after each batch (one write() to the sink per flush,
// so a FIFO reader sees packets promptly), then WriteStatistics and Close at the end. Encoders
// build blocks in memory; a ByteSink does the I/O.
//
// Thread-safety: none; one thread owns a writer.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace capd::capfile {

// Where encoded bytes go: a file, stdout, a FIFO. Write() writes everything or fails; a reader
// that went away (EPIPE) is StatusCode::kUnavailable so the caller can end quietly.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual Status Write(std::string_view bytes) = 0;
  // The pieces one after the other, as one Write of their concatenation would write them (same
  // contract). FdSink hands them to the kernel as they are (writev), with no copy in between;
  // other sinks take this default, which joins them and writes once.
  virtual Status WriteGather(std::span<const std::string_view> pieces) {
    if (pieces.size() == 1) return Write(pieces.front());
    std::string joined;
    for (const std::string_view piece : pieces) joined.append(piece);
    return Write(joined);
  }
};

// Writes to a file descriptor it owns (or borrows, for stdout). Raises a pipe's buffer to 1 MiB.
//
// Symbolic links (OpenFile, OpenFileOnFirstWrite): a path whose last component is a symbolic link
// is followed only to one of capctl's own descriptors (/dev/stdout, /dev/fd/N: opened as before),
// or to a FIFO, a socket or a character device (/dev/null, a link to Wireshark's FIFO), opened
// without O_CREAT or O_TRUNC. A link to a regular file, a
// folder, a block device or to nothing is refused (kInvalidArgument naming the link): a link
// planted in a shared folder cannot make capctl (perhaps run as root) empty or create a file
// elsewhere. Folders earlier in the path are the user's to choose and are followed.
class FdSink : public ByteSink {
 public:
  static StatusOr<std::unique_ptr<FdSink>> OpenFile(const std::string& path);  // create/truncate
  // Checks now that `path` can be written (an existing file is opened, a new one's directory
  // must be writable) but creates or truncates it only at the first Write: a capture that never
  // starts (the agent refuses it) leaves an earlier file as it was and creates none.
  static StatusOr<std::unique_ptr<FdSink>> OpenFileOnFirstWrite(const std::string& path);
  // A file without a name in the open folder `dir_fd` (O_TMPFILE): it appears, whole, only at
  // PublishIn. mode as for open(2), less the umask unless exact_mode (then fchmod to mode).
  // kFailedPrecondition where the file system has no O_TMPFILE (use CreateIn instead).
  // `display` names the folder in messages.
  static StatusOr<std::unique_ptr<FdSink>> CreateUnnamedIn(int dir_fd, const std::string& display,
                                                           mode_t mode, bool exact_mode);
  // A new file `name` in the open folder `dir_fd`, created with O_EXCL and O_NOFOLLOW after
  // removing any entry of that name (a link planted there is removed, never followed).
  static StatusOr<std::unique_ptr<FdSink>> CreateIn(int dir_fd, const std::string& name,
                                                    const std::string& display, mode_t mode,
                                                    bool exact_mode);
  // Gives a CreateUnnamedIn file the name `name` in `dir_fd`, replacing an entry of that name.
  Status PublishIn(int dir_fd, const std::string& name, const std::string& display);
  // Cuts a regular file back to `size` bytes and writes on from there (after a failed Write).
  Status Truncate(uint64_t size);
  static std::unique_ptr<FdSink> Stdout();
  // Takes ownership of fd (already open for writing, e.g. a FIFO).
  static std::unique_ptr<FdSink> Adopt(int fd, std::string name);
  // Not copyable: a copy would close the same fd twice. Added to the original contract for that
  // reason only; FdSinks are handed around as unique_ptr.
  FdSink(const FdSink&) = delete;
  FdSink& operator=(const FdSink&) = delete;
  ~FdSink() override;
  Status Write(std::string_view bytes) override;
  Status WriteGather(std::span<const std::string_view> pieces) override;

 private:
  FdSink(int fd, bool owned, std::string name);
  Status OpenDeferred();
  int fd_;
  bool owned_;
  std::string name_;
  bool deferred_ = false;  // OpenFileOnFirstWrite: not yet created (fd_ < 0) or truncated
};

struct InterfaceInfo {
  std::string name;         // if_name
  std::string description;  // if_description
  std::string filter;       // if_filter (the kernel filter applied), may be empty
  std::string os;           // if_os, may be empty
  uint16_t link_type = 1;   // LINKTYPE_*
  uint32_t snaplen = 262144;
  std::string agent;  // the capd agent that captured it (its --name); not written to the file
};

// Counters for one interface, written as a pcapng Interface Statistics Block.
struct InterfaceCounters {
  uint64_t start_ns = 0;         // isb_starttime
  uint64_t end_ns = 0;           // isb_endtime and the block's timestamp
  uint64_t received = 0;         // isb_ifrecv
  uint64_t interface_drops = 0;  // isb_ifdrop
  uint64_t kernel_drops = 0;     // isb_osdrop
  uint64_t delivered = 0;        // isb_usrdeliv: packets written to this file for the interface
  uint64_t agent_drops = 0;      // no standard option: written as an opt_comment
  std::string comment;           // more counters without a standard option (decapsulation)
};

enum class FileFormat { kPcapng, kPcap };

// pcapng Decryption Secrets Block types (secrets_type).
// "TLSK": a TLS key log in the NSS format (lines "LABEL <hex> <hex>\n"), which Wireshark reads
// from the file without any setting (tls.keylog_file not needed).
inline constexpr uint32_t kTlsKeyLogSecrets = 0x544c534b;

// Packets of one interface without comments, as a PacketBatch carries them: per-packet arrays
// and one blob holding their captured bytes back to back. Borrowed for one WritePackets call,
// except `data` when `data_owner` is set.
struct PacketRun {
  const uint64_t* timestamp_ns = nullptr;
  const uint32_t* original_length = nullptr;
  const uint32_t* captured_length = nullptr;
  const uint8_t* data = nullptr;  // packet k's bytes follow packet k-1's
  size_t count = 0;
  // Keeps `data` alive and unchanged as long as it is held. A writer may hold it until its next
  // Flush (or Close) and hand large packets' bytes to the sink from `data` itself instead of
  // copying them into its buffer (pcapng: a packet over 1 KiB). Null: `data` is copied.
  std::shared_ptr<const void> data_owner;
};

class CaptureWriter {
 public:
  virtual ~CaptureWriter() = default;
  // Interfaces are numbered in the order they are added, from 0.
  virtual Status AddInterface(const InterfaceInfo& info) = 0;
  // data.size() is the captured length; original_length >= data.size().
  // comment: pcapng opt_comment on the packet (e.g. AWS Geneve options); pcap drops it.
  virtual Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns,
                             uint32_t original_length, std::span<const uint8_t> data,
                             std::string_view comment) = 0;
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data) {
    return WritePacket(interface_index, timestamp_ns, original_length, data, {});
  }
  // The same bytes as WritePacket for each packet of `run` in turn (with no comment). Writers
  // that encode per packet take the default; the file encoders do the run in one pass (capctl's
  // per-packet path). After an error the run may be partly written.
  virtual Status WritePackets(uint32_t interface_index, const PacketRun& run) {
    const uint8_t* data = run.data;
    for (size_t k = 0; k < run.count; ++k) {
      CAPD_RETURN_IF_ERROR(WritePacket(interface_index, run.timestamp_ns[k], run.original_length[k],
                                       {data, run.captured_length[k]}));
      data += run.captured_length[k];
    }
    return Status::Ok();
  }
  // pcapng: an Interface Statistics Block. pcap has no place for it: ignored.
  virtual Status WriteStatistics(uint32_t interface_index, const InterfaceCounters& counters) = 0;
  // pcapng: a Decryption Secrets Block (type e.g. kTlsKeyLogSecrets), placed before every packet
  // written after it, so a reader has the keys before the traffic they decrypt. The ring of
  // files also repeats the secrets written so far at the start of each new file (see
  // rotating_writer.h). kFailedPrecondition from a format without such a block (pcap), and from
  // any writer that does not override this.
  virtual Status WriteDecryptionSecrets(uint32_t /*secrets_type*/, std::string_view /*secrets*/) {
    return Status(StatusCode::kFailedPrecondition,
                  "this capture file format has no place for decryption secrets (pcapng has)");
  }
  // Hands everything buffered to the sink in one write.
  virtual Status Flush() = 0;
  // Wall-clock time (Unix epoch ns) for writers that act on it even when no packet arrives
  // (rotation on time boundaries, rotating_writer.h). Cheap; call it about once a second on the
  // writer's thread. The other writers ignore it.
  virtual Status Tick(uint64_t /*now_ns*/) { return Status::Ok(); }
  // Finishes the output: Flush for the single-file writers; the rotating writer also writes the
  // statistics blocks it keeps and closes its current file. Nothing is written after Close.
  virtual Status Close() { return Flush(); }
};

// application: the shb_userappl text, e.g. "capctl 0.1.0". The header (pcapng SHB; pcap file
// header) is buffered at once and written on the first Flush.
std::unique_ptr<CaptureWriter> MakePcapngWriter(std::unique_ptr<ByteSink> sink,
                                                std::string application);
// pcap with the nanosecond magic (0xa1b23c4d). A pcap file has one link type and snaplen: they
// come from the first interface; adding a second one with another link type is kInvalidArgument.
// The file header is written when the first interface is added.
std::unique_ptr<CaptureWriter> MakePcapWriter(std::unique_ptr<ByteSink> sink);

}  // namespace capd::capfile

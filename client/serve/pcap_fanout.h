#pragma once
// One capture byte stream (classic pcap or pcapng) served to any number of TCP clients
// (PCAP-over-IP: Wireshark `-i TCP@HOST:PORT`, Arkime, NetworkMiner, Zeek).
//
// How data flows: the writer's thread hands over header bytes and whole records (Publish, e.g.
// from the writers of fanout_writer.h); the fan-out thread queues them for every connected
// client. The header is what every client needs before records and whenever it joins: pcap's
// file header; pcapng's section header block and each interface description block, added as
// interfaces appear. A client gets the whole header so far first, then the records from when it
// connected, and every later header part in its place among them. A client's queue is bounded: a
// record that does not fit is dropped for that client alone and counted (header bytes never are),
// so a slow client never slows the input or the other clients. What a client has not taken yet
// is at most its queue plus the socket's send buffer (fixed at 256 KiB, see the .cc). One thread,
// one poll() loop, non-blocking sockets; the records of one hand-over share one buffer that every
// client's queue points into, never allocated per packet, and copied for a client only when it
// takes less than half of it (a slow client's few records: its memory stays bounded by its queue).
//
// When the input ends (EndInput), the listener closes, clients get what is queued for at most
// `drain_timeout`, then their connections close (a reader sees the end of the capture).
//
// Thread-safety: Listen(), Start() and Wait() from one thread; Publish() and EndInput() from any
// one thread (the writer's).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace capd::client {

class PcapFanout {
 public:
  // Whole records (pcap records, pcapng Enhanced Packet Blocks) back to back in one buffer.
  struct Records {
    std::shared_ptr<const std::string> bytes;
    std::vector<uint32_t> ends;  // where each record ends in *bytes, ascending
  };

  struct Totals {
    uint64_t clients = 0;          // clients that connected
    uint64_t packets_in = 0;       // records read from the input
    uint64_t packets_sent = 0;     // records written to clients, summed over clients
    uint64_t packets_dropped = 0;  // records dropped for full queues, summed over clients
  };

  // Binds and listens on "HOST:PORT" or "[IPV6]:PORT" (port 0: the kernel picks one).
  // kInvalidArgument for an address that does not parse or resolve; kInternal naming the call
  // (bind, listen) that failed.
  static StatusOr<std::unique_ptr<PcapFanout>> Listen(const std::string& address,
                                                      size_t client_queue_bytes);
  ~PcapFanout();  // Wait()s
  PcapFanout(const PcapFanout&) = delete;
  PcapFanout& operator=(const PcapFanout&) = delete;

  // The address actually bound, e.g. "127.0.0.1:57012".
  const std::string& address() const { return address_; }
  bool loopback() const { return loopback_; }

  // Starts the thread.
  void Start(std::chrono::milliseconds drain_timeout);
  // Hands over header bytes to add (before the records that need them; empty when none) and
  // records, in order. Waits only while several MiB handed over earlier are not yet queued (the
  // fan-out thread takes them at once; clients never make it wait). Ignored after EndInput.
  void Publish(std::string header, Records records);
  // The input is over: what was published is still delivered, then the clients are closed.
  void EndInput();
  // Waits until the input has ended and the clients are closed; returns the totals.
  Totals Wait();

 private:
  PcapFanout(int listen_fd, int wake_fd, std::string address, bool loopback,
             size_t client_queue_bytes)
      : listen_fd_(listen_fd),
        wake_fd_(wake_fd),
        address_(std::move(address)),
        loopback_(loopback),
        client_queue_bytes_(client_queue_bytes) {}
  void Run(std::chrono::milliseconds drain_timeout);
  void Wake();

  int listen_fd_;
  int wake_fd_;  // an eventfd: Publish and EndInput wake the fan-out thread's poll()
  std::string address_;
  bool loopback_;
  size_t client_queue_bytes_;
  std::mutex mu_;
  std::condition_variable inbox_space_;
  std::string inbox_header_;   // guarded by mu_
  std::deque<Records> inbox_;  // guarded by mu_
  size_t inbox_bytes_ = 0;     // guarded by mu_
  bool input_ended_ = false;   // guarded by mu_
  std::thread thread_;
  Totals totals_;  // written by the thread, read after join
};

}  // namespace capd::client

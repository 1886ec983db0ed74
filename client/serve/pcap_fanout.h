#pragma once
// One pcap byte stream served to any number of TCP clients (PCAP-over-IP: Wireshark
// `-i TCP@HOST:PORT`, Arkime, NetworkMiner, Zeek).
//
// How data flows: a pcap stream (file header, then records) arrives on an input fd; the fan-out
// thread cuts it into the header and whole records and queues each record for every connected
// client. A client gets the header first, then the records from when it connected. A client's
// queue is bounded: a record that does not fit is dropped for that client alone and counted,
// so a slow client never slows the input or the other clients. What a client has not taken yet
// is at most its queue plus the socket's send buffer (fixed at 256 KiB, see the .cc). One thread,
// one poll() loop, non-blocking sockets; records are shared between queues, not copied.
//
// When the input ends (EOF), the listener closes, clients get what is queued for at most
// `drain_timeout`, then their connections close (a pcap reader sees the end of the capture).
//
// Thread-safety: Listen() and Start() from one thread; Wait() from the same thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace capd::client {

class PcapFanout {
 public:
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

  // Starts the thread; it owns `input_fd` (the read end of the pcap stream) from here on.
  void Start(int input_fd, std::chrono::milliseconds drain_timeout);
  // Waits until the input has ended and the clients are closed; returns the totals.
  Totals Wait();

 private:
  PcapFanout(int listen_fd, std::string address, bool loopback, size_t client_queue_bytes)
      : listen_fd_(listen_fd),
        address_(std::move(address)),
        loopback_(loopback),
        client_queue_bytes_(client_queue_bytes) {}
  void Run(int input_fd, std::chrono::milliseconds drain_timeout);

  int listen_fd_;
  std::string address_;
  bool loopback_;
  size_t client_queue_bytes_;
  std::thread thread_;
  Totals totals_;  // written by the thread, read after join
};

}  // namespace capd::client

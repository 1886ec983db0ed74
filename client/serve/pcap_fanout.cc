#include "client/serve/pcap_fanout.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <list>
#include <optional>
#include <vector>

namespace capd::client {
namespace {

using Clock = std::chrono::steady_clock;
using Buffer = std::shared_ptr<const std::string>;

constexpr size_t kMaxClients = 64;
// Records handed over but not yet queued for the clients: beyond this Publish waits for the
// fan-out thread (which never blocks on a client), as a writer into a full pipe would.
constexpr size_t kMaxInboxBytes = 4 << 20;
// The kernel's send buffer per client, fixed: left alone, Linux grows it up to tcp_wmem's
// maximum (4 MiB by default) for a client that does not read, and a client's backlog would not be
// bounded by its queue. 256 KiB (the kernel doubles it) still keeps a LAN client at full speed.
constexpr int kClientSendBuffer = 256 * 1024;

std::string SocketAddressText(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(address);
    inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(a.sin_port));
  }
  const auto& a = reinterpret_cast<const sockaddr_in6&>(address);
  inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
  std::string out = "[";  // built piecewise: GCC 12 warns (-Wrestrict, falsely) on "[" + string&&
  out.append(text).append("]:").append(std::to_string(ntohs(a.sin6_port)));
  return out;
}

bool IsLoopback(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(address);
    return (ntohl(a.sin_addr.s_addr) >> 24) == 127;
  }
  const auto& a = reinterpret_cast<const sockaddr_in6&>(address);
  return IN6_IS_ADDR_LOOPBACK(&a.sin6_addr);
}

struct Client {
  int fd = -1;
  std::string peer;
  // [begin, end) of a shared buffer: header bytes, or `packets` whole records.
  struct Queued {
    Buffer bytes;
    size_t begin;
    size_t end;
    uint32_t packets;  // 0 for header bytes, which are never dropped
  };
  std::deque<Queued> queue;
  size_t queued_bytes = 0;  // packets only
  size_t offset = 0;        // bytes of queue.front() already sent
  uint64_t sent = 0;
  uint64_t dropped = 0;
  bool closed = false;
  std::string close_reason;
};

// Sends what the socket takes without blocking. False when the connection failed.
bool Flush(Client& client) {
  while (!client.queue.empty()) {
    const Client::Queued& front = client.queue.front();
    const size_t size = front.end - front.begin;
    const ssize_t n = send(client.fd, front.bytes->data() + front.begin + client.offset,
                           size - client.offset, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      client.close_reason = std::strerror(errno);
      return false;
    }
    client.offset += static_cast<size_t>(n);
    if (client.offset < size) continue;
    if (front.packets > 0) {
      client.sent += front.packets;
      client.queued_bytes -= size;
    }
    client.queue.pop_front();
    client.offset = 0;
  }
  return true;
}

}  // namespace

StatusOr<std::unique_ptr<PcapFanout>> PcapFanout::Listen(const std::string& address,
                                                         size_t client_queue_bytes) {
  std::string host;
  std::string port;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return InvalidArgument("--listen " + address + ": expected [IPV6]:PORT");
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      return InvalidArgument("--listen " + address + ": expected HOST:PORT");
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  uint32_t port_number = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() ||
      port_number > 65535) {
    return InvalidArgument("--listen " + address + ": the port must be 0..65535");
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) return InvalidArgument("--listen " + address + ": " + gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found, freeaddrinfo);

  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Internal(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, 16) != 0) {
    const std::string why = std::strerror(errno);
    close(fd);
    return Internal("bind/listen(" + address + "): " + why);
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    const std::string why = std::strerror(errno);
    close(fd);
    return Internal("getsockname: " + why);
  }
  const int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    const std::string why = std::strerror(errno);
    close(fd);
    return Internal("eventfd: " + why);
  }
  return std::unique_ptr<PcapFanout>(
      new PcapFanout(fd, wake, SocketAddressText(bound), IsLoopback(bound), client_queue_bytes));
}

PcapFanout::~PcapFanout() {
  EndInput();
  Wait();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void PcapFanout::Start(std::chrono::milliseconds drain_timeout) {
  thread_ = std::thread([this, drain_timeout] { Run(drain_timeout); });
}

void PcapFanout::Wake() {
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

void PcapFanout::Publish(std::string header, Records records) {
  const size_t bytes = header.size() + (records.bytes ? records.bytes->size() : 0);
  {
    std::unique_lock lock(mu_);
    inbox_space_.wait(lock, [&] {
      return input_ended_ || inbox_bytes_ == 0 || inbox_bytes_ + bytes <= kMaxInboxBytes;
    });
    if (input_ended_) return;
    inbox_header_ += header;
    if (!records.ends.empty()) inbox_.push_back(std::move(records));
    inbox_bytes_ += bytes;
  }
  Wake();
}

void PcapFanout::EndInput() {
  {
    std::lock_guard lock(mu_);
    if (input_ended_) return;
    input_ended_ = true;
  }
  Wake();
}

PcapFanout::Totals PcapFanout::Wait() {
  if (thread_.joinable()) thread_.join();
  return totals_;
}

void PcapFanout::Run(std::chrono::milliseconds drain_timeout) {
  std::list<Client> clients;
  Buffer header;  // all header bytes so far, for a client that joins
  bool input_open = true;
  Clock::time_point drain_deadline;
  std::deque<Records> inbox;

  const auto leave = [this](Client& c) {
    std::fprintf(stderr, "capctl: client %s left (%s): %llu packets sent, %llu dropped\n",
                 c.peer.c_str(), c.close_reason.empty() ? "closed" : c.close_reason.c_str(),
                 static_cast<unsigned long long>(c.sent),
                 static_cast<unsigned long long>(c.dropped));
    totals_.packets_sent += c.sent;
    totals_.packets_dropped += c.dropped;
    close(c.fd);
  };
  // Runs of records that fit the client's queue become one entry each. A run that is less than
  // half of its buffer gets a copy of its own: otherwise a slow client, taking a few records of
  // each hand-over as its queue frees up, would keep whole buffers alive for them, and its memory
  // would no longer be bounded by its queue (at most about twice the queue, this way).
  const auto enqueue = [this](Client& c, const Records& records) {
    const size_t first_new = c.queue.size();  // earlier entries are other buffers'
    size_t begin = 0;
    for (const uint32_t end : records.ends) {
      const size_t size = end - begin;
      if (c.queued_bytes + size > client_queue_bytes_) {
        if (c.dropped++ == 0) {
          std::fprintf(stderr,
                       "capctl: client %s is too slow: dropping packets for it (its queue of %zu "
                       "bytes is full)\n",
                       c.peer.c_str(), client_queue_bytes_);
        }
      } else {
        Client::Queued* last = c.queue.empty() ? nullptr : &c.queue.back();
        if (last != nullptr && last->packets > 0 && last->bytes == records.bytes &&
            last->end == begin) {
          last->end = end;
          ++last->packets;
        } else {
          c.queue.push_back({records.bytes, begin, end, 1});
        }
        c.queued_bytes += size;
      }
      begin = end;
    }
    for (size_t i = first_new; i < c.queue.size(); ++i) {
      Client::Queued& run = c.queue[i];
      const size_t size = run.end - run.begin;
      if (size * 2 >= run.bytes->size()) continue;
      run.bytes = std::make_shared<const std::string>(*run.bytes, run.begin, size);
      run.begin = 0;
      run.end = size;
    }
  };

  while (true) {
    if (!input_open) {
      if (listen_fd_ >= 0) {
        close(listen_fd_);
        listen_fd_ = -1;
      }
      const bool expired = Clock::now() >= drain_deadline;
      for (Client& c : clients) {
        if (c.closed) continue;
        if (c.queue.empty()) {
          c.closed = true;
          c.close_reason = "end of the capture";
        } else if (expired) {
          c.closed = true;
          c.close_reason = "end of the capture; its queue was not sent in time";
        }
      }
    }
    for (auto it = clients.begin(); it != clients.end();) {
      if (it->closed) {
        leave(*it);
        it = clients.erase(it);
      } else {
        ++it;
      }
    }
    if (!input_open && clients.empty()) break;

    std::vector<pollfd> fds;
    if (listen_fd_ >= 0) fds.push_back({listen_fd_, POLLIN, 0});
    if (input_open) fds.push_back({wake_fd_, POLLIN, 0});
    const size_t first_client = fds.size();
    for (const Client& c : clients) {
      fds.push_back({c.fd, static_cast<short>(POLLIN | (c.queue.empty() ? 0 : POLLOUT)), 0});
    }
    int timeout_ms = -1;
    if (!input_open) {
      timeout_ms = static_cast<int>(std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(drain_deadline - Clock::now())
                 .count()));
    }
    if (poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "capctl: poll: %s\n", std::strerror(errno));
      break;
    }

    size_t index = 0;
    if (listen_fd_ >= 0 && (fds[index++].revents & POLLIN)) {
      while (true) {
        sockaddr_storage peer{};
        socklen_t length = sizeof peer;
        const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &length,
                               SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;  // EAGAIN: no more pending; other errors: the client gave up
        if (clients.size() >= kMaxClients) {
          std::fprintf(stderr, "capctl: refusing client %s: %zu clients already\n",
                       SocketAddressText(peer).c_str(), kMaxClients);
          close(fd);
          continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kClientSendBuffer, sizeof kClientSendBuffer);
        Client& c = clients.emplace_back();
        c.fd = fd;
        c.peer = SocketAddressText(peer);
        if (header) c.queue.push_back({header, 0, header->size(), 0});
        ++totals_.clients;
        std::fprintf(stderr, "capctl: client %s connected (%zu connected)\n", c.peer.c_str(),
                     clients.size());
      }
    }
    if (input_open && (fds[index++].revents & POLLIN)) {
      uint64_t wakes;
      (void)!read(wake_fd_, &wakes, sizeof wakes);
      std::string new_header;
      {
        std::lock_guard lock(mu_);
        new_header.swap(inbox_header_);
        inbox.swap(inbox_);
        inbox_bytes_ = 0;
        input_open = !input_ended_ || !inbox.empty() || !new_header.empty();
      }
      inbox_space_.notify_all();
      if (!new_header.empty()) {
        // Connected clients get the new part where it belongs (before the records that need
        // it); a client that joins later gets all of it at once.
        auto part = std::make_shared<const std::string>(new_header);
        for (Client& c : clients) c.queue.push_back({part, 0, part->size(), 0});
        header = std::make_shared<const std::string>(header ? *header + new_header : new_header);
      }
      for (const Records& records : inbox) {
        totals_.packets_in += records.ends.size();
        for (Client& c : clients) enqueue(c, records);
      }
      inbox.clear();
      // The end comes after the last records: look again at once for it.
      if (input_open) {
        std::lock_guard lock(mu_);
        if (input_ended_ && inbox_.empty() && inbox_header_.empty()) input_open = false;
      }
      if (!input_open) drain_deadline = Clock::now() + drain_timeout;
    }
    auto it = clients.begin();
    for (size_t i = first_client; i < fds.size(); ++i, ++it) {
      Client& c = *it;
      const short revents = fds[i].revents;
      if (revents & POLLIN) {
        // Clients have nothing to say; read and discard, and notice when they hang up.
        char discard[512];
        const ssize_t n = recv(c.fd, discard, sizeof discard, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          c.closed = true;
          if (n < 0) c.close_reason = std::strerror(errno);
          continue;
        }
      }
      if (revents & (POLLERR | POLLHUP)) {
        c.closed = true;
        c.close_reason = "connection lost";
        continue;
      }
      if (!c.queue.empty() && !Flush(c)) c.closed = true;
    }
  }
  for (Client& c : clients) leave(c);
  {
    // Nobody takes more: a writer waiting for space must not wait forever.
    std::lock_guard lock(mu_);
    input_ended_ = true;
    inbox_.clear();
    inbox_bytes_ = 0;
  }
  inbox_space_.notify_all();
}

}  // namespace capd::client

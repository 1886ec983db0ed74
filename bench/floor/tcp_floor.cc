// The floor of any capd -> capctl design at a given packet rate and size: the cost of moving the
// bytes alone, with no capture, no gRPC, no protobuf and no pcapng. A child process writes
// TOTAL bytes to a loopback TCP connection in CHUNK-byte writes (one per message), the parent
// reads them and writes them to OUT (a file, or /dev/null to leave the disk out). Each side
// prints its own CPU seconds (user + system, getrusage).
//
// capd + capctl cost at least tcpdump's (ring and file) plus this hop. docs/performance.md uses
// it for the 64-byte goal: 1M packets of 64 B are ~104 MB on the wire and in the file, in ~1100
// messages of ~93 KB:
//   capd_tcp_floor 104000000 93600 /dev/null
//
// Usage: capd_tcp_floor TOTAL_BYTES CHUNK_BYTES OUT

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int Fail(const char* what) {
  std::perror(what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: capd_tcp_floor TOTAL_BYTES CHUNK_BYTES OUT\n");
    return 2;
  }
  const long total = std::atol(argv[1]);
  const long chunk = std::atol(argv[2]);
  if (total <= 0 || chunk <= 0) return 2;

  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      listen(listener, 1) != 0) {
    return Fail("listen");
  }
  const pid_t child = fork();
  if (child < 0) return Fail("fork");
  if (child == 0) {  // the agent's side: one write per message
    const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(s, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) _exit(1);
    const std::vector<char> message(static_cast<size_t>(chunk), 0x5a);
    const double start = CpuSeconds();
    for (long sent = 0; sent < total;) {
      const ssize_t n = write(s, message.data(), message.size());
      if (n <= 0) _exit(1);
      sent += n;
    }
    close(s);
    std::fprintf(stderr, "sender   cpu %.3f s\n", CpuSeconds() - start);
    _exit(0);
  }
  // The client's side: read, then write to the output.
  const int s = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  const int out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (s < 0 || out < 0) return Fail("accept/open");
  std::vector<char> buffer(1 << 20);
  const double start = CpuSeconds();
  long received = 0;
  while (true) {
    const ssize_t n = read(s, buffer.data(), buffer.size());
    if (n <= 0) break;
    received += n;
    if (write(out, buffer.data(), static_cast<size_t>(n)) != n) return Fail("write");
  }
  close(out);
  int status = 0;
  waitpid(child, &status, 0);
  std::fprintf(stderr, "receiver cpu %.3f s (%ld bytes)\n", CpuSeconds() - start, received);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 && received >= total ? 0 : 1;
}

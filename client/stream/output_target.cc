#include "client/stream/output_target.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>

namespace capd::client {
namespace {

StatusOr<OutputTarget> OpenFifo(const std::string& path, const std::function<bool()>& give_up,
                                bool say_waiting) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    if (!S_ISFIFO(st.st_mode)) {
      return InvalidArgument("--fifo " + path + ": exists and is not a FIFO");
    }
  } else if (mkfifo(path.c_str(), 0600) != 0) {
    return Internal("mkfifo(" + path + "): " + std::strerror(errno));
  }
  // A non-blocking open fails with ENXIO until a reader has the FIFO open; polling it (instead
  // of one blocking open) lets capctl give up when the reader it started has exited.
  int fd = -1;
  while ((fd = open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
    if (errno != ENXIO && errno != EINTR) {
      return Internal("open(" + path + "): " + std::strerror(errno));
    }
    if (give_up && give_up())
      return Unavailable("the reader of " + path + " exited before opening it");
    // Once, so that a capctl that seems to hang on a terminal says why. Not for the Wireshark
    // capctl started, nor as an extcap (Wireshark shows an extcap's stderr as an error).
    if (say_waiting && std::exchange(say_waiting, false)) {
      std::fprintf(stderr,
                   "capctl: waiting for a reader of the FIFO %s (e.g. wireshark -k -i %s)\n",
                   path.c_str(), path.c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Writes block from here on: the stream's pace is the reader's (the agent's queue absorbs it).
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return OutputTarget{FdSink::Adopt(fd, "FIFO " + path), "FIFO " + path, true, fd};
}

}  // namespace

StatusOr<OutputTarget> OpenOutputTarget(const StreamOptions& options,
                                        const std::function<bool()>& give_up) {
  if (!options.fifo_path.empty()) {
    return OpenFifo(options.fifo_path, give_up, !options.wireshark && isatty(STDERR_FILENO));
  }
  if (options.write_path.empty() || options.write_path == "-") {
    if (options.write_path.empty() && isatty(STDOUT_FILENO)) {
      return InvalidArgument(
          "not writing a binary capture to a terminal: use -w FILE, -w - | wireshark -k -i -, "
          "or --fifo PATH");
    }
    return OutputTarget{FdSink::Stdout(), "stdout", true, STDOUT_FILENO};
  }
  // Created or truncated only when the agent has accepted the stream (the first write).
  auto file = FdSink::OpenFileOnFirstWrite(options.write_path);
  if (!file.ok()) return file.status();
  return OutputTarget{std::move(file.value()), options.write_path, false};
}

}  // namespace capd::client

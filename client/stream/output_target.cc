#include "client/stream/output_target.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace capd::client {
namespace {

StatusOr<OutputTarget> OpenFifo(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    if (!S_ISFIFO(st.st_mode)) {
      return InvalidArgument("--fifo " + path + ": exists and is not a FIFO");
    }
  } else if (mkfifo(path.c_str(), 0600) != 0) {
    return Internal("mkfifo(" + path + "): " + std::strerror(errno));
  }
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);  // waits for a reader
  if (fd < 0) return Internal("open(" + path + "): " + std::strerror(errno));
  return OutputTarget{FdSink::Adopt(fd, "FIFO " + path), "FIFO " + path, true};
}

}  // namespace

StatusOr<OutputTarget> OpenOutputTarget(const StreamOptions& options) {
  if (!options.fifo_path.empty()) return OpenFifo(options.fifo_path);
  if (options.write_path.empty() || options.write_path == "-") {
    if (options.write_path.empty() && isatty(STDOUT_FILENO)) {
      return InvalidArgument(
          "not writing a binary capture to a terminal: use -w FILE, -w - | wireshark -k -i -, "
          "or --fifo PATH");
    }
    return OutputTarget{FdSink::Stdout(), "stdout", true};
  }
  auto file = FdSink::OpenFile(options.write_path);
  if (!file.ok()) return file.status();
  return OutputTarget{std::move(file.value()), options.write_path, false};
}

}  // namespace capd::client

#include "client/stream/wireshark_viewer.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "client/transport/child_process.h"

namespace capd::client {

StatusOr<std::unique_ptr<WiresharkViewer>> WiresharkViewer::Start() {
  char folder_template[] = "/tmp/capctl-wireshark-XXXXXX";
  if (mkdtemp(folder_template) == nullptr) {  // mode 0700: only this user sees the FIFO
    return Internal(std::string("mkdtemp: ") + std::strerror(errno));
  }
  const std::string folder = folder_template;
  const std::string fifo = folder + "/capd.fifo";
  if (mkfifo(fifo.c_str(), 0600) != 0) {
    const std::string error = std::strerror(errno);
    rmdir(folder.c_str());
    return Internal("mkfifo(" + fifo + "): " + error);
  }
  const char* custom = std::getenv("WIRESHARK");
  const std::string program = custom != nullptr && *custom != '\0' ? custom : "wireshark";
  auto pid = SpawnChild({program, "-k", "-i", fifo}, "/dev/null");
  if (!pid.ok()) {
    unlink(fifo.c_str());
    rmdir(folder.c_str());
    return Status(StatusCode::kFailedPrecondition,
                  pid.status().message() + " (set $WIRESHARK to Wireshark's path)");
  }
  return std::unique_ptr<WiresharkViewer>(new WiresharkViewer(folder, fifo, pid.value()));
}

bool WiresharkViewer::Exited() {
  if (pid_ <= 0) return true;
  if (waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = 0;
  return pid_ <= 0;
}

WiresharkViewer::~WiresharkViewer() {
  unlink(fifo_path_.c_str());
  rmdir(folder_.c_str());
}

}  // namespace capd::client

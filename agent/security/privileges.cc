#include "agent/security/privileges.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <memory>
#include <vector>

namespace capd::agent {
namespace {

constexpr cap_value_t kCaptureCapabilities[] = {CAP_NET_RAW, CAP_NET_ADMIN};
constexpr cap_value_t kPeerLookupCapabilities[] = {CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH};

std::vector<cap_value_t> Wanted(KeptCapabilities keep) {
  if (keep == KeptCapabilities::kCapture) {
    return {std::begin(kCaptureCapabilities), std::end(kCaptureCapabilities)};
  }
  if (keep == KeptCapabilities::kNone) return {};
  return {std::begin(kPeerLookupCapabilities), std::end(kPeerLookupCapabilities)};
}

Status Errno(const std::string& call) {
  return {StatusCode::kFailedPrecondition, call + ": " + std::strerror(errno)};
}

struct CapFree {
  void operator()(void* p) const { cap_free(p); }
};

bool Permitted(cap_value_t cap) {
  std::unique_ptr<_cap_struct, CapFree> caps(cap_get_proc());
  cap_flag_value_t value = CAP_CLEAR;
  return caps && cap_get_flag(caps.get(), cap, CAP_PERMITTED, &value) == 0 && value == CAP_SET;
}

// Permitted and effective = `kept`; inheritable empty.
Status SetKeptCapabilities(const std::vector<cap_value_t>& kept) {
  std::unique_ptr<_cap_struct, CapFree> caps(cap_init());
  if (!caps) return Errno("cap_init");
  const int n = static_cast<int>(kept.size());
  if (n > 0 && (cap_set_flag(caps.get(), CAP_PERMITTED, n, kept.data(), CAP_SET) != 0 ||
                cap_set_flag(caps.get(), CAP_EFFECTIVE, n, kept.data(), CAP_SET) != 0)) {
    return Errno("cap_set_flag");
  }
  if (cap_set_proc(caps.get()) != 0) {
    std::string names;
    for (cap_value_t cap : kept) {
      std::unique_ptr<char, CapFree> name(cap_to_name(cap));
      // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a known false positive in
      // char_traits' memcpy) about an inlined `"," + std::string`.
      if (!names.empty()) names += ',';
      names += name ? name.get() : "?";
    }
    return Errno("cap_set_proc(" + names + "=ep)");
  }
  return Status::Ok();
}

}  // namespace

Status DropPrivileges(const std::string& user, KeptCapabilities keep) {
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (!user.empty()) {
    errno = 0;
    const passwd* pw = getpwnam(user.c_str());
    if (pw == nullptr) {
      return InvalidArgument("--user " + user + ": no such user" +
                             (errno != 0 ? std::string(" (") + std::strerror(errno) + ")" : ""));
    }
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  std::vector<cap_value_t> kept = Wanted(keep);
  if (keep == KeptCapabilities::kPeerLookup) {
    std::erase_if(kept, [](cap_value_t cap) { return !Permitted(cap); });
  }
  const auto is_kept = [&kept](cap_value_t cap) {
    return std::find(kept.begin(), kept.end(), cap) != kept.end();
  };
  const bool switching = getuid() != uid || geteuid() != uid;
  if (switching && geteuid() != 0) {
    return {StatusCode::kFailedPrecondition,
            "--user " + user + ": capd must start as root to switch users (or start it as " + user +
                " with CAP_NET_RAW and CAP_NET_ADMIN, as the systemd unit does)"};
  }
  // Keep the permitted set across setuid(); the bounding set shrinks first, which needs
  // CAP_SETPCAP that we are about to lose.
  if (switching && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return Errno("prctl(PR_SET_KEEPCAPS)");
  for (cap_value_t cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (is_kept(cap) || !CAP_IS_SUPPORTED(cap)) continue;
    // Without CAP_SETPCAP (a non-root start) the bounding set cannot change; the permitted set
    // below is what counts then.
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EPERM && errno != EINVAL) {
      return Errno("prctl(PR_CAPBSET_DROP, " + std::to_string(cap) + ")");
    }
  }
  if (switching) {
    if (setgroups(0, nullptr) != 0) return Errno("setgroups");
    if (setresgid(gid, gid, gid) != 0) return Errno("setresgid(" + std::to_string(gid) + ")");
    if (setresuid(uid, uid, uid) != 0) return Errno("setresuid(" + std::to_string(uid) + ")");
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return Errno("prctl(PR_SET_KEEPCAPS, 0)");
  }
  CAPD_RETURN_IF_ERROR(SetKeptCapabilities(kept));
  // Nothing capd executes may regain privileges (it executes nothing today; this keeps it so).
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Errno("prctl(PR_SET_NO_NEW_PRIVS)");
  // Ambient capabilities (systemd's AmbientCapabilities=) would pass to children: capd has none.
  if (CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() != 0) return Errno("cap_reset_ambient");
  if (setuid(0) == 0 && uid != 0) {
    return {StatusCode::kInternal, "privileges were not dropped: setuid(0) still succeeds"};
  }
  return Status::Ok();
}

bool HasEffectiveCapability(int capability) {
  std::unique_ptr<_cap_struct, CapFree> caps(cap_get_proc());
  cap_flag_value_t value = CAP_CLEAR;
  return caps && cap_get_flag(caps.get(), capability, CAP_EFFECTIVE, &value) == 0 &&
         value == CAP_SET;
}

std::string DescribeCredentials() {
  std::unique_ptr<_cap_struct, CapFree> caps(cap_get_proc());
  std::string text = "uid " + std::to_string(geteuid()) + ", gid " + std::to_string(getegid());
  if (caps) {
    std::unique_ptr<char, CapFree> caps_text(cap_to_text(caps.get(), nullptr));
    if (caps_text) text += ", capabilities " + std::string(caps_text.get());
  }
  return text;
}

void BecomeHelper(int socket, pid_t parent, const char* name, const std::string& user,
                  KeptCapabilities kept) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || getppid() != parent) _exit(1);
  if (dup2(socket, 3) < 0) _exit(1);
  if (socket != 3) close(socket);
  const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
  }
  if (syscall(SYS_close_range, 4U, ~0U, 0U) != 0) {
    for (int other = 4; other < 1024; ++other) close(other);
  }
  prctl(PR_SET_NAME, name, 0, 0, 0);
  signal(SIGINT, SIG_IGN);  // a Ctrl-C in capd's terminal is for capd, which then closes us
  if (Status dropped = DropPrivileges(user, kept); !dropped.ok()) {
    const std::string line = std::string(name) + ": " + dropped.message() + "\n";
    (void)!write(2, line.data(), line.size());
    _exit(1);
  }
}

}  // namespace capd::agent

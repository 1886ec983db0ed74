#pragma once
// Least privilege for capd: after start-up it runs as an unprivileged user and keeps only the
// two capabilities a new capture needs (CAP_NET_RAW to open packet sockets, CAP_NET_ADMIN for
// promiscuous mode and ring set-up), as tcpdump -Z does after opening its device. capd opens a
// capture per request, long after start-up, so the capabilities stay in the permitted and
// effective sets; everything else is gone from the bounding set too, and no_new_privs is set.
//
// Must run before any thread starts: capabilities and keep-caps are per thread on Linux, and
// threads started later inherit the caller's sets.

#include <sys/types.h>

#include <string>

#include "common/status.h"

namespace capd::agent {

// What a process of capd keeps.
enum class KeptCapabilities {
  // The network-facing process: CAP_NET_RAW and CAP_NET_ADMIN, all required.
  kCapture,
  // The peer helper (agent/peers/peer_helper.h): CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, to read
  // other users' /proc/PID/fd. Those it was not given are left out without an error: the helper
  // then answers for the processes it can read, and says what it lacks.
  kPeerLookup,
  // The filter compiler (agent/capture/filter_sandbox.h): parses untrusted text, needs nothing.
  kNone,
};

// Switches to `user` (its uid and primary gid, no supplementary groups; "" keeps the current
// user) keeping only the capabilities of `keep`. Already running as that user (systemd's User=
// with AmbientCapabilities=): only trims the capability sets. Errors name the failing call.
Status DropPrivileges(const std::string& user, KeptCapabilities keep = KeptCapabilities::kCapture);

// Whether the calling thread has `capability` (a CAP_ value) in its effective set.
bool HasEffectiveCapability(int capability);

// "uid 65534, capabilities cap_net_admin,cap_net_raw=ep": what the process runs with now.
std::string DescribeCredentials();

// The first thing a helper process capd forks (capd-peers, capd-filters) does, in the child:
// dies with `parent` (capd), keeps `socket` as descriptor 3 and stderr for a last word (stdin and
// stdout on /dev/null, every other descriptor closed), takes `name`, leaves Ctrl-C to capd, and
// drops privileges to `user` keeping `kept`. Returns only if all of that worked; otherwise it
// says why on stderr (when it can) and exits 1, so capd never sees the helper's ready message.
void BecomeHelper(int socket, pid_t parent, const char* name, const std::string& user,
                  KeptCapabilities kept);

}  // namespace capd::agent

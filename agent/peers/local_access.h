#pragma once
// Who may use capd through a connection from this host: a process running as root, as an
// allowed user, or as a member of an allowed group (default: the group `capd` the packages
// create). capd can read every packet on the host, so reaching its loopback port must not be
// enough, as opening a packet socket needs CAP_NET_RAW for tcpdump.
//
// Group membership is read from the user database (getgrouplist) at each decision, not from the
// client process: `usermod -aG capd alice` takes effect for alice's next connection, also
// through an SSH session that was already open, and removing her takes effect as quickly.
//
// Thread-safety: const after Make; Refusal may be called from any thread.

#include <sys/types.h>

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace capd::agent {

class LocalAccessPolicy {
 public:
  // The user database's groups of `uid` (primary and supplementary); empty if it has no entry.
  using GroupLookup = std::function<std::vector<gid_t>(uid_t)>;

  // `users` and `groups` are names or numeric ids. An empty `groups` means the default group
  // `capd`, which may not exist (then only root and `users` are allowed). A named user or group
  // that does not exist is kInvalidArgument.
  static StatusOr<LocalAccessPolicy> Make(const std::vector<std::string>& users,
                                          const std::vector<std::string>& groups);
  // With explicit ids and a lookup of its own (unit tests).
  LocalAccessPolicy(std::set<uid_t> uids, std::set<gid_t> gids, std::string group_names,
                    GroupLookup groups_of);

  // nullopt when `uid` is allowed; otherwise why not, in one line that names the uid and says
  // how an admin would grant access.
  std::optional<std::string> Refusal(uid_t uid) const;
  // "root, group capd" for the start-up log.
  std::string Describe() const;

 private:
  std::set<uid_t> uids_;
  std::set<gid_t> gids_;
  std::string group_names_;  // "capd", "capd, wheel"; empty if none
  GroupLookup groups_of_;
};

// The user database's groups of `uid`.
std::vector<gid_t> UserDatabaseGroups(uid_t uid);
// "alice", or "" when the uid has no name.
std::string UserName(uid_t uid);

}  // namespace capd::agent

#pragma once
// Local users for tests of who may use capd: a group and two users made with Debian's useradd
// for one test and removed by the destructor (userdel, groupdel):
//   <prefix>      the group (a test passes it to capd --allow-group)
//   <prefix>m     a member of the group
//   <prefix>o     an outsider, in no group but its own
// The users have no home, /bin/sh as shell and the password "*" (no password login; sshd, which
// refuses locked accounts, accepts their keys). AsUser() runs a command as one of them.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace capd::test {

struct TestUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

class TestUsers {
 public:
  // kFailedPrecondition when not root or useradd is missing; kInternal with useradd's output.
  static StatusOr<std::unique_ptr<TestUsers>> Make();
  ~TestUsers();
  TestUsers(const TestUsers&) = delete;
  TestUsers& operator=(const TestUsers&) = delete;

  const std::string& group() const { return group_; }
  const TestUser& member() const { return member_; }
  const TestUser& outsider() const { return outsider_; }

 private:
  TestUsers() = default;
  std::string group_;
  TestUser member_;
  TestUser outsider_;
};

// `setpriv --reuid UID --regid GID --clear-groups -- ARGV...`: argv run as that user, with no
// capabilities (setpriv drops them with the uid change).
std::vector<std::string> AsUser(uid_t uid, gid_t gid, const std::vector<std::string>& argv);

}  // namespace capd::test

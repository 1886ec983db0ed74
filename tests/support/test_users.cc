#include "tests/support/test_users.h"

#include <pwd.h>
#include <unistd.h>

#include "tests/support/subprocess.h"

namespace capd::test {
namespace {

StatusOr<TestUser> Lookup(const std::string& name) {
  const passwd* pw = getpwnam(name.c_str());
  if (pw == nullptr) return Internal("useradd made no user " + name);
  return TestUser{name, pw->pw_uid, pw->pw_gid};
}

}  // namespace

StatusOr<std::unique_ptr<TestUsers>> TestUsers::Make() {
  if (geteuid() != 0) {
    return Status(StatusCode::kFailedPrecondition, "making test users needs root");
  }
  if (::access("/usr/sbin/useradd", X_OK) != 0) {
    return Status(StatusCode::kFailedPrecondition, "needs useradd (Debian's passwd package)");
  }
  std::unique_ptr<TestUsers> users(new TestUsers());
  // Unique per test process, short enough for every tool (32 characters).
  users->group_ = "cdt" + std::to_string(getpid());
  const std::string member = users->group_ + "m", outsider = users->group_ + "o";
  // Set before making them, so the destructor removes whatever was made.
  users->member_.name = member;
  users->outsider_.name = outsider;
  CAPD_RETURN_IF_ERROR(RunToSuccess({"groupadd", users->group_}));
  for (const std::string& name : {member, outsider}) {
    std::vector<std::string> argv = {"useradd", "-M", "-N", "-s", "/bin/sh", "-p", "*"};
    if (name == member) argv.insert(argv.end(), {"-G", users->group_});
    argv.push_back(name);
    CAPD_RETURN_IF_ERROR(RunToSuccess(argv));
  }
  auto m = Lookup(member);
  if (!m.ok()) return m.status();
  auto o = Lookup(outsider);
  if (!o.ok()) return o.status();
  users->member_ = *m;
  users->outsider_ = *o;
  return users;
}

TestUsers::~TestUsers() {
  for (const std::string& name : {member_.name, outsider_.name}) {
    if (!name.empty()) (void)RunCommand({"userdel", name});
  }
  if (!group_.empty()) (void)RunCommand({"groupdel", group_});
}

std::vector<std::string> AsUser(uid_t uid, gid_t gid, const std::vector<std::string>& argv) {
  std::vector<std::string> out = {"setpriv", "--reuid",           std::to_string(uid),
                                  "--regid", std::to_string(gid), "--clear-groups",
                                  "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

}  // namespace capd::test

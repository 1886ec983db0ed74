#include "agent/peers/local_access.h"

#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace capd::agent {
namespace {

// Ids far above any this system's user database is likely to hold: UserName() of them is "".
constexpr uid_t kAllowedUid = 3'900'001;
constexpr uid_t kMemberUid = 3'900'002;
constexpr uid_t kOtherUid = 3'900'003;
constexpr gid_t kCapdGid = 3'900'100;
constexpr gid_t kWheelGid = 3'900'101;
constexpr gid_t kUsersGid = 3'900'102;

// A user database of its own: uid -> groups, counting the lookups.
struct FakeGroups {
  std::map<uid_t, std::vector<gid_t>> groups = {
      {kMemberUid, {kUsersGid, kCapdGid}},
      {kOtherUid, {kUsersGid}},
  };
  int lookups = 0;
  LocalAccessPolicy::GroupLookup Lookup() {
    return [this](uid_t uid) {
      ++lookups;
      const auto found = groups.find(uid);
      return found == groups.end() ? std::vector<gid_t>{} : found->second;
    };
  }
};

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(LocalAccessTest, RootIsAlwaysAllowed) {
  FakeGroups fake;
  const LocalAccessPolicy policy({}, {}, "", fake.Lookup());
  EXPECT_EQ(policy.Refusal(0), std::nullopt);
  EXPECT_EQ(policy.Describe(), "root");
}

TEST(LocalAccessTest, AllowedUserAndGroupMembersAreAllowed) {
  FakeGroups fake;
  const LocalAccessPolicy policy({kAllowedUid}, {kCapdGid}, "capd", fake.Lookup());
  EXPECT_EQ(policy.Refusal(0), std::nullopt);
  EXPECT_EQ(policy.Refusal(kAllowedUid), std::nullopt);
  EXPECT_EQ(policy.Refusal(kMemberUid), std::nullopt);
  EXPECT_GT(fake.lookups, 0);
}

TEST(LocalAccessTest, MembershipIsLookedUpAtEachDecision) {
  // usermod -aG capd takes effect for the next connection, and removing the user as quickly.
  FakeGroups fake;
  const LocalAccessPolicy policy({}, {kCapdGid}, "capd", fake.Lookup());
  EXPECT_NE(policy.Refusal(kOtherUid), std::nullopt);
  fake.groups[kOtherUid].push_back(kCapdGid);
  EXPECT_EQ(policy.Refusal(kOtherUid), std::nullopt);
  fake.groups[kMemberUid] = {kUsersGid};
  EXPECT_NE(policy.Refusal(kMemberUid), std::nullopt);
}

TEST(LocalAccessTest, OthersAreRefusedWithHowToGrantAccess) {
  FakeGroups fake;
  const LocalAccessPolicy policy({kAllowedUid}, {kCapdGid}, "capd", fake.Lookup());
  for (uid_t uid : {kOtherUid, uid_t{3'999'999}}) {  // in no group of capd's, or in none at all
    const auto refusal = policy.Refusal(uid);
    ASSERT_TRUE(refusal.has_value()) << uid;
    EXPECT_TRUE(Contains(*refusal, "uid " + std::to_string(uid) + " may not capture")) << *refusal;
    EXPECT_TRUE(Contains(*refusal, "not an allowed user")) << *refusal;
    EXPECT_TRUE(Contains(*refusal, "not in group capd")) << *refusal;
    // No name in the user database: the command says USER.
    EXPECT_TRUE(Contains(*refusal, "usermod -aG capd USER")) << *refusal;
  }
}

TEST(LocalAccessTest, RefusalNamesTheUserAndTheFirstGroup) {
  const passwd* daemon = getpwnam("daemon");
  if (daemon == nullptr) GTEST_SKIP() << "no user daemon in this user database";
  const uid_t daemon_uid = daemon->pw_uid;
  FakeGroups fake;
  const LocalAccessPolicy policy({}, {kCapdGid, kWheelGid}, "capd, wheel", fake.Lookup());
  const auto refusal = policy.Refusal(daemon_uid);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_TRUE(Contains(*refusal, "uid " + std::to_string(daemon_uid) + " (daemon)")) << *refusal;
  EXPECT_TRUE(Contains(*refusal, "not in group capd, wheel")) << *refusal;
  EXPECT_TRUE(Contains(*refusal, "usermod -aG capd daemon")) << *refusal;
  EXPECT_FALSE(Contains(*refusal, "allowed user")) << "no user is allowed by name: " << *refusal;
}

TEST(LocalAccessTest, NoGroupConfiguredSaysSo) {
  FakeGroups fake;
  fake.groups[kOtherUid] = {kCapdGid};  // membership of a group nobody allowed is worth nothing
  const LocalAccessPolicy policy({}, {}, "", fake.Lookup());
  const auto refusal = policy.Refusal(kOtherUid);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_TRUE(Contains(*refusal, "uid " + std::to_string(kOtherUid))) << *refusal;
  EXPECT_TRUE(Contains(*refusal, "no group is allowed")) << *refusal;
  EXPECT_TRUE(Contains(*refusal, "--allow-group")) << *refusal;
  EXPECT_FALSE(Contains(*refusal, "usermod")) << *refusal;
}

TEST(LocalAccessTest, DescribeListsWhoIsAllowed) {
  FakeGroups fake;
  EXPECT_EQ(LocalAccessPolicy({kAllowedUid}, {kCapdGid}, "capd", fake.Lookup()).Describe(),
            "root, users " + std::to_string(kAllowedUid) + ", group capd");
  EXPECT_EQ(LocalAccessPolicy({}, {kCapdGid, kWheelGid}, "capd, wheel", fake.Lookup()).Describe(),
            "root, group capd, wheel");
}

TEST(LocalAccessTest, MakeRefusesNamesThatDoNotExist) {
  const auto group = LocalAccessPolicy::Make({}, {"capd-test-no-such-group"});
  ASSERT_FALSE(group.ok());
  EXPECT_EQ(group.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(group.status().message(), "capd-test-no-such-group"))
      << group.status().message();

  const auto user = LocalAccessPolicy::Make({"capd-test-no-such-user"}, {"root"});
  ASSERT_FALSE(user.ok());
  EXPECT_EQ(user.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(user.status().message(), "capd-test-no-such-user"))
      << user.status().message();
}

TEST(LocalAccessTest, MakeTakesNumericIdsWithoutLookingThemUp) {
  auto made = LocalAccessPolicy::Make({std::to_string(kAllowedUid)}, {std::to_string(kCapdGid)});
  ASSERT_TRUE(made.ok()) << made.status().message();
  const LocalAccessPolicy& policy = made.value();
  EXPECT_EQ(policy.Refusal(kAllowedUid), std::nullopt);
  // Nobody in the real user database is in that group.
  const auto refusal = policy.Refusal(kOtherUid);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_TRUE(Contains(*refusal, "usermod -aG " + std::to_string(kCapdGid) + " USER")) << *refusal;
  EXPECT_EQ(policy.Describe(),
            "root, users " + std::to_string(kAllowedUid) + ", group " + std::to_string(kCapdGid));
}

TEST(LocalAccessTest, MakeUsesTheUserDatabase) {
  // Debian's base system: daemon (uid 1) has the primary group daemon, bin (uid 2) does not.
  // (getpwnam and getgrnam share a static buffer between calls: copy what they find at once.)
  const passwd* entry = getpwnam("daemon");
  if (entry == nullptr) GTEST_SKIP() << "no user daemon in this user database";
  const uid_t daemon_uid = entry->pw_uid;
  entry = getpwnam("bin");
  if (entry == nullptr) GTEST_SKIP() << "no user bin in this user database";
  const uid_t bin_uid = entry->pw_uid;
  const group* daemon_group = getgrnam("daemon");
  if (daemon_group == nullptr) GTEST_SKIP() << "no group daemon in this user database";
  const gid_t daemon_gid = daemon_group->gr_gid;
  const auto groups = UserDatabaseGroups(daemon_uid);
  EXPECT_NE(std::find(groups.begin(), groups.end(), daemon_gid), groups.end());
  EXPECT_TRUE(UserDatabaseGroups(kOtherUid).empty());
  EXPECT_EQ(UserName(daemon_uid), "daemon");
  EXPECT_EQ(UserName(kOtherUid), "");

  auto made = LocalAccessPolicy::Make({}, {"daemon"});
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(made.value().Refusal(daemon_uid), std::nullopt);
  const auto groups_of_bin = UserDatabaseGroups(bin_uid);
  if (std::find(groups_of_bin.begin(), groups_of_bin.end(), daemon_gid) == groups_of_bin.end()) {
    const auto refusal = made.value().Refusal(bin_uid);
    ASSERT_TRUE(refusal.has_value());
    EXPECT_TRUE(Contains(*refusal, "usermod -aG daemon bin")) << *refusal;
  }
  auto by_name = LocalAccessPolicy::Make({"bin"}, {});
  ASSERT_TRUE(by_name.ok()) << by_name.status().message();
  EXPECT_EQ(by_name.value().Refusal(bin_uid), std::nullopt);
}

TEST(LocalAccessTest, DefaultIsGroupCapdIfItExists) {
  auto made = LocalAccessPolicy::Make({}, {});
  ASSERT_TRUE(made.ok()) << made.status().message();
  const LocalAccessPolicy& policy = made.value();
  EXPECT_EQ(policy.Refusal(0), std::nullopt);
  const auto refusal = policy.Refusal(kOtherUid);
  ASSERT_TRUE(refusal.has_value());
  if (getgrnam("capd") != nullptr) {
    EXPECT_EQ(policy.Describe(), "root, group capd");
    EXPECT_TRUE(Contains(*refusal, "usermod -aG capd USER")) << *refusal;
  } else {
    EXPECT_EQ(policy.Describe(), "root");
    EXPECT_TRUE(Contains(*refusal, "no group is allowed")) << *refusal;
  }
}

}  // namespace
}  // namespace capd::agent

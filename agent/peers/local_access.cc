#include "agent/peers/local_access.h"

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <cstdlib>

namespace capd::agent {
namespace {

std::optional<unsigned long> Number(const std::string& text) {
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return std::strtoul(text.c_str(), nullptr, 10);
}

std::string GroupName(gid_t gid) {
  group entry{};
  group* found = nullptr;
  std::vector<char> buffer(16384);
  if (getgrgid_r(gid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    return found->gr_name;
  }
  return std::to_string(gid);
}

}  // namespace

std::string UserName(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return "";
}

std::vector<gid_t> UserDatabaseGroups(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return {};
  }
  int count = 64;
  std::vector<gid_t> groups(static_cast<size_t>(count));
  while (getgrouplist(found->pw_name, found->pw_gid, groups.data(), &count) < 0) {
    if (count <= static_cast<int>(groups.size())) count = static_cast<int>(groups.size()) * 2;
    if (count > 65536) return {found->pw_gid};
    groups.resize(static_cast<size_t>(count));
  }
  groups.resize(static_cast<size_t>(count));
  return groups;
}

StatusOr<LocalAccessPolicy> LocalAccessPolicy::Make(const std::vector<std::string>& users,
                                                    const std::vector<std::string>& groups) {
  std::set<uid_t> uids;
  for (const std::string& user : users) {
    if (auto id = Number(user)) {
      uids.insert(static_cast<uid_t>(*id));
      continue;
    }
    const passwd* pw = getpwnam(user.c_str());
    if (pw == nullptr) return InvalidArgument("--allow-user " + user + ": no such user");
    uids.insert(pw->pw_uid);
  }
  std::set<gid_t> gids;
  std::string names;
  if (groups.empty()) {
    if (const group* gr = getgrnam("capd")) {
      gids.insert(gr->gr_gid);
      names = "capd";
    }
  }
  for (const std::string& name : groups) {
    gid_t gid = 0;
    if (auto id = Number(name)) {
      gid = static_cast<gid_t>(*id);
    } else if (const group* gr = getgrnam(name.c_str())) {
      gid = gr->gr_gid;
    } else {
      return InvalidArgument("--allow-group " + name + ": no such group");
    }
    gids.insert(gid);
    names += (names.empty() ? "" : ", ") + GroupName(gid);
  }
  return LocalAccessPolicy(std::move(uids), std::move(gids), std::move(names), UserDatabaseGroups);
}

LocalAccessPolicy::LocalAccessPolicy(std::set<uid_t> uids, std::set<gid_t> gids,
                                     std::string group_names, GroupLookup groups_of)
    : uids_(std::move(uids)),
      gids_(std::move(gids)),
      group_names_(std::move(group_names)),
      groups_of_(std::move(groups_of)) {}

std::optional<std::string> LocalAccessPolicy::Refusal(uid_t uid) const {
  if (uid == 0 || uids_.count(uid) != 0) return std::nullopt;
  if (!gids_.empty()) {
    for (gid_t gid : groups_of_(uid)) {
      if (gids_.count(gid) != 0) return std::nullopt;
    }
  }
  const std::string name = UserName(uid);
  std::string why = "uid " + std::to_string(uid) + (name.empty() ? "" : " (" + name + ")") +
                    " may not capture: not root";
  if (!uids_.empty()) why += ", not an allowed user";
  if (group_names_.empty()) {
    why += ", and no group is allowed (capd --allow-group GROUP or --allow-user USER)";
  } else {
    why += " and not in group " + group_names_ + " (an admin grants access with: usermod -aG " +
           group_names_.substr(0, group_names_.find(',')) + " " + (name.empty() ? "USER" : name) +
           ")";
  }
  return why;
}

std::string LocalAccessPolicy::Describe() const {
  std::string text = "root";
  if (!uids_.empty()) {
    text += ", users";
    for (uid_t uid : uids_) {
      const std::string name = UserName(uid);
      text += " " + (name.empty() ? std::to_string(uid) : name);
    }
  }
  if (!group_names_.empty()) text += ", group " + group_names_;
  return text;
}

}  // namespace capd::agent

#include "tests/support/multi_link_network.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <sstream>
#include <vector>

#include "tests/support/subprocess.h"
#include "tests/support/test_network.h"

namespace capd::test {
namespace {

// Locally administered, one per link end: 02:00:00:00:<link>:<1 capture, 2 sender>.
std::string Mac(int link, int end) {
  char text[18];
  std::snprintf(text, sizeof text, "02:00:00:00:%02x:%02x", link, end);
  return text;
}

}  // namespace

std::string MultiLinkNetwork::CaptureInterface(int link) { return "cap" + std::to_string(link); }
std::string MultiLinkNetwork::CaptureAddress(int link) {
  return "10.210." + std::to_string(link) + ".1";
}
std::string MultiLinkNetwork::SenderInterface(int link) { return "snd" + std::to_string(link); }
std::string MultiLinkNetwork::SenderAddress(int link) {
  return "10.210." + std::to_string(link) + ".2";
}

StatusOr<std::unique_ptr<MultiLinkNetwork>> MultiLinkNetwork::Create(int links) {
  if (links < 1 || links > kMaxLinks) {
    return InvalidArgument("links must be 1.." + std::to_string(kMaxLinks));
  }
  TestNetwork::RemoveStaleNamespaces();
  // "m": never the same name as a TestNetwork of the same process (its counter is its own).
  static std::atomic<int> counter{0};
  const std::string prefix = std::string(TestNetwork::kNamePrefix) + std::to_string(::getpid()) +
                             "-m" + std::to_string(counter++) + "-";
  const std::string capture_ns = prefix + "a";
  const std::string sender_ns = prefix + "b";
  if (Status s = RunChecked({"ip", "netns", "add", capture_ns}); !s.ok()) {
    return Status(StatusCode::kFailedPrecondition, s.message());
  }
  if (Status s = RunChecked({"ip", "netns", "add", sender_ns}); !s.ok()) {
    RunCommand({"ip", "netns", "del", capture_ns});
    return Status(StatusCode::kFailedPrecondition, s.message());
  }
  std::unique_ptr<MultiLinkNetwork> network(new MultiLinkNetwork(capture_ns, sender_ns, links));
  for (const std::string& ns : {capture_ns, sender_ns}) {
    CAPD_RETURN_IF_ERROR(RunChecked({"ip", "-n", ns, "link", "set", "lo", "up"}));
  }
  for (int link = 0; link < links; ++link) {
    CAPD_RETURN_IF_ERROR(network->SetupLink(link));  // on failure the destructor deletes both
  }
  return network;
}

Status MultiLinkNetwork::SetupLink(int link) {
  const std::string& a = capture_ns_;
  const std::string& b = sender_ns_;
  const std::string cap = CaptureInterface(link);
  const std::string snd = SenderInterface(link);
  // Created directly inside the namespaces, so the names never meet in the root namespace.
  CAPD_RETURN_IF_ERROR(
      RunChecked({"ip", "-n", a, "link", "add", cap, "address", Mac(link, 1), "type", "veth",
                  "peer", "name", snd, "address", Mac(link, 2), "netns", b}));
  // Before the links go up, so not even the first router solicitation is sent.
  CAPD_RETURN_IF_ERROR(
      RunChecked({"sysctl", "-qw", "net.ipv6.conf." + cap + ".disable_ipv6=1"}, a));
  CAPD_RETURN_IF_ERROR(
      RunChecked({"sysctl", "-qw", "net.ipv6.conf." + snd + ".disable_ipv6=1"}, b));
  CAPD_RETURN_IF_ERROR(
      RunChecked({"ip", "-n", a, "addr", "add", CaptureAddress(link) + "/24", "dev", cap}));
  CAPD_RETURN_IF_ERROR(
      RunChecked({"ip", "-n", b, "addr", "add", SenderAddress(link) + "/24", "dev", snd}));
  CAPD_RETURN_IF_ERROR(RunChecked({"ip", "-n", a, "link", "set", cap, "up"}));
  CAPD_RETURN_IF_ERROR(RunChecked({"ip", "-n", b, "link", "set", snd, "up"}));
  // After the links are up: taking a device down flushes its neighbour entries.
  CAPD_RETURN_IF_ERROR(RunChecked({"ip", "-n", a, "neigh", "replace", SenderAddress(link), "lladdr",
                                   Mac(link, 2), "dev", cap, "nud", "permanent"}));
  CAPD_RETURN_IF_ERROR(RunChecked({"ip", "-n", b, "neigh", "replace", CaptureAddress(link),
                                   "lladdr", Mac(link, 1), "dev", snd, "nud", "permanent"}));
  return Status::Ok();
}

MultiLinkNetwork::~MultiLinkNetwork() {
  KillAndDeleteNamespace(capture_ns_);
  KillAndDeleteNamespace(sender_ns_);
}

}  // namespace capd::test

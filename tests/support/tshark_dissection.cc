#include "tests/support/tshark_dissection.h"

#include <unistd.h>

#include <atomic>
#include <sstream>

#include "tests/support/subprocess.h"

namespace capd::test {
namespace {

// The value of ` attribute="..."` in a PDML line, or "".
std::string Attribute(const std::string& line, const std::string& attribute) {
  const std::string key = " " + attribute + "=\"";
  const size_t start = line.find(key);
  if (start == std::string::npos) return {};
  const size_t value = start + key.size();
  const size_t end = line.find('"', value);
  return end == std::string::npos ? std::string() : line.substr(value, end - value);
}

bool IsTunnel(const std::string& name) { return name == "vxlan" || name == "geneve"; }

}  // namespace

StatusOr<std::vector<TsharkPacket>> TsharkDissect(const std::filesystem::path& file,
                                                  const std::vector<std::string>& extra_args) {
  // stdout to a file of its own: tshark writes warnings ("Running as user root") to stderr,
  // which RunCommand would mix into the PDML.
  static std::atomic<int> counter{0};
  const std::filesystem::path out =
      std::filesystem::temp_directory_path() /
      ("capd_pdml_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  SubprocessOptions options;
  options.argv = {"tshark", "-n", "-r", file.string()};
  options.argv.insert(options.argv.end(), extra_args.begin(), extra_args.end());
  options.argv.insert(options.argv.end(), {"-T", "pdml"});
  options.stdout_path = out.string() + ".xml";
  options.stderr_path = out.string() + ".err";
  const std::string command = JoinArgs(options.argv);
  auto process = Subprocess::Start(options);
  if (!process.ok()) return process.status();
  const auto status = process.value()->WaitFor(60s);
  const std::string pdml = ReadFileToString(options.stdout_path);
  const std::string err = ReadFileToString(options.stderr_path);
  std::filesystem::remove(options.stdout_path);
  std::filesystem::remove(options.stderr_path);
  if (!status || !status->Exited(0)) {
    return Internal("`" + command + "`: " + (status ? status->ToString() : "timed out") + ": " +
                    err);
  }

  std::vector<TsharkPacket> packets;
  std::istringstream in(pdml);
  for (std::string line; std::getline(in, line);) {
    if (line.find("<packet>") != std::string::npos) {
      packets.emplace_back();
    } else if (line.find("<proto ") != std::string::npos && !packets.empty()) {
      const std::string name = Attribute(line, "name");
      const std::string pos = Attribute(line, "pos");
      const std::string size = Attribute(line, "size");
      if (name == "geninfo" || name == "frame" || pos.empty() || size.empty()) continue;
      packets.back().push_back({name, std::stoll(pos), std::stoll(size)});
    } else if (line.find("<field ") != std::string::npos && !packets.empty() &&
               !packets.back().empty()) {
      const std::string name = Attribute(line, "name");
      TsharkLayer& layer = packets.back().back();
      if (name == "udp.length" && layer.name == "udp") {
        layer.udp_length = std::stoll(Attribute(line, "show"));
      } else if ((name == "vxlan.vni" || name == "geneve.vni") && IsTunnel(layer.name)) {
        layer.vni = std::stoll(Attribute(line, "value"), nullptr, 16);
      }
    }
  }
  return packets;
}

std::optional<TsharkInnerFrame> TsharkInner(const TsharkPacket& packet) {
  int first_tunnel = -1, last_tunnel = -1;
  for (size_t i = 0; i < packet.size(); ++i) {
    if (!IsTunnel(packet[i].name)) continue;
    if (first_tunnel < 0) first_tunnel = static_cast<int>(i);
    last_tunnel = static_cast<int>(i);
  }
  if (last_tunnel < 0 || last_tunnel + 1 >= static_cast<int>(packet.size())) return std::nullopt;
  // The UDP layer carrying the last tunnel: the last udp layer before it.
  const TsharkLayer* udp = nullptr;
  for (int i = 0; i < last_tunnel; ++i) {
    if (packet[i].name == "udp") udp = &packet[i];
  }
  if (udp == nullptr || udp->udp_length <= 0) return std::nullopt;
  TsharkInnerFrame inner;
  inner.tunnel = packet[first_tunnel].name;
  inner.inner_tunnel = packet[last_tunnel].name;
  inner.vni = packet[last_tunnel].vni;
  inner.first_layer = packet[last_tunnel + 1].name;
  inner.offset = static_cast<uint32_t>(packet[last_tunnel + 1].pos);
  inner.end = static_cast<uint32_t>(udp->pos + udp->udp_length);
  return inner;
}

bool HaveTshark() { return RunCommand({"tshark", "--version"}).status.Exited(0); }

}  // namespace capd::test

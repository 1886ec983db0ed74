#include "client/transport/fleet_selection.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <set>

#include "client/transport/child_process.h"
#include "client/transport/tunnel.h"
#include "common/printable.h"

namespace capd::client {
namespace {

constexpr std::string_view kScheme = "ssm://";
constexpr char kAutoScalingGroupTag[] = "aws:autoscaling:groupName";

// The AWS CLI's shorthand syntax (Name=K,Values=V) reads ',' as a separator, '=' in a key as the
// next field, brackets, braces and quotes as structure, and '\' as an escape: a key or value with
// one of them would become another filter than the one asked for. EC2's own wildcards ('*', '?')
// are kept: tag:Role=web* is a filter EC2 documents.
bool ShorthandSafe(std::string_view text, bool key) {
  for (const char c : text) {
    if (c == ',' || c == '[' || c == ']' || c == '{' || c == '}' || c == '"' || c == '\'' ||
        c == '\\' || static_cast<unsigned char>(c) < 0x20 || (key && c == '=')) {
      return false;
    }
  }
  return true;
}

StatusOr<google::protobuf::Struct> ParseJsonObject(std::string_view json, const std::string& what) {
  google::protobuf::Struct object;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &object, options);
  if (!status.ok()) {
    return Internal(what + " printed something that is not a JSON object: " +
                    PrintableText(std::string(status.message())));
  }
  return object;
}

const google::protobuf::Value* Field(const google::protobuf::Struct& object, const char* name) {
  const auto found = object.fields().find(name);
  return found == object.fields().end() ? nullptr : &found->second;
}

std::string StringField(const google::protobuf::Struct& object, const char* name) {
  const google::protobuf::Value* v = Field(object, name);
  return v != nullptr && v->kind_case() == google::protobuf::Value::kStringValue ? v->string_value()
                                                                                 : "";
}

// The list field `name` of `object`, or nullptr when it is missing or not a list.
const google::protobuf::ListValue* ListField(const google::protobuf::Struct& object,
                                             const char* name) {
  const google::protobuf::Value* v = Field(object, name);
  return v != nullptr && v->kind_case() == google::protobuf::Value::kListValue ? &v->list_value()
                                                                               : nullptr;
}

// An EC2 instance id: "i-" and 8 or 17 lowercase hex digits (up to 32 accepted). Anything else
// in the CLI's output is not used: the id reaches `aws ssm start-session --target` and the
// Values= list of the shorthand filter, where a ',' or a leading '-' would mean something else.
bool IsInstanceId(std::string_view id) {
  if (!id.starts_with("i-") || id.size() < 3 || id.size() > 2 + kMaxInstanceIdDigits) return false;
  return std::all_of(id.begin() + 2, id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string Join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

}  // namespace

bool IsFleetSelector(std::string_view text) {
  return text.starts_with("ssm://tag:") || text.starts_with("ssm://asg:");
}

bool IsFleetSelector(const AgentAddress& agent) { return IsFleetSelector(agent.text); }

StatusOr<FleetSelector> ParseFleetSelector(std::string_view text) {
  FleetSelector selector;
  selector.text = std::string(text);
  const auto bad = [&](const std::string& why) {
    return InvalidArgument("agent selection '" + PrintableText(text) + "': " + why +
                           " (expected ssm://tag:KEY=VALUE[,tag:KEY=VALUE...][/IFACE] or "
                           "ssm://asg:NAME[/IFACE])");
  };
  if (!IsFleetSelector(text)) return bad("not a selection");
  std::string_view rest = text.substr(kScheme.size());
  // The interface follows the last '/': tag values may not hold one (see README).
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    selector.interface = std::string(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
    if (selector.interface.empty()) return bad("empty interface after '/'");
    if (selector.interface.find('/') != std::string::npos) return bad("a '/' in a tag value");
  }
  if (rest.starts_with("asg:")) {
    selector.auto_scaling_group = std::string(rest.substr(4));
    if (selector.auto_scaling_group.empty()) return bad("no Auto Scaling group name");
    if (!ShorthandSafe(selector.auto_scaling_group, false)) {
      return bad("the group name holds a character the AWS CLI's filter syntax would misread");
    }
    return selector;
  }
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view term = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (comma != std::string_view::npos && rest.empty()) return bad("a ',' with nothing after it");
    if (!term.starts_with("tag:")) return bad("each term is tag:KEY=VALUE");
    const std::string_view pair = term.substr(4);
    const size_t equals = pair.find('=');
    if (equals == std::string_view::npos) return bad("tag:KEY=VALUE needs an '='");
    const std::string key(pair.substr(0, equals));
    const std::string value(pair.substr(equals + 1));
    if (key.empty()) return bad("an empty tag key");
    if (value.empty()) return bad("an empty value for tag " + key);
    if (!ShorthandSafe(key, true) || !ShorthandSafe(value, false)) {
      return bad("tag " + key + " holds a character the AWS CLI's filter syntax would misread");
    }
    selector.tags.emplace_back(key, value);
  }
  if (selector.tags.empty()) return bad("no tag");
  return selector;
}

std::string FleetInstance::Label() const { return name.empty() ? id : id + " (" + name + ")"; }

std::vector<std::string> DescribeInstancesCommand(const FleetSelector& selector) {
  std::vector<std::string> argv = {"aws", "ec2", "describe-instances", "--filters"};
  if (!selector.auto_scaling_group.empty()) {
    argv.push_back(std::string("Name=tag:") + kAutoScalingGroupTag +
                   ",Values=" + selector.auto_scaling_group);
  }
  for (const auto& [key, value] : selector.tags) {
    argv.push_back("Name=tag:" + key + ",Values=" + value);
  }
  argv.insert(argv.end(), {"Name=instance-state-name,Values=running", "--output", "json"});
  return argv;
}

std::vector<std::string> DescribeInstanceInformationCommand(const std::vector<std::string>& ids) {
  return {"aws",
          "ssm",
          "describe-instance-information",
          "--filters",
          "Key=InstanceIds,Values=" + Join(ids, ","),
          "--output",
          "json"};
}

StatusOr<std::vector<FleetInstance>> ParseDescribeInstances(std::string_view json) {
  const std::string what = "aws ec2 describe-instances";
  auto object = ParseJsonObject(json, what);
  if (!object.ok()) return object.status();
  const auto* reservations = ListField(*object, "Reservations");
  if (reservations == nullptr) return Internal(what + " printed no Reservations list");
  std::vector<FleetInstance> instances;
  std::set<std::string> seen;
  for (const auto& reservation : reservations->values()) {
    if (!reservation.has_struct_value()) return Internal(what + ": a reservation is no object");
    const auto* list = ListField(reservation.struct_value(), "Instances");
    if (list == nullptr) continue;
    for (const auto& entry : list->values()) {
      if (!entry.has_struct_value()) return Internal(what + ": an instance is no object");
      const auto& instance = entry.struct_value();
      FleetInstance out;
      out.id = StringField(instance, "InstanceId");
      if (out.id.empty()) return Internal(what + ": an instance without an InstanceId");
      if (!IsInstanceId(out.id)) {
        return Internal(what + ": an InstanceId that is not i-<hex>: '" +
                        PrintableText(out.id.substr(0, 2 + kMaxInstanceIdDigits)) +
                        (out.id.size() > 2 + kMaxInstanceIdDigits ? "...'" : "'"));
      }
      if (const auto* tags = ListField(instance, "Tags"); tags != nullptr) {
        for (const auto& tag : tags->values()) {
          if (tag.has_struct_value() && StringField(tag.struct_value(), "Key") == "Name") {
            out.name = PrintableText(StringField(tag.struct_value(), "Value"));
            if (out.name.size() > kMaxNameChars)
              out.name = out.name.substr(0, kMaxNameChars) + "...";
          }
        }
      }
      if (seen.insert(out.id).second) instances.push_back(std::move(out));
    }
  }
  return instances;
}

StatusOr<std::vector<std::pair<std::string, std::string>>> ParseInstanceInformation(
    std::string_view json) {
  const std::string what = "aws ssm describe-instance-information";
  auto object = ParseJsonObject(json, what);
  if (!object.ok()) return object.status();
  const auto* list = ListField(*object, "InstanceInformationList");
  if (list == nullptr) return Internal(what + " printed no InstanceInformationList");
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& entry : list->values()) {
    if (!entry.has_struct_value()) return Internal(what + ": an entry is no object");
    out.emplace_back(StringField(entry.struct_value(), "InstanceId"),
                     StringField(entry.struct_value(), "PingStatus"));
  }
  return out;
}

StatusOr<FleetExpansion> ExpandFleetAgents(const std::vector<AgentAddress>& agents,
                                           size_t max_agents, const AwsRunner& run) {
  // First every selection's instances, so that the cap is checked on all of them together
  // before SSM is asked anything and before any session opens.
  struct Selected {
    FleetSelector selector;
    std::vector<FleetInstance> instances;
  };
  std::vector<Selected> selections;
  std::set<std::string> counted;
  for (const AgentAddress& agent : agents) {
    if (!IsFleetSelector(agent)) continue;
    auto selector = ParseFleetSelector(agent.text);
    if (!selector.ok()) return selector.status();
    auto output = run(DescribeInstancesCommand(*selector));
    if (!output.ok()) return output.status();
    auto instances = ParseDescribeInstances(*output);
    if (!instances.ok()) return instances.status();
    if (instances->empty()) {
      return NotFound(PrintableText(agent.text) +
                      ": no running instance matches (aws ec2 describe-instances found none; "
                      "check the tag or group name, and AWS_REGION/AWS_PROFILE)");
    }
    for (const FleetInstance& i : *instances) counted.insert(i.id);
    selections.push_back({std::move(selector.value()), std::move(instances.value())});
  }
  if (counted.size() > max_agents) {
    return InvalidArgument(
        std::to_string(counted.size()) + " instances match the selection, more than --max-agents " +
        std::to_string(max_agents) + " allows; give --max-agents " +
        std::to_string(counted.size()) + " to open them all, or narrow the selection");
  }

  // Which of them SSM manages and sees online, in calls of at most kInstanceIdsPerCall ids.
  std::vector<std::string> ids(counted.begin(), counted.end());
  std::set<std::string> online;
  std::vector<std::pair<std::string, std::string>> ping;
  for (size_t start = 0; start < ids.size(); start += kInstanceIdsPerCall) {
    const std::vector<std::string> chunk(
        ids.begin() + static_cast<std::ptrdiff_t>(start),
        ids.begin() +
            static_cast<std::ptrdiff_t>(std::min(ids.size(), start + kInstanceIdsPerCall)));
    auto output = run(DescribeInstanceInformationCommand(chunk));
    if (!output.ok()) return output.status();
    auto information = ParseInstanceInformation(*output);
    if (!information.ok()) return information.status();
    for (auto& entry : *information) {
      if (entry.second == "Online") online.insert(entry.first);
      ping.push_back(std::move(entry));
    }
  }
  const auto why_not = [&](const std::string& id) -> std::string {
    for (const auto& [pinged, status] : ping) {
      if (pinged == id) return "not online in SSM (PingStatus " + PrintableText(status) + ")";
    }
    return "not managed by SSM (no SSM Agent registered it: is the agent running, and does the "
           "instance profile allow it, e.g. AmazonSSMManagedInstanceCore?)";
  };

  FleetExpansion expansion;
  std::set<std::string> added;
  size_t next = 0;
  for (const AgentAddress& agent : agents) {
    if (!IsFleetSelector(agent)) {
      expansion.agents.push_back(agent);
      continue;
    }
    const Selected& selected = selections[next++];
    for (const FleetInstance& instance : selected.instances) {
      if (!added.insert(instance.id).second) continue;  // matched by an earlier selection too
      if (online.count(instance.id) == 0) {
        expansion.left_out.push_back(instance.Label() + ": " + why_not(instance.id));
        continue;
      }
      AgentAddress address;
      address.transport = AgentAddress::Transport::kSsm;
      address.target = instance.id;
      address.interface = selected.selector.interface;
      address.text = instance.Label();
      address.label = instance.Label();
      expansion.agents.push_back(std::move(address));
    }
  }
  if (expansion.agents.empty()) {
    return Unavailable("no selected instance is online in SSM: " + Join(expansion.left_out, "; "));
  }
  return expansion;
}

StatusOr<std::string> RunAwsCli(const std::vector<std::string>& argv) {
  if (!OnPath("aws")) {
    return Status(StatusCode::kFailedPrecondition,
                  "ssm://tag: and ssm://asg: need the AWS CLI (aws) on PATH");
  }
  // describe calls answer within seconds; a minute means the CLI is stuck (a prompt, a network
  // that drops packets), and the user gets its reason instead of a hang.
  auto output = RunForOutput(argv, std::chrono::seconds(60));
  if (!output.ok()) return Status(output.status().code(), PrintableText(output.status().message()));
  return output;
}

}  // namespace capd::client

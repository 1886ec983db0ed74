#pragma once
// Agents chosen the way AWS users think of them: `ssm://tag:KEY=VALUE[,tag:KEY=VALUE...][/IFACE]`
// (every tag must match) and `ssm://asg:NAME[/IFACE]` (an Auto Scaling group's instances).
//
// How a selection becomes agents: the selector -> `aws ec2 describe-instances` (running
// instances with those tags; an Auto Scaling group tags its instances aws:autoscaling:groupName)
// -> the cap (--max-agents) -> `aws ssm describe-instance-information` (which of them SSM manages
// and sees online) -> one ssm://i-... agent per online instance, labelled "i-0abc (web-1)" after
// its Name tag, and one line for each instance left out and why.
//
// Everything here is pure except through the AwsRunner the caller gives: the commands are built
// and the CLI's JSON is parsed here, so it is tested without AWS and without root. The runner runs
// the AWS CLI as the user's own (its profile, region and credentials come from the environment:
// AWS_PROFILE, AWS_REGION, ~/.aws), as ssm:// does for the port forward.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "client/transport/agent_address.h"
#include "common/status.h"

namespace capd::client {

// How many instances one command opens unless --max-agents says otherwise: each is an SSM
// session (an aws and a session-manager-plugin process on this machine) and a merged stream.
constexpr size_t kDefaultMaxAgents = 20;

struct FleetSelector {
  std::vector<std::pair<std::string, std::string>> tags;  // KEY, VALUE; all must match
  std::string auto_scaling_group;                         // asg:NAME, else empty
  std::string interface;                                  // /IFACE, else empty
  std::string text;                                       // as given, for messages
};

// True for "ssm://tag:..." and "ssm://asg:...": a selection, not one instance.
bool IsFleetSelector(std::string_view text);
bool IsFleetSelector(const AgentAddress& agent);

// kInvalidArgument naming the selector when it cannot be parsed: an empty key or value, a key
// without '=', a character the AWS CLI's filter shorthand would read as syntax (see the .cc).
StatusOr<FleetSelector> ParseFleetSelector(std::string_view text);

// What the CLI's output may carry into a label and argv: an EC2 tag value holds at most 256
// characters, so a longer Name (after escaping) is cut here; an instance id is "i-" and at most
// this many hex digits (EC2 uses 8 or 17).
constexpr size_t kMaxNameChars = 256;
constexpr size_t kMaxInstanceIdDigits = 32;

struct FleetInstance {
  std::string id;    // "i-" and lowercase hex digits: anything else is refused (kInternal)
  std::string name;  // its Name tag, printable, at most kMaxNameChars (then "..."); "" without
  // "i-0abc (web-1)", or the id alone without a Name tag: what the user sees in messages and
  // what the instance's interfaces are named after ("i-0abc (web-1):ens5").
  std::string Label() const;
};

// `aws ec2 describe-instances --filters Name=tag:K,Values=V ... Name=instance-state-name,
// Values=running --output json` (for asg: the tag aws:autoscaling:groupName).
std::vector<std::string> DescribeInstancesCommand(const FleetSelector& selector);
// `aws ssm describe-instance-information --filters Key=InstanceIds,Values=i-1,i-2,... --output
// json` for up to kInstanceIdsPerCall ids.
std::vector<std::string> DescribeInstanceInformationCommand(const std::vector<std::string>& ids);
// SSM's InstanceInformationStringFilter takes at most 100 values (its API model); 50 per call
// stays well inside that.
constexpr size_t kInstanceIdsPerCall = 50;

// The instances of describe-instances' output ({"Reservations":[{"Instances":[{"InstanceId",
// "Tags":[{"Key","Value"}]}]}]}), in order, each once. kInternal when it is not that shape or an
// InstanceId is not i-<hex>.
StatusOr<std::vector<FleetInstance>> ParseDescribeInstances(std::string_view json);
// InstanceId -> PingStatus ("Online", "ConnectionLost", "Inactive") from
// describe-instance-information's output ({"InstanceInformationList":[{"InstanceId",
// "PingStatus"}]}). kInternal when it is not that shape.
StatusOr<std::vector<std::pair<std::string, std::string>>> ParseInstanceInformation(
    std::string_view json);

// Runs the AWS CLI with these arguments (argv[0] is "aws") and returns its standard output, or
// kUnavailable with the CLI's own last error line when it exits non-zero.
using AwsRunner = std::function<StatusOr<std::string>(const std::vector<std::string>& argv)>;

// The agents of a command line with its selections resolved.
struct FleetExpansion {
  // Every agent as given, except each selection replaced by one ssm://i-... agent per online
  // instance (text and label "i-0abc (web-1)", the selector's /IFACE), in the CLI's order.
  std::vector<AgentAddress> agents;
  // One line per instance left out: "i-0abc (web-3): not online in SSM (PingStatus
  // ConnectionLost)". Not errors of the command: the other instances go on.
  std::vector<std::string> left_out;
};

// Resolves every selection among `agents` (the others pass through untouched; without a
// selection `run` is never called). Errors, each before any session opens:
//   kNotFound: a selection matched no running instance (capctl exits 2);
//   kInvalidArgument: the instances matched by all selections together are more than
//     `max_agents` (the message gives the count and the --max-agents to use);
//   kUnavailable: the AWS CLI failed (its own line: no credentials, no region, access denied);
//   kInternal: its output was not the documented shape.
// Instances that match but are not online in SSM are left out and listed, not errors; if that
// leaves none, kUnavailable naming them.
StatusOr<FleetExpansion> ExpandFleetAgents(const std::vector<AgentAddress>& agents,
                                           size_t max_agents, const AwsRunner& run);

// The AwsRunner of capctl: `aws` (checked on PATH first, kFailedPrecondition if missing) as a
// child process (client/transport/child_process.h), killed after a minute.
StatusOr<std::string> RunAwsCli(const std::vector<std::string>& argv);

}  // namespace capd::client

#include "upload/s3_upload.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "upload/handoff_process.h"

namespace capd::client {
namespace {

bool KeyCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

std::string KeyPart(const std::string& text) {
  std::string part = text;
  for (char& c : part) {
    if (!KeyCharacter(c)) c = '_';
  }
  if (part.empty() || part == "." || part == "..") part = "unknown";
  return part;
}

// S3's rules for new bucket names: 3 to 63 of a-z 0-9 . -, starting and ending with a letter or a
// digit.
bool ValidBucket(const std::string& bucket) {
  if (bucket.size() < 3 || bucket.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(bucket.front()) || !alnum(bucket.back())) return false;
  return std::all_of(bucket.begin(), bucket.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '-'; });
}

// YYYYmmddTHHMMSS.nnnnnnnnnZ: fixed width, so keys sort by time.
std::string Stamp(uint64_t ns) {
  const time_t seconds = static_cast<time_t>(ns / 1'000'000'000ULL);
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char text[48];
  const size_t n = std::strftime(text, sizeof text, "%Y%m%dT%H%M%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%09lluZ",
                static_cast<unsigned long long>(ns % 1'000'000'000ULL));
  return text;
}

std::string Day(uint64_t ns) {
  const time_t seconds = static_cast<time_t>(ns / 1'000'000'000ULL);
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char text[16];
  std::strftime(text, sizeof text, "%Y/%m/%d", &utc);
  return text;
}

// JSON string contents: printable ASCII only (S3 metadata is sent as HTTP headers).
std::string JsonText(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      out += '_';
    }
  }
  return out;
}

std::string Joined(const std::vector<std::string>& items, const std::string& separator) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : separator) + item;
  return text;
}

std::vector<std::string> DistinctAgents(const FinishedFile& file) {
  std::vector<std::string> agents;
  for (const std::string& agent : file.agents) {
    if (!agent.empty() && std::find(agents.begin(), agents.end(), agent) == agents.end()) {
      agents.push_back(agent);
    }
  }
  return agents;
}

// `aws s3 cp` says "upload failed: SRC to s3://BUCKET/KEY REASON": the file and the key are
// known already, so the failure's line keeps the reason only.
class UploadJob final : public HandoffJob {
 public:
  explicit UploadJob(std::unique_ptr<HandoffJob> process) : process_(std::move(process)) {}
  std::optional<Status> Poll() override {
    std::optional<Status> outcome = process_->Poll();
    if (!outcome || outcome->ok()) return outcome;
    std::string text = outcome->message();
    const size_t echo = text.find(": upload failed: ");
    const size_t destination = echo == std::string::npos ? echo : text.find(" to s3://", echo);
    const size_t reason =
        destination == std::string::npos ? destination : text.find(' ', destination + 9);
    if (reason != std::string::npos) text = text.substr(0, echo + 2) + text.substr(reason + 1);
    return Internal(text);
  }
  std::string Abandon() override { return process_->Abandon(); }
  void Kill() override { process_->Kill(); }

 private:
  std::unique_ptr<HandoffJob> process_;
};

}  // namespace

StatusOr<S3Location> ParseS3Url(const std::string& url) {
  const std::string scheme = "s3://";
  if (url.compare(0, scheme.size(), scheme) != 0) {
    return InvalidArgument("--upload takes s3://BUCKET[/PREFIX], not '" + url + "'");
  }
  const std::string rest = url.substr(scheme.size());
  const size_t slash = rest.find('/');
  S3Location location;
  location.bucket = rest.substr(0, slash);
  if (!ValidBucket(location.bucket)) {
    return InvalidArgument("--upload " + url + ": '" + location.bucket +
                           "' is not an S3 bucket name (3 to 63 of a-z 0-9 . -)");
  }
  if (slash != std::string::npos) location.prefix = rest.substr(slash + 1);
  while (!location.prefix.empty() && location.prefix.back() == '/') location.prefix.pop_back();
  while (!location.prefix.empty() && location.prefix.front() == '/') location.prefix.erase(0, 1);
  return location;
}

std::string ObjectKey(const S3Location& location, const FinishedFile& file,
                      const std::string& extension) {
  std::vector<std::string> agents = DistinctAgents(file);
  for (std::string& agent : agents) agent = KeyPart(agent);
  const std::string agent = agents.empty() ? "unknown" : Joined(agents, "+");
  // With several agents the merger names interfaces AGENT:IFACE.
  std::string interface = file.interfaces.empty() ? "" : file.interfaces.front();
  if (!file.agents.empty() && !file.agents.front().empty() &&
      interface.rfind(file.agents.front() + ":", 0) == 0) {
    interface.erase(0, file.agents.front().size() + 1);
  }
  const uint64_t opened =
      static_cast<uint64_t>(std::max<int64_t>(0, file.opened_seconds)) * 1'000'000'000ULL;
  const uint64_t first = file.packets > 0 ? file.first_ns : opened;
  const uint64_t last = file.packets > 0 ? file.last_ns : opened;
  char number[16];
  std::snprintf(number, sizeof number, "%05u", file.number);
  std::string key = location.prefix.empty() ? "" : location.prefix + "/";
  key += agent + "/" + KeyPart(interface) + "/" + Day(first) + "/" + Stamp(first) + "_" +
         Stamp(last) + "_" + number + extension;
  return key;
}

std::string ObjectMetadataJson(const FinishedFile& file) {
  std::vector<std::string> link_types;
  for (uint16_t t : file.link_types) link_types.push_back(std::to_string(t));
  // Appended piece by piece: at -O3, GCC 12 warns (-Wrestrict, a known false positive) about a
  // chain of `"..." + std::string`.
  std::string json = "{";
  const auto field = [&json](const char* name, const std::string& value) {
    if (json.size() > 1) json += ',';
    json += '"';
    json += name;
    json += "\":\"";
    json += JsonText(value);
    json += '"';
  };
  field("packets", std::to_string(file.packets));
  field("first-ns", std::to_string(file.first_ns));
  field("last-ns", std::to_string(file.last_ns));
  field("link-types", Joined(link_types, ","));
  field("interfaces", Joined(file.interfaces, ","));
  field("agent", Joined(DistinctAgents(file), ","));
  json += '}';
  return json;
}

std::string S3UploadAction::Name() const {
  return "upload to s3://" + location_.bucket +
         (location_.prefix.empty() ? "" : "/" + location_.prefix);
}

std::vector<std::string> S3UploadAction::Command(const FinishedFile& file) const {
  const size_t dot = file.path.rfind('.');
  const size_t slash = file.path.rfind('/');
  const std::string extension =
      dot != std::string::npos && (slash == std::string::npos || dot > slash)
          ? file.path.substr(dot)
          : "";
  std::vector<std::string> argv = {
      aws_,
      "s3",
      "cp",
      CommandArgument(file.path),
      "s3://" + location_.bucket + "/" + ObjectKey(location_, file, extension),
      "--metadata",
      ObjectMetadataJson(file),
      "--content-type",
      "application/octet-stream",
      "--only-show-errors",
      "--no-progress"};
  if (!endpoint_url_.empty()) {
    argv.push_back("--endpoint-url");
    argv.push_back(endpoint_url_);
  }
  return argv;
}

StatusOr<std::unique_ptr<HandoffJob>> S3UploadAction::Start(const FinishedFile& file) {
  // stdout is the CLI's "upload:" lines; its error ends the failure's line.
  auto child = ChildProcess::Spawn(Command(file), {.quiet_stdout = true, .keep_stderr = true});
  if (!child.ok()) return child.status();
  return std::unique_ptr<HandoffJob>(std::make_unique<UploadJob>(std::move(child).value()));
}

}  // namespace capd::client

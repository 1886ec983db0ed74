#include "agent/recording/recording_request.h"

#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cctype>

#include "agent/stream/stream_request.h"
#include "common/printable.h"
#include "common/utf8.h"

namespace capd::agent {

Status ValidateRecordingName(const std::string& name) {
  // `bytes` on the wire (capture.proto, "Text in requests"): checked before anything else.
  if (!IsValidUtf8(name)) return InvalidArgument("name is not UTF-8");
  // The first character a letter or digit: no "-rf" that a shell or a tool reads as options,
  // no ".", "..", "..." or hidden folders.
  const bool ok =
      !name.empty() && name.size() <= kMaxRecordingNameBytes &&
      std::isalnum(static_cast<unsigned char>(name.front())) &&
      std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      });
  if (ok) return Status::Ok();
  return InvalidArgument("recording name '" + PrintableText(name) +
                         "' is not valid: 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with "
                         "a letter or a digit");
}

v1::StreamRequest StreamRequestFor(const v1::StartRecordingRequest& r) {
  v1::StreamRequest s;
  s.set_interface(r.interface());
  s.set_filter(r.filter());
  if (r.has_snaplen()) s.set_snaplen(r.snaplen());
  *s.mutable_decap() = r.decap();
  s.set_start_on(r.start_on());
  s.set_before_ms(r.before_ms());
  s.set_stop_on(r.stop_on());
  s.set_after_ms(r.after_ms());
  s.set_after_count(r.after_count());
  return s;
}

Status ValidateUploadDestination(const std::string& url) {
  if (!IsValidUtf8(url)) return InvalidArgument("upload is not UTF-8");
  const std::string scheme = "s3://";
  if (url.compare(0, scheme.size(), scheme) != 0) {
    return InvalidArgument("upload takes s3://BUCKET[/PREFIX], not '" + PrintableText(url) + "'");
  }
  const std::string rest = url.substr(scheme.size());
  const std::string bucket = rest.substr(0, rest.find('/'));
  // S3's rules for new bucket names, as capctl's --upload checks them (upload/s3_upload.h).
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  const bool bucket_ok = bucket.size() >= 3 && bucket.size() <= 63 && alnum(bucket.front()) &&
                         alnum(bucket.back()) &&
                         std::all_of(bucket.begin(), bucket.end(),
                                     [&](char c) { return alnum(c) || c == '.' || c == '-'; });
  if (!bucket_ok) {
    return InvalidArgument("upload " + PrintableText(url) + ": '" + PrintableText(bucket) +
                           "' is not an S3 bucket name (3 to 63 of a-z 0-9 . -)");
  }
  // The prefix starts every object key: printable ASCII, within S3's 1,024-byte keys with room
  // for the rest of the key.
  if (url.size() > kMaxUploadBytes ||
      !std::all_of(rest.begin(), rest.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return InvalidArgument("upload " + PrintableText(url) +
                           ": the prefix must be printable ASCII without spaces, and the whole "
                           "destination at most 512 bytes");
  }
  return Status::Ok();
}

Status ValidateStartRecordingRequest(const v1::StartRecordingRequest& request) {
  CAPD_RETURN_IF_ERROR(ValidateRecordingName(request.name()));
  CAPD_RETURN_IF_ERROR(ValidateStreamRequest(StreamRequestFor(request)));
  if (request.rotation().seconds() > kMaxRotationSeconds) {
    return InvalidArgument("rotation seconds must be 1..86400");
  }
  const uint64_t max_bytes = request.rotation().max_bytes();
  if (max_bytes != 0 && (max_bytes < kMinRotationBytes || max_bytes > kMaxRotationBytes)) {
    return InvalidArgument("rotation size " + std::to_string(max_bytes) +
                           " bytes is out of range: 10 kB to 1 TB (10000..1000000000000)");
  }
  if (request.rotation().max_files() > kMaxRotationFiles) {
    return InvalidArgument("rotation file count " + std::to_string(request.rotation().max_files()) +
                           " is out of range: 1..100000");
  }
  if (!request.upload().empty()) CAPD_RETURN_IF_ERROR(ValidateUploadDestination(request.upload()));
  return Status::Ok();
}

std::string RecordingRequestText(const v1::StartRecordingRequest& request) {
  // Fields capd does not know (a newer client's) would be printed as numbers, which the text
  // parser refuses: the recording would not resume after a restart (its folder "left alone").
  // What was not understood is not part of the recording either.
  google::protobuf::TextFormat::Printer printer;
  printer.SetHideUnknownFields(true);
  std::string text;
  printer.PrintToString(request, &text);
  return text;
}

bool ParseRecordingRequest(const std::string& text, v1::StartRecordingRequest* request) {
  return google::protobuf::TextFormat::ParseFromString(text, request);
}

}  // namespace capd::agent

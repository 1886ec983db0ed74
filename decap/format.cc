// Text forms of a decapsulation result, for interface descriptions and packet comments.

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "decap/decapsulator.h"

namespace capd::decap {
namespace {

size_t Empty(char* out, size_t out_size) {
  if (out_size > 0) out[0] = '\0';
  return 0;
}

}  // namespace

size_t FormatOuterSource(const Result& result, char* out, size_t out_size) {
  if (out == nullptr || out_size == 0) return 0;
  if (result.outer_source_family != AF_INET && result.outer_source_family != AF_INET6) {
    return Empty(out, out_size);
  }
  if (::inet_ntop(result.outer_source_family, result.outer_source, out,
                  static_cast<socklen_t>(out_size)) == nullptr) {
    return Empty(out, out_size);
  }
  return std::strlen(out);
}

std::string OuterSourceText(const Result& result) {
  char text[kOuterSourceTextSize];
  const size_t length = FormatOuterSource(result, text, sizeof(text));
  return std::string(text, length);
}

size_t FormatAwsOptions(const AwsGeneveOptions& aws, char* out, size_t out_size) {
  if (out == nullptr || out_size == 0) return 0;
  out[0] = '\0';  // also the result when no option is present
  size_t used = 0;
  const char* separator = "";
  auto append = [&](const char* name, int width, uint64_t value) {
    if (used >= out_size) return;
    const int n = std::snprintf(out + used, out_size - used, "%saws.%s=0x%0*" PRIx64, separator,
                                name, width, value);
    used = n < 0 ? out_size : used + static_cast<size_t>(n);
    separator = ", ";
  };
  if (aws.has_eni_id) append("eni_id", 16, aws.eni_id);
  if (aws.has_attachment_id) append("attachment_id", 16, aws.attachment_id);
  if (aws.has_flow_cookie) append("flow_cookie", 8, aws.flow_cookie);
  if (used >= out_size) return Empty(out, out_size);  // did not fit
  return used;
}

std::string AwsOptionsComment(const AwsGeneveOptions& aws) {
  char text[kAwsOptionsTextSize];
  const size_t length = FormatAwsOptions(aws, text, sizeof(text));
  return std::string(text, length);
}

}  // namespace capd::decap

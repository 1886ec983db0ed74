#include "agent/metadata/instance_metadata.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fstream>
#include <sstream>

namespace capd::agent {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

struct Endpoint {
  std::string host;
  std::string port = "80";
};

StatusOr<Endpoint> ParseEndpoint(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) {
    return InvalidArgument("metadata endpoint '" + url + "': expected http://HOST[:PORT]");
  }
  std::string rest = url.substr(kScheme.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  Endpoint endpoint;
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    endpoint.host = rest.substr(0, colon);
    endpoint.port = rest.substr(colon + 1);
  } else {
    endpoint.host = rest;
  }
  if (endpoint.host.empty()) return InvalidArgument("metadata endpoint '" + url + "': no host");
  return endpoint;
}

// One HTTP/1.1 request on its own connection, bounded by `timeout` as a whole. Beast's
// tcp_stream enforces its expiry only on asynchronous operations (a synchronous connect to an
// address that never answers, as 169.254.169.254 off EC2 behind a default route, would block
// for the kernel's SYN timeout of minutes), so the request is a chain of async operations.
StatusOr<std::string> Request(const Endpoint& endpoint, http::verb verb, const std::string& target,
                              const std::string& token, std::chrono::milliseconds timeout) {
  boost::asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  http::request<http::string_body> request{verb, target, 11};
  request.set(http::field::host, endpoint.host);
  if (verb == http::verb::put) {
    request.set("X-aws-ec2-metadata-token-ttl-seconds", "21600");
  } else {
    request.set("X-aws-ec2-metadata-token", token);
  }
  request.prepare_payload();
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  beast::error_code failure;
  boost::system::error_code resolve_error;
  const auto endpoints = resolver.resolve(endpoint.host, endpoint.port, resolve_error);
  if (resolve_error) {
    return Unavailable("metadata endpoint " + endpoint.host + ": " + resolve_error.message());
  }
  stream.expires_after(timeout);
  stream.async_connect(endpoints, [&](beast::error_code error, const tcp::endpoint&) {
    if (error) {
      failure = error;
      return;
    }
    http::async_write(stream, request, [&](beast::error_code error, size_t) {
      if (error) {
        failure = error;
        return;
      }
      http::async_read(stream, buffer, response,
                       [&](beast::error_code error, size_t) { failure = error; });
    });
  });
  io.run();
  if (failure) {
    return Unavailable("metadata endpoint " + endpoint.host + ":" + endpoint.port + ": " +
                       failure.message());
  }
  if (response.result() != http::status::ok) {
    return Internal("metadata " + target + ": HTTP " +
                    std::to_string(static_cast<int>(response.result())));
  }
  return response.body();
}

}  // namespace

std::string InstanceMetadata::Describe(const std::string& mac) const {
  std::string text = instance_id + " (" + (availability_zone.empty() ? region : availability_zone);
  auto it = interfaces_by_mac.find(mac);
  if (it != interfaces_by_mac.end()) {
    for (const std::string* part :
         {&it->second.vpc_id, &it->second.subnet_id, &it->second.eni_id}) {
      if (!part->empty()) text += ", " + *part;
    }
  }
  return text + ")";
}

StatusOr<InstanceMetadata> FetchInstanceMetadata(const std::string& url,
                                                 std::chrono::milliseconds timeout) {
  auto endpoint = ParseEndpoint(url);
  if (!endpoint.ok()) return endpoint.status();
  auto token = Request(endpoint.value(), http::verb::put, "/latest/api/token", "", timeout);
  if (!token.ok()) return token.status();
  auto get = [&](const std::string& path) {
    return Request(endpoint.value(), http::verb::get, "/latest/meta-data/" + path, token.value(),
                   timeout);
  };
  InstanceMetadata metadata;
  auto id = get("instance-id");
  if (!id.ok()) return id.status();
  metadata.instance_id = id.value();
  if (auto az = get("placement/availability-zone"); az.ok())
    metadata.availability_zone = az.value();
  if (auto region = get("placement/region"); region.ok()) metadata.region = region.value();
  if (auto macs = get("network/interfaces/macs/"); macs.ok()) {
    std::istringstream lines(macs.value());
    std::string mac;
    while (std::getline(lines, mac)) {
      while (!mac.empty() && (mac.back() == '/' || mac.back() == '\r')) mac.pop_back();
      if (mac.empty()) continue;
      NetworkInterfaceMetadata& nic = metadata.interfaces_by_mac[mac];
      const std::string base = "network/interfaces/macs/" + mac + "/";
      if (auto v = get(base + "interface-id"); v.ok()) nic.eni_id = v.value();
      if (auto v = get(base + "vpc-id"); v.ok()) nic.vpc_id = v.value();
      if (auto v = get(base + "subnet-id"); v.ok()) nic.subnet_id = v.value();
    }
  }
  return metadata;
}

std::string InterfaceMac(const std::string& interface) {
  if (interface.find('/') != std::string::npos) return {};
  std::ifstream in("/sys/class/net/" + interface + "/address");
  std::string mac;
  std::getline(in, mac);
  for (char& c : mac) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return mac;
}

}  // namespace capd::agent

#include "agent/metadata/instance_metadata.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <map>
#include <thread>

namespace capd::agent {
namespace {

using boost::asio::ip::tcp;

// A STAND-IN for the EC2 instance metadata service (IMDSv2), on loopback: it answers only with
// the session token, as the real service does, and counts what it was asked.
class FakeImds {
 public:
  FakeImds() : acceptor_(io_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeImds() {
    stop_ = true;
    boost::system::error_code ignored;
    tcp::socket poke(io_);
    poke.connect(acceptor_.local_endpoint(), ignored);  // unblock accept()
    thread_.join();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  std::atomic<int> token_requests{0};
  std::atomic<int> refused_without_token{0};

 private:
  void Serve() {
    const std::map<std::string, std::string> values = {
        {"/latest/meta-data/instance-id", "i-0123456789abcdef0"},
        {"/latest/meta-data/placement/availability-zone", "eu-west-1b"},
        {"/latest/meta-data/placement/region", "eu-west-1"},
        {"/latest/meta-data/network/interfaces/macs/", "0e:11:22:33:44:55/\n0e:aa:bb:cc:dd:ee/"},
        {"/latest/meta-data/network/interfaces/macs/0e:11:22:33:44:55/interface-id", "eni-111"},
        {"/latest/meta-data/network/interfaces/macs/0e:11:22:33:44:55/vpc-id", "vpc-222"},
        {"/latest/meta-data/network/interfaces/macs/0e:11:22:33:44:55/subnet-id", "subnet-333"},
        {"/latest/meta-data/network/interfaces/macs/0e:aa:bb:cc:dd:ee/interface-id", "eni-999"},
    };
    while (!stop_) {
      tcp::socket socket(io_);
      boost::system::error_code error;
      acceptor_.accept(socket, error);
      if (error || stop_) continue;
      boost::asio::streambuf buffer;
      boost::asio::read_until(socket, buffer, "\r\n\r\n", error);
      std::string head(boost::asio::buffers_begin(buffer.data()),
                       boost::asio::buffers_end(buffer.data()));
      const std::string method = head.substr(0, head.find(' '));
      const size_t path_start = head.find(' ') + 1;
      const std::string path = head.substr(path_start, head.find(' ', path_start) - path_start);
      std::string status = "200 OK", body;
      if (method == "PUT" && path == "/latest/api/token" &&
          head.find("X-aws-ec2-metadata-token-ttl-seconds") != std::string::npos) {
        ++token_requests;
        body = "TOKEN-abc";
      } else if (head.find("X-aws-ec2-metadata-token: TOKEN-abc") == std::string::npos) {
        ++refused_without_token;
        status = "401 Unauthorized";
      } else if (auto it = values.find(path); it != values.end()) {
        body = it->second;
      } else {
        status = "404 Not Found";
      }
      const std::string response = "HTTP/1.1 " + status +
                                   "\r\nContent-Length: " + std::to_string(body.size()) +
                                   "\r\nConnection: close\r\n\r\n" + body;
      boost::asio::write(socket, boost::asio::buffer(response), error);
    }
  }

  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(InstanceMetadataTest, ReadsInstanceAndInterfacesWithAnImdsV2Token) {
  FakeImds imds;
  auto metadata = FetchInstanceMetadata(imds.url(), std::chrono::milliseconds(2000));
  ASSERT_TRUE(metadata.ok()) << metadata.status().message();
  EXPECT_EQ(metadata->instance_id, "i-0123456789abcdef0");
  EXPECT_EQ(metadata->availability_zone, "eu-west-1b");
  EXPECT_EQ(metadata->region, "eu-west-1");
  ASSERT_EQ(metadata->interfaces_by_mac.size(), 2u);
  EXPECT_EQ(metadata->interfaces_by_mac.at("0e:11:22:33:44:55").eni_id, "eni-111");
  EXPECT_EQ(metadata->Describe("0e:11:22:33:44:55"),
            "i-0123456789abcdef0 (eu-west-1b, vpc-222, subnet-333, eni-111)");
  EXPECT_EQ(metadata->Describe("0e:00:00:00:00:00"), "i-0123456789abcdef0 (eu-west-1b)");
  EXPECT_EQ(imds.token_requests.load(), 1);
  EXPECT_EQ(imds.refused_without_token.load(), 0);
}

TEST(InstanceMetadataTest, NothingListeningIsUnavailable) {
  // A port that was just free: connection refused, as off EC2 with no route.
  tcp::endpoint free_endpoint;
  {
    boost::asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    free_endpoint = a.local_endpoint();
  }
  auto metadata = FetchInstanceMetadata("http://127.0.0.1:" + std::to_string(free_endpoint.port()),
                                        std::chrono::milliseconds(500));
  EXPECT_FALSE(metadata.ok());
  EXPECT_EQ(metadata.status().code(), StatusCode::kUnavailable);
}

TEST(InstanceMetadataTest, RefusesEndpointsThatAreNotHttpUrls) {
  EXPECT_EQ(FetchInstanceMetadata("169.254.169.254", std::chrono::milliseconds(10)).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace capd::agent

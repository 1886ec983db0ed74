#pragma once
// Certificates for TLS tests, made with the openssl command line in a test's directory:
//
//   ca.pem ──signs──> server.pem (subjectAltName IP:127.0.0.1, DNS:localhost; serverAuth)
//          ──signs──> client.pem (clientAuth)
//   other-ca.pem ──signs──> other-client.pem (a client a server trusting only ca.pem refuses)
//
// EC P-256 keys (fast to make), unencrypted PEM, valid for two days from now.

#include <filesystem>

#include "common/status.h"

namespace capd::test {

struct TestPki {
  std::filesystem::path ca_cert;
  std::filesystem::path server_cert;
  std::filesystem::path server_key;
  std::filesystem::path client_cert;
  std::filesystem::path client_key;
  std::filesystem::path other_ca_cert;
  std::filesystem::path other_client_cert;
  std::filesystem::path other_client_key;
};

// kFailedPrecondition when the openssl command cannot be run (tests skip with the message);
// kInternal with the failing command and openssl's output when a step fails.
StatusOr<TestPki> MakeTestPki(const std::filesystem::path& dir);

}  // namespace capd::test

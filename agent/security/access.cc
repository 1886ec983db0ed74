#include "agent/security/access.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

namespace capd::agent {
namespace {

constexpr std::string_view kBearerPrefix = "Bearer ";

StatusOr<std::string> ReadFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument(flag + " " + path + ": cannot read it");
  std::ostringstream content;
  content << in.rdbuf();
  if (content.str().empty()) return InvalidArgument(flag + " " + path + ": the file is empty");
  return content.str();
}

// OpenSSL's reason for the last failure, for a message that says what is wrong with a file.
std::string OpenSslReason() {
  const unsigned long error = ERR_get_error();
  ERR_clear_error();
  if (error == 0) return "";
  const char* reason = ERR_reason_error_string(error);
  return reason != nullptr ? std::string(" (") + reason + ")" : "";
}

// The first certificate of a PEM text, or null.
X509* FirstCertificate(const std::string& pem) {
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* certificate = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  return certificate;
}

// gRPC takes a certificate and a key that do not match without a word and then serves nothing
// on the port; capd says which file is wrong before it starts.
Status CheckCertificateAndKey(const AccessOptions& options, const std::string& cert_pem,
                              const std::string& key_pem) {
  X509* certificate = FirstCertificate(cert_pem);
  if (certificate == nullptr) {
    return InvalidArgument("--tls-cert " + options.tls_cert_file + ": no PEM certificate in it" +
                           OpenSslReason());
  }
  BIO* in = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  // An empty passphrase callback: an encrypted key fails here instead of prompting.
  EVP_PKEY* key = PEM_read_bio_PrivateKey(
      in, nullptr, [](char*, int, int, void*) { return 0; }, nullptr);
  BIO_free(in);
  Status status;
  if (key == nullptr) {
    status = InvalidArgument("--tls-key " + options.tls_key_file +
                             ": no unencrypted PEM private key in it" + OpenSslReason());
  } else if (X509_check_private_key(certificate, key) != 1) {
    ERR_clear_error();
    status = InvalidArgument("--tls-key " + options.tls_key_file +
                             " is not the key of the certificate in --tls-cert " +
                             options.tls_cert_file);
  }
  EVP_PKEY_free(key);
  X509_free(certificate);
  return status;
}

std::string HostOf(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

}  // namespace

bool IsLoopbackListenAddress(const std::string& listen) {
  if (listen.starts_with("unix:")) return true;
  const std::string host = HostOf(listen);
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

StatusOr<ServerCredentialsFactory> MakeServerCredentials(const AccessOptions& options) {
  const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (tls && (options.tls_cert_file.empty() || options.tls_key_file.empty())) {
    return InvalidArgument("--tls-cert and --tls-key go together");
  }
  if (!tls && !options.tls_client_ca_file.empty()) {
    return InvalidArgument("--tls-client-ca needs TLS: add --tls-cert and --tls-key");
  }
  if (!tls) {
    if (!IsLoopbackListenAddress(options.listen)) {
      return InvalidArgument(
          "refusing to listen on " + options.listen +
          " without TLS: anyone who can reach it could capture this host's traffic. Listen on "
          "loopback (and tunnel with ssh -L), or add --tls-cert/--tls-key and --tls-client-ca "
          "or --auth-token-file");
    }
    return ServerCredentialsFactory([] { return grpc::InsecureServerCredentials(); });
  }
  // TLS proves the agent to its clients, not the clients to the agent: on an address others can
  // reach, a client certificate or a token must decide who may capture.
  if (!IsLoopbackListenAddress(options.listen) && options.tls_client_ca_file.empty() &&
      options.token_file.empty()) {
    return InvalidArgument(
        "refusing to listen on " + options.listen +
        " with TLS but without client authentication: anyone who can reach it could capture "
        "this host's traffic. Add --tls-client-ca (clients need a certificate it signed) or "
        "--auth-token-file (clients need the token), or listen on loopback");
  }
  auto cert = ReadFile("--tls-cert", options.tls_cert_file);
  if (!cert.ok()) return cert.status();
  auto key = ReadFile("--tls-key", options.tls_key_file);
  if (!key.ok()) return key.status();
  CAPD_RETURN_IF_ERROR(CheckCertificateAndKey(options, cert.value(), key.value()));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({key.value(), cert.value()});
  if (!options.tls_client_ca_file.empty()) {
    auto ca = ReadFile("--tls-client-ca", options.tls_client_ca_file);
    if (!ca.ok()) return ca.status();
    if (X509* first = FirstCertificate(ca.value()); first == nullptr) {
      return InvalidArgument("--tls-client-ca " + options.tls_client_ca_file +
                             ": no PEM certificate in it" + OpenSslReason());
    } else {
      X509_free(first);
    }
    ssl.pem_root_certs = ca.value();
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return ServerCredentialsFactory([ssl] { return grpc::SslServerCredentials(ssl); });
}

bool ConstantTimeEquals(std::string_view expected, std::string_view given) {
  unsigned char difference = expected.size() == given.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    difference |= static_cast<unsigned char>(expected[i]) ^ g;
  }
  return difference == 0;
}

StatusOr<TokenCheck> TokenCheck::FromFile(const std::string& path) {
  auto content = ReadFile("--auth-token-file", path);
  if (!content.ok()) return content.status();
  std::string token = content.value();
  const auto first = token.find_first_not_of(" \t\r\n");
  const auto last = token.find_last_not_of(" \t\r\n");
  if (first == std::string::npos) {
    return InvalidArgument("--auth-token-file " + path + ": no token in it");
  }
  token = token.substr(first, last - first + 1);
  return TokenCheck(std::move(token));
}

grpc::Status TokenCheck::Check(const grpc::ServerContextBase& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return {grpc::StatusCode::UNAUTHENTICATED, "capd requires a token: capctl --token-file FILE"};
  }
  const std::string_view value(it->second.data(), it->second.size());
  if (!value.starts_with(kBearerPrefix) ||
      !ConstantTimeEquals(token_, value.substr(kBearerPrefix.size()))) {
    return {grpc::StatusCode::PERMISSION_DENIED, "the token capctl sent is not capd's token"};
  }
  return grpc::Status::OK;
}

}  // namespace capd::agent

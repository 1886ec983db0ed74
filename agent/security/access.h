#pragma once
// Who may talk to capd: where it listens, TLS (optionally mutual), and a bearer token.
//
// An agent that can read every packet on a host must not be reachable by anyone who can reach
// the port: a listening address other than loopback requires TLS, and a client certificate
// (--tls-client-ca) or a token (--auth-token-file) decides who is allowed.

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"

namespace capd::agent {

struct AccessOptions {
  std::string listen;              // ADDRESS:PORT
  std::string tls_cert_file;       // server certificate chain (PEM)
  std::string tls_key_file;        // its private key (PEM)
  std::string tls_client_ca_file;  // if set, clients must present a certificate it signed
  std::string token_file;          // if set, clients must send "authorization: Bearer <token>"
};

// True for 127.0.0.0/8, ::1, localhost and unix: sockets.
bool IsLoopbackListenAddress(const std::string& listen);

// Makes the server credentials when called. Creating gRPC credentials initialises gRPC, which
// starts threads; those must start after privileges drop (capabilities are per thread), while
// the files may be readable only by root: so the files are read now and the credentials made
// by the returned function, later.
using ServerCredentialsFactory = std::function<std::shared_ptr<grpc::ServerCredentials>()>;

// Validates the combination and reads the files. kInvalidArgument for a non-loopback address
// without TLS, or with TLS but neither a client CA nor a token, a key without a certificate, a
// client CA without TLS, an unreadable or empty file.
StatusOr<ServerCredentialsFactory> MakeServerCredentials(const AccessOptions& options);

// Checks the bearer token of each call, in constant time.
class TokenCheck {
 public:
  // Reads the token (surrounding whitespace removed; must not be empty).
  static StatusOr<TokenCheck> FromFile(const std::string& path);
  // OK, UNAUTHENTICATED (no token sent) or PERMISSION_DENIED (a wrong one).
  grpc::Status Check(const grpc::ServerContextBase& context) const;

 private:
  explicit TokenCheck(std::string token) : token_(std::move(token)) {}
  std::string token_;
};

// Both strings compared without an early exit, so the time taken does not tell how many
// leading bytes matched.
bool ConstantTimeEquals(std::string_view expected, std::string_view given);

}  // namespace capd::agent

#include "tests/support/test_pki.h"

#include <fstream>
#include <string>
#include <vector>

#include "tests/support/subprocess.h"

namespace capd::test {
namespace {

constexpr char kServerExtensions[] =
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = IP:127.0.0.1, DNS:localhost\n";
constexpr char kClientExtensions[] =
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = clientAuth\n";

Status Openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunToSuccess(argv);
}

Status WriteFile(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
  out.close();
  return out ? Status::Ok() : Internal("cannot write " + path.string());
}

// A self-signed CA certificate and its key.
Status MakeCa(const std::filesystem::path& dir, const std::string& name) {
  return Openssl({"req",
                  "-x509",
                  "-new",
                  "-newkey",
                  "ec",
                  "-pkeyopt",
                  "ec_paramgen_curve:prime256v1",
                  "-nodes",
                  "-keyout",
                  (dir / (name + ".key")),
                  "-out",
                  (dir / (name + ".pem")),
                  "-days",
                  "2",
                  "-subj",
                  "/CN=capd test " + name,
                  "-addext",
                  "basicConstraints=critical,CA:TRUE",
                  "-addext",
                  "keyUsage=critical,keyCertSign,cRLSign"});
}

// A key, and a certificate for it signed by CA `ca` with the extensions in `extensions`.
Status MakeLeaf(const std::filesystem::path& dir, const std::string& name, const std::string& ca,
                const std::string& common_name, const std::string& extensions, int serial) {
  const auto ext_file = dir / (name + ".ext");
  CAPD_RETURN_IF_ERROR(WriteFile(ext_file, extensions));
  CAPD_RETURN_IF_ERROR(
      Openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-keyout", (dir / (name + ".key")), "-out", (dir / (name + ".csr")), "-subj",
               "/CN=" + common_name}));
  return Openssl({"x509", "-req", "-in", (dir / (name + ".csr")), "-CA", (dir / (ca + ".pem")),
                  "-CAkey", (dir / (ca + ".key")), "-set_serial", std::to_string(serial), "-days",
                  "2", "-out", (dir / (name + ".pem")), "-extfile", ext_file});
}

}  // namespace

StatusOr<TestPki> MakeTestPki(const std::filesystem::path& dir) {
  const CommandResult version = RunCommand({"openssl", "version"});
  if (!version.status.Exited(0)) {
    return Status(StatusCode::kFailedPrecondition,
                  "the openssl command is not available (apt-get install openssl): " +
                      version.status.ToString() + ": " + version.output);
  }
  CAPD_RETURN_IF_ERROR(MakeCa(dir, "ca"));
  CAPD_RETURN_IF_ERROR(MakeCa(dir, "other-ca"));
  CAPD_RETURN_IF_ERROR(MakeLeaf(dir, "server", "ca", "localhost", kServerExtensions, 1));
  CAPD_RETURN_IF_ERROR(MakeLeaf(dir, "client", "ca", "capctl", kClientExtensions, 2));
  CAPD_RETURN_IF_ERROR(MakeLeaf(dir, "other-client", "other-ca", "capctl", kClientExtensions, 3));
  TestPki pki;
  pki.ca_cert = dir / "ca.pem";
  pki.server_cert = dir / "server.pem";
  pki.server_key = dir / "server.key";
  pki.client_cert = dir / "client.pem";
  pki.client_key = dir / "client.key";
  pki.other_ca_cert = dir / "other-ca.pem";
  pki.other_client_cert = dir / "other-client.pem";
  pki.other_client_key = dir / "other-client.key";
  return pki;
}

}  // namespace capd::test

// Throwaway certificates for the TLS tests (the Kubernetes client against
// the fake API server, the etcd source against a real etcd), made with the
// openssl command (scripts/deps.sh installs it) in a temporary folder that
// goes with the object. EC P-256 keys, valid one day:
//   ca.crt, ca.key              a CA (CN sluice-test-ca)
//   other-ca.crt, other-ca.key  a second CA that signed nothing here
//   server.crt, server.key      signed by the CA for 127.0.0.1 (IP SAN), with
//                               serverAuth and clientAuth extended key usage
//                               (etcd 3.4's JSON gateway presents the server
//                               certificate as a client to its own gRPC server)
//   client.crt, client.key      signed by the CA, CN system:node:node-228,
//                               clientAuth
//
// Errors: ok() is false when any openssl step failed (openssl absent, say);
// its output is discarded, so a test says "openssl failed" and stops.
//
// Concurrency: const methods may be called from any thread.
#ifndef SLUICE_TESTS_TESTING_PKI_H_
#define SLUICE_TESTS_TESTING_PKI_H_

#include <string>

#include "tests/testing/temp_dir.h"

namespace sluice::testing {

class Pki {
 public:
  Pki();

  bool ok() const { return ok_; }
  std::string path(const std::string& name) const { return dir_.path() + "/" + name; }
  std::string Read(const std::string& name) const;  // empty when unreadable
  const TempDir& dir() const { return dir_; }

 private:
  bool Run(const std::string& command) const;
  bool Sign(const std::string& name, const std::string& subject, const std::string& extensions);

  TempDir dir_;
  bool ok_ = false;
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_TESTING_PKI_H_

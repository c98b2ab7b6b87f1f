#include "tests/testing/pki.h"

#include <cstdio>
#include <cstdlib>

namespace sluice::testing {

Pki::Pki() {
  ok_ = Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
            "-keyout ca.key -out ca.crt -subj /CN=sluice-test-ca -days 1") &&
        Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
            "-keyout other-ca.key -out other-ca.crt -subj /CN=another-ca -days 1") &&
        Sign("server", "/CN=127.0.0.1",
             "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth") &&
        Sign("client", "/CN=system:node:node-228", "extendedKeyUsage=clientAuth");
}

std::string Pki::Read(const std::string& name) const {
  std::string text;
  if (std::FILE* f = std::fopen(path(name).c_str(), "rb")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) text.append(buffer, n);
    std::fclose(f);
  }
  return text;
}

bool Pki::Run(const std::string& command) const {
  return std::system(("cd " + dir_.path() + " && " + command + " >/dev/null 2>&1").c_str()) == 0;
}

bool Pki::Sign(const std::string& name, const std::string& subject, const std::string& extensions) {
  dir_.Write(name + ".ext", extensions + "\n");
  return Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + name +
             ".key -out " + name + ".csr -subj " + subject) &&
         Run("openssl x509 -req -in " + name +
             ".csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out " +
             name + ".crt -days 1 -extfile " + name + ".ext");
}

}  // namespace sluice::testing

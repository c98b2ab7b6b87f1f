// A real etcd for tests: Debian's etcd-server (/usr/bin/etcd, or the binary
// named by $SLUICE_ETCD) started on loopback with a temporary data dir and
// free ports, plus the few gateway calls tests make (put, delete,
// compaction) over libcurl.
//
// etcd listens for clients on two ports: the "source" port, which the code
// under test is pointed at, and the "admin" port, which the test's own calls
// use. Restart(/*serve_source_port=*/false) brings etcd back on the admin
// port only, so that a test can change the store while the source is
// disconnected, without depending on timing.
//
// TLS: given Tls files, the source port is https:// (etcd's --cert-file,
// --key-file, --trusted-ca-file, and --client-cert-auth when asked), while
// the admin port stays plain http:// (etcd serves each client URL by its
// scheme), so that the test's own calls need no certificates and do not
// depend on the TLS set-up under test. etcd 3.4's JSON gateway dials its own
// gRPC server with the server certificate as a client certificate: that
// certificate needs both serverAuth and clientAuth extended key usage.
//
// Auth: EnableAuth() adds a root user and a user that may read one prefix,
// and turns etcd's authentication on; from then on the test's own calls
// authenticate as root (again after a restart, which forgets tokens).
//
// Cleanup: the destructor kills etcd (SIGKILL), reaps it and removes the data
// dir. If the test process dies first (a crash, a timeout's SIGKILL), etcd
// dies with it (PR_SET_PDEATHSIG) and a small reaper process forked at
// Start() removes the data dir once the test process is gone.
//
// Errors: Start() returns FailedPrecondition when the etcd binary is absent
// (with what to install), Unavailable when etcd does not become healthy in
// 15 s (with the end of its log); the calls return Unavailable or the
// gateway's error.
//
// Concurrency: one thread at a time (the test's); not for use across fork.
#ifndef SLUICE_TESTS_TESTING_ETCD_SERVER_H_
#define SLUICE_TESTS_TESTING_ETCD_SERVER_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::testing {

class EtcdServer {
 public:
  struct Tls {
    std::string cert_file, key_file;  // PEM: etcd's server certificate and key
    std::string trusted_ca_file;      // PEM: CA for client certificates
    bool client_cert_auth = false;    // clients without a certificate it signed are refused
  };

  // `extra_args` are appended to etcd's command line. With `tls`, the source
  // port serves https:// (see above).
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start(
      std::vector<std::string> extra_args = {});
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start(std::vector<std::string> extra_args,
                                                           Tls tls);
  ~EtcdServer();

  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // SIGKILL, then waits for the process to end.
  void Kill();
  // Starts etcd again on the same data dir and ports and waits until it is
  // healthy. Kills a running one first.
  absl::Status Restart(bool serve_source_port = true);

  std::string source_endpoint() const;  // http(s)://127.0.0.1:<source port>
  std::string admin_endpoint() const;   // http://127.0.0.1:<admin port>
  const std::string& data_dir() const { return dir_; }

  // Through the admin port; each returns the store's revision after it.
  absl::StatusOr<int64_t> Put(std::string_view key, std::string_view value);
  absl::StatusOr<int64_t> Delete(std::string_view key);
  absl::StatusOr<int64_t> Compact(int64_t revision);

  // Adds user `name` with `password` and a role that may read every key
  // under `prefix` + "/", then enables auth (through the admin port).
  absl::Status EnableAuth(std::string_view name, std::string_view password,
                          std::string_view prefix);

  // The last lines etcd wrote, for failure messages.
  std::string LogTail() const;

 private:
  EtcdServer() = default;
  absl::Status Launch(bool serve_source_port);
  absl::Status WaitHealthy();
  // A KV call through the admin port, as root once auth is on.
  absl::StatusOr<int64_t> KvCall(const char* path, const std::string& body);
  absl::Status AuthCall(const char* path, const std::string& body);

  std::string binary_;
  std::vector<std::string> extra_args_;
  bool tls_ = false;
  Tls tls_files_;
  std::string dir_;  // temporary; holds data/ and etcd.log
  int source_port_ = 0;
  int admin_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = -1;
  pid_t reaper_pid_ = -1;
  int reaper_fd_ = -1;  // write end of the reaper's pipe
  bool auth_ = false;   // EnableAuth() succeeded
  std::string root_token_;
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_TESTING_ETCD_SERVER_H_

// flannel's etcd as a live source for sluice-control: lists flannel's keys
// through etcd v3's JSON gateway (etcd_gateway.h), then watches them from the
// next revision and hands the caller a full snapshot after each listing and
// per-lease changes after that (flannel_keyspace.h says what each event
// means and how bad values are treated). Plain C++ over libcurl: no DPDK, no
// EAL, so it runs in an unprivileged process.
//
// Behaviour:
// - Start: with a username, POST /v3/auth/authenticate first (see Users);
//   then POST /v3/kv/range over "<prefix>/" (in pages of `page_size` keys,
//   all read at the first page's revision) -> a kSnapshot event; then POST
//   /v3/watch from that revision + 1, progress notifications on. The watch
//   stream's pieces are cut into objects (json_stream.h) however the chunks
//   fall.
// - etcd unreachable, an HTTP error, a stream that ends or breaks: the
//   problem is reported, and after a backoff (backoff_initial doubling to
//   backoff_max, each wait drawn in [backoff/2, backoff]) the watch starts
//   again from the last revision seen, so changes made meanwhile arrive as
//   ordinary events; a listing that failed is retried the same way. The
//   backoff returns to backoff_initial once a watch is created.
// - The watch canceled because its start revision was compacted (or any
//   other cancel), and a store whose revision went back (etcd restored from
//   an older backup): a fresh listing and a full kSnapshot, never state
//   patched over a gap.
//
// TLS (flannel's -etcd-cafile, -etcd-certfile, -etcd-keyfile): with an
// https:// endpoint the server's certificate and name are always verified,
// against ca_file when it is set (only that CA, as flannel trusts only the
// CA it is given) or else the system's store; cert_file and key_file (PEM)
// are the client certificate an etcd with --client-cert-auth asks for. The
// files are named by path and read by libcurl, not by the source (Start only
// checks that they can be read). Nothing here turns verification off.
//
// Users (flannel's -etcd-username, -etcd-password): with a username the
// source authenticates (POST /v3/auth/authenticate) before its first listing
// and before each retry after a failure (a reconnect, a token etcd no longer
// knows: it restarted, or the token expired; a range answered "invalid auth
// token", a watch canceled as Unauthenticated), and sends the token as the
// "Authorization" header of its range and watch requests. A watch refused
// for its token is retried from the same revision, with no relist. An etcd
// with auth off ("authentication is not enabled") is used without a token. The
// password goes only into the authenticate request: never into a log, an
// error message or on_problem.
//
// Errors: Start() returns InvalidArgument for bad options, naming the option
// (an endpoint that is not http:// or https://, an empty prefix,
// backoff_initial > backoff_max or not positive, page_size < 1, cert_file
// without key_file or key_file without cert_file, any of ca_file, cert_file
// and key_file with an http:// endpoint, where they would not be used, a TLS
// file that cannot be read: access(R_OK) at Start, a password without a
// username) and Internal when libcurl cannot be set up. A TLS file that goes
// away later, a server the CA did not sign, or a client certificate the
// server refuses is a connect failure (Unavailable, with libcurl's message)
// like any other.
// Everything after that is reported through on_problem and retried, never
// fatal: Unavailable (connect failures, a dropped stream, HTTP errors),
// DeadlineExceeded (a range request past request_timeout), Unauthenticated (a
// wrong username or password, the message naming the user: "etcd
// http://...: authenticating as user \"flannel\": etcdserver: authentication
// failed, invalid user ID or password (HTTP 400)"; a token refused; no
// username where etcd has auth on), PermissionDenied (the user may not read
// the prefix), InvalidArgument (a value that does not parse: the message
// names the key and the field, "etcd key
// /coreos.com/network/subnets/10.244.1.0-24: BackendData.VtepMAC: malformed
// MAC \"zz\""), OutOfRange (a compacted revision) and DataLoss (the store's
// revision went back), the last two followed by a relist.
//
// Concurrency: the source runs one thread of its own, started by Start() and
// joined by Stop(). on_event and on_problem run on that thread, one call at a
// time, in the order things happened; events are delivered from inside the
// transfer, so a slow callback delays the next ones (and the stream). The
// callbacks may call Stop() (it then only asks the thread to end) but must
// not destroy the source. Stop() may be called from any thread, any number of
// times; it wakes the thread out of any wait (curl_multi_wakeup) and returns
// once the thread has ended: within about one callback's duration, never a
// network timeout. stats() may be read from any thread at any time.
#ifndef SLUICE_CONTROL_SOURCES_ETCD_SOURCE_H_
#define SLUICE_CONTROL_SOURCES_ETCD_SOURCE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control/sources/flannel_keyspace.h"

namespace sluice {

struct EtcdSourceOptions {
  std::string endpoint = "http://127.0.0.1:2379";  // one etcd member's client URL
  std::string prefix = "/coreos.com/network";      // flannel's -etcd-prefix
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{10000};  // one range page, whole
  int64_t page_size = 1000;                          // keys per range request
  uint64_t jitter_seed = 0;                          // 0: from the clock
  // TLS, https:// endpoints only; empty: not used.
  std::string ca_file;    // PEM CA bundle the server must chain to (flannel's -etcd-cafile)
  std::string cert_file;  // PEM client certificate (-etcd-certfile); needs key_file
  std::string key_file;   // its PEM private key (-etcd-keyfile); needs cert_file
  // etcd v3 user; empty: no authentication.
  std::string username;  // flannel's -etcd-username
  std::string password;  // -etcd-password; needs username; never logged
};

// Counters since Start(); read with relaxed loads, each exact on its own.
struct EtcdSourceStats {
  uint64_t lists = 0;            // listings completed (snapshots delivered)
  uint64_t watches = 0;          // watches created
  uint64_t watch_breaks = 0;     // watch streams that ended or failed (not by Stop)
  uint64_t failures = 0;         // failed connects and requests (each retry counts)
  uint64_t compactions = 0;      // watches canceled for compaction (each led to a relist)
  uint64_t events = 0;           // FlannelEvents delivered
  uint64_t bad_values = 0;       // values reported and skipped
  uint64_t authentications = 0;  // tokens obtained (with a username)
  int64_t revision = 0;          // last revision seen
};

class EtcdSource {
 public:
  using EventCallback = std::function<void(const FlannelEvent&)>;
  using ProblemCallback = std::function<void(const absl::Status&)>;

  static absl::StatusOr<std::unique_ptr<EtcdSource>> Start(EtcdSourceOptions options,
                                                           EventCallback on_event,
                                                           ProblemCallback on_problem);
  ~EtcdSource();  // Stop()

  EtcdSource(const EtcdSource&) = delete;
  EtcdSource& operator=(const EtcdSource&) = delete;

  void Stop();
  EtcdSourceStats stats() const;

 private:
  struct Loop;  // the thread's state (libcurl handles, keyspace), etcd_source.cc
  struct Counters {
    std::atomic<uint64_t> lists{0}, watches{0}, watch_breaks{0}, failures{0}, compactions{0},
        events{0}, bad_values{0}, authentications{0};
    std::atomic<int64_t> revision{0};
  };

  EtcdSource() = default;

  std::unique_ptr<Loop> loop_;
  Counters counters_;
  std::atomic<bool> stopping_{false};
  std::mutex stop_mu_;  // serialises the join of concurrent Stop() calls
  std::thread thread_;
  std::thread::id thread_id_;  // set once by Start()
};

}  // namespace sluice

#endif  // SLUICE_CONTROL_SOURCES_ETCD_SOURCE_H_

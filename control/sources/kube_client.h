// A Kubernetes API client for sluice-control: where the API server is and
// how to authenticate (a kubeconfig file or the in-cluster service account),
// and ListWatch, the list-then-watch loop of one resource (client-go's
// reflector) over libcurl. Objects are handed over as JSON; reading them is
// kube_objects.h's and kube_source.h's business.
//
// ListWatch protocol, as the API server documents it
// (https://kubernetes.io/docs/reference/using-api/api-concepts/):
//   1. List: GET <path>?limit=N, then ?limit=N&continue=TOKEN while the
//      List's metadata.continue is set; the snapshot's resourceVersion is the
//      List's metadata.resourceVersion. A 410 on a continue token (expired)
//      restarts the list from the first page.
//   2. Watch: GET <path>?watch=1&resourceVersion=RV&allowWatchBookmarks=true
//      &timeoutSeconds=N, a chunked stream of newline-delimited JSON events
//      {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}}.
//      Lines may be split across chunks and a chunk may hold several.
//      Every event's object.metadata.resourceVersion becomes RV; a BOOKMARK
//      does only that. An ERROR whose Status has code 410 (Gone / Expired),
//      or an HTTP 410 answer, forces a relist and a new full snapshot.
//   3. A stream that ends cleanly (timeoutSeconds) is re-watched from RV at
//      once; a dropped stream, a failed request or another ERROR re-watches
//      from RV after a bounded exponential backoff with jitter
//      (BackoffDelay). A failed list is retried the same way.
//   A malformed event (not JSON, no or unknown type, no object, no
//   resourceVersion) is counted, reported through on_problem naming the
//   event and field, and skipped; the stream goes on.
//
// TLS: the server's certificate is always verified, against the given CA
// when there is one (only that CA) or the system's store; hostnames are
// checked. Nothing here turns verification off: a kubeconfig asking for
// insecure-skip-tls-verify is refused. Plain http:// servers are allowed
// (kubectl proxy, tests).
//
// Errors: LoadKubeconfig / InClusterApiConfig return InvalidArgument naming
// the file and field, NotFound / PermissionDenied (errno) for unreadable
// files, FailedPrecondition when the in-cluster environment is absent,
// Unimplemented for kubeconfig features not supported (exec and
// auth-provider plugins, basic auth, tls-server-name, proxy-url). ListWatch
// reports through on_problem: InvalidArgument for malformed events or List
// bodies, Unavailable for connection and TLS failures (curl's message, e.g.
// "SSL certificate problem: unable to get local issuer certificate"),
// dropped streams and HTTP 5xx or 429, Unauthenticated / PermissionDenied
// for HTTP 401 / 403, FailedPrecondition for other HTTP errors (each with
// the Status object's message), OutOfRange for a 410 that forces a relist
// (news, not a failure). It never gives up: it retries until Stop().
//
// Concurrency: ListWatch runs one thread of its own, started by Start(); the
// handlers are called on that thread only, one at a time, in stream order,
// and never after Stop() returns. Stop() may be called from any thread but
// a handler (it joins the thread); it returns promptly (curl_multi_wakeup
// interrupts a waiting transfer; a backoff wait is a condition variable).
// stats() and resource_version() may be called from any thread. Control
// side only; no DPDK.
#ifndef SLUICE_CONTROL_SOURCES_KUBE_CLIENT_H_
#define SLUICE_CONTROL_SOURCES_KUBE_CLIENT_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {

// Where the API server is and how to authenticate to it. PEM data are kept
// in memory (from *-data fields) or named by path (re-read by libcurl on
// every connection); token_file is re-read on every request, so rotated
// service account tokens keep working.
struct KubeApiConfig {
  std::string server;  // "https://10.96.0.1:443"; no trailing '/'
  std::string ca_file;
  std::string ca_pem;
  std::string token;
  std::string token_file;
  std::string client_cert_file;
  std::string client_cert_pem;
  std::string client_key_file;
  std::string client_key_pem;
};

// Reads a kubeconfig (YAML or JSON): the named context, or current-context
// when `context` is empty; its cluster's server and certificate-authority
// (-data); its user's token / tokenFile or client-certificate(-data) and
// client-key(-data). Relative paths are relative to the file's folder, as
// kubectl reads them.
absl::StatusOr<KubeApiConfig> LoadKubeconfig(const std::string& path,
                                             const std::string& context = "");

// The in-cluster service account: https://<host>:<port> (IPv6 in
// brackets), <secrets_dir>/token (re-read per request) and
// <secrets_dir>/ca.crt. FailedPrecondition when host or port is empty;
// NotFound when the token or CA file is absent.
inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
absl::StatusOr<KubeApiConfig> InClusterApiConfig(const std::string& host, const std::string& port,
                                                 const std::string& secrets_dir);
// The same from KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT and
// kServiceAccountDir.
absl::StatusOr<KubeApiConfig> InClusterApiConfigFromEnvironment();

struct BackoffOptions {
  double initial_seconds = 0.8;  // client-go's reflector: 800 ms .. 30 s
  double max_seconds = 30;
  double jitter = 0.5;  // a delay d becomes d * (1 - jitter * u), u in [0, 1)
};
// The wait before retry number `failures` (1 = the first retry):
// min(max, initial * 2^(failures-1)) * (1 - jitter * u); 0 when failures is 0.
double BackoffDelay(int failures, const BackoffOptions& options, double u);

struct ListWatchOptions {
  std::string label_selector;       // empty: none
  int page_size = 500;              // limit=
  int watch_timeout_seconds = 300;  // timeoutSeconds=; the server then ends the stream
  double connect_timeout_seconds = 10;
  double list_timeout_seconds = 60;  // per page
  BackoffOptions backoff;
  size_t max_list_page_bytes = 64u << 20;
  size_t max_event_bytes = 16u << 20;  // one watch line
};

enum class WatchEventType { kAdded, kModified, kDeleted };
const char* WatchEventTypeName(WatchEventType type);

// Counters of one ListWatch, monotonic.
struct ListWatchStats {
  uint64_t lists = 0;  // completed (re)lists, i.e. snapshots delivered
  uint64_t list_pages = 0;
  uint64_t relists_gone = 0;  // 410 on a watch or an expired continue token
  uint64_t watches = 0;       // watch requests made
  uint64_t events = 0;        // ADDED/MODIFIED/DELETED delivered
  uint64_t bookmarks = 0;
  uint64_t malformed = 0;       // events or list items skipped as malformed
  uint64_t stream_drops = 0;    // watch streams that ended in an error
  uint64_t request_errors = 0;  // failed requests (connection, TLS, HTTP status)
};

class ListWatch {
 public:
  struct Handlers {
    // After every (re)list: every object of the resource (a List's items,
    // which carry no kind) and the List's resourceVersion. Replaces all that
    // was delivered before.
    std::function<void(std::vector<nlohmann::json> items, const std::string& resource_version)>
        on_snapshot;
    // Afterwards, each ADDED / MODIFIED / DELETED event in stream order.
    std::function<void(WatchEventType type, nlohmann::json object,
                       const std::string& resource_version)>
        on_event;
    // Malformed events, failed requests, dropped streams, relists. May be
    // empty.
    std::function<void(const absl::Status& problem)> on_problem;
  };

  // `path` is the collection's: "/api/v1/services",
  // "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/nodes". `name`
  // prefixes problem messages ("services").
  ListWatch(KubeApiConfig api, std::string path, std::string name, ListWatchOptions options,
            Handlers handlers);
  ~ListWatch();  // Stop()s
  ListWatch(const ListWatch&) = delete;
  ListWatch& operator=(const ListWatch&) = delete;

  // Starts the thread. FailedPrecondition when already started, Internal
  // when libcurl cannot be set up.
  absl::Status Start();
  // Ends the transfer under way and joins the thread; idempotent.
  void Stop();

  ListWatchStats stats() const;
  std::string resource_version() const;  // the last one seen; "" before the first list

 private:
  struct Transfer;
  enum class WatchEnd { kClean, kGone, kFailed, kStopped };

  void Run();
  // Pages through the list; false when stopped or failed (reported).
  bool List(std::vector<nlohmann::json>* items, std::string* resource_version, bool* gone);
  WatchEnd Watch(bool* delivered);
  // Performs one GET; `on_body` gets the body bytes as they arrive.
  absl::Status Perform(const std::string& url, bool stream,
                       const std::function<bool(const char*, size_t)>& on_body, long* http_status);
  void HandleWatchLine(const std::string& line, bool* gone, bool* failed, bool* delivered);
  void Report(absl::Status problem);
  bool Sleep(double seconds);  // false when stopped
  std::string Url(const std::map<std::string, std::string>& query) const;

  const KubeApiConfig api_;
  const std::string path_;
  const std::string name_;
  const ListWatchOptions options_;
  const Handlers handlers_;

  void* multi_ = nullptr;  // CURLM*, owned by the thread while it runs
  std::thread thread_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;  // guards the fields below and the wait for stop_
  std::condition_variable stopped_cv_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::string resource_version_ ABSL_GUARDED_BY(mu_);
  ListWatchStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice

#endif  // SLUICE_CONTROL_SOURCES_KUBE_CLIENT_H_

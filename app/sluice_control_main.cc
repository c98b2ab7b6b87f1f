// sluice-control: feeds a running sluice-node over its Unix socket from the
// cluster's sources, and serves kube-proxy's operator endpoints. No DPDK, no
// EAL, no hugepages: it runs unprivileged (as a user the dataplane's socket
// admits as a writer).
//
//   sluice-control [--socket PATH] --cluster FILE
//       [--metrics-bind IP:PORT] [--healthz-bind IP:PORT]
//       [--health-check-address IP] [--healthz-timeout SECONDS] [--verbose]
//
// --cluster FILE: the node, flannel's etcd keys and the Kubernetes objects
// of a cluster file (control/CLUSTER_FILE.md); re-read when it changes (a
// rejected file is reported and the last good state kept). SIGINT/SIGTERM
// stop. The dataplane keeps serving whatever it was last given.
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "control/agent.h"
#include "control/cluster_file.h"
#include "control/model_messages.h"
#include "control/operator_http.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

struct Options {
  std::string socket = "/run/sluice/sluice.sock";
  std::string cluster;
  sluice::OperatorHttp::Config http;
  uint32_t healthz_timeout = 60;
  bool verbose = false;
};

bool Parse(int argc, char** argv, Options* o, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--verbose") {
      o->verbose = true;
      continue;
    }
    if (i + 1 >= argc) {
      *error = a + " needs a value";
      return false;
    }
    const std::string v = argv[++i];
    if (a == "--socket")
      o->socket = v;
    else if (a == "--cluster")
      o->cluster = v;
    else if (a == "--metrics-bind")
      o->http.metrics_bind = v;
    else if (a == "--healthz-bind")
      o->http.health_bind = v;
    else if (a == "--health-check-address")
      o->http.health_check_address = v;
    else if (a == "--healthz-timeout" && absl::SimpleAtoi(v, &o->healthz_timeout))
      continue;
    else {
      *error = "bad option or value: " + a + " " + v;
      return false;
    }
  }
  if (o->cluster.empty()) {
    *error = "a source is required: --cluster FILE";
    return false;
  }
  return true;
}

// What identifies a version of the file.
struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = -1;
  timespec mtime{};
  bool operator==(const FileStamp& o) const {
    return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

FileStamp Stamp(const std::string& path) {
  struct stat st;
  FileStamp s;
  if (stat(path.c_str(), &st) != 0) return s;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime = st.st_mtim;
  return s;
}

// The file source: the cluster file's node, flannel and Kubernetes parts.
bool ApplyClusterFile(const std::string& path, sluice::Agent* agent) {
  absl::StatusOr<sluice::ClusterModel> m = sluice::LoadClusterFile(path);
  if (!m.ok()) {
    std::fprintf(stderr, "sluice-control: %s rejected, keeping the last good state: %s\n",
                 path.c_str(), std::string(m.status().message()).c_str());
    return false;
  }
  agent->SetNode(m->node);
  agent->SetFlannel(m->network, m->leases);
  const sluice::ModelMessages mm = sluice::MessagesFromModel(*m);
  std::map<std::string, sluice::api::ServicePort> ports;
  std::map<std::string, sluice::api::EndpointSetReplace> endpoints;
  for (const auto& p : mm.ports) ports[sluice::api::FormatServicePortKey(p.key)] = p;
  for (const auto& e : mm.endpoints) endpoints[sluice::api::FormatServicePortKey(e.key)] = e;
  agent->SetServices(std::move(ports), std::move(endpoints));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string error;
  if (!Parse(argc, argv, &o, &error)) {
    std::fprintf(stderr,
                 "sluice-control: %s\nusage: sluice-control [--socket PATH] --cluster FILE "
                 "[--metrics-bind IP:PORT] [--healthz-bind IP:PORT] [--health-check-address IP] "
                 "[--healthz-timeout S] [--verbose]\n",
                 error.c_str());
    return 2;
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  sluice::ProxyHealth health{std::chrono::seconds(o.healthz_timeout)};
  sluice::ProxyMetrics metrics;
  auto http = sluice::OperatorHttp::Start(o.http, &health, &metrics, nullptr);
  if (!http.ok()) {
    std::fprintf(stderr, "sluice-control: %s\n", std::string(http.status().message()).c_str());
    return 2;
  }
  sluice::Agent::Config ac;
  ac.socket_path = o.socket;
  ac.verbose = o.verbose;
  sluice::Agent agent(ac, &health, &metrics);
  FileStamp seen = Stamp(o.cluster);
  if (!ApplyClusterFile(o.cluster, &agent)) return 2;
  std::printf("sluice-control: feeding %s from %s\n", o.socket.c_str(), o.cluster.c_str());
  std::fflush(stdout);
  std::thread loop([&] { agent.Run(g_stop); });
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const FileStamp now = Stamp(o.cluster);
    if (now == seen) continue;
    seen = now;
    if (ApplyClusterFile(o.cluster, &agent)) {
      std::printf("sluice-control: %s changed, applying\n", o.cluster.c_str());
      std::fflush(stdout);
    }
  }
  loop.join();
  return 0;
}

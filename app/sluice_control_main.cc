// sluice-control: feeds a running sluice-node over its Unix socket from the
// cluster's sources, and serves kube-proxy's operator endpoints. No DPDK, no
// EAL, no hugepages: it runs unprivileged (as a user the dataplane's socket
// admits as a writer).
//
//   sluice-control [--socket PATH] --cluster FILE
//       [--etcd URL [--etcd-prefix PREFIX]
//        [--etcd-cafile F] [--etcd-certfile F --etcd-keyfile F]
//        [--etcd-username NAME [--etcd-password-file F]]]
//       [--kubeconfig PATH [--context NAME] | --in-cluster] [--kube-subnet-mgr]
//       [--metrics-bind IP:PORT] [--healthz-bind IP:PORT]
//       [--health-check-address IP] [--healthz-timeout SECONDS] [--verbose]
//
// --cluster FILE: the node, flannel's etcd keys and the Kubernetes objects
// of a cluster file (control/CLUSTER_FILE.md); re-read when it changes (a
// rejected file is reported and the last good state kept). The node section
// always comes from it; live sources replace the rest:
//   --etcd URL: flannel's network config and leases, watched in etcd
//     (control/sources/etcd_source.h); for an https:// URL, as flannel's
//     flags of the same names, --etcd-cafile (PEM CA that signed etcd's
//     certificate; default the system's store) and --etcd-certfile with
//     --etcd-keyfile (PEM client certificate and key, for an etcd with
//     --client-cert-auth); for an etcd with auth on, --etcd-username (as
//     flannel's -etcd-username) and --etcd-password-file (the password is
//     the file's first line, not a flag, so that it is not on the command
//     line or in ps; flannel's -etcd-password);
//   --kubeconfig / --in-cluster: Services and EndpointSlices from the
//     Kubernetes API, read as kube-proxy reads them
//     (control/sources/kube_source.h); with --kube-subnet-mgr also the
//     leases from Nodes' podCIDR and flannel annotations (flannel's kube
//     subnet manager; the network config stays the file's).
// SIGINT/SIGTERM stop. The dataplane keeps serving whatever it was last
// given, also while this process is gone.
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include <nlohmann/json.hpp>
#include <variant>

#include "api/socket.h"
#include "control/agent.h"
#include "control/kube_services.h"
#include "control/cluster_file.h"
#include "control/model_messages.h"
#include "control/sources/etcd_source.h"
#include "control/sources/kube_client.h"
#include "control/sources/kube_source.h"
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
  std::string etcd, etcd_prefix = "/coreos.com/network";
  std::string etcd_cafile, etcd_certfile, etcd_keyfile;
  std::string etcd_username, etcd_password_file;
  std::string kubeconfig, context;
  bool in_cluster = false, kube_subnet_mgr = false;
};

bool Parse(int argc, char** argv, Options* o, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--verbose" || a == "--in-cluster" || a == "--kube-subnet-mgr") {
      (a == "--verbose" ? o->verbose : a == "--in-cluster" ? o->in_cluster : o->kube_subnet_mgr) =
          true;
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
    else if (a == "--etcd")
      o->etcd = v;
    else if (a == "--etcd-prefix")
      o->etcd_prefix = v;
    else if (a == "--etcd-cafile")
      o->etcd_cafile = v;
    else if (a == "--etcd-certfile")
      o->etcd_certfile = v;
    else if (a == "--etcd-keyfile")
      o->etcd_keyfile = v;
    else if (a == "--etcd-username")
      o->etcd_username = v;
    else if (a == "--etcd-password-file")
      o->etcd_password_file = v;
    else if (a == "--kubeconfig")
      o->kubeconfig = v;
    else if (a == "--context")
      o->context = v;
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
    *error = "--cluster FILE is required (its node section)";
    return false;
  }
  if (o->in_cluster && !o->kubeconfig.empty()) {
    *error = "--kubeconfig and --in-cluster exclude each other";
    return false;
  }
  if (o->etcd.empty() &&
      (!o->etcd_cafile.empty() || !o->etcd_certfile.empty() || !o->etcd_keyfile.empty())) {
    *error = "--etcd-cafile, --etcd-certfile and --etcd-keyfile need --etcd URL";
    return false;
  }
  if (o->etcd.empty() && (!o->etcd_username.empty() || !o->etcd_password_file.empty())) {
    *error = "--etcd-username and --etcd-password-file need --etcd URL";
    return false;
  }
  if (!o->etcd_password_file.empty() && o->etcd_username.empty()) {
    *error = "--etcd-password-file needs --etcd-username";
    return false;
  }
  if (o->kube_subnet_mgr && !o->etcd.empty()) {
    *error = "--kube-subnet-mgr and --etcd both give the leases: choose one";
    return false;
  }
  if (o->kube_subnet_mgr && o->kubeconfig.empty() && !o->in_cluster) {
    *error = "--kube-subnet-mgr needs the Kubernetes API (--kubeconfig or --in-cluster)";
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

void SetServicesFromModel(const sluice::ClusterModel& m, sluice::Agent* agent) {
  const sluice::ModelMessages mm = sluice::MessagesFromModel(m);
  std::map<std::string, sluice::api::ServicePort> ports;
  std::map<std::string, sluice::api::EndpointSetReplace> endpoints;
  for (const auto& p : mm.ports) ports[sluice::api::FormatServicePortKey(p.key)] = p;
  for (const auto& e : mm.endpoints) endpoints[sluice::api::FormatServicePortKey(e.key)] = e;
  agent->SetServices(std::move(ports), std::move(endpoints));
}

// What each part of the desired state comes from.
struct Parts {
  bool flannel_from_file = true;
  bool leases_from_file = true;
  bool services_from_file = true;
};

// The file source: the cluster file's node, flannel and Kubernetes parts
// (those no live source replaces).
bool ApplyClusterFile(const std::string& path, const Parts& parts, sluice::Agent* agent,
                      sluice::ClusterModel* out) {
  absl::StatusOr<sluice::ClusterModel> m = sluice::LoadClusterFile(path);
  if (!m.ok()) {
    std::fprintf(stderr, "sluice-control: %s rejected, keeping the last good state: %s\n",
                 path.c_str(), std::string(m.status().message()).c_str());
    return false;
  }
  agent->SetNode(m->node);
  if (parts.flannel_from_file && parts.leases_from_file) agent->SetFlannel(m->network, m->leases);
  if (parts.services_from_file) SetServicesFromModel(*m, agent);
  *out = *std::move(m);
  return true;
}

// The dataplane's counters as Prometheus text, fetched over the socket when
// /metrics is scraped (a reader connection of its own; nothing when the
// dataplane does not answer within a second).
std::string DataplaneMetrics(const std::string& socket_path) {
  auto c = sluice::api::Client::Connect(socket_path, std::chrono::seconds(1));
  if (!c.ok()) return "";
  sluice::api::Hello h;
  h.client = "sluice-control metrics";
  if (!c->Call(h, std::chrono::seconds(1)).ok()) return "";
  sluice::api::Show show;
  show.what = "counters";
  auto r = c->Call(show, std::chrono::seconds(1));
  if (!r.ok()) return "";
  const auto* j = std::get_if<sluice::api::JsonReply>(&*r);
  if (j == nullptr) return "";
  const nlohmann::json doc = nlohmann::json::parse(j->json, nullptr, false);
  if (!doc.is_object() || !doc.contains("workers") || !doc["workers"].is_array()) return "";
  std::string out;
  std::map<std::string, std::string> lines;
  for (size_t w = 0; w < doc["workers"].size(); ++w) {
    const auto& worker = doc["workers"][w];
    if (!worker.is_object()) continue;
    for (const auto& [name, v] : worker.items()) {
      if (!v.is_number()) continue;
      lines[name] += "sluice_" + name + "_total{worker=\"" + std::to_string(w) + "\"} " +
                     std::to_string(v.get<uint64_t>()) + "\n";
    }
  }
  for (const auto& [name, text] : lines)
    out += "# TYPE sluice_" + name + "_total counter\n" + text;
  return out;
}

// The first line of `path` (without its line end): the etcd password, kept
// off the command line. The password itself never goes into *error.
bool ReadPasswordFile(const std::string& path, std::string* password, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "--etcd-password-file " + path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  std::getline(in, *password);
  if (!password->empty() && password->back() == '\r') password->pop_back();
  if (password->empty()) {
    *error = "--etcd-password-file " + path + ": the first line is empty";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string error;
  if (!Parse(argc, argv, &o, &error)) {
    std::fprintf(stderr,
                 "sluice-control: %s\nusage: sluice-control [--socket PATH] --cluster FILE "
                 "[--etcd URL [--etcd-prefix P] [--etcd-cafile F] "
                 "[--etcd-certfile F --etcd-keyfile F] [--etcd-username NAME "
                 "[--etcd-password-file F]]] [--kubeconfig PATH [--context NAME] | "
                 "--in-cluster] [--kube-subnet-mgr] [--metrics-bind IP:PORT] "
                 "[--healthz-bind IP:PORT] [--health-check-address IP] [--healthz-timeout S] "
                 "[--verbose]\n",
                 error.c_str());
    return 2;
  }
  std::string etcd_password;
  if (!o.etcd_password_file.empty() &&
      !ReadPasswordFile(o.etcd_password_file, &etcd_password, &error)) {
    std::fprintf(stderr, "sluice-control: %s\n", error.c_str());
    return 2;
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  sluice::ProxyHealth health{std::chrono::seconds(o.healthz_timeout)};
  sluice::ProxyMetrics metrics;
  const std::string socket_path = o.socket;
  auto http = sluice::OperatorHttp::Start(o.http, &health, &metrics,
                                          [socket_path] { return DataplaneMetrics(socket_path); });
  if (!http.ok()) {
    std::fprintf(stderr, "sluice-control: %s\n", std::string(http.status().message()).c_str());
    return 2;
  }
  sluice::Agent::Config ac;
  ac.socket_path = o.socket;
  ac.verbose = o.verbose;
  // kube-proxy's healthCheckNodePort servers: one per externalTrafficPolicy
  // Local Service that has one, answering its count of ready endpoints on
  // this node, from what the dataplane acknowledged.
  sluice::OperatorHttp* operator_http = http->get();
  sluice::ProxyMetrics* proxy_metrics = &metrics;
  // Kept per Service port key and updated for the keys a batch changed, so
  // that a watch event does not walk every Service.
  struct PortHealth {
    sluice::NamespacedName name;
    uint16_t health_check_port = 0;  // externalTrafficPolicy Local with one
    int local_ready = 0;             // ready endpoints on this node
    bool no_local_external = false, no_local_internal = false;
  };
  auto port_health = std::make_shared<std::map<std::string, PortHealth>>();
  auto health_node = std::make_shared<std::string>();
  ac.on_applied = [operator_http, proxy_metrics, port_health, health_node](
                      const sluice::DesiredState& d, const std::set<std::string>* keys) {
    const std::string node = d.node ? d.node->node.name : "";
    // A new node name changes every count: all again.
    if (node != *health_node) keys = nullptr;
    *health_node = node;
    auto compute = [&](const std::string& id) {
      auto p = d.ports.find(id);
      if (p == d.ports.end()) {
        port_health->erase(id);
        return;
      }
      PortHealth h;
      h.name = {p->second.key.namespace_name, p->second.key.service_name};
      auto e = d.endpoints.find(id);
      if (e != d.endpoints.end())
        for (const auto& ep : e->second.endpoints) h.local_ready += ep.ready && ep.node_name == node;
      const bool ext_local = p->second.external_traffic_policy == sluice::TrafficPolicy::kLocal;
      if (ext_local) h.health_check_port = p->second.health_check_node_port;
      h.no_local_external = h.local_ready == 0 && ext_local;
      h.no_local_internal =
          h.local_ready == 0 && p->second.internal_traffic_policy == sluice::TrafficPolicy::kLocal;
      (*port_health)[id] = h;
    };
    if (keys == nullptr) {
      port_health->clear();
      for (const auto& [id, p] : d.ports) compute(id);
    } else {
      for (const std::string& id : *keys) compute(id);
    }
    std::map<sluice::NamespacedName, uint16_t> ports;
    std::map<sluice::NamespacedName, int> local;
    int no_local_internal = 0, no_local_external = 0;
    for (const auto& [id, h] : *port_health) {
      if (h.health_check_port != 0) {
        ports[h.name] = h.health_check_port;
        local[h.name] = std::max(local[h.name], h.local_ready);
      }
      no_local_external += h.no_local_external;
      no_local_internal += h.no_local_internal;
    }
    if (absl::Status s = operator_http->SyncHealthCheckPorts(ports); !s.ok())
      std::fprintf(stderr, "sluice-control: %s\n", std::string(s.message()).c_str());
    operator_http->SyncLocalEndpoints(local);
    proxy_metrics->SetNoLocalEndpoints(no_local_internal, no_local_external);
  };
  sluice::Agent agent(ac, &health, &metrics);
  const bool kube = o.in_cluster || !o.kubeconfig.empty();
  Parts parts;
  parts.flannel_from_file = o.etcd.empty();
  parts.leases_from_file = o.etcd.empty() && !o.kube_subnet_mgr;
  parts.services_from_file = !kube;
  FileStamp seen = Stamp(o.cluster);
  sluice::ClusterModel file;
  if (!ApplyClusterFile(o.cluster, parts, &agent, &file)) return 2;

  // flannel's etcd.
  std::unique_ptr<sluice::EtcdSource> etcd;
  if (!o.etcd.empty()) {
    sluice::EtcdSourceOptions eo;
    eo.endpoint = o.etcd;
    eo.prefix = o.etcd_prefix;
    eo.ca_file = o.etcd_cafile;
    eo.cert_file = o.etcd_certfile;
    eo.key_file = o.etcd_keyfile;
    eo.username = o.etcd_username;
    eo.password = etcd_password;
    auto src = sluice::EtcdSource::Start(
        eo,
        [&agent](const sluice::FlannelEvent& e) {
          using K = sluice::FlannelEvent::Kind;
          if (e.kind == K::kSnapshot || e.kind == K::kConfig) {
            if (e.snapshot.network) agent.SetFlannel(*e.snapshot.network, e.snapshot.leases);
          } else if (e.kind == K::kLeaseUpsert) {
            agent.UpsertLease(e.lease);
          } else if (e.kind == K::kLeaseDelete) {
            agent.DeleteLease(e.lease.subnet);
          }
        },
        [](const absl::Status& s) {
          std::fprintf(stderr, "sluice-control: etcd: %s\n", std::string(s.message()).c_str());
        });
    if (!src.ok()) {
      std::fprintf(stderr, "sluice-control: etcd: %s\n", std::string(src.status().message()).c_str());
      return 2;
    }
    etcd = *std::move(src);
  }

  // The Kubernetes API: Services and EndpointSlices (and Nodes' leases).
  std::mutex kube_mu;
  sluice::KubeServices kube_services;
  std::map<std::pair<uint32_t, uint8_t>, sluice::FlannelLease> node_leases;
  std::unique_ptr<sluice::KubeSource> kube_source;
  if (kube) {
    auto api = o.in_cluster ? sluice::InClusterApiConfigFromEnvironment()
                            : sluice::LoadKubeconfig(o.kubeconfig, o.context);
    if (!api.ok()) {
      std::fprintf(stderr, "sluice-control: Kubernetes API: %s\n",
                   std::string(api.status().message()).c_str());
      return 2;
    }
    sluice::KubeSourceOptions ko;
    ko.nodes = o.kube_subnet_mgr;
    const sluice::ClusterModel base = file;
    kube_source = std::make_unique<sluice::KubeSource>(
        *api, ko,
        [&, base](sluice::KubeUpdate u) {
          std::lock_guard<std::mutex> l(kube_mu);
          using R = sluice::KubeResourceKind;
          using U = sluice::KubeUpdateKind;
          if (u.resource == R::kNodes) {
            if (u.kind == U::kSnapshot) node_leases.clear();
            if (u.kind == U::kDelete)
              node_leases.erase({u.deleted_lease.address, u.deleted_lease.length});
            for (const auto& lease : u.leases)
              node_leases[{lease.subnet.address, lease.subnet.length}] = lease;
            std::vector<sluice::FlannelLease> all;
            for (const auto& [k, lease] : node_leases) all.push_back(lease);
            agent.SetFlannel(base.network, all);
            return;
          }
          // Only the Services an event touches are gathered again
          // (control/kube_services.h); nothing goes out until both kinds
          // have been listed (Services would look like Services going to 0
          // endpoints).
          sluice::KubeServices::Changes c;
          if (u.resource == R::kServices) {
            if (u.kind == U::kSnapshot) c = kube_services.SnapshotServices(std::move(u.services));
            if (u.kind == U::kDelete) c = kube_services.DeleteService(u.deleted_name);
            if (u.kind == U::kUpsert)
              for (auto& sv : u.services) c = kube_services.UpsertService(std::move(sv));
          } else {
            if (u.kind == U::kSnapshot) c = kube_services.SnapshotSlices(std::move(u.endpoint_slices));
            if (u.kind == U::kDelete) c = kube_services.DeleteSlice(u.deleted_name);
            if (u.kind == U::kUpsert)
              for (auto& es : u.endpoint_slices) c = kube_services.UpsertSlice(std::move(es));
          }
          if (!kube_services.complete()) return;
          agent.UpdateServices(std::move(c.ports), std::move(c.endpoints));
        },
        [](const absl::Status& s) {
          std::fprintf(stderr, "sluice-control: Kubernetes API: %s\n",
                       std::string(s.message()).c_str());
        });
    if (absl::Status s = kube_source->Start(); !s.ok()) {
      std::fprintf(stderr, "sluice-control: Kubernetes API: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  std::printf("sluice-control: feeding %s: node from %s, flannel from %s, Services from %s\n",
              o.socket.c_str(), o.cluster.c_str(),
              !o.etcd.empty() ? o.etcd.c_str() : o.kube_subnet_mgr ? "Nodes" : o.cluster.c_str(),
              kube ? "the Kubernetes API" : o.cluster.c_str());
  std::fflush(stdout);
  std::thread loop([&] { agent.Run(g_stop); });
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const FileStamp now = Stamp(o.cluster);
    if (now == seen) continue;
    seen = now;
    sluice::ClusterModel next;
    if (ApplyClusterFile(o.cluster, parts, &agent, &next)) {
      std::printf("sluice-control: %s changed, applying\n", o.cluster.c_str());
      std::fflush(stdout);
    }
  }
  if (kube_source) kube_source->Stop();
  if (etcd) etcd->Stop();
  loop.join();
  return 0;
}

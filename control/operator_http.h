// kube-proxy's operational surface, served by sluice-control so that what
// watches kube-proxy on a node watches Sluice the same way:
//  - Prometheus metrics on :10249 /metrics, under kube-proxy's names where
//    they apply (kubeproxy_sync_proxy_rules_duration_seconds,
//    kubeproxy_network_programming_duration_seconds,
//    kubeproxy_sync_proxy_rules_last_timestamp_seconds,
//    kubeproxy_sync_proxy_rules_no_local_endpoints_total, ...), followed by
//    whatever the caller adds (the dataplane's sluice_* counters);
//  - /healthz and /livez on :10256 with kube-proxy's JSON and rules
//    (ProxyHealth below);
//  - for every externalTrafficPolicy Local Service with a
//    healthCheckNodePort, an HTTP server on that port answering
//    {"service":{"namespace":..,"name":..},"localEndpoints":N,
//    "serviceProxyHealthy":B}, 200 when N > 0 and healthy, else 503 (what
//    cloud load balancers probe to find the nodes with local endpoints).
//
// Errors: Start and SyncHealthCheckPorts return InvalidArgument for a
// malformed bind address and Unavailable when a port cannot be bound (the
// other health-check ports still serve; the message lists the failures).
//
// Concurrency: every class here is thread-safe (an internal mutex): the
// HTTP servers answer from libmicrohttpd's own threads while the control
// loop updates the state. Control side only; no DPDK.
#ifndef SLUICE_CONTROL_OPERATOR_HTTP_H_
#define SLUICE_CONTROL_OPERATOR_HTTP_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {

using WallClock = std::chrono::system_clock;

// kube-proxy's ProxyHealthServer rules: healthy unless an update was queued
// (a source event) and not applied (acknowledged by the dataplane) within
// `timeout`; /healthz also requires the node to be eligible (not being
// deleted). "lastUpdated" is reported as now while healthy, as kube-proxy
// does for compatibility.
class ProxyHealth {
 public:
  explicit ProxyHealth(std::chrono::nanoseconds timeout) : timeout_(timeout) {}
  void QueuedUpdate(WallClock::time_point now);
  void Updated(WallClock::time_point now);
  void SetNodeEligible(bool eligible);

  struct Verdict {
    bool healthy = true;  // the proxier alone (livez, health-check ports)
    bool node_eligible = true;
    WallClock::time_point last_updated{};
  };
  Verdict Check(WallClock::time_point now) const;

  // The bodies kube-proxy writes: {"lastUpdated": "...","currentTime": "...",
  // "nodeEligible": true} and {"lastUpdated": "...","currentTime": "..."};
  // times as Go prints a time.Time ("2026-12-01 12:00:00.123456789 +0000 UTC").
  std::pair<int, std::string> Healthz(WallClock::time_point now) const;
  std::pair<int, std::string> Livez(WallClock::time_point now) const;

 private:
  const std::chrono::nanoseconds timeout_;
  mutable std::mutex mu_;
  bool updated_once_ = false;
  WallClock::time_point last_updated_{};
  bool pending_ = false;
  WallClock::time_point oldest_pending_{};
  bool node_eligible_ = true;
};

// A Prometheus histogram with fixed upper bounds.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size()) {}
  void Observe(double v);
  // "# HELP", "# TYPE" and the _bucket/_sum/_count lines.
  std::string Render(const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

// kube-proxy's metrics that apply to a proxy programmed over a socket.
// "Sync" is one batch of changes sent to the dataplane and acknowledged;
// "network programming" is from the source event's timestamp (an object's
// change as the source reports it) to its acknowledgement.
class ProxyMetrics {
 public:
  ProxyMetrics();
  void ObserveSync(double seconds, WallClock::time_point at);
  void ObserveNetworkProgramming(double seconds);
  void CountSyncFailure();  // a batch the dataplane rejected or never answered
  // Changes the sources reported (kubeproxy_sync_proxy_rules_*_changes_total)
  // and when the last one was queued.
  void CountChanges(uint64_t services, uint64_t endpoints, WallClock::time_point at);
  // Services with traffic policy Local and no local endpoints, by policy.
  void SetNoLocalEndpoints(int internal, int external);
  std::string Render() const;

 private:
  mutable std::mutex mu_;
  Histogram sync_;
  Histogram programming_;
  double last_sync_unix_ = 0;
  uint64_t sync_failures_ = 0;
  uint64_t service_changes_ = 0, endpoint_changes_ = 0;
  double last_queued_unix_ = 0;
  int no_local_internal_ = 0, no_local_external_ = 0;
};

struct NamespacedName {
  std::string namespace_name, name;
  bool operator<(const NamespacedName& o) const {
    return std::tie(namespace_name, name) < std::tie(o.namespace_name, o.name);
  }
  bool operator==(const NamespacedName& o) const {
    return namespace_name == o.namespace_name && name == o.name;
  }
};

class OperatorHttp {
 public:
  struct Config {
    std::string metrics_bind = "0.0.0.0:10249";  // "" = no metrics server
    std::string health_bind = "0.0.0.0:10256";   // "" = no health server
    std::string health_check_address = "0.0.0.0";  // where healthCheckNodePorts listen
  };
  // `health` and `metrics` must outlive the servers. `extra_metrics` (may be
  // empty) is appended to /metrics: the dataplane's counters, fetched when
  // scraped; it runs on a server thread.
  static absl::StatusOr<std::unique_ptr<OperatorHttp>> Start(
      const Config& config, ProxyHealth* health, ProxyMetrics* metrics,
      std::function<std::string()> extra_metrics);
  ~OperatorHttp();
  OperatorHttp(const OperatorHttp&) = delete;
  OperatorHttp& operator=(const OperatorHttp&) = delete;

  // The Services that need a health-check server and their ports (kube-proxy's
  // SyncServices): servers for Services gone or moved are closed, new ones
  // opened. Unavailable lists the ports that could not be bound.
  absl::Status SyncHealthCheckPorts(const std::map<NamespacedName, uint16_t>& ports);
  // Local endpoint counts (kube-proxy's SyncEndpoints); a Service absent
  // from the map has 0.
  void SyncLocalEndpoints(const std::map<NamespacedName, int>& counts);

  // The ports actually bound (for tests that ask for port 0).
  uint16_t metrics_port() const { return metrics_port_; }
  uint16_t health_port() const { return health_port_; }

  struct Daemon;  // one libmicrohttpd server

 private:
  OperatorHttp() = default;
  std::pair<int, std::string> ServiceHealth(const NamespacedName& n) const;

  Config config_;
  ProxyHealth* health_ = nullptr;
  ProxyMetrics* metrics_ = nullptr;
  std::function<std::string()> extra_metrics_;
  std::unique_ptr<Daemon> metrics_daemon_, health_daemon_;
  uint16_t metrics_port_ = 0, health_port_ = 0;

  mutable std::mutex mu_;
  struct HealthCheck {
    uint16_t port = 0;
    int local_endpoints = 0;
    std::unique_ptr<Daemon> daemon;
  };
  std::map<NamespacedName, HealthCheck> checks_;
};

}  // namespace sluice

#endif  // SLUICE_CONTROL_OPERATOR_HTTP_H_

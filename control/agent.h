// Agent: the heart of sluice-control. Sources (a cluster file, flannel's
// etcd, the Kubernetes API) hand it their part of the desired state; its
// loop keeps one writer connection to the dataplane's socket and brings the
// dataplane there: a full sync tagged with a new epoch after every connect
// (so a restarted dataplane, or a restarted sluice-control, converges and
// the dataplane prunes what the epoch did not mention), then the deltas of
// every change, pipelined.
//
// Nothing is sent before every source has spoken once (the node, flannel's
// network and leases, the Services): a full sync of a partial state would
// prune from the dataplane what a slow source has not delivered yet (all
// the leases, when etcd is unreachable as sluice-control restarts).
//
// What the dataplane rejects is logged and counted and not retried until
// its source changes it; the dataplane keeps serving its last good version.
// When the dataplane is unreachable the loop retries with bounded
// exponential backoff; the state keeps accumulating and is sent whole on
// the next connect.
//
// kube-proxy's health rules follow the loop: a source change is a queued
// update, an acknowledged batch an applied one (ProxyHealth); sync and
// network programming latencies go to ProxyMetrics.
//
// Concurrency: the Set*/Upsert*/Delete* calls are thread-safe (sources call
// them from their own threads); Run() runs on one thread until `stop`.
// Control side only: no DPDK.
#ifndef SLUICE_CONTROL_AGENT_H_
#define SLUICE_CONTROL_AGENT_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/cluster_model.h"
#include "api/messages.h"
#include "api/socket.h"
#include "control/desired_state.h"
#include "control/operator_http.h"

namespace sluice {

class Agent {
 public:
  struct Config {
    std::string socket_path = "/run/sluice/sluice.sock";
    std::string client_name = "sluice-control";
    std::chrono::milliseconds call_timeout{5000};
    std::chrono::milliseconds retry_min{100};
    std::chrono::milliseconds retry_max{5000};
    size_t window = 128;  // requests in flight on the socket
    bool verbose = false;  // log every batch
    // Called on the loop's thread after each acknowledged batch with the
    // state the dataplane now holds (health-check ports follow it) and the
    // Service port keys the batch may have changed (null: any, after a full
    // sync).
    std::function<void(const DesiredState&, const std::set<std::string>*)> on_applied;
  };
  Agent(Config config, ProxyHealth* health, ProxyMetrics* metrics);

  // This node's addressing and static neighbours (node section of a
  // cluster file, or node.json).
  void SetNode(const NodeSpec& node);
  // flannel's network config and all its leases (a source's snapshot).
  void SetFlannel(const FlannelNetworkConfig& network, const std::vector<FlannelLease>& leases);
  void UpsertLease(const FlannelLease& lease);
  void DeleteLease(const Ipv4Prefix& subnet);
  // Every Service port and endpoint set (a source's snapshot), keyed by
  // api::FormatServicePortKey.
  void SetServices(std::map<std::string, api::ServicePort> ports,
                   std::map<std::string, api::EndpointSetReplace> endpoints);
  // Some Service ports and endpoint sets (a watch event's), by the same
  // keys: a value replaces the entry, nullopt removes it; the others stay.
  // What the next delta sends and compares is only what changed here, so
  // an event costs what it touches, not the number of Services.
  void UpdateServices(std::map<std::string, std::optional<api::ServicePort>> ports,
                      std::map<std::string, std::optional<api::EndpointSetReplace>> endpoints);

  // The loop; returns soon after `stop` becomes true.
  void Run(const std::atomic<bool>& stop);

  struct Status {
    bool connected = false;
    uint64_t instance = 0;  // the dataplane's
    uint64_t epoch = 0;     // of the last completed full sync
    uint64_t full_syncs = 0;
    uint64_t applied = 0;   // messages acknowledged Ok
    uint64_t rejected = 0;  // messages answered Error
    std::string last_error;
  };
  Status status() const;
  // Every source has delivered its first state.
  bool Ready() const;

 private:
  void Changed(WallClock::time_point at);  // mu_ held
  // Node, leases and neighbours, and the Services: all of them, or with
  // `keys` only those (as DeltaMessages takes them). mu_ held.
  DesiredState DesiredFor(const std::set<std::string>* keys) const;
  // Sends `batch` pipelined; false when the connection broke (status says
  // why). Rejections are counted and logged.
  bool SendBatch(api::Client& client, const std::vector<api::Message>& batch);

  const Config config_;
  ProxyHealth* const health_;
  ProxyMetrics* const metrics_;

  mutable std::mutex mu_;
  std::condition_variable changed_cv_;
  uint64_t change_seq_ = 0;
  // Oldest source change not yet acknowledged (network programming latency).
  std::optional<WallClock::time_point> oldest_change_;
  std::optional<NodeSpec> node_;
  std::optional<FlannelNetworkConfig> network_;
  bool services_known_ = false;  // SetServices called once
  std::map<std::pair<uint32_t, uint8_t>, FlannelLease> leases_;
  std::map<std::string, api::ServicePort> ports_;
  std::map<std::string, api::EndpointSetReplace> endpoints_;
  // Service port keys changed since the loop last took them.
  std::set<std::string> dirty_services_;
  Status status_;
};

}  // namespace sluice

#endif  // SLUICE_CONTROL_AGENT_H_

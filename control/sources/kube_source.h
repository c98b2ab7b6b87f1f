// The Kubernetes API as a live source for sluice-control: Services and
// EndpointSlices as kube-proxy reads them, and Nodes as flannel's kube
// subnet manager turns them into leases (kube_objects.h has the reading
// rules), each listed then watched by a ListWatch (kube_client.h). Also the
// reader of flannel's /run/flannel/subnet.env, for the local node.
//
// What the consumer gets, per resource (Services, EndpointSlices, Nodes):
// after every (re)list a kSnapshot holding every object of that resource
// that reads well (it replaces all earlier state of the resource), then one
// kUpsert or kDelete per change. Deletes name only objects delivered
// before. An object kube-proxy or flannel leaves alone (another proxy's
// Service, a slice without the service-name label, a Node flannel has not
// registered) is skipped, and when it was delivered before, deleted. A
// malformed object is counted and reported (InvalidArgument naming the
// object and field) and skipped: in a snapshot it is left out, in an event
// the object keeps its last good state. A Node's lease is keyed by its
// subnet: a Node whose podCIDR changes gives a delete of the old subnet and
// an upsert of the new one; a Node claiming a subnet another Node's lease
// holds is reported and skipped; Node updates that leave the lease as it was
// (status heartbeats) give nothing.
//
// Errors: Start() returns FailedPrecondition when already started or no
// resource is selected, Internal when libcurl cannot be set up. Afterwards
// problems are reported through the ProblemSink (see kube_client.h for the
// codes); the source keeps retrying until Stop().
//
// Concurrency: each resource has its own ListWatch thread. The UpdateSink
// and ProblemSink are called on those threads, never two at once (one mutex
// serialises them), never after Stop() returns; they must not call Stop().
// Updates of one resource arrive in order; the three resources are not
// ordered with respect to each other. stats() is safe from any thread.
// ParseFlannelSubnetEnv / LoadFlannelSubnetEnv are pure. Control side only;
// no DPDK.
#ifndef SLUICE_CONTROL_SOURCES_KUBE_SOURCE_H_
#define SLUICE_CONTROL_SOURCES_KUBE_SOURCE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/cluster_model.h"
#include "control/kube_objects.h"
#include "control/sources/kube_client.h"

namespace sluice {

enum class KubeResourceKind { kServices, kEndpointSlices, kNodes };
const char* KubeResourceName(KubeResourceKind kind);  // "services", ...

enum class KubeUpdateKind { kSnapshot, kUpsert, kDelete };

struct KubeUpdate {
  KubeResourceKind resource = KubeResourceKind::kServices;
  KubeUpdateKind kind = KubeUpdateKind::kSnapshot;
  std::string resource_version;  // the list's or the event's
  // kSnapshot: every object of `resource`; kUpsert: exactly one, in the
  // vector of its resource. The other vectors are empty.
  std::vector<ServiceSpec> services;
  std::vector<EndpointSliceSpec> endpoint_slices;
  std::vector<FlannelLease> leases;  // from Nodes
  // kDelete: "namespace/name" of the Service or EndpointSlice, or the Node's
  // name with the lease's subnet in deleted_lease.
  std::string deleted_name;
  Ipv4Prefix deleted_lease;
};

struct KubeSourceOptions {
  bool services = true;
  bool endpoint_slices = true;
  bool nodes = true;
  // Services and EndpointSlices are listed and watched with kube-proxy's
  // selector (the readers also check the labels themselves).
  std::string label_selector = kKubeProxyLabelSelector;
  NodeLeaseReading node_reading;
  ListWatchOptions list_watch;  // its label_selector is set per resource
};

struct KubeSourceStats {
  ListWatchStats services, endpoint_slices, nodes;
  uint64_t malformed_objects = 0;  // objects that did not read (reported, skipped)
  uint64_t skipped_objects = 0;    // objects left to others (not errors)
  uint64_t updates = 0;            // KubeUpdates delivered
};

class KubeSource {
 public:
  using UpdateSink = std::function<void(KubeUpdate update)>;
  using ProblemSink = std::function<void(const absl::Status& problem)>;

  KubeSource(KubeApiConfig api, KubeSourceOptions options, UpdateSink on_update,
             ProblemSink on_problem);
  ~KubeSource();  // Stop()s
  KubeSource(const KubeSource&) = delete;
  KubeSource& operator=(const KubeSource&) = delete;

  absl::Status Start();
  void Stop();  // prompt; idempotent
  KubeSourceStats stats() const;

 private:
  // What was delivered, per resource; touched only by its ListWatch thread.
  struct Delivered {
    std::set<std::string> names;                                       // Services, EndpointSlices
    std::map<std::string, FlannelLease> leases;                        // Nodes: node name -> lease
    std::map<std::pair<uint32_t, uint8_t>, std::string> subnet_owner;  // -> node name
  };

  void Snapshot(KubeResourceKind kind, std::vector<nlohmann::json> items, const std::string& rv);
  void Event(KubeResourceKind kind, WatchEventType type, const nlohmann::json& object,
             const std::string& rv);
  void NodeEvent(WatchEventType type, const nlohmann::json& object, const std::string& rv);
  void Deliver(KubeUpdate update);
  void Problem(const absl::Status& problem);
  void Malformed(const absl::Status& problem);

  const KubeApiConfig api_;
  const KubeSourceOptions options_;
  const UpdateSink on_update_;
  const ProblemSink on_problem_;

  std::mutex sink_mu_;  // serialises the sinks
  Delivered delivered_[3];
  std::atomic<uint64_t> malformed_{0};
  std::atomic<uint64_t> skipped_{0};
  std::atomic<uint64_t> updates_{0};
  std::unique_ptr<ListWatch> watches_[3];
};

// /run/flannel/subnet.env, as flanneld writes it for the CNI plugin:
//   FLANNEL_NETWORK=10.244.0.0/16
//   FLANNEL_SUBNET=10.244.1.1/24
//   FLANNEL_MTU=1450
//   FLANNEL_IPMASQ=true
struct FlannelSubnetEnv {
  // network = FLANNEL_NETWORK, subnet_len = FLANNEL_SUBNET's length; the
  // backend fields keep flannel's defaults (the file does not carry them).
  FlannelNetworkConfig network;
  Ipv4Prefix subnet;            // FLANNEL_SUBNET without host bits: this node's lease
  uint32_t subnet_gateway = 0;  // FLANNEL_SUBNET's address as written (cni0's, .1)
  uint16_t mtu = 0;             // FLANNEL_MTU: flannel.1's
  bool ip_masq = false;         // FLANNEL_IPMASQ (flanneld --ip-masq)
};

// All four keys are required (flanneld writes them all); blank lines and
// '#' comments are allowed, other keys (FLANNEL_IPV6_*) ignored. Returns
// InvalidArgument naming the line or key: "subnet.env line 3: expected
// KEY=VALUE", "subnet.env: FLANNEL_MTU: missing", "subnet.env:
// FLANNEL_SUBNET: 10.245.1.1/24 is outside FLANNEL_NETWORK 10.244.0.0/16".
absl::StatusOr<FlannelSubnetEnv> ParseFlannelSubnetEnv(std::string_view text);
inline constexpr const char* kFlannelSubnetEnvPath = "/run/flannel/subnet.env";
// Reads and parses the file; errno's status when unreadable, the path in
// front of parse errors.
absl::StatusOr<FlannelSubnetEnv> LoadFlannelSubnetEnv(
    const std::string& path = kFlannelSubnetEnvPath);

}  // namespace sluice

#endif  // SLUICE_CONTROL_SOURCES_KUBE_SOURCE_H_

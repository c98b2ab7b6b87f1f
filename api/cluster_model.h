// The node's view of the cluster as plain data: parsed from a cluster file
// (control/cluster_file.h) or gathered from etcd and the Kubernetes API, and
// the payload types of the dataplane's socket protocol (messages.h). Tables
// for the workers are built from it by control/table_builder.h.
//
// All IPv4 addresses are host byte order. Nothing here is touched by workers.
// Field widths here are the file's; the tables' are narrower in places
// (16-bit endpoint counts per Service port, 24-bit VNIs and LPM next hops),
// and the table builder rejects what does not fit rather than truncate.
#ifndef SLUICE_API_CLUSTER_MODEL_H_
#define SLUICE_API_CLUSTER_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/common/types.h"  // MacAddress, PortRole

namespace sluice {

struct Ipv4Prefix {
  uint32_t address = 0;  // network address, host byte order
  uint8_t length = 0;
  bool Contains(uint32_t ip) const {
    return (ip & PrefixMask(length)) == (address & PrefixMask(length));
  }
};

struct NeighborEntry {
  PortRole port = PortRole::kUplink;
  uint32_t ip = 0;
  MacAddress mac{};
};

struct NodeSpec {
  std::string name;
  uint32_t node_ip = 0;               // the uplink's address (flannel PublicIP)
  uint8_t uplink_prefix_length = 24;  // on-link underlay subnet of node_ip
  uint32_t gateway_ip = 0;            // default route on the uplink; 0 = none
  uint16_t uplink_mtu = 1500;
  MacAddress uplink_mac{};
  MacAddress pods_mac{};
  bool has_host_port = false;
  MacAddress host_mac{};                 // our MAC on the host port
  MacAddress host_peer_mac{};            // the kernel's MAC behind the host port
  std::vector<NeighborEntry> neighbors;  // static ARP entries
};

// flannel's /coreos.com/network/config.
struct FlannelNetworkConfig {
  Ipv4Prefix network;       // "Network", required
  uint8_t subnet_len = 24;  // "SubnetLen"
  std::string backend_type = "vxlan";
  uint32_t vni = 1;      // "Backend.VNI"
  uint16_t port = 8472;  // "Backend.Port"; 0 in the file means 8472
  bool direct_routing = false;
};

// One /coreos.com/network/subnets/<a.b.c.d>-<len> lease.
struct FlannelLease {
  Ipv4Prefix subnet;
  uint32_t public_ip = 0;
  std::string backend_type;
  uint32_t vni = 1;
  MacAddress vtep_mac{};
};

enum class L4Protocol : uint8_t { kTcp = 6, kUdp = 17, kSctp = 132 };

enum class TrafficPolicy : uint8_t { kCluster, kLocal };

struct ServicePortSpec {
  std::string name;  // may be empty for single-port services
  L4Protocol protocol = L4Protocol::kTcp;
  uint16_t port = 0;       // the service (cluster IP) port
  uint16_t node_port = 0;  // 0 = none
  // targetPort is resolved through the EndpointSlice ports by name.
};

struct ServiceSpec {
  std::string namespace_name;
  std::string name;
  std::string type;                   // ClusterIP, NodePort, LoadBalancer, ExternalName
  std::vector<uint32_t> cluster_ips;  // IPv4 only; "None" (headless) -> empty
  std::vector<uint32_t> external_ips;
  std::vector<uint32_t> load_balancer_ips;  // status.loadBalancer.ingress[].ip
  TrafficPolicy external_traffic_policy = TrafficPolicy::kCluster;
  TrafficPolicy internal_traffic_policy = TrafficPolicy::kCluster;
  uint16_t health_check_node_port = 0;  // spec.healthCheckNodePort (eTP Local)
  std::vector<ServicePortSpec> ports;
};

struct EndpointSpec {
  uint32_t ip = 0;
  bool ready = true;    // conditions.ready; absent means true
  bool serving = true;  // conditions.serving; absent means true (kube-proxy), = ready in a cluster file
  bool terminating = false;
  std::string node_name;
  std::string zone;                          // topology.kubernetes.io/zone of its node
  std::vector<std::string> hints_for_zones;  // hints.forZones[].name (topology hints)
  std::vector<std::string> hints_for_nodes;  // hints.forNodes[].name
};

struct EndpointSlicePortSpec {
  std::string name;
  L4Protocol protocol = L4Protocol::kTcp;
  uint16_t port = 0;
};

struct EndpointSliceSpec {
  std::string namespace_name;
  std::string name;
  std::string service_name;  // label kubernetes.io/service-name
  std::vector<EndpointSpec> endpoints;
  std::vector<EndpointSlicePortSpec> ports;
};

struct ClusterModel {
  NodeSpec node;
  FlannelNetworkConfig network;
  std::vector<FlannelLease> leases;
  std::vector<ServiceSpec> services;
  std::vector<EndpointSliceSpec> endpoint_slices;

  // The lease whose PublicIP is this node's IP (flannel's own subnet);
  // nullptr when absent (the parser rejects such a file).
  const FlannelLease* LocalLease() const {
    for (const auto& l : leases)
      if (l.public_ip == node.node_ip) return &l;
    return nullptr;
  }
};

}  // namespace sluice

#endif  // SLUICE_API_CLUSTER_MODEL_H_

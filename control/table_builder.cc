#include "control/table_builder.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "control/model_messages.h"

namespace sluice {
namespace {

constexpr uint32_t kMaxVni = (1u << 24) - 1;  // VXLAN's 24-bit VNI
constexpr const char* kConfigObject = "etcd key /coreos.com/network/config";

std::string LeaseObject(const FlannelLease& l) {
  return absl::StrFormat("etcd key /coreos.com/network/subnets/%s-%d", FormatIpv4(l.subnet.address),
                         l.subnet.length);
}

// What the tables cannot represent. The cluster-file parser refuses all of
// it already, with the file's locations; a model may come from elsewhere.
absl::Status CheckModelFits(const ClusterModel& model) {
  if (model.node.uplink_prefix_length > 32)
    return absl::InvalidArgumentError(absl::StrFormat(
        "node: uplinkPrefixLength: must be 0..32, got %d", model.node.uplink_prefix_length));
  if (model.network.network.length > 32)
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: Network: prefix length must be 0..32, got %d", kConfigObject,
                        model.network.network.length));
  if (model.network.vni > kMaxVni)
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: Backend.VNI: %u does not fit VXLAN's 24 bits (at most %u)",
                        kConfigObject, model.network.vni, kMaxVni));
  if (model.leases.size() > OverlayTable::kMaxLeases)
    return absl::InvalidArgumentError(
        absl::StrFormat("etcd: %u flannel leases, but the subnet map indexes at most %u",
                        model.leases.size(), OverlayTable::kMaxLeases));
  for (const FlannelLease& l : model.leases) {
    if (l.subnet.length > 32)
      return absl::InvalidArgumentError(absl::StrFormat("%s: prefix length must be 0..32, got %d",
                                                        LeaseObject(l), l.subnet.length));
    if (l.vni > kMaxVni)
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: BackendData.VNI: %u does not fit VXLAN's 24 bits (at most %u)",
                          LeaseObject(l), l.vni, kMaxVni));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<NetworkSpec> BuildNetworkSpec(const ClusterModel& model) {
  if (absl::Status s = CheckModelFits(model); !s.ok()) return s;
  const FlannelLease* local = model.LocalLease();
  if (local == nullptr)
    return absl::FailedPreconditionError(absl::StrFormat(
        "no flannel lease has PublicIP %s (this node's nodeIP)", FormatIpv4(model.node.node_ip)));
  NetworkSpec spec;
  NodeView& n = spec.node;
  const NodeSpec& ns = model.node;
  n.name = ns.name;
  n.node_ip = ns.node_ip;
  n.uplink_net_mask = PrefixMask(ns.uplink_prefix_length);
  n.gateway_ip = ns.gateway_ip;
  n.uplink_mtu = ns.uplink_mtu;
  n.port_mac[static_cast<int>(PortRole::kUplink)] = ns.uplink_mac;
  n.port_mac[static_cast<int>(PortRole::kPods)] = ns.pods_mac;
  n.port_mac[static_cast<int>(PortRole::kHost)] = ns.host_mac;
  n.has_host_port = ns.has_host_port;
  n.host_peer_mac = ns.host_peer_mac;
  n.cluster_mask = PrefixMask(model.network.network.length);
  n.cluster_net = model.network.network.address & n.cluster_mask;
  n.pod_mask = PrefixMask(local->subnet.length);
  n.pod_net = local->subnet.address & n.pod_mask;
  n.vxlan_ip = n.pod_net;             // flannel.1: the lease's network address, /32
  n.pods_gateway_ip = n.pod_net + 1;  // cni0: the lease's first address
  n.vtep_mac = local->vtep_mac;
  n.vni = model.network.vni;
  n.vxlan_port = model.network.port;

  std::vector<VtepPeer>& peers = spec.peers;
  for (const FlannelLease& l : model.leases) {
    VtepPeer p;
    p.public_ip = l.public_ip;
    p.subnet = l.subnet.address;
    p.subnet_length = l.subnet.length;
    p.local = l.public_ip == ns.node_ip;
    p.vtep_mac = l.vtep_mac;
    peers.push_back(p);
  }
  return spec;
}

std::vector<StaticNeighbor> StaticNeighborsOf(const ClusterModel& model) {
  std::vector<StaticNeighbor> out;
  out.reserve(model.node.neighbors.size());
  for (const NeighborEntry& e : model.node.neighbors) out.push_back({e.port, e.ip, e.mac});
  return out;
}

absl::StatusOr<PreparedReload> PrepareReload(const ClusterModel& model,
                                             const TablePublisher& publisher,
                                             const NeighborTable& neighbors,
                                             ServiceProgrammer& services) {
  PreparedReload r;
  r.static_neighbors = StaticNeighborsOf(model);
  if (absl::Status s = neighbors.ValidateStatic(r.static_neighbors); !s.ok())
    return absl::Status(s.code(), absl::StrCat("node: neighbors: ", s.message()));
  auto network = BuildNetworkSpec(model);
  if (!network.ok()) return network.status();
  if (absl::Status s = publisher.Validate(*network); !s.ok()) return s;
  r.network = *std::move(network);
  const ModelMessages messages = MessagesFromModel(model);
  auto sync = services.PrepareSync(messages.ports, messages.endpoints, model.node.name);
  if (!sync.ok()) return sync.status();
  r.services.emplace(*std::move(sync));
  return r;
}

absl::Status CommitReload(PreparedReload reload, NeighborTable& neighbors,
                          TablePublisher& publisher, ServiceProgrammer& services) {
  if (absl::Status s = neighbors.ReplaceStatic(reload.static_neighbors); !s.ok()) return s;
  // The node's addresses first: the Service sync's flow cleanup matches
  // NodePort flows on them.
  publisher.Publish(reload.network);
  if (!reload.services.has_value()) return absl::OkStatus();
  return services.CommitSync(*std::move(reload.services));
}

}  // namespace sluice

#include "control/table_builder.h"

#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

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
  if (model.leases.size() > OverlayTable::kMaxPeers)
    return absl::InvalidArgumentError(
        absl::StrFormat("etcd: %u flannel leases, but the subnet map indexes at most %u",
                        model.leases.size(), OverlayTable::kMaxPeers));
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

struct ChosenEndpoints {
  std::vector<Endpoint> all;
  std::vector<Endpoint> local;
};

// kube-proxy's choice of endpoints for one Service port: ready ones; when
// none is ready, the serving-and-terminating ones (decided separately for
// the cluster-wide and the node-local set).
using SlicesByService = std::unordered_map<std::string, std::vector<const EndpointSliceSpec*>>;

std::string ServiceId(const std::string& ns, const std::string& name) { return ns + "/" + name; }

ChosenEndpoints EndpointsFor(const ClusterModel& model, const SlicesByService& slices,
                             const ServiceSpec& svc, const ServicePortSpec& port) {
  struct Candidate {
    Endpoint ep;
    bool ready, serving, terminating, local;
  };
  std::vector<Candidate> candidates;
  std::set<std::pair<uint32_t, uint16_t>> seen;
  const auto found = slices.find(ServiceId(svc.namespace_name, svc.name));
  if (found == slices.end()) return {};
  for (const EndpointSliceSpec* slice_ptr : found->second) {
    const EndpointSliceSpec& slice = *slice_ptr;
    for (const EndpointSlicePortSpec& sp : slice.ports) {
      if (sp.name != port.name || sp.protocol != port.protocol) continue;
      for (const EndpointSpec& e : slice.endpoints) {
        if (!seen.insert({e.ip, sp.port}).second) continue;
        Candidate c;
        c.ep.ip = e.ip;
        c.ep.port = sp.port;
        c.ready = e.ready;
        c.serving = e.serving;
        c.terminating = e.terminating;
        c.local = e.node_name == model.node.name;
        candidates.push_back(c);
      }
    }
  }
  auto pick = [&](bool local_only) {
    std::vector<Endpoint> ready, fallback;
    for (const Candidate& c : candidates) {
      if (local_only && !c.local) continue;
      if (c.ready)
        ready.push_back(c.ep);
      else if (c.serving && c.terminating)
        fallback.push_back(c.ep);
    }
    return ready.empty() ? fallback : ready;
  };
  return {pick(false), pick(true)};
}

}  // namespace

absl::StatusOr<std::unique_ptr<TableSet>> BuildTableSet(const ClusterModel& model,
                                                        uint64_t generation) {
  if (absl::Status s = CheckModelFits(model); !s.ok()) return s;
  const FlannelLease* local = model.LocalLease();
  if (local == nullptr)
    return absl::FailedPreconditionError(absl::StrFormat(
        "no flannel lease has PublicIP %s (this node's nodeIP)", FormatIpv4(model.node.node_ip)));
  auto t = std::make_unique<TableSet>();
  t->generation = generation;
  NodeView& n = t->node;
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

  SlicesByService slices;
  for (const EndpointSliceSpec& slice : model.endpoint_slices)
    slices[ServiceId(slice.namespace_name, slice.service_name)].push_back(&slice);
  ServiceTable::Builder sb;
  for (const ServiceSpec& svc : model.services) {
    if (svc.type == "ExternalName") continue;
    for (size_t pi = 0; pi < svc.ports.size(); ++pi) {
      const ServicePortSpec& port = svc.ports[pi];
      if (port.protocol == L4Protocol::kSctp) continue;  // not in the dataplane yet
      const ChosenEndpoints eps = EndpointsFor(model, slices, svc, port);
      // The counts are 16 bits and the offsets 32: refuse what they cannot
      // hold rather than serve a truncated endpoint set.
      // (The node-local set is chosen on its own and may be the larger.)
      for (const auto& [chosen, what] :
           {std::make_pair(&eps.all, ""), std::make_pair(&eps.local, " on this node")}) {
        if (chosen->size() > ServiceEntry::kMaxEndpoints)
          return absl::InvalidArgumentError(absl::StrFormat(
              "Service %s/%s: spec.ports[%u] (%s%s%u/%s): %u endpoints%s, more than the %u a "
              "Service port holds",
              svc.namespace_name, svc.name, pi, port.name, port.name.empty() ? "" : " ", port.port,
              port.protocol == L4Protocol::kTcp ? "TCP" : "UDP", chosen->size(), what,
              ServiceEntry::kMaxEndpoints));
      }
      if (sb.endpoints.size() + eps.all.size() + eps.local.size() > UINT32_MAX ||
          sb.names.size() >= UINT32_MAX)
        return absl::InvalidArgumentError(absl::StrFormat(
            "Service %s/%s: spec.ports[%u]: the Service table's endpoint or name index would "
            "pass 2^32",
            svc.namespace_name, svc.name, pi));
      ServiceEntry base;
      base.endpoints_begin = static_cast<uint32_t>(sb.endpoints.size());
      base.endpoints_count = static_cast<uint16_t>(eps.all.size());
      sb.endpoints.insert(sb.endpoints.end(), eps.all.begin(), eps.all.end());
      base.local_begin = static_cast<uint32_t>(sb.endpoints.size());
      base.local_count = static_cast<uint16_t>(eps.local.size());
      sb.endpoints.insert(sb.endpoints.end(), eps.local.begin(), eps.local.end());
      base.external_local_only = svc.external_traffic_policy == TrafficPolicy::kLocal;
      base.masquerade_external = !base.external_local_only;
      base.internal_local_only = svc.internal_traffic_policy == TrafficPolicy::kLocal;
      base.name_index = static_cast<uint32_t>(sb.names.size());
      sb.names.push_back(absl::StrFormat("%s/%s%s%s", svc.namespace_name, svc.name,
                                         port.name.empty() ? "" : ":", port.name));
      const uint8_t proto = static_cast<uint8_t>(port.protocol);
      auto add = [&](uint32_t ip, uint16_t p, ServiceEntryKind kind) {
        ServiceEntry e = base;
        e.kind = kind;
        sb.entries.push_back({ServiceKey{ip, p, proto, 0}, e});
      };
      for (uint32_t ip : svc.cluster_ips) add(ip, port.port, ServiceEntryKind::kClusterIp);
      if (svc.cluster_ips.empty()) continue;  // headless: DNS only, nothing to proxy
      if (port.node_port != 0 && (svc.type == "NodePort" || svc.type == "LoadBalancer"))
        add(0, port.node_port, ServiceEntryKind::kNodePort);
      for (uint32_t ip : svc.external_ips) add(ip, port.port, ServiceEntryKind::kExternalIp);
      for (uint32_t ip : svc.load_balancer_ips)
        add(ip, port.port, ServiceEntryKind::kLoadBalancerIp);
    }
  }
  auto services = ServiceTable::Build(std::move(sb), generation);
  if (!services.ok()) return services.status();
  t->services = *std::move(services);

  std::vector<VtepPeer> peers;
  for (const FlannelLease& l : model.leases) {
    VtepPeer p;
    p.public_ip = l.public_ip;
    p.subnet = l.subnet.address;
    p.subnet_length = l.subnet.length;
    p.local = l.public_ip == ns.node_ip;
    p.vtep_mac = l.vtep_mac;
    peers.push_back(p);
  }
  auto overlay = OverlayTable::Build(std::move(peers), generation);
  if (!overlay.ok()) return overlay.status();
  t->overlay = *std::move(overlay);
  return t;
}

std::vector<StaticNeighbor> StaticNeighborsOf(const ClusterModel& model) {
  std::vector<StaticNeighbor> out;
  out.reserve(model.node.neighbors.size());
  for (const NeighborEntry& e : model.node.neighbors) out.push_back({e.port, e.ip, e.mac});
  return out;
}

absl::StatusOr<PreparedReload> PrepareReload(const ClusterModel& model, uint64_t generation,
                                             const NeighborTable& neighbors) {
  PreparedReload r;
  r.static_neighbors = StaticNeighborsOf(model);
  if (absl::Status s = neighbors.ValidateStatic(r.static_neighbors); !s.ok())
    return absl::Status(s.code(), absl::StrCat("node: neighbors: ", s.message()));
  auto tables = BuildTableSet(model, generation);
  if (!tables.ok()) return tables.status();
  r.tables = *std::move(tables);
  return r;
}

absl::Status CommitReload(PreparedReload reload, NeighborTable& neighbors,
                          TablePublisher& publisher) {
  if (absl::Status s = neighbors.ReplaceStatic(reload.static_neighbors); !s.ok()) return s;
  publisher.Publish(std::move(reload.tables));
  return absl::OkStatus();
}

}  // namespace sluice

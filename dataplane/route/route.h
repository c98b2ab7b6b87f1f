// Routing decisions as the node's kernel would take them with flannel's
// routes installed: the local lease is on the pods port (cni0), every other
// lease is reached through VXLAN (flannel.1, "subnet via subnet.0 onlink"),
// the node's own addresses go to the host, and the rest follows the uplink's
// connected subnet or default gateway.
//
// Masquerade and other Kubernetes policy is in dataplane/policy/.
//
// Pure functions over one TableSet; no state.
#ifndef SLUICE_DATAPLANE_ROUTE_ROUTE_H_
#define SLUICE_DATAPLANE_ROUTE_ROUTE_H_

#include <cstdint>

#include "dataplane/tables/table_set.h"

namespace sluice {

enum class Egress : uint8_t {
  kNone,    // no route
  kPods,    // local pod network
  kVxlan,   // a remote node's pods, encapsulated out of the uplink
  kUplink,  // the underlay or beyond
  kHost,    // one of the node's own addresses
};

struct RouteResult {
  Egress egress = Egress::kNone;
  uint32_t next_hop = 0;                  // kPods/kUplink: L2 next hop; kVxlan: the peer's PublicIP
  uint32_t peer = OverlayTable::kNoPeer;  // kVxlan: VtepPeer index
};

inline RouteResult RouteTo(const TableSet& t, uint32_t dst) {
  const NodeView& n = t.node;
  RouteResult r;
  if (n.IsLocalAddress(dst)) {
    r.egress = Egress::kHost;
    return r;
  }
  if (n.InPodNetwork(dst)) {
    r.egress = Egress::kPods;
    r.next_hop = dst;
    return r;
  }
  if (n.InClusterNetwork(dst)) {
    const uint32_t peer = t.overlay->PeerForAddress(dst);
    if (peer != OverlayTable::kNoPeer && !t.overlay->peer(peer).local) {
      r.egress = Egress::kVxlan;
      r.peer = peer;
      r.next_hop = t.overlay->peer(peer).public_ip;
      return r;
    }
    // No lease covers it: like the kernel, fall through to the default route.
  }
  if (((dst ^ n.node_ip) & n.uplink_net_mask) == 0) {
    r.egress = Egress::kUplink;
    r.next_hop = dst;
  } else if (n.gateway_ip != 0) {
    r.egress = Egress::kUplink;
    r.next_hop = n.gateway_ip;
  }
  return r;
}

// Destinations no router forwards (martians): 0.0.0.0/8, 127.0.0.0/8,
// multicast 224.0.0.0/4 (no Sluice feature forwards multicast yet), the
// reserved class E 240.0.0.0/4 with the limited broadcast in it, and the
// directed broadcasts of the node's subnets (uplink, this node's pod
// subnet, the cluster network). Never routed to the gateway: they are
// dropped as martian_destination.
//
// The directed broadcasts, 0 for a subnet that has none (no mask, /31,
// /32); a burst loop computes them once.
struct DirectedBroadcasts {
  uint32_t addr[3];
};
inline DirectedBroadcasts DirectedBroadcastsOf(const NodeView& n) {
  auto of = [](uint32_t net, uint32_t mask) { return mask != 0 && ~mask > 1 ? net | ~mask : 0; };
  return {{of(n.node_ip, n.uplink_net_mask), of(n.pod_net, n.pod_mask),
           of(n.cluster_net, n.cluster_mask)}};
}
inline bool IsMartianDestination(const DirectedBroadcasts& b, uint32_t dst) {
  return !IsUnicastHost(dst) || dst == b.addr[0] || dst == b.addr[1] || dst == b.addr[2];
}
inline bool IsMartianDestination(const NodeView& n, uint32_t dst) {
  return IsMartianDestination(DirectedBroadcastsOf(n), dst);
}

// The L2 next hop on the uplink towards a peer's PublicIP.
inline uint32_t UplinkNextHop(const NodeView& n, uint32_t ip) {
  return (((ip ^ n.node_ip) & n.uplink_net_mask) == 0 || n.gateway_ip == 0) ? ip : n.gateway_ip;
}

// The subnet an ARP sender on `port` must belong to for Sluice to learn it
// as a neighbour: the uplink's connected subnet, the local lease on the pods
// port (cni0's bridge), and on the host port the node's own address, which
// the kernel behind it holds (nothing is routed through a learned host
// neighbour: the host path uses the configured peer MAC). The uplink's
// gateway is on-link by route even outside the prefix (clouds hand out /32
// addresses), so for that sender it is the gateway's own /32.
inline Ipv4Subnet OnLinkSubnet(const NodeView& n, PortRole port, uint32_t sender) {
  switch (port) {
    case PortRole::kUplink:
      if (n.gateway_ip != 0 && sender == n.gateway_ip) return {n.gateway_ip, ~uint32_t{0}};
      return {n.node_ip & n.uplink_net_mask, n.uplink_net_mask};
    case PortRole::kPods:
      return {n.pod_net, n.pod_mask};
    case PortRole::kHost:
      return {n.node_ip, ~uint32_t{0}};
  }
  return {};
}

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_ROUTE_ROUTE_H_

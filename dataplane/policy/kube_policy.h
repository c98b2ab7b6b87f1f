// Kubernetes policy, in one place: which endpoints a new flow may use
// (kube-proxy's traffic policies), which flows are masqueraded and why
// (kube-proxy's KUBE-MARK-MASQ rules and flannel's --ip-masq FLANNEL-POSTRTG
// chain), the address and ports MASQUERADE picks, and which flows are tracked
// without NAT. Each function names the rules it mirrors
// (../shared/reference/kube-proxy-and-flannel.md); the graph nodes call them,
// the unit tests check them against the rule text.
//
// Pure functions over the node's view; no state, safe on any thread.
#ifndef SLUICE_DATAPLANE_POLICY_KUBE_POLICY_H_
#define SLUICE_DATAPLANE_POLICY_KUBE_POLICY_H_

#include <cstdint>

#include "dataplane/route/route.h"
#include "dataplane/tables/service_directory.h"
#include "dataplane/tables/table_set.h"

namespace sluice {

// Which endpoint subset a flow was given, for traces.
enum class EndpointSubset : uint8_t {
  kAll,            // ready endpoints (serving+terminating when none is ready)
  kLocalInternal,  // internalTrafficPolicy Local
  kLocalExternal,  // externalTrafficPolicy Local, client address kept
};

enum class MasqueradeReason : uint8_t {
  kNone,
  kOffClusterToClusterIp,  // KUBE-SVC-*: -d clusterIP ! -s clusterCIDR -j KUBE-MARK-MASQ
  kExternalPolicyCluster,  // KUBE-EXT-*: -j KUBE-MARK-MASQ (externalTrafficPolicy Cluster)
  kHairpin,                // KUBE-SEP-*: -s endpointIP -j KUBE-MARK-MASQ
  kFlannelIpMasq,          // FLANNEL-POSTRTG: pod traffic leaving the cluster network
  kNodeToExternalLocal,    // KUBE-EXT-*: -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
};
const char* MasqueradeReasonText(MasqueradeReason r);
const char* EndpointSubsetText(EndpointSubset s);

struct EndpointChoice {
  uint32_t begin = 0;  // into EndpointSet::endpoints()
  uint32_t count = 0;
  EndpointSubset set = EndpointSubset::kAll;
  MasqueradeReason masquerade = MasqueradeReason::kNone;  // decided before the endpoint
};

// kube-proxy's chains for a new flow from `src` that reached a Service port
// with endpoint set `eps` through a key of kind `kind`:
//  - ClusterIP: KUBE-SVC; sources outside the cluster network are marked
//    for masquerade; internalTrafficPolicy Local narrows to local endpoints.
//  - NodePort / externalIP / LB IP, externalTrafficPolicy Cluster: KUBE-EXT
//    marks every flow for masquerade.
//  - externalTrafficPolicy Local: external sources get node-local endpoints
//    and keep their address; pod traffic ("pod traffic for ... external
//    destinations", -s clusterCIDR) goes to KUBE-SVC, all endpoints, no mark;
//    the node's own traffic (--src-type LOCAL) is marked and goes to KUBE-SVC.
inline EndpointChoice ChooseEndpoints(const NodeView& n, const EndpointSet& eps,
                                      ServiceEntryKind kind, uint32_t src) {
  const bool from_cluster = n.InClusterNetwork(src);
  EndpointChoice c{0, eps.all_count, EndpointSubset::kAll, MasqueradeReason::kNone};
  if (kind == ServiceEntryKind::kClusterIp) {
    if (eps.flags & EndpointSet::kInternalLocalOnly)
      c = {eps.all_count, eps.local_count, EndpointSubset::kLocalInternal};
    if (!from_cluster) c.masquerade = MasqueradeReason::kOffClusterToClusterIp;
  } else if (eps.flags & EndpointSet::kExternalLocalOnly) {
    if (n.IsLocalAddress(src)) {
      c.masquerade = MasqueradeReason::kNodeToExternalLocal;
    } else if (!from_cluster) {
      c = {eps.all_count, eps.local_count, EndpointSubset::kLocalExternal};
    }
  } else {
    c.masquerade = MasqueradeReason::kExternalPolicyCluster;
  }
  return c;
}

// KUBE-SEP-*: an endpoint reaching its own Service is masqueraded.
inline bool IsHairpin(uint32_t src, uint32_t endpoint_ip) { return src == endpoint_ip; }

// flannel's FLANNEL-POSTRTG chain (--ip-masq), for flows kube-proxy did not
// mark: RETURN -s podCIDR -d clusterCIDR; RETURN -s clusterCIDR -d podCIDR;
// RETURN ! -s clusterCIDR -d podCIDR; MASQUERADE -s clusterCIDR
// ! -d 224.0.0.0/4; MASQUERADE ! -s clusterCIDR -d clusterCIDR. POSTROUTING
// never sees what is delivered to the node itself.
inline bool FlannelMasquerades(const NodeView& n, uint32_t src, uint32_t dst, Egress egress) {
  if (egress == Egress::kHost) return false;
  const bool src_cluster = n.InClusterNetwork(src);
  if (n.InPodNetwork(src) && n.InClusterNetwork(dst)) return false;
  if (n.InPodNetwork(dst)) return false;  // both "-d podCIDR" RETURN rules
  if (src_cluster) return (dst >> 28) != 0xe;
  return n.InClusterNetwork(dst);
}

// A flow that needs no NAT is still tracked when its replies would otherwise
// meet a masquerade rule (a client outside the cluster reaching a pod
// directly): the kernel matches such replies to their connection and leaves
// them alone, and so must Sluice. `egress` is the original direction's.
inline bool TrackedWithoutNat(const NodeView& n, uint32_t src, uint32_t dst, Egress egress) {
  return egress != Egress::kHost && FlannelMasquerades(n, dst, src, Egress::kNone);
}

// MASQUERADE uses the egress device's primary address: flannel.1's (the
// lease's network address) into VXLAN, cni0's (.1) to local pods, the node
// IP on the uplink.
inline uint32_t MasqueradeAddress(const NodeView& n, Egress e) {
  switch (e) {
    case Egress::kPods:
      return n.pods_gateway_ip;
    case Egress::kVxlan:
      return n.vxlan_ip;
    default:
      return n.node_ip;
  }
}

// Inclusive port span.
struct PortSpan {
  uint32_t lo = 0, hi = 0;
};

// The source ports MASQUERADE --random-fully may give a flow whose original
// source port is `port`: nf_nat keeps the port's class (1-511, 600-1023,
// 1024-65535; ICMP identifiers take 1024-65535). Sluice also leaves out the
// node kernel's ephemeral range (ip_local_port_range, NodeView), so that a
// masqueraded flow never takes a tuple the host's own connections may use.
// Writes up to two spans; returns how many.
inline int MasqueradePortSpans(const NodeView& n, uint8_t proto, uint16_t port, PortSpan out[2]) {
  PortSpan c{1024, 65535};
  if (proto != kProtoIcmp && port < 512) {
    c = {1, 511};
  } else if (proto != kProtoIcmp && port < 1024) {
    c = {600, 1023};
  }
  const uint32_t elo = n.local_port_lo, ehi = n.local_port_hi;
  if (elo > ehi || ehi < c.lo || elo > c.hi) {
    out[0] = c;
    return 1;
  }
  int k = 0;
  if (elo > c.lo) out[k++] = {c.lo, elo - 1};
  if (ehi < c.hi) out[k++] = {ehi + 1, c.hi};
  return k;
}

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_POLICY_KUBE_POLICY_H_

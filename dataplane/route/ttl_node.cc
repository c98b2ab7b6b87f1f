// ttl: forwarding as a router (ForwardChecks in forward.h): the TTL is
// decremented and a packet that would leave with TTL 0 is dropped; a packet
// bound for VXLAN must fit the uplink MTU once encapsulated. Established
// flows with a current cached egress get the same checks in nat and skip
// this node.
// In: route. Out: vxlan_encap, neighbor (pods and uplink: next hop MAC),
// drop. Drops: ttl_exceeded, vxlan_too_big.
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/route/forward.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToVxlanEncap, kToNeighbor, kToDrop };

uint16_t TtlProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  const uint32_t mtu = ctx->tables->node.uplink_mtu;
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  for (uint16_t i = 0; i < n; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    switch (ForwardChecks(m, Priv(m), mtu)) {
      case ForwardVerdict::kVxlanEncap: next[i] = kToVxlanEncap; break;
      case ForwardVerdict::kNeighbor: next[i] = kToNeighbor; break;
      case ForwardVerdict::kDrop: next[i] = kToDrop; break;
    }
  }
  EnqueueByEdge(graph, node, objs, next, n);
  return n;
}

}  // namespace

const GraphNodeSpec& TtlNodeSpec() {
  static const GraphNodeSpec spec{
      kTtlNode, &TtlProcess, false, {kVxlanEncapNode, kNeighborNode, kDropNode}};
  return spec;
}

}  // namespace sluice

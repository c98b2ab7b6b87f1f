// ttl: forwarding as a router: the TTL is decremented (checksum updated
// incrementally) and a packet that would leave with TTL 0 is dropped; a
// packet bound for VXLAN must fit the uplink MTU once encapsulated (outer
// IPv4 length = inner IP length + 50; RFC 7348: never an outer fragment).
// In: route, nat. Out: vxlan_encap, neighbor (pods and uplink: next hop MAC),
// drop. Drops: ttl_exceeded, vxlan_too_big.
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/nat/nat_rewrite.h"
#include "dataplane/route/route.h"
#include "dataplane/vxlan/vxlan.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToVxlanEncap, kToNeighbor, kToDrop };

uint16_t TtlProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  const uint32_t mtu = ctx->tables->node.uplink_mtu;
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  for (uint16_t i = 0; i < n; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    PacketPriv* pp = Priv(m);
    if (!DecrementTtl(m, pp->meta)) {
      MarkDrop(m, k_ttl_exceeded);
      next[i] = kToDrop;
    } else if (static_cast<Egress>(pp->egress) != Egress::kVxlan) {
      next[i] = kToNeighbor;
    } else if (uint32_t{pp->meta.ip_total_length} + kVxlanOverhead > mtu) {
      MarkDrop(m, k_vxlan_too_big);
      next[i] = kToDrop;
    } else {
      next[i] = kToVxlanEncap;
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

// conntrack: looks every packet that has ports (TCP, UDP, ICMP echo) up in
// the connection table, in bulk, a chunk of kBurstSize at a time.
// In: classify, vxlan_decap. Out: nat (a tracked flow, either direction),
// service (a miss: maybe a new flow), route (no ports: routed without
// NAT, like the kernel's untracked protocols). Drops: none.
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToNat, kToService, kToRoute };

uint16_t ConntrackProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  const ConntrackTable& ct = *ctx->shared.conntrack;
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  uint64_t hits[2] = {0, 0};
  for (uint16_t base = 0; base < n; base += kBurstSize) {
    const uint16_t end = base + kBurstSize < n ? base + kBurstSize : n;
    const FlowKey* keys[kBurstSize];
    uint16_t which[kBurstSize];
    uint16_t nk = 0;
    for (uint16_t i = base; i < end; ++i) {
      PacketPriv* pp = Priv(static_cast<rte_mbuf*>(objs[i]));
      if (pp->meta.has_ports) {
        keys[nk] = &pp->meta.key;
        which[nk++] = i;
        next[i] = kToService;
      } else {
        pp->stateless = 1;
        next[i] = kToRoute;
      }
    }
    if (nk == 0) continue;
    uint32_t refs[kBurstSize];
    ct.LookupBulk(keys, nk, refs);
    for (uint16_t j = 0; j < nk; ++j) {
      if (refs[j] == ConntrackTable::kMiss) continue;
      auto* m = static_cast<rte_mbuf*>(objs[which[j]]);
      Priv(m)->ct_ref = refs[j];
      next[which[j]] = kToNat;
      ++hits[(refs[j] & ConntrackTable::kReplyBit) ? 1 : 0];
    }
  }
  ctx->counters.Add(k_conntrack_hit_original, hits[0]);
  ctx->counters.Add(k_conntrack_hit_reply, hits[1]);
  EnqueueByEdge(graph, node, objs, next, n);
  return n;
}

}  // namespace

const GraphNodeSpec& ConntrackNodeSpec() {
  static const GraphNodeSpec spec{
      kConntrackNode, &ConntrackProcess, false, {kNatNode, kServiceNode, kRouteNode}};
  return spec;
}

}  // namespace sluice

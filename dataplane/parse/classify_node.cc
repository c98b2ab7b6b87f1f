// classify: parses each frame (every length checked), checks it is ours at
// L2 and its destination is not a martian, and sends it on by kind.
// In: rx. Out: arp, vxlan_decap (UDP to the node's VXLAN port on the
// uplink), conntrack (other IPv4), drop. Drops: the parser's reasons,
// l2_not_for_us, martian_destination.
#include <rte_ether.h>
#include <rte_ip.h>

#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/nat/nat_rewrite.h"
#include "dataplane/route/route.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToArp, kToVxlanDecap, kToConntrack, kToDrop };
constexpr uint16_t kPrefetchAhead = 8;

template <bool kMayTrace>
rte_edge_t Classify(WorkerContext* ctx, rte_mbuf* m, PacketPriv* pp, const NodeView& n) {
  PacketMeta& pm = pp->meta;
  ParsePacket(m, 0, &pm);
  const PortRole in = static_cast<PortRole>(pp->ingress);
  if (pm.cls == PacketClass::kArp) return kToArp;
  if (pm.cls == PacketClass::kDrop) {
    SLUICE_TRACE(ctx, m, kRxOther, .a8 = pp->ingress, .a = rte_pktmbuf_data_len(m));
    MarkDrop(m, pm.drop_reason);
    return kToDrop;
  }
  SLUICE_TRACE(ctx, m, kRxIpv4, .a8 = pp->ingress, .a16 = pm.tcp_flags,
               .a = Ipv4Header(m, pm)->time_to_live, .key = &pm.key);
  const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
  if (std::memcmp(eth->dst_addr.addr_bytes, n.port_mac[pp->ingress].data(), 6) != 0) {
    MarkDrop(m, k_l2_not_for_us);
    return kToDrop;
  }
  if (IsMartianDestination(n, pm.key.dst_ip)) {
    MarkDrop(m, k_martian_destination);
    return kToDrop;
  }
  if (in == PortRole::kUplink && pm.key.proto == kProtoUdp && pm.key.dst_ip == n.node_ip &&
      pm.key.dst_port == n.vxlan_port)
    return kToVxlanDecap;
  TrimToIpLength(m, pm);
  return kToConntrack;
}

template <bool kMayTrace>
uint16_t ClassifyBurst(rte_graph* graph, rte_node* node, WorkerContext* ctx, void** objs,
                       uint16_t n) {
  const NodeView& view = ctx->tables->node;
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  for (uint16_t i = 0; i < n && i < kPrefetchAhead; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    rte_prefetch0(rte_pktmbuf_mtod(m, void*));
    rte_prefetch0(Priv(m));
  }
  for (uint16_t i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) {
      auto* ahead = static_cast<rte_mbuf*>(objs[i + kPrefetchAhead]);
      rte_prefetch0(rte_pktmbuf_mtod(ahead, void*));
      rte_prefetch0(Priv(ahead));
    }
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    PacketPriv* pp = Priv(m);
    pp->ct_ref = ConntrackTable::kMiss;
    pp->svc = kNoService;
    pp->stateless = 0;
    pp->routed = 0;
    pp->created = 0;
    next[i] = Classify<kMayTrace>(ctx, m, pp, view);
  }
  EnqueueByEdge(graph, node, objs, next, n);
  return n;
}

uint16_t ClassifyProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  if (unlikely(ctx->tracer != nullptr)) return ClassifyBurst<true>(graph, node, ctx, objs, n);
  return ClassifyBurst<false>(graph, node, ctx, objs, n);
}

}  // namespace

const GraphNodeSpec& ClassifyNodeSpec() {
  static const GraphNodeSpec spec{kClassifyNode,
                                  &ClassifyProcess,
                                  false,
                                  {kArpNode, kVxlanDecapNode, kConntrackNode, kDropNode}};
  return spec;
}

}  // namespace sluice

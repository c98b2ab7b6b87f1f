// classify: parses each frame (every length checked), checks it is ours at
// L2 and its destination is not a martian, and sends it on by kind.
// In: rx. Out: arp, vxlan_decap (UDP to the node's VXLAN port on the
// uplink), conntrack (other IPv4), drop. Drops: the parser's reasons,
// l2_not_for_us, martian_destination.
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>

#include <cstring>

#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/nat/nat_rewrite.h"
#include "dataplane/route/route.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToArp, kToVxlanDecap, kToConntrack, kToDrop };
constexpr uint16_t kPrefetchAhead = 8;

// The node's fields every packet is compared with, loaded once per burst
// (stores into packet bytes would otherwise make the compiler load them
// again for each packet). A port's MAC is held as the low 48 bits of a word
// in memory order, as an Ethernet destination read as 8 bytes and masked.
struct BurstView {
  DirectedBroadcasts broadcasts;
  uint64_t port_mac[kPortRoleCount];
  uint32_t node_ip;
  uint16_t vxlan_port;
};
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
constexpr uint64_t kMacBits = 0x0000ffffffffffffull;  // the first six bytes in memory
#else
constexpr uint64_t kMacBits = 0xffffffffffff0000ull;
#endif

inline uint64_t MacWord(const uint8_t* six_of_eight) {
  uint64_t w;
  std::memcpy(&w, six_of_eight, sizeof(w));
  return w & kMacBits;
}

template <bool kMayTrace>
rte_edge_t Classify(WorkerContext* ctx, rte_mbuf* m, PacketPriv* pp, const BurstView& b) {
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
  // The parser checked the frame holds an Ethernet header: 8 bytes can be read.
  if (MacWord(rte_pktmbuf_mtod(m, const uint8_t*)) != b.port_mac[pp->ingress]) {
    MarkDrop(m, k_l2_not_for_us);
    return kToDrop;
  }
  if (IsMartianDestination(b.broadcasts, pm.key.dst_ip)) {
    MarkDrop(m, k_martian_destination);
    return kToDrop;
  }
  if (in == PortRole::kUplink && pm.key.proto == kProtoUdp && pm.key.dst_ip == b.node_ip &&
      pm.key.dst_port == b.vxlan_port)
    return kToVxlanDecap;
  TrimToIpLength(m, pm);
  return kToConntrack;
}

template <bool kMayTrace>
uint16_t ClassifyBurst(rte_graph* graph, rte_node* node, WorkerContext* ctx, void** objs,
                       uint16_t n) {
  const NodeView& node_view = ctx->tables->node;
  BurstView view{DirectedBroadcastsOf(node_view), {}, node_view.node_ip, node_view.vxlan_port};
  for (int p = 0; p < kPortRoleCount; ++p) {
    uint8_t eight[8] = {};
    std::memcpy(eight, node_view.port_mac[p].data(), 6);
    view.port_mac[p] = MacWord(eight);
  }
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

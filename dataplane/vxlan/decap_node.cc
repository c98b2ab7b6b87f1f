// vxlan_decap: accepts VXLAN only from nodes that hold a flannel lease,
// checks flags, VNI and the inner destination MAC (our VtepMAC), strips the
// outer headers and parses the inner frame, which must be IPv4 with a
// destination that is not a martian.
// In: classify. Out: conntrack, drop. Drops: vxlan_unknown_peer,
// vxlan_truncated, vxlan_bad_flags, vxlan_bad_vni, vxlan_wrong_inner_mac,
// vxlan_inner_not_ipv4, the parser's reasons, vxlan_ecn_ce_not_ect (RFC
// 6040), martian_destination.
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/route/route.h"
#include "dataplane/vxlan/vxlan.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToConntrack, kToDrop };

// The last sender's lease, within one burst: a burst's VXLAN packets mostly
// come from a few peers, and the hash lookup costs more than the rest of
// the check (bench: reply path).
// `accepted`: the sender holds a lease and is not this node.
struct LastPeer {
  uint32_t public_ip = 0;
  uint32_t peer = OverlayTable::kNoPeer;
  bool accepted = false;
};

// The node's fields every packet is checked against, loaded once per burst
// (stores into packet bytes would otherwise make the compiler load them
// again for each packet).
struct BurstView {
  const TableSet* tables;
  DirectedBroadcasts broadcasts;
  uint32_t vni;
  uint8_t vtep_mac[6];
};

template <bool kMayTrace>
Counter Decapsulate(WorkerContext* ctx, rte_mbuf* m, PacketMeta& pm, LastPeer* last,
                    const BurstView& b) {
  const TableSet& t = *b.tables;
  if (pm.key.src_ip != last->public_ip || last->peer == OverlayTable::kNoPeer) {
    last->public_ip = pm.key.src_ip;
    last->peer = t.overlay->PeerForPublicIp(pm.key.src_ip);
    last->accepted = last->peer != OverlayTable::kNoPeer && !t.overlay->peer(last->peer).local;
  }
  if (!last->accepted) return k_vxlan_unknown_peer;
  const uint32_t peer = last->peer;
  const uint8_t outer_tos =
      rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, pm.l3_offset)->type_of_service;
  const Counter bad = VxlanDecapsulate(m, pm, b.vni);
  if (bad != kCounterCount) return bad;
  if (std::memcmp(rte_pktmbuf_mtod(m, const uint8_t*), b.vtep_mac, 6) != 0)
    return k_vxlan_wrong_inner_mac;
  ParsePacket(m, 0, &pm);
  if (pm.cls != PacketClass::kIpv4)
    return pm.cls == PacketClass::kArp || pm.drop_reason == k_unsupported_ethertype
               ? k_vxlan_inner_not_ipv4
               : pm.drop_reason;
  const VtepPeer& p = t.overlay->peer(peer);
  SLUICE_TRACE(ctx, m, kVxlanDecap, .a8 = p.subnet_length, .a16 = pm.tcp_flags, .a = p.public_ip,
               .b = p.subnet, .c = t.node.vni, .key = &pm.key);
  if (!VxlanDecapsulateEcn(m, pm, outer_tos)) return k_vxlan_ecn_ce_not_ect;
  if (IsMartianDestination(b.broadcasts, pm.key.dst_ip)) return k_martian_destination;
  TrimToIpLength(m, pm);
  return kCounterCount;
}

template <bool kMayTrace>
uint16_t DecapBurst(rte_graph* graph, rte_node* node, WorkerContext* ctx, void** objs,
                   uint16_t n) {
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  uint64_t decapsulated = 0;
  LastPeer last;
  BurstView b{ctx->tables, DirectedBroadcastsOf(ctx->tables->node), ctx->tables->node.vni, {}};
  std::memcpy(b.vtep_mac, ctx->tables->node.vtep_mac.data(), 6);
  for (uint16_t i = 0; i < n; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    const Counter bad = Decapsulate<kMayTrace>(ctx, m, Priv(m)->meta, &last, b);
    if (bad != kCounterCount) {
      MarkDrop(m, bad);
      next[i] = kToDrop;
    } else {
      ++decapsulated;
      next[i] = kToConntrack;
    }
  }
  ctx->counters.Add(k_vxlan_decapsulated, decapsulated);
  EnqueueByEdge(graph, node, objs, next, n);
  return n;
}

uint16_t VxlanDecapProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  if (unlikely(ctx->tracer != nullptr)) return DecapBurst<true>(graph, node, ctx, objs, n);
  return DecapBurst<false>(graph, node, ctx, objs, n);
}

}  // namespace

const GraphNodeSpec& VxlanDecapNodeSpec() {
  static const GraphNodeSpec spec{
      kVxlanDecapNode, &VxlanDecapProcess, false, {kConntrackNode, kDropNode}};
  return spec;
}

}  // namespace sluice

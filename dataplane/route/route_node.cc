// route: where a packet goes, as the node's kernel would route it with
// flannel's routes installed (route.h): to the host (the node's own
// addresses), a local pod, a remote node's pods over VXLAN, or the uplink.
// For a tracked flow the decision is kept in its entry for the rest of this
// table generation (route_cache.h), so later packets skip this node.
// In: conntrack (no ports), service, new_flow, nat (cache stale).
// Out: ttl, tx (to the host, not forwarded: TTL unchanged), drop.
// Drops: no_route, host_path_unavailable.
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/route/route_cache.h"
#include "dataplane/vxlan/vxlan.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToTtl, kToTx, kToDrop };

rte_edge_t Route(WorkerContext* ctx, rte_mbuf* m, PacketPriv* pp) {
  const TableSet& t = *ctx->tables;
  const NodeView& n = t.node;
  const uint32_t dst = pp->meta.key.dst_ip;
  if (!pp->routed) {
    const RouteResult rr = RouteTo(t, dst);
    pp->egress = static_cast<uint8_t>(rr.egress);
    pp->next_hop = rr.next_hop;
    pp->peer = rr.peer;
  }
  const Egress eg = static_cast<Egress>(pp->egress);
  if (eg == Egress::kNone) {
    MarkDrop(m, k_no_route);
    return kToDrop;
  }
  if (eg == Egress::kHost) {
    ctx->counters.Add(k_to_node);
    if (!n.has_host_port) {
      MarkDrop(m, k_host_path_unavailable);
      return kToDrop;
    }
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    std::memcpy(eth->dst_addr.addr_bytes, n.host_peer_mac.data(), 6);
    std::memcpy(eth->src_addr.addr_bytes, n.port_mac[static_cast<int>(PortRole::kHost)].data(), 6);
    SLUICE_TRACE(ctx, m, kRouteHost, .a = dst);
    pp->tx_port = static_cast<uint8_t>(PortRole::kHost);
    return kToTx;
  }
  if (pp->stateless) ctx->counters.Add(k_forwarded_stateless);
  pp->vxlan_sport = 0;
  if (eg == Egress::kVxlan) {
    pp->vxlan_sport = VxlanSourcePort(VxlanInnerHash(pp->meta.key));
    const VtepPeer& p = t.overlay->peer(pp->peer);
    SLUICE_TRACE(ctx, m, kRouteVxlan, .a8 = p.subnet_length, .a = dst, .b = p.subnet,
                 .c = p.public_ip);
  } else {
    pp->tx_port = static_cast<uint8_t>(eg == Egress::kPods ? PortRole::kPods : PortRole::kUplink);
    SLUICE_TRACE(ctx, m, kRoute, .a8 = pp->egress, .a = dst, .b = pp->next_hop);
  }
  if (pp->ct_ref != ConntrackTable::kMiss) {
    const int dir = (pp->ct_ref & ConntrackTable::kReplyBit) ? 1 : 0;
    const uint64_t word =
        EncodeRouteCache(t.generation, eg, pp->peer, pp->next_hop != dst, pp->vxlan_sport);
    // Any worker handling this direction may store it; all compute the same
    // word for one generation, so concurrent stores agree.
    if (word != 0)
      ctx->shared.conntrack->entry(pp->ct_ref).route[dir].store(word, std::memory_order_relaxed);
  }
  return kToTtl;
}

uint16_t RouteProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  return ForEachPacket(graph, node, objs, n, [ctx](rte_mbuf* m) { return Route(ctx, m, Priv(m)); });
}

}  // namespace

const GraphNodeSpec& RouteNodeSpec() {
  static const GraphNodeSpec spec{kRouteNode, &RouteProcess, false, {kTtlNode, kTxNode, kDropNode}};
  return spec;
}

}  // namespace sluice

// nat: packets of tracked flows. Records the packet on its entry (coarse
// last-seen, TCP state bits), rewrites its tuple with the entry's
// precomputed checksum deltas (original direction: to the endpoint and the
// masquerade source; reply direction: back to the original tuple), and takes
// the flow direction's cached egress when it is of the current table
// generation; such a packet is forwarded here (ForwardChecks: TTL, VXLAN
// MTU) and goes straight to its egress, skipping route and ttl; to a port
// whose next hop's L2 rewrite the neighbour node left in the worker's
// adjacency cache (graph/context.h), it is rewritten here and goes to tx.
// In: conntrack (hits), new_flow. Out: vxlan_encap, neighbor (egress
// cached), route (not), tx (rewrite cached), drop. Drops: ttl_exceeded,
// vxlan_too_big.
#include <rte_ether.h>

#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/nat/nat_rewrite.h"
#include "dataplane/route/forward.h"
#include "dataplane/route/route_cache.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToVxlanEncap, kToNeighbor, kToRoute, kToDrop, kToTx };

// What every packet of a burst reads, loaded once per burst (stores into
// packet bytes would otherwise make the compiler load them again each time).
struct BurstView {
  ConntrackEntry* entries;  // the connection table's
  uint32_t tick;            // its clock now
  uint64_t now;
  uint64_t route_tag;         // RouteCacheTag of the tables' generation
  uint64_t neighbor_version;  // the neighbour table's
  uint64_t refresh_interval;
  uint32_t uplink_mtu;
  uint32_t gateway_ip;
};

template <bool kMayTrace>
rte_edge_t Translate(WorkerContext* ctx, rte_mbuf* m, PacketPriv* pp, const BurstView& b) {
  const uint32_t ref = pp->ct_ref;
  const int dir = (ref & ConntrackTable::kReplyBit) ? 1 : 0;
  ConntrackEntry& e = b.entries[ref & ~ConntrackTable::kReplyBit];
  if (!pp->created)
    SLUICE_TRACE(ctx, m, kConntrackHit, .a8 = static_cast<uint8_t>(dir), .key = &e.original);
  ConntrackTable::TouchAt(e, ref, pp->meta.tcp_flags, b.tick);
  const uint64_t route = e.route[dir].load(std::memory_order_relaxed);
  const bool cached = RouteCacheValid(route, b.route_tag);
  // A packet forwarded from here has its TTL decrement folded into the NAT
  // checksum update (one update instead of two); one that would leave with
  // TTL 0 takes the plain path and is dropped by ForwardChecks.
  bool ttl_done = false;
  if (e.flags & (ConntrackEntry::kDnat | ConntrackEntry::kSnat)) {
    const ConntrackEntry::Rewrite& rw = e.rewrite[dir];
    RewriteDeltas d{rw.ip_csum_delta, rw.l4_csum_delta};
    rte_ipv4_hdr* ip = Ipv4Header(m, pp->meta);
    if (cached && ip->time_to_live > 1) {
      d = WithTtlDecrement(d);
      ttl_done = true;
    }
    ApplyRewrite(m, &pp->meta, dir == 0 ? e.reply : e.original, d, /*reversed=*/true);
    if (ttl_done) ip->time_to_live--;
    SLUICE_TRACE(ctx, m, kNat, .a16 = pp->meta.tcp_flags, .key = &pp->meta.key);
  }
  if (!cached) return kToRoute;
  const Egress eg = RouteCacheEgress(route);
  pp->egress = static_cast<uint8_t>(eg);
  pp->vxlan_sport = RouteCacheSport(route);
  if (eg == Egress::kVxlan) {
    pp->peer = RouteCachePeer(route);
  } else {
    pp->tx_port = static_cast<uint8_t>(eg == Egress::kPods ? PortRole::kPods : PortRole::kUplink);
    pp->next_hop = RouteCacheViaGateway(route) ? b.gateway_ip : pp->meta.key.dst_ip;
  }
  // A new flow's route was decided by new_flow: the trace tells it here.
  if (kMayTrace && unlikely(ctx->tracer != nullptr) && pp->created) {
    if (eg == Egress::kVxlan) {
      const VtepPeer& p = ctx->tables->overlay->peer(pp->peer);
      SLUICE_TRACE(ctx, m, kRouteVxlan, .a8 = p.subnet_length, .a = pp->meta.key.dst_ip,
                   .b = p.subnet, .c = p.public_ip);
    } else {
      SLUICE_TRACE(ctx, m, kRoute, .a8 = pp->egress, .a = pp->meta.key.dst_ip, .b = pp->next_hop);
    }
  }
  switch (ttl_done ? ForwardChecksAfterTtl(pp, b.uplink_mtu) : ForwardChecks(m, pp, b.uplink_mtu)) {
    case ForwardVerdict::kVxlanEncap: return kToVxlanEncap;
    case ForwardVerdict::kNeighbor: {
      // The hop's rewrite, when the neighbour node left a current one.
      const uint64_t key = AdjacencyKey(pp->tx_port, pp->next_hop);
      const WorkerContext::Adjacency& a = AdjacencySlot(ctx, key);
      if (a.key != key || a.neighbor_version != b.neighbor_version ||
          b.now - a.filled_at >= b.refresh_interval)
        return kToNeighbor;
      auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
      std::memcpy(eth, a.macs, sizeof(a.macs));
      SLUICE_TRACE(ctx, m, kOut, .a8 = pp->tx_port, .mac0 = eth->src_addr.addr_bytes,
                   .mac1 = eth->dst_addr.addr_bytes);
      return kToTx;
    }
    case ForwardVerdict::kDrop: break;
  }
  return kToDrop;
}

uint16_t NatProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  const NodeView& view = ctx->tables->node;
  ConntrackTable& ct = *ctx->shared.conntrack;
  const BurstView b{ct.entries(), ct.Tick(ctx->now), ctx->now, RouteCacheTag(ctx->tables->generation),
                    ctx->shared.neighbors->version(), ctx->refresh_interval, view.uplink_mtu,
                    view.gateway_ip};
  if (unlikely(ctx->tracer != nullptr))
    return ForEachPacket(graph, node, objs, n,
                         [ctx, &b](rte_mbuf* m) { return Translate<true>(ctx, m, Priv(m), b); });
  return ForEachPacket(graph, node, objs, n,
                       [ctx, &b](rte_mbuf* m) { return Translate<false>(ctx, m, Priv(m), b); });
}

}  // namespace

const GraphNodeSpec& NatNodeSpec() {
  static const GraphNodeSpec spec{kNatNode, &NatProcess, false, {kVxlanEncapNode, kNeighborNode, kRouteNode, kDropNode, kTxNode}};
  return spec;
}

}  // namespace sluice

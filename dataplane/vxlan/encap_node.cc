// vxlan_encap: encapsulates for a remote node as flannel.1 would (vxlan.h):
// copies the peer's prebuilt outer header (Ethernet, IPv4, UDP, VXLAN; built
// once per table generation and neighbour-table version, VPP vxlan4-encap
// style) and patches the lengths, the IP ID, the inner ECN bits, the IP
// checksum (incrementally from the header's base checksum) and the flow's
// UDP source port. When the next hop towards the peer is not resolved yet,
// the packet goes on to the neighbour node, which resolves and fills the
// outer destination MAC.
// In: ttl, nat (cached egress). Out: tx, neighbor, drop. Drops: no_headroom, no_route (a peer
// index beyond the per-worker header cache; table builds refuse such maps).
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/nat/nat_rewrite.h"
#include "dataplane/neighbor/arp_request.h"
#include "dataplane/route/route.h"
#include "dataplane/vxlan/vxlan.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToTx, kToNeighbor, kToDrop };

void BuildHeader(WorkerContext* ctx, uint32_t peer_index, uint64_t version, VxlanPeerHeader* h) {
  const TableSet& t = *ctx->tables;
  const NodeView& n = t.node;
  const VtepPeer& peer = t.overlay->peer(peer_index);
  h->generation = t.generation;
  h->neighbor_version = version;
  h->next_hop = UplinkNextHop(n, peer.public_ip);
  MacAddress mac{};
  h->resolved = ctx->shared.neighbors->Lookup(PortRole::kUplink, h->next_hop, &mac);
  VxlanEncapParams p;
  p.outer_src_ip = n.node_ip;
  p.outer_dst_ip = peer.public_ip;
  p.outer_src_mac = n.port_mac[static_cast<int>(PortRole::kUplink)];
  p.outer_dst_mac = mac;
  p.inner_src_mac = n.vtep_mac;
  p.inner_dst_mac = peer.vtep_mac;
  p.vni = n.vni;
  p.udp_dst_port = n.vxlan_port;
  p.udp_src_port = 0;
  p.ip_id = 0;
  h->checked_at = ctx->now;
  VxlanBuildOuterHeader(p, h->bytes, &h->ip_csum_base);
  std::memcpy(h->inner_macs, peer.vtep_mac.data(), 6);
  std::memcpy(h->inner_macs + 6, n.vtep_mac.data(), 6);
}

// Packets to a resolved peer never meet the neighbour node, so its next hop
// is looked at here, once per refresh interval: a learned entry past its
// reachable time gets a refresh request (else aging would remove it and
// traffic to the peer would stall while it is resolved again).
void CheckNextHop(rte_graph* graph, rte_node* node, WorkerContext* ctx, VxlanPeerHeader* h) {
  h->checked_at = ctx->now;
  NeighborKey k;
  k.ip = h->next_hop;
  k.port = static_cast<uint8_t>(PortRole::kUplink);
  const NeighborKey* kp = &k;
  MacAddress mac;
  uint64_t stale = 0;
  ctx->shared.neighbors->LookupBulk(&kp, 1, ctx->now, &mac, &stale);
  if ((stale & 1) == 0 || !TakeRefreshTurn(ctx, k)) return;
  rte_mbuf* req = BuildArpRequest(ctx->pool, ctx->tables->node, PortRole::kUplink, k.ip);
  if (req == nullptr) return;
  ctx->counters.Add(k_arp_requests_sent);
  rte_node_enqueue_x1(graph, node, kToTx, req);
}

// What every packet of a burst compares against, read once per burst.
struct BurstView {
  uint64_t generation;        // the tables'
  uint64_t neighbor_version;  // the neighbour table's
  uint16_t ip_id;             // the next outer IP ID (ctx->ip_id, stored back after)
};

template <bool kMayTrace>
rte_edge_t Encapsulate(rte_graph* graph, rte_node* node, WorkerContext* ctx, rte_mbuf* m,
                       PacketPriv* pp, BurstView& b) {
  if (unlikely(pp->peer >= kMaxVxlanPeers)) {
    MarkDrop(m, k_no_route);
    return kToDrop;
  }
  VxlanPeerHeader* h = &ctx->peer_headers[pp->peer];
  if (unlikely(h->generation != b.generation || h->neighbor_version != b.neighbor_version))
    BuildHeader(ctx, pp->peer, b.neighbor_version, h);
  else if (unlikely(h->resolved && ctx->now - h->checked_at >= ctx->refresh_interval))
    CheckNextHop(graph, node, ctx, h);
  if (!VxlanEncapsulateWithHeader(m, pp->meta, h->bytes, h->ip_csum_base, h->inner_macs,
                                  b.ip_id++, pp->vxlan_sport)) {
    MarkDrop(m, k_no_headroom);
    return kToDrop;
  }
  pp->tx_port = static_cast<uint8_t>(PortRole::kUplink);
  if (kMayTrace && unlikely(ctx->tracer != nullptr)) {
    const NodeView& n = ctx->tables->node;
    const VtepPeer& peer = ctx->tables->overlay->peer(pp->peer);
    SLUICE_TRACE(ctx, m, kVxlanEncap, .a16 = pp->vxlan_sport, .a = n.vni, .b = n.node_ip,
                 .c = peer.public_ip, .d = n.vxlan_port, .mac0 = n.vtep_mac.data(),
                 .mac1 = peer.vtep_mac.data(), .mac2 = h->bytes);
  }
  if (!h->resolved) {
    pp->next_hop = h->next_hop;
    return kToNeighbor;
  }
  return kToTx;
}

template <bool kMayTrace>
uint16_t EncapBurst(rte_graph* graph, rte_node* node, WorkerContext* ctx, void** objs,
                   uint16_t n) {
  BurstView b{ctx->tables->generation, ctx->shared.neighbors->version(), ctx->ip_id};
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  uint64_t encapsulated = 0;
  for (uint16_t i = 0; i < n; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    next[i] = Encapsulate<kMayTrace>(graph, node, ctx, m, Priv(m), b);
    encapsulated += next[i] != kToDrop;
  }
  ctx->ip_id = b.ip_id;
  ctx->counters.Add(k_vxlan_encapsulated, encapsulated);
  EnqueueByEdge(graph, node, objs, next, n);
  return n;
}

uint16_t VxlanEncapProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  if (unlikely(ctx->tracer != nullptr)) return EncapBurst<true>(graph, node, ctx, objs, n);
  return EncapBurst<false>(graph, node, ctx, objs, n);
}

}  // namespace

const GraphNodeSpec& VxlanEncapNodeSpec() {
  static const GraphNodeSpec spec{
      kVxlanEncapNode, &VxlanEncapProcess, false, {kTxNode, kNeighborNode, kDropNode}};
  return spec;
}

}  // namespace sluice

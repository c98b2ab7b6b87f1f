// neighbor: the L2 rewrite. Looks the next hop (PacketPriv::tx_port,
// next_hop) up in the neighbour table, each distinct hop once per chunk (a
// burst mostly shares a few: the gateway, a peer node), and writes the
// Ethernet addresses. VXLAN packets whose outer header still lacks the next
// hop's MAC come here too. A packet whose next hop is unresolved waits in the
// worker's hold queue while an ARP request (at most one per hop per second)
// asks for it; the worker loop sends it on when the answer comes. A learned
// entry past its reachable time is still used, and refreshed by a request.
// In: ttl, nat (cached egress), vxlan_encap. Out: tx, drop. Drops: neighbor_queue_full.
#include <rte_ether.h>
#include <rte_hash_crc.h>

#include <cstddef>

#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/neighbor/arp_request.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToTx, kToDrop };
// Not an edge: the packet left the stream (held by the hold queue).
constexpr rte_edge_t kKept = kToDrop + 1;

void SendArpRequest(rte_graph* graph, rte_node* node, WorkerContext* ctx, const NeighborKey& k) {
  rte_mbuf* req =
      BuildArpRequest(ctx->pool, ctx->tables->node, static_cast<PortRole>(k.port), k.ip);
  if (req == nullptr) return;
  ctx->counters.Add(k_arp_requests_sent);
  rte_node_enqueue_x1(graph, node, kToTx, req);
}

// A stale entry gets one refresh request per interval.
void MaybeRefresh(rte_graph* graph, rte_node* node, WorkerContext* ctx, const NeighborKey& k) {
  if (TakeRefreshTurn(ctx, k)) SendArpRequest(graph, node, ctx, k);
}

rte_edge_t Hold(rte_graph* graph, rte_node* node, WorkerContext* ctx, rte_mbuf* m,
                const NeighborKey& k) {
  bool ask = false;
  const NeighborHoldQueue::Verdict v = ctx->hold->Hold(m, k, k.port, ctx->now, &ask);
  SLUICE_TRACE(ctx, m, kNeighborWait, .a8 = k.port, .a16 = ask, .a = k.ip);
  if (ask) SendArpRequest(graph, node, ctx, k);
  if (v == NeighborHoldQueue::Verdict::kHeld) {
    ctx->counters.Add(k_neighbor_held);
    return kKept;
  }
  MarkDrop(m, k_neighbor_queue_full);
  return kToDrop;
}

// Resolves objs[base, end): hops deduplicated, looked up in bulk.
template <bool kMayTrace>
void Resolve(rte_graph* graph, rte_node* node, WorkerContext* ctx, void** objs, uint16_t base,
             uint16_t end, rte_edge_t* next) {
  // Keys are built and compared as one 64-bit word: writing the fields
  // and reading the key back whole would stall store forwarding per packet.
  static_assert(sizeof(NeighborKey) == sizeof(uint64_t) && offsetof(NeighborKey, ip) == 0 &&
                offsetof(NeighborKey, port) == 4);
  NeighborKey keys[kBurstSize];
  uint64_t uniq_word[kBurstSize];
  const NeighborKey* uniq[kBurstSize];
  uint16_t uniq_of[kBurstSize];
  uint16_t nuniq = 0;
  for (uint16_t i = base; i < end; ++i) {
    const PacketPriv* pp = Priv(static_cast<rte_mbuf*>(objs[i]));
    const uint64_t word = uint64_t{pp->next_hop} | uint64_t{pp->tx_port} << 32;
    std::memcpy(static_cast<void*>(&keys[i - base]), &word, sizeof(word));
    uint16_t u = 0;
    while (u < nuniq && uniq_word[u] != word) ++u;
    if (u == nuniq) {
      uniq_word[nuniq] = word;
      uniq[nuniq++] = &keys[i - base];
    }
    uniq_of[i - base] = u;
  }
  MacAddress mac[kBurstSize];
  uint64_t stale = 0;
  // Before the lookup, as the table's contract asks of a cache.
  const uint64_t version = ctx->shared.neighbors->version();
  const uint64_t found = ctx->shared.neighbors->LookupBulk(uniq, nuniq, ctx->now, mac, &stale);
  const NodeView& n = ctx->tables->node;
  for (uint16_t u = 0; u < nuniq; ++u) {
    if ((stale >> u) & 1) {
      MaybeRefresh(graph, node, ctx, *uniq[u]);
    } else if (((found >> u) & 1) && !ctx->hold->Holding(*uniq[u])) {
      // Fresh, and nothing waits for it (those would be overtaken): later
      // packets to this hop may take the rewrite from nat.
      const uint64_t key = AdjacencyKey(uniq[u]->port, uniq[u]->ip);
      WorkerContext::Adjacency& a = AdjacencySlot(ctx, key);
      a.key = key;
      a.neighbor_version = version;
      a.filled_at = ctx->now;
      std::memcpy(a.macs, mac[u].data(), 6);
      std::memcpy(a.macs + 6, n.port_mac[uniq[u]->port].data(), 6);
    }
  }
  for (uint16_t i = base; i < end; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    const uint16_t u = uniq_of[i - base];
    // Unresolved, or resolved in this very walk while earlier packets still
    // wait: queue behind them (the loop sends them all, in order, after it).
    if (!((found >> u) & 1) || unlikely(ctx->hold->Holding(keys[i - base]))) {
      next[i] = Hold(graph, node, ctx, m, keys[i - base]);
      continue;
    }
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    std::memcpy(eth->dst_addr.addr_bytes, mac[u].data(), 6);
    std::memcpy(eth->src_addr.addr_bytes, n.port_mac[keys[i - base].port].data(), 6);
    SLUICE_TRACE(ctx, m, kOut, .a8 = keys[i - base].port, .mac0 = eth->src_addr.addr_bytes,
                 .mac1 = eth->dst_addr.addr_bytes);
    next[i] = kToTx;
  }
}

uint16_t NeighborProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  const bool traced = unlikely(ctx->tracer != nullptr);
  for (uint16_t base = 0; base < n; base += kBurstSize) {
    const uint16_t end = base + kBurstSize < n ? base + kBurstSize : n;
    if (traced)
      Resolve<true>(graph, node, ctx, objs, base, end, next);
    else
      Resolve<false>(graph, node, ctx, objs, base, end, next);
  }
  // Held packets left the stream: enqueue the others run by run.
  uint16_t start = 0;
  for (uint16_t i = 0; i <= n; ++i) {
    if (i < n && next[i] == next[start]) continue;
    if (start < i && next[start] != kKept)
      rte_node_enqueue(graph, node, next[start], objs + start, i - start);
    start = i;
  }
  return n;
}

}  // namespace

const GraphNodeSpec& NeighborNodeSpec() {
  static const GraphNodeSpec spec{kNeighborNode, &NeighborProcess, false, {kTxNode, kDropNode}};
  return spec;
}

}  // namespace sluice

// neighbor: the L2 rewrite. Looks the next hop (PacketPriv::tx_port,
// next_hop) up in the neighbour table, each distinct hop once per chunk (a
// burst mostly shares a few: the gateway, a peer node), and writes the
// Ethernet addresses. VXLAN packets whose outer header still lacks the next
// hop's MAC come here too. An unresolved hop gets an ARP request.
// In: ttl, vxlan_encap. Out: tx, drop. Drops: neighbor_miss.
#include <rte_arp.h>
#include <rte_ether.h>

#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToTx, kToDrop };

rte_mbuf* BuildArpRequest(WorkerContext* ctx, PortRole port, uint32_t target_ip) {
  rte_mbuf* m = rte_pktmbuf_alloc(ctx->pool);
  if (m == nullptr) return nullptr;
  const NodeView& n = ctx->tables->node;
  auto* eth = reinterpret_cast<rte_ether_hdr*>(
      rte_pktmbuf_append(m, sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr)));
  if (eth == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  const MacAddress& mac = n.port_mac[static_cast<int>(port)];
  std::memset(&eth->dst_addr, 0xff, 6);
  std::memcpy(&eth->src_addr, mac.data(), 6);
  eth->ether_type = Be16(RTE_ETHER_TYPE_ARP);
  auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
  arp->arp_hardware = Be16(RTE_ARP_HRD_ETHER);
  arp->arp_protocol = Be16(RTE_ETHER_TYPE_IPV4);
  arp->arp_hlen = RTE_ETHER_ADDR_LEN;
  arp->arp_plen = 4;
  arp->arp_opcode = Be16(RTE_ARP_OP_REQUEST);
  std::memcpy(&arp->arp_data.arp_sha, mac.data(), 6);
  arp->arp_data.arp_sip = Be32(port == PortRole::kPods ? n.pods_gateway_ip : n.node_ip);
  std::memset(&arp->arp_data.arp_tha, 0, 6);
  arp->arp_data.arp_tip = Be32(target_ip);
  Priv(m)->tx_port = static_cast<uint8_t>(port);
  return m;
}

// Resolves objs[base, end): hops deduplicated, looked up in bulk.
void Resolve(rte_graph* graph, rte_node* node, WorkerContext* ctx, void** objs, uint16_t base,
             uint16_t end, rte_edge_t* next) {
  NeighborKey keys[kBurstSize];
  const NeighborKey* uniq[kBurstSize];
  uint16_t uniq_of[kBurstSize];
  uint16_t nuniq = 0;
  for (uint16_t i = base; i < end; ++i) {
    const PacketPriv* pp = Priv(static_cast<rte_mbuf*>(objs[i]));
    NeighborKey& k = keys[i - base];
    k = NeighborKey{};
    k.ip = pp->next_hop;
    k.port = pp->tx_port;
    uint16_t u = 0;
    while (u < nuniq && std::memcmp(uniq[u], &k, sizeof(k)) != 0) ++u;
    if (u == nuniq) uniq[nuniq++] = &k;
    uniq_of[i - base] = u;
  }
  MacAddress mac[kBurstSize];
  bool found[kBurstSize];
  ctx->shared.neighbors->LookupBulk(uniq, nuniq, mac, found);
  bool asked[kBurstSize] = {};
  const NodeView& n = ctx->tables->node;
  for (uint16_t i = base; i < end; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    const uint16_t u = uniq_of[i - base];
    const PortRole port = static_cast<PortRole>(keys[i - base].port);
    if (!found[u]) {
      SLUICE_TRACE(ctx, m, kNeighborWait, .a8 = keys[i - base].port, .a16 = !asked[u],
                   .a = keys[i - base].ip);
      if (!asked[u]) {
        asked[u] = true;
        if (rte_mbuf* req = BuildArpRequest(ctx, port, keys[i - base].ip); req != nullptr) {
          ctx->counters.Add(k_arp_requests_sent);
          rte_node_enqueue_x1(graph, node, kToTx, req);
        }
      }
      MarkDrop(m, k_neighbor_miss);
      next[i] = kToDrop;
      continue;
    }
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    std::memcpy(eth->dst_addr.addr_bytes, mac[u].data(), 6);
    std::memcpy(eth->src_addr.addr_bytes, n.port_mac[static_cast<int>(port)].data(), 6);
    SLUICE_TRACE(ctx, m, kOut, .a8 = keys[i - base].port, .mac0 = eth->src_addr.addr_bytes,
                 .mac1 = eth->dst_addr.addr_bytes);
    next[i] = kToTx;
  }
}

uint16_t NeighborProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  for (uint16_t base = 0; base < n; base += kBurstSize)
    Resolve(graph, node, ctx, objs, base, base + kBurstSize < n ? base + kBurstSize : n, next);
  EnqueueByEdge(graph, node, objs, next, n);
  return n;
}

}  // namespace

const GraphNodeSpec& NeighborNodeSpec() {
  static const GraphNodeSpec spec{kNeighborNode, &NeighborProcess, false, {kTxNode, kDropNode}};
  return spec;
}

}  // namespace sluice

// arp: answers ARP requests for the address Sluice holds on the port (on
// the host port, every address: the node's kernel routes through Sluice),
// turning the request into the reply in place, and learns senders that are
// on the port's own subnet (off-subnet senders are answered, never learned,
// so a flood of them cannot fill the neighbour table).
// In: classify. Out: tx (replies), drop. Consumed ARP replies are freed here
// and counted as arp_reply_consumed. Drops: arp_not_for_us.
#include <rte_arp.h>
#include <rte_ether.h>

#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/neighbor/arp_request.h"
#include "dataplane/route/route.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToTx, kToDrop };
// Not an edge: the packet left the stream (consumed here (an ARP reply)).
constexpr rte_edge_t kKept = kToDrop + 1;

// Returns the edge, or kKept when the packet was consumed.
rte_edge_t HandleArp(WorkerContext* ctx, rte_mbuf* m, const PacketPriv& pp) {
  const NodeView& n = ctx->tables->node;
  const PortRole in = static_cast<PortRole>(pp.ingress);
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  auto* arp = rte_pktmbuf_mtod_offset(m, rte_arp_hdr*, pp.meta.l3_offset);
  const uint16_t op = Be16(arp->arp_opcode);
  const uint32_t sip = Be32(arp->arp_data.arp_sip);
  const uint32_t tip = Be32(arp->arp_data.arp_tip);
  const MacAddress& our_mac = n.port_mac[pp.ingress];
  SLUICE_TRACE(ctx, m, kArp, .a8 = pp.ingress, .a16 = op, .a = tip, .b = sip,
               .mac0 = arp->arp_data.arp_sha.addr_bytes);
  const bool to_us = rte_is_broadcast_ether_addr(&eth->dst_addr) ||
                     std::memcmp(eth->dst_addr.addr_bytes, our_mac.data(), 6) == 0;
  const bool owned = in == PortRole::kHost ? tip != sip : tip == OwnAddress(n, in);
  if (!to_us || !owned || (op != RTE_ARP_OP_REQUEST && op != RTE_ARP_OP_REPLY)) {
    MarkDrop(m, k_arp_not_for_us);
    return kToDrop;
  }
  if (sip != 0) {
    MacAddress sha;
    std::memcpy(sha.data(), arp->arp_data.arp_sha.addr_bytes, 6);
    switch (ctx->shared.neighbors->Learn(in, OnLinkSubnet(n, in, sip), sip, sha, ctx->now)) {
      case NeighborTable::LearnResult::kLearned:
      case NeighborTable::LearnResult::kChanged:
      case NeighborTable::LearnResult::kRefreshed:
        ctx->counters.Add(k_arp_learned);
        SLUICE_TRACE(ctx, m, kArpLearned, .a8 = pp.ingress, .a = sip, .mac0 = sha.data());
        break;
      case NeighborTable::LearnResult::kStaticKept:
        break;
      case NeighborTable::LearnResult::kQuotaFull:
        ctx->counters.Add(k_arp_learn_quota_full);
        SLUICE_TRACE(ctx, m, kArpNotLearned, .a8 = pp.ingress, .a16 = 1, .a = sip);
        break;
      case NeighborTable::LearnResult::kOffSubnet:
        ctx->counters.Add(k_arp_sender_off_subnet);
        SLUICE_TRACE(ctx, m, kArpNotLearned, .a8 = pp.ingress, .a16 = 0, .a = sip);
        break;
    }
  }
  if (op == RTE_ARP_OP_REPLY) {
    ctx->counters.Add(k_arp_reply_consumed);
    rte_pktmbuf_free(m);
    return kKept;
  }
  rte_ether_addr mine;
  std::memcpy(mine.addr_bytes, our_mac.data(), 6);
  rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
  rte_ether_addr_copy(&mine, &eth->src_addr);
  arp->arp_opcode = Be16(RTE_ARP_OP_REPLY);
  rte_ether_addr_copy(&arp->arp_data.arp_sha, &arp->arp_data.arp_tha);
  rte_ether_addr_copy(&mine, &arp->arp_data.arp_sha);
  arp->arp_data.arp_tip = arp->arp_data.arp_sip;
  arp->arp_data.arp_sip = Be32(tip);
  ctx->counters.Add(k_arp_replied);
  SLUICE_TRACE(ctx, m, kArpReplied, .a = tip, .mac0 = our_mac.data());
  Priv(m)->tx_port = pp.ingress;
  return kToTx;
}

uint16_t ArpProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  for (uint16_t i = 0; i < n; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    const rte_edge_t e = HandleArp(ctx, m, *Priv(m));
    if (e != kKept) rte_node_enqueue_x1(graph, node, e, m);
  }
  return n;
}

}  // namespace

const GraphNodeSpec& ArpNodeSpec() {
  static const GraphNodeSpec spec{kArpNode, &ArpProcess, false, {kTxNode, kDropNode}};
  return spec;
}

}  // namespace sluice

// tx: queues each packet for the port PacketPriv::tx_port names; the worker
// loop sends one tx burst per port after the graph walk (Worker::Flush), or
// hands the packets to a test (Worker::TakeTx).
// In: from arp, route (host), vxlan_encap, neighbor. Out: none (sink).
// Drops (freed here, counted): tx_full when a port's queue holds a full
// graph burst already.
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"

namespace sluice {
namespace {

uint16_t TxProcess(rte_graph*, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  uint64_t full = 0;
  for (uint16_t i = 0; i < n; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    const uint8_t p = Priv(m)->tx_port;
    if (unlikely(ctx->tx_count[p] == WorkerContext::kTxCapacity)) {
      ++full;
      rte_pktmbuf_free(m);
      continue;
    }
    ctx->tx[p][ctx->tx_count[p]++] = m;
  }
  if (full != 0) ctx->counters.Add(k_tx_full, full);
  return n;
}

}  // namespace

const GraphNodeSpec& TxNodeSpec() {
  static const GraphNodeSpec spec{kTxNode, &TxProcess, false, {}};
  return spec;
}

}  // namespace sluice

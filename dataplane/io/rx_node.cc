// rx (source node): one rx burst from each of the worker's port queues, or
// the burst Worker::ProcessBurst handed in; each packet is stamped with the
// role of the port it arrived on.
// Out: classify. Drops: no_tables (no table generation published yet).
#include <rte_ethdev.h>

#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToClassify, kToDrop };

uint16_t Take(rte_graph* graph, rte_node* node, WorkerContext* ctx, PortRole role, rte_mbuf** from,
              uint16_t max) {
  const rte_edge_t next = ctx->tables != nullptr ? kToClassify : kToDrop;
  auto** to = reinterpret_cast<rte_mbuf**>(rte_node_next_stream_get(graph, node, next, max));
  uint16_t n;
  if (from != nullptr) {
    for (n = 0; n < max; ++n) to[n] = from[n];
  } else {
    const int p = static_cast<int>(role);
    n = rte_eth_rx_burst(ctx->ports.port_id[p], ctx->ports.queue, to, max);
  }
  for (uint16_t i = 0; i < n; ++i) {
    PacketPriv* pp = Priv(to[i]);
    pp->ingress = static_cast<uint8_t>(role);
    pp->drop = k_no_tables;
  }
  rte_node_next_stream_put(graph, node, next, n);
  return n;
}

uint16_t RxProcess(rte_graph* graph, rte_node* node, void**, uint16_t) {
  WorkerContext* ctx = Ctx(node);
  uint16_t total = 0;
  if (ctx->inject_count != 0) {
    total = Take(graph, node, ctx, ctx->inject_port, ctx->inject, ctx->inject_count);
    ctx->inject_count = 0;
  } else {
    for (int p = 0; p < kPortRoleCount; ++p)
      if (ctx->ports.present[p])
        total += Take(graph, node, ctx, static_cast<PortRole>(p), nullptr, kRxBurstPerPort);
  }
  ctx->counters.Add(k_rx_packets, total);
  return total;
}

}  // namespace

const GraphNodeSpec& RxNodeSpec() {
  static const GraphNodeSpec spec{kRxNode, &RxProcess, true, {kClassifyNode, kDropNode}};
  return spec;
}

}  // namespace sluice

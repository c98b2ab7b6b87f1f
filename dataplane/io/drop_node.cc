// drop: frees packets and counts each under the reason PacketPriv::drop
// names (a DROP line of counters.def).
// In: every node. Out: none (sink).
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"

namespace sluice {
namespace {

uint16_t DropProcess(rte_graph*, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  for (uint16_t i = 0; i < n; ++i) {
    auto* m = static_cast<rte_mbuf*>(objs[i]);
    const Counter reason = static_cast<Counter>(Priv(m)->drop);
    ctx->counters.Add(reason);
    SLUICE_TRACE(ctx, m, kDrop, .a16 = reason);
  }
  rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(objs), n);
  return n;
}

}  // namespace

const GraphNodeSpec& DropNodeSpec() {
  static const GraphNodeSpec spec{kDropNode, &DropProcess, false, {}};
  return spec;
}

}  // namespace sluice

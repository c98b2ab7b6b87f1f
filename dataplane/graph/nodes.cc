#include "dataplane/graph/nodes.h"

#include <rte_errno.h>
#include <rte_graph_worker.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "dataplane/graph/context.h"

namespace sluice {
namespace {

const std::vector<const GraphNodeSpec*>& AllSpecs() {
  static const std::vector<const GraphNodeSpec*> specs = {
      &RxNodeSpec(),        &ClassifyNodeSpec(), &ArpNodeSpec(),        &VxlanDecapNodeSpec(),
      &ConntrackNodeSpec(), &ServiceNodeSpec(),  &NewFlowNodeSpec(),    &NatNodeSpec(),
      &RouteNodeSpec(),     &TtlNodeSpec(),      &VxlanEncapNodeSpec(), &NeighborNodeSpec(),
      &TxNodeSpec(),        &DropNodeSpec()};
  return specs;
}

// Graph name -> context, read by the nodes' init while rte_graph_create runs.
std::mutex registry_mu;
std::map<std::string, WorkerContext*>& Registry() {
  static auto* m = new std::map<std::string, WorkerContext*>();
  return *m;
}

int InitNode(const rte_graph* graph, rte_node* node) {
  std::lock_guard<std::mutex> l(registry_mu);
  auto it = Registry().find(graph->name);
  if (it == Registry().end()) return -1;
  WorkerContext* ctx = it->second;
  static_assert(sizeof(ctx) <= RTE_NODE_CTX_SZ);
  std::memcpy(node->ctx, &ctx, sizeof(ctx));
  return 0;
}

}  // namespace

void RegisterGraphNodes() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (const GraphNodeSpec* spec : AllSpecs()) {
      const size_t size = sizeof(rte_node_register) + spec->edges.size() * sizeof(const char*);
      auto* reg = static_cast<rte_node_register*>(std::calloc(1, size));
      std::snprintf(reg->name, sizeof(reg->name), "%s", spec->name);
      reg->flags = spec->source ? RTE_NODE_SOURCE_F : 0;
      reg->process = spec->process;
      reg->init = &InitNode;
      reg->nb_edges = static_cast<rte_edge_t>(spec->edges.size());
      for (size_t i = 0; i < spec->edges.size(); ++i) reg->next_nodes[i] = spec->edges[i];
      // rte_graph copies what it keeps.
      if (__rte_node_register(reg) == RTE_NODE_ID_INVALID) {
        std::fprintf(stderr, "sluice: cannot register graph node %s\n", spec->name);
        std::abort();
      }
      std::free(reg);
    }
  });
}

absl::StatusOr<rte_graph*> CreateWorkerGraph(WorkerContext* ctx, std::string* name) {
  RegisterGraphNodes();
  static std::atomic<uint32_t> instance{0};
  *name = absl::StrFormat("sluice_w%u_%u", ctx->id, instance.fetch_add(1));
  std::vector<const char*> patterns;
  for (const GraphNodeSpec* spec : AllSpecs()) patterns.push_back(spec->name);
  rte_graph_param p = {};
  p.socket_id = SOCKET_ID_ANY;
  p.nb_node_patterns = static_cast<uint16_t>(patterns.size());
  p.node_patterns = patterns.data();
  {
    std::lock_guard<std::mutex> l(registry_mu);
    Registry()[*name] = ctx;
  }
  const rte_graph_t id = rte_graph_create(name->c_str(), &p);
  {
    std::lock_guard<std::mutex> l(registry_mu);
    Registry().erase(*name);
  }
  if (id == RTE_GRAPH_ID_INVALID)
    return absl::InternalError(
        absl::StrFormat("rte_graph_create %s: %s", *name, rte_strerror(rte_errno)));
  return rte_graph_lookup(name->c_str());
}

void DestroyWorkerGraph(const std::string& name) {
  const rte_graph_t id = rte_graph_from_name(name.c_str());
  if (id != RTE_GRAPH_ID_INVALID) rte_graph_destroy(id);
}

std::vector<NodeStats> GraphNodeStats(const std::string& graph_name) {
  std::vector<NodeStats> out;
  for (const GraphNodeSpec* spec : AllSpecs()) {
    const rte_node* n = rte_graph_node_get_by_name(graph_name.c_str(), spec->name);
    if (n == nullptr) continue;
    out.push_back({spec->name, n->total_calls, n->total_objs, n->total_cycles});
  }
  return out;
}

}  // namespace sluice
